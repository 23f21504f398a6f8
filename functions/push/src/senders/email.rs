//! Email over SMTP (lettre on tokio, rustls with the system's CA roots). `SMTP_URL` picks the
//! transport: `smtp://` plain, `smtp://…?tls=required` STARTTLS, `smtps://` implicit TLS, with
//! `user:password@` for AUTH.
//!
//! Each message is `multipart/alternative` (text and HTML from the type's template, see
//! [`crate::payload`]; the text alone when trimmed after a `too-large`) with `List-Unsubscribe: <…/v1/unsubscribe?token=…>` and
//! `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058), and a `Message-ID` derived
//! from the notification id, so a repeated send is recognisable as the same message.
//!
//! SMTP answers ([`Outcome`], RFC 5321 reply codes with RFC 3463 enhanced status codes): 250
//! `sent`; 550/551/553 with `5.1.1` (no such mailbox), `5.1.10` (null MX) or `5.2.1` (mailbox
//! disabled) `gone`; 552 (message over the size limit, except `5.2.2` mailbox full) and
//! `5.3.4` `too-large` (resent once as text only); any 4yz `transient`/`provider-5xx` (SMTP has
//! no `Retry-After`: a throttling `450 4.2.1` is transient); 535 (bad credentials) and any
//! other 5yz `rejected`/`provider-4xx`; no connection, or no answer within `PUSH_TIMEOUT_MS`
//! for the whole transaction, `transient`/`error`.

use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use shared::config::ConfigError;
use shared::protocol::outcome::reason;

use super::{error_chain, Adapter, Outcome, Trim};
use crate::payload::RenderedEmail;

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The whole transaction's limit: lettre's own applies to connecting only.
    timeout: Duration,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

/// `EMAIL_FROM` as a mailbox.
pub fn from_mailbox(from: &str) -> Result<Mailbox, ConfigError> {
    from.parse::<Mailbox>().map_err(|e| ConfigError::Invalid {
        var: "EMAIL_FROM",
        value: from.to_owned(),
        reason: e.to_string(),
    })
}

/// The message every email adapter sends (SMTP as is, SES as its raw content): headers and
/// MIME as the module docs say.
pub(crate) fn mime(from: &Mailbox, to: &str, mail: &RenderedEmail) -> Result<Message, String> {
    let to: Mailbox = to.parse().map_err(|e| format!("recipient: {e}"))?;
    let domain = from.email.domain().to_owned();
    let builder = Message::builder()
        .from(from.clone())
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
        ));
    let built = if mail.html.is_empty() {
        builder.singlepart(SinglePart::plain(mail.text.clone()))
    } else {
        builder.multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
    };
    built.map_err(|e| e.to_string())
}

impl Email {
    /// `url` is `SMTP_URL`, `from` `EMAIL_FROM`.
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, ConfigError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| ConfigError::Invalid {
                var: "SMTP_URL",
                value: "(not shown: it may hold a password)".into(),
                reason: e.to_string(),
            })?
            .timeout(Some(timeout))
            .build();
        Ok(Email {
            transport,
            from: from_mailbox(from)?,
            timeout,
        })
    }

    async fn mail(&self, to: &str, mail: &RenderedEmail) -> Outcome {
        let message = match mime(&self.from, to, mail) {
            Ok(m) => m,
            Err(e) => return Outcome::rejected(reason::PROVIDER_4XX, e),
        };
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Outcome::Sent,
            Ok(Err(e)) => classify(&e),
            Err(_) => Outcome::transient(
                reason::ERROR,
                format!("no answer within {:?}", self.timeout),
            ),
        }
    }
}

/// An SMTP error as the contract's outcome (module docs).
fn classify(e: &lettre::transport::smtp::Error) -> Outcome {
    let Some(code) = e.status().map(u16::from) else {
        // No reply code: no connection, TLS, a dropped connection.
        return Outcome::transient(reason::ERROR, error_chain(e));
    };
    // The reply text starts with the enhanced status code, when the server sends one.
    let text = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_default();
    let enhanced = text.split_whitespace().next().unwrap_or("");
    match (code, enhanced) {
        (400..=499, _) => Outcome::transient(reason::PROVIDER_5XX, error_chain(e)),
        (550 | 551 | 553, "5.1.1" | "5.1.10" | "5.2.1") => Outcome::gone(error_chain(e)),
        (552, "5.2.2") => Outcome::rejected(reason::PROVIDER_4XX, error_chain(e)),
        (552, _) | (_, "5.3.4") => Outcome::TooLarge,
        _ => Outcome::rejected(reason::PROVIDER_4XX, error_chain(e)),
    }
}

impl Trim for RenderedEmail {
    /// The text part alone (the HTML part is most of a message's size).
    fn trimmed(&self) -> Option<Self> {
        (!self.html.is_empty()).then(|| RenderedEmail {
            html: String::new(),
            ..self.clone()
        })
    }
}

impl Adapter for Email {
    type To = str;
    type Message = RenderedEmail;

    fn provider(&self) -> &'static str {
        "smtp"
    }

    fn send<'a>(&'a self, to: &'a str, mail: &'a RenderedEmail) -> BoxFuture<'a, Outcome> {
        Box::pin(self.mail(to, mail))
    }
}
