//! Counters, gauges and latency histograms for `/patgate/metrics`, in the Prometheus
//! text format ([`histogram`] for the histograms).
//!
//! Plain relaxed atomics, one cache-line-aligned set per worker thread so that two
//! cores counting the same request kinds never fight over a cache line; a scrape sums
//! the sets. Nothing here locks or allocates while counting.
//!
//! May import: `core` (the floors: see `src/lib.rs`).

pub mod histogram;

use std::cell::Cell;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use self::histogram::{Histogram, Totals};
use crate::core::refusal::Refusal;

/// What kind of request a duration belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Route {
    /// Authenticated with one of the gateway's tokens and forwarded.
    Token,
    /// Forwarded without one (a password, a Deploy token, nothing).
    #[default]
    Passthrough,
    /// The self-service and admin API, SSO and SCIM.
    Api,
    /// The web pages.
    Ui,
    /// `/patgate/auth`.
    ForwardAuth,
    /// The gateway's other routes (health, readiness, metrics, keys).
    Gateway,
}

impl Route {
    const ALL: [Route; 6] = [
        Route::Token,
        Route::Passthrough,
        Route::Api,
        Route::Ui,
        Route::ForwardAuth,
        Route::Gateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Route::Token => "token",
            Route::Passthrough => "passthrough",
            Route::Api => "api",
            Route::Ui => "ui",
            Route::ForwardAuth => "forward_auth",
            Route::Gateway => "gateway",
        }
    }
}

/// A response status as the request histogram's `outcome` label groups it.
const OUTCOMES: [&str; 3] = ["ok", "refused", "error"];

fn outcome(status: u16) -> usize {
    match status {
        500.. => 2,
        400..=499 => 1,
        _ => 0,
    }
}

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
    /// Of those, forwarded on the fast path (the rest took the general path).
    pub fast_path: AtomicU64,
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
    pub refused_suspended: AtomicU64,
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
    /// Cached tokens answered while the database could not be reached
    /// (`cache.serve_stale_for`).
    pub stale_answers: AtomicU64,
    /// Expiry notification e-mails the SMTP server accepted.
    pub notify_sent: AtomicU64,
    /// Token exchanges: issued, and refused (bad or untrusted identity token).
    pub exchanges_issued: AtomicU64,
    pub exchanges_refused: AtomicU64,
    /// Exchanges refused because an issuer's keys could not be fetched.
    pub exchanges_unavailable: AtomicU64,
    /// SSO users re-validated with the provider: still valid, refused (suspended),
    /// and not asked because the provider could not be reached.
    pub revalidations_ok: AtomicU64,
    pub revalidations_refused: AtomicU64,
    pub revalidations_unreachable: AtomicU64,
    /// Expiry notification e-mails that failed (retried on the next pass).
    pub notify_failed: AtomicU64,
    /// Configuration reloads (`SIGHUP`, `patgate reload`): applied, and refused (the
    /// file failed validation; nothing changed).
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Request durations, by route and outcome.
    requests_by: [[Histogram; OUTCOMES.len()]; Route::ALL.len()],
    /// Time from sending a request to Deploy until its response head arrived.
    pub upstream_wait: Histogram,
    /// Token lookups in the database on a cache miss.
    pub store_lookup: Histogram,
    /// Whole notifier passes.
    pub notify_pass: Histogram,
    /// One e-mail handed to the SMTP server.
    pub smtp_send: Histogram,
    /// Client connections open now (this set's share).
    pub client_connections: AtomicI64,
    /// Connections to Deploy held in the pools (this set's share).
    pub upstream_pooled: AtomicI64,
}

/// What the scrape samples from elsewhere.
#[derive(Debug, Default)]
pub struct Sampled {
    pub cached_tokens: u64,
    /// Seconds since the invalidation feed last confirmed it is working.
    pub feed_lag_secs: f64,
    /// `sqlite` or `postgres`, for the lookup histogram's label.
    pub backend: &'static str,
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

    /// Counts one request's duration under its route and status.
    #[inline]
    pub fn request_done(&self, route: Route, status: u16, elapsed: Duration) {
        self.local().requests_by[route as usize][outcome(status)].observe(elapsed);
    }

    fn histogram(&self, pick: impl Fn(&Counters) -> &Histogram) -> Totals {
        let mut totals = Totals::default();
        for shard in self.shards.iter() {
            totals.add(pick(&shard.0));
        }
        totals
    }

    fn gauge(&self, pick: impl Fn(&Counters) -> &AtomicI64) -> i64 {
        self.shards
            .iter()
            .map(|s| pick(&s.0).load(Ordering::Relaxed))
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
            Refusal::SsoSuspended => &local.refused_suspended,
            Refusal::Unavailable => &local.refused_unavailable,
            Refusal::TooManyFailures => &local.refused_limited,
            Refusal::ScopeDenied(_) => &local.refused_scope,
            Refusal::AddressNotAllowed => &local.refused_address,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text; what is not counted here is sampled by the caller.
    pub fn render(&self, sampled: &Sampled) -> String {
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
            "patgate_fast_path_total",
            "Token requests forwarded to Deploy on the fast path (of patgate_proxied_total{auth=\"token\"}).",
            &[("", get!(fast_path))],
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
                ("{reason=\"sso_suspended\"}", get!(refused_suspended)),
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
            "patgate_stale_answers_total",
            "Cached tokens answered while the database could not be reached (cache.serve_stale_for).",
            &[("", get!(stale_answers))],
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
        counter(
            "patgate_token_exchanges_total",
            "CI identity tokens exchanged for gateway tokens, by result.",
            &[
                ("{result=\"issued\"}", get!(exchanges_issued)),
                ("{result=\"refused\"}", get!(exchanges_refused)),
                ("{result=\"unavailable\"}", get!(exchanges_unavailable)),
            ],
        );
        counter(
            "patgate_sso_revalidations_total",
            "SSO users asked again at the provider, by result (refused: suspended; unreachable: nobody suspended, asked again later).",
            &[
                ("{result=\"ok\"}", get!(revalidations_ok)),
                ("{result=\"refused\"}", get!(revalidations_refused)),
                ("{result=\"unreachable\"}", get!(revalidations_unreachable)),
            ],
        );
        counter(
            "patgate_config_reloads_total",
            "Configuration reloads, by result (failed: refused, the previous settings kept serving).",
            &[
                ("{result=\"ok\"}", get!(reloads_ok)),
                ("{result=\"failed\"}", get!(reloads_failed)),
            ],
        );
        let mut gauge = |name: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        gauge(
            "patgate_cached_tokens",
            "Tokens held in the cache.",
            sampled.cached_tokens.to_string(),
        );
        gauge(
            "patgate_client_connections",
            "Client connections open.",
            self.gauge(|c| &c.client_connections).max(0).to_string(),
        );
        gauge(
            "patgate_upstream_pool_connections",
            "Connections to Deploy held in the workers' pools (idle, or still streaming an answer).",
            self.gauge(|c| &c.upstream_pooled).max(0).to_string(),
        );
        gauge(
            "patgate_invalidation_feed_lag_seconds",
            "Seconds since the invalidation feed last confirmed it is working.",
            format!("{:.3}", sampled.feed_lag_secs),
        );
        let mut histogram = |name: &str, help: &str, series: Vec<(String, Totals)>| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            for (labels, totals) in series {
                totals.write(&mut out, name, &labels);
            }
        };
        let mut requests = Vec::new();
        for route in Route::ALL {
            for (o, outcome) in OUTCOMES.iter().enumerate() {
                let totals = self.histogram(|c| &c.requests_by[route as usize][o]);
                requests.push((
                    format!("route=\"{}\",outcome=\"{outcome}\"", route.as_str()),
                    totals,
                ));
            }
        }
        histogram(
            "patgate_request_duration_seconds",
            "Time to answer a request, by route class and outcome (ok: below 400, refused: 4xx, error: 5xx).",
            requests,
        );
        histogram(
            "patgate_upstream_wait_seconds",
            "Time from sending a request to Deploy until its response head arrived.",
            vec![(String::new(), self.histogram(|c| &c.upstream_wait))],
        );
        histogram(
            "patgate_token_lookup_seconds",
            "Token lookups in the database on a cache miss, by backend.",
            vec![(
                format!("backend=\"{}\"", sampled.backend),
                self.histogram(|c| &c.store_lookup),
            )],
        );
        histogram(
            "patgate_notify_pass_seconds",
            "Expiry notifier passes.",
            vec![(String::new(), self.histogram(|c| &c.notify_pass))],
        );
        histogram(
            "patgate_smtp_send_seconds",
            "Handing one e-mail to the SMTP server.",
            vec![(String::new(), self.histogram(|c| &c.smtp_send))],
        );
        out
    }
}
