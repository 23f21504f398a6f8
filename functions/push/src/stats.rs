//! [`Stats`]: what a batch or a drain did, for its log line (and the tests).

use serde::Serialize;
use shared::model::OutcomeStatus;
use shared::trigger::Report;

/// What a batch or a drain did, for the log line (and the tests).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub records: usize,
    pub poison: usize,
    /// Records that were not a new notification (nothing to send).
    pub ignored: usize,
    /// (notification, channel) pairs skipped because they were already handled.
    pub redelivered: usize,
    /// Jobs dropped because their user was erased after their notification (a late record).
    pub erased: usize,
    pub sent: usize,
    pub failed: usize,
    pub suppressed: usize,
    pub deferred: usize,
    /// Subscriptions and devices removed because their provider said they are gone.
    pub gone: usize,
    /// Silent badge updates devices accepted.
    pub badges: usize,
    /// Badge updates put off to the end of their user's window.
    pub badges_deferred: usize,
    /// Records (or retry entries) left for a later try because of an infrastructure error.
    pub retried: usize,
}

shared::counters!(Stats {
    records,
    poison,
    ignored,
    redelivered,
    erased,
    sent,
    failed,
    suppressed,
    deferred,
    gone,
    badges,
    badges_deferred,
    retried
});

/// A Kafka batch of `push-notifications`.
pub(crate) struct BatchRun<'a>(pub(crate) &'a Stats);

/// A drain of the retry schedule.
pub(crate) struct DrainRun<'a>(pub(crate) &'a Stats);

impl Report for BatchRun<'_> {
    fn log(&self) {
        let stats = self.0;
        tracing::info!(?stats, "push batch");
    }
}

impl Report for DrainRun<'_> {
    fn log(&self) {
        let stats = self.0;
        tracing::info!(?stats, "push retry drain");
    }
}

impl Stats {
    /// Counts one user's badge update.
    pub(crate) fn count_badge(&mut self, done: &crate::badge::BadgeDone) {
        self.badges += done.sent;
        self.badges_deferred += usize::from(done.deferred);
        self.gone += done.gone;
    }

    /// Counts one emitted outcome.
    pub(crate) fn count(&mut self, status: OutcomeStatus) {
        match status {
            OutcomeStatus::Sent => self.sent += 1,
            OutcomeStatus::Failed => self.failed += 1,
            OutcomeStatus::Suppressed => self.suppressed += 1,
            OutcomeStatus::Deferred => self.deferred += 1,
            _ => {}
        }
    }
}
