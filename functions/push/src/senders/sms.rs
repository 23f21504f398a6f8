//! SMS through an HTTP provider in Twilio's Messages API shape (each provider of
//! `SMS_PROVIDERS` is one of these, with its own URL and account):
//! `POST {SMS_API_URL}/2010-04-01/Accounts/{SMS_ACCOUNT_SID}/Messages.json`, HTTP basic auth
//! (`SID:SMS_AUTH_TOKEN`), form-encoded `To`, `From`, `Body`.
//!
//! Answers ([`Outcome`]): 2xx `sent`. Twilio's errors carry a JSON body with a `code`; these
//! codes give a 4xx a meaning of its own: 21211 (not a valid phone number), 21614 (not a
//! mobile number) and 21610 (the recipient replied STOP) `gone`; 21617 (body over 1,600
//! characters) `too-large` (a body is one segment already, so it has no smaller form and ends
//! `failed`). Otherwise as any HTTP provider ([`super::HttpAnswer::classify`]): 429 (20429)
//! `retry-after`, 5xx and timeouts `transient`, 401 (20003, bad credentials) and other 4xx
//! `rejected`/`provider-4xx`.

use futures::future::BoxFuture;
use shared::config::{SmsProvider, SmsSettings};

use super::{http_call, Adapter, Outcome, Trim};

/// The Twilio-shaped adapter, for one provider of `SMS_PROVIDERS`.
pub struct Sms {
    /// Its name in `SMS_PROVIDERS` (`twilio`, `twilio-fallback`).
    name: &'static str,
    settings: SmsSettings,
    client: reqwest::Client,
    timeout: std::time::Duration,
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sms")
            .field("name", &self.name)
            .field("api_url", &self.settings.api_url)
            .field("from", &self.settings.from)
            .finish_non_exhaustive()
    }
}

/// One SMS segment of text ([`crate::payload::sms_text`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsBody(pub String);

impl Trim for SmsBody {
    /// Already one segment: nothing smaller to send.
    fn trimmed(&self) -> Option<Self> {
        None
    }
}

impl Sms {
    /// The `twilio` provider.
    pub fn new(
        settings: SmsSettings,
        client: reqwest::Client,
        timeout: std::time::Duration,
    ) -> Self {
        Self::provider(
            SmsProvider {
                name: "twilio",
                api: settings,
            },
            client,
            timeout,
        )
    }

    /// One provider of `SMS_PROVIDERS`.
    pub fn provider(
        provider: SmsProvider,
        client: reqwest::Client,
        timeout: std::time::Duration,
    ) -> Self {
        Sms {
            name: provider.name,
            settings: provider.api,
            client,
            timeout,
        }
    }

    async fn text(&self, to: &str, body: &SmsBody) -> Outcome {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.settings.api_url, self.settings.account_sid
        );
        let form = [("To", to), ("From", &self.settings.from), ("Body", &body.0)];
        let request = self
            .client
            .post(&url)
            .basic_auth(&self.settings.account_sid, Some(&self.settings.auth_token))
            .form(&form);
        let answer = match http_call(request, self.timeout).await {
            Ok(a) => a,
            Err(outcome) => return outcome,
        };
        let code = answer.json.as_ref().and_then(|j| j["code"].as_u64());
        match (answer.status, code) {
            (400..=499, Some(21211 | 21614 | 21610)) => {
                Outcome::gone(format!("{} {}", answer.status, answer.text))
            }
            (400..=499, Some(21617)) => Outcome::TooLarge,
            _ => answer.classify(),
        }
    }
}

impl Adapter for Sms {
    type To = str;
    type Message = SmsBody;

    fn provider(&self) -> &'static str {
        self.name
    }

    fn send<'a>(&'a self, to: &'a str, body: &'a SmsBody) -> BoxFuture<'a, Outcome> {
        Box::pin(self.text(to, body))
    }
}
