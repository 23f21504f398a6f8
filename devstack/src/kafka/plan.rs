//! What a mapping does after one invocation of a batch, decided without I/O: [`plan`] turns the
//! invocation's [`Outcome`], the batch's offsets and the failures so far into one [`Step`] per
//! partition, which [`super::mapping`] then carries out (commit, rewind, dead-letter).
//!
//! Contract, as Lambda's Kafka pollers (per partition of the batch):
//! - nothing failed there: commit past the batch's last record;
//! - the first failed record is at offset N (the batch's first record when the whole invocation
//!   failed): count one more failure at N (a failure at another offset starts the count again);
//!   while the count is within `MaximumRetryAttempts` (or there is no maximum), commit what
//!   precedes N and retry from N after a backoff of 100 ms × 2^min(count, 5), at most 5 s;
//! - once the count exceeds `MaximumRetryAttempts`: the records from N on go to the on-failure
//!   destination and the whole batch is committed past its last record.
//!
//! The batch waits for the longest backoff of its partitions before the next poll.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A partition of a batch: (topic, partition).
pub(super) type PartitionKey = (String, i32);

/// Failures so far per partition: the offset they happened at and how many in a row.
pub(super) type Attempts = HashMap<PartitionKey, (i64, u32)>;

/// The longest wait between two attempts of a batch.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How one invocation of a batch went.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
    Success,
    /// The whole batch failed (an error, a crash, a timeout, an unreadable answer), with the reason.
    Failed(String),
    /// `ReportBatchItemFailures`: per partition, the first offset the function reported as failed.
    Partial(BTreeMap<PartitionKey, i64>),
}

impl Outcome {
    /// Why the records of a failed partition failed, for the logs and the dead-letter headers.
    pub(super) fn reason(&self) -> String {
        match self {
            Outcome::Failed(r) => r.clone(),
            _ => "the function reported these records as failed".to_owned(),
        }
    }
}

/// The first and last offsets of one partition's records in a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub first: i64,
    pub last: i64,
}

/// What to do with one partition of the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Every record succeeded: commit `next` (past the last one) and forget earlier failures.
    Commit { next: i64 },
    /// Retry from `failed_at`, the `attempt`th failure there: commit `commit` first when some
    /// records precede it, rewind the consumer to it, wait `backoff`.
    Retry {
        failed_at: i64,
        attempt: u32,
        commit: Option<i64>,
        backoff: Duration,
    },
    /// Retries exhausted after `failures` failures: the records from `failed_at` on go to the
    /// on-failure destination, then commit `next` (past the last one) and forget the failures.
    DeadLetter {
        failed_at: i64,
        failures: u32,
        next: i64,
    },
}

/// The steps for every partition of a batch, and how long to wait before polling again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub steps: Vec<(PartitionKey, Step)>,
    /// The longest backoff of the retried partitions; `None` when nothing is retried.
    pub backoff: Option<Duration>,
}

/// The wait after the `failures`th failure in a row: 100 ms × 2^failures, the exponent capped at 5
/// (3.2 s), and never more than [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64 << failures.min(5)).min(MAX_BACKOFF)
}

/// Decides, for every partition of the batch (`spans`), what follows `outcome`, given the
/// failures so far (`attempts`) and the mapping's `MaximumRetryAttempts` (`None`: retry forever).
/// Pure: the caller updates `attempts` from the steps (see [`Step`]).
pub(super) fn plan(
    outcome: &Outcome,
    spans: &BTreeMap<PartitionKey, Span>,
    attempts: &Attempts,
    maximum_retry_attempts: Option<u32>,
) -> Plan {
    let mut steps = Vec::with_capacity(spans.len());
    let mut wait: Option<Duration> = None;
    for (key, span) in spans {
        let failed_at = match outcome {
            Outcome::Success => None,
            Outcome::Failed(_) => Some(span.first),
            Outcome::Partial(first_failed) => first_failed.get(key).copied(),
        };
        let step = match failed_at {
            None => Step::Commit {
                next: span.last + 1,
            },
            Some(failed_at) => {
                let before = match attempts.get(key) {
                    Some((at, count)) if *at == failed_at => *count,
                    _ => 0,
                };
                let failures = before + 1;
                if maximum_retry_attempts.is_some_and(|max| failures > max) {
                    Step::DeadLetter {
                        failed_at,
                        failures,
                        next: span.last + 1,
                    }
                } else {
                    let backoff = backoff(failures);
                    wait = Some(wait.map_or(backoff, |w| w.max(backoff)));
                    Step::Retry {
                        failed_at,
                        attempt: failures,
                        commit: (failed_at > span.first).then_some(failed_at),
                        backoff,
                    }
                }
            }
        };
        steps.push((key.clone(), step));
    }
    Plan {
        steps,
        backoff: wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: i64 = 10;
    const LAST: i64 = 14;

    fn key(partition: i32) -> PartitionKey {
        ("t".to_owned(), partition)
    }

    /// A batch of two partitions, offsets 10..=14 in each.
    fn spans() -> BTreeMap<PartitionKey, Span> {
        [0, 1]
            .into_iter()
            .map(|p| {
                (
                    key(p),
                    Span {
                        first: FIRST,
                        last: LAST,
                    },
                )
            })
            .collect()
    }

    /// Failures so far on partition 0: none, `n` at the offset failing now, or `n` at another one.
    #[derive(Debug, Clone, Copy)]
    enum Before {
        None,
        Same(u32),
        Elsewhere(u32),
    }

    fn attempts(before: Before, failed_at: i64) -> Attempts {
        match before {
            Before::None => Attempts::new(),
            Before::Same(n) => Attempts::from([(key(0), (failed_at, n))]),
            Before::Elsewhere(n) => Attempts::from([(key(0), (failed_at + 1, n))]),
        }
    }

    /// What partition 0 must do when it failed at `failed_at` after `before`.
    fn expected_failure(failed_at: i64, before: Before, max: Option<u32>) -> Step {
        let failures = match before {
            Before::Same(n) => n + 1,
            Before::None | Before::Elsewhere(_) => 1,
        };
        if max.is_some_and(|m| failures > m) {
            Step::DeadLetter {
                failed_at,
                failures,
                next: LAST + 1,
            }
        } else {
            Step::Retry {
                failed_at,
                attempt: failures,
                commit: (failed_at > FIRST).then_some(failed_at),
                backoff: backoff(failures),
            }
        }
    }

    const BEFORE: [Before; 7] = [
        Before::None,
        Before::Same(1),
        Before::Same(2),
        Before::Same(3),
        Before::Same(9),
        Before::Elsewhere(2),
        Before::Elsewhere(9),
    ];
    const MAX: [Option<u32>; 4] = [None, Some(0), Some(2), Some(3)];

    #[test]
    fn success_commits_every_partition_whatever_failed_before() {
        for before in BEFORE {
            for max in MAX {
                let p = plan(&Outcome::Success, &spans(), &attempts(before, FIRST), max);
                let commit = Step::Commit { next: LAST + 1 };
                assert_eq!(
                    p,
                    Plan {
                        steps: vec![(key(0), commit.clone()), (key(1), commit)],
                        backoff: None,
                    },
                    "{before:?} max {max:?}"
                );
            }
        }
    }

    #[test]
    fn a_failed_batch_retries_every_partition_from_its_first_record_until_the_maximum() {
        for before in BEFORE {
            for max in MAX {
                let outcome = Outcome::Failed("boom".into());
                let p = plan(&outcome, &spans(), &attempts(before, FIRST), max);
                let first = expected_failure(FIRST, before, max);
                let second = expected_failure(FIRST, Before::None, max);
                let wait = [&first, &second]
                    .iter()
                    .filter_map(|s| match s {
                        Step::Retry { backoff, .. } => Some(*backoff),
                        _ => None,
                    })
                    .max();
                assert_eq!(
                    p,
                    Plan {
                        steps: vec![(key(0), first), (key(1), second)],
                        backoff: wait,
                    },
                    "{before:?} max {max:?}"
                );
            }
        }
    }

    #[test]
    fn a_partial_failure_commits_what_precedes_it_and_the_other_partitions() {
        for failed_at in [FIRST, FIRST + 2, LAST] {
            for before in BEFORE {
                for max in MAX {
                    let outcome = Outcome::Partial(BTreeMap::from([(key(0), failed_at)]));
                    let p = plan(&outcome, &spans(), &attempts(before, failed_at), max);
                    let step = expected_failure(failed_at, before, max);
                    let wait = match &step {
                        Step::Retry { backoff, .. } => Some(*backoff),
                        _ => None,
                    };
                    assert_eq!(
                        p,
                        Plan {
                            steps: vec![(key(0), step), (key(1), Step::Commit { next: LAST + 1 })],
                            backoff: wait,
                        },
                        "at {failed_at}, {before:?}, max {max:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_maximum_counts_retries_after_the_first_failure() {
        let outcome = Outcome::Failed("boom".into());
        let one = BTreeMap::from([(
            key(0),
            Span {
                first: FIRST,
                last: LAST,
            },
        )]);
        let mut seen = Vec::new();
        let mut so_far = Attempts::new();
        // MaximumRetryAttempts 2: the first invocation and two retries fail, then the destination.
        let mut p = plan(&outcome, &one, &so_far, Some(2));
        while let Some((_, Step::Retry { attempt, .. })) = p.steps.first() {
            so_far.insert(key(0), (FIRST, *attempt));
            seen.push(*attempt);
            p = plan(&outcome, &one, &so_far, Some(2));
        }
        assert_eq!(seen, [1, 2]);
        assert!(
            matches!(
                p.steps.first(),
                Some((_, Step::DeadLetter { failures: 3, .. }))
            ),
            "{p:?}"
        );
    }

    #[test]
    fn backoff_doubles_from_200_ms_and_stops_at_3_2_s() {
        let waits: Vec<u128> = (1..=8).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 3200, 3200, 3200, 3200]);
    }
}
