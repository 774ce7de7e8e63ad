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

    /// Counts one accepted request of `entry`. One atomic increment; the first count
    /// since the writer last took them hands the entry over.
    pub fn count(&self, entry: &Arc<CachedToken>, now: i64) {
        if entry.unreported.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Err(e) = self.tx.try_send(Report::Counted(entry.clone(), now)) {
                // Dropped (the writer is behind): start over, so a later request retries.
                drop(e);
                entry.unreported.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Records that known token `entry` was refused with `code`; only the failure path
    /// calls this.
    pub fn refused(&self, entry: &Arc<CachedToken>, code: &'static str, now: i64) {
        let _ = self.tx.try_send(Report::Refused(entry.clone(), code, now));
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
    /// The last refusal per token.
    refused: HashMap<Box<str>, (&'static str, i64)>,
}

impl Pending {
    fn add(&mut self, report: Report) {
        match report {
            Report::Used(usage) => {
                self.uses.insert((usage.token_id.clone(), usage.ip), usage);
            }
            Report::Counted(entry, at) => self.counted.push((entry, at)),
            Report::Refused(entry, code, at) => {
                self.refused.insert(entry.token_id.clone(), (code, at));
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
            let n = entry.unreported.swap(0, Ordering::Relaxed);
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
                .map(|(token_id, (code, at))| TokenRefusal {
                    token_id: token_id.into(),
                    code,
                    at,
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
