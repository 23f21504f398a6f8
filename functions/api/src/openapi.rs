//! The OpenAPI 3.1 document, generated from the code so it cannot drift. Served at
//! `GET /openapi.json`.
//!
//! Three layers, in this order:
//! 1. the route annotations (`#[utoipa::path]`) and the `ToSchema` types give the paths, the
//!    shapes and each route's own answers;
//! 2. [`constraints`] adds what the annotations cannot say with the numbers of
//!    [`shared::limits`]: ranges, lengths, patterns and enums exactly as the handlers enforce them,
//!    and the two create bodies (`userId` for one recipient, `userIds` for a batch);
//! 3. [`answers`] declares once and applies to every operation what every route may answer
//!    (API Gateway's own 401/403/404/413/503 with their `{"message": …}` bodies, 429 and 503
//!    with `Retry-After`, 400/413/415/422 on bodies), the response headers (`ETag`, `Location`,
//!    `Idempotent-Replayed`) and the links a client follows from one answer to the next request.
//!
//! Contract: a request the document calls valid is accepted (2xx, or 404/409/410 about the state
//! of a resource), and one it calls invalid is refused with a 4xx, except for the few rules JSON
//! Schema cannot state (a date in the future, a point on P-256, a signed token), which are
//! written in the descriptions. `scripts/test.d/40-contract` holds the API to this.

mod answers;
mod constraints;

use std::sync::OnceLock;

use serde_json::Value;
use utoipa::OpenApi;

use crate::routes::{
    analytics, changes, devices, health, notifications, preferences, push, scheduled, topics,
    users, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Notification inbox, preferences and change feed. Errors are RFC 9457 problem+json; the gateway's own refusals are `{\"message\": …}`."
    ),
    paths(
        notifications::create,
        notifications::create_batch,
        notifications::list,
        notifications::get,
        notifications::patch,
        notifications::delete,
        notifications::mark_all_read,
        notifications::counts,
        changes::changes,
        preferences::get,
        preferences::put,
        health::liveness,
        health::readiness,
        analytics::report,
        analytics::deliveries,
        analytics::click,
        push::subscribe,
        push::list,
        push::unsubscribe,
        push::vapid_public_key,
        push::put_contacts,
        push::one_click_unsubscribe,
        push::unsubscribe_page,
        devices::register,
        devices::list,
        devices::remove,
        users::erase,
        users::export_user,
        users::export_me,
        webhooks::register,
        webhooks::list,
        webhooks::remove,
        webhooks::deliveries,
        webhooks::replay,
        scheduled::get,
        scheduled::cancel,
        scheduled::cancel_by_key,
        topics::put,
        topics::get,
        topics::delete,
        topics::subscribe,
        topics::unsubscribe,
        topics::subscribers,
        topics::mine,
        topics::broadcast,
        topics::get_broadcast,
        topics::cancel,
    ),
    // The WebSocket frames too, so one generated client (web/herald-api.d.ts) types both APIs;
    // /asyncapi.json is their contract.
    components(schemas(
        shared::protocol::Envelope,
        shared::protocol::Event,
        shared::model::OutcomeStatus,
        shared::protocol::Frame,
        shared::protocol::Action
    ))
)]
struct ApiDoc;

/// The document, built once per process.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

fn build() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    constraints::apply(&mut doc);
    answers::apply(&mut doc);
    doc
}

/// Every operation of the document with its path and method.
fn operations(doc: &mut Value) -> impl Iterator<Item = (String, String, &mut Value)> {
    doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.iter_mut())
        .flat_map(|(path, item)| {
            let path = path.clone();
            item.as_object_mut()
                .into_iter()
                .flat_map(|ops| ops.iter_mut())
                .map(move |(method, op)| (path.clone(), method.clone(), op))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn each_operation(mut f: impl FnMut(&str, &str, &Value)) {
        let mut doc = document().clone();
        for (path, method, op) in operations(&mut doc) {
            f(&path, &method, op);
        }
    }

    #[test]
    fn every_route_documents_the_gateway_answers_and_every_v1_route_429_and_503() {
        let mut seen = 0;
        each_operation(|path, method, op| {
            seen += 1;
            let codes = &op["responses"];
            for code in ["404", "413", "503"] {
                assert!(codes.get(code).is_some(), "{method} {path} lacks {code}");
            }
            if path.starts_with("/v1/") && path != "/v1/unsubscribe" {
                assert!(codes.get("429").is_some(), "{method} {path} lacks 429");
            }
            let security = op["security"].as_array().cloned().unwrap_or_default();
            if !security.is_empty() {
                assert!(codes.get("401").is_some(), "{method} {path} lacks 401");
            }
            if !security.is_empty() && security.iter().all(|r| r["jwt"][0].is_string()) {
                assert!(codes.get("403").is_some(), "{method} {path} lacks 403");
            }
            if op.get("requestBody").is_some() {
                for code in ["400", "415", "422"] {
                    assert!(codes.get(code).is_some(), "{method} {path} lacks {code}");
                }
            }
        });
        assert!(seen >= 23, "only {seen} operations");
        let doc = document();
        assert_eq!(
            doc["paths"]["/v1/health"]["get"]["security"][0]["jwt"][0],
            "health:read"
        );
        let unauthorized = &doc["components"]["responses"]["Unauthorized"]["content"];
        assert!(unauthorized["application/json"].is_object());
        assert!(unauthorized["application/problem+json"].is_object());
    }

    #[test]
    fn each_create_route_takes_its_own_shape() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let single = &schemas["CreateNotificationRequest"];
        let batch = &schemas["CreateNotificationBatchRequest"];
        assert!(single["properties"].get("userIds").is_none());
        assert!(batch["properties"].get("userId").is_none());
        assert_eq!(single["required"][0], "userId");
        assert_eq!(batch["required"][0], "userIds");
        assert_eq!(
            batch["properties"]["userIds"]["maxItems"],
            shared::limits::BATCH_MAX_RECIPIENTS
        );
        assert_eq!(
            single["properties"]["title"]["maxLength"],
            shared::limits::TITLE_MAX_CHARS
        );
        assert_eq!(batch["additionalProperties"], false);
    }

    #[test]
    fn page_sizes_start_at_one_and_end_at_the_limits() {
        let doc = document();
        let limit = |path: &str| {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
                .map(|p| p["schema"].clone())
                .unwrap_or_default()
        };
        assert_eq!(limit("/v1/notifications")["minimum"], 1);
        assert_eq!(
            limit("/v1/notifications")["maximum"],
            shared::limits::LIST_MAX_LIMIT
        );
        assert_eq!(
            limit("/v1/changes")["maximum"],
            shared::limits::CHANGES_MAX_LIMIT
        );
    }

    #[test]
    fn create_links_lead_to_the_notification_routes() {
        let doc = document();
        let links = &doc["paths"]["/v1/notifications"]["post"]["responses"]["201"]["links"];
        for op in [
            "getNotification",
            "patchNotification",
            "deleteNotification",
            "listDeliveries",
            "recordClick",
        ] {
            assert!(
                links
                    .as_object()
                    .is_some_and(|l| l.values().any(|link| link["operationId"] == op)),
                "no link to {op}: {links}"
            );
        }
        let subscribed = &doc["paths"]["/v1/push-subscriptions"]["post"]["responses"]["201"];
        assert_eq!(
            subscribed["links"]["unsubscribe"]["operationId"],
            "deletePushSubscription"
        );
    }
}
