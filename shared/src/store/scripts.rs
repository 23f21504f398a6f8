//! Every Lua script the store runs, registered here and nowhere else, each built once per
//! process (`EVALSHA`, falling back to `EVAL` once per server). User-slot scripts get
//! `prelude.lua` in front; the rate-limit algorithm (`gcra_lib.lua`) goes in front of the scripts
//! that check a limit. The sources are in `lua/`.

use std::sync::LazyLock;

use redis::Script;

macro_rules! script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(include_str!(concat!("lua/", $file))))
    };
}

/// A user-slot script that also checks a rate limit (`gcra_lib.lua` between the prelude and it).
macro_rules! user_script_with_gcra {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                "\n",
                include_str!("lua/gcra_lib.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

macro_rules! user_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

pub static CREATE: LazyLock<Script> = user_script_with_gcra!("create.lua");
pub static DIGEST_UPDATE: LazyLock<Script> = user_script_with_gcra!("digest_update.lua");
/// A broadcast's creates for a group of users: `create.lua` wrapped as the function `create_one`
/// (its `KEYS` and `ARGV` become parameters, each of its `return`s the function's), called by
/// `create_many.lua` once per user, so a broadcast recipient is created by the very code of a
/// single create.
pub static CREATE_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/prelude.lua"),
        "\n",
        include_str!("lua/gcra_lib.lua"),
        "\nlocal function create_one(KEYS, ARGV)\n",
        include_str!("lua/create.lua"),
        "\nend\n",
        include_str!("lua/create_many.lua")
    ))
});
pub static UPDATE: LazyLock<Script> = user_script!("update.lua");
pub static DELETE: LazyLock<Script> = user_script!("delete.lua");
pub static MARK_ALL_READ: LazyLock<Script> = user_script!("mark_all_read.lua");
pub static CLICK: LazyLock<Script> = user_script!("click.lua");
pub static GET: LazyLock<Script> = user_script!("get.lua");
pub static COUNTS: LazyLock<Script> = user_script!("counts.lua");
pub static LIST: LazyLock<Script> = user_script!("list.lua");
pub static CHANGES: LazyLock<Script> = user_script!("changes.lua");
pub static PENDING: LazyLock<Script> = user_script!("pending.lua");

pub static MARK_DIRTY: LazyLock<Script> = script!("mark_dirty.lua");
pub static CLEAR_DIRTY: LazyLock<Script> = script!("clear_dirty.lua");
/// The outbox's published marks of many users in one call (`change_log.rs`).
pub static MARK_PUBLISHED_MANY: LazyLock<Script> = script!("mark_published_many.lua");
pub static POSTPONE_DIRTY: LazyLock<Script> = script!("postpone_dirty.lua");
/// A sender-slot (or any single-key) script that checks a rate limit (`gcra_lib.lua` in front).
macro_rules! script_with_gcra {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/gcra_lib.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

pub static GCRA: LazyLock<Script> = script_with_gcra!("gcra.lua");
pub static CLAIM_REQUEST: LazyLock<Script> = script_with_gcra!("claim_request.lua");
/// Gives back a GCRA charge (the per-tenant quota of creates, `ratelimit.rs`).
pub static GCRA_REFUND: LazyLock<Script> = script!("gcra_refund.lua");
pub static ANALYTICS_COUNT: LazyLock<Script> = script!("analytics_count.lua");

// `delivery`'s per-user claim (`connections.rs`).
pub static DELIVERY_CLAIM: LazyLock<Script> = script!("delivery_claim.lua");
pub static DELIVERY_FINISH: LazyLock<Script> = script!("delivery_finish.lua");

// Erasing a user (`erase.rs`), and the erase checks of the writers outside the inbox scripts.
pub static ERASE: LazyLock<Script> = script!("erase.lua");
/// These two go inside `analytics.rs`'s pipelines (one per notification): as `EVALSHA`, and as
/// `EVAL` with the source only for a pipeline a server answered `NOSCRIPT` (a pipeline cannot fall
/// back by itself), hence their sources.
pub const HISTORY_ADMIT_SOURCE: &str = include_str!("lua/history_admit.lua");
pub const HISTORY_APPEND_SOURCE: &str = include_str!("lua/history_append.lua");
pub static HISTORY_ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(HISTORY_ADMIT_SOURCE));
pub static HISTORY_APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(HISTORY_APPEND_SOURCE));
pub static PUSH_SCHEDULE: LazyLock<Script> = script!("push_schedule.lua");

// The outbox relay's lease.
pub static RELEASE_LEASE: LazyLock<Script> = script!("release_lease.lua");

// Push send records and the retry schedule (`ledger.rs`).
pub static PUSH_RECORD: LazyLock<Script> = script!("push_record.lua");
pub static PUSH_ACKNOWLEDGE: LazyLock<Script> = script!("push_acknowledge.lua");
pub static PUSH_CLAIM_DUE: LazyLock<Script> = script!("push_claim_due.lua");

// Escalation steps (`escalations.rs`).
pub static ESCALATION_PLAN: LazyLock<Script> = script!("escalation_plan.lua");
pub static ESCALATION_DECIDE: LazyLock<Script> = script!("escalation_decide.lua");

// Scheduled sends (`schedule.rs`).
pub static SCHEDULE_ADD: LazyLock<Script> = script!("schedule_add.lua");
pub static SCHEDULE_CLAIM: LazyLock<Script> = script!("schedule_claim.lua");
pub static SCHEDULE_SETTLE: LazyLock<Script> = script!("schedule_settle.lua");
/// A user's engagement histogram, checked against the erase marker.
pub static ENGAGEMENT_RECORD: LazyLock<Script> = script!("engagement_record.lua");

// Push subscriptions, contacts and opt-outs (`contacts.rs`).
pub static PUSH_SUBSCRIBE: LazyLock<Script> = script!("push_subscribe.lua");
pub static COMPARE_AND_HDEL: LazyLock<Script> = script!("compare_and_hdel.lua");
pub static COMPARE_AND_SET: LazyLock<Script> = script!("compare_and_set.lua");

// The providers' circuit breakers (`breaker.rs`).
pub static BREAKER_ADMIT: LazyLock<Script> = script!("breaker_admit.lua");
pub static BREAKER_RECORD: LazyLock<Script> = script!("breaker_record.lua");
// Devices and their token owners (`devices.rs`; adding one is `PUSH_SUBSCRIBE` on its hash).
pub static COMPARE_AND_DEL: LazyLock<Script> = script!("compare_and_del.lua");

// Outbound webhooks: ledger, per-notification queues, retry schedule (`webhooks.rs`; claiming due
// entries is `PUSH_CLAIM_DUE` on the webhook's schedule).
pub static WEBHOOK_ENQUEUE: LazyLock<Script> = script!("webhook_enqueue.lua");
pub static WEBHOOK_COMPLETE: LazyLock<Script> = script!("webhook_complete.lua");
pub static WEBHOOK_REQUEUE: LazyLock<Script> = script!("webhook_requeue.lua");

// Topics and broadcasts (`topics.rs`).
pub static TOPIC_PUT: LazyLock<Script> = script!("topic_put.lua");
pub static TOPIC_MEMBERS: LazyLock<Script> = script!("topic_members.lua");
pub static TOPIC_DELETE: LazyLock<Script> = script!("topic_delete.lua");
pub static BROADCAST_CREATE: LazyLock<Script> = script!("broadcast_create.lua");
pub static BROADCAST_BEGIN: LazyLock<Script> = script!("broadcast_begin.lua");
pub static BROADCAST_START: LazyLock<Script> = script!("broadcast_start.lua");
pub static BROADCAST_COMMIT: LazyLock<Script> = script!("broadcast_commit.lua");
pub static BROADCAST_CANCEL: LazyLock<Script> = script!("broadcast_cancel.lua");

/// Every script by name (its file's stem) and SHA-1 (every one goes as `EVALSHA`): for instruments that read Redis's per-command figures (`bench/benches/stack_cpu.rs` splits
/// `EVALSHA` by script).
pub fn catalog() -> Vec<CatalogEntry> {
    let scripts: [(&'static str, &LazyLock<Script>); 53] = [
        ("create", &CREATE),
        ("create_many", &CREATE_MANY),
        ("mark_published_many", &MARK_PUBLISHED_MANY),
        ("digest_update", &DIGEST_UPDATE),
        ("update", &UPDATE),
        ("delete", &DELETE),
        ("mark_all_read", &MARK_ALL_READ),
        ("click", &CLICK),
        ("get", &GET),
        ("counts", &COUNTS),
        ("list", &LIST),
        ("changes", &CHANGES),
        ("pending", &PENDING),
        ("mark_dirty", &MARK_DIRTY),
        ("clear_dirty", &CLEAR_DIRTY),
        ("postpone_dirty", &POSTPONE_DIRTY),
        ("gcra", &GCRA),
        ("claim_request", &CLAIM_REQUEST),
        ("analytics_count", &ANALYTICS_COUNT),
        ("delivery_claim", &DELIVERY_CLAIM),
        ("delivery_finish", &DELIVERY_FINISH),
        ("erase", &ERASE),
        ("push_schedule", &PUSH_SCHEDULE),
        ("release_lease", &RELEASE_LEASE),
        ("push_record", &PUSH_RECORD),
        ("push_acknowledge", &PUSH_ACKNOWLEDGE),
        ("push_claim_due", &PUSH_CLAIM_DUE),
        ("escalation_plan", &ESCALATION_PLAN),
        ("escalation_decide", &ESCALATION_DECIDE),
        ("schedule_add", &SCHEDULE_ADD),
        ("schedule_claim", &SCHEDULE_CLAIM),
        ("schedule_settle", &SCHEDULE_SETTLE),
        ("engagement_record", &ENGAGEMENT_RECORD),
        ("push_subscribe", &PUSH_SUBSCRIBE),
        ("compare_and_hdel", &COMPARE_AND_HDEL),
        ("compare_and_set", &COMPARE_AND_SET),
        ("breaker_admit", &BREAKER_ADMIT),
        ("breaker_record", &BREAKER_RECORD),
        ("compare_and_del", &COMPARE_AND_DEL),
        ("webhook_enqueue", &WEBHOOK_ENQUEUE),
        ("webhook_complete", &WEBHOOK_COMPLETE),
        ("webhook_requeue", &WEBHOOK_REQUEUE),
        ("topic_put", &TOPIC_PUT),
        ("topic_members", &TOPIC_MEMBERS),
        ("topic_delete", &TOPIC_DELETE),
        ("broadcast_create", &BROADCAST_CREATE),
        ("broadcast_begin", &BROADCAST_BEGIN),
        ("broadcast_start", &BROADCAST_START),
        ("broadcast_commit", &BROADCAST_COMMIT),
        ("broadcast_cancel", &BROADCAST_CANCEL),
        ("history_admit", &HISTORY_ADMIT),
        ("history_append", &HISTORY_APPEND),
        ("gcra_refund", &GCRA_REFUND),
    ];
    scripts
        .into_iter()
        .map(|(name, script)| CatalogEntry {
            name,
            sha: script.get_hash().to_owned(),
        })
        .collect()
}

/// One entry of [`catalog`].
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub name: &'static str,
    pub sha: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_names_every_script_once() {
        let declared = include_str!("scripts.rs")
            .lines()
            .filter(|l| l.starts_with("pub static ") && l.contains("LazyLock<Script>"))
            .count();
        let catalog = catalog();
        assert_eq!(catalog.len(), declared);
        let mut shas: Vec<&str> = catalog.iter().map(|e| e.sha.as_str()).collect();
        shas.sort_unstable();
        shas.dedup();
        assert_eq!(shas.len(), catalog.len());
    }
}
