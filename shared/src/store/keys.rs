//! The key schema, defined once.
//!
//! | key | type | what |
//! |---|---|---|
//! | `<p>{u:<id>}:meta` | hash | `seq`, `unread`, `unseen`, `total`, `t:<type>` (unread per type) |
//! | `<p>{u:<id>}:docs` | hash | notification id → `<seq>\n<notification JSON>` |
//! | `<p>{u:<id>}:flags` | hash | notification id → `<bits>|<createdMs>|<type>` |
//! | `<p>{u:<id>}:all` | zset | notification ids by seq |
//! | `<p>{u:<id>}:unread` | zset | unread notification ids by seq |
//! | `<p>{u:<id>}:log` | zset | change records by seq (capped; see `record.rs`) |
//! | `<p>{u:<id>}:unpub` | zset | seqs of changes not yet acknowledged by Kafka |
//! | `<p>{u:<id>}:idem:<hash>` | string | idempotency claim, 24 h |
//! | `<p>{u:<id>}:prefs` | string | preferences JSON (never expires) |
//! | `<p>{u:<id>}:rate` | string | per-recipient GCRA state |
//! | `<p>{s:<id>}:rate` | string | per-sender GCRA state |
//! | `<p>{outbox}:dirty` | zset | users with possibly unpublished changes, by mark time |
//! | `<p>{outbox}:lease` | string | the relay's lease (one relay at a time) |
//!
//! `<p>` is `REDIS_KEY_PREFIX`. The inbox keys (meta … unpub) expire together after the retention
//! period without writes.

use sha2::{Digest, Sha256};

/// Names every key; holds the deployment's prefix.
#[derive(Debug, Clone, Default)]
pub struct KeySpace {
    prefix: String,
}

/// The keys of one user's slot.
#[derive(Debug, Clone)]
pub struct UserKeys {
    tag: String,
}

impl KeySpace {
    pub fn new(prefix: impl Into<String>) -> Self {
        KeySpace {
            prefix: prefix.into(),
        }
    }

    pub fn user(&self, user_id: &str) -> UserKeys {
        UserKeys {
            tag: format!("{}{{u:{}}}", self.prefix, user_id),
        }
    }

    pub fn sender_rate(&self, sender: &str) -> String {
        format!("{}{{s:{}}}:rate", self.prefix, sender)
    }

    pub fn outbox_dirty(&self) -> String {
        format!("{}{{outbox}}:dirty", self.prefix)
    }

    pub fn outbox_lease(&self) -> String {
        format!("{}{{outbox}}:lease", self.prefix)
    }
}

impl UserKeys {
    fn key(&self, suffix: &str) -> String {
        format!("{}:{}", self.tag, suffix)
    }

    /// The seven keys every inbox script receives first, in the order `prelude.lua` expects.
    pub fn inbox(&self) -> [String; 7] {
        ["meta", "docs", "flags", "all", "unread", "log", "unpub"].map(|s| self.key(s))
    }

    pub fn meta(&self) -> String {
        self.key("meta")
    }
    pub fn docs(&self) -> String {
        self.key("docs")
    }
    pub fn flags(&self) -> String {
        self.key("flags")
    }
    pub fn unpub(&self) -> String {
        self.key("unpub")
    }
    pub fn prefs(&self) -> String {
        self.key("prefs")
    }
    pub fn rate(&self) -> String {
        self.key("rate")
    }

    /// The idempotency record of `key` sent by `sender`: scoped per sender, hashed so any header
    /// value makes a safe key name.
    pub fn idempotency(&self, sender: &str, key: &str) -> String {
        let digest = Sha256::new()
            .chain_update(sender)
            .chain_update([0u8])
            .chain_update(key)
            .finalize();
        self.key(&format!("idem:{}", hex::encode(&digest[..16])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_of_a_users_keys_share_one_hash_tag() {
        let k = KeySpace::new("t1:").user("alice");
        let keys: Vec<String> = k
            .inbox()
            .into_iter()
            .chain([k.prefs(), k.rate(), k.idempotency("svc", "k1")])
            .collect();
        for key in keys {
            assert!(key.starts_with("t1:{u:alice}:"), "{key}");
        }
        assert_ne!(k.idempotency("svc", "k1"), k.idempotency("other", "k1"));
    }
}
