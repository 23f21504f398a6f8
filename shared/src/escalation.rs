//! Escalation when unread: the `escalate` steps a create may carry ("push now; if it is still
//! unread after 15 minutes, email; after 2 hours, SMS"), their limits and validation, and what a
//! step came to ([`StepStatus`]).
//!
//! Contract (the mechanism is the `push` function's retry schedule, see `functions/push`):
//! - at most [`MAX_STEPS`] steps; `after` is a [`parse_duration`] duration of at most
//!   [`AFTER_MAX`], counted from the notification's `createdAt`; `channels` a non-empty subset of
//!   PUSH, EMAIL, SMS;
//! - at `after`, a step *fires* (sends on its channels, outcome reason `escalated`) unless the
//!   notification was ever read (or, with `unless: seen`, ever seen), or is archived or gone;
//!   otherwise it is *cancelled*. The decision is taken once, atomically against the inbox state,
//!   and recorded per (notification, step): a step never fires twice.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::model::Channel;

/// The most steps one notification may carry.
pub const MAX_STEPS: usize = 3;
/// [`parse_duration`]'s syntax as a regular expression (the OpenAPI document states it).
pub const DURATION_PATTERN: &str = "^[1-9][0-9]{0,8}[smhd]$";
/// The latest a step may fire, after the notification's creation.
pub const AFTER_MAX: Duration = Duration::from_secs(7 * 86_400);

/// What stops a step from firing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Unless {
    /// The notification was read (on any device, or by mark-all-read).
    #[default]
    Read,
    /// The notification was seen (or read).
    Seen,
}

impl Unless {
    pub fn as_str(self) -> &'static str {
        match self {
            Unless::Read => "read",
            Unless::Seen => "seen",
        }
    }

    /// The inbox state bits (`store/lua/prelude.lua`) that cancel a step: the flag and its
    /// "ever" bit, so a read then marked unread again still cancels; reading also counts as
    /// seeing.
    pub fn mask(self) -> u8 {
        const READ: u8 = 1;
        const SEEN: u8 = 2;
        const SEEN_EVER: u8 = 8;
        const READ_EVER: u8 = 16;
        match self {
            Unless::Read => READ | READ_EVER,
            Unless::Seen => READ | READ_EVER | SEEN | SEEN_EVER,
        }
    }
}

/// Why a step that is still pending would be cancelled if it came due now, from the
/// notification's inbox state bits (`None`: the notification is gone): the same rule
/// `escalation_decide.lua` applies at fire time.
pub fn cancel_reason(bits: Option<u8>, unless: Unless) -> Option<&'static str> {
    const ARCHIVED: u8 = 4;
    match bits {
        None => Some("deleted"),
        Some(b) if b & ARCHIVED != 0 => Some("archived"),
        Some(b) if b & unless.mask() != 0 => Some(unless.as_str()),
        Some(_) => None,
    }
}

/// One escalation step, as the sender writes it and the notification carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EscalationStep {
    /// How long after creation: a whole number and a unit, `s`, `m`, `h` or `d` (`15m`, `2h`);
    /// at most 7 days.
    #[schema(example = "15m")]
    pub after: String,
    /// Skip the step if the notification was read (default) or seen by then.
    #[serde(default)]
    pub unless: Unless,
    /// A non-empty subset of PUSH, EMAIL, SMS.
    pub channels: Vec<Channel>,
}

impl EscalationStep {
    /// `after` as a duration (valid steps only: [`check_steps`] refused the others).
    pub fn after(&self) -> Duration {
        parse_duration(&self.after).unwrap_or(AFTER_MAX)
    }
}

/// A duration as the API writes them: a whole positive number (no leading zero, at most 9
/// digits) and one unit, `s`, `m`, `h` or `d` (`10s`, `15m`, `2h`, `7d`): [`DURATION_PATTERN`].
/// `None` for anything else.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let digits = &text[..text.len() - unit.len_utf8()];
    if digits.is_empty()
        || digits.len() > 9
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let seconds = match unit {
        's' => n,
        'm' => n * 60,
        'h' => n * 3_600,
        'd' => n * 86_400,
        _ => return None,
    };
    (seconds > 0).then(|| Duration::from_secs(seconds))
}

/// Every problem with a create's `escalate` steps, each naming its field.
pub fn check_steps(steps: &[EscalationStep]) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if steps.is_empty() {
        errors.push(FieldError::new(
            "escalate",
            "must hold at least one step (or be left out)",
        ));
    }
    if steps.len() > MAX_STEPS {
        errors.push(FieldError::new(
            "escalate",
            format!("has {} steps; at most {MAX_STEPS} are allowed", steps.len()),
        ));
        return errors;
    }
    for (i, step) in steps.iter().enumerate() {
        match parse_duration(&step.after) {
            Some(d) if d <= AFTER_MAX => {}
            Some(_) => errors.push(FieldError::new(
                format!("escalate[{i}].after"),
                "must be at most 7d",
            )),
            None => errors.push(FieldError::new(
                format!("escalate[{i}].after"),
                format!(
                    "{:?} is not a duration: a whole number and s, m, h or d (for example 15m)",
                    step.after
                ),
            )),
        }
        if step.channels.is_empty() {
            errors.push(FieldError::new(
                format!("escalate[{i}].channels"),
                "must name at least one of PUSH, EMAIL, SMS",
            ));
        }
        let mut seen = Vec::new();
        for (j, c) in step.channels.iter().enumerate() {
            let field = format!("escalate[{i}].channels[{j}]");
            if *c == Channel::InApp {
                errors.push(FieldError::new(
                    field,
                    "IN_APP is not an escalation channel: use PUSH, EMAIL or SMS",
                ));
            } else if seen.contains(c) {
                errors.push(FieldError::new(
                    field,
                    format!("{} is listed twice", c.as_str()),
                ));
            } else {
                seen.push(*c);
            }
        }
    }
    errors
}

/// What a step came to, as `GET /v1/notifications/{id}/deliveries` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Not due yet (and nothing has cancelled it).
    Pending,
    /// Sent on its channels (their outcomes are in `deliveries`, reason `escalated`).
    Fired,
    /// Will never fire: the notification was read (or seen), archived or deleted first.
    Cancelled,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Fired => "fired",
            StepStatus::Cancelled => "cancelled",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            StepStatus::Pending,
            StepStatus::Fired,
            StepStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// One step as `GET /v1/notifications/{id}/deliveries` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepReport {
    /// 1, 2 or 3, in the order of the request.
    pub step: u8,
    pub after: String,
    pub unless: Unless,
    pub channels: Vec<Channel>,
    pub status: StepStatus,
    /// When it comes (or came) due.
    #[serde(rename = "dueAt")]
    pub due_at: chrono::DateTime<chrono::Utc>,
    /// When it fired or was cancelled; absent while pending, and for a cancellation not yet
    /// recorded (the notification was read before the step came due: it is recorded then).
    #[serde(rename = "decidedAt", default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why it was cancelled: `read`, `seen`, `archived` or `deleted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(after: &str, channels: &[Channel]) -> EscalationStep {
        EscalationStep {
            after: after.into(),
            unless: Unless::Read,
            channels: channels.to_vec(),
        }
    }

    #[test]
    fn durations_are_a_whole_number_and_one_unit() {
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Some(AFTER_MAX));
        assert_eq!(parse_duration("1s"), Some(Duration::from_secs(1)));
        for bad in [
            "",
            "m",
            "0s",
            "05m",
            "1.5h",
            "-1m",
            "15",
            "15 m",
            "1w",
            "99999999999s",
            "１m",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_steps_name_their_field() {
        let fields = |steps: &[EscalationStep]| -> Vec<String> {
            check_steps(steps).into_iter().map(|e| e.field).collect()
        };
        let ok = step("15m", &[Channel::Email]);
        assert!(fields(std::slice::from_ref(&ok)).is_empty());
        assert_eq!(
            fields(&[ok.clone(), ok.clone(), ok.clone(), ok.clone()]),
            ["escalate"]
        );
        assert_eq!(fields(&[]), ["escalate"]);
        assert_eq!(
            fields(&[
                step("8d", &[Channel::Sms]),
                step("soon", &[]),
                step("1h", &[Channel::InApp, Channel::Push, Channel::Push])
            ]),
            [
                "escalate[0].after",
                "escalate[1].after",
                "escalate[1].channels",
                "escalate[2].channels[0]",
                "escalate[2].channels[2]"
            ]
        );
    }
}
