//! The configuration reference: one row per setting (or group of settings read together) with
//! its default, who reads it and what it means. `docs/configuration.md`'s table is rendered from
//! [`VARIABLES`] ([`render_table`]) between the markers [`BEGIN`] and [`END`]; the test
//! `config_reference_matches_the_docs` fails when the file drifts, and
//! `HERALD_WRITE_DOCS=1 cargo test -p shared config_reference` rewrites it. Another test checks
//! that every variable the readers in `config/` read has a row here.
//!
//! The readers take their defaults from here ([`default_of`]: [`super::Env::parse`],
//! [`super::Env::bool`] and `positive`), so a default is written once.

/// One row of the reference.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    /// The variables the row documents (read together, sharing the default and meaning).
    pub names: &'static [&'static str],
    /// The default as shown: a value in backticks, `empty`, `unset (...)` or **required**.
    pub default: &'static str,
    /// Which functions read it.
    pub used_by: &'static str,
    /// What it means, with its validation.
    pub meaning: &'static str,
}

/// Opens the generated section of `docs/configuration.md`.
pub const BEGIN: &str = "<!-- generated:begin (shared/src/config/reference.rs; HERALD_WRITE_DOCS=1 cargo test -p shared config_reference) -->";
/// Closes it.
pub const END: &str = "<!-- generated:end -->";

/// Every setting, in the order of the reference.
pub const VARIABLES: &[Variable] = &[
    Variable {
        names: &["REDIS_URL"],
        default: "**required**",
        used_by: "all",
        meaning: "`redis://[[user]:password@]host:port`, `rediss://` for TLS; with `REDIS_CLUSTER=true`, one or more seed nodes, comma-separated ([Redis](#redis-one-server-or-a-cluster-tls-auth))",
    },
    Variable {
        names: &["REDIS_CLUSTER"],
        default: "`false`",
        used_by: "all",
        meaning: "`true` for Redis Cluster (ElastiCache / MemoryDB cluster mode)",
    },
    Variable {
        names: &["REDIS_KEY_PREFIX"],
        default: "empty",
        used_by: "all",
        meaning: "prepended to every key (tests use one per test)",
    },
    Variable {
        names: &["KAFKA_BROKERS"],
        default: "**required** (unless `KAFKA_MSK_CLUSTER_ARN`)",
        used_by: "all",
        meaning: "bootstrap list `host:port,...`",
    },
    Variable {
        names: &["KAFKA_MSK_CLUSTER_ARN"],
        default: "unset",
        used_by: "all Kafka clients",
        meaning: "an MSK cluster: without `KAFKA_BROKERS`, its bootstrap list for the client's authentication (IAM 9098, SCRAM 9096, TLS 9094, plaintext 9092) is looked up once at cold start (`GetBootstrapBrokers`, with the role's credentials)",
    },
    Variable {
        names: &["KAFKA_TOPIC_SUFFIX"],
        default: "empty",
        used_by: "all",
        meaning: "appended to every topic name (tests use one per test)",
    },
    Variable {
        names: &["KAFKA_LINGER_MS"],
        default: "`0`",
        used_by: "producers",
        meaning: "`linger.ms`; 0 sends at once",
    },
    Variable {
        names: &["KAFKA_PRODUCE_TIMEOUT_MS"],
        default: "`1500`",
        used_by: "producers",
        meaning: "how long a request waits for Kafka before leaving the change to the outbox relay; keeps a create under 2 s with the broker down",
    },
    Variable {
        names: &["KAFKA_SECURITY_PROTOCOL"],
        default: "unset (`PLAINTEXT`)",
        used_by: "all Kafka clients",
        meaning: "`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` → `security.protocol`",
    },
    Variable {
        names: &["KAFKA_SASL_MECHANISM"],
        default: "unset",
        used_by: "all Kafka clients",
        meaning: "`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512` (with `KAFKA_SASL_USERNAME` and `KAFKA_SASL_PASSWORD`, both required; `security.protocol` defaults to `SASL_SSL`) → `sasl.mechanism`, `sasl.username`, `sasl.password`; or `AWS_MSK_IAM`: `SASL_SSL` + `OAUTHBEARER` with tokens signed by the function's role (`shared::msk`), no username or password. Anything else is refused",
    },
    Variable {
        names: &["KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"],
        default: "unset (**required** with `PLAIN` / `SCRAM-*`)",
        used_by: "all Kafka clients",
        meaning: "the SASL credentials → `sasl.username`, `sasl.password` (the password is masked in logs); refused with `AWS_MSK_IAM`",
    },
    Variable {
        names: &["KAFKA_SSL_CA_LOCATION"],
        default: "unset",
        used_by: "all Kafka clients",
        meaning: "→ `ssl.ca.location` (a private CA)",
    },
    Variable {
        names: &["KAFKA_REPORT_BATCH_ITEM_FAILURES"],
        default: "`true`",
        used_by: "Kafka-triggered functions",
        meaning: "`true`: failed records are reported in a partial batch response (the trigger has `ReportBatchItemFailures`); `false`: any failed record fails the invocation, so Lambda retries the whole batch. The template sets it from `KafkaErrorControls`",
    },
    Variable {
        names: &["<VAR>_SECRET_ARN"],
        default: "unset",
        used_by: "all",
        meaning: "`<secret ARN>` or `<secret ARN>#<json key>`: `<VAR>` is read from Secrets Manager at cold start, before every other setting (`shared/src/secrets.rs`); a JSON secret without the key leaves `<VAR>` unset. The template passes secrets only this way (`docs/deploy.md`, *Secrets*)",
    },
    Variable {
        names: &["JWT_ISSUER", "JWT_AUDIENCE", "JWKS_URL"],
        default: "**required where used**",
        used_by: "callers that verify tokens themselves (the WebSocket `$connect`)",
        meaning: "the HTTP API relies on API Gateway's JWT authorizer instead",
    },
    Variable {
        names: &["JWKS_TTL_SECONDS"],
        default: "`600`",
        used_by: "ws",
        meaning: "how long a fetched JWKS is trusted before it is fetched again (a removed key stops verifying within this time; a failed refresh keeps the old keys and retries every 30 s)",
    },
    Variable {
        names: &["TENANT_CLAIM"],
        default: "`tenant`",
        used_by: "api, ws",
        meaning: "the JWT claim naming the caller's tenant (`[a-z0-9._-]`, at most 64 bytes; a token whose claim is invalid is refused like one with an unusable `sub`); without the claim, the tenant is `default` ([tenants](tenants.md))",
    },
    Variable {
        names: &["CONNECTIONS_URL"],
        default: "unset",
        used_by: "ws, delivery (**required**); api (optional)",
        meaning: "the WebSocket API's `@connections` endpoint, `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}` (the template sets it; devstack supplies its own). Without it the api function has no Kafka-down fallback",
    },
    Variable {
        names: &["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"],
        default: "set by Lambda",
        used_by: "ws, delivery, api; push with `EMAIL_PROVIDERS` naming `ses`; every function with MSK IAM, `KAFKA_MSK_CLUSTER_ARN` or a `_SECRET_ARN`",
        meaning: "the role's credentials that sign `@connections` calls, MSK IAM tokens, `GetBootstrapBrokers`, `GetSecretValue` and SES's `SendEmail` (devstack supplies placeholders)",
    },
    Variable {
        names: &["WS_POST_CONCURRENCY"],
        default: "`64`",
        used_by: "ws, delivery, api",
        meaning: "most `@connections` posts in flight per process",
    },
    Variable {
        names: &["WS_POST_RATE", "WS_POST_BURST"],
        default: "`2000`, `500`",
        used_by: "ws, delivery, api",
        meaning: "token bucket per process for `@connections` calls (API Gateway throttles them per account, shared with all HTTP and WebSocket traffic)",
    },
    Variable {
        names: &["WS_POST_RETRIES"],
        default: "`3`",
        used_by: "ws, delivery, api",
        meaning: "retries of a throttled (`LimitExceededException`) post, with jittered exponential backoff",
    },
    Variable {
        names: &["WS_POST_TIMEOUT_MS"],
        default: "`3000`",
        used_by: "ws, delivery, api",
        meaning: "one post's time limit",
    },
    Variable {
        names: &["INBOX_CAP"],
        default: "`1000`",
        used_by: "api",
        meaning: "most notifications kept per user; the oldest are evicted",
    },
    Variable {
        names: &["CHANGE_LOG_CAP"],
        default: "`1000`",
        used_by: "api, ws",
        meaning: "most changes kept per user for resume (a `sync` from before it gets `resync`) (unpublished ones are always kept)",
    },
    Variable {
        names: &["RETENTION_DAYS"],
        default: "`90`",
        used_by: "api",
        meaning: "notifications older than this are purged; an idle inbox expires after it",
    },
    Variable {
        names: &["IDEMPOTENCY_TTL_SECONDS"],
        default: "`86400`",
        used_by: "api",
        meaning: "how long an `Idempotency-Key` is remembered",
    },
    Variable {
        names: &["RATE_RECIPIENT_BURST", "RATE_RECIPIENT_PER_MINUTE"],
        default: "`200`, `100`",
        used_by: "api",
        meaning: "GCRA limit per recipient",
    },
    Variable {
        names: &["RATE_SENDER_BURST", "RATE_SENDER_PER_SECOND"],
        default: "`500`, `100`",
        used_by: "api",
        meaning: "GCRA limit per sender (token `sub`)",
    },
    Variable {
        names: &["RATE_USER_MUTATION_BURST", "RATE_USER_MUTATION_PER_MINUTE"],
        default: "`60`, `600`",
        used_by: "api, ws",
        meaning: "GCRA limit per user on mutations (PATCH, DELETE, mark-all-read, click, preferences, push subscriptions) and WebSocket actions (all but `ping`), together; over it: 429 or an `error` frame `rate-limited`",
    },
    Variable {
        names: &["TENANT_CREATES_PER_MINUTE"],
        default: "`0`",
        used_by: "api",
        meaning: "each tenant's quota of creates: every recipient of `POST /v1/notifications` (single or batch, scheduled or not) counts one, every accepted broadcast one; a minute's worth may come at once, then it refills evenly. Over it: 429 `quota-exceeded` with `Retry-After`, and nothing is written. `0` is unlimited ([Per-tenant limits](#per-tenant-limits-and-quota))",
    },
    Variable {
        names: &["TENANT_LIMITS"],
        default: "empty",
        used_by: "api, ws",
        meaning: "limits per tenant: a JSON object `{\"<tenant>\": {\"<SETTING>\": <number>, …}}` where a setting is one of `RATE_RECIPIENT_BURST`, `RATE_RECIPIENT_PER_MINUTE`, `RATE_SENDER_BURST`, `RATE_SENDER_PER_SECOND`, `RATE_USER_MUTATION_BURST`, `RATE_USER_MUTATION_PER_MINUTE`, `TENANT_CREATES_PER_MINUTE` (`0` lifts the quota); a setting left out keeps the deployment's value. Bad JSON, an invalid tenant name, another setting or a bad value fails the cold start, naming them",
    },
    Variable {
        names: &["REDIS_SHED_MEMORY_PERCENT"],
        default: "`90`",
        used_by: "api",
        meaning: "creates (single and batch) answer `503` with `Retry-After` and write nothing once Redis's `used_memory` reaches this percentage of its `maxmemory` (`INFO memory`, read at most once a second per instance; the fullest master on a cluster); 1–100; no `maxmemory` means nothing is shed ([Load shedding](architecture.md#redis-never-fills-up))",
    },
    Variable {
        names: &["OUTBOX_GRACE_MS"],
        default: "`15000`",
        used_by: "outbox-relay",
        meaning: "changes younger than this are left to the request that wrote them; must exceed the api function's timeout",
    },
    Variable {
        names: &["OUTBOX_CONCURRENCY"],
        default: "`16`",
        used_by: "outbox-relay",
        meaning: "users relayed concurrently",
    },
    Variable {
        names: &["SCHEDULER_RUN_SECONDS"],
        default: "`60`",
        used_by: "scheduler",
        meaning: "how long one invocation drains the due-set of scheduled sends: its schedule's period, so the runs follow each other ([Scheduling](scheduling.md))",
    },
    Variable {
        names: &["SCHEDULER_POLL_MS"],
        default: "`100`",
        used_by: "scheduler",
        meaning: "the longest wait between two looks at the due-set (less when the next job is due sooner): the most it adds to a scheduled send's lateness",
    },
    Variable {
        names: &["SCHEDULER_LEASE_MS"],
        default: "`30000`",
        used_by: "scheduler",
        meaning: "how long a claimed scheduled job is left to its firing before another run fires it again (idempotently); must exceed a firing round",
    },
    Variable {
        names: &["VAPID_SUBJECT", "VAPID_PRIVATE_KEY"],
        default: "unset (Web Push not configured)",
        used_by: "push",
        meaning: "VAPID (RFC 8292): the contact (`mailto:` or `https:`) and the P-256 private key, raw 32 bytes base64url (what `web-push generate-vapid-keys` prints) or PEM; both or neither. devstack makes a key pair and keeps it in `.herald/push/` ([channels](channels.md#keys-and-settings))",
    },
    Variable {
        names: &["VAPID_PUBLIC_KEY"],
        default: "unset",
        used_by: "api",
        meaning: "the matching public key (65 bytes, base64url) served by `GET /v1/push/vapid-public-key`; 404 without it",
    },
    Variable {
        names: &["PUSH_ALLOW_LOOPBACK"],
        default: "`false`",
        used_by: "api, push",
        meaning: "`true` lets push endpoints name loopback hosts (`127.0.0.0/8`, `[::1]`, `localhost`), over http too, and resolve to loopback addresses (devstack and the tests); never in a deployment. Every other non-public address stays refused (docs/channels.md, *Outbound requests to user-supplied URLs*)",
    },
    Variable {
        names: &["SMTP_URL", "EMAIL_FROM"],
        default: "unset (email not configured)",
        used_by: "push",
        meaning: "`smtp://host:port` (plain), `smtp://host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465` (TLS; percent-encode the password); the From address (`Name <a@b.c>`), required with any email provider. Both or neither unless `EMAIL_PROVIDERS` leaves out `smtp`; with email configured, `UNSUBSCRIBE_SECRET` and `PUBLIC_API_URL` are required",
    },
    Variable {
        names: &["EMAIL_PROVIDERS"],
        default: "unset (`smtp` when `SMTP_URL` is set)",
        used_by: "push",
        meaning: "the email providers in the order they are tried, comma-separated: `smtp` (needs `SMTP_URL`), `ses` (Amazon SES v2 with the function's role and region). A send moves to the next provider only after a transient failure (5xx, timeout, no connection) or a throttling that outlasted the inline retries, never after `sent` or a refusal; at most once per notification (docs/channels.md, *Failover and circuit breakers*)",
    },
    Variable {
        names: &["SES_ENDPOINT"],
        default: "unset (the region's SES endpoint)",
        used_by: "push",
        meaning: "the SES v2 API's base URL when `EMAIL_PROVIDERS` names `ses` (a local SES in tests)",
    },
    Variable {
        names: &["SMS_API_URL", "SMS_ACCOUNT_SID", "SMS_AUTH_TOKEN", "SMS_FROM"],
        default: "unset (SMS not configured)",
        used_by: "push",
        meaning: "a provider with Twilio's Messages API shape: `POST {SMS_API_URL}/2010-04-01/Accounts/{SID}/Messages.json`, basic auth `SID:TOKEN`, form `To`/`From`/`Body`. All four or none; the `twilio` provider of `SMS_PROVIDERS`",
    },
    Variable {
        names: &[
            "SMS_FALLBACK_API_URL",
            "SMS_FALLBACK_ACCOUNT_SID",
            "SMS_FALLBACK_AUTH_TOKEN",
            "SMS_FALLBACK_FROM",
        ],
        default: "unset (no second SMS provider)",
        used_by: "push",
        meaning: "a second provider with Twilio's Messages API shape (another account, or another provider speaking the same API), `twilio-fallback` in `SMS_PROVIDERS`. All four or none",
    },
    Variable {
        names: &["SMS_PROVIDERS"],
        default: "unset (`twilio`, then `twilio-fallback`, each whose variables are set)",
        used_by: "push",
        meaning: "the SMS providers in the order they are tried, comma-separated: `twilio` (`SMS_API_URL`…), `twilio-fallback` (`SMS_FALLBACK_API_URL`…). Fails over like `EMAIL_PROVIDERS` (docs/channels.md, *Failover and circuit breakers*)",
    },
    Variable {
        names: &["FCM_PROJECT_ID", "FCM_SERVICE_ACCOUNT"],
        default: "unset (FCM not configured)",
        used_by: "push",
        meaning: "Firebase Cloud Messaging (Android devices): the Firebase project, and the service account key file's JSON (`client_email`, `private_key`; a secret). Both or neither",
    },
    Variable {
        names: &["FCM_ENDPOINT", "FCM_TOKEN_URL"],
        default: "`https://fcm.googleapis.com`, `https://oauth2.googleapis.com/token`",
        used_by: "push",
        meaning: "FCM's base URL (sends go to `{FCM_ENDPOINT}/v1/projects/{FCM_PROJECT_ID}/messages:send`) and the OAuth 2 token URL the service account's signed assertion is exchanged at (local fakes in tests)",
    },
    Variable {
        names: &["APNS_KEY_ID", "APNS_TEAM_ID", "APNS_PRIVATE_KEY", "APNS_TOPIC"],
        default: "unset (APNs not configured)",
        used_by: "push",
        meaning: "Apple Push Notification service (iOS devices), token-based auth: the signing key's id, the Apple developer team id, the `.p8` key file's PEM (a secret), and the app's bundle id (`apns-topic`). All four or none",
    },
    Variable {
        names: &["APNS_ENDPOINT"],
        default: "`https://api.push.apple.com`",
        used_by: "push",
        meaning: "APNs' base URL (sends go to `{APNS_ENDPOINT}/3/device/<token>` over HTTP/2): `https://api.sandbox.push.apple.com` for development builds of the app, a local fake in tests",
    },
    Variable {
        names: &["APNS_CA_CERT"],
        default: "unset (the public roots only)",
        used_by: "push",
        meaning: "for a local APNs fake only: one more certificate authority (PEM text) the APNs client trusts, e.g. the fake's self-signed certificate. Never set in production",
    },
    Variable {
        names: &["UNSUBSCRIBE_SECRET"],
        default: "unset",
        used_by: "push (signs), api (checks)",
        meaning: "HMAC-SHA256 key of the one-click unsubscribe links, at least 16 characters; devstack makes one. Without it the api's `/v1/unsubscribe` answers 404",
    },
    Variable {
        names: &["PUBLIC_API_URL"],
        default: "unset",
        used_by: "push",
        meaning: "the HTTP API's public base URL the unsubscribe links point to (the template passes the HttpApi's endpoint)",
    },
    Variable {
        names: &["PUSH_CONCURRENCY"],
        default: "`64`",
        used_by: "push",
        meaning: "provider requests in flight per process",
    },
    Variable {
        names: &["PUSH_TIMEOUT_MS"],
        default: "`5000`",
        used_by: "push",
        meaning: "one provider request's (or SMTP session's) time limit",
    },
    Variable {
        names: &["PUSH_RETRY_ATTEMPTS", "PUSH_RETRY_BACKOFF_MS"],
        default: "`3`, `250`",
        used_by: "push",
        meaning: "attempts per send on 5xx / timeout / SMTP 4yz (the first included), and the first backoff (doubling, 20% jitter)",
    },
    Variable {
        names: &["PUSH_INLINE_WAIT_MAX_MS"],
        default: "`5000`",
        used_by: "push",
        meaning: "the longest `Retry-After` slept inline; a longer one goes to the retry schedule",
    },
    Variable {
        names: &["PUSH_TTL_SECONDS"],
        default: "`86400`",
        used_by: "push",
        meaning: "the Web Push `TTL` (how long a push service keeps an undelivered message), cut short by `expiresAt`",
    },
    Variable {
        names: &["PUSH_MAX_DEFERRALS"],
        default: "`8`",
        used_by: "push",
        meaning: "how often one send may be put back on the retry schedule for a 429 before it is `failed` / `rate-limited`",
    },
    Variable {
        names: &["PROVIDER_BREAKER_FAILURES"],
        default: "`5`",
        used_by: "push",
        meaning: "consecutive sends a provider of a failover list (`EMAIL_PROVIDERS`, `SMS_PROVIDERS`) ends unavailable (timeouts, 5xx, no connection) or still throttling that open its circuit breaker, shared by every instance in Redis: while open the list skips it without a request (docs/channels.md, *Failover and circuit breakers*)",
    },
    Variable {
        names: &["PROVIDER_BREAKER_COOLDOWN_MS"],
        default: "`30000`",
        used_by: "push",
        meaning: "how long an open provider breaker skips its provider; then one trial call (across all instances) closes it on success or opens it again on failure",
    },
    Variable {
        names: &["ANALYTICS_RETENTION_DAYS"],
        default: "`400`",
        used_by: "analytics",
        meaning: "how long a day's counters and unique-recipient estimate, and a partition's offset watermark, live after their last write ([architecture](architecture.md#analytics-every-record-counted-once-with-no-key-per-event))",
    },
    Variable {
        names: &["ANALYTICS_HISTORY_TTL_DAYS"],
        default: "`90`",
        used_by: "analytics",
        meaning: "how long a notification's outcome history (`GET /v1/notifications/{id}/deliveries`) lives after its last entry",
    },
    Variable {
        names: &["ANALYTICS_CLUSTER_ID"],
        default: "derived from the trigger event",
        used_by: "analytics",
        meaning: "names the Kafka cluster in the counter shards' keys (≤ 64 letters, digits, `.`, `_`, `-`). Unset: a digest of the MSK cluster ARN or of the self-managed bootstrap list, so a new cluster (offsets back at 0) never meets an old one's watermarks. Set it when the bootstrap list may change",
    },
    Variable {
        names: &["WEBHOOK_ALLOW_LOOPBACK"],
        default: "`false`",
        used_by: "api, webhooks",
        meaning: "`true` lets webhook URLs name loopback hosts (`127.0.0.0/8`, `[::1]`, `localhost`), over http too (devstack and the tests); never in a deployment. Every other non-public address stays refused ([webhooks](webhooks.md#endpoints))",
    },
    Variable {
        names: &["WEBHOOK_TIMEOUT_MS"],
        default: "`10000`",
        used_by: "webhooks",
        meaning: "one webhook attempt's time limit; a timeout is a failed attempt",
    },
    Variable {
        names: &["WEBHOOK_RETRY_BASE_MS"],
        default: "`30000`",
        used_by: "webhooks",
        meaning: "the delay after a webhook's first failed attempt; each later delay doubles, up to 6 h ([webhooks](webhooks.md#retries-and-dead-letters))",
    },
    Variable {
        names: &["WEBHOOK_RETRY_WINDOW_MS"],
        default: "`86400000`",
        used_by: "webhooks",
        meaning: "a failed message is retried while its scheduled delays add up to at most this (24 h); then it is dead-lettered, to be replayed with `POST /v1/webhooks/{id}/replay`",
    },
    Variable {
        names: &["WEBHOOK_RETENTION_HOURS"],
        default: "`168`",
        used_by: "webhooks",
        meaning: "how long sent and dead-lettered webhook messages are kept in Redis for replays, and their ledger entries against redelivered Kafka records (7 days, the `notification-events` retention). Memory: each kept message is its body (~0.5–2 KB) per webhook that wanted it",
    },
    Variable {
        names: &["LOG_FORMAT"],
        default: "`json`",
        used_by: "all",
        meaning: "`text` for human-readable logs",
    },
    Variable {
        names: &["AWS_LAMBDA_FUNCTION_NAME"],
        default: "set by Lambda (`local` elsewhere)",
        used_by: "all",
        meaning: "the `FunctionName` dimension of every metric (`shared/src/metrics.rs`); devstack sets it to the binary's name",
    },
    Variable {
        names: &["RUST_LOG"],
        default: "`info`",
        used_by: "all",
        meaning: "log filter: a level or `target=level` directives (`warn,api=debug`), by target only; a value that does not parse means `info`",
    },
];

/// Every variable name in the reference.
pub fn names() -> impl Iterator<Item = &'static str> {
    VARIABLES.iter().flat_map(|v| v.names.iter().copied())
}

/// `var`'s default as the readers parse it: the row's backticked values, one per name in order
/// (`` `200`, `100` `` for two names), or `""` for `empty`. `None` when the row shows no such
/// value (required, unset, derived).
pub fn default_of(var: &str) -> Option<&'static str> {
    let row = VARIABLES.iter().find(|v| v.names.contains(&var))?;
    let i = row.names.iter().position(|n| *n == var)?;
    if row.default == "empty" {
        return Some("");
    }
    let values: Vec<&'static str> = row
        .default
        .split(", ")
        .map(|d| d.strip_prefix('`').and_then(|d| d.strip_suffix('`')))
        .collect::<Option<_>>()?;
    (values.len() == row.names.len()).then(|| values[i])
}

/// The markdown table of [`VARIABLES`].
pub fn render_table() -> String {
    let mut out = String::from("| variable | default | used by | meaning |\n|---|---|---|---|\n");
    for v in VARIABLES {
        let names: Vec<String> = v.names.iter().map(|n| format!("`{n}`")).collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            names.join(", "),
            v.default,
            v.used_by,
            v.meaning
        ));
    }
    out
}

/// `doc` with its generated section replaced by the rendering; `None` without both markers.
pub fn with_rendered_table(doc: &str) -> Option<String> {
    let begin = doc.find(BEGIN)? + BEGIN.len();
    let end = begin + doc[begin..].find(END)?;
    Some(format!(
        "{}\n{}{}",
        &doc[..begin],
        render_table(),
        &doc[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md")
    }

    #[test]
    fn config_reference_matches_the_docs() {
        let path = doc_path();
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let rendered = with_rendered_table(&doc)
            .unwrap_or_else(|| panic!("{path:?} lacks the markers {BEGIN} … {END}"));
        if std::env::var("HERALD_WRITE_DOCS").is_ok_and(|v| v == "1") {
            std::fs::write(&path, &rendered).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            return;
        }
        assert!(
            doc == rendered,
            "docs/configuration.md differs from shared/src/config/reference.rs; \
             run `HERALD_WRITE_DOCS=1 cargo test -p shared config_reference` to rewrite it"
        );
    }

    /// Scans the readers' sources for `env.<reader>("NAME"` and the senders' groups: each name
    /// read must have a row.
    #[test]
    fn config_reference_lists_every_variable_read() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config");
        let known: Vec<&str> = names().collect();
        let mut missing = Vec::new();
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir:?}: {e}"));
        for entry in entries.flatten() {
            let source = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let source = source.split("#[cfg(test)]").next().unwrap_or_default();
            for piece in source.split('"').skip(1).step_by(2) {
                let is_name = piece.len() > 3
                    && piece.contains('_')
                    && piece
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if is_name
                    && !known.contains(&piece)
                    && !piece.starts_with("SASL_")
                    && piece != "AWS_MSK_IAM"
                {
                    missing.push(format!("{piece} ({:?})", entry.file_name()));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "read but not in the reference: {missing:?}"
        );
    }

    /// The readers take their defaults from [`VARIABLES`]: every group reads from an environment
    /// holding only its required settings, with the documented values.
    #[test]
    fn config_reference_gives_every_reader_its_default() {
        use crate::config::*;
        use std::time::Duration;
        let empty = Env::from_pairs::<&str, &str>([]);
        let realtime = RealtimeSettings::from_env(&empty).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                realtime.post_concurrency,
                realtime.post_rate,
                realtime.post_burst
            ),
            (64, 2_000, 500)
        );
        assert_eq!(realtime.post_timeout, Duration::from_millis(3_000));
        let outbox = OutboxSettings::from_env(&empty).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (outbox.grace, outbox.concurrency),
            (Duration::from_secs(15), 16)
        );
        let inbox = InboxSettings::from_env(&empty).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((inbox.inbox_cap, inbox.change_log_cap), (1_000, 1_000));
        assert_eq!(inbox.retention, Duration::from_secs(90 * 86_400));
        let analytics = AnalyticsSettings::from_env(&empty).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(analytics.retention, Duration::from_secs(400 * 86_400));
        let send = SenderSettings::from_env(&empty)
            .unwrap_or_else(|e| panic!("{e}"))
            .send;
        assert_eq!(
            (send.concurrency, send.attempts, send.max_deferrals),
            (64, 3, 8)
        );
        assert_eq!(
            (send.timeout, send.backoff, send.ttl),
            (
                Duration::from_secs(5),
                Duration::from_millis(250),
                Duration::from_secs(86_400)
            )
        );
        assert!(TriggerSettings::from_env(&empty).is_ok_and(|t| t.report_batch_item_failures));
        let webhooks = WebhookSettings::from_env(&empty).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(webhooks, WebhookSettings::default());
        assert_eq!(
            (
                webhooks.allow_loopback,
                webhooks.timeout,
                webhooks.retry_base
            ),
            (false, Duration::from_secs(10), Duration::from_secs(30))
        );
        assert_eq!(
            (webhooks.retry_window, webhooks.retention),
            (Duration::from_secs(86_400), Duration::from_secs(7 * 86_400))
        );
        let kafka = KafkaSettings::from_env(&Env::from_pairs([("KAFKA_BROKERS", "b:9092")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (kafka.linger_ms, kafka.produce_timeout),
            (0, Duration::from_millis(1_500))
        );
        let redis = RedisSettings::from_env(&Env::from_pairs([("REDIS_URL", "redis://h:1")]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!redis.cluster);
    }
}
