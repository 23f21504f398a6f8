//! [`JwtSettings`]: how the functions that verify tokens themselves (`ws`) verify them;
//! [`TenantClaim`]: which claim names the caller's tenant, for every function that reads claims.

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
    /// Which claim names the tenant. `TENANT_CLAIM`.
    pub tenant_claim: TenantClaim,
}

/// The name of the claim that names the caller's tenant (`TENANT_CLAIM`, default `tenant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantClaim(pub String);

impl TenantClaim {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(TenantClaim(env.parse("TENANT_CLAIM")?))
    }
}

/// The reference's default (`tenant`).
impl Default for TenantClaim {
    fn default() -> Self {
        TenantClaim(
            super::reference::default_of("TENANT_CLAIM")
                .unwrap_or("tenant")
                .to_owned(),
        )
    }
}

impl JwtSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(JwtSettings {
            issuer: env.required("JWT_ISSUER")?,
            audience: env.required("JWT_AUDIENCE")?,
            jwks_url: env.required("JWKS_URL")?,
            jwks_ttl: Duration::from_secs(env.positive("JWKS_TTL_SECONDS")?),
            tenant_claim: TenantClaim::from_env(env)?,
        })
    }
}
