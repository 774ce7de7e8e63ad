//! Last-used bookkeeping, off the request path.
//!
//! A request that authenticates with a token reports its use at most once a minute per
//! token, or at once when it comes from another address than the last report (atomics
//! on the cached entry decide, so a new address reaches the audit log); reports go through a
//! bounded channel to one task that writes them in batches. A full channel drops the
//! report rather than slow a request: last-used is advisory.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::store::{DayCount, Store, TokenRefusal, Usage, UsageBatch};
use crate::tokens::check::CachedToken;

/// Minimum seconds between two reports for one token.
pub const REPORT_EVERY_SECS: i64 = 60;
const FLUSH_EVERY: Duration = Duration::from_secs(5);
const CHANNEL_CAPACITY: usize = 16_384;

/// What the request path hands to the writer.
enum Report {
    /// A last-use observation.
    Used(Usage),
    /// This entry has requests counted since the last flush, the first at `.1`.
    Counted(Arc<CachedToken>, i64),
    /// A known token was refused with this code at this instant.
    Refused(Arc<CachedToken>, &'static str, i64),
}

/// Sends usage reports to the writer task.
#[derive(Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<Report>,
}

impl UsageRecorder {
    /// Starts the writer; it flushes every few seconds, and once more when `stop`
    /// changes, then the returned handle finishes.
    pub fn start(
        store: Store,
        stop: watch::Receiver<bool>,
    ) -> (UsageRecorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let handle = tokio::spawn(write_batches(store, rx, stop));
        (UsageRecorder { tx }, handle)
    }

    /// Reports a use if this token's last report is a minute old or came from another
    /// address. `last_reported` and `last_ip` live in the cached token entry, so this is
    /// two atomic loads on the common path.
    pub fn report(
        &self,
        last_reported: &AtomicI64,
        last_ip: &AtomicU64,
        token_id: &str,
        now: i64,
        ip: IpAddr,
    ) {
        let folded = fold(ip);
        let previous = last_reported.load(Ordering::Relaxed);
        if now - previous < REPORT_EVERY_SECS && last_ip.load(Ordering::Relaxed) == folded {
            return;
        }
        if last_reported
            .compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        last_ip.store(folded, Ordering::Relaxed);
        let _ = self.tx.try_send(Report::Used(Usage {
            token_id: token_id.to_string(),
            at: now,
            ip,
        }));
    }

    /// Counts one accepted request of `entry`: an atomic increment and a load; the first
    /// count since the writer last took the entry hands it over. A hand-over the channel
    /// drops (the writer is behind) keeps the counts, and a later request hands over again.
    pub fn count(&self, entry: &Arc<CachedToken>, now: i64) {
        entry.unreported.fetch_add(1, Ordering::Relaxed);
        if !entry.handed.load(Ordering::Relaxed) && !entry.handed.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.tx.try_send(Report::Counted(entry.clone(), now)) {
                drop(e);
                entry.handed.store(false, Ordering::Release);
            }
        }
    }

    /// Records that known token `entry` was refused with `code`; only the failure path
    /// calls this. One report per entry is in flight at a time: the refusal kept is the
    /// first of each flush (every few seconds), and a flood of refusals sends one.
    pub fn refused(&self, entry: &Arc<CachedToken>, code: &'static str, now: i64) {
        if entry.refusal_sent.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Err(e) = self.tx.try_send(Report::Refused(entry.clone(), code, now)) {
            drop(e);
            entry.refusal_sent.store(false, Ordering::Release);
        }
    }
}

/// The UTC day (days since 1970-01-01) of an instant.
pub fn day_of(at: i64) -> i64 {
    at.div_euclid(86_400)
}

/// An address folded into 64 bits (0 is never an address a client connects from).
fn fold(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            (bits as u64) ^ ((bits >> 64) as u64).rotate_left(1)
        }
    }
}

/// What the writer holds between flushes.
#[derive(Default)]
struct Pending {
    uses: HashMap<(String, IpAddr), Usage>,
    /// Entries with counted requests, and the instant of the first.
    counted: Vec<(Arc<CachedToken>, i64)>,
    /// The last refusal per token, with its entry.
    refused: HashMap<Box<str>, (Arc<CachedToken>, &'static str, i64)>,
}

impl Pending {
    fn add(&mut self, report: Report) {
        match report {
            Report::Used(usage) => {
                self.uses.insert((usage.token_id.clone(), usage.ip), usage);
            }
            Report::Counted(entry, at) => self.counted.push((entry, at)),
            Report::Refused(entry, code, at) => {
                self.refused
                    .insert(entry.token_id.clone(), (entry, code, at));
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.uses.is_empty() && self.counted.is_empty() && self.refused.is_empty()
    }

    /// Takes everything, the entries' counts included, leaving nothing behind.
    fn take(&mut self) -> UsageBatch {
        let Pending {
            uses,
            counted,
            refused,
        } = std::mem::take(self);
        let mut days: HashMap<(Box<str>, i64), i64> = HashMap::new();
        for (entry, at) in counted {
            // Released first: a request counted from here on hands the entry over again
            // (and a hand-over that then finds nothing to take is skipped).
            entry.handed.store(false, Ordering::Release);
            let n = entry.unreported.swap(0, Ordering::AcqRel);
            if n > 0 {
                *days
                    .entry((entry.token_id.clone(), day_of(at)))
                    .or_default() += n as i64;
            }
        }
        UsageBatch {
            uses: uses.into_values().collect(),
            days: days
                .into_iter()
                .map(|((token_id, day), requests)| DayCount {
                    token_id: token_id.into(),
                    day,
                    requests,
                })
                .collect(),
            refusals: refused
                .into_iter()
                .map(|(token_id, (entry, code, at))| {
                    entry.refusal_sent.store(false, Ordering::Release);
                    TokenRefusal {
                        token_id: token_id.into(),
                        code,
                        at,
                    }
                })
                .collect(),
        }
    }
}

async fn write_batches(
    store: Store,
    mut rx: mpsc::Receiver<Report>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(report) => pending.add(report),
                None => break,
            },
            _ = tick.tick() => flush(&store, &mut pending).await,
            _ = stop.changed() => break,
        }
    }
    while let Ok(report) = rx.try_recv() {
        pending.add(report);
    }
    flush(&store, &mut pending).await;
}

async fn flush(store: &Store, pending: &mut Pending) {
    if pending.is_empty() {
        return;
    }
    // Take it whole: a burst of new tokens must not leave a large table behind.
    let batch = pending.take();
    if let Err(e) = store.record_usage(&batch).await {
        tracing::warn!(error = %e, count = batch.uses.len(), "could not record token usage");
    } else {
        tracing::debug!(
            uses = batch.uses.len(),
            days = batch.days.len(),
            "recorded token usage"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuthRecord;

    fn entry(id: &str) -> Arc<CachedToken> {
        Arc::new(CachedToken::new(
            AuthRecord {
                token_id: id.into(),
                username: "alice".into(),
                expires_at: None,
                revoked: false,
                user_disabled: false,
                sso_blocked: false,
                sso_suspended: false,
                roles: Vec::new(),
                last_used_at: None,
                scope: Default::default(),
                allowed_addresses: None,
                grace_until: None,
            },
            0,
        ))
    }

    #[test]
    fn a_full_channel_loses_no_count_and_a_flood_of_refusals_sends_one() {
        let (tx, mut rx) = mpsc::channel(1);
        let recorder = UsageRecorder { tx };
        let (used, refused) = (entry("used"), entry("refused"));
        // The first refusal fills the channel; the flood after it sends nothing.
        for at in 0..1000 {
            recorder.refused(&refused, "token_expired", at);
        }
        // Counted while the channel is full: the hand-over is dropped, not the counts.
        recorder.count(&used, 10);
        recorder.count(&used, 10);
        let mut pending = Pending::default();
        pending.add(rx.try_recv().expect("the first refusal"));
        assert!(rx.try_recv().is_err(), "one refusal in flight per token");
        recorder.count(&used, 11);
        pending.add(rx.try_recv().expect("a later request hands the entry over"));
        let batch = pending.take();
        assert_eq!(batch.days.len(), 1);
        assert_eq!(batch.days[0].requests, 3, "no request went uncounted");
        assert_eq!(batch.refusals.len(), 1);
        assert_eq!(batch.refusals[0].at, 0);
        // Once written, the next refusal and the next count are sent again.
        recorder.refused(&refused, "token_revoked", 20);
        assert!(rx.try_recv().is_ok());
        recorder.count(&used, 21);
        assert!(rx.try_recv().is_ok());
    }
}
