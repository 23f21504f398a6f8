//! A browser's side of Web Push, independent of the sender under test: its subscription keys
//! (P-256 + auth secret, made with Mozilla's `ece`), decrypting what it receives (RFC 8291
//! `aes128gcm`, with `ece`), and checking the VAPID header (RFC 8292, verified with `p256`).
//! Nothing here shares code with `shared::addresses`, so a bug there cannot hide itself.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde_json::{json, Value};

/// One browser's push subscription keys.
pub struct Browser {
    keys: ece::EcKeyComponents,
    auth: [u8; 16],
}

impl Browser {
    pub fn new() -> Browser {
        let (pair, auth) =
            ece::generate_keypair_and_auth_secret().unwrap_or_else(|e| panic!("ece: {e}"));
        let keys = pair.raw_components().unwrap_or_else(|e| panic!("ece: {e}"));
        Browser { keys, auth }
    }

    /// The `PushSubscription.toJSON()` a browser would send for `endpoint`.
    pub fn subscription(&self, endpoint: &str) -> Value {
        json!({"endpoint": endpoint, "expirationTime": null, "keys": {
            "p256dh": URL_SAFE_NO_PAD.encode(self.keys.public_key()),
            "auth": URL_SAFE_NO_PAD.encode(self.auth)}})
    }

    /// The JSON payload of a push message body; panics if it does not decrypt for this browser.
    pub fn decrypt(&self, body: &[u8]) -> Value {
        let plain = ece::decrypt(&self.keys, &self.auth, body)
            .unwrap_or_else(|e| panic!("decrypting the push body: {e}"));
        serde_json::from_slice(&plain).unwrap_or_else(|e| panic!("push payload: {e}"))
    }
}

impl Default for Browser {
    fn default() -> Browser {
        Browser::new()
    }
}

/// A fresh VAPID key pair (P-256, made with `ece`): (private, public), base64url.
pub fn vapid_keys() -> (String, String) {
    let (pair, _) = ece::generate_keypair_and_auth_secret().unwrap_or_else(|e| panic!("{e}"));
    let c = pair.raw_components().unwrap_or_else(|e| panic!("{e}"));
    (
        URL_SAFE_NO_PAD.encode(c.private_key()),
        URL_SAFE_NO_PAD.encode(c.public_key()),
    )
}

/// Asserts that `Authorization: vapid t=<jwt>, k=<key>` is signed by `public_key` (ES256), for
/// the endpoint's origin `audience`, with `subject`, expiring within 24 h.
pub fn verify_vapid(header: &str, public_key: &str, audience: &str, subject: &str) {
    let rest = header
        .strip_prefix("vapid t=")
        .unwrap_or_else(|| panic!("not a vapid header: {header}"));
    let (jwt, k) = rest
        .split_once(", k=")
        .unwrap_or_else(|| panic!("no k=: {header}"));
    assert_eq!(k, public_key, "k= is the application server key");
    let (input, signature) = jwt.rsplit_once('.').unwrap_or_default();
    let (head, claims) = input.split_once('.').unwrap_or_default();
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap_or_default();
    let head: Value = serde_json::from_slice(&decode(head)).unwrap_or_default();
    assert_eq!(head["alg"], "ES256");
    let key = VerifyingKey::from_sec1_bytes(&decode(k)).unwrap_or_else(|e| panic!("k: {e}"));
    let sig = Signature::from_slice(&decode(signature)).unwrap_or_else(|e| panic!("sig: {e}"));
    assert!(
        key.verify(input.as_bytes(), &sig).is_ok(),
        "the VAPID JWT's signature does not verify"
    );
    let claims: Value = serde_json::from_slice(&decode(claims)).unwrap_or_default();
    assert_eq!(claims["aud"], audience, "aud is the endpoint's origin");
    assert_eq!(claims["sub"], subject);
    let exp = claims["exp"].as_i64().unwrap_or_default();
    let now = Utc::now().timestamp();
    assert!(
        exp > now && exp <= now + 24 * 3600,
        "exp {exp} is not within 24 h of {now}"
    );
}
