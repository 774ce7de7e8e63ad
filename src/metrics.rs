//! Counters for `/patgate/metrics`, in the Prometheus text format.
//!
//! Plain relaxed atomics: the request path only ever increments.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::Refusal;

#[derive(Debug, Default)]
pub struct Metrics {
    pub requests: AtomicU64,
    pub authenticated: AtomicU64,
    pub passed_through: AtomicU64,
    pub refused_malformed: AtomicU64,
    pub refused_invalid: AtomicU64,
    pub refused_expired: AtomicU64,
    pub refused_disabled: AtomicU64,
    pub refused_unavailable: AtomicU64,
    pub refused_limited: AtomicU64,
    pub bad_credentials: AtomicU64,
    pub upstream_unreachable: AtomicU64,
    pub upstream_timeouts: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub store_lookups: AtomicU64,
    pub invalidations: AtomicU64,
}

impl Metrics {
    pub fn refused(&self, refusal: Refusal) {
        let counter = match refusal {
            Refusal::Malformed(_) => &self.refused_malformed,
            Refusal::Invalid => &self.refused_invalid,
            Refusal::Expired => &self.refused_expired,
            Refusal::UserDisabled => &self.refused_disabled,
            Refusal::Unavailable => &self.refused_unavailable,
            Refusal::TooManyFailures => &self.refused_limited,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; `cached_tokens` is sampled by the caller.
    pub fn render(&self, cached_tokens: u64) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
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
            &[("", get(&self.requests))],
        );
        counter(
            "patgate_proxied_total",
            "Requests forwarded to Deploy, by how they were authenticated.",
            &[
                ("{auth=\"token\"}", get(&self.authenticated)),
                ("{auth=\"passthrough\"}", get(&self.passed_through)),
            ],
        );
        counter(
            "patgate_token_refusals_total",
            "Requests refused because of their token, by reason.",
            &[
                ("{reason=\"malformed_token\"}", get(&self.refused_malformed)),
                ("{reason=\"invalid_token\"}", get(&self.refused_invalid)),
                ("{reason=\"token_expired\"}", get(&self.refused_expired)),
                ("{reason=\"user_disabled\"}", get(&self.refused_disabled)),
                (
                    "{reason=\"token_check_unavailable\"}",
                    get(&self.refused_unavailable),
                ),
                (
                    "{reason=\"malformed_credentials\"}",
                    get(&self.bad_credentials),
                ),
            ],
        );
        counter(
            "patgate_upstream_errors_total",
            "Requests Deploy did not answer.",
            &[
                ("{kind=\"unreachable\"}", get(&self.upstream_unreachable)),
                ("{kind=\"timeout\"}", get(&self.upstream_timeouts)),
            ],
        );
        counter(
            "patgate_token_cache_total",
            "Token cache lookups.",
            &[
                ("{result=\"hit\"}", get(&self.cache_hits)),
                ("{result=\"miss\"}", get(&self.cache_misses)),
            ],
        );
        counter(
            "patgate_store_lookups_total",
            "Token lookups sent to the database.",
            &[("", get(&self.store_lookups))],
        );
        counter(
            "patgate_invalidations_total",
            "Revocations and user changes applied to the cache.",
            &[("", get(&self.invalidations))],
        );
        let _ = writeln!(
            out,
            "# HELP patgate_cached_tokens Tokens held in the cache.\n# TYPE patgate_cached_tokens gauge\npatgate_cached_tokens {cached_tokens}"
        );
        out
    }
}
