//! Amazon MSK: IAM access control for Herald's Kafka clients, and the bootstrap brokers of a
//! cluster given by its ARN.
//!
//! **IAM authentication.** MSK's IAM access control speaks SASL `OAUTHBEARER`; the bearer token
//! is a SigV4 *presigned URL* for the action `kafka-cluster:Connect`, made with the function's
//! role credentials, exactly as AWS's `aws-msk-iam-sasl-signer` libraries make it:
//!
//! 1. `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`, presigned for
//!    the service `kafka-cluster` in `<region>` with `X-Amz-Expires=900` (the session token, if
//!    any, signed in as `X-Amz-Security-Token`; the payload hash is that of the empty body);
//! 2. `&User-Agent=<signer>/<version>` appended *after* signing;
//! 3. the whole URL base64url-encoded, without padding.
//!
//! [`KafkaContext`] hands such a token to librdkafka whenever it asks
//! (`ClientContext::generate_oauth_token`): at start and again at 80% of the token's lifetime, so a
//! token is renewed before it expires. The role credentials are the ones Lambda puts in the
//! environment at cold start, valid for the execution environment's life.
//!
//! **Bootstrap brokers.** With `KAFKA_MSK_CLUSTER_ARN` and no `KAFKA_BROKERS`, [`bootstrap_brokers`]
//! asks MSK (`GetBootstrapBrokers`) once, at cold start, for the list matching the client's
//! authentication (IAM: port 9098, SCRAM: 9096, TLS: 9094, plaintext: 9092).

use std::error::Error as StdError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_kafka::config::{BehaviorVersion, Region};
use aws_sdk_kafka::error::SdkError;
use aws_sdk_kafka::operation::get_bootstrap_brokers::GetBootstrapBrokersError;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rdkafka::client::{ClientContext, OAuthToken};

pub use crate::aws::ClusterArn;
use crate::aws::{aws_https_client, AwsSettings};
use crate::config::{KafkaAuth, KafkaSettings};

/// The service name MSK's IAM tokens are signed for.
pub const SIGNING_NAME: &str = "kafka-cluster";
/// The action a token grants the connection (checked against the role's `kafka-cluster:Connect`).
pub const CONNECT_ACTION: &str = "kafka-cluster:Connect";
/// How long a token is valid: 15 minutes, as AWS's signers make them.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);
/// The `User-Agent` query parameter (informational; MSK logs it).
pub const USER_AGENT: &str = concat!("herald-msk-iam-signer/", env!("CARGO_PKG_VERSION"));

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("cannot sign the MSK IAM token: {0}")]
    Sign(#[source] Box<dyn StdError + Send + Sync>),
    #[error("the clock is before 1970")]
    Clock,
}

/// A token and when it expires (milliseconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MskToken {
    pub token: String,
    pub expires_at_ms: i64,
}

/// Makes MSK IAM tokens from one set of credentials.
#[derive(Clone)]
pub struct MskIamSigner {
    identity: Identity,
    access_key_id: String,
    region: String,
}

impl std::fmt::Debug for MskIamSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MskIamSigner")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl MskIamSigner {
    pub fn new(aws: &AwsSettings) -> Self {
        MskIamSigner {
            identity: aws.credentials().into(),
            access_key_id: aws.access_key_id.clone(),
            region: aws.region.clone(),
        }
    }

    /// A token signed now.
    pub fn token(&self) -> Result<MskToken, TokenError> {
        self.token_at(SystemTime::now())
    }

    /// A token signed at `now` (tests use a fixed clock).
    pub fn token_at(&self, now: SystemTime) -> Result<MskToken, TokenError> {
        let url = self.presigned_url(now)?;
        // SigV4 dates have second resolution; the token expires TOKEN_LIFETIME after that second.
        let signed_at = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| TokenError::Clock)?;
        let expires_at_ms = (signed_at.as_secs() + TOKEN_LIFETIME.as_secs()) as i64 * 1000;
        Ok(MskToken {
            token: URL_SAFE_NO_PAD.encode(url.as_bytes()),
            expires_at_ms,
        })
    }

    /// The presigned `kafka-cluster:Connect` URL, with the `User-Agent` parameter.
    fn presigned_url(&self, now: SystemTime) -> Result<String, TokenError> {
        let sign_error = |e: Box<dyn StdError + Send + Sync>| TokenError::Sign(e);
        let base = format!(
            "https://kafka.{}.amazonaws.com/?Action={}",
            self.region,
            CONNECT_ACTION.replace(':', "%3A")
        );
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(TOKEN_LIFETIME);
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| sign_error(Box::new(e)))?
            .into();
        let signable = SignableRequest::new(
            "GET",
            base.as_str(),
            std::iter::empty(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| sign_error(Box::new(e)))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| sign_error(Box::new(e)))?
            .into_parts();
        let mut request = http::Request::builder()
            .method("GET")
            .uri(base.as_str())
            .body(())
            .map_err(|e| sign_error(Box::new(e)))?;
        instructions.apply_to_request_http1x(&mut request);
        Ok(format!(
            "{}&User-Agent={}",
            request.uri(),
            USER_AGENT.replace('/', "%2F")
        ))
    }
}

/// Decodes a token back into its presigned URL (for tests and debugging).
pub fn token_url(token: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()
}

/// The context of every Kafka client Herald makes: librdkafka's logs go to `tracing` (rdkafka's
/// default), and, with MSK IAM, it supplies the OAUTHBEARER tokens.
#[derive(Debug, Clone, Default)]
pub struct KafkaContext {
    signer: Option<MskIamSigner>,
}

impl KafkaContext {
    /// The context `settings` call for: a token signer when `auth` is [`KafkaAuth::MskIam`].
    pub fn new(settings: &KafkaSettings) -> Self {
        let signer = match (settings.auth, &settings.aws) {
            (KafkaAuth::MskIam, Some(aws)) => Some(MskIamSigner::new(aws)),
            _ => None,
        };
        KafkaContext { signer }
    }
}

impl ClientContext for KafkaContext {
    // librdkafka only asks for tokens when `sasl.mechanism=OAUTHBEARER`, which only MSK IAM sets.
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn StdError>> {
        let signer = self
            .signer
            .as_ref()
            .ok_or("OAUTHBEARER is configured but KAFKA_SASL_MECHANISM is not AWS_MSK_IAM")?;
        let token = signer.token()?;
        tracing::debug!(expires_at_ms = token.expires_at_ms, "new MSK IAM token");
        Ok(OAuthToken {
            token: token.token,
            // MSK takes the principal from the signature; librdkafka only needs a name.
            principal_name: signer.access_key_id.clone(),
            lifetime_ms: token.expires_at_ms,
        })
    }
}

/// Why the bootstrap brokers could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("KAFKA_MSK_CLUSTER_ARN {0:?} is not an MSK cluster ARN")]
    Arn(String),
    #[error("no AWS credentials for GetBootstrapBrokers")]
    NoCredentials,
    #[error("GetBootstrapBrokers for {arn}: {source}")]
    Api {
        arn: String,
        #[source]
        source: Box<SdkError<GetBootstrapBrokersError>>,
    },
    #[error("MSK cluster {arn} has no {kind} bootstrap brokers (is that access enabled on the cluster?)")]
    NotEnabled { arn: String, kind: &'static str },
}

/// Which of the cluster's bootstrap lists a client with these settings uses.
pub fn broker_list_kind(settings: &KafkaSettings) -> &'static str {
    let tls = settings
        .client_properties
        .iter()
        .any(|(k, v)| k == "security.protocol" && v == "SSL");
    match settings.auth {
        KafkaAuth::MskIam => "SASL/IAM",
        KafkaAuth::UserPassword => "SASL/SCRAM",
        KafkaAuth::None if tls => "TLS",
        KafkaAuth::None => "plaintext",
    }
}

/// Asks MSK for the bootstrap brokers of `settings.msk_cluster_arn` that match the client's
/// authentication. `endpoint_url` overrides the MSK API endpoint (tests).
pub async fn bootstrap_brokers(
    settings: &KafkaSettings,
    endpoint_url: Option<&str>,
) -> Result<String, BootstrapError> {
    let arn_text = settings.msk_cluster_arn.clone().unwrap_or_default();
    let arn = ClusterArn::parse(&arn_text).ok_or_else(|| BootstrapError::Arn(arn_text.clone()))?;
    let aws = settings.aws.as_ref().ok_or(BootstrapError::NoCredentials)?;
    let mut config = aws_sdk_kafka::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(arn.region.clone()))
        .credentials_provider(aws.credentials())
        .http_client(aws_https_client());
    if let Some(url) = endpoint_url {
        config = config.endpoint_url(url);
    }
    let client = aws_sdk_kafka::Client::from_conf(config.build());
    let out = client
        .get_bootstrap_brokers()
        .cluster_arn(&arn.arn)
        .send()
        .await
        .map_err(|source| BootstrapError::Api {
            arn: arn.arn.clone(),
            source: Box::new(source),
        })?;
    let kind = broker_list_kind(settings);
    let list = match settings.auth {
        KafkaAuth::MskIam => out.bootstrap_broker_string_sasl_iam(),
        KafkaAuth::UserPassword => out.bootstrap_broker_string_sasl_scram(),
        KafkaAuth::None if kind == "TLS" => out.bootstrap_broker_string_tls(),
        KafkaAuth::None => out.bootstrap_broker_string(),
    };
    list.filter(|l| !l.is_empty())
        .map(str::to_owned)
        .ok_or(BootstrapError::NotEnabled {
            arn: arn.arn.clone(),
            kind,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    fn aws(token: Option<&str>) -> AwsSettings {
        AwsSettings {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: token.map(str::to_owned),
            region: "eu-west-1".into(),
        }
    }

    /// 2024-01-02T03:04:05Z
    fn fixed_clock() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_704_164_645)
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let q = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn a_token_is_the_presigned_connect_url_base64url_without_padding() {
        let signer = MskIamSigner::new(&aws(Some("FwoGZXIvYXdzEJr//token+with/=chars")));
        let token = signer
            .token_at(fixed_clock())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            token
                .token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "base64url, no padding: {}",
            token.token
        );
        assert_eq!(token.expires_at_ms, (1_704_164_645 + 900) * 1000);

        let url = token_url(&token.token).unwrap_or_default();
        assert!(
            url.starts_with("https://kafka.eu-west-1.amazonaws.com/?"),
            "{url}"
        );
        let q = query(&url);
        let get = |k: &str| {
            q.iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default()
        };
        assert_eq!(get("Action"), "kafka-cluster%3AConnect");
        assert_eq!(get("X-Amz-Algorithm"), "AWS4-HMAC-SHA256");
        assert_eq!(
            get("X-Amz-Credential"),
            "AKIDEXAMPLE%2F20240102%2Feu-west-1%2Fkafka-cluster%2Faws4_request"
        );
        assert_eq!(get("X-Amz-Date"), "20240102T030405Z");
        assert_eq!(get("X-Amz-Expires"), "900");
        assert_eq!(get("X-Amz-SignedHeaders"), "host");
        assert_eq!(
            get("X-Amz-Security-Token"),
            "FwoGZXIvYXdzEJr%2F%2Ftoken%2Bwith%2F%3Dchars"
        );
        let signature = get("X-Amz-Signature");
        assert_eq!(signature.len(), 64, "{signature}");
        assert!(signature.chars().all(|c| c.is_ascii_hexdigit()));
        // The User-Agent comes last, after the signature (it is not signed).
        assert_eq!(
            q.last().map(|(k, v)| (k.as_str(), v.as_str())),
            Some(("User-Agent", USER_AGENT.replace('/', "%2F").as_str()))
        );

        // Deterministic: same clock and credentials, same signature; another second, another.
        let again = signer.token_at(fixed_clock()).map(|t| t.token).ok();
        assert_eq!(again.as_deref(), Some(token.token.as_str()));
        let later = signer
            .token_at(fixed_clock() + Duration::from_secs(1))
            .map(|t| t.token)
            .ok();
        assert_ne!(later.as_deref(), Some(token.token.as_str()));
    }

    #[test]
    fn the_signature_matches_sigv4_computed_by_hand() {
        // Recompute the signature independently from the URL's own parameters: canonical request,
        // string to sign, derived key (RFC-style SigV4, as the MSK signers do).
        use hmac_sha256::{hmac, sha256_hex};
        let signer = MskIamSigner::new(&aws(None));
        let url = signer
            .token_at(fixed_clock())
            .ok()
            .and_then(|t| token_url(&t.token))
            .unwrap_or_default();
        let q = query(&url);
        let signature = q
            .iter()
            .find(|(k, _)| k == "X-Amz-Signature")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut signed: Vec<&(String, String)> = q
            .iter()
            .filter(|(k, _)| k != "X-Amz-Signature" && k != "User-Agent")
            .collect();
        signed.sort();
        let canonical_query = signed
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let canonical_request = format!(
            "GET\n/\n{canonical_query}\nhost:kafka.eu-west-1.amazonaws.com\n\nhost\n{}",
            sha256_hex(b"")
        );
        let scope = "20240102/eu-west-1/kafka-cluster/aws4_request";
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n20240102T030405Z\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let key = ["20240102", "eu-west-1", "kafka-cluster", "aws4_request"]
            .iter()
            .fold(
                b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_vec(),
                |key, part| hmac(&key, part.as_bytes()),
            );
        assert_eq!(
            hex::encode(hmac(&key, string_to_sign.as_bytes())),
            signature
        );
        assert!(
            !q.iter().any(|(k, _)| k == "X-Amz-Security-Token"),
            "no session token, no parameter"
        );
    }

    /// HMAC-SHA256 from `sha2` (what the test needs, nothing more).
    mod hmac_sha256 {
        use sha2::{Digest, Sha256};

        pub fn sha256_hex(data: &[u8]) -> String {
            hex::encode(Sha256::digest(data))
        }

        pub fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut k = if key.len() > 64 {
                Sha256::digest(key).to_vec()
            } else {
                key.to_vec()
            };
            k.resize(64, 0);
            let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
            let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
            let inner = Sha256::new()
                .chain_update(&ipad)
                .chain_update(data)
                .finalize();
            Sha256::new()
                .chain_update(&opad)
                .chain_update(inner)
                .finalize()
                .to_vec()
        }
    }

    #[tokio::test]
    async fn bootstrap_brokers_come_from_get_bootstrap_brokers_for_the_auth_in_use() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A stand-in MSK API: answers GetBootstrapBrokers once and keeps the request.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return String::new();
            };
            let mut buf = vec![0u8; 16 * 1024];
            let mut read = 0;
            while !String::from_utf8_lossy(&buf[..read]).contains("\r\n\r\n") {
                match socket.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => read += n,
                }
            }
            let body = r#"{"bootstrapBrokerString":"b-1:9092","bootstrapBrokerStringSaslIam":"b-1.herald.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.herald.c2.kafka.eu-west-1.amazonaws.com:9098"}"#;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            String::from_utf8_lossy(&buf[..read]).to_string()
        });
        let arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/herald/0b2c9f5e-2";
        let settings = KafkaSettings::from_env(&Env::from_pairs([
            ("KAFKA_MSK_CLUSTER_ARN", arn),
            ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        let brokers = bootstrap_brokers(&settings, Some(&format!("http://{addr}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            brokers,
            "b-1.herald.c2.kafka.eu-west-1.amazonaws.com:9098,b-2.herald.c2.kafka.eu-west-1.amazonaws.com:9098",
            "the IAM list, not the plaintext one"
        );
        let request = server.await.unwrap_or_default();
        let first = request.lines().next().unwrap_or_default().to_owned();
        assert!(
            first.starts_with("GET /v1/clusters/arn%3Aaws%3Akafka%3Aeu-west-1%3A123456789012%3Acluster%2Fherald%2F0b2c9f5e-2/bootstrap-brokers"),
            "{first}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("/eu-west-1/kafka/aws4_request"),
            "signed for the MSK API in the cluster's region: {request}"
        );
    }

    #[test]
    fn the_context_signs_only_for_msk_iam() {
        let iam = KafkaSettings::from_env(&Env::from_pairs([
            (
                "KAFKA_BROKERS",
                "b-1.herald.kafka.eu-west-1.amazonaws.com:9098",
            ),
            ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        let token = KafkaContext::new(&iam)
            .generate_oauth_token(None)
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        assert!(
            token.lifetime_ms > now_ms + 800_000,
            "about 15 minutes ahead"
        );
        assert!(token_url(&token.token).is_some_and(|u| u.contains("X-Amz-Signature=")));

        let plain =
            KafkaSettings::from_env(&Env::from_pairs([("KAFKA_BROKERS", "127.0.0.1:9092")]))
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(KafkaContext::new(&plain)
            .generate_oauth_token(None)
            .is_err());
    }

    #[test]
    fn an_msk_cluster_arn_alone_is_looked_up_as_the_iam_list() {
        let arn = "arn:aws:kafka:eu-west-1:123456789012:cluster/herald/0b2c9f5e-2";
        let s = KafkaSettings::from_env(&Env::from_pairs([
            ("KAFKA_MSK_CLUSTER_ARN", arn),
            ("KAFKA_SASL_MECHANISM", "AWS_MSK_IAM"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_REGION", "eu-west-1"),
        ]))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(broker_list_kind(&s), "SASL/IAM");
        assert!(
            matches!(
                crate::bus::EventBus::new(&s),
                Err(crate::bus::BusError::Unresolved)
            ),
            "EventBus::new needs resolved brokers"
        );
    }
}
