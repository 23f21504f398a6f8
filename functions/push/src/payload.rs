//! What each channel sends for a notification, and the size rules:
//!
//! - **Web Push**: `{id, title, body, actionUrl?, data?}` as JSON. Push services accept about
//!   4 KB of encrypted record; the plaintext limit here is [`PUSH_PAYLOAD_MAX_BYTES`] (3,800).
//!   A larger payload is trimmed to `{id, title}` (the service worker fetches the rest by id).
//! - **Email**: subject = title; text and HTML from the type's template (`templates/<type>.txt`
//!   and `.html`, compiled in), else `templates/default.*`. Placeholders: `{{title}}`,
//!   `{{body}}`, `{{type}}`, `{{actionUrl}}`, `{{unsubscribeUrl}}`, and a
//!   `{{#actionUrl}}…{{/actionUrl}}` section kept only when there is an action URL. Values are
//!   HTML-escaped in the HTML part.
//! - **SMS**: `title` (and `: body` when there is one), trimmed to one SMS segment: 160
//!   characters in the GSM 7-bit alphabet (extension characters count twice), else 70 (UCS-2).

use shared::model::Notification;

/// Largest Web Push plaintext sent as is.
pub const PUSH_PAYLOAD_MAX_BYTES: usize = 3_800;

/// A notification's Web Push payload, full and trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPayload {
    /// What is sent first: the whole payload, or the trimmed one when the whole is too large.
    pub full: Vec<u8>,
    /// `{id, title}`: sent after a 413.
    pub trimmed: Vec<u8>,
    /// `full` is already the trimmed form.
    pub trimmed_only: bool,
}

impl PushPayload {
    pub fn of(n: &Notification) -> Self {
        let mut full = serde_json::json!({"id": n.id, "title": n.title, "body": n.body});
        if let Some(url) = &n.action_url {
            full["actionUrl"] = url.clone().into();
        }
        let has_data = match &n.data {
            serde_json::Value::Null => false,
            serde_json::Value::Object(m) => !m.is_empty(),
            _ => true,
        };
        if has_data {
            full["data"] = n.data.clone();
        }
        let full = serde_json::to_vec(&full).unwrap_or_default();
        let trimmed = serde_json::to_vec(&serde_json::json!({"id": n.id, "title": n.title}))
            .unwrap_or_default();
        if full.len() <= PUSH_PAYLOAD_MAX_BYTES {
            PushPayload {
                full,
                trimmed,
                trimmed_only: false,
            }
        } else {
            PushPayload {
                full: trimmed.clone(),
                trimmed,
                trimmed_only: true,
            }
        }
    }
}

/// One SMS segment of text.
pub fn sms_text(n: &Notification) -> String {
    let text = if n.body.trim().is_empty() {
        n.title.clone()
    } else {
        format!("{}: {}", n.title, n.body)
    };
    let text: String = text
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect();
    let gsm = text.chars().all(|c| gsm_septets(c).is_some());
    let (limit, cost): (usize, fn(char) -> usize) = if gsm {
        (160, |c| gsm_septets(c).unwrap_or(2))
    } else {
        (70, |c| c.len_utf16())
    };
    let total: usize = text.chars().map(cost).sum();
    if total <= limit {
        return text;
    }
    // Leave room for the ellipsis ("..." in GSM-7, which has no "…"; "…" in UCS-2).
    let (ellipsis, room) = if gsm {
        ("...", limit - 3)
    } else {
        ("…", limit - 1)
    };
    let mut used = 0;
    let mut out = String::new();
    for c in text.chars() {
        let n = cost(c);
        if used + n > room {
            break;
        }
        used += n;
        out.push(c);
    }
    format!("{}{ellipsis}", out.trim_end())
}

/// Septets a character takes in the GSM 03.38 alphabet (1 basic, 2 extension), or `None`.
fn gsm_septets(c: char) -> Option<usize> {
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
        ¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    const EXTENSION: &str = "^{}\\[~]|€\u{c}";
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// One email, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
    pub unsubscribe_url: String,
    /// The local part of the Message-ID (the notification id).
    pub message_key: String,
}

/// The compiled-in templates: `(type, text, html)`; `default` is the fallback.
const TEMPLATES: &[(&str, &str, &str)] = &[
    (
        "default",
        include_str!("../templates/default.txt"),
        include_str!("../templates/default.html"),
    ),
    (
        "invoice.paid",
        include_str!("../templates/invoice.paid.txt"),
        include_str!("../templates/invoice.paid.html"),
    ),
];

fn template(kind: &str) -> (&'static str, &'static str) {
    let found = TEMPLATES
        .iter()
        .find(|(t, _, _)| *t == kind)
        .or_else(|| TEMPLATES.iter().find(|(t, _, _)| *t == "default"));
    match found {
        Some((_, text, html)) => (text, html),
        None => ("{{title}}\n\n{{body}}\n", "<p>{{title}}</p><p>{{body}}</p>"),
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Fills a template: the optional `{{#actionUrl}}…{{/actionUrl}}` section first, then the
/// placeholders, each value passed through `escape`.
fn fill(template: &str, values: &[(&str, &str)], escape: fn(&str) -> String) -> String {
    let action = values
        .iter()
        .find(|(k, _)| *k == "actionUrl")
        .is_some_and(|(_, v)| !v.is_empty());
    let mut out = template.to_owned();
    while let (Some(start), Some(end)) = (out.find("{{#actionUrl}}"), out.find("{{/actionUrl}}")) {
        if end < start {
            break;
        }
        let inner = out[start + "{{#actionUrl}}".len()..end].to_owned();
        let tail = &out[end + "{{/actionUrl}}".len()..];
        let tail = if action {
            tail.to_owned()
        } else {
            tail.trim_start_matches('\n').to_owned()
        };
        out = format!(
            "{}{}{}",
            &out[..start],
            if action { inner } else { String::new() },
            tail
        );
    }
    for (k, v) in values {
        out = out.replace(&format!("{{{{{k}}}}}"), &escape(v));
    }
    out
}

/// Renders `n`'s email with its unsubscribe link.
pub fn email(n: &Notification, unsubscribe_url: &str) -> RenderedEmail {
    let (text, html) = template(&n.kind);
    let action = n.action_url.clone().unwrap_or_default();
    let values = [
        ("title", n.title.as_str()),
        ("body", n.body.as_str()),
        ("type", n.kind.as_str()),
        ("actionUrl", action.as_str()),
        ("unsubscribeUrl", unsubscribe_url),
    ];
    RenderedEmail {
        subject: n.title.replace(['\r', '\n'], " "),
        text: fill(text, &values, |s| s.to_owned()),
        html: fill(html, &values, html_escape),
        unsubscribe_url: unsubscribe_url.to_owned(),
        message_key: n.id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use shared::model::{Channel, Priority};

    fn note(title: &str, body: &str) -> Notification {
        Notification {
            id: "0190-n".into(),
            seq: 1,
            user_id: "u".into(),
            kind: "comment".into(),
            title: title.into(),
            body: body.into(),
            data: serde_json::json!({}),
            channels: vec![Channel::Push],
            priority: Priority::Normal,
            action_url: None,
            group_key: None,
            expires_at: None,
            read: false,
            seen: false,
            archived: false,
            created_at: Utc::now(),
            escalate: None,
            digest: None,
            schedule: None,
        }
    }

    #[test]
    fn a_large_push_payload_is_trimmed_to_id_and_title() {
        let small = PushPayload::of(&note("Hi", "there"));
        assert!(!small.trimmed_only);
        let v: serde_json::Value = serde_json::from_slice(&small.full).unwrap_or_default();
        assert_eq!(
            v,
            serde_json::json!({"id": "0190-n", "title": "Hi", "body": "there"})
        );
        let big = PushPayload::of(&note("Hi", &"x".repeat(5_000)));
        assert!(big.trimmed_only && big.full.len() < 100);
        let v: serde_json::Value = serde_json::from_slice(&big.full).unwrap_or_default();
        assert_eq!(v, serde_json::json!({"id": "0190-n", "title": "Hi"}));
    }

    #[test]
    fn sms_text_fits_one_segment() {
        assert_eq!(sms_text(&note("Hi", "")), "Hi");
        assert_eq!(sms_text(&note("Hi", "there")), "Hi: there");
        let long = sms_text(&note("Title", &"word ".repeat(100)));
        assert!((150..=160).contains(&long.chars().count()), "{long}");
        assert!(long.ends_with("...") && !long.ends_with(" ..."));
        // Not GSM-7 (Cyrillic): 70 UTF-16 units.
        let unicode = sms_text(&note("Привет", &"мир ".repeat(40)));
        assert!(unicode.encode_utf16().count() <= 70 && unicode.ends_with('…'));
        // Extension characters cost two septets.
        let braces = sms_text(&note("{}", &"[".repeat(200)));
        let cost: usize = braces.chars().map(|c| gsm_septets(c).unwrap_or(9)).sum();
        assert!(cost <= 160, "{cost}");
    }

    #[test]
    fn emails_use_the_types_template_and_escape_html() {
        let mut n = note("<b>Paid</b>", "Thanks & bye");
        let e = email(&n, "https://api.example.com/v1/unsubscribe?token=t");
        assert!(e.text.contains("<b>Paid</b>") && e.text.contains("Thanks & bye"));
        assert!(e.html.contains("&lt;b&gt;Paid&lt;/b&gt;") && e.html.contains("Thanks &amp; bye"));
        assert!(!e.text.contains("Open:") && !e.html.contains("{{"));
        assert!(e
            .text
            .contains("https://api.example.com/v1/unsubscribe?token=t"));
        n.kind = "invoice.paid".into();
        n.action_url = Some("https://example.com/r/1".into());
        let e = email(&n, "https://u");
        assert!(
            e.text.starts_with("Payment received")
                && e.text.contains("Your receipt: https://example.com/r/1")
        );
        assert!(e.html.contains("href=\"https://example.com/r/1\""));
    }
}
