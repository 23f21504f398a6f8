//! [`KafkaSettings`]: how Herald's Kafka clients reach and authenticate to the brokers (a
//! bootstrap list or an MSK cluster ARN; plaintext, TLS, SASL/SCRAM or MSK IAM), mapped to
//! librdkafka properties. The SASL password never reaches a log.

use std::time::Duration;

use super::{ConfigError, Env};
use crate::aws::{AwsSettings, ClusterArn};

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
    // Over 100 lines on purpose: the security table above, read top to bottom in one place, so
    // each refusal sits next to the rule it enforces.
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
            if ClusterArn::parse(arn).is_none() {
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
            linger_ms: env.parse("KAFKA_LINGER_MS")?,
            produce_timeout: Duration::from_millis(env.positive("KAFKA_PRODUCE_TIMEOUT_MS")?),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
