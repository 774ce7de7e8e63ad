//! Counters for `/patgate/metrics`, in the Prometheus text format.
//!
//! Plain relaxed atomics, one cache-line-aligned set per worker thread so that two
//! cores counting the same request kinds never fight over a cache line; a scrape sums
//! the sets.
//!
//! May import: `core` (the floors: see `src/lib.rs`).

use std::cell::Cell;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::refusal::Refusal;

thread_local! {
    /// Which counter set this thread increments (0: threads that are not workers).
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// All counter sets.
#[derive(Debug)]
pub struct Metrics {
    shards: Box<[Shard]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Counters);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(1)
    }
}

/// One thread's counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub authenticated: AtomicU64,
    pub passed_through: AtomicU64,
    /// Requests with a personal access token of Deploy's own, forwarded for Deploy to judge.
    pub deploy_tokens: AtomicU64,
    /// Requests with a personal access token of Deploy's own, refused (`deploy_tokens: refuse`).
    pub deploy_token_refusals: AtomicU64,
    pub refused_malformed: AtomicU64,
    pub refused_invalid: AtomicU64,
    pub refused_expired: AtomicU64,
    pub refused_disabled: AtomicU64,
    pub refused_sso: AtomicU64,
    pub refused_unavailable: AtomicU64,
    pub refused_limited: AtomicU64,
    pub refused_scope: AtomicU64,
    pub refused_address: AtomicU64,
    pub bad_credentials: AtomicU64,
    /// Request heads that are not valid HTTP/1.1, answered by the gateway.
    pub malformed_heads: AtomicU64,
    /// Requests refused by the header rules (Host, underscores, session ids).
    pub header_refusals: AtomicU64,
    pub upstream_unreachable: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub store_lookups: AtomicU64,
    pub invalidations: AtomicU64,
    /// Expiry notification e-mails the SMTP server accepted.
    pub notify_sent: AtomicU64,
    /// Expiry notification e-mails that failed (retried on the next pass).
    pub notify_failed: AtomicU64,
}

impl Metrics {
    /// Room for `workers` worker threads plus everything else.
    pub fn new(workers: usize) -> Metrics {
        Metrics {
            shards: (0..=workers).map(|_| Shard::default()).collect(),
        }
    }

    /// Makes the calling thread count into set `worker + 1`.
    pub fn register_worker(&self, worker: usize) {
        SHARD.with(|s| s.set((worker + 1).min(self.shards.len() - 1)));
    }

    /// The calling thread's counters.
    pub fn local(&self) -> &Counters {
        let i = SHARD.with(Cell::get);
        &self.shards[i.min(self.shards.len() - 1)].0
    }

    fn total(&self, counter: impl Fn(&Counters) -> &AtomicU64) -> u64 {
        self.shards
            .iter()
            .map(|s| counter(&s.0).load(Ordering::Relaxed))
            .sum()
    }

    pub fn refused(&self, refusal: Refusal) {
        let local = self.local();
        let counter = match refusal {
            Refusal::Malformed(_) => &local.refused_malformed,
            Refusal::Invalid => &local.refused_invalid,
            Refusal::Expired => &local.refused_expired,
            Refusal::UserDisabled => &local.refused_disabled,
            Refusal::SsoDisabled => &local.refused_sso,
            Refusal::Unavailable => &local.refused_unavailable,
            Refusal::TooManyFailures => &local.refused_limited,
            Refusal::ScopeDenied(_) => &local.refused_scope,
            Refusal::AddressNotAllowed => &local.refused_address,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `cached_tokens` is sampled by the caller.
    pub fn render(&self, cached_tokens: u64) -> String {
        macro_rules! get {
            ($field:ident) => {
                self.total(|c| &c.$field)
            };
        }
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        counter(
            "patgate_requests_total",
            "Requests received.",
            &[("", get!(requests))],
        );
        counter(
            "patgate_proxied_total",
            "Requests forwarded to Deploy, by how they were authenticated.",
            &[
                ("{auth=\"token\"}", get!(authenticated)),
                ("{auth=\"passthrough\"}", get!(passed_through)),
                ("{auth=\"deploy_token\"}", get!(deploy_tokens)),
            ],
        );
        counter(
            "patgate_token_refusals_total",
            "Requests refused because of their token, by reason.",
            &[
                ("{reason=\"malformed_token\"}", get!(refused_malformed)),
                ("{reason=\"invalid_token\"}", get!(refused_invalid)),
                ("{reason=\"token_expired\"}", get!(refused_expired)),
                ("{reason=\"user_disabled\"}", get!(refused_disabled)),
                ("{reason=\"sso_tokens_disabled\"}", get!(refused_sso)),
                ("{reason=\"scope_denied\"}", get!(refused_scope)),
                ("{reason=\"address_not_allowed\"}", get!(refused_address)),
                (
                    "{reason=\"token_check_unavailable\"}",
                    get!(refused_unavailable),
                ),
                ("{reason=\"malformed_credentials\"}", get!(bad_credentials)),
            ],
        );
        counter(
            "patgate_request_refusals_total",
            "Requests refused before any token check, by reason.",
            &[
                ("{reason=\"malformed_request\"}", get!(malformed_heads)),
                ("{reason=\"header_rules\"}", get!(header_refusals)),
                (
                    "{reason=\"deploy_token_refused\"}",
                    get!(deploy_token_refusals),
                ),
            ],
        );
        counter(
            "patgate_upstream_errors_total",
            "Requests Deploy did not answer.",
            &[
                ("{kind=\"unreachable\"}", get!(upstream_unreachable)),
                ("{kind=\"timeout\"}", get!(upstream_timeouts)),
            ],
        );
        counter(
            "patgate_token_cache_total",
            "Token cache lookups.",
            &[
                ("{result=\"hit\"}", get!(cache_hits)),
                ("{result=\"miss\"}", get!(cache_misses)),
            ],
        );
        counter(
            "patgate_store_lookups_total",
            "Token lookups sent to the database.",
            &[("", get!(store_lookups))],
        );
        counter(
            "patgate_invalidations_total",
            "Revocations and user changes applied to the cache.",
            &[("", get!(invalidations))],
        );
        counter(
            "patgate_notification_emails_total",
            "Token expiry e-mails, by result (failed ones are retried on the next pass).",
            &[
                ("{result=\"sent\"}", get!(notify_sent)),
                ("{result=\"failed\"}", get!(notify_failed)),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP patgate_cached_tokens Tokens held in the cache.\n# TYPE patgate_cached_tokens gauge\npatgate_cached_tokens {cached_tokens}"
        );
        out
    }
}
