//! Percent-decoding of URL components, as API Gateway applies it to paths and query strings.
//! Shared by the HTTP and WebSocket gateways, the demo page's files and the demo endpoints.

/// Decodes `%XX` escapes (invalid ones are kept as they are); with `plus_is_space`, also `+` as a
/// space, as in form-encoded query strings. Invalid UTF-8 becomes U+FFFD.
pub(crate) fn decode_url_component(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && bytes[i] == b'+' {
            b' '
        } else {
            bytes[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
