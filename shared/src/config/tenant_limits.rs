//! [`TenantLimits`]: the limits one tenant works under — the GCRA [`RateLimit`]s per recipient,
//! per sender and per user, and the tenant's quota of creates per minute — and
//! [`TenantOverrides`], the tenants whose limits differ from the deployment's (`TENANT_LIMITS`).
//!
//! `TENANT_LIMITS` is one JSON object, tenant → `{"<SETTING>": <number>, …}`, where each setting
//! is one of [`OVERRIDABLE`] (the deployment-wide settings of the same name). A setting a tenant
//! leaves out keeps the deployment's value. Anything else — not JSON, an invalid tenant name, an
//! unknown setting, a value that setting refuses — fails the cold start with a message naming
//! `TENANT_LIMITS`, the tenant and the setting: a typo never silently lifts a limit.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{ConfigError, Env, RateLimit};
use crate::tenant::Tenant;

/// The settings a tenant may override in `TENANT_LIMITS`.
pub const OVERRIDABLE: &[&str] = &[
    "RATE_RECIPIENT_BURST",
    "RATE_RECIPIENT_PER_MINUTE",
    "RATE_SENDER_BURST",
    "RATE_SENDER_PER_SECOND",
    "RATE_USER_MUTATION_BURST",
    "RATE_USER_MUTATION_PER_MINUTE",
    "TENANT_CREATES_PER_MINUTE",
];

/// The limits one tenant works under.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantLimits {
    pub per_recipient: RateLimit,
    pub per_sender: RateLimit,
    /// Every mutation a user makes (HTTP) and every WebSocket action but `ping`, together.
    pub per_user_mutation: RateLimit,
    /// The tenant's quota of creates (each recipient of a create one, each broadcast one): a
    /// minute's worth at once, then refilled evenly; `None` is unlimited.
    pub creates: Option<RateLimit>,
}

/// Every tenant whose limits differ from the deployment's, with its limits in full.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantOverrides(BTreeMap<Tenant, TenantLimits>);

impl TenantLimits {
    /// The deployment's limits, from the `RATE_*` settings and `TENANT_CREATES_PER_MINUTE`.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mut read = |var: &'static str| -> Result<u32, ConfigError> {
            if var == "TENANT_CREATES_PER_MINUTE" {
                env.parse(var)
            } else {
                env.positive(var)
            }
        };
        Self::read(&mut read)
    }

    /// The limits with `read` giving each of [`OVERRIDABLE`]'s values (0 is refused but for the
    /// quota, where it means unlimited).
    fn read(
        read: &mut impl FnMut(&'static str) -> Result<u32, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let limit = |burst, per_period, period| RateLimit {
            burst,
            per_period,
            period,
        };
        let minute = Duration::from_secs(60);
        let creates = read("TENANT_CREATES_PER_MINUTE")?;
        Ok(TenantLimits {
            per_recipient: limit(
                read("RATE_RECIPIENT_BURST")?,
                read("RATE_RECIPIENT_PER_MINUTE")?,
                minute,
            ),
            per_sender: limit(
                read("RATE_SENDER_BURST")?,
                read("RATE_SENDER_PER_SECOND")?,
                Duration::from_secs(1),
            ),
            per_user_mutation: limit(
                read("RATE_USER_MUTATION_BURST")?,
                read("RATE_USER_MUTATION_PER_MINUTE")?,
                minute,
            ),
            creates: (creates > 0).then(|| limit(creates, creates, minute)),
        })
    }

    /// The value of `var` (one of [`OVERRIDABLE`]) in these limits.
    fn value_of(&self, var: &str) -> u32 {
        match var {
            "RATE_RECIPIENT_BURST" => self.per_recipient.burst,
            "RATE_RECIPIENT_PER_MINUTE" => self.per_recipient.per_period,
            "RATE_SENDER_BURST" => self.per_sender.burst,
            "RATE_SENDER_PER_SECOND" => self.per_sender.per_period,
            "RATE_USER_MUTATION_BURST" => self.per_user_mutation.burst,
            "RATE_USER_MUTATION_PER_MINUTE" => self.per_user_mutation.per_period,
            _ => self.creates.map_or(0, |c| c.per_period),
        }
    }
}

impl TenantOverrides {
    /// `TENANT_LIMITS` over `defaults` (the deployment's limits).
    pub fn from_env(env: &Env, defaults: &TenantLimits) -> Result<Self, ConfigError> {
        const VAR: &str = "TENANT_LIMITS";
        let Some(raw) = env.optional(VAR) else {
            return Ok(TenantOverrides::default());
        };
        let invalid = |reason: String| ConfigError::Invalid {
            var: VAR,
            value: raw.clone(),
            reason,
        };
        let tenants: BTreeMap<String, BTreeMap<String, serde_json::Value>> =
            serde_json::from_str(&raw).map_err(|e| {
                invalid(format!(
                    "expected a JSON object {{\"<tenant>\": {{\"<SETTING>\": <number>, …}}}}: {e}"
                ))
            })?;
        let mut overrides = BTreeMap::new();
        for (name, settings) in tenants {
            let tenant = Tenant::parse(&name)
                .ok_or_else(|| invalid(format!("`{name}` is not a valid tenant name")))?;
            if let Some(unknown) = settings.keys().find(|k| !OVERRIDABLE.contains(&k.as_str())) {
                return Err(invalid(format!(
                    "tenant `{name}`: `{unknown}` cannot be set per tenant (one of {})",
                    OVERRIDABLE.join(", ")
                )));
            }
            let mut read = |var: &'static str| -> Result<u32, ConfigError> {
                let Some(value) = settings.get(var) else {
                    return Ok(defaults.value_of(var));
                };
                let least = u64::from(var != "TENANT_CREATES_PER_MINUTE");
                value
                    .as_u64()
                    .filter(|v| *v >= least)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| {
                        invalid(format!(
                            "tenant `{name}`: `{var}` must be a whole number from {least} to {}, not {value}",
                            u32::MAX
                        ))
                    })
            };
            overrides.insert(tenant, TenantLimits::read(&mut read)?);
        }
        Ok(TenantOverrides(overrides))
    }

    /// `tenant`'s own limits, if it has any.
    pub fn get(&self, tenant: &Tenant) -> Option<&TenantLimits> {
        self.0.get(tenant)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> Tenant {
        Tenant::parse(name).unwrap_or_else(|| panic!("{name} is a valid tenant"))
    }

    fn overrides(pairs: &[(&str, &str)]) -> Result<TenantOverrides, ConfigError> {
        let env = Env::from_pairs(pairs.iter().copied());
        TenantOverrides::from_env(&env, &TenantLimits::from_env(&env)?)
    }

    #[test]
    fn the_deployment_has_no_quota_unless_set() -> Result<(), ConfigError> {
        let env = Env::from_pairs::<String, String>([]);
        assert_eq!(TenantLimits::from_env(&env)?.creates, None);
        let env = Env::from_pairs([("TENANT_CREATES_PER_MINUTE", "600")]);
        let creates = TenantLimits::from_env(&env)?.creates;
        assert_eq!(creates.map(|c| c.burst), Some(600));
        assert_eq!(
            creates.map(|c| c.emission_interval()),
            Some(Duration::from_millis(100))
        );
        Ok(())
    }

    #[test]
    fn an_override_replaces_only_the_settings_it_names() -> Result<(), ConfigError> {
        let o = overrides(&[
            ("RATE_SENDER_BURST", "40"),
            (
                "TENANT_LIMITS",
                r#"{"acme": {"RATE_SENDER_PER_SECOND": 5, "TENANT_CREATES_PER_MINUTE": 6000}, "zero": {}}"#,
            ),
        ])?;
        let acme = o.get(&tenant("acme")).copied();
        assert_eq!(acme.map(|l| l.per_sender.per_period), Some(5));
        assert_eq!(acme.map(|l| l.per_sender.burst), Some(40));
        assert_eq!(acme.map(|l| l.per_recipient.burst), Some(200));
        assert_eq!(acme.and_then(|l| l.creates).map(|c| c.burst), Some(6000));
        assert_eq!(o.get(&tenant("zero")).map(|l| l.creates), Some(None));
        assert_eq!(o.get(&tenant("other")), None);
        Ok(())
    }

    #[test]
    fn a_tenant_can_lift_the_deployments_quota_with_zero() -> Result<(), ConfigError> {
        let o = overrides(&[
            ("TENANT_CREATES_PER_MINUTE", "10"),
            (
                "TENANT_LIMITS",
                r#"{"big": {"TENANT_CREATES_PER_MINUTE": 0}}"#,
            ),
        ])?;
        assert_eq!(o.get(&tenant("big")).map(|l| l.creates), Some(None));
        Ok(())
    }

    #[test]
    fn a_bad_override_fails_naming_the_setting_and_the_tenant() {
        let cases = [
            ("not json", "expected a JSON object"),
            (
                r#"{"Bad Name": {}}"#,
                "`Bad Name` is not a valid tenant name",
            ),
            (
                r#"{"acme": {"RATE_SENDER_PER_SECONDS": 5}}"#,
                "tenant `acme`: `RATE_SENDER_PER_SECONDS` cannot be set per tenant",
            ),
            (
                r#"{"acme": {"RATE_SENDER_BURST": 0}}"#,
                "tenant `acme`: `RATE_SENDER_BURST` must be a whole number from 1",
            ),
            (
                r#"{"acme": {"TENANT_CREATES_PER_MINUTE": "many"}}"#,
                "tenant `acme`: `TENANT_CREATES_PER_MINUTE` must be a whole number from 0",
            ),
            (r#"{"acme": 5}"#, "expected a JSON object"),
        ];
        for (value, expected) in cases {
            let message = overrides(&[("TENANT_LIMITS", value)])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                message.starts_with("TENANT_LIMITS=") && message.contains(expected),
                "{value}: {message}"
            );
        }
    }
}
