//! The OpenAPI 3.1 document, generated from the route annotations and the types themselves, so
//! it cannot drift from the code. Served at `GET /openapi.json`.
//!
//! Two answers every route can give are added to every operation here rather than repeated on
//! each annotation: 401 on every route that takes a token (missing, or a subject that is not a
//! valid user id), and 503 with `Retry-After` on every `/v1` route (the store is unreachable,
//! loading its AOF or failing over).

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

use crate::routes::{analytics, changes, health, notifications, preferences, push};

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald", description = "Notification inbox, preferences and change feed. Errors are RFC 9457 problem+json."),
    paths(
        notifications::create, notifications::create_batch, notifications::list, notifications::get,
        notifications::patch, notifications::delete, notifications::mark_all_read, notifications::counts,
        changes::changes, preferences::get, preferences::put, health::liveness, health::readiness,
        analytics::report, analytics::deliveries, analytics::click,
        push::subscribe, push::list, push::unsubscribe, push::vapid_public_key, push::put_contacts,
        push::one_click_unsubscribe, push::unsubscribe_page,
    ),
    components(schemas(shared::protocol::Envelope, shared::protocol::Event, shared::model::OutcomeStatus)),
    modifiers(&JwtScheme, &CommonResponses),
)]
struct ApiDoc;

struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let problem = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build()
        };
        let unauthorized = ResponseBuilder::new()
            .description("No token, or its subject is not a valid user id")
            .content(shared::error::PROBLEM_CONTENT_TYPE, problem())
            .build();
        let unavailable = ResponseBuilder::new()
            .description(
                "The store is unavailable for a while (unreachable, loading its AOF, failing \
                 over); retry after `Retry-After` seconds",
            )
            .content(shared::error::PROBLEM_CONTENT_TYPE, problem())
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::Integer))
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            )
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations: [&mut Option<Operation>; 5] = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
                    responses
                        .entry("401".into())
                        .or_insert_with(|| unauthorized.clone().into());
                }
                if path.starts_with("/v1/") {
                    responses
                        .entry("503".into())
                        .or_insert_with(|| unavailable.clone().into());
                }
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_v1_route_documents_503_and_every_route_with_a_token_documents_401() {
        let doc = serde_json::to_value(document()).unwrap_or_default();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        assert!(paths.contains_key("/v1/health") && paths.contains_key("/health"));
        for (path, item) in paths {
            for (method, op) in item.as_object().cloned().unwrap_or_default() {
                let codes = &op["responses"];
                if path.starts_with("/v1/") {
                    assert!(codes.get("503").is_some(), "{method} {path} lacks 503");
                }
                if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                    assert!(codes.get("401").is_some(), "{method} {path} lacks 401");
                }
            }
        }
        let ready = &doc["paths"]["/v1/health"]["get"];
        assert_eq!(ready["security"][0]["jwt"][0], "health:read");
    }
}
