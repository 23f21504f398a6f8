//! Who is calling, and what they may do.
//!
//! - [`Claims::from_request`] reads the claims that API Gateway's JWT authorizer put into
//!   `requestContext.authorizer.jwt.claims` (HTTP API, payload 2.0). The authorizer has verified
//!   the token; the function trusts it and never takes a user id from the body or path instead.
//! - [`JwksVerifier`] verifies a token itself (RS256/ES256 against the issuer's JWKS, plus `iss`,
//!   `aud` and `exp`), for callers API Gateway cannot authorize: the WebSocket `$connect`.
//!
//! Scopes come from the space-separated `scope` claim. Both paths refuse a token whose `sub` is
//! not a usable user id ([`usable_subject`]): a subject with a brace would break the user's
//! `{u:<userId>}` hash tag, so such a token gets 401 on HTTP and a refused `$connect` alike.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::config::JwtSettings;

/// Scope that lets a service create notifications for any user.
pub const SCOPE_WRITE: &str = "notifications:write";
/// Scope that lets a caller read analytics.
pub const SCOPE_ANALYTICS: &str = "analytics:read";

/// The verified identity of a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The token's subject: the user (or service) id.
    pub sub: String,
    pub scopes: Vec<String>,
    /// Expiry, seconds since the epoch, when the token has one.
    pub exp: Option<u64>,
}

/// Can a token with this `sub` act as a user? The one check every entry point applies: the
/// user-id rules of [`crate::limits::valid_user_id`].
pub fn usable_subject(sub: &str) -> bool {
    crate::limits::valid_user_id(sub)
}

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    fn from_map(claims: &HashMap<String, String>) -> Option<Self> {
        let sub = claims.get("sub").filter(|s| usable_subject(s))?.clone();
        let scopes = claims
            .get("scope")
            .map(|s| split_scopes(s))
            .unwrap_or_default();
        let exp = claims.get("exp").and_then(|e| e.parse().ok());
        Some(Claims { sub, scopes, exp })
    }

    /// The claims API Gateway's JWT authorizer attached to an HTTP API request, if any and if
    /// their subject is [usable](usable_subject).
    pub fn from_request(req: &lambda_http::Request) -> Option<Self> {
        match req.request_context_ref()? {
            RequestContext::ApiGatewayV2(ctx) => {
                Self::from_map(&ctx.authorizer.as_ref()?.jwt.as_ref()?.claims)
            }
            _ => None,
        }
    }
}

/// API Gateway flattens an array claim into `[a b]`; a normal `scope` claim is `a b`.
fn split_scopes(s: &str) -> Vec<String> {
    s.trim_matches(|c| c == '[' || c == ']')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no token")]
    Missing,
    #[error("token rejected: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token is signed with a key the issuer does not publish")]
    UnknownKey,
    #[error("token has no subject, or one that is not a valid user id")]
    NoSubject,
    #[error("could not fetch the JWKS: {0}")]
    Jwks(#[source] reqwest::Error),
}

#[derive(Deserialize)]
struct TokenClaims {
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    exp: Option<u64>,
}

/// Verifies JWTs against an issuer's JWKS, caching the key set. An unknown `kid` triggers one
/// refetch (key rotation), at most once per [`JwksVerifier::REFETCH_INTERVAL`].
#[derive(Clone)]
pub struct JwksVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    cache: Arc<RwLock<(Option<JwkSet>, Option<Instant>)>>,
}

impl std::fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("issuer", &self.settings.issuer)
            .finish()
    }
}

impl JwksVerifier {
    pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

    pub fn new(settings: JwtSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        JwksVerifier {
            settings,
            http,
            cache: Arc::new(RwLock::new((None, None))),
        }
    }

    /// A verifier with a fixed key set (no fetching), for tests and tools.
    pub fn with_keys(settings: JwtSettings, keys: JwkSet) -> Self {
        let v = Self::new(settings);
        v.cache
            .try_write()
            .map(|mut c| *c = (Some(keys), Some(Instant::now())))
            .ok();
        v
    }

    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        let resp = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(AuthError::Jwks)?;
        resp.error_for_status()
            .map_err(AuthError::Jwks)?
            .json::<JwkSet>()
            .await
            .map_err(AuthError::Jwks)
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<jsonwebtoken::jwk::Jwk, AuthError> {
        let find = |set: &JwkSet| match kid {
            Some(kid) => set.find(kid).cloned(),
            None => set.keys.first().cloned(),
        };
        {
            let cache = self.cache.read().await;
            if let Some(k) = cache.0.as_ref().and_then(find) {
                return Ok(k);
            }
        }
        let mut cache = self.cache.write().await;
        let may_refetch = cache
            .1
            .is_none_or(|at| at.elapsed() >= Self::REFETCH_INTERVAL)
            || cache.0.is_none();
        if may_refetch {
            let set = self.fetch().await?;
            *cache = (Some(set), Some(Instant::now()));
        }
        cache.0.as_ref().and_then(find).ok_or(AuthError::UnknownKey)
    }

    /// Verifies signature, `iss`, `aud`, `exp` and a [usable](usable_subject) `sub`. Only
    /// asymmetric algorithms are accepted, as with API Gateway's JWT authorizer.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = jsonwebtoken::decode_header(token)?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Invalid(
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into(),
            ));
        }
        let jwk = self.key_for(header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<TokenClaims>(token, &key, &validation)?;
        let sub = data
            .claims
            .sub
            .filter(|s| usable_subject(s))
            .ok_or(AuthError::NoSubject)?;
        Ok(Claims {
            sub,
            scopes: data
                .claims
                .scope
                .as_deref()
                .map(split_scopes)
                .unwrap_or_default(),
            exp: data.claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    // Test-only P-256 keys. KEY_A is published in the JWKS; KEY_B is an attacker's.
    const KEY_A: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgQeceKGR8G3Id57A0
kRyMN00IoTTidj5uIYLSPu78fJ6hRANCAAQ5T8IChnhNSx2iHHuzt8h6Cln38JZo
pzTTSOY12GCXpI3erhQafN60805ig0hd+M/JceLA4hWpY0+pUb9tt3RX
-----END PRIVATE KEY-----";
    const KEY_B: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgTI1Ldig0jhbI9Acq
KMBlV1vkr4H6UcPVtE6iJKzwzXqhRANCAARtJ3B6P792vfGywnTozc4VdtmRv86s
ZIb/hywEYUgqr2EfZS3N7Evoo7UNH0MSYnAuiE2nMZfG6Rv5KyVKJXoA
-----END PRIVATE KEY-----";

    fn verifier() -> JwksVerifier {
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
            "x": "OU_CAoZ4TUsdohx7s7fIegpZ9_CWaKc000jmNdhgl6Q", "y": "jd6uFBp83rTzTmKDSF34z8lx4sDiFaljT6lRv223dFc"
        }]}))
        .unwrap_or_else(|e| panic!("{e}"));
        let settings = JwtSettings {
            issuer: "https://issuer.test".into(),
            audience: "herald".into(),
            jwks_url: "http://127.0.0.1:9/jwks".into(),
        };
        JwksVerifier::with_keys(settings, jwks)
    }

    fn token(key: &str, kid: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_ec_pem(key.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        encode(&header, &claims, &key).unwrap_or_else(|e| panic!("{e}"))
    }

    fn claims(overrides: serde_json::Value) -> serde_json::Value {
        let now = chrono::Utc::now().timestamp();
        let mut c = json!({"sub": "alice", "iss": "https://issuer.test", "aud": "herald", "exp": now + 600, "scope": "notifications:write"});
        if let (Some(c), Some(o)) = (c.as_object_mut(), overrides.as_object()) {
            c.extend(o.clone());
        }
        c
    }

    #[tokio::test]
    async fn a_token_from_the_issuer_is_accepted() {
        let got = verifier()
            .verify(&token(KEY_A, "k1", claims(json!({}))))
            .await
            .ok();
        assert_eq!(got.as_ref().map(|c| c.sub.as_str()), Some("alice"));
        assert!(got.is_some_and(|c| c.has_scope(SCOPE_WRITE)));
    }

    #[tokio::test]
    async fn forged_expired_and_misdirected_tokens_are_refused() {
        let v = verifier();
        let past = chrono::Utc::now().timestamp() - 3600;
        let cases = [
            ("forged signature", token(KEY_B, "k1", claims(json!({})))),
            ("expired", token(KEY_A, "k1", claims(json!({"exp": past})))),
            (
                "wrong audience",
                token(KEY_A, "k1", claims(json!({"aud": "someone-else"}))),
            ),
            (
                "wrong issuer",
                token(KEY_A, "k1", claims(json!({"iss": "https://evil.test"}))),
            ),
            (
                "empty subject",
                token(KEY_A, "k1", claims(json!({"sub": ""}))),
            ),
            (
                "subject that breaks the hash tag",
                token(KEY_A, "k1", claims(json!({"sub": "{u:x}"}))),
            ),
            (
                "subject with a closing brace",
                token(KEY_A, "k1", claims(json!({"sub": "x}"}))),
            ),
            (
                "subject with a space",
                token(KEY_A, "k1", claims(json!({"sub": "a b"}))),
            ),
            ("not a JWT", "nonsense".to_owned()),
            ("empty", String::new()),
        ];
        for (what, t) in cases {
            assert!(v.verify(&t).await.is_err(), "{what} was accepted");
        }
        let hs256 = encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(b"shared"),
        )
        .unwrap_or_default();
        assert!(
            v.verify(&hs256).await.is_err(),
            "HS256 is refused, as by API Gateway"
        );
    }

    #[test]
    fn scopes_are_space_separated_or_flattened_arrays() {
        assert_eq!(
            split_scopes("notifications:write analytics:read"),
            ["notifications:write", "analytics:read"]
        );
        assert_eq!(split_scopes("[a b]"), ["a", "b"]);
        assert!(split_scopes("").is_empty());
    }
}
