//! Who is calling, and what they may do.
//!
//! - [`Claims::from_request`] reads the claims that API Gateway's JWT authorizer put into
//!   `requestContext.authorizer.jwt.claims` (HTTP API, payload 2.0). The authorizer has verified
//!   the token; the function trusts it and never takes a user id from the body or path instead.
//! - [`JwksVerifier`] verifies a token itself (RS256/ES256 against the issuer's JWKS, plus `iss`,
//!   `aud` and `exp`), for callers API Gateway cannot authorize: the WebSocket `$connect`.
//!
//! Scopes come from the space-separated `scope` claim.

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

impl Claims {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    fn from_map(claims: &HashMap<String, String>) -> Option<Self> {
        let sub = claims.get("sub").filter(|s| !s.is_empty())?.clone();
        let scopes = claims
            .get("scope")
            .map(|s| split_scopes(s))
            .unwrap_or_default();
        let exp = claims.get("exp").and_then(|e| e.parse().ok());
        Some(Claims { sub, scopes, exp })
    }

    /// The claims API Gateway's JWT authorizer attached to an HTTP API request, if any.
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
    #[error("token has no subject")]
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

    /// Verifies signature, `iss`, `aud` and `exp`. Only asymmetric algorithms are accepted, as
    /// with API Gateway's JWT authorizer.
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
            .filter(|s| !s.is_empty())
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
