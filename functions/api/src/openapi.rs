//! The OpenAPI 3.1 document, generated from the route annotations and the types themselves, so
//! it cannot drift from the code. Served at `GET /openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{analytics, changes, health, notifications, preferences, push};

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Notification inbox, preferences and change feed. Errors are RFC 9457 problem+json."),
    paths(
        notifications::create, notifications::create_batch, notifications::list, notifications::get,
        notifications::patch, notifications::delete, notifications::mark_all_read, notifications::counts,
        changes::changes, preferences::get, preferences::put, health::health,
        analytics::report, analytics::deliveries, analytics::click,
        push::subscribe, push::list, push::unsubscribe, push::vapid_public_key, push::put_contacts,
        push::one_click_unsubscribe, push::unsubscribe_page,
    ),
    components(schemas(shared::protocol::Envelope, shared::protocol::Event, shared::model::OutcomeStatus)),
    modifiers(&JwtScheme),
)]
struct ApiDoc;

struct JwtScheme;

impl Modify for JwtScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
