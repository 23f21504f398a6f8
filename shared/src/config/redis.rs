//! [`RedisSettings`]: how to reach Redis (one server or a cluster, TLS, AUTH) and how keys are
//! named. Every node's URL is checked at cold start; the password never reaches a message or log.

use super::{ConfigError, Env};

/// How to reach Redis, and how keys are named.
#[derive(Clone)]
pub struct RedisSettings {
    /// `REDIS_URL` as given: `redis://` or `rediss://` (TLS), with an optional
    /// `[user]:password@` (AUTH; percent-encode reserved characters). With `cluster`, a
    /// comma-separated list of seed nodes is allowed; one reachable seed is enough, and the rest
    /// of the cluster is discovered from it. The seeds share the first one's TLS and password.
    pub url: String,
    /// `REDIS_CLUSTER=true` for Redis Cluster (ElastiCache / MemoryDB cluster mode). Nothing
    /// else changes: every multi-key command and script stays within one hash slot.
    pub cluster: bool,
    /// Prepended to every key; lets tests and several deployments share one server.
    pub key_prefix: String,
}

impl RedisSettings {
    /// Reads `REDIS_URL`, `REDIS_CLUSTER` and `REDIS_KEY_PREFIX`, and parses every node's URL
    /// now, so a bad URL stops the cold start with a message naming `REDIS_URL` (with the
    /// password masked) rather than failing the first request.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let settings = RedisSettings {
            url: env.required("REDIS_URL")?,
            cluster: env.bool("REDIS_CLUSTER")?,
            key_prefix: env.string_or("REDIS_KEY_PREFIX", ""),
        };
        let invalid = |reason: String| ConfigError::Invalid {
            var: "REDIS_URL",
            value: settings.redacted_url(),
            reason,
        };
        let nodes = settings.nodes();
        if nodes.len() > 1 && !settings.cluster {
            return Err(invalid(
                "a list of seed nodes needs REDIS_CLUSTER=true".into(),
            ));
        }
        for node in nodes {
            if !["redis://", "rediss://", "redis+unix://"]
                .iter()
                .any(|scheme| node.starts_with(scheme))
            {
                return Err(invalid("expected redis:// or rediss://".into()));
            }
            redis::IntoConnectionInfo::into_connection_info(node)
                .map_err(|e| invalid(e.to_string()))?;
        }
        Ok(settings)
    }

    /// The node URLs: the one Redis, or the cluster's seeds.
    pub fn nodes(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).collect()
    }

    /// `url` with each password replaced by `***` (the whole `user@` when it has no `:`), for
    /// messages and logs.
    pub fn redacted_url(&self) -> String {
        let redact = |node: &str| match (node.find("://"), node.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                let userinfo = &node[scheme_end + 3..at];
                let shown = userinfo
                    .split_once(':')
                    .map_or("***".to_owned(), |(user, _)| format!("{user}:***"));
                format!("{}{shown}{}", &node[..scheme_end + 3], &node[at..])
            }
            _ => node.to_owned(),
        };
        self.nodes()
            .into_iter()
            .map(redact)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Masks the password: settings end up in logs and panic messages.
impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.redacted_url())
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(pairs: &[(&str, &str)]) -> Result<RedisSettings, ConfigError> {
        RedisSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    fn node_info(url: &str) -> redis::ConnectionInfo {
        redis::IntoConnectionInfo::into_connection_info(url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn redis_tls_and_auth_come_from_the_url_in_both_modes() {
        for cluster in ["false", "true"] {
            let s = redis(&[
                ("REDIS_URL", "rediss://:s3cr%40t@cache.example.com:6380"),
                ("REDIS_CLUSTER", cluster),
            ])
            .unwrap_or_else(|e| panic!("{e}"));
            let info = node_info(s.nodes()[0]);
            assert!(
                matches!(info.addr(), redis::ConnectionAddr::TcpTls { host, port: 6380, insecure: false, .. } if host == "cache.example.com"),
                "{:?}",
                info.addr()
            );
            assert_eq!(info.redis_settings().password(), Some("s3cr@t"));
            assert_eq!(info.redis_settings().username(), None);
        }
        // An ACL user (ElastiCache RBAC, MemoryDB) over plain TCP.
        let s = redis(&[("REDIS_URL", "redis://herald:pw@127.0.0.1:6379")])
            .unwrap_or_else(|e| panic!("{e}"));
        let info = node_info(&s.url);
        assert!(matches!(info.addr(), redis::ConnectionAddr::Tcp(..)));
        assert_eq!(
            (
                info.redis_settings().username(),
                info.redis_settings().password()
            ),
            (Some("herald"), Some("pw"))
        );
    }

    #[test]
    fn redis_cluster_is_chosen_by_redis_cluster_and_may_list_seeds() {
        let seeds = "rediss://:pw@10.0.0.1:6379, rediss://:pw@10.0.0.2:6379";
        let s = redis(&[("REDIS_URL", seeds), ("REDIS_CLUSTER", "true")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(s.cluster);
        assert_eq!(
            s.nodes(),
            ["rediss://:pw@10.0.0.1:6379", "rediss://:pw@10.0.0.2:6379"]
        );
        let single = redis(&[("REDIS_URL", "redis://127.0.0.1:6379")]);
        assert!(single.is_ok_and(|s| !s.cluster && s.nodes().len() == 1));

        // Each refusal names the variable and never shows the password.
        for (pairs, reason) in [
            (
                vec![("REDIS_URL", seeds)],
                "a list of seed nodes needs REDIS_CLUSTER=true",
            ),
            (
                vec![("REDIS_URL", "http://:pw@h:1"), ("REDIS_CLUSTER", "1")],
                "expected redis:// or rediss://",
            ),
            (vec![("REDIS_URL", "redis://:pw@h:port")], ""),
        ] {
            let e = redis(&pairs)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with("REDIS_URL=") && e.contains(reason), "{e}");
            assert!(!e.contains(":pw@") && e.contains(":***@"), "{e}");
        }
        let e = redis(&[("REDIS_URL", "redis://h:1"), ("REDIS_CLUSTER", "maybe")]).err();
        assert!(matches!(
            e,
            Some(ConfigError::Invalid {
                var: "REDIS_CLUSTER",
                ..
            })
        ));
    }

    #[test]
    fn redis_settings_debug_hides_the_password() {
        let s = redis(&[("REDIS_URL", "rediss://herald:s3cret@h:6379")])
            .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("rediss://herald:***@h:6379"),
            "{shown}"
        );
        let s = redis(&[
            ("REDIS_URL", "redis://t0ken@h:6379,redis://h2:6379"),
            ("REDIS_CLUSTER", "1"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.redacted_url(), "redis://***@h:6379,redis://h2:6379");
    }
}
