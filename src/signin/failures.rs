//! Failed sign-ins, counted for the audit log per client address, method and reason
//! (and user, when the gateway knows them), as refused tokens are: a flood of failures
//! from one address becomes one row a minute, not one per request, and nothing the
//! caller typed (a name nobody has, a provider's error text) is written as it came.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Distinct keys kept between flushes; beyond that only a total is kept.
const MAX_KEYS: usize = 10_000;

/// What one failure is counted under.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FailureKey {
    pub ip: IpAddr,
    /// `password` or `sso`.
    pub method: &'static str,
    /// A stable code (`rejected_by_deploy`, `state_mismatch`, …).
    pub reason: &'static str,
    /// The user's name as stored, when the gateway knows the user; never a typed name.
    pub username: Option<String>,
}

#[derive(Default)]
pub struct FailureLog {
    counts: Mutex<HashMap<FailureKey, u64>>,
    /// Failures that did not fit.
    overflow: AtomicU64,
}

impl FailureLog {
    pub fn record(&self, key: FailureKey) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let full = counts.len() >= MAX_KEYS;
        match counts.get_mut(&key) {
            Some(n) => *n += 1,
            None if !full => {
                counts.insert(key, 1);
            }
            None => {
                self.overflow.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Everything counted since the last call, and the count that did not fit.
    pub fn drain(&self) -> (Vec<(FailureKey, u64)>, u64) {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()));
        let mut out: Vec<(FailureKey, u64)> = counts.into_iter().collect();
        out.sort();
        (out, self.overflow.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_per_address_reason_and_known_user() {
        let log = FailureLog::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let key = |reason, username: Option<&str>| FailureKey {
            ip,
            method: "password",
            reason,
            username: username.map(str::to_string),
        };
        for _ in 0..300 {
            log.record(key("rejected_by_deploy", None));
        }
        log.record(key("rejected_by_deploy", Some("alice")));
        let (rows, overflow) = log.drain();
        assert_eq!(
            rows,
            vec![
                (key("rejected_by_deploy", None), 300),
                (key("rejected_by_deploy", Some("alice")), 1)
            ]
        );
        assert_eq!(overflow, 0);
        assert!(log.drain().0.is_empty());
    }
}
