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
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::store::{Store, Usage};

/// Minimum seconds between two reports for one token.
pub const REPORT_EVERY_SECS: i64 = 60;
const FLUSH_EVERY: Duration = Duration::from_secs(5);
const CHANNEL_CAPACITY: usize = 16_384;

/// Sends usage reports to the writer task.
#[derive(Clone)]
pub struct UsageRecorder {
    tx: mpsc::Sender<Usage>,
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
        let _ = self.tx.try_send(Usage {
            token_id: token_id.to_string(),
            at: now,
            ip,
        });
    }
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

async fn write_batches(
    store: Store,
    mut rx: mpsc::Receiver<Usage>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: HashMap<(String, IpAddr), Usage> = HashMap::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            received = rx.recv() => match received {
                Some(usage) => { pending.insert((usage.token_id.clone(), usage.ip), usage); }
                None => break,
            },
            _ = tick.tick() => flush(&store, &mut pending).await,
            _ = stop.changed() => break,
        }
    }
    while let Ok(usage) = rx.try_recv() {
        pending.insert((usage.token_id.clone(), usage.ip), usage);
    }
    flush(&store, &mut pending).await;
}

async fn flush(store: &Store, pending: &mut HashMap<(String, IpAddr), Usage>) {
    if pending.is_empty() {
        return;
    }
    // Take the map whole: a burst of new tokens must not leave a large table behind.
    let batch: Vec<Usage> = std::mem::take(pending).into_values().collect();
    if let Err(e) = store.record_usage(&batch).await {
        tracing::warn!(error = %e, count = batch.len(), "could not record token last-use times");
    } else {
        tracing::debug!(count = batch.len(), "recorded token last-use times");
    }
}
