//! `devstack token` (what `scripts/dev token` runs): a development token from the command line,
//! signed by the local issuer ([`crate::jwt::Issuer`]).
//!
//! `--user ID [--scope S]... [--tenant T] [--ttl SECONDS] [--data-dir DIR] [--issuer URL]
//! [--audience AUD]`. With `--tenant`, the token carries the tenant in the claim the functions
//! read it from (`TENANT_CLAIM`, default `tenant`, from the same environment); without it, no
//! such claim: the caller is the default tenant's. A tenant name the functions would refuse is
//! refused here.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use shared::config::{Env, TenantClaim};
use shared::tenant::Tenant;

use crate::config::USAGE;
use crate::jwt::Issuer;

/// One `devstack token` command, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenCommand {
    pub user: String,
    pub scopes: Vec<String>,
    pub tenant: Option<Tenant>,
    /// The claim that carries the tenant (`TENANT_CLAIM`).
    pub tenant_claim: String,
    pub ttl: Duration,
    pub data_dir: PathBuf,
    pub issuer: String,
    pub audience: String,
}

impl TokenCommand {
    /// The command's arguments (after `token`), with defaults from `env` (`DEVSTACK_DATA_DIR`,
    /// `DEVSTACK_HTTP_ADDR`, `TENANT_CLAIM`).
    pub fn parse(args: &[String], env: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let tenant_claim = TenantClaim::from_env(&Env::from_pairs(env.clone()))?.0;
        let mut command = TokenCommand {
            user: String::new(),
            scopes: Vec::new(),
            tenant: None,
            tenant_claim,
            ttl: Duration::from_secs(3600),
            data_dir: env
                .get("DEVSTACK_DATA_DIR")
                .map_or_else(|| ".herald".into(), PathBuf::from),
            issuer: format!(
                "http://{}",
                env.get("DEVSTACK_HTTP_ADDR")
                    .map_or("127.0.0.1:3000", String::as_str)
            ),
            audience: "herald".to_owned(),
        };
        let mut user = None;
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))
            };
            match flag.as_str() {
                "--user" | "--sub" => user = Some(value()?),
                "--scope" => command.scopes.push(value()?),
                "--tenant" => {
                    let name = value()?;
                    command.tenant = Some(Tenant::parse(&name).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--tenant {name:?} is not a valid tenant name (lower-case letters, digits, `.`, `_`, `-`)"
                        )
                    })?)
                }
                "--ttl" => {
                    command.ttl = Duration::from_secs(
                        value()?
                            .parse()
                            .map_err(|_| anyhow::anyhow!("--ttl expects seconds"))?,
                    )
                }
                "--data-dir" => command.data_dir = value()?.into(),
                "--issuer" => command.issuer = value()?,
                "--audience" => command.audience = value()?,
                other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
            }
        }
        command.user = user.ok_or_else(|| anyhow::anyhow!("--user is required"))?;
        Ok(command)
    }

    /// The signed token, and a line saying what it is (for stderr).
    pub fn mint(&self) -> anyhow::Result<(String, String)> {
        let issuer = Issuer::load_or_create(&self.data_dir, &self.issuer, &self.audience)?;
        let mut extra = Map::new();
        if let Some(tenant) = &self.tenant {
            extra.insert(
                self.tenant_claim.clone(),
                Value::String(tenant.as_str().into()),
            );
        }
        let token = issuer.token_with_claims(&self.user, &self.scopes, extra, self.ttl)?;
        let scopes = match self.scopes.is_empty() {
            true => "none".to_owned(),
            false => self.scopes.join(" "),
        };
        let tenant = match &self.tenant {
            Some(tenant) => format!("tenant {tenant} (claim `{}`)", self.tenant_claim),
            None => "the default tenant".to_owned(),
        };
        let summary = format!(
            "token for {} of {tenant} (scopes: {scopes}), valid {}s, issuer {}",
            self.user,
            self.ttl.as_secs(),
            issuer.issuer
        );
        Ok((token, summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    /// Mints with `line` in a fresh data folder and `env`, and returns the verified claims.
    fn claims_of(line: &str, env: &[(&str, &str)]) -> anyhow::Result<Map<String, Value>> {
        let dir = std::env::temp_dir().join(format!("devstack-token-{}", uuid::Uuid::new_v4()));
        let mut env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.insert("DEVSTACK_DATA_DIR".into(), dir.display().to_string());
        let command = TokenCommand::parse(&args(line), &env)?;
        let (token, _) = command.mint()?;
        let issuer = Issuer::load_or_create(&dir, &command.issuer, "herald")?;
        let claims = issuer.verify(&token, &command.issuer, &["herald".into()])?;
        let _ = std::fs::remove_dir_all(dir);
        Ok(claims)
    }

    #[test]
    fn a_tenant_token_carries_the_tenant_claim_and_a_plain_one_does_not() -> anyhow::Result<()> {
        let claims = claims_of(
            "--user alice --tenant acme --scope notifications:write",
            &[],
        )?;
        assert_eq!(claims.get("sub").and_then(Value::as_str), Some("alice"));
        assert_eq!(claims.get("tenant").and_then(Value::as_str), Some("acme"));
        assert_eq!(
            claims.get("scope").and_then(Value::as_str),
            Some("notifications:write")
        );
        let plain = claims_of("--user alice", &[])?;
        assert_eq!(plain.get("tenant"), None);
        Ok(())
    }

    #[test]
    fn the_tenant_goes_in_the_claim_tenant_claim_names() -> anyhow::Result<()> {
        let claims = claims_of("--user bob --tenant uni-1", &[("TENANT_CLAIM", "org")])?;
        assert_eq!(claims.get("org").and_then(Value::as_str), Some("uni-1"));
        assert_eq!(claims.get("tenant"), None);
        Ok(())
    }

    #[test]
    fn an_invalid_tenant_is_refused_before_minting() {
        let env = BTreeMap::new();
        for bad in [
            "--user a --tenant a/b",
            "--user a --tenant Acme",
            "--user a --tenant",
        ] {
            assert!(TokenCommand::parse(&args(bad), &env).is_err(), "{bad}");
        }
    }
}
