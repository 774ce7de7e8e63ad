//! Channel deliveries retried on their own. A channel whose delivery of a reminder or
//! an unused-token warning failed after every attempt while the e-mail went out is
//! retried by the next passes (another pass than the one that failed it; a claim
//! left by a process that died, after `notify.claim_lease`) until it is delivered or
//! the token is gone, each channel claimed as in the first delivery, so that a
//! channel already told is never told again. A reminder whose e-mail failed retries
//! its channels with it ([`super::pass`]).

use super::channels::Once;
use super::pass::{expiring_message, BATCH};
use super::unused::warning_message;
use super::Notifier;
use crate::store::{
    ChannelRecord, ChannelRetry, DueToken, Reminder, StoreError, UnusedToken, KIND_EXPIRY,
    KIND_UNUSED, UNUSED_WARNING_DAYS,
};

const DAY: i64 = 86_400;

impl Notifier {
    /// Retries failed channel deliveries: of reminders when `expiry` (reminders are
    /// sent in this pass), of unused-token warnings when `unused_days` is set.
    pub(super) async fn retry_channels(
        &self,
        channels: &[ChannelRecord],
        expiry: bool,
        unused_days: Option<i64>,
        pass_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let stale_before = now - self.settings().claim_lease.as_secs() as i64;
        for kind in [KIND_EXPIRY, KIND_UNUSED] {
            if (kind == KIND_EXPIRY && !expiry) || (kind == KIND_UNUSED && unused_days.is_none()) {
                continue;
            }
            let due = self
                .store
                .due_channel_retries(kind, now, stale_before, pass_id, BATCH)
                .await?;
            for retry in due {
                let Some(channel) = channels.iter().find(|c| c.id == retry.channel_id) else {
                    continue;
                };
                let message = match unused_days.filter(|_| kind == KIND_UNUSED) {
                    Some(days) => unused_warning(&retry, days, now),
                    None => match retry.expires_at {
                        Some(expires_at) => {
                            let due = DueToken {
                                token_id: retry.token_id.clone(),
                                username: retry.username.clone(),
                                name: retry.name.clone(),
                                expires_at,
                                email: None,
                            };
                            expiring_message(&self.variables(&due, "", now), expires_at)
                        }
                        None => continue,
                    },
                };
                let once = Once {
                    which: Reminder {
                        kind,
                        reminder: retry.reminder,
                    },
                    pass_id: pass_id.to_string(),
                    now,
                    stale_before,
                };
                self.channels
                    .deliver_once(std::slice::from_ref(channel), &message, once);
            }
        }
        Ok(())
    }
}

/// The warning as it went out: the revocation no sooner than 7 days after it.
fn unused_warning(retry: &ChannelRetry, days: i64, now: i64) -> super::channels::Message {
    let token = UnusedToken {
        token_id: retry.token_id.clone(),
        username: retry.username.clone(),
        name: retry.name.clone(),
        since: retry.reminder,
        email: None,
    };
    let revoke_at = (token.since + days * DAY).max(retry.sent_at + UNUSED_WARNING_DAYS * DAY);
    let left = (revoke_at - now + DAY - 1) / DAY;
    warning_message(&token, left, revoke_at)
}
