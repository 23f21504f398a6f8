//! The transactional outbox: every change the store commits reaches Kafka at least once, in the
//! user's `seq` order, even if Kafka was down when the change was made.
//!
//! 1. The store marks the user dirty, then commits the change marked unpublished (one script).
//! 2. [`Publisher::publish`] produces it and, once Kafka acknowledges, marks it published. If
//!    Kafka is down the request still succeeds: the change waits in the log, and a publisher with
//!    a fallback posts its frame straight to the user's open WebSocket connections (the seed's
//!    fallback), so online devices see it at once. The relay's later publish reaches them again;
//!    clients drop the repeat by its `seq`.
//! 3. [`Relay::run_once`] (the scheduled `outbox-relay` function) publishes every unpublished
//!    change older than the grace period, lowest seq first, then clears the user's mark when that
//!    is provably safe. Running it twice publishes nothing twice; one lease keeps concurrent
//!    relays from overlapping.
//!
//! Fairness: a run scans at most [`USERS_PER_RUN`] users, oldest mark first. A user whose publish
//! failed is postponed by [`FAILED_USER_BACKOFF`] (its mark moves later), so users whose changes
//! keep failing go behind every user marked before the next run, however many of them there are:
//! each run reaches the others first, and retries the failing ones with what room is left.

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::bus::{BusError, EventBus, OutgoingRecord};
use crate::config::OutboxSettings;
use crate::protocol::{Frame, Topic, IDEMPOTENCY_KEY_HEADER};
use crate::realtime::Fanout;
use crate::store::{Change, InboxStore, StoreError, TenantScoped};
use crate::tenant::Tenant;

/// One user's acknowledged seqs, to mark published.
type PublishedMarks = (String, Vec<u64>);

/// Produces committed changes and marks them published.
#[derive(Debug, Clone)]
pub struct Publisher {
    bus: EventBus,
    store: InboxStore,
    fallback: Option<Fanout>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{failed} of {total} changes were not acknowledged by Kafka")]
    NotAcknowledged {
        failed: usize,
        total: usize,
        #[source]
        first: BusError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Publisher {
    pub fn new(bus: EventBus, store: InboxStore) -> Self {
        Publisher {
            bus,
            store,
            fallback: None,
        }
    }

    /// Posts the frames of changes Kafka did not acknowledge straight to their users' connections.
    pub fn with_fallback(mut self, fanout: Fanout) -> Self {
        self.fallback = Some(fanout);
        self
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The records one change becomes: always `notification-events`; engagement (read, seen,
    /// click) also `notification-analytics`. Both keyed by user id.
    pub fn records(change: &Change) -> Vec<OutgoingRecord> {
        let payload = change.envelope.encode();
        let headers: Vec<(String, Vec<u8>)> = change
            .idempotency_key
            .iter()
            .map(|k| (IDEMPOTENCY_KEY_HEADER.to_owned(), k.as_bytes().to_vec()))
            .collect();
        let mut topics = vec![Topic::NotificationEvents];
        if change.envelope.is_engagement() {
            topics.push(Topic::NotificationAnalytics);
        }
        topics
            .into_iter()
            .map(|topic| OutgoingRecord {
                topic,
                key: change.envelope.user_id.clone(),
                payload: payload.clone(),
                headers: headers.clone(),
            })
            .collect()
    }

    /// Publishes `changes` (any users, each user's in seq order) and marks every fully
    /// acknowledged one published. Unacknowledged ones stay for the relay (and go out through the
    /// fallback, if there is one); the error says how many.
    pub async fn publish(&self, changes: &[Change]) -> Result<(), PublishError> {
        if changes.is_empty() {
            return Ok(());
        }
        let per_change: Vec<Vec<OutgoingRecord>> = changes.iter().map(Self::records).collect();
        let flat: Vec<OutgoingRecord> = per_change.iter().flatten().cloned().collect();
        let mut results = self.bus.send(&flat).await.into_iter();
        let mut acked: Vec<(&Tenant, &str, u64)> = Vec::new();
        let mut unacked: Vec<&Change> = Vec::new();
        let mut first_error = None;
        let mut failed = 0;
        for (change, records) in changes.iter().zip(&per_change) {
            let mut ok = true;
            for _ in records {
                if let Some(Err(e)) = results.next() {
                    ok = false;
                    first_error.get_or_insert(e);
                }
            }
            if ok {
                acked.push((
                    &change.envelope.tenant,
                    &change.envelope.user_id,
                    change.seq(),
                ));
            } else {
                failed += 1;
                unacked.push(change);
            }
        }
        self.fall_back(&unacked).await;
        acked.sort();
        // Each user's seqs, then each tenant's users marked together (a broadcast's slice
        // publishes hundreds of users at once: a few calls, `mark_published_many`). Owned, so
        // nothing borrowed lives across the awaits.
        let tenants: Vec<(Tenant, Vec<PublishedMarks>)> = acked
            .chunk_by(|a, b| a.0 == b.0)
            .map(|same_tenant| {
                let marks = same_tenant
                    .chunk_by(|a, b| a.1 == b.1)
                    .map(|same_user| {
                        let seqs = same_user.iter().map(|(_, _, seq)| *seq).collect();
                        (same_user[0].1.to_owned(), seqs)
                    })
                    .collect();
                (same_tenant[0].0.clone(), marks)
            })
            .collect();
        for (tenant, marks) in tenants {
            if tenant == *self.store.tenant() {
                self.store.mark_published_many(&marks).await?;
            } else {
                let store = self.store.for_tenant(&tenant);
                store.mark_published_many(&marks).await?;
            }
        }
        match first_error {
            None => Ok(()),
            Some(first) => Err(PublishError::NotAcknowledged {
                failed,
                total: changes.len(),
                first,
            }),
        }
    }
}

impl Publisher {
    /// [`Publisher::publish`] for request handlers, whose answer must not depend on Kafka: a
    /// failure is logged, not returned. The unacknowledged changes wait in the log for the relay
    /// (and reach the user's sockets through the fallback, if there is one). While Kafka is known
    /// to be unreachable nothing is produced and nothing waits (see `bus.rs`), so the request
    /// answers at its normal latency; the bus logged the outage once.
    pub async fn publish_or_defer(&self, changes: &[Change]) {
        match self.publish(changes).await {
            Ok(()) => {}
            Err(PublishError::NotAcknowledged {
                first: BusError::Unreachable,
                ..
            }) => tracing::debug!("kafka unreachable; the outbox relay will publish"),
            Err(e) => {
                tracing::warn!(error = %e, "kafka did not acknowledge; the outbox relay will publish")
            }
        }
    }

    /// Records a click on `notification_id` (already recorded in the user's inbox by
    /// [`InboxStore::record_click`], which says whether it is the `first`) on
    /// `notification-analytics`. A click changes no inbox state, so it has no `seq` and no outbox:
    /// if Kafka does not acknowledge it, the error says so and the interaction is not counted.
    /// A repeated click (`first` false) is not sent: analytics would count nothing.
    pub async fn record_click(
        &self,
        tenant: &Tenant,
        user_id: &str,
        notification_id: &str,
        first: bool,
    ) -> Result<(), BusError> {
        if !first {
            return Ok(());
        }
        let envelope = crate::protocol::Envelope::new(
            user_id,
            crate::protocol::Event::NotificationClicked {
                id: notification_id.to_owned(),
                first: Some(true),
            },
        )
        .in_tenant(tenant);
        let record = OutgoingRecord {
            topic: Topic::NotificationAnalytics,
            key: user_id.to_owned(),
            payload: envelope.encode(),
            headers: Vec::new(),
        };
        self.bus
            .send(std::slice::from_ref(&record))
            .await
            .into_iter()
            .next()
            .unwrap_or(Err(BusError::Timeout(std::time::Duration::ZERO)))
            .map(|_| ())
    }

    /// The seed's fallback: each change's frame, posted to its user's open connections, in order.
    async fn fall_back(&self, changes: &[&Change]) {
        let Some(fanout) = &self.fallback else {
            return;
        };
        for change in changes {
            let Some(frame) = Frame::from_envelope(&change.envelope) else {
                continue;
            };
            let user = &change.envelope.user_id;
            let sent = fanout
                .for_tenant(&change.envelope.tenant)
                .send_to_user(user, &frame)
                .await;
            match sent {
                Ok(report) => {
                    tracing::info!(
                        user,
                        seq = change.seq(),
                        sent = report.sent,
                        metric = "FallbackDeliveries",
                        "kafka unavailable: posted the change straight to the user's connections"
                    );
                    crate::metrics::MetricSet::new()
                        .count("FallbackDeliveries", 1)
                        .emit();
                }
                Err(e) => {
                    tracing::warn!(user, seq = change.seq(), error = %e, "fallback delivery failed")
                }
            }
        }
    }
}

/// What one relay run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayReport {
    /// False when another relay held the lease.
    pub ran: bool,
    pub users_scanned: usize,
    pub published: usize,
    pub failed: usize,
    pub users_cleared: usize,
    /// Changes left unpublished after this run (younger than the grace period, or failed).
    pub backlog: usize,
}

impl crate::trigger::Report for RelayReport {
    fn log(&self) {
        tracing::info!(
            ran = self.ran,
            users = self.users_scanned,
            published = self.published,
            failed = self.failed,
            cleared = self.users_cleared,
            backlog = self.backlog,
            "outbox relay run"
        );
    }

    /// Only for a run that held the lease. `RelayBacklog` is what the template's alarm watches:
    /// changes still unpublished after a run.
    fn metrics(&self) -> Vec<crate::metrics::MetricSet> {
        if !self.ran {
            return Vec::new();
        }
        vec![crate::metrics::MetricSet::new()
            .count("RelayBacklog", self.backlog)
            .count("RelayPublished", self.published)
            .count("RelayFailed", self.failed)
            .count("RelayUsersScanned", self.users_scanned)]
    }
}

/// The outbox relay.
#[derive(Debug, Clone)]
pub struct Relay {
    publisher: Publisher,
    store: InboxStore,
    settings: OutboxSettings,
    users_per_run: usize,
}

/// Most changes relayed per user per round; most users per run.
const PER_USER_BATCH: usize = 500;
pub const USERS_PER_RUN: usize = 10_000;
/// How far a user whose publish failed is moved back in the scan order: longer than the relay's
/// schedule (every minute), so every user marked before the next run comes first.
pub const FAILED_USER_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5 * 60);

impl Relay {
    pub fn new(publisher: Publisher, store: InboxStore, settings: OutboxSettings) -> Self {
        Relay {
            publisher,
            store,
            settings,
            users_per_run: USERS_PER_RUN,
        }
    }

    /// Scans at most `users` users per run instead of [`USERS_PER_RUN`] (tests reach the cap with
    /// a few users).
    pub fn with_users_per_run(mut self, users: usize) -> Self {
        self.users_per_run = users.max(1);
        self
    }

    /// One pass over the dirty-user index.
    pub async fn run_once(&self) -> Result<RelayReport, StoreError> {
        let index = self.store.outbox();
        let lease_ms = 5 * 60 * 1000;
        let Some(token) = index.acquire_lease(lease_ms).await? else {
            return Ok(RelayReport::default());
        };
        let result = self.relay_all().await;
        index.release_lease(&token).await?;
        result
    }

    async fn relay_all(&self) -> Result<RelayReport, StoreError> {
        let users = self.store.outbox().dirty_users(self.users_per_run).await?;
        let mut report = RelayReport {
            ran: true,
            users_scanned: users.len(),
            ..Default::default()
        };
        let outcomes: Vec<Result<UserOutcome, StoreError>> = stream::iter(users)
            .map(|(user, score)| self.relay_user(user, score))
            .buffer_unordered(self.settings.concurrency)
            .collect()
            .await;
        for o in outcomes {
            let o = o?;
            report.published += o.published;
            report.failed += o.failed;
            report.backlog += o.backlog;
            report.users_cleared += usize::from(o.cleared);
        }
        Ok(report)
    }

    /// Relays the user the dirty-index member `member` names, in its tenant's keys.
    async fn relay_user(&self, member: String, score: f64) -> Result<UserOutcome, StoreError> {
        let Some((tenant, user)) = crate::tenant::parse_member(&member) else {
            tracing::error!(
                member,
                "outbox: a dirty mark names an invalid tenant; skipped"
            );
            return Ok(UserOutcome::default());
        };
        let user = user.to_owned();
        let store = self.store.for_tenant(&tenant);
        self.relay_tenant_user(&store, user, score).await
    }

    async fn relay_tenant_user(
        &self,
        store: &InboxStore,
        user: String,
        score: f64,
    ) -> Result<UserOutcome, StoreError> {
        let grace = self.settings.grace.as_millis() as i64;
        let mut out = UserOutcome::default();
        let mut last_read;
        loop {
            let (now, pending) = store.pending(&user, PER_USER_BATCH).await?;
            // Changes younger than the grace period may still be in flight from their request.
            let eligible: Vec<Change> = pending
                .iter()
                .filter(|c| c.written_at_ms <= now - grace)
                .cloned()
                .collect();
            let younger = pending.len() - eligible.len();
            last_read = now;
            match self.publisher.publish(&eligible).await {
                Ok(()) => out.published += eligible.len(),
                Err(PublishError::NotAcknowledged { failed, .. }) => {
                    out.published += eligible.len() - failed;
                    out.failed += failed;
                    out.backlog += failed + younger;
                    let backoff = FAILED_USER_BACKOFF.as_millis() as u64;
                    store.outbox().postpone(&user, backoff).await?;
                    return Ok(out);
                }
                Err(PublishError::Store(e)) => return Err(e),
            }
            if younger > 0 {
                out.backlog += younger;
                return Ok(out);
            }
            if pending.len() < PER_USER_BATCH {
                break;
            }
        }
        // Every request that set a mark at or before `score` committed within one grace period of
        // it. If the mark was two grace periods old at the last read, all of those commits were
        // older than one grace period then, so that read saw them and they are now published.
        out.cleared = store
            .outbox()
            .clear_dirty(&user, score, last_read - 2 * grace)
            .await?;
        Ok(out)
    }
}

#[derive(Debug, Default)]
struct UserOutcome {
    published: usize,
    failed: usize,
    backlog: usize,
    cleared: bool,
}
