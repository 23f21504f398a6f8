//! The keys the off-app channels need locally, made once and kept in the data folder like the
//! JWT issuer's key (`jwt.rs`):
//!
//! - the VAPID key pair (`<data>/push/vapid.key`: the raw P-256 scalar, base64url, mode 0600):
//!   `VAPID_PRIVATE_KEY` for `push`, `VAPID_PUBLIC_KEY` for `api` (browsers subscribe with it,
//!   so it must survive restarts: a new key would orphan every subscription);
//! - the one-click unsubscribe key (`<data>/push/unsubscribe.secret`): `UNSUBSCRIBE_SECRET` for
//!   both;
//! - `VAPID_SUBJECT` (`mailto:devstack@localhost.invalid`).
//!
//! [`PushKeys::supply`] fills these in only for functions whose template environment declares
//! the variable and leaves it empty, so a value from the template, from `--param` or from
//! devstack's own environment always wins, and functions that do not use a key never see it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::RngCore;

use crate::secret_file::write_private;

#[derive(Debug, thiserror::Error)]
pub enum PushKeysError {
    #[error("cannot use the key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the key file {path} is not a base64url P-256 private key (delete it to make a new one)"
    )]
    BadKey { path: PathBuf },
}

/// The local channel keys.
pub struct PushKeys {
    pub vapid_private_key: String,
    pub vapid_public_key: String,
    pub unsubscribe_secret: String,
}

impl std::fmt::Debug for PushKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushKeys")
            .field("vapid_public_key", &self.vapid_public_key)
            .finish_non_exhaustive()
    }
}

/// The contact devstack's VAPID JWTs carry.
pub const VAPID_SUBJECT: &str = "mailto:devstack@localhost.invalid";

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, PushKeysError> {
    let io = |source| PushKeysError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            write_private(path, value.as_bytes()).map_err(io)?;
            Ok(value)
        }
        Err(e) => Err(io(e)),
    }
}

impl PushKeys {
    /// Loads the keys from `data_dir`, creating them the first time.
    pub fn load_or_create(data_dir: &Path) -> Result<PushKeys, PushKeysError> {
        let dir = data_dir.join("push");
        let key_path = dir.join("vapid.key");
        let private = read_or_create(&key_path, || {
            let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
            URL_SAFE_NO_PAD.encode(secret.to_bytes())
        })?;
        let secret = URL_SAFE_NO_PAD
            .decode(&private)
            .ok()
            .and_then(|raw| p256::SecretKey::from_slice(&raw).ok())
            .ok_or_else(|| PushKeysError::BadKey {
                path: key_path.clone(),
            })?;
        let public = secret.public_key().to_encoded_point(false);
        let unsubscribe = read_or_create(&dir.join("unsubscribe.secret"), || {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            URL_SAFE_NO_PAD.encode(bytes)
        })?;
        Ok(PushKeys {
            vapid_private_key: private,
            vapid_public_key: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            unsubscribe_secret: unsubscribe,
        })
    }

    /// Fills the declared-but-empty channel variables of one function's environment.
    pub fn supply(&self, environment: &mut BTreeMap<String, String>) {
        for (var, value) in [
            ("VAPID_PRIVATE_KEY", self.vapid_private_key.as_str()),
            ("VAPID_PUBLIC_KEY", self.vapid_public_key.as_str()),
            ("VAPID_SUBJECT", VAPID_SUBJECT),
            ("UNSUBSCRIBE_SECRET", self.unsubscribe_secret.as_str()),
        ] {
            if let Some(v) = environment.get_mut(var) {
                if v.is_empty() {
                    *v = value.to_owned();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_made_once_and_fill_only_declared_empty_variables() {
        let dir = std::env::temp_dir().join(format!("push-keys-{}", uuid::Uuid::new_v4()));
        let first = PushKeys::load_or_create(&dir).unwrap_or_else(|e| panic!("{e}"));
        let again = PushKeys::load_or_create(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first.vapid_private_key, again.vapid_private_key);
        assert_eq!(first.unsubscribe_secret, again.unsubscribe_secret);
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(&first.vapid_public_key)
                .map(|k| k.len())
                .ok(),
            Some(65)
        );
        let mut env: BTreeMap<String, String> = [
            ("VAPID_PRIVATE_KEY".to_owned(), String::new()),
            (
                "VAPID_SUBJECT".to_owned(),
                "mailto:me@example.com".to_owned(),
            ),
        ]
        .into();
        first.supply(&mut env);
        assert_eq!(env["VAPID_PRIVATE_KEY"], first.vapid_private_key);
        assert_eq!(env["VAPID_SUBJECT"], "mailto:me@example.com");
        assert!(!env.contains_key("UNSUBSCRIBE_SECRET"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
