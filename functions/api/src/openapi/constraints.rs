//! What the handlers enforce, stated in the document: every range, length, pattern and enum comes
//! from [`shared::limits`], [`shared::addresses`] and the model's own vocabularies, so a limit
//! changed there changes the document too.
//!
//! Lengths: JSON Schema counts characters. `title` is limited in characters, as here; `body`,
//! `actionUrl` and `groupKey` are limited in UTF-8 bytes, which JSON Schema cannot count, so their
//! `maxLength` is the byte limit (exact for ASCII; a text of multi-byte characters may reach the
//! byte limit first, and its description says so).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use shared::addresses::{AUTH_SECRET_BYTES, EMAIL_MAX_BYTES, P256DH_BYTES};
use shared::devices::{
    APNS_TOKEN_CHARS, APP_ID_MAX_CHARS, FCM_TOKEN_MAX_CHARS, FCM_TOKEN_MIN_CHARS,
};
use shared::escalation;
use shared::limits::{
    BATCH_MAX_RECIPIENTS, BODY_MAX_BYTES, BROADCAST_MAX_PER_SECOND, CHANGES_MAX_LIMIT,
    GROUP_KEY_MAX_BYTES, IDEMPOTENCY_KEY_MAX_BYTES, LIST_MAX_LIMIT, SUBSCRIBERS_MAX_LIMIT,
    TITLE_MAX_CHARS, TOPIC_KEY_MAX_BYTES, TOPIC_MAX_IDS_PER_CALL, TOPIC_NAME_MAX_CHARS,
    TYPE_MAX_BYTES, URL_MAX_BYTES, USER_ID_MAX_BYTES,
};
use shared::model::Channel;
use shared::webhooks::WebhookEventType;

/// The characters [`shared::limits::forbidden_char`] refuses in a one-line text: C0, DEL and C1
/// controls, U+2028, U+2029.
pub(super) const FORBIDDEN: &[(char, char)] = &[
    ('\u{0}', '\u{1f}'),
    ('\u{7f}', '\u{9f}'),
    ('\u{2028}', '\u{2029}'),
];
/// The same for a multi-line text (`body`): tab and line feed are allowed.
pub(super) const FORBIDDEN_MULTILINE: &[(char, char)] = &[
    ('\u{0}', '\u{8}'),
    ('\u{b}', '\u{1f}'),
    ('\u{7f}', '\u{9f}'),
    ('\u{2028}', '\u{2029}'),
];
/// [`char::is_whitespace`]: Unicode's White_Space.
pub(super) const WHITESPACE: &[(char, char)] = &[
    ('\t', '\r'),
    (' ', ' '),
    ('\u{85}', '\u{85}'),
    ('\u{a0}', '\u{a0}'),
    ('\u{1680}', '\u{1680}'),
    ('\u{2000}', '\u{200a}'),
    ('\u{2028}', '\u{2029}'),
    ('\u{202f}', '\u{202f}'),
    ('\u{205f}', '\u{205f}'),
    ('\u{3000}', '\u{3000}'),
];

/// The ranges as the inside of a regex character class, `\uXXXX-\uXXXX…` (ECMA-262 and Python
/// read it alike).
fn class(ranges: &[&[(char, char)]]) -> String {
    ranges
        .iter()
        .flat_map(|r| r.iter())
        .map(|&(a, b)| {
            if a == b {
                format!("\\u{:04x}", a as u32)
            } else {
                format!("\\u{:04x}-\\u{:04x}", a as u32, b as u32)
            }
        })
        .collect()
}

/// [`shared::limits::valid_user_id`]: printable ASCII without space or braces.
const USER_ID_PATTERN: &str = "^[!-z|~]+$";
/// [`shared::limits::valid_topic_key`].
const TOPIC_KEY_PATTERN: &str = "^[A-Za-z0-9._:-]+$";
/// [`shared::limits::valid_type`].
const TYPE_PATTERN: &str = "^[a-z0-9._-]+$";

fn user_id() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": USER_ID_MAX_BYTES, "pattern": USER_ID_PATTERN,
           "description": "Printable ASCII without spaces or braces"})
}

fn topic_key() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": TOPIC_KEY_MAX_BYTES, "pattern": TOPIC_KEY_PATTERN,
           "description": "Letters, digits, `.`, `_`, `:` and `-`"})
}

fn notification_type() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": TYPE_MAX_BYTES, "pattern": TYPE_PATTERN,
           "description": "Lower-case identifier: a–z, 0–9, `.`, `_`, `-`; for example `comment.reply`"})
}

/// The opaque cursor [`crate::http::encode_cursor`] issues: base64url of `v1:` and the decimal
/// seq (1 to 19 digits). Built from the encoding itself: the prefix encodes alone (3 bytes), then
/// each group of three digits encodes to four characters whose first two carry the first digit
/// and whose third and fourth carry one digit each.
pub(super) fn cursor_pattern() -> String {
    let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let digits = || (0..10).map(|d| d.to_string());
    let alternatives = |f: &dyn Fn(String) -> String| {
        let mut all: Vec<String> = digits().map(f).collect();
        all.dedup();
        format!("(?:{})", all.join("|"))
    };
    let chars = |f: &dyn Fn(String) -> char| {
        let set: String = digits().map(f).collect();
        format!("[{set}]")
    };
    let first = alternatives(&|d| enc(&format!("{d}00"))[..2].to_owned());
    let second = chars(&|d| enc(&format!("0{d}0")).chars().nth(2).unwrap_or('A'));
    let third = chars(&|d| enc(&format!("00{d}")).chars().nth(3).unwrap_or('A'));
    let triple = format!("{first}{second}{third}");
    let one = alternatives(&|d| enc(&d));
    let two = format!("{first}{second}");
    let prefix = enc("v1:");
    format!("^{prefix}(?:(?:{triple}){{1,6}}|(?:{triple}){{0,6}}{one}|(?:{triple}){{0,5}}{two})$")
}

/// Every component schema and parameter constrained as the handlers check it.
pub(super) fn apply(doc: &mut Value) {
    rename_schema(doc, "BTreeMap", "ChannelSwitches");
    let schemas = &mut doc["components"]["schemas"];
    let one_line = class(&[FORBIDDEN]);
    let one_line_or_space = class(&[FORBIDDEN, WHITESPACE]);
    let multiline = class(&[FORBIDDEN_MULTILINE]);

    if let Some(create) = schemas.get_mut("CreateRequest").map(Value::take) {
        let mut content = create;
        let props = &mut content["properties"];
        props["type"] = notification_type();
        props["title"] = json!({"type": "string", "minLength": 1, "maxLength": TITLE_MAX_CHARS,
            "pattern": format!("^[^{one_line}]*[^{one_line_or_space}][^{one_line}]*$"),
            "description": "At most 200 characters, not only whitespace; no control characters or line/paragraph separators"});
        props["body"] = json!({"type": "string", "maxLength": BODY_MAX_BYTES,
            "pattern": format!("^[^{multiline}]*$"),
            "description": format!("At most {BODY_MAX_BYTES} bytes of UTF-8; no control characters or line/paragraph separators except tab and line feed")});
        props["channels"] = json!({"type": ["array", "null"], "items": {"$ref": "#/components/schemas/Channel"},
            "minItems": 1, "uniqueItems": true, "description": "Defaults to `[IN_APP]`. IN_APP is always stored."});
        props["actionUrl"] = json!({"type": ["string", "null"], "maxLength": URL_MAX_BYTES,
            "pattern": format!("^(?:https?://[^{one_line_or_space}]*|/(?:[^/{one_line_or_space}][^{one_line_or_space}]*)?)$"),
            "description": format!("An `https://`/`http://` URL or an absolute path (not `//…`), at most {URL_MAX_BYTES} bytes; no whitespace or control characters")});
        props["groupKey"] = json!({"type": ["string", "null"], "minLength": 1, "maxLength": GROUP_KEY_MAX_BYTES,
            "pattern": format!("^[^{one_line}]+$"),
            "description": format!("1–{GROUP_KEY_MAX_BYTES} bytes; no control characters or line/paragraph separators")});
        props["expiresAt"] = json!({"type": ["string", "null"], "format": "date-time",
            "description": "Must be in the future (RFC 3339)"});
        let off_app = json!({"type": "array", "minItems": 1, "uniqueItems": true,
            "items": {"type": "string", "enum": [Channel::Push.as_str(), Channel::Email.as_str(), Channel::Sms.as_str()]}});
        props["escalate"] = json!({"type": ["array", "null"], "minItems": 1, "maxItems": escalation::MAX_STEPS,
            "description": "Send on more channels later unless the notification was read (or seen) by then, \
                            archived or deleted; each step at most once (see `GET /v1/notifications/{id}/deliveries`)",
            "items": {"type": "object", "additionalProperties": false, "required": ["after", "channels"],
                "properties": {
                    "after": {"type": "string", "pattern": escalation::DURATION_PATTERN,
                        "description": "After the notification's creation: a whole number and `s`, `m`, `h` or `d`, at most 7 days"},
                    "unless": {"type": "string", "enum": ["read", "seen"], "default": "read"},
                    "channels": off_app}}});
        props["digest"] = json!({"type": ["object", "null"], "additionalProperties": false, "required": ["key", "window"],
            "description": "Collapse this recipient's events with the same key into one inbox item while its window is open; \
                            its PUSH, EMAIL and SMS send once when the window closes. Ignored for `urgent` notifications",
            "properties": {
                "key": {"type": "string", "minLength": 1, "maxLength": GROUP_KEY_MAX_BYTES,
                    "pattern": format!("^[^{one_line}]+$")},
                "window": {"type": "string", "pattern": escalation::DURATION_PATTERN,
                    "description": "From `10s` to `24h`, counted from the item's first event"}}});
        props["sendAt"] = json!({"anyOf": [{"type": "string", "format": "date-time"}, {"const": "optimal"}, {"type": "null"}],
            "description": "Send later: an RFC 3339 date-time in the future, at most 30 days ahead, or `optimal` (the moment within `within` when the recipient most often reads); the create then answers 202 and the recipient sees nothing until then"});
        props["within"] = json!({"type": ["string", "null"], "pattern": "^[0-9]{1,9}[smhd]$",
            "description": "Only with `sendAt: optimal`: the window to choose in, above 0 and at most `7d`; default `24h`"});
        props["cancelKey"] = json!({"type": ["string", "null"], "minLength": 1, "maxLength": shared::schedule::CANCEL_KEY_MAX_BYTES,
            "pattern": format!("^[^{one_line}]+$"),
            "description": format!("Only with `sendAt`: 1–{} bytes naming a group of scheduled sends for `POST /v1/scheduled/cancel`; no control characters or line/paragraph separators", shared::schedule::CANCEL_KEY_MAX_BYTES)});
        if let Some(p) = props.as_object_mut() {
            p.remove("userId");
            p.remove("userIds");
        }
        let with = |name: &str, schema: Value, description: &str| {
            let mut s = content.clone();
            s["description"] = json!(description);
            let mut props = serde_json::Map::new();
            props.insert(name.to_owned(), schema);
            props.extend(s["properties"].as_object().cloned().unwrap_or_default());
            s["properties"] = Value::Object(props);
            let mut required = vec![json!(name)];
            required.extend(s["required"].as_array().cloned().unwrap_or_default());
            s["required"] = Value::Array(required);
            s
        };
        schemas["CreateNotificationRequest"] = with(
            "userId",
            user_id(),
            "The body of `POST /v1/notifications`: one recipient. Unknown fields are refused.",
        );
        let mut broadcast = content.clone();
        broadcast["description"] = json!("The body of `POST /v1/topics/{key}/notifications`: the create body without a recipient (every subscriber is one), plus `maxPerSecond`. Unknown fields are refused.");
        broadcast["properties"]["maxPerSecond"] = json!({"type": ["integer", "null"], "minimum": 1, "maximum": BROADCAST_MAX_PER_SECOND,
            "description": "At most this many recipients a second (protects API Gateway's @connections throttling); unlimited when absent"});
        // One moment for every subscriber: no per-recipient `optimal`, and a broadcast is
        // cancelled by its id, not a `cancelKey` (both are 422).
        broadcast["properties"]["sendAt"] = json!({"type": ["string", "null"], "format": "date-time",
            "description": "Start later: an RFC 3339 date-time in the future, at most 30 days ahead (not `optimal`); the broadcast answers 202 `scheduled` and goes, at that moment, to the topic's subscribers then"});
        if let Some(p) = broadcast["properties"].as_object_mut() {
            p.remove("within");
            p.remove("cancelKey");
        }
        schemas["BroadcastRequest"] = broadcast;
        schemas["CreateNotificationBatchRequest"] = with(
            "userIds",
            json!({"type": "array", "items": user_id(), "minItems": 1, "maxItems": BATCH_MAX_RECIPIENTS,
                   "description": format!("1 to {BATCH_MAX_RECIPIENTS} recipients, duplicates ignored (more is 413)")}),
            "The body of `POST /v1/notifications/batch`: the same notification for each recipient. Unknown fields are refused.",
        );
        if let Some(s) = schemas.as_object_mut() {
            s.remove("CreateRequest");
        }
    }
    for (path, schema) in [
        ("/v1/notifications", "CreateNotificationRequest"),
        ("/v1/notifications/batch", "CreateNotificationBatchRequest"),
        ("/v1/topics/{key}/notifications", "BroadcastRequest"),
    ] {
        doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"] =
            json!({"$ref": format!("#/components/schemas/{schema}")});
    }

    let schemas = &mut doc["components"]["schemas"];
    // A `NOTIFICATION_UPDATED` record's `changes` is the patch as applied: empty when a digest
    // item collected one more event. The request rule below is not its rule.
    let applied = schemas["FlagsPatch"].clone();
    if let Some(variants) = schemas["Event"]["oneOf"].as_array_mut() {
        for variant in variants {
            // `get_mut`, not indexing: indexing a missing key would insert a null.
            let changes = variant
                .get_mut("properties")
                .and_then(|p| p.get_mut("payload"))
                .and_then(|p| p.get_mut("properties"))
                .and_then(|p| p.get_mut("changes"));
            if let Some(changes) = changes.filter(|c| c.get("$ref").is_some()) {
                *changes = applied.clone();
            }
        }
    }
    // An empty patch, or one whose fields are all null, changes nothing: 422.
    schemas["FlagsPatch"]["anyOf"] = json!(["read", "seen", "archived"]
        .iter()
        .map(|f| json!({"required": [f], "properties": {*f: {"type": "boolean"}}}))
        .collect::<Vec<_>>());
    schemas["CancelByKeyRequest"]["properties"]["cancelKey"] = json!({"type": "string",
        "minLength": 1, "maxLength": shared::schedule::CANCEL_KEY_MAX_BYTES,
        "description": format!("The `cancelKey` the creates carried: 1–{} bytes", shared::schedule::CANCEL_KEY_MAX_BYTES)});
    schemas["MarkAllReadRequest"]["properties"]["type"] = notification_type();
    schemas["MarkAllReadRequest"]["properties"]["type"]["type"] = json!(["string", "null"]);
    schemas["ChannelSwitches"] = json!({"type": "object",
        "description": "Channel → allowed; an absent channel is allowed",
        "propertyNames": {"enum": Channel::ALL.map(Channel::as_str)},
        "additionalProperties": {"type": "boolean"}});
    schemas["Preferences"]["properties"]["topics"]["propertyNames"] = topic_key();
    schemas["Preferences"]["properties"]["topics"]["description"] =
        json!("Topic key → `false` to mute it: its broadcasts skip you");
    schemas["SubscribersRequest"]["properties"]["userIds"] = json!({"type": "array", "items": user_id(),
        "minItems": 1, "maxItems": TOPIC_MAX_IDS_PER_CALL,
        "description": format!("1 to {TOPIC_MAX_IDS_PER_CALL} user ids, duplicates counted once (more is 413)")});
    schemas["TopicRequest"]["properties"]["name"] = json!({"type": ["string", "null"], "maxLength": TOPIC_NAME_MAX_CHARS,
        "pattern": format!("^[^{one_line}]*$"),
        "description": format!("At most {TOPIC_NAME_MAX_CHARS} characters, no control characters; absent keeps the current name")});
    schemas["Preferences"]["properties"]["types"]["propertyNames"] = json!({"type": "string", "minLength": 1, "maxLength": TYPE_MAX_BYTES, "pattern": TYPE_PATTERN});
    let time = json!({"type": "string", "pattern": "^(?:[01][0-9]|2[0-3]):[0-5][0-9]$",
                      "description": "`HH:MM`, 24-hour clock; start and end differ"});
    let quiet = &mut schemas["QuietHours"]["properties"];
    quiet["start"] = time.clone();
    quiet["end"] = time;
    quiet["timezone"] = json!({"type": "string", "description": "IANA timezone name, for example `Europe/Paris`",
        "enum": chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect::<Vec<_>>()});

    let label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    let atom = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+";
    let contacts = &mut schemas["Contacts"]["properties"];
    contacts["email"] = json!({"type": ["string", "null"], "maxLength": EMAIL_MAX_BYTES,
        "pattern": format!("^(?:{atom}(?:\\.{atom})*@{label}(?:\\.{label})+)?$"),
        // The local part's length, as a second pattern: the first cannot count across its dots.
        "allOf": [{"pattern": "^(?:[^@]{1,64}@.*)?$"}],
        "description": "`local@domain` (local part at most 64 characters); empty or null removes it"});
    contacts["phone"] = json!({"type": ["string", "null"], "pattern": "^(?:\\+[1-9][0-9]{1,14})?$",
        "description": "E.164: `+` then 2 to 15 digits, the first not 0; empty or null removes it"});

    let b64 = |bytes: usize| {
        let unpadded = (bytes * 8).div_ceil(6);
        let padded = bytes.div_ceil(3) * 4;
        json!({"type": "string", "minLength": unpadded, "maxLength": padded, "pattern": "^[A-Za-z0-9_-]+={0,2}$"})
    };
    schemas["PushKeys"]["properties"]["p256dh"] = b64(P256DH_BYTES);
    schemas["PushKeys"]["properties"]["p256dh"]["description"] = json!(
        "The browser's P-256 public key: 65 bytes, uncompressed (a point on the curve), base64url"
    );
    schemas["PushKeys"]["properties"]["auth"] = b64(AUTH_SECRET_BYTES);
    schemas["PushSubscriptionRequest"]["properties"]["endpoint"] = json!({"type": "string",
        "maxLength": URL_MAX_BYTES, "pattern": "^https?://[^\\s/?#@]+(?:[/?#]\\S*)?$",
        "description": "The push service's URL, `https://` on a public host (no credentials, no private or reserved IP literal; loopback over http(s) only where the deployment allows it)"});
    schemas["PushSubscriptionRequest"]["properties"]["expirationTime"] = json!({"type": ["number", "null"],
        "exclusiveMinimum": 0, "description": "When the push service expires it, ms since the epoch, in the future; usually null"});

    // One schema per platform, so each token's shape is exact for its platform.
    let app_id = json!({"type": ["string", "null"],
        "pattern": format!("^[A-Za-z0-9._-]{{1,{APP_ID_MAX_CHARS}}}$"),
        "description": "The app's bundle id or package name"});
    let device = |platform: &str, token: Value| {
        json!({"type": "object", "required": ["platform", "token"], "additionalProperties": false,
            "properties": {"platform": {"type": "string", "const": platform}, "token": token, "appId": app_id}})
    };
    schemas["DeviceRequest"] = json!({"oneOf": [
        device("ios", json!({"type": "string", "pattern": format!("^[0-9A-Fa-f]{{{APNS_TOKEN_CHARS}}}$"),
            "description": "The APNs device token, hex"})),
        device("android", json!({"type": "string",
            "pattern": format!("^[A-Za-z0-9_:-]{{{FCM_TOKEN_MIN_CHARS},{FCM_TOKEN_MAX_CHARS}}}$"),
            "description": "The FCM registration token"})),
    ]});

    webhooks(schemas);
    parameters(doc);
}

/// The webhook registration: an https URL on a public host and at least one known event.
fn webhooks(schemas: &mut Value) {
    let events: Vec<&str> = WebhookEventType::ALL.map(WebhookEventType::as_str).to_vec();
    let request = &mut schemas["WebhookRequest"];
    request["additionalProperties"] = json!(false);
    request["properties"]["url"] = json!({"type": "string", "maxLength": URL_MAX_BYTES,
        "pattern": "^https?://[^\\s/?#@]+(?:[/?#]\\S*)?$",
        "description": "Where to POST the events: `https://` on a public host (no credentials, no private or reserved IP literal, and a host name must resolve to public addresses only, checked at registration; loopback over http(s) only where the deployment allows it). At most 50 webhooks"});
    request["properties"]["events"] = json!({"type": "array", "minItems": 1,
        "items": {"type": "string", "enum": events},
        "description": "The event types to receive; a repeated one counts once"});
    schemas["ReplayRequest"]["additionalProperties"] = json!(false);
}

/// Query, path and header parameters, as the handlers parse them. An empty query value counts as
/// absent ([`crate::http::query`]).
fn parameters(doc: &mut Value) {
    let notification_type = json!({"type": "string", "maxLength": TYPE_MAX_BYTES,
        "pattern": TYPE_PATTERN, "description": "Only this type"});
    let limit = |max: usize| json!({"type": "integer", "minimum": 1, "maximum": max});
    // Visible ASCII, spaces and tabs inside (`HeaderValue::to_str`); HTTP strips the whitespace
    // around a header value before the API reads it.
    let idempotency_key = json!({"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX_BYTES,
        "pattern": "^[\\t ]*[!-~](?:[\\t -~]*[!-~])?[\\t ]*$"});
    let date =
        json!({"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"});
    // `base64url(payload) "." base64url(HMAC-SHA256)`; only the deployment's secret makes one valid.
    let unsubscribe_token = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{43}$",
        "description": "The signed token of an email's List-Unsubscribe link"});
    let table: Vec<(&str, &str, &str, Value)> = vec![
        (
            "/v1/notifications",
            "post",
            "Idempotency-Key",
            idempotency_key.clone(),
        ),
        (
            "/v1/notifications/batch",
            "post",
            "Idempotency-Key",
            idempotency_key.clone(),
        ),
        (
            "/v1/notifications",
            "get",
            "status",
            json!({"type": "string", "enum": ["all", "read", "unread"], "default": "all"}),
        ),
        (
            "/v1/notifications",
            "get",
            "archived",
            json!({"type": "string", "enum": ["false", "true", "all"], "default": "false"}),
        ),
        (
            "/v1/notifications",
            "get",
            "type",
            notification_type.clone(),
        ),
        ("/v1/notifications", "get", "limit", limit(LIST_MAX_LIMIT)),
        (
            "/v1/notifications",
            "get",
            "cursor",
            json!({"type": "string", "pattern": cursor_pattern()}),
        ),
        (
            "/v1/notifications/mark-all-read",
            "post",
            "type",
            notification_type.clone(),
        ),
        (
            "/v1/changes",
            "get",
            "since",
            json!({"type": "integer", "minimum": 0, "maximum": u64::MAX, "default": 0}),
        ),
        ("/v1/changes", "get", "limit", limit(CHANGES_MAX_LIMIT)),
        ("/v1/analytics", "get", "from", date.clone()),
        ("/v1/analytics", "get", "to", date),
        (
            "/v1/analytics",
            "get",
            "type",
            json!({"type": "string", "maxLength": TYPE_MAX_BYTES,
            "pattern": "^(?:[a-z0-9._-]+|\\(unknown\\))$"}),
        ),
        (
            "/v1/analytics",
            "get",
            "channel",
            json!({"type": "string", "enum": Channel::ALL.map(Channel::as_str)}),
        ),
        ("/v1/users/{userId}/contacts", "put", "userId", user_id()),
        ("/v1/users/{userId}", "delete", "userId", user_id()),
        ("/v1/users/{userId}/export", "get", "userId", user_id()),
        (
            "/v1/users/{userId}/export",
            "get",
            "cursor",
            json!({"type": "string", "pattern": cursor_pattern()}),
        ),
        (
            "/v1/me/export",
            "get",
            "cursor",
            json!({"type": "string", "pattern": cursor_pattern()}),
        ),
        (
            "/v1/topics/{key}/notifications",
            "post",
            "Idempotency-Key",
            idempotency_key.clone(),
        ),
        (
            "/v1/topics/{key}/subscribers",
            "get",
            "limit",
            limit(SUBSCRIBERS_MAX_LIMIT),
        ),
        (
            "/v1/topics/{key}/subscribers",
            "get",
            "cursor",
            json!({"type": "string",
                "pattern": crate::routes::topics::SUBSCRIBER_CURSOR_PATTERN}),
        ),
        ("/v1/unsubscribe", "get", "token", unsubscribe_token.clone()),
        ("/v1/unsubscribe", "post", "token", unsubscribe_token),
    ];
    let mut table = table;
    for path in [
        "/v1/topics/{key}",
        "/v1/topics/{key}/subscribers",
        "/v1/topics/{key}/notifications",
    ] {
        for method in ["get", "put", "post", "delete"] {
            if doc["paths"][path].get(method).is_some() {
                table.push((path, method, "key", topic_key()));
            }
        }
    }
    for (path, method, name, schema) in table {
        let param = doc["paths"][path][method]["parameters"]
            .as_array_mut()
            .and_then(|ps| ps.iter_mut().find(|p| p["name"] == name));
        match param {
            Some(p) => {
                p["schema"] = schema;
                // `since` defaults to 0: it is not required.
                if name == "since" {
                    p["required"] = json!(false);
                }
                // An empty optional query value counts as absent.
                if p["in"] == "query" && p["required"] != true {
                    p["allowEmptyValue"] = json!(true);
                }
            }
            None => debug_assert!(false, "{method} {path} has no parameter {name}"),
        }
    }
    // Mark-all-read's body is optional, and never null.
    let body = &mut doc["paths"]["/v1/notifications/mark-all-read"]["post"]["requestBody"];
    body["required"] = json!(false);
    body["content"]["application/json"]["schema"] =
        json!({"$ref": "#/components/schemas/MarkAllReadRequest"});
}

/// Renames a component schema and every reference to it (utoipa names a map alias after its
/// generic type).
fn rename_schema(doc: &mut Value, from: &str, to: &str) {
    let Some(schemas) = doc["components"]["schemas"].as_object_mut() else {
        return;
    };
    if let Some(schema) = schemas.remove(from) {
        schemas.insert(to.to_owned(), schema);
    }
    let (old, new) = (
        format!("#/components/schemas/{from}"),
        format!("#/components/schemas/{to}"),
    );
    fn walk(v: &mut Value, old: &str, new: &str) {
        match v {
            Value::Object(map) => {
                if map.get("$ref").and_then(Value::as_str) == Some(old) {
                    map.insert("$ref".into(), Value::String(new.to_owned()));
                }
                map.values_mut().for_each(|v| walk(v, old, new));
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, old, new)),
            _ => {}
        }
    }
    walk(doc, &old, &new);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(ranges: &[&[(char, char)]], c: char) -> bool {
        ranges
            .iter()
            .flat_map(|r| r.iter())
            .any(|&(a, b)| (a..=b).contains(&c))
    }

    #[test]
    fn the_character_classes_are_the_ones_the_handlers_check() {
        for c in (0..=0x10ffff).filter_map(char::from_u32) {
            assert_eq!(
                within(&[FORBIDDEN], c),
                shared::limits::forbidden_char(c, false),
                "U+{:04X}",
                c as u32
            );
            assert_eq!(
                within(&[FORBIDDEN_MULTILINE], c),
                shared::limits::forbidden_char(c, true),
                "U+{:04X} (multi-line)",
                c as u32
            );
            assert_eq!(
                within(&[WHITESPACE], c),
                c.is_whitespace(),
                "U+{:04X} (whitespace)",
                c as u32
            );
        }
    }

    #[test]
    fn the_cursor_pattern_starts_with_the_encoded_prefix() {
        let pattern = cursor_pattern();
        let cursor = crate::http::encode_cursor(5);
        assert!(
            pattern.starts_with(&format!("^{}", &cursor[..4])),
            "{pattern}"
        );
    }
}
