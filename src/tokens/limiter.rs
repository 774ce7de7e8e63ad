//! Per-address limit on failed token checks, so that a flood of invented or mangled
//! tokens costs the database (and everyone else) almost nothing.
//!
//! Each client address has a GCRA bucket (one atomic: the "theoretical arrival time"):
//! `failures_per_second` sustained, `failure_burst` at once. An address over its limit
//! gets 429 for every failing request, and tokens it presents that are not already
//! cached are not looked up. Valid tokens already in the cache keep working from that
//! address, so a shared NAT address is not locked out entirely.
//!
//! Only the failure path touches the limiter; a successful cached request never does.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;

use crate::config;

/// Keyed by client address by default; sign-in also limits by username.
pub struct FailureLimiter<K = IpAddr> {
    /// Microseconds between two allowed failures.
    interval_us: AtomicI64,
    /// How far ahead of now an address's arrival time may run.
    tolerance_us: AtomicI64,
    epoch: Instant,
    buckets: Cache<K, Arc<AtomicI64>>,
}

impl<K: Hash + Eq + Send + Sync + 'static> FailureLimiter<K> {
    pub fn new(settings: &config::Limits) -> FailureLimiter<K> {
        let (interval_us, tolerance_us) = Self::rates(settings);
        FailureLimiter {
            interval_us: AtomicI64::new(interval_us),
            tolerance_us: AtomicI64::new(tolerance_us),
            epoch: Instant::now(),
            buckets: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(600))
                .build(),
        }
    }

    fn rates(settings: &config::Limits) -> (i64, i64) {
        let interval_us = (1_000_000.0 / settings.failures_per_second)
            .round()
            .max(1.0) as i64;
        (
            interval_us,
            interval_us * i64::from(settings.failure_burst.saturating_sub(1)),
        )
    }

    /// Takes new limits (a reload); addresses keep what they have used.
    pub fn set(&self, settings: &config::Limits) {
        let (interval_us, tolerance_us) = Self::rates(settings);
        self.interval_us.store(interval_us, Ordering::Relaxed);
        self.tolerance_us.store(tolerance_us, Ordering::Relaxed);
    }

    fn tolerance(&self) -> i64 {
        self.tolerance_us.load(Ordering::Relaxed)
    }

    fn now_us(&self) -> i64 {
        self.epoch.elapsed().as_micros() as i64
    }

    /// Whether `ip` is over its failure limit now.
    pub async fn blocked(&self, key: &K) -> bool {
        match self.buckets.get(key).await {
            Some(tat) => tat.load(Ordering::Relaxed) - self.now_us() > self.tolerance(),
            None => false,
        }
    }

    /// Counts one failure; returns whether `ip` is now over its limit.
    pub async fn record_failure(&self, key: K) -> bool {
        let tat = self
            .buckets
            .get_with(key, async { Arc::new(AtomicI64::new(0)) })
            .await;
        let now = self.now_us();
        let (tolerance, interval) = (self.tolerance(), self.interval_us.load(Ordering::Relaxed));
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            if current - now > tolerance {
                return true;
            }
            let next = current.max(now) + interval;
            match tat.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return false,
                Err(actual) => current = actual,
            }
        }
    }

    /// Seconds until `ip` may fail again (for Retry-After).
    pub fn retry_after_secs(&self) -> u64 {
        (self.interval_us.load(Ordering::Relaxed) as u64)
            .div_ceil(1_000_000)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn burst_then_blocked_then_recovers() {
        let limiter: FailureLimiter = FailureLimiter::new(&config::Limits {
            failures_per_second: 20.0,
            failure_burst: 5,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..5 {
            assert!(!limiter.record_failure(ip).await);
        }
        assert!(limiter.record_failure(ip).await);
        assert!(limiter.blocked(&ip).await);
        assert!(!limiter.blocked(&other).await, "limits are per address");
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert!(!limiter.blocked(&ip).await, "the bucket refills");
    }

    #[tokio::test]
    async fn new_limits_apply_to_the_next_failure() {
        let limiter: FailureLimiter = FailureLimiter::new(&config::Limits {
            failures_per_second: 1.0,
            failure_burst: 2,
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(!limiter.record_failure(ip).await);
        assert!(!limiter.record_failure(ip).await);
        assert!(limiter.record_failure(ip).await, "over the burst of 2");
        limiter.set(&config::Limits {
            failures_per_second: 1.0,
            failure_burst: 10,
        });
        assert!(
            !limiter.blocked(&ip).await,
            "a larger burst lets it through again"
        );
        assert!(!limiter.record_failure(ip).await);
        assert_eq!(limiter.retry_after_secs(), 1);
        limiter.set(&config::Limits {
            failures_per_second: 0.1,
            failure_burst: 10,
        });
        assert_eq!(limiter.retry_after_secs(), 10);
    }

    #[test]
    fn retry_after_is_one_failure_interval_rounded_up_to_whole_seconds() {
        for (per_second, seconds) in [(0.1, 10), (0.3, 4), (1.0, 1), (20.0, 1)] {
            let limiter: FailureLimiter = FailureLimiter::new(&config::Limits {
                failures_per_second: per_second,
                failure_burst: 5,
            });
            assert_eq!(limiter.retry_after_secs(), seconds, "{per_second}/s");
        }
    }
}
