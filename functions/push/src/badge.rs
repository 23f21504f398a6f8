//! Silent badge updates: when the user's unread count moves other than by a new push (a read or
//! unread mark, an archive, a delete, a mark-all-read, on any device), the user's phones get a
//! data-only message carrying the new count ([`update_badge`]).
//!
//! **Where from.** `delivery` routes every such change of `notification-events`
//! ([`Envelope::changes_unread`](shared::protocol::Envelope::changes_unread)) to
//! `push-notifications`, keyed by user like the creates; a batch asks for one update per user
//! however many of the user's changes it holds.
//!
//! **Coalescing.** At most one update per user per [`BADGE_WINDOW`]: sending opens the user's
//! window (`{u:<id>}:badge`, `SET NX PX`, Redis's own expiry). An update asked for while the window
//! is open goes on the retry schedule (`{push}:due`, one entry per user, [`BADGE_ENTRY`]) for the
//! window's end; the drain sends it then ([`crate::drain`]). The count is read when the update is
//! sent, never carried: the last count wins, and the trailing update carries the final one.
//!
//! **Why the final badge is right.** Every change reaches [`update_badge`] after it is committed,
//! and each call either sends a count read after that (now), or finds a window open and leaves an
//! entry due when it ends. The drain removes a badge entry *before* it reads the count and sends,
//! so a change whose entry the removal swallowed was committed before that read, and a change
//! after the removal writes a fresh entry.
//!
//! **Delivery.** At most once per window, best effort: an update lost to a crash between removing
//! the entry and sending, or to a provider failure, is corrected by the next change or push (each
//! push carries the badge too). A redelivered change asks again: inside the window it is
//! coalesced, after it the same count is sent again (idempotent on the phone). Every owned device
//! of the user gets it, the one the change came from included (the API does not know which device
//! a change came from; setting the badge it already shows is harmless).

use std::time::Duration;

use chrono::Utc;
use futures::future::join_all;
use shared::store::{PushLedger, StoreError};

use crate::devices::{self, send_to_device, DeviceMessage};
use crate::senders::Delivery;
use crate::Deps;

/// At most one silent badge update per user per window.
pub const BADGE_WINDOW: Duration = Duration::from_secs(2);
/// The retry-schedule entry id of a user's trailing badge update (a job's are
/// `<notification>|<channel>|<hop>`).
pub(crate) const BADGE_ENTRY: &str = "badge";

/// What one user's badge update came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadgeDone {
    /// Devices that accepted the update.
    pub(crate) sent: usize,
    /// The window was open: the update waits on the retry schedule.
    pub(crate) deferred: bool,
    /// Devices removed because their provider said they are gone.
    pub(crate) gone: usize,
}

/// Brings the user's phones their unread count now, or, inside the user's window, schedules it
/// for the window's end. Nothing for a user without devices.
pub(crate) async fn update_badge(deps: &Deps, user: &str) -> Result<BadgeDone, StoreError> {
    let mut done = BadgeDone::default();
    let view = deps.ledger.view(user, &[]).await?;
    if view.devices.is_empty() {
        return Ok(done);
    }
    if let Some(left) = deps.ledger.open_badge_window(user, BADGE_WINDOW).await? {
        trailing(deps, user, left).await?;
        done.deferred = true;
        return Ok(done);
    }
    let phones = deps.devices.owned(user, view.devices).await?;
    let message = DeviceMessage::Badge(devices::badge(view.unread));
    let message = &message;
    let deliveries = join_all(
        phones
            .iter()
            .map(|d| async move { (d, send_to_device(&deps.senders, &d.device, message).await) }),
    )
    .await;
    let mut throttled: Option<Duration> = None;
    for (stored, delivery) in deliveries {
        match delivery {
            Some(Delivery::Sent) => done.sent += 1,
            Some(Delivery::Gone { .. }) => {
                done.gone += usize::from(deps.devices.remove_stored(user, stored).await?);
            }
            Some(Delivery::Later { at }) => {
                let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                throttled = Some(throttled.map_or(wait, |t| t.max(wait)));
            }
            Some(
                Delivery::Failed { reason, detail } | Delivery::Unavailable { reason, detail },
            ) => {
                tracing::warn!(user, device = stored.device.id, reason, %detail, "badge update failed");
            }
            None => {}
        }
    }
    if let Some(wait) = throttled {
        // The provider asked to wait: the update comes back then (the drain reads the count again).
        trailing(deps, user, wait).await?;
    }
    Ok(done)
}

/// Puts the user's trailing badge update on the retry schedule, due in `wait` (one entry per
/// user: asking again moves it).
async fn trailing(deps: &Deps, user: &str, wait: Duration) -> Result<(), StoreError> {
    let due = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::zero());
    deps.ledger
        .schedule(
            user,
            PushLedger::CURRENT_STATE,
            BADGE_ENTRY,
            "{}",
            due.timestamp_millis(),
        )
        .await
}
