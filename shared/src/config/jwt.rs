//! [`JwtSettings`]: how the functions that verify tokens themselves (`ws`) verify them.

use std::time::Duration;

use super::{ConfigError, Env};

/// How to verify tokens (the callers that verify JWTs themselves: `ws`; the HTTP API trusts API
/// Gateway's JWT authorizer). No defaults: a function that needs them refuses to start without.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    /// How long a fetched key set is trusted before it is fetched again: the longest a key the
    /// issuer removed keeps verifying tokens. `JWKS_TTL_SECONDS`.
    pub jwks_ttl: Duration,
}

impl JwtSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(JwtSettings {
            issuer: env.required("JWT_ISSUER")?,
            audience: env.required("JWT_AUDIENCE")?,
            jwks_url: env.required("JWKS_URL")?,
            jwks_ttl: Duration::from_secs(env.positive("JWKS_TTL_SECONDS")?),
        })
    }
}
