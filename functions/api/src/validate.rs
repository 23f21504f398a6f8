//! Validation of create requests. Every rule reads its limit from [`shared::limits`], and every
//! violation is reported with its field, all at once.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use shared::digest::DigestRequest;
use shared::error::FieldError;
use shared::escalation::{self, EscalationStep};
use shared::limits::{
    self, BATCH_MAX_RECIPIENTS, BODY_MAX_BYTES, GROUP_KEY_MAX_BYTES, TITLE_MAX_CHARS, URL_MAX_BYTES,
};
use shared::model::{Channel, Priority};
use shared::schedule::Scheduling;
use shared::store::NewNotification;
use utoipa::ToSchema;

/// The body of `POST /v1/notifications` (with `userId`) and of `POST /v1/notifications/batch`
/// (with `userIds`). Unknown fields are refused, so a typo never silently drops data.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRequest {
    /// The recipient (single create only).
    #[serde(default)]
    pub user_id: Option<String>,
    /// The recipients, at most 1,000, duplicates ignored (batch create only).
    #[serde(default)]
    pub user_ids: Option<Vec<String>>,
    /// Lower-case identifier, for example `comment.reply`.
    #[serde(rename = "type")]
    pub kind: String,
    /// At most 200 characters; no control characters or line/paragraph separators.
    pub title: String,
    /// At most 4 KB of UTF-8; no control characters or line/paragraph separators except tab and
    /// line feed.
    pub body: String,
    /// Any JSON object, kept as given (its strings are not checked for control characters: they
    /// are always sent JSON-encoded).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// Defaults to `[IN_APP]`. IN_APP is always stored.
    #[serde(default)]
    pub channels: Option<Vec<Channel>>,
    #[serde(default)]
    pub priority: Option<Priority>,
    /// An `https://`/`http://` URL or an absolute path; no whitespace or control characters.
    #[serde(default)]
    pub action_url: Option<String>,
    /// 1–128 bytes; no control characters or line/paragraph separators.
    #[serde(default)]
    pub group_key: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// At most 3 steps: send on more channels later unless it was read (or seen) by then.
    #[serde(default)]
    pub escalate: Option<Vec<EscalationStep>>,
    /// Collapse a burst of events for this recipient and key into one inbox item.
    #[serde(default)]
    pub digest: Option<DigestRequest>,
    /// Send later: an RFC 3339 date-time in the future, at most 30 days ahead, or `"optimal"`
    /// (the moment within `within` when the recipient most often reads; see `schedule` on the
    /// notification). The create then answers `202` with the schedule.
    #[serde(default, rename = "sendAt")]
    pub send_at: Option<String>,
    /// With `sendAt: "optimal"`: the window to choose in, `<n>s|m|h|d`, at most `7d`; default
    /// `24h`.
    #[serde(default)]
    pub within: Option<String>,
    /// With `sendAt`: 1–128 bytes naming a group of scheduled sends that
    /// `POST /v1/scheduled/cancel` cancels together.
    #[serde(default, rename = "cancelKey")]
    pub cancel_key: Option<String>,
}

/// Which shape a route expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Batch,
}

/// Checks a create request and returns the recipients and the notification for each.
///
/// Over 100 lines on purpose: one check per field, in the order of the request's schema, each
/// adding to one error list so a client sees every problem in one 422; split up, the list of
/// rules would be scattered across helpers that all need the same `err`.
pub fn check(
    req: CreateRequest,
    shape: Shape,
) -> Result<(Vec<String>, NewNotification), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut err = |field: &str, message: String| errors.push(FieldError::new(field, message));

    let mut recipient_error = true;
    let recipients = match (shape, req.user_id, req.user_ids) {
        (Shape::Single, Some(id), None) => {
            recipient_error = false;
            vec![id]
        }
        (Shape::Single, _, Some(_)) => {
            err(
                "userIds",
                "not allowed here; use POST /v1/notifications/batch".into(),
            );
            vec![]
        }
        (Shape::Single, None, None) => {
            err("userId", "is required".into());
            vec![]
        }
        (Shape::Batch, None, Some(ids)) => {
            recipient_error = false;
            let mut seen = HashSet::new();
            ids.into_iter()
                .filter(|id| seen.insert(id.clone()))
                .collect()
        }
        (Shape::Batch, Some(_), _) => {
            err("userId", "not allowed here; use userIds".into());
            vec![]
        }
        (Shape::Batch, None, None) => {
            err("userIds", "is required".into());
            vec![]
        }
    };
    if shape == Shape::Batch && recipients.is_empty() && !recipient_error {
        err("userIds", "must name at least one recipient".into());
    }
    for (i, id) in recipients.iter().enumerate() {
        if !limits::valid_user_id(id) {
            let field = if shape == Shape::Single {
                "userId".to_owned()
            } else {
                format!("userIds[{i}]")
            };
            err(
                &field,
                format!(
                    "must be 1–{} printable ASCII characters without spaces or braces",
                    limits::USER_ID_MAX_BYTES
                ),
            );
        }
    }
    if !limits::valid_type(&req.kind) {
        err(
            "type",
            format!(
                "must be 1–{} characters of a–z, 0–9, '.', '_' or '-'",
                limits::TYPE_MAX_BYTES
            ),
        );
    }
    let title_chars = req.title.chars().count();
    if req.title.trim().is_empty() {
        err("title", "must not be empty".into());
    } else if title_chars > TITLE_MAX_CHARS {
        err(
            "title",
            format!("is {title_chars} characters; at most {TITLE_MAX_CHARS} are allowed"),
        );
    }
    if req.body.len() > BODY_MAX_BYTES {
        err(
            "body",
            format!(
                "is {} bytes; at most {BODY_MAX_BYTES} are allowed",
                req.body.len()
            ),
        );
    }
    let data = req.data.unwrap_or_else(|| serde_json::json!({}));
    if !data.is_object() {
        err("data", "must be a JSON object".into());
    }
    let channels = req.channels.unwrap_or_else(|| vec![Channel::InApp]);
    if channels.is_empty() {
        err("channels", "must name at least one channel".into());
    }
    let mut seen = HashSet::new();
    for (i, c) in channels.iter().enumerate() {
        if !seen.insert(*c) {
            err(
                &format!("channels[{i}]"),
                format!("{} is listed twice", c.as_str()),
            );
        }
    }
    if let Some(url) = &req.action_url {
        let ok = (url.starts_with("https://")
            || url.starts_with("http://")
            || (url.starts_with('/') && !url.starts_with("//")))
            && url.len() <= URL_MAX_BYTES
            && !url.chars().any(char::is_whitespace);
        if !ok {
            err(
                "actionUrl",
                format!(
                    "must be an http(s) URL or an absolute path, at most {URL_MAX_BYTES} bytes"
                ),
            );
        }
    }
    if let Some(g) = &req.group_key {
        if g.is_empty() || g.len() > GROUP_KEY_MAX_BYTES {
            err("groupKey", format!("must be 1–{GROUP_KEY_MAX_BYTES} bytes"));
        }
    }
    if let Some(at) = req.expires_at {
        if at <= Utc::now() {
            err("expiresAt", "must be in the future".into());
        }
    }
    if let Some(steps) = &req.escalate {
        errors.extend(escalation::check_steps(steps));
    }
    if let Some(digest) = &req.digest {
        errors.extend(digest.check());
    }
    let texts = [
        ("title", Some(&req.title), false),
        ("body", Some(&req.body), true),
        ("actionUrl", req.action_url.as_ref(), false),
        ("groupKey", req.group_key.as_ref(), false),
    ];
    for (field, text, multiline) in texts {
        let Some((at, c)) = text.and_then(|t| limits::first_forbidden_char(t, multiline)) else {
            continue;
        };
        if errors.iter().any(|e| e.field == field) {
            continue; // one error per field: the first rule it broke
        }
        let allowed = if multiline {
            " (tab and line feed are allowed)"
        } else {
            ""
        };
        errors.push(FieldError::new(
            field,
            format!(
                "contains U+{:04X} at character {at}: control characters and line or \
                 paragraph separators are not allowed{allowed}",
                c as u32
            ),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let new = NewNotification {
        user_id: String::new(),
        kind: req.kind,
        title: req.title,
        body: req.body,
        data,
        channels,
        priority: req.priority.unwrap_or_default(),
        action_url: req.action_url,
        group_key: req.group_key,
        expires_at: req.expires_at,
        escalate: req.escalate,
        digest: req.digest,
    };
    Ok((recipients, new))
}

/// [`check`], and the scheduling fields (`sendAt`, `within`, `cancelKey`;
/// [`shared::schedule::check`]), every violation reported together.
pub fn check_with_schedule(
    mut req: CreateRequest,
    shape: Shape,
) -> Result<(Vec<String>, NewNotification, Option<Scheduling>), Vec<FieldError>> {
    let scheduling = shared::schedule::check(
        req.send_at.take().as_deref(),
        req.within.take().as_deref(),
        req.cancel_key.take().as_deref(),
        Utc::now(),
    );
    match (check(req, shape), scheduling) {
        (Ok((recipients, new)), Ok(scheduling)) => Ok((recipients, new, scheduling)),
        (checked, scheduling) => {
            let mut errors = checked.err().unwrap_or_default();
            errors.extend(scheduling.err().unwrap_or_default());
            Err(errors)
        }
    }
}

/// The most recipients a batch may name (re-exported for the route's 413).
pub const MAX_RECIPIENTS: usize = BATCH_MAX_RECIPIENTS;

#[cfg(test)]
mod tests {
    use super::*;

    fn request(v: serde_json::Value) -> CreateRequest {
        serde_json::from_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn fields(r: Result<(Vec<String>, NewNotification), Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn every_violation_is_reported_with_its_field() {
        let r = request(serde_json::json!({
            "userId": "a b", "type": "Bad Type", "title": "x".repeat(201), "body": "y".repeat(4097),
            "data": [1], "channels": ["PUSH", "PUSH"], "actionUrl": "javascript:alert(1)", "groupKey": ""
        }));
        assert_eq!(
            fields(check(r, Shape::Single)),
            [
                "userId",
                "type",
                "title",
                "body",
                "data",
                "channels[1]",
                "actionUrl",
                "groupKey"
            ]
        );
    }

    #[test]
    fn control_characters_and_line_separators_are_refused_in_every_text_field() {
        for bad in [
            "\u{0}",
            "a\r\nBcc: x@evil.test",
            "\u{b}",
            "a\u{85}b",
            "a\u{2028}b",
            "\u{2029}",
            "\u{9b}",
        ] {
            let r = request(serde_json::json!({
                "userId": "a", "type": "t", "title": bad, "body": bad,
                "actionUrl": format!("https://example.com/{bad}"), "groupKey": bad
            }));
            let mut refused = fields(check(r, Shape::Single));
            refused.sort();
            assert_eq!(
                refused,
                ["actionUrl", "body", "groupKey", "title"],
                "{bad:?}"
            );
        }
        let r = request(serde_json::json!({
            "userId": "a", "type": "t", "title": "x", "body": "line one\n\tline two",
            "data": {"note": "free\u{0}form\r\n"}
        }));
        assert!(
            check(r, Shape::Single).is_ok(),
            "tab and newline in body, anything in data"
        );
    }

    #[test]
    fn bad_escalation_steps_and_digest_windows_name_their_field() {
        let step = serde_json::json!({"after": "15m", "channels": ["EMAIL"]});
        let r = request(serde_json::json!({
            "userId": "a", "type": "t", "title": "x", "body": "",
            "escalate": [step, step, {"after": "8d", "channels": ["SMS"]}, step],
            "digest": {"key": "k", "window": "5s"}
        }));
        assert_eq!(
            fields(check(r, Shape::Single)),
            ["escalate", "digest.window"]
        );
        let r = request(serde_json::json!({
            "userId": "a", "type": "t", "title": "x", "body": "",
            "escalate": [{"after": "1.5h", "unless": "seen", "channels": ["IN_APP"]}],
            "digest": {"key": "k", "window": "24h"}
        }));
        assert_eq!(
            fields(check(r, Shape::Single)),
            ["escalate[0].after", "escalate[0].channels[0]"]
        );
    }

    #[test]
    fn titles_are_counted_in_characters_not_bytes() {
        let r = request(
            serde_json::json!({"userId": "a", "type": "t", "title": "é".repeat(200), "body": ""}),
        );
        assert!(check(r, Shape::Single).is_ok());
    }

    #[test]
    fn batch_recipients_are_deduplicated_and_shapes_are_not_mixed() {
        let r = request(
            serde_json::json!({"userIds": ["a", "b", "a"], "type": "t", "title": "x", "body": ""}),
        );
        assert_eq!(
            check(r.clone(), Shape::Batch).map(|(ids, _)| ids).ok(),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(fields(check(r, Shape::Single)), ["userIds"]);
    }
}
