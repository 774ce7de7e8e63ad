//! Refused token attempts, counted per client address and reason for the audit log.
//!
//! A flood of bad tokens must not become a flood of audit rows: refusals are counted
//! in memory (sharded, so workers rarely meet on a lock) and written as one row per
//! address and reason at each flush. Only the failure path touches this.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const SHARDS: usize = 16;
/// Distinct (address, reason) pairs kept per shard between flushes; beyond that only
/// a total is kept.
const MAX_KEYS_PER_SHARD: usize = 1_000;

type Counts = HashMap<(IpAddr, &'static str), u64>;

#[derive(Default)]
pub struct RefusalLog {
    shards: [Mutex<Counts>; SHARDS],
    /// Refusals from addresses that did not fit.
    overflow: AtomicU64,
}

impl RefusalLog {
    pub fn record(&self, ip: IpAddr, reason: &'static str) {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        ip.hash(&mut hasher);
        let shard = &self.shards[hasher.finish() as usize % SHARDS];
        let mut counts = shard.lock().unwrap_or_else(|e| e.into_inner());
        let full = counts.len() >= MAX_KEYS_PER_SHARD;
        match counts.get_mut(&(ip, reason)) {
            Some(n) => *n += 1,
            None if !full => {
                counts.insert((ip, reason), 1);
            }
            None => {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Everything counted since the last call, and the count that did not fit.
    pub fn drain(&self) -> (Vec<(IpAddr, &'static str, u64)>, u64) {
        let mut out = Vec::new();
        for shard in &self.shards {
            let counts = std::mem::take(&mut *shard.lock().unwrap_or_else(|e| e.into_inner()));
            out.extend(counts.into_iter().map(|((ip, reason), n)| (ip, reason, n)));
        }
        (out, self.overflow.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_reason_then_starts_over() {
        let log = RefusalLog::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "2001:db8::1".parse().unwrap();
        for _ in 0..3 {
            log.record(a, "invalid_token");
        }
        log.record(a, "token_expired");
        log.record(b, "invalid_token");
        let (mut rows, overflow) = log.drain();
        rows.sort_by_key(|(ip, reason, _)| (*ip, *reason));
        assert_eq!(
            rows,
            vec![
                (a, "invalid_token", 3),
                (a, "token_expired", 1),
                (b, "invalid_token", 1)
            ]
        );
        assert_eq!(overflow, 0);
        assert!(log.drain().0.is_empty());
    }
}
