//! Email through Amazon SES, v2 API `SendEmail` (`POST /v2/email/outbound-emails`) with the
//! message as raw content: the same MIME and headers as the SMTP adapter ([`super::email`]), so
//! one-click unsubscribe and the stable `Message-ID` hold whichever provider sends. The client
//! is `aws-sdk-sesv2` on the one rustls client of every AWS SDK here
//! ([`shared::aws::aws_https_client`]), signing with the function's role; the SDK's own retries
//! are off (one call is one attempt: retrying is [`super::SendPolicy::deliver`]'s).
//!
//! Answers ([`Outcome`]): 200 `{MessageId}` `sent`; `TooManyRequestsException` (429) and
//! `ThrottlingException` (the sending rate or daily quota) `retry-after` (`Retry-After` if
//! present, else 60 s); `SendingPausedException`, `AccountSuspendedException` and
//! `LimitExceededException` `transient`/`error` (the account cannot send now; another provider
//! may); 5xx, timeouts and no connection `transient`; 413 `too-large`; `MessageRejected`,
//! `MailFromDomainNotVerifiedException`, `BadRequestException`, `NotFoundException`, 401/403 (bad
//! credentials: `UnrecognizedClientException`, `InvalidSignatureException`) and other 4xx
//! `rejected`/`provider-4xx`. SES has no synchronous `gone`: a dead mailbox is accepted and
//! bounces later, through SES's own events.

use std::time::Duration;

use aws_sdk_sesv2::config::http::HttpResponse;
use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::{BehaviorVersion, Region};
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use futures::future::BoxFuture;
use lettre::message::Mailbox;
use shared::aws::AwsSettings;
use shared::config::ConfigError;
use shared::protocol::outcome::reason;

use super::email::{from_mailbox, mime};
use super::{error_chain, Adapter, Outcome};
use crate::payload::RenderedEmail;

/// The SES adapter.
pub struct Ses {
    client: aws_sdk_sesv2::Client,
    from: Mailbox,
    timeout: Duration,
}

impl std::fmt::Debug for Ses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ses")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Ses {
    /// `from` is `EMAIL_FROM`; `endpoint` `SES_ENDPOINT` (else the region's endpoint).
    pub fn new(
        aws: &AwsSettings,
        endpoint: Option<&str>,
        from: &str,
        timeout: Duration,
    ) -> Result<Self, ConfigError> {
        let mut config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(aws.region.clone()))
            .credentials_provider(aws.credentials())
            .http_client(shared::aws::aws_https_client())
            .retry_config(RetryConfig::disabled());
        if let Some(url) = endpoint {
            config = config.endpoint_url(url);
        }
        Ok(Ses {
            client: aws_sdk_sesv2::Client::from_conf(config.build()),
            from: from_mailbox(from)?,
            timeout,
        })
    }

    async fn mail(&self, to: &str, mail: &RenderedEmail) -> Outcome {
        let message = match mime(&self.from, to, mail) {
            Ok(m) => m,
            Err(e) => return Outcome::rejected(reason::PROVIDER_4XX, e),
        };
        let raw = match RawMessage::builder()
            .data(Blob::new(message.formatted()))
            .build()
        {
            Ok(raw) => raw,
            Err(e) => return Outcome::rejected(reason::ERROR, error_chain(&e)),
        };
        let request = self
            .client
            .send_email()
            .from_email_address(self.from.to_string())
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().raw(raw).build());
        match tokio::time::timeout(self.timeout, request.send()).await {
            Ok(Ok(_)) => Outcome::Sent,
            Ok(Err(e)) => classify(&e),
            Err(_) => Outcome::transient(
                reason::ERROR,
                format!("no answer within {:?}", self.timeout),
            ),
        }
    }
}

/// An SES error as the contract's outcome (module docs).
fn classify(e: &SdkError<SendEmailError, HttpResponse>) -> Outcome {
    let SdkError::ServiceError(context) = e else {
        // No answer: a timeout, no connection, an unreadable response.
        return Outcome::transient(reason::ERROR, error_chain(e));
    };
    let status = context.raw().status().as_u16();
    let retry_after = context
        .raw()
        .headers()
        .get("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let err = context.err();
    let detail = format!(
        "{status} {}: {}",
        err.code().unwrap_or("(no code)"),
        err.message().unwrap_or("")
    );
    let wait = || Outcome::RetryAfter(retry_after.unwrap_or(Duration::from_secs(60)));
    match err {
        SendEmailError::TooManyRequestsException(_) => wait(),
        SendEmailError::SendingPausedException(_)
        | SendEmailError::AccountSuspendedException(_)
        | SendEmailError::LimitExceededException(_) => Outcome::transient(reason::ERROR, detail),
        SendEmailError::MessageRejected(_)
        | SendEmailError::MailFromDomainNotVerifiedException(_)
        | SendEmailError::BadRequestException(_)
        | SendEmailError::NotFoundException(_) => Outcome::rejected(reason::PROVIDER_4XX, detail),
        other if other.code() == Some("ThrottlingException") => wait(),
        _ => match status {
            413 => Outcome::TooLarge,
            429 => wait(),
            500..=599 => Outcome::transient(reason::PROVIDER_5XX, detail),
            _ => Outcome::rejected(reason::PROVIDER_4XX, detail),
        },
    }
}

impl Adapter for Ses {
    type To = str;
    type Message = RenderedEmail;

    fn provider(&self) -> &'static str {
        "ses"
    }

    fn send<'a>(&'a self, to: &'a str, mail: &'a RenderedEmail) -> BoxFuture<'a, Outcome> {
        Box::pin(self.mail(to, mail))
    }
}
