//! A local fake of the Apple Push Notification service: HTTP/2 over TLS on 127.0.0.1, with a
//! self-signed certificate made at start (rcgen; the adapter trusts it through `APNS_CA_CERT`),
//! ALPN `h2` only, so an HTTP/1.1 client cannot talk to it, as with Apple.
//!
//! Every `POST /3/device/<token>` is recorded ([`Provider::received`]) and checked as APNs does
//! before the script answers (the answer and its `{"reason": …}`, Apple's words):
//! - the provider token: `authorization: bearer <jwt>`, an ES256 JWT whose signature verifies
//!   with the public half of this fake's `.p8` key ([`ApnsFake::private_key`]), `kid` =
//!   [`KEY_ID`], `iss` = [`TEAM_ID`], `iat` within the last hour; else 403
//!   `MissingProviderToken`, `InvalidProviderToken` or `ExpiredProviderToken` (also for a token
//!   the test declared expired, [`ApnsFake::expire_tokens_seen`]);
//! - the device token is 64 hex characters (400 `BadDeviceToken`); `apns-topic` is [`TOPIC`]
//!   (400 `MissingTopic`, `TopicDisallowed`); `apns-push-type` `alert` or `background` (400
//!   `InvalidPushType`); `apns-priority` 10, 5 or 1, and 5 for a background push (400
//!   `BadPriority`); `apns-expiration` a number (400 `BadExpirationDate`); `apns-collapse-id`
//!   at most 64 bytes (400 `BadCollapseId`); the payload not empty (400 `PayloadEmpty`) and at
//!   most 4,096 bytes (413 `PayloadTooLarge`).
//!
//! Then the path's script answers ([`Provider::queue`], [`Provider::always`]), else 200 with an
//! `apns-id`, as APNs accepts a push. [`error`] and [`unregistered`] write APNs' error answers;
//! [`hold`](crate::provider::hold) never answers (the adapter's timeout).

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use push::senders::apns::{ProviderTokenClaims, APNS_PAYLOAD_MAX_BYTES};
use serde_json::{json, Value};
use shared::config::ApnsSettings;
use tokio_rustls::TlsAcceptor;

use crate::provider::{answer, Answer, Provider, Received, Responder};

/// The developer team the fake's key belongs to.
pub const TEAM_ID: &str = "HERALDTEAM";
/// The id of the fake's signing key.
pub const KEY_ID: &str = "HERALDKEY1";
/// The app (bundle id) the fake's tokens are for.
pub const TOPIC: &str = "test.herald.app";

/// A device token in APNs' shape (32 bytes, hex).
pub fn device_token(n: u8) -> String {
    format!("{:02x}", n).repeat(32)
}

/// APNs' error answer: `status` with `{"reason": reason}`.
pub fn error(status: u16, reason: &str) -> Answer {
    answer(status)
        .json(json!({"reason": reason}))
        .header("apns-id", &uuid::Uuid::new_v4().to_string())
}

/// 410 `Unregistered` with the `timestamp` (milliseconds) APNs last knew the token valid.
pub fn unregistered() -> Answer {
    answer(410)
        .json(json!({"reason": "Unregistered", "timestamp": 1_764_979_200_000_i64}))
        .header("apns-id", &uuid::Uuid::new_v4().to_string())
}

/// A new `.p8` key (PKCS#8 PEM, P-256), as Apple's developer site hands one out.
pub fn new_key() -> String {
    p256::SecretKey::random(&mut rand::rngs::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .unwrap_or_else(|e| panic!("{e}"))
}

pub struct ApnsFake {
    /// Its script and what it received; `provider.url` is `https://127.0.0.1:<port>`.
    pub provider: Provider,
    /// The fake's certificate (PEM), for `APNS_CA_CERT`.
    pub ca_cert: String,
    private_key: String,
    expired: Arc<Mutex<HashSet<String>>>,
}

impl ApnsFake {
    pub async fn start() -> ApnsFake {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])
            .unwrap_or_else(|e| panic!("certificate: {e}"));
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = rustls::crypto::ring::default_provider();
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(vec![cert.cert.der().clone()], key)
            })
            .unwrap_or_else(|e| panic!("tls: {e}"));
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let provider = Provider::serving("https", move |stream, responder| {
            serve(acceptor.clone(), stream, responder)
        })
        .await;
        provider.otherwise(answer(200).header("apns-id", "8a1f5e5c-0000-4000-8000-000000000001"));
        let private_key = new_key();
        let public_key = p256::SecretKey::from_pkcs8_pem(&private_key)
            .unwrap_or_else(|e| panic!("{e}"))
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_else(|e| panic!("{e}"));
        let expired: Arc<Mutex<HashSet<String>>> = Arc::default();
        let refused = expired.clone();
        let verified: Mutex<HashMap<String, i64>> = Mutex::default();
        provider.guard(Arc::new(move |req: &Received| {
            check(req, &public_key, &verified, &refused)
        }));
        ApnsFake {
            provider,
            ca_cert: cert.cert.pem(),
            private_key,
            expired,
        }
    }

    /// The adapter's settings: the fake's endpoint, key and certificate.
    pub fn settings(&self) -> ApnsSettings {
        self.settings_with_key(&self.private_key)
    }

    /// The same with another `.p8` key (a forged or revoked one).
    pub fn settings_with_key(&self, private_key: &str) -> ApnsSettings {
        ApnsSettings {
            key_id: KEY_ID.into(),
            team_id: TEAM_ID.into(),
            private_key: private_key.into(),
            topic: TOPIC.into(),
            endpoint: self.provider.url.clone(),
            ca_cert: Some(self.ca_cert.clone()),
        }
    }

    /// The path pushes to `device` arrive on.
    pub fn path(device: &str) -> String {
        format!("/3/device/{device}")
    }

    /// The requests that reached `device`.
    pub fn received(&self, device: &str) -> Vec<Received> {
        self.provider.received(&Self::path(device))
    }

    /// The JSON payloads that reached `device`.
    pub fn payloads(&self, device: &str) -> Vec<Value> {
        self.received(device)
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
            .collect()
    }

    /// The provider token of each request that reached `device`.
    pub fn provider_tokens(&self, device: &str) -> Vec<String> {
        self.received(device)
            .iter()
            .filter_map(|r| bearer(r).map(str::to_owned))
            .collect()
    }

    /// From now on, every provider token the fake has seen is answered 403
    /// `ExpiredProviderToken`, as APNs answers a token past its hour.
    pub fn expire_tokens_seen(&self) {
        let seen: Vec<String> = self
            .provider
            .received_all()
            .iter()
            .filter_map(|r| bearer(r).map(str::to_owned))
            .collect();
        if let Ok(mut e) = self.expired.lock() {
            e.extend(seen);
        }
    }
}

fn bearer(req: &Received) -> Option<&str> {
    req.header("authorization")
        .and_then(|a| a.strip_prefix("bearer "))
}

/// APNs' checks, in its order: the request, the provider token, the headers, the payload.
fn check(
    req: &Received,
    public_key: &str,
    verified: &Mutex<HashMap<String, i64>>,
    expired: &Mutex<HashSet<String>>,
) -> Option<Answer> {
    if req.method != "POST" {
        return Some(error(405, "MethodNotAllowed"));
    }
    let Some(device) = req.path.strip_prefix("/3/device/") else {
        return Some(error(404, "BadPath"));
    };
    let Some(jwt) = bearer(req) else {
        return Some(error(403, "MissingProviderToken"));
    };
    if let Some(refusal) = check_token(jwt, public_key, verified, expired) {
        return Some(refusal);
    }
    if device.len() != 64 || !device.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(error(400, "BadDeviceToken"));
    }
    match req.header("apns-topic") {
        None => return Some(error(400, "MissingTopic")),
        Some(t) if t != TOPIC => return Some(error(400, "TopicDisallowed")),
        Some(_) => {}
    }
    let push_type = req.header("apns-push-type");
    if !matches!(push_type, Some("alert" | "background")) {
        return Some(error(400, "InvalidPushType"));
    }
    match (push_type, req.header("apns-priority")) {
        (_, Some(p)) if !matches!(p, "10" | "5" | "1") => return Some(error(400, "BadPriority")),
        (Some("background"), p) if p != Some("5") => return Some(error(400, "BadPriority")),
        _ => {}
    }
    if req
        .header("apns-expiration")
        .is_some_and(|e| e.parse::<u64>().is_err())
    {
        return Some(error(400, "BadExpirationDate"));
    }
    if req.header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return Some(error(400, "BadCollapseId"));
    }
    if req.body.is_empty() {
        return Some(error(400, "PayloadEmpty"));
    }
    if req.body.len() > APNS_PAYLOAD_MAX_BYTES {
        return Some(error(413, "PayloadTooLarge"));
    }
    None
}

/// A token's signature is verified once (`verified` keeps its `iat`); its age on every request.
fn check_token(
    jwt: &str,
    public_key: &str,
    verified: &Mutex<HashMap<String, i64>>,
    expired: &Mutex<HashSet<String>>,
) -> Option<Answer> {
    let invalid = || Some(error(403, "InvalidProviderToken"));
    let known = verified.lock().ok().and_then(|v| v.get(jwt).copied());
    let iat = match known {
        Some(iat) => iat,
        None => {
            let Ok(header) = jsonwebtoken::decode_header(jwt) else {
                return invalid();
            };
            if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(KEY_ID) {
                return invalid();
            }
            let Ok(key) = DecodingKey::from_ec_pem(public_key.as_bytes()) else {
                return Some(answer(500));
            };
            let mut validation = Validation::new(Algorithm::ES256);
            validation.set_required_spec_claims::<&str>(&[]);
            validation.validate_exp = false;
            validation.set_issuer(&[TEAM_ID]);
            let Ok(token) = jsonwebtoken::decode::<ProviderTokenClaims>(jwt, &key, &validation)
            else {
                return invalid();
            };
            if let Ok(mut v) = verified.lock() {
                v.insert(jwt.to_owned(), token.claims.iat);
            }
            token.claims.iat
        }
    };
    let age = chrono::Utc::now().timestamp() - iat;
    if age > 3600 || expired.lock().is_ok_and(|e| e.contains(jwt)) {
        return Some(error(403, "ExpiredProviderToken"));
    }
    if age < -60 {
        return invalid();
    }
    None
}

/// One TLS connection speaking HTTP/2: each request recorded and answered by `responder`.
async fn serve(acceptor: TlsAcceptor, stream: tokio::net::TcpStream, responder: Responder) {
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let responder = responder.clone();
        async move { Ok::<_, Infallible>(respond(req, &responder).await) }
    });
    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn respond(
    req: hyper::Request<Incoming>,
    responder: &Responder,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        at: Instant::now(),
    };
    let reply = responder.answer(received).unwrap_or(answer(500));
    if reply.hold {
        // Until the client resets the stream (its timeout), which drops this future.
        std::future::pending::<()>().await;
    }
    let mut response = hyper::Response::builder().status(reply.status);
    for (k, v) in &reply.headers {
        response = response.header(k.as_str(), v.as_str());
    }
    response
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}
