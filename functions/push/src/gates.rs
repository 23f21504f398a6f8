//! The gates every off-app send passes, in order, applied here and only here (so every
//! suppression is recorded as an outcome):
//!
//! 1. the channel is configured on this deployment, else `suppressed`/`not-configured`;
//! 2. the notification has not expired (`expiresAt`), else `suppressed`/`expired`;
//! 3. the user's preference for type × channel allows it, else `suppressed`/`opted-out`;
//! 4. it is not quiet hours in the user's timezone, else `deferred`/`quiet-hours` until the
//!    window ends.
//!
//! `urgent` notifications bypass 3 and 4 (the model has no critical types yet; they would bypass
//! here too). Unusable stored quiet hours (a bad timezone) are ignored, never blocking a send.

use chrono::{DateTime, Utc};
use shared::model::{Channel, Notification, Preferences, Priority};
use shared::protocol::outcome::reason;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Pass,
    Suppress(&'static str),
    Defer(DateTime<Utc>),
}

/// Do `n`'s preferences and quiet hours gates apply? Not for `urgent`.
pub fn bypasses_preferences(n: &Notification) -> bool {
    n.priority == Priority::Urgent
}

pub fn check(
    n: &Notification,
    channel: Channel,
    configured: bool,
    prefs: &Preferences,
    now: DateTime<Utc>,
) -> Gate {
    if !configured {
        return Gate::Suppress(reason::NOT_CONFIGURED);
    }
    if n.expires_at.is_some_and(|at| at <= now) {
        return Gate::Suppress(reason::EXPIRED);
    }
    if bypasses_preferences(n) {
        return Gate::Pass;
    }
    if !prefs.allows(&n.kind, channel) {
        return Gate::Suppress(reason::OPTED_OUT);
    }
    if let Some(quiet) = &prefs.quiet_hours {
        match quiet.defer_until(now) {
            Ok(Some(until)) => return Gate::Defer(until),
            Ok(None) => {}
            Err(e) => tracing::warn!(user = n.user_id, error = %e, "ignoring unusable quiet hours"),
        }
    }
    Gate::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::model::QuietHours;

    fn note(priority: Priority) -> Notification {
        serde_json::from_value(serde_json::json!({
            "id": "n1", "seq": 1, "userId": "u", "type": "comment", "title": "t", "body": "",
            "data": {}, "channels": ["PUSH", "EMAIL"], "priority": priority,
            "read": false, "seen": false, "archived": false, "createdAt": "2026-01-10T12:00:00Z"
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn gates_apply_in_order_and_urgent_bypasses_preferences_and_quiet_hours() {
        let prefs = Preferences {
            types: [("comment".to_owned(), [(Channel::Email, false)].into())].into(),
            quiet_hours: Some(QuietHours {
                start: "22:00".into(),
                end: "07:00".into(),
                timezone: "UTC".into(),
            }),
            ..Preferences::default()
        };
        let normal = note(Priority::Normal);
        let night = at("2026-01-10T23:00:00Z");
        let day = at("2026-01-10T12:00:00Z");
        assert_eq!(
            check(&normal, Channel::Push, false, &prefs, day),
            Gate::Suppress("not-configured")
        );
        assert_eq!(
            check(&normal, Channel::Email, true, &prefs, day),
            Gate::Suppress("opted-out")
        );
        assert_eq!(check(&normal, Channel::Push, true, &prefs, day), Gate::Pass);
        assert_eq!(
            check(&normal, Channel::Push, true, &prefs, night),
            Gate::Defer(at("2026-01-11T07:00:00Z"))
        );
        let urgent = note(Priority::Urgent);
        assert_eq!(
            check(&urgent, Channel::Email, true, &prefs, night),
            Gate::Pass
        );
        let mut expired = note(Priority::Urgent);
        expired.expires_at = Some(day);
        assert_eq!(
            check(&expired, Channel::Push, true, &prefs, day),
            Gate::Suppress("expired")
        );
    }
}
