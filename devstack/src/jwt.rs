//! The local token issuer. devstack plays the identity provider API Gateway trusts: an ES256 key
//! pair kept in the data folder (`<data>/jwt/es256.pem`, created on first use, mode 0600), the
//! OpenID discovery document and JWKS served on the HTTP port, and signed development tokens.
//!
//! Contract: a token from [`Issuer::token`] carries `iss`, `aud`, `sub`, `iat`, `exp` and, when
//! scopes are given, the space-separated `scope` claim (and, from [`Issuer::token_with_claims`],
//! the extra claims it is given, such as the tenant); [`Issuer::verify`] accepts exactly those
//! tokens (ES256 with this key, matching issuer and audience, not expired), as API Gateway's JWT
//! authorizer would.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::secret_file::write_private;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("cannot use the key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key file {path} is not a P-256 PKCS#8 key (delete it to make a new one)")]
    BadKey { path: PathBuf },
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
}

/// devstack's signing key and identity.
pub struct Issuer {
    pub issuer: String,
    pub audience: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
    /// Tokens already verified, with their claims, until they expire (see [`Issuer::verify`]).
    verified: Mutex<HashMap<VerifiedKey, Verified>>,
}

/// A verification is valid for this token string under this issuer and audience list.
type VerifiedKey = (String, String, Vec<String>);

struct Verified {
    claims: Map<String, Value>,
    exp: u64,
    nbf: u64,
}

/// How many verified tokens the cache keeps; beyond it, expired ones are dropped, then all.
const VERIFIED_CACHE_MAX: usize = 10_000;

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish()
    }
}

/// Where the key lives under the data folder.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("jwt").join("es256.pem")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Issuer {
    /// Loads the key from `data_dir`, creating it the first time.
    pub fn load_or_create(
        data_dir: &Path,
        issuer: &str,
        audience: &str,
    ) -> Result<Issuer, JwtError> {
        let path = key_path(data_dir);
        let io = |source| JwtError::Io {
            path: path.clone(),
            source,
        };
        let secret = match std::fs::read_to_string(&path) {
            Ok(pem) => p256::SecretKey::from_pkcs8_pem(&pem)
                .map_err(|_| JwtError::BadKey { path: path.clone() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
                let pem = secret
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|_| JwtError::BadKey { path: path.clone() })?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(&path, pem.as_bytes()).map_err(io)?;
                secret
            }
            Err(e) => return Err(io(e)),
        };
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| JwtError::BadKey { path: path.clone() })?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())?;
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(JwtError::BadKey { path });
        };
        let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
        let decoding = DecodingKey::from_ec_components(&x, &y)?;
        let digest = Sha256::digest(format!("{x}.{y}").as_bytes());
        let kid = URL_SAFE_NO_PAD.encode(&digest[..12]);
        Ok(Issuer {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            kid,
            encoding,
            decoding,
            x,
            y,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// A signed token for `sub`, valid for `ttl`.
    pub fn token(&self, sub: &str, scopes: &[String], ttl: Duration) -> Result<String, JwtError> {
        self.token_with_claims(sub, scopes, Map::new(), ttl)
    }

    /// A signed token for `sub`, valid for `ttl`, that also carries `extra` (a tenant claim, for
    /// one); the registered claims it sets win over any of the same name in `extra`.
    pub fn token_with_claims(
        &self,
        sub: &str,
        scopes: &[String],
        extra: Map<String, Value>,
        ttl: Duration,
    ) -> Result<String, JwtError> {
        let now = now_secs();
        let mut claims = extra;
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("sub".into(), sub.into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + ttl.as_secs()).into());
        claims.insert("jti".into(), uuid::Uuid::new_v4().to_string().into());
        if !scopes.is_empty() {
            claims.insert("scope".into(), scopes.join(" ").into());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding)?)
    }

    /// Verifies a token as an authorizer configured with `issuer` and `audiences` would, and
    /// returns its claims.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        audiences: &[String],
    ) -> Result<Map<String, Value>, JwtError> {
        // API Gateway's JWT authorizer caches a verified token until it expires; so does this one,
        // because an ES256 verification per request was the largest share of devstack's CPU. A
        // hit is the same token string (its signature included) for the same issuer and
        // audiences, still inside its `nbf`..`exp`; a refusal is never cached.
        let key: VerifiedKey = (token.to_owned(), issuer.to_owned(), audiences.to_vec());
        let now = now_secs();
        if let Ok(cache) = self.verified.lock() {
            if let Some(hit) = cache.get(&key) {
                if now < hit.exp && now >= hit.nbf {
                    return Ok(hit.claims.clone());
                }
            }
        }
        let claims = self.verify_signature(token, issuer, audiences)?;
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let nbf = claims.get("nbf").and_then(Value::as_u64).unwrap_or(0);
        if let Ok(mut cache) = self.verified.lock() {
            if cache.len() >= VERIFIED_CACHE_MAX {
                cache.retain(|_, v| v.exp > now);
                if cache.len() >= VERIFIED_CACHE_MAX {
                    cache.clear();
                }
            }
            cache.insert(
                key,
                Verified {
                    claims: claims.clone(),
                    exp,
                    nbf,
                },
            );
        }
        Ok(claims)
    }

    /// The verification itself: header, signature and claims.
    fn verify_signature(
        &self,
        token: &str,
        issuer: &str,
        audiences: &[String],
    ) -> Result<Map<String, Value>, JwtError> {
        let header = jsonwebtoken::decode_header(token)?;
        if header.alg != Algorithm::ES256 || header.kid.as_deref().is_some_and(|k| k != self.kid) {
            return Err(JwtError::Token(
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm.into(),
            ));
        }
        let mut v = Validation::new(Algorithm::ES256);
        v.set_issuer(&[issuer]);
        v.set_audience(audiences);
        v.set_required_spec_claims(&["exp", "iss"]);
        v.leeway = 0;
        Ok(jsonwebtoken::decode::<Map<String, Value>>(token, &self.decoding, &v)?.claims)
    }

    /// `{"keys":[...]}`, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        serde_json::json!({ "keys": [{ "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid, "x": self.x, "y": self.y }] })
    }

    /// The OpenID discovery document, as served at `/.well-known/openid-configuration`.
    pub fn discovery(&self) -> Value {
        serde_json::json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/.well-known/jwks.json", self.issuer),
            "id_token_signing_alg_values_supported": ["ES256"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_against_the_same_key_and_fail_on_the_wrong_audience() -> Result<(), JwtError> {
        let dir = std::env::temp_dir().join(format!("devstack-jwt-{}", uuid::Uuid::new_v4()));
        let issuer = Issuer::load_or_create(&dir, "http://127.0.0.1:3000", "herald")?;
        let token = issuer.token(
            "alice",
            &["notifications:write".into()],
            Duration::from_secs(60),
        )?;
        let again = Issuer::load_or_create(&dir, "http://127.0.0.1:3000", "herald")?;
        let claims = again.verify(&token, "http://127.0.0.1:3000", &["herald".into()])?;
        assert_eq!(claims.get("sub").and_then(Value::as_str), Some("alice"));
        assert_eq!(
            claims.get("scope").and_then(Value::as_str),
            Some("notifications:write")
        );
        assert!(again
            .verify(&token, "http://127.0.0.1:3000", &["other".into()])
            .is_err());
        assert!(again
            .verify(&token, "http://elsewhere", &["herald".into()])
            .is_err());
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }

    #[test]
    fn a_cached_verification_ends_when_the_token_expires() -> Result<(), JwtError> {
        let dir = std::env::temp_dir().join(format!("devstack-jwt-{}", uuid::Uuid::new_v4()));
        let issuer = Issuer::load_or_create(&dir, "http://127.0.0.1:3000", "herald")?;
        let token = issuer.token("alice", &[], Duration::from_secs(1))?;
        let aud = ["herald".to_owned()];
        // Twice: the second answer comes from the cache.
        issuer.verify(&token, "http://127.0.0.1:3000", &aud)?;
        issuer.verify(&token, "http://127.0.0.1:3000", &aud)?;
        // Another audience is a verification of its own, refused even while cached for "herald".
        assert!(issuer
            .verify(&token, "http://127.0.0.1:3000", &["other".into()])
            .is_err());
        // Past `exp` (whole seconds) the cached entry no longer answers.
        std::thread::sleep(Duration::from_millis(2_100));
        assert!(issuer
            .verify(&token, "http://127.0.0.1:3000", &aud)
            .is_err());
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }
}
