//! Email over SMTP (lettre on tokio, rustls with the system's CA roots). `SMTP_URL` picks the
//! transport: `smtp://` plain, `smtp://…?tls=required` STARTTLS, `smtps://` implicit TLS, with
//! `user:password@` for AUTH.
//!
//! Each message is `multipart/alternative` (text and HTML from the type's template, see
//! [`crate::payload`]) with `List-Unsubscribe: <…/v1/unsubscribe?token=…>` and
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), and a `Message-ID` derived
//! from the notification id, so a repeated send is recognisable as the same message.
//!
//! SMTP answers: 250 sent; a permanent 5yz `failed`/`provider-4xx` (the request was refused);
//! a transient 4yz retried inline, then `failed`/`provider-5xx`; no connection or a timeout
//! retried inline, then `failed`/`error`.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use shared::config::{ConfigError, EmailSettings};
use shared::protocol::outcome::reason;

use super::{error_chain, Delivery, SendPolicy};
use crate::payload::RenderedEmail;

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    policy: SendPolicy,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Email {
    pub fn new(settings: &EmailSettings, policy: SendPolicy) -> Result<Self, ConfigError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp_url)
            .map_err(|e| ConfigError::Invalid {
                var: "SMTP_URL",
                value: "(not shown: it may hold a password)".into(),
                reason: e.to_string(),
            })?
            .timeout(Some(policy.settings.timeout))
            .build();
        let from = settings
            .from
            .parse::<Mailbox>()
            .map_err(|e| ConfigError::Invalid {
                var: "EMAIL_FROM",
                value: settings.from.clone(),
                reason: e.to_string(),
            })?;
        Ok(Email {
            transport,
            from,
            policy,
        })
    }

    fn message(&self, to: &str, mail: &RenderedEmail) -> Result<Message, String> {
        let to: Mailbox = to.parse().map_err(|e| format!("recipient: {e}"))?;
        let domain = self.from.email.domain().to_owned();
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{}@{domain}>", mail.message_key)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{}>", mail.unsubscribe_url),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ))
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| e.to_string())
    }

    pub async fn send(&self, to: &str, mail: &RenderedEmail) -> Delivery {
        let message = match self.message(to, mail) {
            Ok(m) => m,
            Err(e) => return Delivery::failed(reason::PROVIDER_4XX, e),
        };
        let attempts = self.policy.settings.attempts.max(1);
        let mut last = Delivery::failed(reason::ERROR, "not attempted");
        for attempt in 1..=attempts {
            match self.transport.send(message.clone()).await {
                Ok(_) => return Delivery::Sent,
                Err(e) if e.is_permanent() => {
                    return Delivery::failed(reason::PROVIDER_4XX, error_chain(&e))
                }
                Err(e) if e.is_transient() => {
                    last = Delivery::failed(reason::PROVIDER_5XX, error_chain(&e))
                }
                Err(e) => last = Delivery::failed(reason::ERROR, error_chain(&e)),
            }
            if attempt < attempts {
                tokio::time::sleep(self.policy.backoff(attempt)).await;
            }
        }
        last
    }
}
