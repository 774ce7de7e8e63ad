//! `cache.serve_stale_for`: while the database cannot be reached (a lookup failed and the
//! change feed is silent), a token found in the cache keeps the answer its entry gives,
//! for at most that long after the feed last confirmed itself. Revocations seen before
//! the silence evicted their entries, so they stay refused; unknown tokens still get
//! 503; the first confirmation afterwards empties the cache, which ends stale answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{CachedToken, Lookup, TokenCheck};
use crate::core::refusal::Refusal;
use crate::core::token::TokenHash;

/// The bound, what it is counted from, and whether the database is known away.
pub(super) struct StaleServing {
    /// `0`: off.
    window_ms: u64,
    /// When the feed last confirmed itself, on [`TokenCheck::clock_ms`]; unlike the
    /// feed's own mark, a lost feed does not reset it.
    confirmed_ms: AtomicU64,
    /// A lookup failed since then, and none succeeded after it: cached tokens are
    /// answered without asking the database again (each try waits for its timeout).
    away: AtomicBool,
    /// This outage's warning has been logged.
    warned: AtomicBool,
}

impl StaleServing {
    pub(super) fn new(window: Duration, confirmed_ms: u64) -> Self {
        StaleServing {
            window_ms: u64::try_from(window.as_millis()).unwrap_or(u64::MAX),
            confirmed_ms: AtomicU64::new(confirmed_ms),
            away: AtomicBool::new(false),
            warned: AtomicBool::new(false),
        }
    }

    /// The feed confirmed itself at `now`: the database is back, the bound counts from
    /// there, and the next outage warns again.
    pub(super) fn confirmed(&self, now: u64) {
        self.confirmed_ms.store(now, Ordering::Release);
        self.away.store(false, Ordering::Release);
        self.warned.store(false, Ordering::Release);
    }

    /// What is left of the bound at `now`; `None` when off or used up.
    fn left_ms(&self, now: u64) -> Option<u64> {
        let since = now.saturating_sub(self.confirmed_ms.load(Ordering::Acquire));
        (self.window_ms > 0 && since < self.window_ms).then(|| self.window_ms - since)
    }
}

impl TokenCheck {
    /// During an outage (a lookup failed and the feed is silent): the cached entry of
    /// `hash`, without a lookup, while the bound lasts.
    pub(super) async fn stale_hit(&self, hash: &TokenHash) -> Option<Arc<CachedToken>> {
        if !self.stale.away.load(Ordering::Acquire) {
            return None;
        }
        self.stale_entry(hash).await
    }

    /// The answer of a lookup made while the feed is silent: a failed one starts an
    /// outage and answers from the cache if it can; any other ends it.
    pub(super) async fn or_stale(
        &self,
        hash: &TokenHash,
        looked_up: Result<Arc<CachedToken>, Lookup>,
    ) -> Result<Arc<CachedToken>, Refusal> {
        match looked_up {
            Err(Lookup::Failed) => {
                self.stale.away.store(true, Ordering::Release);
                self.stale_entry(hash).await.ok_or(Refusal::Unavailable)
            }
            other => {
                self.stale.away.store(false, Ordering::Release);
                other.map_err(Refusal::from)
            }
        }
    }

    /// The cached entry of `hash` (never an unknown one) if the feed is silent and the
    /// bound is not used up. The caller decides on it as on any entry, expiry and owner
    /// included.
    async fn stale_entry(&self, hash: &TokenHash) -> Option<Arc<CachedToken>> {
        if self.feed_is_fresh() {
            return None;
        }
        let left = self.stale.left_ms(self.clock_ms())?;
        let entry = self.found.get(hash).await?;
        if !self.stale.warned.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                at_most_secs = left.div_ceil(1000),
                "the database cannot be reached: cached tokens are answered from the cache (cache.serve_stale_for)"
            );
        }
        self.metrics
            .local()
            .stale_answers
            .fetch_add(1, Ordering::Relaxed);
        Some(entry)
    }
}
