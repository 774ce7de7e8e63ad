//! `cache.serve_stale_for` through a PostgreSQL outage (a proxy between the gateway and
//! the database, cut and restored): off, cached tokens fail closed with 503 like any
//! other; on, a cached token keeps working up to the bound, counted from the last time
//! the change feed confirmed itself, while unknown tokens and those revoked before the
//! outage stay refused (one revoked during it keeps working: the price of the setting);
//! once the database is back the cache is read afresh and everything answers as before.
//! SQLite has no outage to test: its database is a local file that open connections
//! keep reading.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::outage::DbProxy;
use common::*;
use patgate::core::token::Expiration;

/// A gateway on PostgreSQL through a proxy, with `extra` settings; `None` when the
/// PostgreSQL cases are skipped.
struct Setup {
    gw: Gateway,
    proxy: DbProxy,
    upstream: Upstream,
    db: TestDb,
}

async fn behind_proxy(extra: &[(&str, &str)]) -> Option<Setup> {
    let db = TestDb::new(Backend::Postgres).await?;
    let upstream = Upstream::start().await;
    let proxy = DbProxy::start(&db.url).await;
    let url = proxy.url(&db.url);
    let mut settings = vec![("PATGATE_DATABASE__URL", url.as_str())];
    settings.extend_from_slice(extra);
    let gw = Gateway::start(config(&db, &upstream.url(), &settings)).await;
    Some(Setup {
        gw,
        proxy,
        upstream,
        db,
    })
}

async fn status(gw: &Gateway, token: &str) -> http::StatusCode {
    get(&gw.url("/x"), &[("x-deploy-personal-token", token)])
        .await
        .status
}

/// Whether `token` is answered with `code` within `limit` (asked every 20 ms).
async fn comes_to(gw: &Gateway, token: &str, code: u16, limit: Duration) -> bool {
    within(limit, || async { status(gw, token).await == code })
        .await
        .is_some()
}

/// Revokes token `id` and tells whether `token` is refused within 1.5 s.
async fn revocation_applies(gw: &Gateway, id: &str, token: &str) -> bool {
    gw.revoke(id).await;
    comes_to(gw, token, 401, Duration::from_millis(1500)).await
}

async fn stale_answers(gw: &Gateway) -> u64 {
    let text = get(&gw.url("/patgate/metrics"), &[]).await.body;
    String::from_utf8_lossy(&text)
        .lines()
        .find_map(|l| l.strip_prefix("patgate_stale_answers_total "))
        .map(|v| v.trim().parse().unwrap())
        .expect("patgate_stale_answers_total is exported")
}

/// The database is back: the cached token answers 200 again (the change feed
/// reconnects with a backoff of up to 5 s).
async fn recovered(gw: &Gateway, token: &str) {
    assert!(
        comes_to(gw, token, 200, Duration::from_secs(20)).await,
        "the token never worked again after the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_setting_a_cached_token_gets_503_during_an_outage() {
    let Some(Setup {
        gw, proxy, db: _db, ..
    }) = behind_proxy(&[]).await
    else {
        return;
    };
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    assert_eq!(status(&gw, &token).await, 200);

    proxy.cut();
    assert!(
        comes_to(&gw, &token, 503, Duration::from_secs(5)).await,
        "a cached token kept working without the setting"
    );
    // Not a moment of bad luck: it stays refused while the database is away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&gw, &token).await, 503);
    assert_eq!(stale_answers(&gw).await, 0);

    proxy.restore();
    recovered(&gw, &token).await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_setting_cached_tokens_work_through_an_outage_up_to_the_bound() {
    let Some(Setup {
        gw,
        proxy,
        upstream,
        db,
    }) = behind_proxy(&[("PATGATE_CACHE__SERVE_STALE_FOR", "4s")]).await
    else {
        return;
    };
    let (kept_id, kept) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let (revoked_id, revoked) = gw.create_token("bob", "old", Expiration::Days7).await;
    let (_, uncached) = gw.create_token("carol", "new", Expiration::Days7).await;
    let (missed_id, missed) = gw.create_token("dave", "ci", Expiration::Days7).await;
    assert_eq!(status(&gw, &kept).await, 200);
    assert_eq!(status(&gw, &missed).await, 200);
    assert_eq!(status(&gw, &revoked).await, 200);
    assert!(
        revocation_applies(&gw, &revoked_id, &revoked).await,
        "the revocation before the outage was not applied"
    );
    let reached = upstream.count();

    proxy.cut();
    let cut = Instant::now();
    // Revoked during the outage, straight in the database: the gateway cannot hear it.
    revoke(&config(&db, &upstream.url(), &[]), &missed_id).await;
    // Past the feed's silence limit the cache is bypassed; the lookup fails (after its
    // 2 s timeout) and the cached entry answers.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        status(&gw, &kept).await,
        200,
        "the cached token was refused"
    );
    assert_eq!(upstream.last().headers["x-deploy-user"], "alice");
    // The database is known away now: the next answers do not wait for a lookup.
    let asked = Instant::now();
    assert_eq!(status(&gw, &kept).await, 200);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(status(&gw, &revoked).await, 401, "the revoked token");
    // The price of the setting: a revocation the gateway could not hear is missed.
    assert_eq!(status(&gw, &missed).await, 200);
    assert_eq!(stale_answers(&gw).await, 4);
    assert_eq!(status(&gw, &uncached).await, 503, "an uncached token");
    assert_eq!(
        upstream.count(),
        reached + 3,
        "only the cached tokens reached Deploy"
    );

    // Four seconds after the feed last confirmed itself the bound is used up.
    assert!(
        comes_to(&gw, &kept, 503, Duration::from_secs(8)).await,
        "the cached token kept working past the bound"
    );
    assert!(
        cut.elapsed() >= Duration::from_millis(3500),
        "{:?}",
        cut.elapsed()
    );
    assert_eq!(status(&gw, &kept).await, 503);

    proxy.restore();
    recovered(&gw, &kept).await;
    assert_eq!(status(&gw, &uncached).await, 200);
    assert_eq!(status(&gw, &revoked).await, 401);
    // The cache was read afresh: the revocation made during the outage applies.
    assert_eq!(status(&gw, &missed).await, 401);
    assert_eq!(
        stale_answers(&gw).await,
        4,
        "stale answers after the outage"
    );
    // The change feed works again: a revocation applies within a second, as before.
    assert!(
        revocation_applies(&gw, &kept_id, &kept).await,
        "a revocation after the outage was not applied"
    );
    gw.shutdown().await;
}
