//! [`ContactBook`]: where a user can be reached off-app — Web Push subscriptions and the email
//! address and phone number — plus the one preference change a one-click unsubscribe makes.
//!
//! Everything lives in the user's slot and never expires (like preferences): a user who gets no
//! notification for months still has their devices registered. Guarantees:
//! - at most [`MAX_PUSH_SUBSCRIPTIONS`](crate::addresses::MAX_PUSH_SUBSCRIPTIONS) per user, checked
//!   and written in one script, so concurrent subscribes cannot exceed it;
//! - removing a dead subscription is a compare-and-delete on the exact record that was sent to,
//!   so a browser that re-subscribed in between (same endpoint, new keys) keeps its new record;
//! - [`ContactBook::opt_out`] changes one type × channel switch of the stored preferences with a
//!   compare-and-set, so a concurrent `PUT /v1/preferences` is never overwritten by a stale copy.

use redis::AsyncCommands;

use crate::addresses::{Contacts, PushSubscription};
use crate::model::{Channel, Preferences};

use super::keys::KeySpace;
use super::scripts::{COMPARE_AND_HDEL, COMPARE_AND_SET, PUSH_SUBSCRIBE as SUBSCRIBE};
use super::{RedisConn, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeOutcome {
    Created,
    /// The same endpoint was already registered; its keys were replaced.
    Replaced,
    /// The user already holds the maximum number of subscriptions.
    TooMany,
}

/// A stored subscription and its exact stored text (what a compare-and-delete compares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    pub subscription: PushSubscription,
    pub raw: String,
}

/// The contact book. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ContactBook {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

impl ContactBook {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        ContactBook { conn, keys }
    }

    /// Adds (or replaces, for the same endpoint) a subscription, within `max` per user.
    pub async fn subscribe(
        &self,
        user_id: &str,
        subscription: &PushSubscription,
        max: usize,
    ) -> Result<SubscribeOutcome, StoreError> {
        let done: i64 = SUBSCRIBE
            .key(self.keys.user(user_id).push_subscriptions())
            .arg(&subscription.id)
            .arg(to_json(subscription))
            .arg(max)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match done {
            1 => SubscribeOutcome::Created,
            2 => SubscribeOutcome::Replaced,
            _ => SubscribeOutcome::TooMany,
        })
    }

    /// The user's subscriptions, oldest first. Unreadable entries are skipped (and logged).
    pub async fn subscriptions(
        &self,
        user_id: &str,
    ) -> Result<Vec<StoredSubscription>, StoreError> {
        let raw: Vec<(String, String)> = self
            .conn
            .clone()
            .hgetall(self.keys.user(user_id).push_subscriptions())
            .await?;
        Ok(parse_subscriptions(user_id, raw))
    }

    /// Removes a subscription by id; `false` if there was none.
    pub async fn unsubscribe(&self, user_id: &str, id: &str) -> Result<bool, StoreError> {
        let removed: i64 = self
            .conn
            .clone()
            .hdel(self.keys.user(user_id).push_subscriptions(), id)
            .await?;
        Ok(removed == 1)
    }

    /// Removes `stored` if it is still exactly what is stored (the push service said it is gone).
    pub async fn remove_gone(
        &self,
        user_id: &str,
        stored: &StoredSubscription,
    ) -> Result<bool, StoreError> {
        let removed: i64 = COMPARE_AND_HDEL
            .key(self.keys.user(user_id).push_subscriptions())
            .arg(&stored.subscription.id)
            .arg(&stored.raw)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(removed == 1)
    }

    pub async fn contacts(&self, user_id: &str) -> Result<Contacts, StoreError> {
        let raw: Option<String> = self
            .conn
            .clone()
            .get(self.keys.user(user_id).contacts())
            .await?;
        parse_contacts(raw.as_deref())
    }

    /// Replaces the user's contacts; both absent removes them.
    pub async fn set_contacts(&self, user_id: &str, contacts: &Contacts) -> Result<(), StoreError> {
        let key = self.keys.user(user_id).contacts();
        let mut conn = self.conn.clone();
        if contacts.email.is_none() && contacts.phone.is_none() {
            let _: i64 = conn.del(key).await?;
        } else {
            let _: () = conn.set(key, to_json(contacts)).await?;
        }
        Ok(())
    }

    /// Turns `channel` off for notifications of type `kind` in the user's stored preferences,
    /// leaving everything else as it is. Returns the preferences now stored.
    pub async fn opt_out(
        &self,
        user_id: &str,
        kind: &str,
        channel: Channel,
    ) -> Result<Preferences, StoreError> {
        let key = self.keys.user(user_id).prefs();
        let mut conn = self.conn.clone();
        // Compare-and-set, retried on a concurrent write (a PUT /v1/preferences in between).
        for _ in 0..16 {
            let current: Option<String> = conn.get(&key).await?;
            let mut prefs: Preferences = match &current {
                None => Preferences::default(),
                Some(raw) => serde_json::from_str(raw)
                    .map_err(|e| StoreError::Corrupt(format!("preferences: {e}")))?,
            };
            prefs
                .types
                .entry(kind.to_owned())
                .or_default()
                .insert(channel, false);
            let set: i64 = COMPARE_AND_SET
                .key(&key)
                .arg(current.as_deref().unwrap_or(""))
                .arg(to_json(&prefs))
                .invoke_async(&mut conn)
                .await?;
            if set == 1 {
                return Ok(prefs);
            }
        }
        Err(StoreError::Corrupt(
            "preferences kept changing during an unsubscribe".into(),
        ))
    }
}

pub(crate) fn parse_subscriptions(
    user_id: &str,
    raw: Vec<(String, String)>,
) -> Vec<StoredSubscription> {
    let mut subs: Vec<StoredSubscription> = raw
        .into_iter()
        .filter_map(
            |(id, raw)| match serde_json::from_str::<PushSubscription>(&raw) {
                Ok(subscription) => Some(StoredSubscription { subscription, raw }),
                Err(e) => {
                    tracing::warn!(user = user_id, id, error = %e, "skipping an unreadable push subscription");
                    None
                }
            },
        )
        .collect();
    subs.sort_by(|a, b| {
        (a.subscription.created_at, &a.subscription.id)
            .cmp(&(b.subscription.created_at, &b.subscription.id))
    });
    subs
}

pub(crate) fn parse_contacts(raw: Option<&str>) -> Result<Contacts, StoreError> {
    match raw {
        None => Ok(Contacts::default()),
        Some(raw) => {
            serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("contacts: {e}")))
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // Plain data with string keys: serialisation cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}
