//! A local fake of Firebase Cloud Messaging (HTTP v1) and Google's OAuth 2 token endpoint, on one
//! [`Provider`]:
//! - `POST /token` takes `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and an
//!   `assertion`, and answers an access token only when the assertion is an RS256 JWT signed with
//!   the test service account's key ([`TEST_PUBLIC_KEY_PEM`] verifies it) with `iss` = its
//!   `client_email`, `aud` = the token URL, the FCM scope, and an `exp` ahead; otherwise 400
//!   `invalid_grant`, as Google answers;
//! - `POST /v1/projects/{project}/messages:send` first checks the bearer against the tokens it
//!   issued (401 `UNAUTHENTICATED` otherwise), then answers from the provider's script
//!   ([`Provider::queue`], [`Provider::always`]); [`error`] writes Google's error shape. A
//!   device token can have answers of its own: [`FcmFake::unregister`] makes it answer 404
//!   `UNREGISTERED` (the app was uninstalled), [`FcmFake::script_token`] queues answers for it.
//!
//! The key pair is fixed test material made for these tests (`openssl genpkey -algorithm RSA`),
//! never used anywhere else.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use push::senders::fcm::{AssertionClaims, FCM_SCOPE};
use serde_json::{json, Value};
use shared::config::FcmSettings;

use crate::provider::{answer, Answer, Provider, Received};

/// The service account the fake knows.
pub const CLIENT_EMAIL: &str = "herald-push@herald-test.iam.gserviceaccount.com";

/// The test service account's private key (PKCS#8 PEM).
pub const TEST_PRIVATE_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDG/QKBoY0B/2mw\n\
L9UUOnuD+RYlby09icIMSR2rQZEvxrYACKuda516jBYDUu73yqu9EtSOrsbqgKOu\n\
mRwkT9SuPUDw318UAwHPuEpCbGUAxc6BICZWAuG0AfBmJAu5n/CgyLq3xd0Ep5BE\n\
UB4eNqvSKFQJune9RkJ+lUEpLLeaShFwLbMc6AhIG3wTNb/DaVs36RC17/EVtQ5E\n\
r6P26O5vwqHNm5gU7TKnjuHOilh7rljeugTwTbKdqnoBmoNuCggpBg/HwR9LmHXL\n\
CLje7Z7Stq8YfuYjdZ/fU/1isF+EhOMLnZTWP2W/CxumCkDFHVZkKiuATQ/EAu5n\n\
+m7SCsd/AgMBAAECggEAKIpTgGWRfN60gZi9KKnhkDmnMWk9JlRynF4pFUL+eWVa\n\
nxclH6VVKCpyMasr1IAODS9Q7uDc1dnvfxriiONayUThfjGEBWe3bsJ1HqNG0Kl8\n\
MQKDzPI5WZsrhyPA38ieFaPPprFBHjmlQsWv3Sf2SZK9zF2ZF47A7VkrNWBO57fj\n\
C6Fk1o2UfjyEET/t8lJdEwx/Z14wTM5dQGfiwZqC6zzK7tAIdvrKC2zHYPHYFH6f\n\
zoG5vgj8o3dQygJ/xx0zBxOvSoulO+F7fmfUfMcmF7xXWJjCipN5ewefeFSbFtZ6\n\
gMX4gi3/O7IlopA3sHtElH6Wo0Ft7oYrDj93USPDAQKBgQD3UVKU8mGeLDnkrQC1\n\
97lDeEzDpGOvtiBO+VY0r7nXZpK1LpTAj7mHkrcH923fTLQAnQcbcTVJh87fLlX3\n\
vPkq1EvCz5/dSU631+bPHiwaCLt+B62Mwtd5a9JxAFhAElk+f00Fn1Ff4oGXBYn1\n\
zBJ3LVYpnppc8W3D8kVRgoLKEQKBgQDN+VhFbwq6QZg6pN14fySGFQQYiWNO0FhG\n\
JMBLqgQ1cwdP8hrLuoR7kPRTq/yMsf5nV+kNZKknqGsXgIexs0VvRZE5hfR5PJlc\n\
ZhuRnxhHnBKGGY8GysxlD6GO1tbA5Qamtbg5KZ0pahXXDtOJsalgD/X/suoMP0EU\n\
mCu6XZVojwKBgDry+lEgWN4/wmjcR7AX5OPNF9cGJvCp45ePXNngDNbnzw46lSA0\n\
4c8LzG6srlasTLdctmX3HPFy2n9d5wXO2EE6Kvi7TmqLX6T4ZD53/aES9cW7hMVp\n\
Z7y8U4O1xlM3TGhWJYCykc3eCm951YFt6/TWLJRtBnQi47vx0k30YsJRAoGBAIqy\n\
pAklbADeGMcsq2Hvo8WSM07efPveegLJzp9k3i6rxbnE2txjPcEDbDNHtel8Fka6\n\
wNle9jUZSPvrdfRoNpJmMxOcK3LUJqU8sMXPbwcRhru8TD6Toy1OaEkKTFRaJK9v\n\
4JzFc+omYIyPlEy9UMO6G7nSXZ5fndBjY9a8G9brAoGAFeMTCBmb0XO8WVi4Qh27\n\
F1gEfvjXaYV6MCLR66JaAvTERU2To6fR8f9evMF9EGkK8m+ShLAMFru7WKR+SG2d\n\
6G8oCTZLOlfKhTVTUhzrwotVQJ3m8k1UqEAMASuXWf2sPcwoier8tF3AqENWV83t\n\
w6RCiuirgnoenb8eh9mBf0I=\n\
-----END PRIVATE KEY-----\n\
";

/// Its public key, what the fake verifies assertions with.
pub const TEST_PUBLIC_KEY_PEM: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAxv0CgaGNAf9psC/VFDp7\n\
g/kWJW8tPYnCDEkdq0GRL8a2AAirnWudeowWA1Lu98qrvRLUjq7G6oCjrpkcJE/U\n\
rj1A8N9fFAMBz7hKQmxlAMXOgSAmVgLhtAHwZiQLuZ/woMi6t8XdBKeQRFAeHjar\n\
0ihUCbp3vUZCfpVBKSy3mkoRcC2zHOgISBt8EzW/w2lbN+kQte/xFbUORK+j9uju\n\
b8KhzZuYFO0yp47hzopYe65Y3roE8E2ynap6AZqDbgoIKQYPx8EfS5h1ywi43u2e\n\
0ravGH7mI3Wf31P9YrBfhITjC52U1j9lvwsbpgpAxR1WZCorgE0PxALuZ/pu0grH\n\
fwIDAQAB\n\
-----END PUBLIC KEY-----\n\
";

/// FCM's error body: `{error: {code, message, status, details: [{@type, errorCode}]}}`.
pub fn error(code: u16, status: &str, error_code: &str, message: &str) -> Answer {
    answer(code).json(json!({"error": {"code": code, "message": message, "status": status,
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}]}}))
}

/// A successful send's answer.
pub fn sent(project: &str) -> Answer {
    answer(200).json(
        json!({"name": format!("projects/{project}/messages/0:1700000000000000%31bd1c9631bd1c96")}),
    )
}

pub struct FcmFake {
    pub provider: Provider,
    issued: Arc<Mutex<HashSet<String>>>,
    tokens: Arc<Mutex<TokenScripts>>,
}

/// Answers of particular device tokens, before the path's script.
#[derive(Default)]
struct TokenScripts {
    unregistered: HashSet<String>,
    queued: HashMap<String, VecDeque<Answer>>,
}

impl TokenScripts {
    fn answer(&mut self, req: &Received) -> Option<Answer> {
        let body: Value = serde_json::from_slice(&req.body).ok()?;
        let token = body["message"]["token"].as_str()?;
        if self.unregistered.contains(token) {
            return Some(error(
                404,
                "NOT_FOUND",
                "UNREGISTERED",
                "Requested entity was not found.",
            ));
        }
        self.queued.get_mut(token)?.pop_front()
    }
}

impl FcmFake {
    pub async fn start() -> FcmFake {
        let provider = Provider::start().await;
        let issued: Arc<Mutex<HashSet<String>>> = Arc::default();
        let token_url = format!("{}/token", provider.url);
        let tokens = issued.clone();
        let devices: Arc<Mutex<TokenScripts>> = Arc::default();
        let scripts = devices.clone();
        provider.guard(Arc::new(move |req: &Received| {
            if req.path == "/token" {
                return Some(issue(req, &token_url, &tokens));
            }
            let bearer = req
                .header("authorization")
                .and_then(|a| a.strip_prefix("Bearer "));
            let known = bearer.is_some_and(|b| tokens.lock().is_ok_and(|t| t.contains(b)));
            if !known {
                return Some(error(
                    401,
                    "UNAUTHENTICATED",
                    "THIRD_PARTY_AUTH_ERROR",
                    "Request had invalid authentication credentials.",
                ));
            }
            scripts.lock().ok().and_then(|mut s| s.answer(req))
        }));
        FcmFake {
            provider,
            issued,
            tokens: devices,
        }
    }

    /// The path sends to `project` arrive on.
    pub fn send_path(project: &str) -> String {
        format!("/v1/projects/{project}/messages:send")
    }

    /// The adapter's settings for `project`, with the service account `client_email` signed by
    /// the test key.
    pub fn settings(&self, project: &str, client_email: &str) -> FcmSettings {
        FcmSettings {
            project_id: project.into(),
            service_account: service_account(client_email),
            endpoint: self.provider.url.clone(),
            token_url: format!("{}/token", self.provider.url),
        }
    }

    /// From now on, sends to the device `token` answer 404 `UNREGISTERED`.
    pub fn unregister(&self, token: &str) {
        if let Ok(mut s) = self.tokens.lock() {
            s.unregistered.insert(token.to_owned());
        }
    }

    /// The next sends to the device `token` get these answers, in order (then the path's).
    pub fn script_token(&self, token: &str, answers: Vec<Answer>) {
        if let Ok(mut s) = self.tokens.lock() {
            s.queued
                .entry(token.to_owned())
                .or_default()
                .extend(answers);
        }
    }

    /// The JSON bodies of the sends to `project` addressed to the device `token`, in order.
    pub fn sends_to(&self, project: &str, token: &str) -> Vec<Value> {
        self.sends(project)
            .into_iter()
            .filter(|b| b["message"]["token"] == token)
            .collect()
    }

    /// How many access tokens the fake has issued.
    pub fn tokens_issued(&self) -> usize {
        self.issued.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// The JSON bodies of the sends that reached `project`.
    pub fn sends(&self, project: &str) -> Vec<Value> {
        self.provider
            .received(&Self::send_path(project))
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }
}

/// A service account key file's JSON, as the Firebase console downloads it.
pub fn service_account(client_email: &str) -> String {
    json!({
        "type": "service_account", "project_id": "herald-test", "private_key_id": "test-key-1",
        "private_key": TEST_PRIVATE_KEY_PEM, "client_email": client_email,
        "token_uri": "https://oauth2.googleapis.com/token"
    })
    .to_string()
}

/// The token endpoint: checks the grant and the assertion's signature and claims.
fn issue(req: &Received, token_url: &str, issued: &Mutex<HashSet<String>>) -> Answer {
    let refuse =
        |why: &str| answer(400).json(json!({"error": "invalid_grant", "error_description": why}));
    let form = req.form();
    if form.get("grant_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return answer(400).json(json!({"error": "unsupported_grant_type"}));
    }
    let Some(assertion) = form.get("assertion") else {
        return refuse("no assertion");
    };
    let Ok(key) = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY_PEM.as_bytes()) else {
        return answer(500);
    };
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[token_url]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return refuse(&format!("Invalid JWT: {e}")),
    };
    if claims.scope != FCM_SCOPE || claims.exp - claims.iat > 3600 {
        return refuse("Invalid JWT claims");
    }
    let token = format!("ya29.fake-{}", uuid::Uuid::new_v4().simple());
    if let Ok(mut t) = issued.lock() {
        t.insert(token.clone());
    }
    answer(200).json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
}
