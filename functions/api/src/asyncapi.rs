//! The AsyncAPI 3.0 document of the WebSocket API, generated from the frame and action types of
//! [`shared::protocol`] (their `ToSchema`), so it cannot drift from them. Served at
//! `GET /asyncapi.json`, next to `/openapi.json`.
//!
//! The document describes Herald's side of one connection: it *sends* every [`Frame`] variant
//! (one message each, named by its `type`) and *receives* every [`Action`] variant (one message
//! each, `action.<name>`). Every message carries examples built from real values: each frame,
//! each action, and an `error` frame for every [`ErrorCode`].

use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use shared::model::{Channel, Counts, FlagsPatch, Notification, Priority};
use shared::protocol::frames::{AllRead, ErrorCode};
use shared::protocol::{Action, Frame, FRAME_MAX_BYTES};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

/// The document, built once per process.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

/// The name of the message a server frame is sent as (its `type`).
pub fn frame_message(frame: &Value) -> Option<&str> {
    frame["type"].as_str()
}

/// The schema of `T` and of every schema it references, as JSON.
fn schemas<T: ToSchema>(into: &mut Map<String, Value>) {
    let mut found: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut found);
    found.push((T::name().into_owned(), T::schema()));
    for (name, schema) in found {
        into.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
}

/// The variants of a tagged enum's `oneOf`, by their tag value.
fn variants(schema: &Value, tag: &str) -> Vec<(String, Value)> {
    schema["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variant| {
            let name = variant["properties"][tag]["enum"][0].as_str()?;
            Some((name.to_owned(), variant.clone()))
        })
        .collect()
}

fn example_notification() -> Notification {
    Notification {
        id: "01939f3e-7c2a-7e21-9d2f-4b8e5a6c1d00".into(),
        seq: 42,
        user_id: "alice".into(),
        kind: "comment.reply".into(),
        title: "Bob replied to your comment".into(),
        body: "Sounds good to me.".into(),
        data: json!({"postId": 7}),
        channels: vec![Channel::InApp, Channel::Push],
        priority: Priority::Normal,
        action_url: Some("/posts/7#comment-3".into()),
        group_key: None,
        expires_at: None,
        read: false,
        seen: false,
        archived: false,
        created_at: chrono::DateTime::from_timestamp(1_764_417_600, 0).unwrap_or_default(),
        escalate: None,
        digest: None,
        schedule: None,
    }
}

fn example_counts(version: u64) -> Counts {
    Counts {
        unread: 3,
        unseen: 1,
        total: 12,
        by_type: [("comment.reply".to_owned(), 3)].into_iter().collect(),
        version,
    }
}

/// One or more real frames of every kind, and an `error` frame for every code.
fn example_frames() -> Vec<Frame> {
    let notification = example_notification();
    let created = Frame::Created {
        seq: 42,
        id: notification.id.clone(),
        notification: Some(Box::new(notification.clone())),
        counts: example_counts(42),
    };
    let updated = Frame::Updated {
        seq: 43,
        id: notification.id.clone(),
        changes: FlagsPatch {
            read: Some(true),
            seen: Some(true),
            archived: None,
        },
        counts: example_counts(43),
        digest: None,
    };
    let mut frames = vec![
        created.clone(),
        created.compact(),
        updated.clone(),
        Frame::Deleted {
            seq: 44,
            id: notification.id.clone(),
            counts: example_counts(44),
        },
        Frame::Counts {
            seq: 45,
            counts: example_counts(45),
            all_read: Some(AllRead {
                notification_type: Some("comment.reply".into()),
            }),
        },
        Frame::SyncResult {
            changes: vec![created, updated],
            up_to: 43,
            more: false,
        },
        Frame::Resync { head: 1_200 },
        Frame::Pong {},
    ];
    let codes = serde_json::to_value(ErrorCode::schema()).unwrap_or_default();
    for code in codes["enum"].as_array().into_iter().flatten() {
        match serde_json::from_value::<ErrorCode>(code.clone()) {
            Ok(ErrorCode::RateLimited) => frames.push(Frame::rate_limited("markRead", 3)),
            Ok(code) => frames.push(Frame::error(
                code,
                format!("{} (example)", code_text(code)),
                Some("markRead"),
            )),
            Err(_) => {}
        }
    }
    frames
}

/// What each error code means; the compiler makes sure every code has a line.
fn code_text(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadFrame => "not a JSON object with a string `action`",
        ErrorCode::UnknownAction => "no such action",
        ErrorCode::Invalid => "a field is missing or has the wrong type or size",
        ErrorCode::NotFound => "no such notification in the caller's inbox",
        ErrorCode::Unavailable => "a dependency failed; retry later",
        ErrorCode::Unauthorized => "the connection is no longer registered; reconnect",
        ErrorCode::RateLimited => "over the user's action limit; retry after `retryAfter` seconds",
    }
}

fn example_actions() -> Vec<Action> {
    let id = example_notification().id;
    vec![
        Action::Sync { since: 41 },
        Action::MarkRead { id: id.clone() },
        Action::MarkSeen {
            ids: vec![id.clone()],
        },
        Action::MarkAllRead {
            notification_type: None,
        },
        Action::MarkAllRead {
            notification_type: Some("comment.reply".into()),
        },
        Action::Archive { id: id.clone() },
        Action::Click { id },
        Action::Ping {},
    ]
}

fn message(name: &str, payload: Value, examples: Vec<Value>) -> Value {
    let examples: Vec<Value> = examples
        .into_iter()
        .enumerate()
        .map(|(i, payload)| json!({"name": format!("{}-{}", name.replace('.', "-"), i + 1), "payload": payload}))
        .collect();
    let mut message = json!({"name": name, "title": name, "contentType": "application/json",
        "payload": payload, "examples": examples});
    if let Some(description) = message["payload"]["description"]
        .as_str()
        .map(str::to_owned)
    {
        message["summary"] = json!(description);
    }
    message
}

fn build() -> Value {
    let mut components = Map::new();
    schemas::<Frame>(&mut components);
    schemas::<Action>(&mut components);
    // utoipa writes OpenAPI's `#/components/schemas/…` references: the same place here.
    let frame_schema = components.get("Frame").cloned().unwrap_or_default();
    let action_schema = components.get("Action").cloned().unwrap_or_default();
    let frames: Vec<Value> = example_frames()
        .iter()
        .map(|f| serde_json::to_value(f).unwrap_or_default())
        .collect();
    let actions: Vec<Value> = example_actions()
        .iter()
        .map(|a| serde_json::to_value(a).unwrap_or_default())
        .collect();

    let mut messages = Map::new();
    let mut channel_messages = Map::new();
    let mut operations = Map::new();
    for (kind, mut payload) in variants(&frame_schema, "type") {
        // The server sends exactly these fields.
        payload["additionalProperties"] = json!(false);
        let examples = frames
            .iter()
            .filter(|f| frame_message(f) == Some(kind.as_str()))
            .cloned()
            .collect();
        messages.insert(kind.clone(), message(&kind, payload, examples));
        channel_messages.insert(
            kind.clone(),
            json!({"$ref": format!("#/components/messages/{kind}")}),
        );
        operations.insert(
            format!("send.{kind}"),
            json!({"action": "send",
            "channel": {"$ref": "#/channels/inbox"},
            "messages": [{"$ref": format!("#/channels/inbox/messages/{kind}")}]}),
        );
    }
    for (action, payload) in variants(&action_schema, "action") {
        let name = format!("action.{action}");
        let examples = actions
            .iter()
            .filter(|a| a["action"] == action.as_str())
            .cloned()
            .collect();
        messages.insert(name.clone(), message(&name, payload, examples));
        channel_messages.insert(
            name.clone(),
            json!({"$ref": format!("#/components/messages/{name}")}),
        );
        let replies: &[&str] = match action.as_str() {
            "sync" => &["sync.result", "resync", "error"],
            "ping" => &["pong"],
            _ => &["error"],
        };
        operations.insert(format!("receive.{action}"), json!({"action": "receive",
            "channel": {"$ref": "#/channels/inbox"},
            "messages": [{"$ref": format!("#/channels/inbox/messages/{name}")}],
            "reply": {"channel": {"$ref": "#/channels/inbox"},
                "messages": replies.iter().map(|r| json!({"$ref": format!("#/channels/inbox/messages/{r}")})).collect::<Vec<_>>()}}));
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "Herald realtime",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("One WebSocket connection per open inbox (API Gateway WebSocket API). \
                Herald sends a frame for every change to the user's inbox, each carrying the user's `seq`: \
                apply frames in `seq` order, drop a `seq` already applied, `sync` from the last applied one \
                on a gap. Clients send actions (route selection `$request.body.action`); a refused action \
                is answered with an `error` frame and the connection stays open. No frame exceeds \
                {FRAME_MAX_BYTES} bytes. See docs/realtime.md."),
        },
        "defaultContentType": "application/json",
        "servers": {
            "devstack": {"host": "127.0.0.1:3001", "pathname": "/local", "protocol": "ws",
                "description": "scripts/dev", "security": [{"$ref": "#/components/securitySchemes/token"}]},
            "aws": {"host": "{apiId}.execute-api.{region}.amazonaws.com", "pathname": "/{stage}", "protocol": "wss",
                "description": "A deployed stack (the WebSocketUrl output)",
                "variables": {"apiId": {}, "region": {"default": "eu-west-1"}, "stage": {"default": "prod"}},
                "security": [{"$ref": "#/components/securitySchemes/token"}]},
        },
        "channels": {
            "inbox": {"address": "/", "title": "The caller's inbox",
                "description": "Frames about the token subject's inbox, and the actions on it",
                "messages": channel_messages,
                "bindings": {"ws": {"query": {"type": "object", "required": ["token"],
                    "properties": {"token": {"type": "string", "description": "The JWT (the $connect authorizer checks it)"}}}}}},
        },
        "operations": operations,
        "components": {
            "schemas": components,
            "messages": messages,
            "securitySchemes": {"token": {"type": "httpApiKey", "name": "token", "in": "query",
                "description": "The same JWT as the HTTP API's, as the `token` query parameter of the handshake"}},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_action_and_error_code_is_a_message_with_examples() {
        let doc = document();
        let messages = doc["components"]["messages"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for frame in example_frames() {
            let value = serde_json::to_value(&frame).unwrap_or_default();
            let kind = frame_message(&value).unwrap_or_default();
            assert!(messages.contains_key(kind), "no message {kind}");
        }
        for action in example_actions() {
            assert!(
                messages.contains_key(&format!("action.{}", action.name())),
                "no message for {}",
                action.name()
            );
        }
        for (name, message) in &messages {
            assert!(
                message["examples"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty()),
                "{name} has no example"
            );
            let op = if name.starts_with("action.") {
                format!("receive.{}", name.trim_start_matches("action."))
            } else {
                format!("send.{name}")
            };
            assert!(doc["operations"].get(&op).is_some(), "no operation {op}");
        }
        assert_eq!(messages.len(), 8 + 7, "8 frames and 7 actions");
        let codes: Vec<&Value> = messages["error"]["examples"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["payload"]["code"])
            .collect();
        let every_code = serde_json::to_value(ErrorCode::schema()).unwrap_or_default();
        let every_code = every_code["enum"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            codes,
            every_code.iter().collect::<Vec<_>>(),
            "one error example per code"
        );
    }

    #[test]
    fn example_actions_are_what_the_server_parses() {
        for action in example_actions() {
            let text = serde_json::to_string(&action).unwrap_or_default();
            assert_eq!(Action::parse(&text), Ok(action), "{text}");
        }
    }
}
