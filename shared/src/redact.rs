//! Personal data and secrets out of log lines. Provider answers (an SMTP reply, a push service's
//! or an SMS API's error body, an HTTP client error naming its URL) echo what was sent to them;
//! every log field that carries such text, or an address, goes through [`redact`] first, and
//! [`Redacted`] is the type that says it did.
//!
//! What is masked (best effort on free text; nothing here parses a grammar):
//! - URLs (`scheme://…`): kept to scheme and host (`https://fcm.googleapis.com/…`); credentials,
//!   path, query and fragment dropped (a push endpoint's path is its capability);
//! - e-mail addresses → `[email]`;
//! - phone numbers written E.164-like, `+` (or `%2B`) then 7–15 digits, separators allowed →
//!   `[phone]`;
//! - credentials: the word after `Bearer`/`Basic`, the value of a `token`/`key`/`secret`/
//!   `password`/`auth`/`signature`-like field (`k=v`, `k: v`, `"k":"v"`), JWTs, and opaque runs
//!   of 32 or more base64/hex characters → `[token]`.

use std::fmt;

/// Text that has been through [`redact`]: safe to log. The only way to build one is
/// [`Redacted::new`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redacted(String);

impl Redacted {
    pub fn new(text: impl AsRef<str>) -> Self {
        Redacted(redact(text.as_ref()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `text` with URLs cut to their origin and e-mail addresses, phone numbers and credentials
/// masked (see the module's list).
pub fn redact(text: &str) -> String {
    let text = urls(text);
    let text = emails(&text);
    let text = phones(&text);
    let text = after_auth_schemes(&text);
    let text = secret_fields(&text);
    opaque_tokens(&text)
}

const EMAIL: &str = "[email]";
const PHONE: &str = "[phone]";
const TOKEN: &str = "[token]";

/// Where free text ends a URL, a field value or a token.
fn is_delimiter(b: u8) -> bool {
    b.is_ascii_whitespace() || b"\"'<>`()[]{},;|\\".contains(&b)
}

/// Rewrites every span `find` reports, left to right. `find(bytes, i)` looks at position `i` and
/// returns the span's end and its replacement; spans never overlap.
fn rewrite(text: &str, find: impl Fn(&[u8], usize) -> Option<(usize, usize, String)>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match find(bytes, i) {
            Some((start, end, replacement)) if start >= copied && end > start => {
                out.push_str(&text[copied..start]);
                out.push_str(&replacement);
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn urls(text: &str) -> String {
    rewrite(text, |b, i| {
        if !b[i..].starts_with(b"://") {
            return None;
        }
        let start = (0..i)
            .rev()
            .take_while(|&j| b[j].is_ascii_alphanumeric() || b"+.-".contains(&b[j]))
            .last()?;
        let end = (i..b.len())
            .find(|&j| is_delimiter(b[j]))
            .unwrap_or(b.len());
        let rest = &b[i + 3..end];
        let authority_len = rest
            .iter()
            .position(|c| b"/?#".contains(c))
            .unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        let host = match authority.iter().rposition(|&c| c == b'@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        let mut out = String::from_utf8_lossy(&b[start..i + 3]).into_owned();
        out.push_str(&String::from_utf8_lossy(host));
        if authority_len < rest.len() || host.len() < authority.len() {
            out.push_str("/…");
        }
        Some((start, end, out))
    })
}

fn emails(text: &str) -> String {
    // Non-ASCII bytes count as letters (SMTPUTF8 addresses, IDN domains); spans still start and
    // end next to ASCII bytes, so on character boundaries.
    let local = |c: u8| c.is_ascii_alphanumeric() || c >= 0x80 || b".!#$%&*+^_~-".contains(&c);
    let domain = |c: u8| c.is_ascii_alphanumeric() || c >= 0x80 || c == b'.' || c == b'-';
    rewrite(text, |b, i| {
        // Anchored at the start of a local part: the previous byte is not a local-part byte.
        if !local(b[i]) || (i > 0 && local(b[i - 1])) {
            return None;
        }
        let at = (i..b.len()).find(|&j| !local(b[j]))?;
        if b.get(at) != Some(&b'@') || at == i {
            return None;
        }
        let mut end = (at + 1..b.len())
            .find(|&j| !domain(b[j]))
            .unwrap_or(b.len());
        while end > at + 1 && b"-.".contains(&b[end - 1]) {
            end -= 1;
        }
        let host = &b[at + 1..end];
        (host.contains(&b'.') && (host[0].is_ascii_alphanumeric() || host[0] >= 0x80))
            .then(|| (i, end, EMAIL.to_owned()))
    })
}

fn phones(text: &str) -> String {
    rewrite(text, |b, i| {
        let prefix = if b[i] == b'+' {
            1
        } else if b[i..].len() >= 3 && b[i..i + 3].eq_ignore_ascii_case(b"%2B") {
            3
        } else {
            return None;
        };
        if i > 0 && b[i - 1].is_ascii_alphanumeric() {
            return None;
        }
        let mut digits = 0;
        let mut end = i + prefix;
        let mut j = end;
        while j < b.len() && (b[j].is_ascii_digit() || b" -.()".contains(&b[j])) {
            if b[j].is_ascii_digit() {
                digits += 1;
                end = j + 1;
            } else if j == i + prefix {
                return None;
            }
            j += 1;
        }
        let followed_by_word = b.get(end).is_some_and(|c| c.is_ascii_alphanumeric());
        ((7..=15).contains(&digits) && !followed_by_word).then(|| (i, end, PHONE.to_owned()))
    })
}

/// The token after `Bearer`, `Basic` or `Token` (an `Authorization` value echoed back).
fn after_auth_schemes(text: &str) -> String {
    rewrite(text, |b, i| {
        if i > 0 && b[i - 1].is_ascii_alphanumeric() {
            return None;
        }
        let word = ["bearer ", "basic ", "token "].into_iter().find(|w| {
            b[i..].len() >= w.len() && b[i..i + w.len()].eq_ignore_ascii_case(w.as_bytes())
        })?;
        let start = (i + word.len()..b.len()).find(|&j| b[j] != b' ')?;
        let end = (start..b.len())
            .find(|&j| is_delimiter(b[j]))
            .unwrap_or(b.len());
        (end > start && b[start..end] != *TOKEN.as_bytes()).then(|| (start, end, TOKEN.to_owned()))
    })
}

/// The value of a field whose name says it is a credential.
fn secret_fields(text: &str) -> String {
    const NAMES: &[&str] = &[
        "token",
        "key",
        "secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "signature",
        "sig",
        "credential",
        "credentials",
        "apikey",
        "p256dh",
    ];
    let name_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    rewrite(text, |b, i| {
        if !name_byte(b[i]) || (i > 0 && name_byte(b[i - 1])) {
            return None;
        }
        let name_end = (i..b.len()).find(|&j| !name_byte(b[j])).unwrap_or(b.len());
        let name = String::from_utf8_lossy(&b[i..name_end]).to_ascii_lowercase();
        let last = name.rsplit(['_', '-']).next().unwrap_or_default();
        if !NAMES.contains(&last) && !NAMES.contains(&name.as_str()) {
            return None;
        }
        let mut j = name_end;
        if b.get(j) == Some(&b'"') {
            j += 1;
        }
        while b.get(j) == Some(&b' ') {
            j += 1;
        }
        if !matches!(b.get(j), Some(b'=') | Some(b':')) {
            return None;
        }
        j += 1;
        while matches!(b.get(j), Some(b' ') | Some(b'"')) {
            j += 1;
        }
        let end = (j..b.len())
            .find(|&k| is_delimiter(b[k]) || b[k] == b'&')
            .unwrap_or(b.len());
        let value = &b[j..end];
        (end > j && value != TOKEN.as_bytes() && !value.starts_with(b"["))
            .then(|| (j, end, TOKEN.to_owned()))
    })
}

/// JWTs (`eyJ….….…`) and runs of 32 or more base64/hex characters mixing letters and digits
/// (API keys, VAPID keys, push tokens), except UUIDs (Herald's own ids).
fn opaque_tokens(text: &str) -> String {
    let run_byte = |c: u8| c.is_ascii_alphanumeric() || b"_-+/.".contains(&c);
    rewrite(text, |b, i| {
        if !run_byte(b[i]) || (i > 0 && run_byte(b[i - 1])) {
            return None;
        }
        let mut end = (i..b.len()).find(|&j| !run_byte(b[j])).unwrap_or(b.len());
        let run = &b[i..end];
        // base64 padding belongs to the token.
        while b.get(end) == Some(&b'=') {
            end += 1;
        }
        let jwt = run.starts_with(b"eyJ") && run.iter().filter(|&&c| c == b'.').count() >= 1;
        let opaque = run.len() >= 32
            && !run.contains(&b'.')
            && run.iter().any(u8::is_ascii_digit)
            && run.iter().any(u8::is_ascii_alphabetic)
            && !is_uuid(run);
        (jwt || opaque).then(|| (i, end, TOKEN.to_owned()))
    })
}

fn is_uuid(run: &[u8]) -> bool {
    run.len() == 36
        && run.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_provider_text_are_masked() {
        for (text, expected) in [
            (
                "550 5.1.1 <ada.lovelace+news@example.co.uk>: Recipient address rejected",
                "550 5.1.1 <[email]>: Recipient address rejected",
            ),
            (
                "5.1.1 The email account that you tried to reach does not exist: bob@mail.example.",
                "5.1.1 The email account that you tried to reach does not exist: [email].",
            ),
            ("RCPT TO:ada@example.com refused", "RCPT TO:[email] refused"),
            (
                r#"{"code":21211,"message":"The 'To' number +1 415-555-0100 is not a valid phone number."}"#,
                r#"{"code":21211,"message":"The 'To' number [phone] is not a valid phone number."}"#,
            ),
            (
                "To=%2B447700900123&From=%2B15005550006",
                "To=[phone]&From=[phone]",
            ),
            ("to +447700900123.", "to [phone]."),
            // Not phone numbers: short codes, error codes, digits glued to a word.
            (
                "error 21211 after 3 attempts (+5 s)",
                "error 21211 after 3 attempts (+5 s)",
            ),
            ("x+4477009001234y", "x+4477009001234y"),
        ] {
            assert_eq!(redact(text), expected, "{text}");
        }
    }

    #[test]
    fn urls_keep_scheme_and_host_only() {
        for (text, expected) in [
            (
                "error sending request for url (https://fcm.googleapis.com/fcm/send/dGhpcyBpcyBh:APA91bHu)",
                "error sending request for url (https://fcm.googleapis.com/…)",
            ),
            (
                "POST https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk?x=1 failed",
                "POST https://updates.push.services.mozilla.com/… failed",
            ),
            (
                "redirect to http://10.0.3.7:8080/latest/meta-data not followed",
                "redirect to http://10.0.3.7:8080/… not followed",
            ),
            (
                "smtps://me:hunter2@smtp.example.com:465 refused",
                "smtps://smtp.example.com:465/… refused",
            ),
            ("see https://push.example.com", "see https://push.example.com"),
        ] {
            assert_eq!(redact(text), expected, "{text}");
        }
    }

    #[test]
    fn credentials_are_masked() {
        let jwt = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwcyJ9.c2lnbmF0dXJl";
        let key =
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        for (text, expected) in [
            (
                "Authorization: Bearer abc.def-123".to_owned(),
                "Authorization: [token] [token]".to_owned(),
            ),
            (
                format!("vapid t={jwt}, k={key}"),
                "vapid t=[token], k=[token]".to_owned(),
            ),
            (
                r#"{"api_key": "sk_live_abc", "auth_token":"xyz", "status": 401}"#.to_owned(),
                r#"{"api_key": "[token]", "auth_token":"[token]", "status": 401}"#.to_owned(),
            ),
            (
                "password=hunter2&user=x".to_owned(),
                "password=[token]&user=x".to_owned(),
            ),
            (
                "request id 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
                    .to_owned(),
                "request id [token]".to_owned(),
            ),
            // Herald's own ids and ordinary words stay.
            (
                "notification 0193a1c2-7d4e-7b3f-9a1b-2c3d4e5f6a7b: Authentication required"
                    .to_owned(),
                "notification 0193a1c2-7d4e-7b3f-9a1b-2c3d4e5f6a7b: Authentication required"
                    .to_owned(),
            ),
        ] {
            assert_eq!(redact(&text), expected, "{text}");
        }
    }

    #[test]
    fn plain_text_and_non_ascii_pass_through() {
        for text in [
            "",
            "503 Service Unavailable",
            "connection refused (os error 111)",
            "Empfänger unbekannt — réessayez",
            "user@",
            "@example.com",
        ] {
            assert_eq!(redact(text), text);
        }
        assert_eq!(
            Redacted::new("Zugang für jürgen@bücher.example verweigert").to_string(),
            "Zugang für [email] verweigert"
        );
    }
}
