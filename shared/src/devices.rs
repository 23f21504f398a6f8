//! A user's phones: the native push tokens of `POST /v1/devices`, with the rules that make them
//! acceptable. Shared by the api function (registration) and the push function (sending through
//! FCM and APNs); where they are stored is [`crate::store::devices`].
//!
//! Contracts:
//! - an APNs device token (`ios`) is 64 hexadecimal characters (32 bytes, as Apple hands it to
//!   the app, hex-encoded); an FCM registration token (`android`) is 100 to 4,096 characters of
//!   `[A-Za-z0-9_:-]` (FCM documents no length; real tokens are about 150 to 250 characters, the
//!   bounds leave room and keep junk out);
//! - `appId`, when given, is a bundle id or package name: 1 to 155 characters of `[A-Za-z0-9._-]`;
//! - a device's id is derived from its platform and token, so registering the same phone again
//!   replaces its entry instead of adding a second one, whichever user registers it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::error::FieldError;

/// Most devices one user may hold.
pub const MAX_DEVICES: usize = 20;
/// An APNs device token: 32 bytes, hex.
pub const APNS_TOKEN_CHARS: usize = 64;
/// The bounds of an FCM registration token, in characters.
pub const FCM_TOKEN_MIN_CHARS: usize = 100;
pub const FCM_TOKEN_MAX_CHARS: usize = 4096;
/// The longest `appId` (Apple allows 155 characters in a bundle id).
pub const APP_ID_MAX_CHARS: usize = 155;

/// Which native push service reaches the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Apple Push Notification service.
    Ios,
    /// Firebase Cloud Messaging.
    Android,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Ios => "ios",
            Platform::Android => "android",
        }
    }
}

/// The body of `POST /v1/devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceRequest {
    pub platform: Platform,
    /// The APNs device token (hex) or the FCM registration token.
    pub token: String,
    /// The app's bundle id or package name, when one deployment serves several apps.
    #[serde(default)]
    pub app_id: Option<String>,
}

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    pub platform: Platform,
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A device as the API shows it (no token: it is a credential to reach the phone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceView {
    pub id: String,
    pub platform: Platform,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<&Device> for DeviceView {
    fn from(d: &Device) -> Self {
        DeviceView {
            id: d.id.clone(),
            platform: d.platform,
            app_id: d.app_id.clone(),
            created_at: d.created_at,
        }
    }
}

impl Device {
    /// The id of the device holding `token`: stable, so registering it again replaces it.
    pub fn id_for(platform: Platform, token: &str) -> String {
        let digest = Sha256::new()
            .chain_update(platform.as_str())
            .chain_update([0u8])
            .chain_update(token)
            .finalize();
        hex::encode(&digest[..12])
    }

    /// Checks a registration and turns it into the stored form, or says which fields are wrong.
    pub fn from_request(req: &DeviceRequest, now: DateTime<Utc>) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Err(why) = check_token(req.platform, &req.token) {
            errors.push(FieldError::new("token", why));
        }
        if let Some(app_id) = &req.app_id {
            if let Err(why) = check_app_id(app_id) {
                errors.push(FieldError::new("appId", why));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Device {
            id: Device::id_for(req.platform, &req.token),
            platform: req.platform,
            token: req.token.clone(),
            app_id: req.app_id.clone(),
            created_at: now,
        })
    }
}

/// The token's shape for its platform.
pub fn check_token(platform: Platform, token: &str) -> Result<(), String> {
    match platform {
        Platform::Ios => {
            if token.len() == APNS_TOKEN_CHARS && token.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(())
            } else {
                Err(format!(
                    "an APNs device token is {APNS_TOKEN_CHARS} hexadecimal characters"
                ))
            }
        }
        Platform::Android => {
            let shape_ok = token.bytes().all(is_fcm_token_byte);
            if shape_ok && (FCM_TOKEN_MIN_CHARS..=FCM_TOKEN_MAX_CHARS).contains(&token.len()) {
                Ok(())
            } else {
                Err(format!(
                    "an FCM registration token is {FCM_TOKEN_MIN_CHARS} to {FCM_TOKEN_MAX_CHARS} characters of [A-Za-z0-9_:-]"
                ))
            }
        }
    }
}

fn is_fcm_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-')
}

fn check_app_id(app_id: &str) -> Result<(), String> {
    let shape_ok = app_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if shape_ok && (1..=APP_ID_MAX_CHARS).contains(&app_id.len()) {
        Ok(())
    } else {
        Err(format!(
            "a bundle id or package name: 1 to {APP_ID_MAX_CHARS} characters of [A-Za-z0-9._-]"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(platform: Platform, token: &str) -> DeviceRequest {
        DeviceRequest {
            platform,
            token: token.into(),
            app_id: None,
        }
    }

    #[test]
    fn token_shapes_follow_the_platform() {
        let now = Utc::now();
        let apns = "a1".repeat(32);
        let fcm = format!("cX9f:APA91b{}", "x_-Z9".repeat(28));
        assert!(Device::from_request(&request(Platform::Ios, &apns), now).is_ok());
        assert!(Device::from_request(&request(Platform::Android, &fcm), now).is_ok());
        // Each platform's token is refused by the other.
        assert!(Device::from_request(&request(Platform::Android, &apns), now).is_err());
        assert!(Device::from_request(&request(Platform::Ios, &fcm), now).is_err());
        for bad in ["", &"g".repeat(64), &"a".repeat(63), &"a".repeat(66)] {
            assert!(check_token(Platform::Ios, bad).is_err(), "{bad}");
        }
        for bad in [
            &"a".repeat(99),
            &"a".repeat(4097),
            &format!("{} ", "a".repeat(150)),
        ] {
            assert!(check_token(Platform::Android, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_device_id_names_platform_and_token() {
        let token = "ab".repeat(32);
        assert_eq!(
            Device::id_for(Platform::Ios, &token),
            Device::id_for(Platform::Ios, &token)
        );
        assert_ne!(
            Device::id_for(Platform::Ios, &token),
            Device::id_for(Platform::Android, &token)
        );
    }

    #[test]
    fn app_ids_are_bundle_ids() {
        assert!(check_app_id("com.example.app").is_ok());
        assert!(check_app_id("").is_err());
        assert!(check_app_id("com example").is_err());
        assert!(check_app_id(&"a".repeat(APP_ID_MAX_CHARS + 1)).is_err());
    }
}
