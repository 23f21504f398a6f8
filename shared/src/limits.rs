//! The API's limits, defined once. Validation, the OpenAPI document and the tests all read these
//! constants; nothing else hard-codes them.

/// Maximum length of a notification title, in characters (Unicode scalar values).
pub const TITLE_MAX_CHARS: usize = 200;
/// Maximum size of a notification body, in UTF-8 bytes.
pub const BODY_MAX_BYTES: usize = 4 * 1024;
/// Maximum size of a whole notification as stored and sent (its JSON), in bytes. Matches API
/// Gateway's WebSocket frame size, so one notification always fits in one frame.
pub const NOTIFICATION_MAX_BYTES: usize = 32 * 1024;
/// Maximum size of a batch-create request body, in bytes: one notification plus 1,000 user ids.
pub const BATCH_BODY_MAX_BYTES: usize =
    NOTIFICATION_MAX_BYTES + BATCH_MAX_RECIPIENTS * (USER_ID_MAX_BYTES + 3);
/// Maximum number of recipients in one batch create.
pub const BATCH_MAX_RECIPIENTS: usize = 1_000;
/// Maximum length of a user id, in bytes.
pub const USER_ID_MAX_BYTES: usize = 128;
/// Maximum length of a notification type name, in bytes (`[a-z0-9._-]`).
pub const TYPE_MAX_BYTES: usize = 64;
/// Maximum length of `actionUrl` and `groupKey`, in bytes.
pub const URL_MAX_BYTES: usize = 2_048;
pub const GROUP_KEY_MAX_BYTES: usize = 128;
/// Maximum length of an `Idempotency-Key` header, in bytes.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;
/// Page size of `GET /v1/notifications`: default and maximum.
pub const LIST_DEFAULT_LIMIT: usize = 20;
pub const LIST_MAX_LIMIT: usize = 100;
/// Page size of `GET /v1/changes`: default and maximum.
pub const CHANGES_DEFAULT_LIMIT: usize = 100;
pub const CHANGES_MAX_LIMIT: usize = 1_000;
/// Byte budget of one page of `GET /v1/notifications` and `GET /v1/changes` (and of a WebSocket
/// `sync` read), counted on the items as stored: a page stops before the item that would take it
/// past the budget, but always holds one. Lambda answers at most 6 MB, and API Gateway's
/// integration carries the page as a JSON string inside that answer, where escaping at most
/// doubles it (each `"` and `\` of the page gains a backslash; everything else is already
/// escaped once): 1 MiB of items stays near 2 MiB even of quote-heavy `data`.
pub const PAGE_MAX_BYTES: usize = 1024 * 1024;
/// Maximum size of a preferences document, in bytes.
pub const PREFERENCES_MAX_BYTES: usize = 16 * 1024;

/// Maximum length of a topic key, in bytes (`[A-Za-z0-9._:-]`).
pub const TOPIC_KEY_MAX_BYTES: usize = 128;
/// Maximum length of a topic's display name, in characters.
pub const TOPIC_NAME_MAX_CHARS: usize = 200;
/// Most user ids in one subscribe or unsubscribe call.
pub const TOPIC_MAX_IDS_PER_CALL: usize = BATCH_MAX_RECIPIENTS;
/// Maximum size of a subscribe or unsubscribe body, in bytes: 1,000 user ids.
pub const TOPIC_IDS_BODY_MAX_BYTES: usize = 1024 + TOPIC_MAX_IDS_PER_CALL * (USER_ID_MAX_BYTES + 3);
/// Page size of `GET /v1/topics/{key}/subscribers`: default and maximum.
pub const SUBSCRIBERS_DEFAULT_LIMIT: usize = 100;
pub const SUBSCRIBERS_MAX_LIMIT: usize = 1_000;
/// Highest `maxPerSecond` a broadcast may ask for.
pub const BROADCAST_MAX_PER_SECOND: u32 = 100_000;

/// Is `id` acceptable as a user id? Printable ASCII without spaces or braces: braces would break
/// the `{u:<userId>}` hash tag that keeps a user's keys in one Redis Cluster slot.
pub fn valid_user_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= USER_ID_MAX_BYTES
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
}

/// Maximum length of a tenant name, in bytes (`[a-z0-9._-]`).
pub const TENANT_MAX_BYTES: usize = 64;

/// Is `name` acceptable as a tenant ([`crate::tenant::Tenant`])? Lower-case letters, digits, `.`,
/// `_` and `-`: no braces (the tenant goes inside every hash tag), no `/` or `:` (the separators
/// of `{<tenant>/<kind>:<id>}`, which keep a tenant's keys apart from every other tenant's).
pub fn valid_tenant(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= TENANT_MAX_BYTES
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// Is `key` acceptable as a topic key? Letters, digits, `.`, `_`, `:` and `-`: no braces (the
/// `{t:<key>}` hash tag), nothing a URL path would need to escape.
pub fn valid_topic_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= TOPIC_KEY_MAX_BYTES
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Is `c` refused in a notification's text? Every text that can reach an e-mail header, an SMS
/// or a push payload (`title`, `body`, `actionUrl`, `groupKey`) refuses the C0 and C1 controls
/// (DEL and NEL, U+0085, included) and the Unicode line and paragraph separators (U+2028,
/// U+2029), which mail and SMS software may turn into line breaks (header injection). A
/// `multiline` text (`body` only) may hold tabs and line feeds. `data` is exempt: it is the
/// application's own JSON, always sent JSON-encoded and never placed in a header or an SMS.
pub fn forbidden_char(c: char, multiline: bool) -> bool {
    if multiline && matches!(c, '\n' | '\t') {
        return false;
    }
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// The first [forbidden](forbidden_char) character of `text`, with its index in characters.
pub fn first_forbidden_char(text: &str, multiline: bool) -> Option<(usize, char)> {
    text.chars()
        .enumerate()
        .find(|(_, c)| forbidden_char(*c, multiline))
}

/// Is `t` acceptable as a notification type? Lower-case letters, digits, `.`, `_` and `-`.
pub fn valid_type(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= TYPE_MAX_BYTES
        && t.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_that_would_break_the_hash_tag_are_refused() {
        assert!(valid_user_id("alice"));
        assert!(valid_user_id("auth0|5f1c:x@y.z"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a}b"));
        assert!(!valid_user_id("a{b"));
        assert!(!valid_user_id("a b"));
        assert!(!valid_user_id(&"x".repeat(USER_ID_MAX_BYTES + 1)));
    }

    #[test]
    fn controls_and_line_separators_are_forbidden_and_body_keeps_tab_and_newline() {
        for c in [
            '\0', '\r', '\n', '\t', '\u{b}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{2028}',
            '\u{2029}',
        ] {
            assert!(
                forbidden_char(c, false),
                "U+{:04X} in a one-line text",
                c as u32
            );
        }
        assert!(!forbidden_char('\n', true) && !forbidden_char('\t', true));
        assert!(forbidden_char('\r', true) && forbidden_char('\u{2028}', true));
        for c in ['a', ' ', 'é', '€', '\u{a0}', '😀'] {
            assert!(!forbidden_char(c, false), "U+{:04X}", c as u32);
        }
        assert_eq!(
            first_forbidden_char("ab\u{85}c", false),
            Some((2, '\u{85}'))
        );
        assert_eq!(first_forbidden_char("line\nnext\tcol", true), None);
    }

    #[test]
    fn a_full_page_escaped_twice_fits_in_a_lambda_answer() {
        // The page's budget plus one more item, each byte escaped into two, plus room for the
        // headers and the answer's own fields; "well under" Lambda's 6 MB: half of it.
        let worst = 2 * (PAGE_MAX_BYTES + NOTIFICATION_MAX_BYTES) + 64 * 1024;
        assert!(
            worst * 2 < 6 * 1024 * 1024,
            "{worst} is not well under the limit"
        );
    }

    #[test]
    fn topic_keys_are_url_safe_identifiers_without_braces() {
        assert!(valid_topic_key("course:cs101"));
        assert!(valid_topic_key("News_2026.fr-FR"));
        assert!(!valid_topic_key(""));
        assert!(!valid_topic_key("a{b}"));
        assert!(!valid_topic_key("a/b"));
        assert!(!valid_topic_key("a b"));
        assert!(!valid_topic_key(&"k".repeat(TOPIC_KEY_MAX_BYTES + 1)));
    }

    #[test]
    fn tenants_are_lower_case_names_without_key_separators() {
        for ok in ["default", "acme", "uni-42", "a.b_c"] {
            assert!(valid_tenant(ok), "{ok}");
        }
        let long = "a".repeat(TENANT_MAX_BYTES + 1);
        for bad in ["", "Acme", "a/b", "a:b", "{a}", "a b", "é", long.as_str()] {
            assert!(!valid_tenant(bad), "{bad}");
        }
    }

    #[test]
    fn types_are_lower_case_identifiers() {
        assert!(valid_type("comment.reply"));
        assert!(valid_type("security_alert-2"));
        assert!(!valid_type("Comment"));
        assert!(!valid_type("a b"));
        assert!(!valid_type(""));
    }
}
