//! SMS through an HTTP provider in Twilio's Messages API shape:
//! `POST {SMS_API_URL}/2010-04-01/Accounts/{SMS_ACCOUNT_SID}/Messages.json`, HTTP basic auth
//! (`SID:SMS_AUTH_TOKEN`), form-encoded `To`, `From`, `Body`. 2xx sent; 429 honours
//! `Retry-After`; 5xx and timeouts retried, then `failed`/`provider-5xx`; other 4xx (a bad
//! number, say) `failed`/`provider-4xx`.

use shared::config::SmsSettings;

use super::{Delivery, SendPolicy};

pub struct Sms {
    settings: SmsSettings,
    client: reqwest::Client,
    policy: SendPolicy,
}

impl std::fmt::Debug for Sms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sms")
            .field("api_url", &self.settings.api_url)
            .field("from", &self.settings.from)
            .finish_non_exhaustive()
    }
}

impl Sms {
    pub fn new(settings: SmsSettings, client: reqwest::Client, policy: SendPolicy) -> Self {
        Sms {
            settings,
            client,
            policy,
        }
    }

    pub async fn send(&self, to: &str, body: &str) -> Delivery {
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.settings.api_url, self.settings.account_sid
        );
        let form = [("To", to), ("From", &self.settings.from), ("Body", body)];
        let outcome = self
            .policy
            .http(|| {
                self.client
                    .post(&url)
                    .basic_auth(&self.settings.account_sid, Some(&self.settings.auth_token))
                    .form(&form)
            })
            .await;
        outcome.delivery()
    }
}
