//! The answers every route shares, declared once under `components.responses` and referenced by
//! every operation that can give them; the operation ids, the security scheme, the response
//! headers and the links between operations.
//!
//! Who answers what:
//! - API Gateway, before the function runs: 401 (no valid token) and 403 (a required scope is
//!   missing) on routes with the JWT authorizer, 404 for a path no route matches, 413 for a body
//!   over 10 MB, 503 when the function times out. Its bodies are `application/json`
//!   `{"message": "…"}`.
//! - The function: the same codes as problem+json (it checks the claims again), 400 for a
//!   malformed body or query, 413/415/422 for bodies, 429 (per-user and per-sender limits) and
//!   503 (the store is unavailable; Redis loading, failing over, memory shedding), both with
//!   `Retry-After`.

use serde_json::{json, Map, Value};
use shared::error::PROBLEM_CONTENT_TYPE;

use super::operations;

/// Each operation's id, by path and method (utoipa would name them after the handler functions,
/// which repeat across modules).
const OPERATION_IDS: &[(&str, &str, &str)] = &[
    ("/v1/notifications", "post", "createNotification"),
    ("/v1/notifications/batch", "post", "createNotificationBatch"),
    ("/v1/notifications", "get", "listNotifications"),
    ("/v1/notifications/{id}", "get", "getNotification"),
    ("/v1/notifications/{id}", "patch", "patchNotification"),
    ("/v1/notifications/{id}", "delete", "deleteNotification"),
    ("/v1/notifications/mark-all-read", "post", "markAllRead"),
    ("/v1/notifications/counts", "get", "getCounts"),
    ("/v1/changes", "get", "listChanges"),
    ("/v1/preferences", "get", "getPreferences"),
    ("/v1/preferences", "put", "putPreferences"),
    ("/health", "get", "liveness"),
    ("/v1/health", "get", "readiness"),
    ("/v1/analytics", "get", "getAnalytics"),
    ("/v1/notifications/{id}/deliveries", "get", "listDeliveries"),
    ("/v1/notifications/{id}/click", "post", "recordClick"),
    ("/v1/push-subscriptions", "post", "createPushSubscription"),
    ("/v1/push-subscriptions", "get", "listPushSubscriptions"),
    (
        "/v1/push-subscriptions/{id}",
        "delete",
        "deletePushSubscription",
    ),
    ("/v1/push/vapid-public-key", "get", "getVapidPublicKey"),
    ("/v1/devices", "post", "createDevice"),
    ("/v1/devices", "get", "listDevices"),
    ("/v1/devices/{id}", "delete", "deleteDevice"),
    ("/v1/users/{userId}/contacts", "put", "putContacts"),
    ("/v1/users/{userId}", "delete", "eraseUser"),
    ("/v1/users/{userId}/export", "get", "exportUser"),
    ("/v1/me/export", "get", "exportMe"),
    ("/v1/unsubscribe", "post", "oneClickUnsubscribe"),
    ("/v1/webhooks", "post", "createWebhook"),
    ("/v1/webhooks", "get", "listWebhooks"),
    ("/v1/webhooks/{id}", "delete", "deleteWebhook"),
    (
        "/v1/webhooks/{id}/deliveries",
        "get",
        "listWebhookDeliveries",
    ),
    ("/v1/webhooks/{id}/replay", "post", "replayWebhook"),
    ("/v1/unsubscribe", "get", "unsubscribePage"),
    ("/v1/scheduled/{id}", "get", "getScheduled"),
    ("/v1/scheduled/{id}", "delete", "cancelScheduled"),
    ("/v1/scheduled/cancel", "post", "cancelScheduledByKey"),
    ("/v1/topics/{key}", "put", "putTopic"),
    ("/v1/topics/{key}", "get", "getTopic"),
    ("/v1/topics/{key}", "delete", "deleteTopic"),
    (
        "/v1/topics/{key}/subscribers",
        "post",
        "addTopicSubscribers",
    ),
    (
        "/v1/topics/{key}/subscribers",
        "delete",
        "removeTopicSubscribers",
    ),
    (
        "/v1/topics/{key}/subscribers",
        "get",
        "listTopicSubscribers",
    ),
    ("/v1/topics/{key}/notifications", "post", "broadcastToTopic"),
    ("/v1/me/topics", "get", "listMyTopics"),
    ("/v1/broadcasts/{id}", "get", "getBroadcast"),
    ("/v1/broadcasts/{id}/cancel", "post", "cancelBroadcast"),
];

fn problem() -> Value {
    json!({"schema": {"$ref": "#/components/schemas/Problem"}})
}

fn gateway_message() -> Value {
    json!({"schema": {"$ref": "#/components/schemas/GatewayMessage"}})
}

fn retry_after(required: bool) -> Value {
    json!({"Retry-After": {"description": "Seconds to wait before retrying", "required": required,
        "schema": {"type": "integer", "minimum": 1}}})
}

/// One answer many routes give, declared once under `components.responses`.
struct Shared {
    name: &'static str,
    status: &'static str,
    description: &'static str,
    /// API Gateway gives it too, with its `{"message": …}` body.
    from_gateway: bool,
    /// `Some(required)`: it carries `Retry-After`.
    retry_after: Option<bool>,
}

const fn shared(
    name: &'static str,
    status: &'static str,
    description: &'static str,
    from_gateway: bool,
    retry_after: Option<bool>,
) -> Shared {
    Shared {
        name,
        status,
        description,
        from_gateway,
        retry_after,
    }
}

const SHARED: &[Shared] = &[
    shared("BadRequest", "400", "The body is not JSON or not UTF-8, or a query parameter is malformed", false, None),
    shared("Unauthorized", "401", "No valid token (the gateway), or its subject is not a valid user id (the function)", true, None),
    shared("Forbidden", "403", "The token lacks the scope this route requires", true, None),
    shared("NotFound", "404", "No such resource of the caller's, or no route for this path (the gateway)", true, None),
    shared("PayloadTooLarge", "413", "The body is larger than this route accepts (the gateway: over 10 MB)", true, None),
    shared("UnsupportedMediaType", "415", "The body is not `application/json`", false, None),
    shared("Unprocessable", "422", "Well-formed JSON that breaks a rule; `errors` names each field", false, None),
    shared("TooManyRequests", "429", "A per-user or per-sender rate limit; retry after `Retry-After` seconds", false, Some(true)),
    shared("Unavailable", "503", "The store is unavailable for a while (unreachable, loading, failing over, shedding load), or the function timed out (the gateway, without `Retry-After`); retry", true, Some(false)),
];

pub(super) fn apply(doc: &mut Value) {
    let components = &mut doc["components"];
    components["schemas"]["GatewayMessage"] = json!({"type": "object",
        "description": "API Gateway's own refusal, before the function runs",
        "required": ["message"], "properties": {"message": {"type": "string"}}});
    for answer in SHARED {
        components["responses"][answer.name] = shared_response(answer);
    }
    components["securitySchemes"]["jwt"] = json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "A JWT from the deployment's issuer; `sub` is the caller's user id. Scopes (`scope`/`scp`): \
            `notifications:write` (create, contacts, any notification's deliveries), `analytics:read`, `health:read`, \
            `users:admin` (erase and export any user); \
            `webhooks:admin` (the outbound webhooks); \
            the inbox routes need none."});

    for (path, method, op) in operations(doc) {
        if let Some((_, _, id)) = OPERATION_IDS
            .iter()
            .find(|(p, m, _)| *p == path && *m == method)
        {
            op["operationId"] = json!(id);
        }
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        // 403 only where every way in needs a scope.
        let scoped = secured
            && op["security"].as_array().is_some_and(|s| {
                s.iter()
                    .all(|r| r["jwt"].as_array().is_some_and(|x| !x.is_empty()))
            });
        let has_body = op.get("requestBody").is_some();
        let has_query = op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["in"] == "query"));
        let wanted = [
            ("BadRequest", has_body || has_query),
            ("Unauthorized", secured),
            ("Forbidden", scoped),
            ("NotFound", true),
            ("PayloadTooLarge", true),
            ("UnsupportedMediaType", has_body),
            ("Unprocessable", has_body),
            ("TooManyRequests", path.starts_with("/v1/")),
            ("Unavailable", true),
        ];
        for (name, applies) in wanted {
            let Some(answer) = SHARED.iter().find(|s| s.name == name).filter(|_| applies) else {
                continue;
            };
            let responses = &mut op["responses"];
            match responses.get_mut(answer.status) {
                // The route's own description stays; the shared bodies and headers join it.
                Some(own) if own.get("$ref").is_none() => {
                    merge_content(own, &shared_response(answer))
                }
                Some(_) => {}
                None => {
                    responses[answer.status] =
                        json!({"$ref": format!("#/components/responses/{name}")});
                }
            }
        }
    }
    headers_and_links(doc);
}

/// The response object of a shared answer.
fn shared_response(answer: &Shared) -> Value {
    let mut content = Map::new();
    content.insert(PROBLEM_CONTENT_TYPE.into(), problem());
    if answer.from_gateway {
        content.insert("application/json".into(), gateway_message());
    }
    let mut response = json!({"description": answer.description, "content": content});
    if let Some(required) = answer.retry_after {
        response["headers"] = retry_after(required);
    }
    response
}

/// Adds `shared`'s content types and headers that `own` lacks.
fn merge_content(own: &mut Value, shared: &Value) {
    for key in ["content", "headers"] {
        if let Some(extra) = shared[key].as_object() {
            if !own[key].is_object() {
                own[key] = json!({});
            }
            for (k, v) in extra {
                if own[key].get(k).is_none() {
                    own[key][k] = v.clone();
                }
            }
        }
    }
}

fn header(description: &str, schema: Value, required: bool) -> Value {
    json!({"description": description, "required": required, "schema": schema})
}

/// `ETag`/`If-Match`/412 on preferences, `Location` and `Idempotent-Replayed` on creates, and the
/// links from a created resource to the operations on it.
fn headers_and_links(doc: &mut Value) {
    let paths = &mut doc["paths"];
    let etag = header(
        "The preferences' version; send it back as `If-Match` to update only that version",
        json!({"type": "string"}),
        false,
    );
    paths["/v1/preferences"]["get"]["responses"]["200"]["headers"]["ETag"] = etag.clone();
    let put = &mut paths["/v1/preferences"]["put"];
    put["responses"]["200"]["headers"]["ETag"] = etag;
    put["responses"]["412"] = json!({"description": "`If-Match` names a version that is no longer current; GET them again",
        "content": {PROBLEM_CONTENT_TYPE: problem()}});
    let if_match = json!({"name": "If-Match", "in": "header", "required": false,
        "description": "Replace only if the preferences still have this `ETag` (412 otherwise)",
        "schema": {"type": "string"}});
    match put["parameters"].as_array_mut() {
        Some(ps) => ps.push(if_match),
        None => put["parameters"] = json!([if_match]),
    }

    let created = &mut paths["/v1/notifications"]["post"]["responses"]["201"];
    created["headers"]["Location"] = header(
        "The new notification's URL (absent on a replay)",
        json!({"type": "string"}),
        false,
    );
    created["headers"]["Idempotent-Replayed"] = header(
        "`true` when this answer replays an earlier request with the same `Idempotency-Key`",
        json!({"type": "string", "enum": ["true"]}),
        false,
    );
    let by_id = |op: &str, description: &str| json!({"operationId": op, "parameters": {"id": "$response.body#/id"}, "description": description});
    created["links"] = json!({
        "get": by_id("getNotification", "The notification as the recipient sees it"),
        "patch": by_id("patchNotification", "Mark it read, seen or archived"),
        "delete": by_id("deleteNotification", "Delete it"),
        "deliveries": by_id("listDeliveries", "Its outcomes across channels"),
        "click": by_id("recordClick", "Record a click on it"),
    });
    let scheduled = &mut paths["/v1/notifications"]["post"]["responses"]["202"];
    scheduled["headers"]["Location"] =
        header("The scheduled send's URL", json!({"type": "string"}), false);
    scheduled["links"] = json!({
        "get": by_id("getScheduled", "Its status"),
        "cancel": by_id("cancelScheduled", "Cancel it"),
    });
    for status in ["201", "200"] {
        let subscribed = &mut paths["/v1/push-subscriptions"]["post"]["responses"][status];
        subscribed["headers"]["Location"] =
            header("The subscription's URL", json!({"type": "string"}), false);
        subscribed["links"] =
            json!({"unsubscribe": by_id("deletePushSubscription", "Remove this subscription")});
    }
    for status in ["201", "200"] {
        let registered = &mut paths["/v1/devices"]["post"]["responses"][status];
        registered["headers"]["Location"] =
            header("The device's URL", json!({"type": "string"}), false);
        registered["links"] = json!({"delete": by_id("deleteDevice", "Remove this device")});
    }
    let webhook = &mut paths["/v1/webhooks"]["post"]["responses"]["201"];
    webhook["headers"]["Location"] = header("The webhook's URL", json!({"type": "string"}), false);
    webhook["links"] = json!({
        "delete": by_id("deleteWebhook", "Remove this webhook"),
        "deliveries": by_id("listWebhookDeliveries", "Its latest delivery attempts"),
        "replay": by_id("replayWebhook", "Send a window of its events again"),
    });
}
