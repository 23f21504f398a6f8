//! Configuration, read from the environment in exactly one place.
//!
//! Each function's `main` reads the settings groups it needs once, at cold start. `REDIS_URL`,
//! `KAFKA_BROKERS` and the JWT settings have no defaults: without them a function refuses to start
//! with a [`ConfigError`] that names the variable. Every other setting has a default suitable for
//! local use, listed in `docs/configuration.md`.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

/// A setting that is missing or unusable. The message always names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set; it has no default")]
    Missing(&'static str),
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        var: &'static str,
        value: String,
        reason: String,
    },
}

/// Where settings come from: the process environment, or a fixed map (tests, devstack).
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Every variable, in no particular order (the secrets resolver scans them).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets `var` (the secrets resolver, with a resolved value).
    pub(crate) fn set(&mut self, var: String, value: String) {
        self.vars.insert(var, value);
    }

    fn get(&self, var: &str) -> Option<&str> {
        self.vars
            .get(var)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var)
            .map(str::to_owned)
            .ok_or(ConfigError::Missing(var))
    }

    pub fn optional(&self, var: &'static str) -> Option<String> {
        self.get(var).map(str::to_owned)
    }

    pub fn string_or(&self, var: &'static str, default: &str) -> String {
        self.get(var).unwrap_or(default).to_owned()
    }

    pub fn parse_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                var,
                value: v.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    pub fn bool_or(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.get(var).map(str::to_ascii_lowercase).as_deref() {
            None => Ok(default),
            Some("1" | "true" | "yes" | "on") => Ok(true),
            Some("0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::Invalid {
                var,
                value: v.to_owned(),
                reason: "expected true or false".into(),
            }),
        }
    }

    fn positive<T: PartialOrd + Default + FromStr>(
        &self,
        var: &'static str,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        let v = self.parse_or(var, default)?;
        if v > T::default() {
            Ok(v)
        } else {
            Err(ConfigError::Invalid {
                var,
                value: self.get(var).unwrap_or_default().to_owned(),
                reason: "must be greater than 0".into(),
            })
        }
    }
}

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
            cluster: env.bool_or("REDIS_CLUSTER", false)?,
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

/// How to reach Kafka.
#[derive(Clone)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` bootstrap list. Empty when only [`Self::msk_cluster_arn`] is
    /// given: [`crate::bus::EventBus::connect`] then asks MSK for it.
    pub brokers: String,
    /// `KAFKA_MSK_CLUSTER_ARN`: the MSK cluster, when the brokers should be looked up
    /// (`GetBootstrapBrokers`, the list matching [`Self::auth`]) rather than configured.
    pub msk_cluster_arn: Option<String>,
    /// Appended to every topic name (empty in production; unique per test).
    pub topic_suffix: String,
    /// `linger.ms`: 0 sends at once, which is what a request-scoped Lambda wants.
    pub linger_ms: u32,
    /// How long a produce may wait for the broker before the request gives up on Kafka and leaves
    /// the change to the outbox relay. Keeps a create under 2 s with the broker down.
    pub produce_timeout: Duration,
    pub auth: KafkaAuth,
    /// librdkafka properties from the settings (`security.protocol`, `sasl.*`,
    /// `ssl.ca.location`): see [`KafkaSettings::from_env`].
    pub client_properties: Vec<(String, String)>,
    /// The function's AWS identity, for MSK (IAM tokens, `GetBootstrapBrokers`); `None` when
    /// neither is used.
    pub aws: Option<AwsSettings>,
}

/// How Herald's Kafka clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaAuth {
    /// No SASL (`PLAINTEXT`, or `SSL` with `KAFKA_SECURITY_PROTOCOL=SSL`).
    None,
    /// `PLAIN` or `SCRAM-SHA-256/512` with `KAFKA_SASL_USERNAME` / `KAFKA_SASL_PASSWORD`.
    UserPassword,
    /// `KAFKA_SASL_MECHANISM=AWS_MSK_IAM`: SASL `OAUTHBEARER` over TLS with tokens signed by the
    /// function's role ([`crate::msk`]), as MSK's IAM access control expects.
    MskIam,
}

impl KafkaSettings {
    /// Reads the Kafka settings. The security settings map to librdkafka properties:
    ///
    /// | variables | properties |
    /// |---|---|
    /// | `KAFKA_SECURITY_PROTOCOL` (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`) | `security.protocol` |
    /// | `KAFKA_SASL_MECHANISM=PLAIN\|SCRAM-SHA-256\|SCRAM-SHA-512` + `KAFKA_SASL_USERNAME` + `KAFKA_SASL_PASSWORD` | `sasl.mechanism`, `sasl.username`, `sasl.password`; `security.protocol` defaults to `SASL_SSL` |
    /// | `KAFKA_SASL_MECHANISM=AWS_MSK_IAM` | `security.protocol=SASL_SSL`, `sasl.mechanism=OAUTHBEARER`, tokens from [`crate::msk`] |
    /// | `KAFKA_SSL_CA_LOCATION` | `ssl.ca.location` |
    ///
    /// A mechanism without its username or password, an unknown mechanism or protocol, and IAM
    /// over anything but `SASL_SSL` are refused, naming the variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let invalid = |var: &'static str, value: &str, reason: &str| ConfigError::Invalid {
            var,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let protocol = match env.optional("KAFKA_SECURITY_PROTOCOL") {
            None => None,
            Some(p) => {
                let upper = p.to_ascii_uppercase();
                if !["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].contains(&upper.as_str()) {
                    return Err(invalid(
                        "KAFKA_SECURITY_PROTOCOL",
                        &p,
                        "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                    ));
                }
                Some(upper)
            }
        };
        let mut client_properties = Vec::new();
        let mut aws = None;
        let auth = match env.optional("KAFKA_SASL_MECHANISM") {
            None => {
                if let Some(p) = &protocol {
                    client_properties.push(("security.protocol".to_owned(), p.clone()));
                }
                KafkaAuth::None
            }
            Some(m) if m.eq_ignore_ascii_case("AWS_MSK_IAM") => {
                if protocol.as_deref().is_some_and(|p| p != "SASL_SSL") {
                    return Err(invalid(
                        "KAFKA_SECURITY_PROTOCOL",
                        protocol.as_deref().unwrap_or_default(),
                        "KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs SASL_SSL",
                    ));
                }
                for var in ["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"] {
                    if env.optional(var).is_some() {
                        return Err(ConfigError::Invalid {
                            var,
                            value: "***".into(),
                            reason: "AWS_MSK_IAM signs with the function's role; unset it".into(),
                        });
                    }
                }
                client_properties.push(("security.protocol".to_owned(), "SASL_SSL".to_owned()));
                client_properties.push(("sasl.mechanism".to_owned(), "OAUTHBEARER".to_owned()));
                aws = Some(AwsSettings::from_env(env)?);
                KafkaAuth::MskIam
            }
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&upper.as_str()) {
                    return Err(invalid(
                        "KAFKA_SASL_MECHANISM",
                        &m,
                        "expected PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM",
                    ));
                }
                let username = env.required("KAFKA_SASL_USERNAME")?;
                let password = env.required("KAFKA_SASL_PASSWORD")?;
                client_properties.push((
                    "security.protocol".to_owned(),
                    protocol.unwrap_or_else(|| "SASL_SSL".to_owned()),
                ));
                client_properties.push(("sasl.mechanism".to_owned(), upper));
                client_properties.push(("sasl.username".to_owned(), username));
                client_properties.push(("sasl.password".to_owned(), password));
                KafkaAuth::UserPassword
            }
        };
        if let Some(ca) = env.optional("KAFKA_SSL_CA_LOCATION") {
            client_properties.push(("ssl.ca.location".to_owned(), ca));
        }
        let msk_cluster_arn = env.optional("KAFKA_MSK_CLUSTER_ARN");
        if let Some(arn) = &msk_cluster_arn {
            if crate::msk::ClusterArn::parse(arn).is_none() {
                return Err(invalid(
                    "KAFKA_MSK_CLUSTER_ARN",
                    arn,
                    "expected arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>",
                ));
            }
            if aws.is_none() {
                aws = Some(AwsSettings::from_env(env)?);
            }
        }
        let brokers = match (env.optional("KAFKA_BROKERS"), &msk_cluster_arn) {
            (Some(b), _) => b,
            (None, Some(_)) => String::new(),
            (None, None) => return Err(ConfigError::Missing("KAFKA_BROKERS")),
        };
        Ok(KafkaSettings {
            brokers,
            msk_cluster_arn,
            topic_suffix: env.string_or("KAFKA_TOPIC_SUFFIX", ""),
            linger_ms: env.parse_or("KAFKA_LINGER_MS", 0)?,
            produce_timeout: Duration::from_millis(
                env.positive("KAFKA_PRODUCE_TIMEOUT_MS", 1_500u64)?,
            ),
            auth,
            client_properties,
            aws,
        })
    }
}

/// Shows every setting but the SASL password.
impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .client_properties
            .iter()
            .map(|(k, v)| {
                let shown = if k == "sasl.password" { "***" } else { v };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("brokers", &self.brokers)
            .field("msk_cluster_arn", &self.msk_cluster_arn)
            .field("topic_suffix", &self.topic_suffix)
            .field("linger_ms", &self.linger_ms)
            .field("produce_timeout", &self.produce_timeout)
            .field("auth", &self.auth)
            .field("client_properties", &properties)
            .field("aws", &self.aws)
            .finish()
    }
}

/// The function's AWS identity and region: what Lambda sets for the execution role
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    pub region: String,
}

impl AwsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(AwsSettings {
            access_key_id: env.required("AWS_ACCESS_KEY_ID")?,
            secret_access_key: env.required("AWS_SECRET_ACCESS_KEY")?,
            session_token: env.optional("AWS_SESSION_TOKEN"),
            region: env.required("AWS_REGION")?,
        })
    }

    /// The static credentials every AWS client here signs with.
    pub fn credentials(&self) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.clone(),
            self.session_token.clone(),
            None,
            "environment",
        )
    }
}

/// The HTTPS client every AWS SDK client here uses: rustls with ring, so no aws-lc-sys (and its
/// C build) in the Lambda binaries.
pub fn aws_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// Shows the key id and region only.
impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// How a Kafka-triggered function answers a batch with failed records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerSettings {
    /// `KAFKA_REPORT_BATCH_ITEM_FAILURES` (default `true`): the event-source mapping has
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`, so failed records are reported in a
    /// partial batch response. `false` (the template's setting when the mapping has no error
    /// controls): any failed record fails the invocation, so Lambda retries the whole batch
    /// instead of committing it; handlers are idempotent, so the retry is safe.
    pub report_batch_item_failures: bool,
}

impl TriggerSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(TriggerSettings {
            report_batch_item_failures: env.bool_or("KAFKA_REPORT_BATCH_ITEM_FAILURES", true)?,
        })
    }
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            report_batch_item_failures: true,
        }
    }
}

/// How to verify tokens (the callers that verify JWTs themselves: `ws`; the HTTP API trusts API
/// Gateway's JWT authorizer). No defaults: a function that needs them refuses to start without.
#[derive(Debug, Clone)]
pub struct JwtSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    /// How long a fetched key set is trusted before it is fetched again: the longest a key the
    /// issuer removed keeps verifying tokens. `JWKS_TTL_SECONDS`, default 600.
    pub jwks_ttl: Duration,
}

impl JwtSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(JwtSettings {
            issuer: env.required("JWT_ISSUER")?,
            audience: env.required("JWT_AUDIENCE")?,
            jwks_url: env.required("JWKS_URL")?,
            jwks_ttl: Duration::from_secs(env.positive("JWKS_TTL_SECONDS", 600u64)?),
        })
    }
}

/// One GCRA limit: `burst` requests at once, refilled at `per_period` per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_period: u32,
    pub period: Duration,
}

impl RateLimit {
    /// Time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        self.period / self.per_period.max(1)
    }
}

/// The inbox's rules: caps, retention, idempotency and rate limits.
#[derive(Debug, Clone)]
pub struct InboxSettings {
    /// Most notifications kept per user; the oldest are evicted beyond it.
    pub inbox_cap: u32,
    /// Most changes kept in a user's change log (unpublished changes are always kept).
    pub change_log_cap: u32,
    /// Notifications older than this are purged, and an idle user's inbox expires after it.
    pub retention: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    pub per_recipient: RateLimit,
    pub per_sender: RateLimit,
}

impl InboxSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(InboxSettings {
            inbox_cap: env.positive("INBOX_CAP", 1_000)?,
            change_log_cap: env.positive("CHANGE_LOG_CAP", 1_000)?,
            retention: Duration::from_secs(env.positive("RETENTION_DAYS", 90u64)? * 86_400),
            idempotency_ttl: Duration::from_secs(
                env.positive("IDEMPOTENCY_TTL_SECONDS", 86_400u64)?,
            ),
            per_recipient: RateLimit {
                burst: env.positive("RATE_RECIPIENT_BURST", 200)?,
                per_period: env.positive("RATE_RECIPIENT_PER_MINUTE", 100)?,
                period: Duration::from_secs(60),
            },
            per_sender: RateLimit {
                burst: env.positive("RATE_SENDER_BURST", 500)?,
                per_period: env.positive("RATE_SENDER_PER_SECOND", 100)?,
                period: Duration::from_secs(1),
            },
        })
    }
}

impl Default for InboxSettings {
    fn default() -> Self {
        // The same defaults as an empty environment.
        match InboxSettings::from_env(&Env::from_pairs::<String, String>([])) {
            Ok(s) => s,
            Err(_) => unreachable!("defaults are valid"),
        }
    }
}

/// The outbox relay's timing.
#[derive(Debug, Clone, Copy)]
pub struct OutboxSettings {
    /// Longer than any API request can take (the api function's timeout). The relay leaves changes
    /// younger than this to the request that wrote them, so a produce in flight is not doubled.
    pub grace: Duration,
    /// Most users relayed concurrently.
    pub concurrency: usize,
}

impl OutboxSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(OutboxSettings {
            grace: Duration::from_millis(env.parse_or("OUTBOX_GRACE_MS", 15_000u64)?),
            concurrency: env.positive("OUTBOX_CONCURRENCY", 16usize)?,
        })
    }
}

/// How functions post frames to WebSocket connections (`@connections`).
#[derive(Debug, Clone)]
pub struct RealtimeSettings {
    /// The `@connections` endpoint: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`
    /// (the template passes it), or devstack's. Without it nothing is posted: the api function
    /// then has no Kafka-down fallback, and `ws` / `delivery` refuse to start.
    pub connections_url: Option<String>,
    /// Most posts in flight at once, per process.
    pub post_concurrency: usize,
    /// Posts per second per process (token bucket), and the bucket's burst. API Gateway throttles
    /// `@connections` per account, so every process keeps well under its share.
    pub post_rate: u32,
    pub post_burst: u32,
    /// How often a throttled (`LimitExceededException`) post is retried, with backoff.
    pub post_retries: u32,
    /// How long one post may take before it counts as failed.
    pub post_timeout: Duration,
}

impl RealtimeSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(RealtimeSettings {
            connections_url: env.optional("CONNECTIONS_URL").filter(|u| !u.is_empty()),
            post_concurrency: env.positive("WS_POST_CONCURRENCY", 64usize)?,
            post_rate: env.positive("WS_POST_RATE", 2_000u32)?,
            post_burst: env.positive("WS_POST_BURST", 500u32)?,
            post_retries: env.parse_or("WS_POST_RETRIES", 3u32)?,
            post_timeout: Duration::from_millis(env.positive("WS_POST_TIMEOUT_MS", 3_000u64)?),
        })
    }

    /// The `@connections` endpoint, for functions that cannot work without it.
    pub fn require_connections_url(&self) -> Result<&str, ConfigError> {
        self.connections_url
            .as_deref()
            .ok_or(ConfigError::Missing("CONNECTIONS_URL"))
    }
}

/// The analytics counters and per-notification outcome histories (`analytics` writes them, the
/// api function reads them).
#[derive(Debug, Clone)]
pub struct AnalyticsSettings {
    /// How long a day's counters, unique-recipient estimate and partition watermarks live after
    /// their last write.
    pub retention: Duration,
    /// How long a notification's outcome history lives after its last entry.
    pub history_ttl: Duration,
    /// The deployment's topic suffix (`KAFKA_TOPIC_SUFFIX`, as [`KafkaSettings`] reads it), to
    /// tell the two input topics apart; `analytics` needs no broker of its own.
    pub topic_suffix: String,
    /// Names the Kafka cluster in every counter shard's key (`ANALYTICS_CLUSTER_ID`). Unset, the
    /// function derives it from the trigger event (the MSK cluster ARN, or the self-managed
    /// bootstrap list), so a new cluster, whose offsets restart at 0, never meets an old
    /// cluster's watermarks. Set it to keep the shards when the bootstrap list changes.
    pub cluster_id: Option<String>,
}

impl AnalyticsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(AnalyticsSettings {
            retention: Duration::from_secs(
                env.positive("ANALYTICS_RETENTION_DAYS", 400u64)? * 86_400,
            ),
            history_ttl: Duration::from_secs(
                env.positive("ANALYTICS_HISTORY_TTL_DAYS", 90u64)? * 86_400,
            ),
            topic_suffix: env.string_or("KAFKA_TOPIC_SUFFIX", ""),
            cluster_id: match env.optional("ANALYTICS_CLUSTER_ID") {
                Some(id)
                    if id.len() > 64
                        || !id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
                {
                    return Err(ConfigError::Invalid {
                        var: "ANALYTICS_CLUSTER_ID",
                        value: id,
                        reason: "use at most 64 letters, digits, `.`, `_` or `-`".into(),
                    })
                }
                id => id,
            },
        })
    }
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        match AnalyticsSettings::from_env(&Env::from_pairs::<String, String>([])) {
            Ok(s) => s,
            Err(_) => unreachable!("defaults are valid"),
        }
    }
}

/// The off-app channels (`push` sends; `api` takes subscriptions, contacts and unsubscribes).
/// A channel whose settings are absent is *not configured*: its sends are recorded as
/// `suppressed` / `not-configured`, never silently dropped. Half a channel's settings is a
/// mistake and stops the cold start, naming the missing variable. Secrets are masked in `Debug`.
#[derive(Clone, Default)]
pub struct ChannelSettings {
    /// `PUSH_ALLOW_LOOPBACK`: accept push endpoints on loopback hosts (devstack, tests). Never in
    /// production: a loopback endpoint would make the function POST to its own host.
    pub allow_loopback: bool,
    /// Web Push (VAPID, RFC 8292): `VAPID_SUBJECT` (`mailto:` or `https:` contact) and
    /// `VAPID_PRIVATE_KEY` (the raw P-256 scalar, base64url) for `push`.
    pub vapid: Option<VapidSettings>,
    /// `VAPID_PUBLIC_KEY`: the application server key browsers subscribe with (65 bytes,
    /// base64url), served by `GET /v1/push/vapid-public-key`.
    pub vapid_public_key: Option<String>,
    pub email: Option<EmailSettings>,
    pub sms: Option<SmsSettings>,
    /// One-click unsubscribe (RFC 8058): `UNSUBSCRIBE_SECRET` signs the links (`push`) and checks
    /// them (`api`); `PUBLIC_API_URL` is the HTTP API's public base URL the links point to.
    pub unsubscribe_secret: Option<String>,
    pub public_api_url: Option<String>,
    pub send: SendSettings,
}

#[derive(Clone)]
pub struct VapidSettings {
    pub subject: String,
    pub private_key: String,
}

/// `SMTP_URL`: `smtp://host:port` (plain, e.g. a local relay), `smtp://host:587?tls=required`
/// (STARTTLS), `smtps://user:pass@host:465` (implicit TLS); credentials percent-encoded.
/// `EMAIL_FROM`: the From address, `Name <addr@example.com>` or `addr@example.com`.
#[derive(Clone)]
pub struct EmailSettings {
    pub smtp_url: String,
    pub from: String,
}

/// An SMS provider with Twilio's Messages API shape: `POST {SMS_API_URL}/2010-04-01/Accounts/
/// {SMS_ACCOUNT_SID}/Messages.json`, basic auth `SID:SMS_AUTH_TOKEN`, form `To`, `From`, `Body`.
#[derive(Clone)]
pub struct SmsSettings {
    pub api_url: String,
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
}

/// How `push` sends: bounded concurrency, bounded inline retries, and when a wait goes to the
/// retry schedule instead of being slept.
#[derive(Debug, Clone)]
pub struct SendSettings {
    /// `PUSH_CONCURRENCY`: sends in flight at once per process.
    pub concurrency: usize,
    /// `PUSH_TIMEOUT_MS`: one provider request's time limit.
    pub timeout: Duration,
    /// `PUSH_RETRY_ATTEMPTS`: attempts per send on 5xx/timeouts (the first included).
    pub attempts: u32,
    /// `PUSH_RETRY_BACKOFF_MS`: the first inline backoff; it doubles per attempt.
    pub backoff: Duration,
    /// `PUSH_INLINE_WAIT_MAX_MS`: the longest wait slept inline (a `Retry-After`); longer ones go
    /// to the retry schedule.
    pub inline_wait_max: Duration,
    /// `PUSH_TTL_SECONDS`: how long a push service keeps an undelivered message (`TTL` header).
    pub ttl: Duration,
    /// `PUSH_MAX_DEFERRALS`: how often one send may be deferred before it is recorded `failed`.
    pub max_deferrals: u32,
}

impl Default for SendSettings {
    fn default() -> Self {
        SendSettings {
            concurrency: 64,
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(250),
            inline_wait_max: Duration::from_secs(5),
            ttl: Duration::from_secs(86_400),
            max_deferrals: 8,
        }
    }
}

impl ChannelSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        // All of a group, or none of it.
        let group = |vars: &[&'static str]| -> Result<Option<Vec<String>>, ConfigError> {
            let values: Vec<Option<String>> = vars.iter().map(|v| env.optional(v)).collect();
            if values.iter().all(Option::is_none) {
                return Ok(None);
            }
            vars.iter()
                .zip(values)
                .map(|(var, v)| v.ok_or(ConfigError::Missing(var)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
        let vapid = group(&["VAPID_SUBJECT", "VAPID_PRIVATE_KEY"])?.map(|v| VapidSettings {
            subject: v[0].clone(),
            private_key: v[1].clone(),
        });
        if let Some(v) = &vapid {
            if !(v.subject.starts_with("mailto:") || v.subject.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    var: "VAPID_SUBJECT",
                    value: v.subject.clone(),
                    reason: "must be a mailto: or https: URL (RFC 8292 §2.1)".into(),
                });
            }
        }
        let email = group(&["SMTP_URL", "EMAIL_FROM"])?.map(|v| EmailSettings {
            smtp_url: v[0].clone(),
            from: v[1].clone(),
        });
        if let Some(e) = &email {
            if !(e.smtp_url.starts_with("smtp://") || e.smtp_url.starts_with("smtps://")) {
                return Err(ConfigError::Invalid {
                    var: "SMTP_URL",
                    value: redact_userinfo(&e.smtp_url),
                    reason: "expected smtp:// or smtps://".into(),
                });
            }
        }
        let sms = group(&[
            "SMS_API_URL",
            "SMS_ACCOUNT_SID",
            "SMS_AUTH_TOKEN",
            "SMS_FROM",
        ])?
        .map(|v| SmsSettings {
            api_url: v[0].trim_end_matches('/').to_owned(),
            account_sid: v[1].clone(),
            auth_token: v[2].clone(),
            from: v[3].clone(),
        });
        let unsubscribe_secret = env.optional("UNSUBSCRIBE_SECRET");
        if unsubscribe_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(ConfigError::Invalid {
                var: "UNSUBSCRIBE_SECRET",
                value: "***".into(),
                reason: "must be at least 16 characters".into(),
            });
        }
        let public_api_url = env
            .optional("PUBLIC_API_URL")
            .map(|u| u.trim_end_matches('/').to_owned());
        // Mail without a working one-click unsubscribe is not sent at all (RFC 8058; bulk-sender
        // rules of the big mailbox providers).
        if email.is_some() {
            if unsubscribe_secret.is_none() {
                return Err(ConfigError::Missing("UNSUBSCRIBE_SECRET"));
            }
            if public_api_url.is_none() {
                return Err(ConfigError::Missing("PUBLIC_API_URL"));
            }
        }
        let d = SendSettings::default();
        Ok(ChannelSettings {
            allow_loopback: env.bool_or("PUSH_ALLOW_LOOPBACK", false)?,
            vapid,
            vapid_public_key: env.optional("VAPID_PUBLIC_KEY"),
            email,
            sms,
            unsubscribe_secret,
            public_api_url,
            send: SendSettings {
                concurrency: env.positive("PUSH_CONCURRENCY", d.concurrency)?,
                timeout: Duration::from_millis(
                    env.positive("PUSH_TIMEOUT_MS", d.timeout.as_millis() as u64)?,
                ),
                attempts: env.positive("PUSH_RETRY_ATTEMPTS", d.attempts)?,
                backoff: Duration::from_millis(
                    env.parse_or("PUSH_RETRY_BACKOFF_MS", d.backoff.as_millis() as u64)?,
                ),
                inline_wait_max: Duration::from_millis(env.parse_or(
                    "PUSH_INLINE_WAIT_MAX_MS",
                    d.inline_wait_max.as_millis() as u64,
                )?),
                ttl: Duration::from_secs(env.parse_or("PUSH_TTL_SECONDS", d.ttl.as_secs())?),
                max_deferrals: env.positive("PUSH_MAX_DEFERRALS", d.max_deferrals)?,
            },
        })
    }
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

impl std::fmt::Debug for ChannelSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSettings")
            .field("allow_loopback", &self.allow_loopback)
            .field(
                "vapid_subject",
                &self.vapid.as_ref().map(|v| v.subject.as_str()),
            )
            .field("vapid_public_key", &self.vapid_public_key)
            .field(
                "smtp_url",
                &self.email.as_ref().map(|e| redact_userinfo(&e.smtp_url)),
            )
            .field("email_from", &self.email.as_ref().map(|e| e.from.as_str()))
            .field(
                "sms_api_url",
                &self.sms.as_ref().map(|s| s.api_url.as_str()),
            )
            .field("public_api_url", &self.public_api_url)
            .field("send", &self.send)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_invalid_settings_name_the_variable() {
        let env = Env::from_pairs([("KAFKA_BROKERS", "b:9092"), ("KAFKA_LINGER_MS", "soon")]);
        let e = RedisSettings::from_env(&env).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some("REDIS_URL is not set; it has no default".into())
        );
        let e = KafkaSettings::from_env(&env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("KAFKA_LINGER_MS=\"soon\" is invalid"), "{e}");
        let e = JwtSettings::from_env(&env).err();
        assert_eq!(e, Some(ConfigError::Missing("JWT_ISSUER")));
        let env = Env::from_pairs([("INBOX_CAP", "0")]);
        assert!(matches!(
            InboxSettings::from_env(&env),
            Err(ConfigError::Invalid {
                var: "INBOX_CAP",
                ..
            })
        ));
    }

    fn kafka(pairs: &[(&str, &str)]) -> Result<KafkaSettings, ConfigError> {
        KafkaSettings::from_env(&Env::from_pairs(pairs.iter().copied()))
    }

    fn props(s: &KafkaSettings) -> Vec<(&str, &str)> {
        s.client_properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    const AWS: [(&str, &str); 4] = [
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_SESSION_TOKEN", "token"),
        ("AWS_REGION", "eu-west-1"),
    ];

    #[test]
    fn kafka_security_settings_map_to_librdkafka_properties() {
        // Plaintext: nothing to add.
        let s = kafka(&[("KAFKA_BROKERS", "b:9092")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.auth, props(&s)), (KafkaAuth::None, vec![]));

        // TLS only, with a private CA.
        let s = kafka(&[
            ("KAFKA_BROKERS", "b:9094"),
            ("KAFKA_SECURITY_PROTOCOL", "ssl"),
            ("KAFKA_SSL_CA_LOCATION", "/etc/ca.pem"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            props(&s),
            [
                ("security.protocol", "SSL"),
                ("ssl.ca.location", "/etc/ca.pem")
            ]
        );

        // SASL/SCRAM: SASL_SSL unless the protocol says otherwise.
        let scram = [
            ("KAFKA_BROKERS", "b:9096"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "herald"),
            ("KAFKA_SASL_PASSWORD", "p@ss"),
        ];
        let s = kafka(&scram).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth, KafkaAuth::UserPassword);
        assert_eq!(
            props(&s),
            [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "herald"),
                ("sasl.password", "p@ss"),
            ]
        );
        assert!(s.aws.is_none(), "SCRAM needs no AWS identity");
        let shown = format!("{s:?}");
        assert!(!shown.contains("p@ss") && shown.contains("***"), "{shown}");
        let mut plain = scram.to_vec();
        plain.push(("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT"));
        let s = kafka(&plain).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(props(&s)[0], ("security.protocol", "SASL_PLAINTEXT"));

        // MSK IAM: OAUTHBEARER over TLS, signed with the role's credentials.
        let mut iam = vec![
            (
                "KAFKA_BROKERS",
                "b-1.herald.c2.kafka.eu-west-1.amazonaws.com:9098",
            ),
            ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
        ];
        iam.extend(AWS);
        let s = kafka(&iam).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.auth, KafkaAuth::MskIam);
        assert_eq!(
            props(&s),
            [
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "OAUTHBEARER")
            ]
        );
        assert_eq!(
            s.aws
                .as_ref()
                .map(|a| (a.region.as_str(), a.session_token.as_deref())),
            Some(("eu-west-1", Some("token")))
        );
    }

    #[test]
    fn kafka_security_mistakes_are_refused_naming_the_variable() {
        let var_of = |pairs: &[(&str, &str)]| match kafka(pairs) {
            Err(ConfigError::Missing(v)) | Err(ConfigError::Invalid { var: v, .. }) => v,
            Ok(_) => "accepted",
        };
        let b = ("KAFKA_BROKERS", "b:9092");
        assert_eq!(
            var_of(&[b, ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256")]),
            "KAFKA_SASL_USERNAME"
        );
        assert_eq!(
            var_of(&[
                b,
                ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"),
                ("KAFKA_SASL_USERNAME", "u")
            ]),
            "KAFKA_SASL_PASSWORD"
        );
        assert_eq!(
            var_of(&[b, ("KAFKA_SASL_MECHANISM", "GSSAPI")]),
            "KAFKA_SASL_MECHANISM"
        );
        assert_eq!(
            var_of(&[b, ("KAFKA_SECURITY_PROTOCOL", "TLS")]),
            "KAFKA_SECURITY_PROTOCOL"
        );
        let mut iam = vec![b, ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM")];
        assert_eq!(var_of(&iam), "AWS_ACCESS_KEY_ID");
        iam.extend(AWS);
        iam.push(("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"));
        assert_eq!(var_of(&iam), "KAFKA_SECURITY_PROTOCOL");
        iam.pop();
        iam.push(("KAFKA_SASL_PASSWORD", "x"));
        assert_eq!(var_of(&iam), "KAFKA_SASL_PASSWORD");
        assert_eq!(var_of(&[]), "KAFKA_BROKERS");
    }

    #[test]
    fn an_msk_cluster_arn_stands_in_for_the_brokers() {
        let arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/herald/0b2c9f5e-2";
        let mut pairs = vec![
            ("KAFKA_MSK_CLUSTER_ARN", arn),
            ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
        ];
        pairs.extend(AWS);
        let s = kafka(&pairs).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (s.brokers.as_str(), s.msk_cluster_arn.as_deref()),
            ("", Some(arn))
        );
        assert_eq!(crate::msk::broker_list_kind(&s), "SASL/IAM");
        assert!(
            matches!(
                crate::bus::EventBus::new(&s),
                Err(crate::bus::BusError::Unresolved)
            ),
            "EventBus::new needs resolved brokers"
        );
        let bad = kafka(&[(
            "KAFKA_MSK_CLUSTER_ARN",
            "arn:aws:kafka:eu-west-1:1:topic/x/y/z",
        )]);
        assert!(matches!(
            bad,
            Err(ConfigError::Invalid {
                var: "KAFKA_MSK_CLUSTER_ARN",
                ..
            })
        ));
    }

    #[test]
    fn trigger_mode_defaults_to_partial_batch_responses() {
        let s = TriggerSettings::from_env(&Env::from_pairs::<&str, &str>([]));
        assert_eq!(s.ok(), Some(TriggerSettings::default()));
        let s = TriggerSettings::from_env(&Env::from_pairs([(
            "KAFKA_REPORT_BATCH_ITEM_FAILURES",
            "false",
        )]));
        assert_eq!(s.map(|s| s.report_batch_item_failures).ok(), Some(false));
    }

    #[test]
    fn defaults_allow_normal_traffic() {
        let s = InboxSettings::default();
        assert_eq!(
            (s.per_recipient.burst, s.per_recipient.per_period),
            (200, 100)
        );
        assert_eq!(
            s.per_recipient.emission_interval(),
            Duration::from_millis(600)
        );
        assert_eq!((s.per_sender.burst, s.per_sender.per_period), (500, 100));
        assert_eq!(s.idempotency_ttl, Duration::from_secs(86_400));
    }

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
