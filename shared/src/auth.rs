//! Who is calling, and what they may do.
//!
//! - [`Claims::from_request`] reads the claims that API Gateway's JWT authorizer put into
//!   `requestContext.authorizer.jwt.claims` (HTTP API, payload 2.0). The authorizer has verified
//!   the token; the function trusts it and never takes a user id from the body or path instead.
//! - [`JwksVerifier`] verifies a token itself (RS256/ES256 against the issuer's JWKS, plus `iss`,
//!   `aud`, `exp` and `nbf`), for callers API Gateway cannot authorize: the WebSocket `$connect`.
//!   The key set is refetched once it is older than `JWKS_TTL_SECONDS` (default 10 min), so a key
//!   the issuer removed stops being trusted within that time, and at once for an unknown `kid`.
//!
//! Scopes come from the space-separated `scope` claim. Both paths refuse a token whose `sub` is
//! not a usable user id ([`usable_subject`]): a subject with a brace would break the user's
//! `{u:<userId>}` hash tag, so such a token gets 401 on HTTP and a refused `$connect` alike.
//!
//! The tenant comes from the claim `TENANT_CLAIM` names ([`TenantClaim`], default `tenant`):
//! absent, the caller is the default tenant's; present but not a valid tenant name, the token is
//! refused like one with an unusable `sub` (never read as another tenant).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
use lambda_http::request::RequestContext;
use lambda_http::RequestExt;
use serde::Deserialize;
use tokio::sync::RwLock;

use crate::config::{JwtSettings, TenantClaim};
use crate::tenant::Tenant;

/// Scope that lets a service create notifications for any user.
pub const SCOPE_WRITE: &str = "notifications:write";
/// Scope that lets a caller read analytics.
pub const SCOPE_ANALYTICS: &str = "analytics:read";
/// Scope that lets an operator erase and export any user (`DELETE /v1/users/{id}`,
/// `GET /v1/users/{id}/export`).
pub const SCOPE_USERS_ADMIN: &str = "users:admin";
/// Scope that lets a caller (an operator, a load balancer's probe) read `GET /v1/health`.
pub const SCOPE_HEALTH: &str = "health:read";
/// Scope that lets a caller (an operator) manage the outbound webhooks.
pub const SCOPE_WEBHOOKS: &str = "webhooks:admin";

/// The verified identity of a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The token's subject: the user (or service) id.
    pub sub: String,
    pub scopes: Vec<String>,
    /// Expiry, seconds since the epoch, when the token has one.
    pub exp: Option<u64>,
    /// The caller's tenant: every key the caller's request touches is this tenant's.
    pub tenant: Tenant,
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

    fn from_map(claims: &HashMap<String, String>, tenant_claim: &TenantClaim) -> Option<Self> {
        let sub = claims.get("sub").filter(|s| usable_subject(s))?.clone();
        let tenant = match claims.get(&tenant_claim.0) {
            None => Tenant::default_tenant(),
            Some(name) => Tenant::parse(name)?,
        };
        let scopes = claims
            .get("scope")
            .map(|s| split_scopes(s))
            .unwrap_or_default();
        let exp = claims.get("exp").and_then(|e| e.parse().ok());
        Some(Claims {
            sub,
            scopes,
            exp,
            tenant,
        })
    }

    /// The claims API Gateway's JWT authorizer attached to an HTTP API request, if any and if
    /// their subject is [usable](usable_subject) and their tenant (the claim `tenant_claim`)
    /// absent or valid.
    pub fn from_request(req: &lambda_http::Request, tenant_claim: &TenantClaim) -> Option<Self> {
        match req.request_context_ref()? {
            RequestContext::ApiGatewayV2(ctx) => {
                Self::from_map(&ctx.authorizer.as_ref()?.jwt.as_ref()?.claims, tenant_claim)
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
    #[error("token's tenant claim is not a valid tenant name")]
    InvalidTenant,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("could not fetch the JWKS: {0}")]
    Jwks(#[source] reqwest::Error),
}

#[derive(Deserialize)]
struct TokenClaims {
    sub: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    exp: Option<u64>,
    nbf: Option<u64>,
    /// Every other claim: the tenant claim's name is a setting.
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}

/// The issuer's key set as last fetched.
#[derive(Default)]
struct KeyCache {
    keys: Option<JwkSet>,
    /// When `keys` was fetched.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried, and whether it failed.
    tried_at: Option<Instant>,
    failed: bool,
}

impl KeyCache {
    fn fresh(&self, ttl: Duration) -> bool {
        self.keys.is_some() && self.fetched_at.is_some_and(|at| at.elapsed() < ttl)
    }

    fn tried_recently(&self) -> bool {
        self.tried_at
            .is_some_and(|at| at.elapsed() < JwksVerifier::REFETCH_INTERVAL)
    }
}

/// Verifies JWTs against an issuer's JWKS, caching the key set for [`JwtSettings::jwks_ttl`].
///
/// - A set older than the TTL is refetched before use, so a key the issuer removed (revoked) is
///   trusted at most that long.
/// - An unknown `kid` triggers one refetch (key rotation), at most once per
///   [`JwksVerifier::REFETCH_INTERVAL`].
/// - If a refetch fails, the previous set stays in use (an issuer outage must not refuse every
///   connection) and the refetch is retried at most once per `REFETCH_INTERVAL`.
#[derive(Clone)]
pub struct JwksVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    cache: Arc<RwLock<KeyCache>>,
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
    /// How far in the future a token's `nbf` may lie: the issuer's clock may run ahead of ours.
    pub const NBF_LEEWAY_SECS: u64 = 60;

    pub fn new(settings: JwtSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap_or_default();
        JwksVerifier {
            settings,
            http,
            cache: Arc::new(RwLock::new(KeyCache::default())),
        }
    }

    /// A verifier starting with this key set (refetched from `jwks_url` once older than
    /// `jwks_ttl`, as usual), for tests and tools.
    pub fn with_keys(settings: JwtSettings, keys: JwkSet) -> Self {
        let v = Self::new(settings);
        v.cache
            .try_write()
            .map(|mut c| {
                c.keys = Some(keys);
                c.fetched_at = Some(Instant::now());
            })
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
        let ttl = self.settings.jwks_ttl;
        {
            let cache = self.cache.read().await;
            if cache.fresh(ttl) {
                if let Some(k) = cache.keys.as_ref().and_then(find) {
                    return Ok(k);
                }
            }
        }
        let mut cache = self.cache.write().await;
        let fresh = cache.fresh(ttl);
        let known = cache.keys.as_ref().and_then(find);
        if let (true, Some(k)) = (fresh, &known) {
            return Ok(k.clone()); // another caller refetched meanwhile
        }
        let refetch = match (cache.keys.is_some(), fresh) {
            (false, _) => true,
            // Stale: refetch, unless the last try failed a moment ago.
            (true, false) => !(cache.failed && cache.tried_recently()),
            // Fresh, but the kid is unknown: a rotation, or a forged kid (so rate-limited).
            (true, true) => !cache.tried_recently(),
        };
        if refetch {
            cache.tried_at = Some(Instant::now());
            match self.fetch().await {
                Ok(set) => {
                    cache.keys = Some(set);
                    cache.fetched_at = cache.tried_at;
                    cache.failed = false;
                }
                Err(e) if cache.keys.is_some() => {
                    cache.failed = true;
                    tracing::warn!(error = %e, "refreshing the JWKS failed; keeping the previous keys");
                }
                Err(e) => {
                    cache.failed = true;
                    return Err(e);
                }
            }
        }
        cache
            .keys
            .as_ref()
            .and_then(find)
            .ok_or(AuthError::UnknownKey)
    }

    /// Verifies signature, `iss`, `aud`, `exp`, `nbf` (with [`Self::NBF_LEEWAY_SECS`]) and a
    /// [usable](usable_subject) `sub`, and a valid tenant claim when there is one. Only asymmetric
    /// algorithms are accepted, as with API Gateway's JWT authorizer.
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
        let now = jsonwebtoken::get_current_timestamp();
        if data
            .claims
            .nbf
            .is_some_and(|nbf| nbf > now + Self::NBF_LEEWAY_SECS)
        {
            return Err(AuthError::NotYetValid);
        }
        let sub = data
            .claims
            .sub
            .filter(|s| usable_subject(s))
            .ok_or(AuthError::NoSubject)?;
        let tenant = match data.claims.other.get(&self.settings.tenant_claim.0) {
            None => Tenant::default_tenant(),
            Some(name) => name
                .as_str()
                .and_then(Tenant::parse)
                .ok_or(AuthError::InvalidTenant)?,
        };
        Ok(Claims {
            sub,
            scopes: data
                .claims
                .scope
                .as_deref()
                .map(split_scopes)
                .unwrap_or_default(),
            exp: data.claims.exp,
            tenant,
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
        JwksVerifier::with_keys(settings("http://127.0.0.1:9/jwks", Duration::MAX), jwks)
    }

    fn settings(jwks_url: &str, jwks_ttl: Duration) -> JwtSettings {
        JwtSettings {
            issuer: "https://issuer.test".into(),
            audience: "herald".into(),
            jwks_url: jwks_url.into(),
            jwks_ttl,
            tenant_claim: TenantClaim::default(),
        }
    }

    const JWKS_K1: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig", "alg": "ES256",
        "x": "OU_CAoZ4TUsdohx7s7fIegpZ9_CWaKc000jmNdhgl6Q", "y": "jd6uFBp83rTzTmKDSF34z8lx4sDiFaljT6lRv223dFc"}]}"#;

    /// A real HTTP server answering every request with the current JWKS document (or a 503 when
    /// it is `None`), counting the requests.
    struct JwksServer {
        url: String,
        document: Arc<std::sync::Mutex<Option<String>>>,
        fetches: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl JwksServer {
        async fn start(document: &str) -> JwksServer {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let url = format!(
                "http://{}/jwks",
                listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
            );
            let served = Arc::new(std::sync::Mutex::new(Some(document.to_owned())));
            let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let (doc, count) = (served.clone(), fetches.clone());
            tokio::spawn(async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    let mut request = vec![0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let current = doc.lock().map(|d| d.clone()).unwrap_or_default();
                    let response = match current {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = socket.write_all(response.as_bytes()).await;
                }
            });
            JwksServer {
                url,
                document: served,
                fetches,
            }
        }

        fn serve(&self, document: Option<&str>) {
            if let Ok(mut d) = self.document.lock() {
                *d = document.map(str::to_owned);
            }
        }

        fn fetches(&self) -> usize {
            self.fetches.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn a_key_the_issuer_removed_stops_being_trusted_once_the_set_is_older_than_the_ttl() {
        let server = JwksServer::start(JWKS_K1).await;
        let t = token(KEY_A, "k1", claims(json!({})));
        // A TTL of zero: every verification finds the set stale, whatever the machine's speed.
        let refreshing = JwksVerifier::new(settings(&server.url, Duration::ZERO));
        // A TTL of a day: the set fetched first is used throughout.
        let caching = JwksVerifier::new(settings(&server.url, Duration::from_secs(86_400)));
        assert!(refreshing.verify(&t).await.is_ok());
        assert!(caching.verify(&t).await.is_ok());
        let fetched = server.fetches();

        server.serve(Some(r#"{"keys": []}"#));
        assert!(
            matches!(refreshing.verify(&t).await, Err(AuthError::UnknownKey)),
            "a removed key is refused once the set is stale"
        );
        assert!(
            caching.verify(&t).await.is_ok(),
            "within the TTL the cached set is used"
        );
        assert_eq!(
            server.fetches(),
            fetched + 1,
            "only the stale set is refetched"
        );
    }

    #[tokio::test]
    async fn an_issuer_that_cannot_be_reached_leaves_the_previous_keys_in_use() {
        let server = JwksServer::start(JWKS_K1).await;
        let t = token(KEY_A, "k1", claims(json!({})));
        let v = JwksVerifier::new(settings(&server.url, Duration::ZERO));
        assert!(v.verify(&t).await.is_ok());
        server.serve(None);
        assert!(v.verify(&t).await.is_ok(), "the stale set is kept on error");
        let fetched = server.fetches();
        assert!(v.verify(&t).await.is_ok());
        assert_eq!(
            server.fetches(),
            fetched,
            "a failed refetch is not retried at once"
        );
        let cold = JwksVerifier::new(settings(&server.url, Duration::ZERO));
        assert!(
            matches!(cold.verify(&t).await, Err(AuthError::Jwks(_))),
            "without any set nothing is trusted"
        );
    }

    #[tokio::test]
    async fn a_token_not_valid_yet_is_refused_beyond_a_minute_of_clock_skew() {
        let v = verifier();
        let now = chrono::Utc::now().timestamp();
        for (nbf, accepted) in [(now - 10, true), (now + 20, true), (now + 600, false)] {
            let got = v
                .verify(&token(KEY_A, "k1", claims(json!({"nbf": nbf}))))
                .await;
            assert_eq!(got.is_ok(), accepted, "nbf now{:+}: {got:?}", nbf - now);
        }
        assert!(matches!(
            v.verify(&token(KEY_A, "k1", claims(json!({"nbf": now + 600}))))
                .await,
            Err(AuthError::NotYetValid)
        ));
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
            (
                "tenant that would break the key schema",
                token(KEY_A, "k1", claims(json!({"tenant": "a/b"}))),
            ),
            (
                "tenant that is not a string",
                token(KEY_A, "k1", claims(json!({"tenant": 7}))),
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

    #[tokio::test]
    async fn the_tenant_claim_names_the_tenant_and_its_absence_the_default() {
        let v = verifier();
        let tenant = |c: serde_json::Value| {
            let t = token(KEY_A, "k1", claims(c));
            let v = &v;
            async move { v.verify(&t).await.ok().map(|c| c.tenant.to_string()) }
        };
        assert_eq!(tenant(json!({})).await.as_deref(), Some("default"));
        assert_eq!(
            tenant(json!({"tenant": "acme"})).await.as_deref(),
            Some("acme")
        );
        let map = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            Claims::from_map(&m, &TenantClaim("org".into())).map(|c| c.tenant.to_string())
        };
        assert_eq!(map(&[("sub", "bob")]).as_deref(), Some("default"));
        assert_eq!(
            map(&[("sub", "bob"), ("org", "uni")]).as_deref(),
            Some("uni")
        );
        assert_eq!(
            map(&[("sub", "bob"), ("tenant", "uni")]).as_deref(),
            Some("default")
        );
        assert_eq!(map(&[("sub", "bob"), ("org", "Uni")]), None);
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
