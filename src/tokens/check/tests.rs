//! The cache's safety guards, on a real SQLite store. The test plays the change
//! feed (it confirms, falls silent or is lost when the test says) and moves the
//! feed's clock by hand: nothing sleeps, so the silences are exact.

use super::*;
use crate::core::token::{Expiration, PlainToken};
use crate::store::UserSource;
use crate::tokens::issue;

#[test]
fn hex_round_trips() {
    let hash: TokenHash = std::array::from_fn(|i| (i * 7) as u8);
    assert_eq!(parse_hex(&token::hex(&hash)), Some(hash));
    assert_eq!(parse_hex("zz"), None);
}

/// Up to `cache.max_tokens` of these are held (200,000 by default): every 16 bytes an
/// entry grows past two cache lines costs a few MiB (BENCHMARKS.md, Memory).
#[test]
fn a_cached_entry_fits_in_two_cache_lines() {
    let size = std::mem::size_of::<CachedToken>();
    assert!(size <= 128, "a cached token entry takes {size} bytes");
}

struct Gateway {
    check: Arc<TokenCheck>,
    store: Store,
    hasher: TokenHasher,
    metrics: Arc<Metrics>,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const GET: crate::tokens::rules::Attempt<'static> = crate::tokens::rules::Attempt {
    method: b"GET",
    path: b"/deployit/repository/ci",
};

const KEY: &[u8] = b"a token key for the unit tests, 32+ bytes";

async fn gateway() -> Gateway {
    gateway_with(TokenHasher::new(KEY), 0).await
}

/// `serve_stale_ms`: `cache.serve_stale_for`.
async fn gateway_with(hasher: TokenHasher, serve_stale_ms: u64) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("patgate.db").display());
    let store = Store::connect(&url, 2).await.unwrap();
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let (usage, _) = UsageRecorder::start(store.clone(), stop_rx);
    let metrics = Arc::new(Metrics::default());
    let check = Arc::new(TokenCheck::new(
        hasher.clone(),
        store.clone(),
        &config::Cache {
            max_tokens: 1_000,
            ttl: std::time::Duration::from_secs(600),
            negative_ttl: std::time::Duration::from_secs(30),
            poll_interval: std::time::Duration::from_millis(100),
            serve_stale_for: std::time::Duration::from_millis(serve_stale_ms),
        },
        FailureLimiter::new(&config::Limits {
            failures_per_second: 1_000.0,
            failure_burst: 1_000,
        }),
        usage,
        metrics.clone(),
    ));
    Gateway {
        check,
        store,
        hasher,
        metrics,
        _stop: stop,
        _dir: dir,
    }
}

impl Gateway {
    /// Issues a token to alice; returns (id, token).
    async fn token(&self, name: &str) -> (String, PlainToken) {
        self.store
            .ensure_user("alice", UserSource::Internal, None)
            .await
            .unwrap();
        let (record, token) = issue::issue(
            &self.store,
            &self.hasher,
            "alice",
            UserSource::Internal,
            name,
            Expiration::Days7,
        )
        .await
        .unwrap();
        (record.id, token)
    }

    async fn present(&self, token: &PlainToken) -> Result<Principal, Refusal> {
        self.check
            .check(token.expose().as_bytes(), None, CLIENT, GET)
            .await
    }

    /// Revokes in the database; the notice of it never reaches the cache.
    async fn revoke_unheard(&self, id: &str) {
        self.store.revoke_token(id).await.unwrap();
    }

    /// What the SQLite feed does on a poll: applies the recorded changes.
    async fn deliver_changes(&self) {
        for (_, change) in self.store.invalidations_since(0).await.unwrap() {
            self.check.invalidate(&change).await;
        }
    }

    fn advance(&self, ms: u64) {
        self.check.manual_clock_ms.fetch_add(ms, Ordering::AcqRel);
    }

    /// Store lookups so far, as `/patgate/metrics` reports them.
    fn store_lookups(&self) -> u64 {
        let text = self.metrics.render(&crate::metrics::Sampled::default());
        let line = text
            .lines()
            .find(|l| l.starts_with("patgate_store_lookups_total "))
            .unwrap();
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }
}

#[tokio::test]
async fn while_the_feed_confirms_every_750_ms_repeat_requests_are_served_from_the_cache() {
    let gw = gateway().await;
    let (_, token) = gw.token("ci").await;
    assert!(gw.present(&token).await.is_ok());
    assert_eq!(gw.store_lookups(), 1);
    for _ in 0..4 {
        gw.advance(750);
        assert!(gw.present(&token).await.is_ok());
        gw.check.confirm_feed();
    }
    assert_eq!(gw.store_lookups(), 1, "a healthy feed's cache was bypassed");
}

#[tokio::test]
async fn a_feed_silent_for_longer_than_750_ms_sends_every_request_to_the_store() {
    let gw = gateway().await;
    let (revoked, token) = gw.token("revoked").await;
    let (_, other) = gw.token("other").await;
    gw.check.confirm_feed();
    assert!(gw.present(&token).await.is_ok());
    assert!(gw.present(&other).await.is_ok());
    gw.revoke_unheard(&revoked).await;
    let before = gw.store_lookups();

    gw.advance(FEED_MAX_SILENCE_MS + 1);
    assert_eq!(
        gw.present(&token).await.err(),
        Some(Refusal::Invalid),
        "a revocation whose notice was lost outlived a silent feed"
    );
    assert!(gw.present(&other).await.is_ok());
    assert!(gw.present(&other).await.is_ok());
    assert_eq!(
        gw.store_lookups(),
        before + 3,
        "each request reaches the store"
    );
}

#[tokio::test]
async fn a_lost_feed_sends_requests_to_the_store_at_once() {
    let gw = gateway().await;
    let (id, token) = gw.token("ci").await;
    gw.check.confirm_feed();
    assert!(gw.present(&token).await.is_ok());
    gw.revoke_unheard(&id).await;
    gw.check.feed_lost();
    assert_eq!(gw.present(&token).await.err(), Some(Refusal::Invalid));
}

#[tokio::test]
async fn a_revocation_missed_during_an_outage_is_refused_once_the_feed_is_back() {
    let gw = gateway().await;
    let (id, token) = gw.token("ci").await;
    let (_, other) = gw.token("other").await;
    gw.check.confirm_feed();
    assert!(gw.present(&token).await.is_ok());
    assert!(gw.present(&other).await.is_ok());
    gw.check.feed_lost();
    gw.revoke_unheard(&id).await;
    gw.advance(5_000);
    gw.check.confirm_feed();
    assert_eq!(gw.present(&token).await.err(), Some(Refusal::Invalid));
    // Back on the cache: the other token is read once, then served from memory.
    assert!(gw.present(&other).await.is_ok());
    let lookups = gw.store_lookups();
    assert!(gw.present(&other).await.is_ok());
    assert_eq!(gw.store_lookups(), lookups);
}

#[tokio::test]
async fn the_cache_is_emptied_when_the_feed_confirms_again_after_a_silence() {
    let gw = gateway().await;
    let (id, token) = gw.token("ci").await;
    gw.check.confirm_feed();
    assert!(gw.present(&token).await.is_ok());
    gw.revoke_unheard(&id).await;
    gw.advance(2_000);
    gw.check.confirm_feed();
    assert_eq!(
        gw.present(&token).await.err(),
        Some(Refusal::Invalid),
        "an entry cached before the silence survived it"
    );
}

#[tokio::test]
async fn a_lookup_that_began_before_a_revocation_is_not_cached_after_it() {
    let gw = gateway().await;
    let (id, token) = gw.token("ci").await;
    gw.check.confirm_feed();
    let held = gw.check.hold.arm();
    let check = gw.check.clone();
    let presented = token.expose().to_string();
    let mut first = tokio::spawn(async move {
        check
            .check(presented.as_bytes(), None, CLIENT, GET)
            .await
            .err()
    });
    // The lookup has read the token as valid; now it is revoked and the feed
    // delivers the change, before the lookup's answer is used. A check that answers
    // without reading the store fails here at once instead of waiting for the hold.
    tokio::select! {
        reached = held.reached => reached.unwrap(),
        answer = &mut first => panic!(
            "the token was answered without a store lookup: {:?}",
            answer.unwrap()
        ),
    }
    gw.store.revoke_token(&id).await.unwrap();
    gw.deliver_changes().await;
    held.release.send(()).unwrap();
    first.await.unwrap();

    let lookups = gw.store_lookups();
    assert_eq!(
        gw.present(&token).await.err(),
        Some(Refusal::Invalid),
        "a revoked token was served from an answer read before its revocation"
    );
    assert_eq!(
        gw.store_lookups(),
        lookups + 1,
        "the stale answer was cached"
    );
}

#[tokio::test]
async fn a_token_still_stored_under_the_previous_key_is_refused_once_revoked_during_a_rotation() {
    let previous = TokenHasher::new(KEY);
    let gw = gateway_with(
        TokenHasher::with_previous(
            b"the new token key for the unit tests, 32+",
            &[KEY.to_vec()],
        ),
        0,
    )
    .await;
    gw.store
        .ensure_user("alice", UserSource::Internal, None)
        .await
        .unwrap();
    let token = PlainToken::generate();
    let stored_under = previous.hash(token.expose().as_bytes());
    let record = gw
        .store
        .create_token("alice", "ci", &stored_under, None)
        .await
        .unwrap();
    gw.check.confirm_feed();
    assert!(gw.present(&token).await.is_ok());
    // The store announces the change under the hash the row was stored with.
    gw.store.revoke_token(&record.id).await.unwrap();
    gw.check
        .invalidate(&Invalidation::Token(token::hex(&stored_under)))
        .await;
    assert_eq!(gw.present(&token).await.err(), Some(Refusal::Invalid));
}

#[tokio::test]
async fn the_metrics_count_the_tokens_held_in_the_cache() {
    let gw = gateway().await;
    for name in ["one", "two", "three"] {
        let (_, token) = gw.token(name).await;
        assert!(gw.present(&token).await.is_ok());
    }
    gw.check.found.run_pending_tasks().await;
    assert_eq!(gw.check.cached_tokens(), 3);
}

#[tokio::test]
async fn stale_answers_last_until_the_bound_and_stop_once_the_feed_confirms_again() {
    let gw = gateway_with(TokenHasher::new(KEY), 3_000).await;
    let (_, cached) = gw.token("ci").await;
    let (_, uncached) = gw.token("other").await;
    assert!(gw.present(&cached).await.is_ok());
    // The database goes away (its pool is closed) and the feed falls silent.
    gw.store.close().await;
    gw.advance(1_000);
    assert!(gw.present(&cached).await.is_ok(), "within the bound");
    assert_eq!(
        gw.present(&uncached).await.err(),
        Some(Refusal::Unavailable)
    );
    gw.advance(2_000);
    assert_eq!(
        gw.present(&cached).await.err(),
        Some(Refusal::Unavailable),
        "past the bound"
    );
    // A confirmation ends the outage: the cache is emptied, nothing stale is served,
    // even if the feed falls silent again at once.
    gw.check.confirm_feed();
    gw.advance(1_000);
    assert_eq!(gw.present(&cached).await.err(), Some(Refusal::Unavailable));
}
