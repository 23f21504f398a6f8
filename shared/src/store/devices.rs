//! [`DeviceBook`]: a user's phones (native push tokens), and which user holds each token.
//!
//! A user's devices live in the user's slot (`{u:<id>}:devices`, never expiring, like push
//! subscriptions); the owner of each token in the device's own slot (`{dev:<deviceId>}:owner`,
//! the id being derived from the token). Guarantees:
//! - at most [`MAX_DEVICES`](crate::devices::MAX_DEVICES) per user, checked and written in one
//!   script, so concurrent registrations cannot exceed it; a refused registration stores nothing;
//! - a token is held by one user: registering it records the new owner in the index (`SET …
//!   GET`, atomic) and then removes it from the previous owner, so the newest registration wins.
//!   The two slots are written one after the other (they may be on different cluster nodes): a
//!   crash between them can leave a stale copy on the previous owner, which is why senders check
//!   [`DeviceBook::owner`] before sending to a device ([`DeviceBook::devices_owned`]);
//! - removing a device clears the index only if it still names that user.

use redis::AsyncCommands;

use crate::devices::Device;

use super::keys::KeySpace;
use super::scripts::{COMPARE_AND_DEL, COMPARE_AND_HDEL, PUSH_SUBSCRIBE as ADD_CAPPED};
use super::{RedisConn, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    Created,
    /// The user had registered this token already; its entry was replaced.
    Replaced,
    /// The user already holds the maximum number of devices; nothing was stored.
    TooMany,
}

/// A stored device and its exact stored text (what a compare-and-delete compares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDevice {
    pub device: Device,
    pub raw: String,
}

/// The device book. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DeviceBook {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

impl DeviceBook {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        DeviceBook { conn, keys }
    }

    /// Registers `device` for `user_id` within `max` per user, and takes it away from the user
    /// who held it before, if another.
    pub async fn register(
        &self,
        user_id: &str,
        device: &Device,
        max: usize,
    ) -> Result<RegisterOutcome, StoreError> {
        let mut conn = self.conn.clone();
        let done: i64 = ADD_CAPPED
            .key(self.keys.user(user_id).devices())
            .arg(&device.id)
            .arg(to_json(device))
            .arg(max)
            .invoke_async(&mut conn)
            .await?;
        let outcome = match done {
            1 => RegisterOutcome::Created,
            2 => RegisterOutcome::Replaced,
            _ => return Ok(RegisterOutcome::TooMany),
        };
        let previous: Option<String> = redis::cmd("SET")
            .arg(self.keys.device_owner(&device.id))
            .arg(user_id)
            .arg("GET")
            .query_async(&mut conn)
            .await?;
        if let Some(previous) = previous.filter(|p| p != user_id) {
            // The id is derived from the token: whatever the previous owner holds under it is
            // this token.
            let _: i64 = conn
                .hdel(self.keys.user(&previous).devices(), &device.id)
                .await?;
            tracing::info!(
                device = device.id,
                from = previous,
                to = user_id,
                "a device token moved to its newest owner"
            );
        }
        Ok(outcome)
    }

    /// The user's devices, oldest first, as stored (a stale copy of a token that moved may be
    /// among them; see [`DeviceBook::devices_owned`]). Unreadable entries are skipped (and logged).
    pub async fn devices(&self, user_id: &str) -> Result<Vec<StoredDevice>, StoreError> {
        let raw: Vec<(String, String)> = self
            .conn
            .clone()
            .hgetall(self.keys.user(user_id).devices())
            .await?;
        Ok(parse_devices(user_id, raw))
    }

    /// The user's devices that the token index says the user still holds: what a sender may send
    /// to. The others are skipped, not removed: one may be a registration whose index write is
    /// still on its way.
    pub async fn devices_owned(&self, user_id: &str) -> Result<Vec<StoredDevice>, StoreError> {
        self.owned(user_id, self.devices(user_id).await?).await
    }

    /// Of `devices` (the user's, as stored), those the token index says the user still holds.
    pub async fn owned(
        &self,
        user_id: &str,
        devices: Vec<StoredDevice>,
    ) -> Result<Vec<StoredDevice>, StoreError> {
        let mut owned = Vec::with_capacity(devices.len());
        for stored in devices {
            if self.owner(&stored.device.id).await?.as_deref() == Some(user_id) {
                owned.push(stored);
            }
        }
        Ok(owned)
    }

    /// Who holds the device now.
    pub async fn owner(&self, device_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .clone()
            .get(self.keys.device_owner(device_id))
            .await?)
    }

    /// Removes one of the user's devices by id; `false` if the user has none by that id.
    pub async fn remove(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let removed: i64 = conn.hdel(self.keys.user(user_id).devices(), id).await?;
        if removed == 1 {
            self.release(user_id, id).await?;
        }
        Ok(removed == 1)
    }

    /// Removes `stored` if it is still exactly what is stored (the provider said the token is
    /// gone, or it moved to another user).
    pub async fn remove_stored(
        &self,
        user_id: &str,
        stored: &StoredDevice,
    ) -> Result<bool, StoreError> {
        let removed: i64 = COMPARE_AND_HDEL
            .key(self.keys.user(user_id).devices())
            .arg(&stored.device.id)
            .arg(&stored.raw)
            .invoke_async(&mut self.conn.clone())
            .await?;
        if removed == 1 {
            self.release(user_id, &stored.device.id).await?;
        }
        Ok(removed == 1)
    }

    /// Clears the token index if it still names `user_id`.
    async fn release(&self, user_id: &str, device_id: &str) -> Result<(), StoreError> {
        let _: i64 = COMPARE_AND_DEL
            .key(self.keys.device_owner(device_id))
            .arg(user_id)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

pub(super) fn parse_devices(user_id: &str, raw: Vec<(String, String)>) -> Vec<StoredDevice> {
    let mut devices: Vec<StoredDevice> = raw
        .into_iter()
        .filter_map(|(id, raw)| match serde_json::from_str::<Device>(&raw) {
            Ok(device) => Some(StoredDevice { device, raw }),
            Err(e) => {
                tracing::warn!(user = user_id, id, error = %e, "skipping an unreadable device");
                None
            }
        })
        .collect();
    devices.sort_by(|a, b| {
        (a.device.created_at, &a.device.id).cmp(&(b.device.created_at, &b.device.id))
    });
    devices
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Plain data with string keys: serialisation cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}
