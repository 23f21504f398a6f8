//! The notification type of engagement events, whose envelope carries only the id.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shared::store::{AnalyticsStore, TenantScoped};
use shared::tenant::Tenant;
use shared::trigger::RetryFrom;

use crate::decode::Item;
use crate::{Deps, UNKNOWN_TYPE};

/// Fills in the type of every engagement item: the inbox (one HMGET per user), else the outcome
/// history, else [`UNKNOWN_TYPE`]; two round trips at most. An item whose lookup failed keeps
/// `None`, and its partition is retried from it.
pub(crate) async fn resolve_types(deps: &Deps, items: &mut [Item], retry: &mut RetryFrom) {
    // Each tenant's inboxes and histories are its own: one lookup per tenant present.
    let tenants: BTreeSet<Tenant> = items
        .iter()
        .filter(|i| i.engagement)
        .map(|i| i.tenant.clone())
        .collect();
    for tenant in tenants {
        let store = deps.store.for_tenant(&tenant);
        resolve_tenant_types(&store, &tenant, items, retry).await;
    }
}

/// [`resolve_types`] for the engagement items of `tenant`, with `store` in its keys.
async fn resolve_tenant_types(
    store: &AnalyticsStore,
    tenant: &Tenant,
    items: &mut [Item],
    retry: &mut RetryFrom,
) {
    let mine = |i: &Item| i.engagement && i.tenant == *tenant;
    /// What a lookup found: the type and whether it came from the inbox, `None` when neither the
    /// inbox nor the history knows it; `Err` when Redis failed.
    type Found = Result<Option<(String, bool)>, ()>;
    let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for item in items.iter().filter(|i| mine(i)) {
        wanted
            .entry(item.user_id.clone())
            .or_default()
            .insert(item.notification_id.clone());
    }
    if wanted.is_empty() {
        return;
    }
    let lookups: Vec<(&str, Vec<&str>)> = wanted
        .iter()
        .map(|(user, ids)| (user.as_str(), ids.iter().map(String::as_str).collect()))
        .collect();
    let mut found: HashMap<(&str, &str), Found> = HashMap::new();
    let mut missing: BTreeSet<&str> = BTreeSet::new();
    for ((user, ids), types) in lookups.iter().zip(store.inbox_types(&lookups).await) {
        match types {
            Ok(types) => {
                for (id, kind) in ids.iter().zip(types) {
                    if kind.is_none() {
                        missing.insert(id);
                    }
                    found.insert((user, id), Ok(kind.map(|k| (k, true))));
                }
            }
            Err(e) => {
                tracing::warn!(user, error = %e, "looking up notification types failed");
                for id in ids {
                    found.insert((user, id), Err(()));
                }
            }
        }
    }
    let missing: Vec<&str> = missing.into_iter().collect();
    let mut recorded: HashMap<&str, Found> = HashMap::new();
    for (id, kind) in missing.iter().zip(store.history_types(&missing).await) {
        let kind = kind.map_err(|e| {
            tracing::warn!(id, error = %e, "looking up a notification type failed");
        });
        recorded.insert(id, kind.map(|k| k.map(|k| (k, false))));
    }
    for item in items.iter_mut().filter(|i| mine(i)) {
        let key = (item.user_id.as_str(), item.notification_id.as_str());
        let result = match found.get(&key) {
            Some(Ok(None)) => recorded.get(key.1).cloned().unwrap_or(Err(())),
            Some(other) => other.clone(),
            None => Err(()),
        };
        match result {
            Ok(Some((kind, from_inbox))) => {
                item.kind = Some(kind);
                item.kind_is_authoritative = from_inbox;
            }
            Ok(None) => item.kind = Some(UNKNOWN_TYPE.to_owned()),
            Err(()) => retry.fail(item.offset),
        }
    }
}
