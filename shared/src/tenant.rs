//! The tenant: an institution or any isolated customer, named by a JWT claim (`TENANT_CLAIM`,
//! default `tenant`); a token without the claim belongs to [`Tenant::default_tenant`].
//!
//! A user is the pair (tenant, userId). The isolation is structural: every tenant-owned key
//! carries the tenant inside its hash tag ([`crate::store::KeySpace::for_tenant`]), so two
//! tenants' data never share a key, and the default tenant's keys are exactly those of a
//! deployment without tenants (no migration). Global worker sets whose members name a user carry
//! the tenant with [`member`] / [`parse_member`]; Kafka records carry it in their `tenant` field.
//! See `docs/tenants.md`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of the tenant of a deployment without tenants, and of every token without the claim.
pub const DEFAULT_TENANT: &str = "default";

/// A valid tenant name ([`crate::limits::valid_tenant`]): lower-case letters, digits, `.`, `_`,
/// `-`; never `/`, `:` or a brace, so it cannot be confused with a key's kind or id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(String);

impl Tenant {
    /// The tenant named `name`, if the name is valid.
    pub fn parse(name: &str) -> Option<Tenant> {
        crate::limits::valid_tenant(name).then(|| Tenant(name.to_owned()))
    }

    /// The tenant of a token without the claim, a record without the field, a set member written
    /// before tenants existed.
    pub fn default_tenant() -> Tenant {
        Tenant(DEFAULT_TENANT.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == DEFAULT_TENANT
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant::default_tenant()
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Tenant {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// A record or job naming an invalid tenant is refused, never reinterpreted as another tenant.
impl<'de> Deserialize<'de> for Tenant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Tenant::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid tenant `{name}`")))
    }
}

/// Is the tenant the default one? For `#[serde(skip_serializing_if)]`: records and jobs of the
/// default tenant keep exactly their shape from before tenants.
pub fn is_default(tenant: &Tenant) -> bool {
    tenant.is_default()
}

/// Separates a user id from its tenant in a global set's member: a user id is printable ASCII
/// without spaces, so a space never occurs in one.
const MEMBER_SEPARATOR: char = ' ';

/// The member naming `id` (a user id, or `<userId>\n<entryId>`: anything without a space) of
/// `tenant` in a global worker set (`{outbox}:dirty`, `{push}:due`, …): `id` itself for the
/// default tenant (the members written before tenants), else `<id> <tenant>`.
pub fn member(tenant: &Tenant, id: &str) -> String {
    if tenant.is_default() {
        id.to_owned()
    } else {
        format!("{id}{MEMBER_SEPARATOR}{}", tenant.0)
    }
}

/// The tenant and id of a [`member`]; a member without the suffix is the default tenant's, and
/// one with an invalid tenant is `None`.
pub fn parse_member(member: &str) -> Option<(Tenant, &str)> {
    match member.rsplit_once(MEMBER_SEPARATOR) {
        None => Some((Tenant::default_tenant(), member)),
        Some((id, tenant)) => Some((Tenant::parse(tenant)?, id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_is_a_valid_name_and_default_is_the_default() {
        assert_eq!(Tenant::default().as_str(), "default");
        assert!(Tenant::default_tenant().is_default());
        let acme = Tenant::parse("acme").map(|t| t.to_string());
        assert_eq!(acme.as_deref(), Some("acme"));
        assert!(Tenant::parse("Acme").is_none());
        assert!(Tenant::parse("a/b").is_none());
        assert!(serde_json::from_str::<Tenant>("\"a:b\"").is_err());
    }

    #[test]
    fn a_member_round_trips_and_an_old_member_is_the_default_tenants() {
        let acme = Tenant::parse("acme").unwrap_or_default();
        assert_eq!(member(&Tenant::default(), "bob"), "bob");
        assert_eq!(member(&acme, "bob\ne1"), "bob\ne1 acme");
        assert_eq!(parse_member("bob\ne1 acme"), Some((acme, "bob\ne1")));
        assert_eq!(parse_member("bob"), Some((Tenant::default(), "bob")));
        assert_eq!(parse_member("bob Bad"), None);
    }
}
