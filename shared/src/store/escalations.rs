//! [`EscalationBook`]: each escalation step of a user's notifications, in the user's slot
//! (`{u:<id>}:escalations`, one field per `<notificationId>#<step>`), `pending` until the `push`
//! function decides it when it comes due.
//!
//! Guarantees:
//! - planning is idempotent ([`EscalationBook::plan`] never overwrites a step): a redelivered
//!   create cannot reopen a decided step;
//! - the decision ([`EscalationBook::decide`]) is one script against the inbox state: `fired`
//!   unless the notification was ever read (or seen, per the step), is archived, or is gone, and
//!   then `cancelled` with that reason; once decided, a step keeps its decision, so it never
//!   fires twice;
//! - the report ([`EscalationBook::report`]) shows a pending step whose notification was read
//!   (archived, deleted) since as `cancelled` already: the same rule, read at that moment.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

use crate::escalation::{cancel_reason, EscalationStep, StepReport, StepStatus, MAX_STEPS};
use crate::model::Notification;

use super::keys::KeySpace;
use super::scripts::{ESCALATION_DECIDE, ESCALATION_PLAN};
use super::{RedisConn, StoreError};

/// How long step records live after their last write: the longest `after` plus the 3 days
/// send records are kept.
const STEPS_KEEP: Duration = Duration::from_secs(10 * 86_400);

/// What [`EscalationBook::decide`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDecision {
    /// Send it (decided now, or earlier by a run that may not have finished: the send records
    /// keep a second run from sending again).
    Fire,
    /// Never send it.
    Cancelled { reason: String },
}

/// The escalation steps. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EscalationBook {
    conn: RedisConn,
    pub(super) keys: KeySpace,
}

fn field(notification_id: &str, step: u8) -> String {
    format!("{notification_id}#{step}")
}

fn at(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}

impl EscalationBook {
    pub fn new(conn: RedisConn, keys: KeySpace) -> Self {
        EscalationBook { conn, keys }
    }

    /// When step `step` (1-based) of `n` comes due.
    pub fn due_at(n: &Notification, step: &EscalationStep) -> DateTime<Utc> {
        n.created_at + chrono::Duration::from_std(step.after()).unwrap_or_default()
    }

    /// Records every step of `n` as pending (steps already recorded are left as they are).
    pub async fn plan(&self, n: &Notification) -> Result<(), StoreError> {
        let Some(steps) = &n.escalate else {
            return Ok(());
        };
        // Checked against the erase marker in the same script: a create from before an erase
        // records nothing (erase.rs).
        let user = self.keys.user(&n.user_id);
        let mut invocation = ESCALATION_PLAN.key(user.escalations());
        invocation
            .key(user.erased())
            .arg(n.seq)
            .arg(STEPS_KEEP.as_secs());
        for (i, step) in steps.iter().enumerate() {
            let json = serde_json::to_string(step).unwrap_or_default();
            let due = Self::due_at(n, step).timestamp_millis();
            invocation
                .arg(field(&n.id, i as u8 + 1))
                .arg(format!("pending|||{due}|{json}"));
        }
        let _: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// Decides step `step` of notification `id` of `user_id` now (see the module's guarantees).
    pub async fn decide(
        &self,
        user_id: &str,
        id: &str,
        step: u8,
        spec: &EscalationStep,
        now: DateTime<Utc>,
    ) -> Result<StepDecision, StoreError> {
        let user = self.keys.user(user_id);
        let (status, reason): (String, String) = ESCALATION_DECIDE
            .key(user.flags())
            .key(user.escalations())
            .arg(id)
            .arg(field(id, step))
            .arg(spec.unless.mask())
            .arg(spec.unless.as_str())
            .arg(now.timestamp_millis())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match status.as_str() {
            "fired" => StepDecision::Fire,
            "unknown" => StepDecision::Cancelled {
                reason: "unknown".into(),
            },
            _ => StepDecision::Cancelled { reason },
        })
    }

    /// Every step of notification `id` of `user_id`, in order (empty when it has none).
    pub async fn report(&self, user_id: &str, id: &str) -> Result<Vec<StepReport>, StoreError> {
        let user = self.keys.user(user_id);
        let fields: Vec<String> = (1..=MAX_STEPS as u8).map(|s| field(id, s)).collect();
        let (records, state): (Vec<Option<String>>, Option<String>) = redis::pipe()
            .cmd("HMGET")
            .arg(user.escalations())
            .arg(&fields)
            .hget(user.flags(), id)
            .query_async(&mut self.conn.clone())
            .await?;
        let bits: Option<u8> = state.and_then(|s| s.split('|').next()?.parse().ok());
        let corrupt = |r: &str| StoreError::Corrupt(format!("escalation step {r:?}"));
        let mut steps = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            let Some(record) = record else { continue };
            let mut parts = record.splitn(5, '|');
            let mut next = || parts.next().ok_or_else(|| corrupt(&record));
            let (status, decided, reason, due, json) =
                (next()?, next()?, next()?, next()?, next()?);
            let spec: EscalationStep = serde_json::from_str(json).map_err(|_| corrupt(&record))?;
            let mut status = StepStatus::from_name(status).ok_or_else(|| corrupt(&record))?;
            let mut reason = (!reason.is_empty()).then(|| reason.to_owned());
            if status == StepStatus::Pending {
                if let Some(why) = cancel_reason(bits, spec.unless) {
                    status = StepStatus::Cancelled;
                    reason = Some(why.to_owned());
                }
            }
            steps.push(StepReport {
                step: i as u8 + 1,
                after: spec.after,
                unless: spec.unless,
                channels: spec.channels,
                status,
                due_at: due
                    .parse()
                    .ok()
                    .and_then(at)
                    .ok_or_else(|| corrupt(&record))?,
                decided_at: decided.parse().ok().and_then(at),
                reason,
            });
        }
        Ok(steps)
    }
}
