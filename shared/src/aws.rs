//! AWS plumbing shared by every SDK client here (`@connections`, MSK, Secrets Manager): the
//! function's identity ([`AwsSettings`]), the one HTTPS client ([`aws_https_client`]), and MSK
//! cluster ARNs ([`ClusterArn`]).
//!
//! This module reads nothing: [`crate::config`] builds [`AwsSettings`] from the environment
//! (`AWS_*`), and both `config` and [`crate::msk`] import from here, never from each other.

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

/// An MSK cluster ARN: `arn:<partition>:kafka:<region>:<account>:cluster/<name>/<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterArn {
    pub arn: String,
    pub partition: String,
    pub region: String,
    pub account: String,
    pub name: String,
    pub uuid: String,
}

impl ClusterArn {
    pub fn parse(arn: &str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (prefix, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let mut path = resource.split('/');
        let (kind, name, uuid) = (path.next()?, path.next()?, path.next()?);
        let valid = prefix == "arn"
            && !partition.is_empty()
            && service == "kafka"
            && !region.is_empty()
            && !account.is_empty()
            && kind == "cluster"
            && !name.is_empty()
            && !uuid.is_empty()
            && path.next().is_none();
        valid.then(|| ClusterArn {
            arn: arn.to_owned(),
            partition: partition.to_owned(),
            region: region.to_owned(),
            account: account.to_owned(),
            name: name.to_owned(),
            uuid: uuid.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_arns_parse_and_bad_ones_are_refused() {
        let arn = ClusterArn::parse(
            "arn:aws:kafka:eu-west-1:123456789012:cluster/herald/0b2c9f5e-1a2b-4c3d-8e9f-0a1b2c3d4e5f-2",
        );
        assert_eq!(
            arn.as_ref()
                .map(|a| (a.region.as_str(), a.account.as_str(), a.name.as_str())),
            Some(("eu-west-1", "123456789012", "herald"))
        );
        for bad in [
            "",
            "arn:aws:kafka:eu-west-1:123456789012:topic/herald/uuid/t",
            "arn:aws:sqs:eu-west-1:123456789012:cluster/herald/uuid",
            "arn:aws:kafka:eu-west-1:123456789012:cluster/herald",
        ] {
            assert_eq!(ClusterArn::parse(bad), None, "{bad}");
        }
    }
}
