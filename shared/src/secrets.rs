//! Settings whose values live in AWS Secrets Manager, resolved once at cold start.
//!
//! The template never passes a secret's value: it passes `<VAR>_SECRET_ARN`, and
//! [`Env::with_secrets`] replaces it with `<VAR>` before any settings group reads the
//! environment. So `KAFKA_SASL_PASSWORD_SECRET_ARN=arn:...:secret:herald/kafka-AbCdEf#password`
//! becomes `KAFKA_SASL_PASSWORD`, and [`crate::config::KafkaSettings`] reads it as if it had been
//! set directly. Locally (devstack, tests, `cargo lambda watch`) nothing ends in `_SECRET_ARN`, the
//! plain variables are used and no AWS call is made.
//!
//! A reference is `<secret ARN or name>` (the whole `SecretString`) or `<secret>#<key>` (the
//! string field `<key>` of a JSON `SecretString`, the shape Secrets Manager's console and the
//! Kafka event source's SASL/SCRAM secrets use: `{"username": .., "password": ..}`). A JSON secret
//! without that key leaves `<VAR>` unset (logged), so one secret can hold the optional channels'
//! settings, and a channel whose key is absent is simply not configured. Each secret is fetched
//! once however many variables name it. A resolved value wins over a plain `<VAR>` that is also
//! set. Values never appear in logs or errors.
//!
//! Contract: a reference that cannot be resolved stops the cold start with an error naming the
//! variable and the secret (never its value). Rotation reaches a function at its next cold start.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;

use crate::aws::AwsSettings;
use crate::config::{ConfigError, Env};

/// The suffix that marks a variable as a reference to a secret.
pub const SUFFIX: &str = "_SECRET_ARN";

/// One `<VAR>_SECRET_ARN` variable, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The variable the value is for (`KAFKA_SASL_PASSWORD`).
    pub var: String,
    /// The `SecretId`: an ARN or a name.
    pub secret_id: String,
    /// The JSON field to take, if any.
    pub key: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{var}{SUFFIX}: GetSecretValue {secret_id}: {source}")]
    Fetch {
        var: String,
        secret_id: String,
        #[source]
        source: Box<SdkError<GetSecretValueError>>,
    },
    #[error(
        "{var}{SUFFIX}: secret {secret_id} has no SecretString (binary secrets are not supported)"
    )]
    NotAString { var: String, secret_id: String },
    #[error("{var}{SUFFIX}: secret {secret_id} is not a JSON object, so it has no field {key:?}")]
    NoKey {
        var: String,
        secret_id: String,
        key: String,
    },
}

/// The references among `env`'s variables, sorted by variable. Empty ones are skipped (the
/// template leaves a reference empty when that secret is not configured).
pub fn references(env: &Env) -> Vec<SecretRef> {
    let mut refs: Vec<SecretRef> = env
        .iter()
        .filter_map(|(name, value)| {
            let var = name.strip_suffix(SUFFIX).filter(|v| !v.is_empty())?;
            let value = value.trim();
            if value.is_empty() {
                return None;
            }
            let (secret_id, key) = match value.rsplit_once('#') {
                Some((id, key)) if !key.is_empty() => (id, Some(key.to_owned())),
                _ => (value, None),
            };
            Some(SecretRef {
                var: var.to_owned(),
                secret_id: secret_id.to_owned(),
                key,
            })
        })
        .collect();
    refs.sort_by(|a, b| a.var.cmp(&b.var));
    refs
}

/// The value `reference` takes from a secret whose `SecretString` is `secret`: the whole string,
/// or its JSON field (`None` when the object has no such string field).
pub fn extract(reference: &SecretRef, secret: &str) -> Result<Option<String>, SecretsError> {
    let Some(key) = &reference.key else {
        return Ok(Some(secret.to_owned()));
    };
    match serde_json::from_str::<serde_json::Value>(secret) {
        Ok(serde_json::Value::Object(fields)) => {
            Ok(fields.get(key).and_then(|f| f.as_str()).map(str::to_owned))
        }
        _ => Err(SecretsError::NoKey {
            var: reference.var.clone(),
            secret_id: reference.secret_id.clone(),
            key: key.clone(),
        }),
    }
}

impl Env {
    /// This environment with every `<VAR>_SECRET_ARN` resolved into `<VAR>` (see the module
    /// docs). Makes no AWS call when there is no reference.
    pub async fn with_secrets(self) -> Result<Env, SecretsError> {
        self.with_secrets_from(None).await
    }

    /// [`Env::with_secrets`] against another Secrets Manager endpoint (tests).
    pub async fn with_secrets_from(
        mut self,
        endpoint_url: Option<&str>,
    ) -> Result<Env, SecretsError> {
        let refs = references(&self);
        if refs.is_empty() {
            return Ok(self);
        }
        let client = client(&AwsSettings::from_env(&self)?, endpoint_url);
        let mut fetched: BTreeMap<String, String> = BTreeMap::new();
        for r in &refs {
            if !fetched.contains_key(&r.secret_id) {
                let out = client
                    .get_secret_value()
                    .secret_id(&r.secret_id)
                    .send()
                    .await
                    .map_err(|source| SecretsError::Fetch {
                        var: r.var.clone(),
                        secret_id: r.secret_id.clone(),
                        source: Box::new(source),
                    })?;
                let secret = out.secret_string().map(str::to_owned).ok_or_else(|| {
                    SecretsError::NotAString {
                        var: r.var.clone(),
                        secret_id: r.secret_id.clone(),
                    }
                })?;
                fetched.insert(r.secret_id.clone(), secret);
            }
            let secret = fetched
                .get(&r.secret_id)
                .map(String::as_str)
                .unwrap_or_default();
            match extract(r, secret)? {
                Some(value) => {
                    self.set(r.var.clone(), value);
                    tracing::info!(
                        var = r.var,
                        secret = r.secret_id,
                        "setting resolved from Secrets Manager"
                    );
                }
                None => tracing::warn!(
                    var = r.var,
                    secret = r.secret_id,
                    key = r.key.as_deref().unwrap_or_default(),
                    "the secret has no such key; the setting stays unset"
                ),
            }
        }
        Ok(self)
    }
}

fn client(aws: &AwsSettings, endpoint_url: Option<&str>) -> aws_sdk_secretsmanager::Client {
    let mut config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(aws.region.clone()))
        .credentials_provider(aws.credentials())
        .http_client(crate::aws::aws_https_client());
    if let Some(url) = endpoint_url {
        config = config.endpoint_url(url);
    }
    aws_sdk_secretsmanager::Client::from_conf(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_variable_secret_and_key() {
        let env = Env::from_pairs([
            (
                "KAFKA_SASL_PASSWORD_SECRET_ARN",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:herald/kafka-AbCdEf#password",
            ),
            ("SMTP_PASSWORD_SECRET_ARN", "herald/smtp"),
            ("VAPID_PRIVATE_KEY_SECRET_ARN", ""),
            ("_SECRET_ARN", "x"),
            ("KAFKA_BROKERS", "b:9092"),
        ]);
        assert_eq!(
            references(&env),
            vec![
                SecretRef {
                    var: "KAFKA_SASL_PASSWORD".into(),
                    secret_id:
                        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:herald/kafka-AbCdEf"
                            .into(),
                    key: Some("password".into()),
                },
                SecretRef {
                    var: "SMTP_PASSWORD".into(),
                    secret_id: "herald/smtp".into(),
                    key: None,
                },
            ]
        );
    }

    #[test]
    fn a_key_takes_one_field_of_a_json_secret() {
        let whole = SecretRef {
            var: "X".into(),
            secret_id: "s".into(),
            key: None,
        };
        let field = SecretRef {
            key: Some("password".into()),
            ..whole.clone()
        };
        let secret = r#"{"username":"herald","password":"p@ss"}"#;
        assert_eq!(
            extract(&whole, secret).ok().flatten().as_deref(),
            Some(secret)
        );
        assert_eq!(
            extract(&field, secret).ok().flatten().as_deref(),
            Some("p@ss")
        );
        let absent = SecretRef {
            key: Some("SMS_AUTH_TOKEN".into()),
            ..whole.clone()
        };
        assert!(
            matches!(extract(&absent, secret), Ok(None)),
            "absent key: unset"
        );
        let e = extract(&field, "not json").err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("X_SECRET_ARN: secret s is not a JSON object, so it has no field \"password\"")
        );
    }

    #[tokio::test]
    async fn without_references_nothing_is_fetched() {
        // No credentials and no endpoint: it would fail if it tried.
        let env = Env::from_pairs([("KAFKA_SASL_PASSWORD", "local")]);
        let env = env.with_secrets().await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            env.optional("KAFKA_SASL_PASSWORD").as_deref(),
            Some("local")
        );
    }

    #[tokio::test]
    async fn references_are_fetched_once_per_secret_and_signed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A stand-in Secrets Manager endpoint: answers GetSecretValue and records each request.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
        let listener = listener.unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            while let Ok(Ok((mut socket, _))) =
                tokio::time::timeout(std::time::Duration::from_millis(500), listener.accept()).await
            {
                let mut buf = vec![0u8; 16 * 1024];
                let mut read = 0;
                loop {
                    let n = socket.read(&mut buf[read..]).await.unwrap_or(0);
                    read += n;
                    let text = String::from_utf8_lossy(&buf[..read]).to_string();
                    if n == 0 || text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                        break;
                    }
                }
                let request = String::from_utf8_lossy(&buf[..read]).to_string();
                let body = r#"{"ARN":"arn:aws:secretsmanager:eu-west-1:123456789012:secret:herald/kafka-AbCdEf","Name":"herald/kafka","SecretString":"{\"username\":\"herald\",\"password\":\"s3cret\"}"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                requests.push(request);
            }
            requests
        });
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:herald/kafka-AbCdEf";
        let env = Env::from_pairs([
            ("KAFKA_SASL_USERNAME_SECRET_ARN", format!("{arn}#username")),
            ("KAFKA_SASL_PASSWORD_SECRET_ARN", format!("{arn}#password")),
            ("KAFKA_SASL_PASSWORD", "overridden".to_owned()),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "secret".to_owned()),
            ("AWS_REGION", "eu-west-1".to_owned()),
        ]);
        let env = env
            .with_secrets_from(Some(&format!("http://{addr}")))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            env.optional("KAFKA_SASL_USERNAME").as_deref(),
            Some("herald")
        );
        assert_eq!(
            env.optional("KAFKA_SASL_PASSWORD").as_deref(),
            Some("s3cret")
        );
        let requests = server.await.unwrap_or_default();
        assert_eq!(requests.len(), 1, "one fetch for one secret: {requests:?}");
        let request = requests[0].to_ascii_lowercase();
        assert!(
            request.contains("x-amz-target: secretsmanager.getsecretvalue"),
            "{request}"
        );
        assert!(
            request.contains("authorization: aws4-hmac-sha256 credential=akidexample/")
                && request.contains("/eu-west-1/secretsmanager/aws4_request"),
            "{request}"
        );
        assert!(request.contains(&format!("\"secretid\":\"{}\"", arn.to_ascii_lowercase())));
    }
}
