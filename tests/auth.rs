//! Token authentication end to end, against SQLite and PostgreSQL: which requests reach
//! Deploy, as whom, and which are refused.

#[macro_use]
mod common;

use std::time::Duration;

use common::*;
use patgate::core::token::{Expiration, PlainToken, TokenHasher};
use patgate::store::Store;

on_both_backends!(
    every_accepted_form_reaches_deploy_as_the_owner_without_the_token,
    basic_username_must_be_the_token_owner,
    refused_tokens_never_reach_deploy,
    revocation_takes_effect_within_a_second,
    disabling_a_user_refuses_their_tokens_within_a_second,
    expired_token_is_refused_even_when_cached,
    last_use_is_recorded_off_the_request_path,
    readiness_reports_the_database,
);

async fn every_accepted_form_reaches_deploy_as_the_owner_without_the_token(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days30).await;

    let forms = [
        ("authorization", basic("", &token)),
        ("authorization", basic("alice", &token)),
        ("x-deploy-personal-token", token.clone()),
    ];
    for (header, value) in &forms {
        let answer = get(&gw.url("/api/v1/deployit"), &[(header, value)]).await;
        assert_eq!(answer.status, 200, "{header}: {:?}", answer.body);
        assert_eq!(answer.body, "deploy");
        let seen = upstream.last();
        assert_eq!(seen.path, "/api/v1/deployit");
        assert_eq!(seen.headers["x-deploy-user"], "alice");
        assert!(
            seen.headers.get("authorization").is_none(),
            "{header}: token forwarded"
        );
        assert!(seen.headers.get("x-deploy-personal-token").is_none());
        let all: String = format!("{:?}", seen.headers);
        assert!(!all.contains(&token), "the token reached Deploy");
    }
    assert_eq!(upstream.count(), 3);
    gw.shutdown().await;
}

async fn basic_username_must_be_the_token_owner(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Never).await;
    let answer = get(
        &gw.url("/api/v1/x"),
        &[("authorization", &basic("mallory", &token))],
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), "invalid_token");
    assert_eq!(upstream.count(), 0);
    gw.shutdown().await;
}

async fn refused_tokens_never_reach_deploy(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let (revoked_id, revoked) = gw.create_token("alice", "old", Expiration::Days7).await;
    gw.revoke(&revoked_id).await;
    let (_, disabled_users) = gw.create_token("bob", "ci", Expiration::Days7).await;
    gw.set_disabled("bob", true).await;
    let unknown = PlainToken::generate();
    let expired = insert_token(&gw.config, "carol", Some(patgate::core::time::now() - 10)).await;
    let mut wrong_checksum = unknown.expose().to_string();
    wrong_checksum.pop();
    wrong_checksum.push(if unknown.expose().ends_with('A') {
        'B'
    } else {
        'A'
    });

    let cases = [
        (unknown.expose().to_string(), 401, "invalid_token"),
        (revoked, 401, "invalid_token"),
        (expired, 401, "token_expired"),
        (disabled_users, 401, "user_disabled"),
        (wrong_checksum, 401, "malformed_token"),
        ("dpat_short".to_string(), 401, "malformed_token"),
        ("DPAT_short".to_string(), 401, "malformed_token"),
        (String::new(), 401, "malformed_token"),
    ];
    for (token, status, code) in &cases {
        for header in [
            ("authorization", basic("", token)),
            ("x-deploy-personal-token", token.clone()),
        ] {
            let answer = get(&gw.url("/deployit/tokens/users"), &[(header.0, &header.1)]).await;
            assert_eq!(answer.status, *status, "{code} via {}", header.0);
            assert_eq!(
                answer.error_code(),
                *code,
                "via {}: {:?}",
                header.0,
                answer.body
            );
            assert!(answer.json()["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            if answer.status == 401 {
                assert!(answer.headers["www-authenticate"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic realm="));
            }
            if !token.is_empty() {
                assert!(!String::from_utf8_lossy(&answer.body).contains(token.as_str()));
            }
        }
    }
    // Without the gateway's prefix a token is Deploy's (Deploy 25.3+ issues its own):
    // the gateway's API cannot take it, and says so.
    for header in [
        ("authorization", basic("", "not-a-token")),
        ("x-deploy-personal-token", "not-a-token".to_string()),
    ] {
        let answer = get(&gw.url("/deployit/tokens/users"), &[(header.0, &header.1)]).await;
        assert_eq!(answer.status, 401, "via {}", header.0);
        assert!(
            answer.json()["message"]
                .as_str()
                .is_some_and(|m| m.contains("not a token of the gateway's")),
            "via {}: {:?}",
            header.0,
            answer.body
        );
    }
    // The same unknown token twice is answered from the negative cache.
    assert_eq!(upstream.count(), 0, "a refused token reached Deploy");
    gw.shutdown().await;
}

/// Inserts a token directly (e.g. already expired), as no user-facing path can.
async fn insert_token(
    config: &patgate::config::Config,
    user: &str,
    expires_at: Option<i64>,
) -> String {
    let (store, hasher): (Store, TokenHasher) = patgate::app::open_store(config).await.unwrap();
    store
        .ensure_user(user, patgate::store::UserSource::Internal, None)
        .await
        .unwrap();
    let token = PlainToken::generate();
    store
        .create_token(
            user,
            "direct",
            &hasher.hash(token.expose().as_bytes()),
            expires_at,
        )
        .await
        .unwrap();
    store.close().await;
    token.expose().to_string()
}

async fn revocation_takes_effect_within_a_second(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let (id, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let auth = [("x-deploy-personal-token", token.as_str())];
    assert_eq!(get(&gw.url("/x"), &auth).await.status, 200);
    assert_eq!(get(&gw.url("/x"), &auth).await.status, 200, "cached");
    gw.revoke(&id).await;
    let took = within(Duration::from_secs(1), || async {
        get(&gw.url("/x"), &auth).await.status == 401
    })
    .await;
    assert!(took.is_some(), "revoked token still accepted after 1 s");
    let before = upstream.count();
    assert_eq!(
        get(&gw.url("/x"), &auth).await.error_code(),
        "invalid_token"
    );
    assert_eq!(upstream.count(), before);
    gw.shutdown().await;
}

async fn disabling_a_user_refuses_their_tokens_within_a_second(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let (_, a) = gw.create_token("alice", "one", Expiration::Days7).await;
    let (_, b) = gw.create_token("alice", "two", Expiration::Never).await;
    let (_, other) = gw.create_token("bob", "one", Expiration::Never).await;
    for t in [&a, &b, &other] {
        assert_eq!(
            get(&gw.url("/x"), &[("x-deploy-personal-token", t)])
                .await
                .status,
            200
        );
    }
    gw.set_disabled("alice", true).await;
    for t in [&a, &b] {
        let took = within(Duration::from_secs(1), || async {
            get(&gw.url("/x"), &[("x-deploy-personal-token", t)])
                .await
                .error_code()
                == "user_disabled"
        })
        .await;
        assert!(took.is_some(), "disabled user's token still accepted");
    }
    assert_eq!(
        get(&gw.url("/x"), &[("x-deploy-personal-token", &other)])
            .await
            .status,
        200
    );
    gw.set_disabled("alice", false).await;
    let took = within(Duration::from_secs(1), || async {
        get(&gw.url("/x"), &[("x-deploy-personal-token", &a)])
            .await
            .status
            == 200
    })
    .await;
    assert!(took.is_some(), "re-enabled user's token still refused");
    gw.shutdown().await;
}

async fn expired_token_is_refused_even_when_cached(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let expires_at = patgate::core::time::now() + 2;
    let token = insert_token(&gw.config, "alice", Some(expires_at)).await;
    let auth = [("x-deploy-personal-token", token.as_str())];
    assert_eq!(get(&gw.url("/x"), &auth).await.status, 200);
    // Wait past the expiry instant; the cache entry itself lives for minutes.
    while patgate::core::time::now() < expires_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer = get(&gw.url("/x"), &auth).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), "token_expired");
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

async fn last_use_is_recorded_off_the_request_path(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let (id, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    for _ in 0..5 {
        get(&gw.url("/x"), &[("x-deploy-personal-token", &token)]).await;
    }
    let config = gw.config.clone();
    gw.shutdown().await; // flushes pending writes
    let (store, _) = patgate::app::open_store(&config).await.unwrap();
    let record = store.get_token(&id).await.unwrap();
    assert!(record
        .last_used_at
        .is_some_and(|t| (t - patgate::core::time::now()).abs() < 60));
    assert_eq!(record.last_used_ip.as_deref(), Some("127.0.0.1"));
}

async fn readiness_reports_the_database(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    assert_eq!(get(&gw.url("/patgate/healthz"), &[]).await.status, 200);
    let ready = get(&gw.url("/patgate/readyz"), &[]).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
    assert_eq!(upstream.count(), 0, "/patgate/ paths are never proxied");
    gw.shutdown().await;
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn an_address_sending_bad_tokens_is_limited_without_database_queries() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_LIMITS__FAILURES_PER_SECOND", "0.1"),
            ("PATGATE_LIMITS__FAILURE_BURST", "3"),
        ],
    ))
    .await;
    let (_, good) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let (_, not_yet_cached) = gw.create_token("alice", "other", Expiration::Days7).await;
    assert_eq!(
        get(&gw.url("/x"), &[("x-deploy-personal-token", &good)])
            .await
            .status,
        200
    );

    for _ in 0..3 {
        let unknown = PlainToken::generate();
        let answer = get(
            &gw.url("/x"),
            &[("x-deploy-personal-token", unknown.expose())],
        )
        .await;
        assert_eq!(answer.status, 401);
    }
    let lookups_before = metric(
        &String::from_utf8_lossy(&get(&gw.url("/patgate/metrics"), &[]).await.body),
        "patgate_store_lookups_total",
    );
    let limited = get(
        &gw.url("/x"),
        &[("x-deploy-personal-token", PlainToken::generate().expose())],
    )
    .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.error_code(), "too_many_failures");
    // One failure every 10 s: that is how long the client should wait.
    assert_eq!(limited.headers["retry-after"], "10");
    assert_eq!(limited.headers["connection"], "close");
    let malformed = get(
        &gw.url("/x"),
        &[("x-deploy-personal-token", "dpat_garbage")],
    )
    .await;
    assert_eq!(malformed.status, 429);
    let lookups_after = metric(
        &String::from_utf8_lossy(&get(&gw.url("/patgate/metrics"), &[]).await.body),
        "patgate_store_lookups_total",
    );
    assert_eq!(
        lookups_before, lookups_after,
        "a limited address caused database queries"
    );

    // A cached valid token keeps working from the same address; an uncached one waits.
    assert_eq!(
        get(&gw.url("/x"), &[("x-deploy-personal-token", &good)])
            .await
            .status,
        200
    );
    assert_eq!(
        get(
            &gw.url("/x"),
            &[("x-deploy-personal-token", &not_yet_cached)]
        )
        .await
        .status,
        429
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_still_applies_when_the_postgres_feed_connection_is_killed() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let (id, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let auth = [("x-deploy-personal-token", token.as_str())];
    assert_eq!(get(&gw.url("/x"), &auth).await.status, 200);

    // Kill the replica's LISTEN connection, as a failover or a firewall would.
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let killed: Vec<(bool,)> = sqlx::query_as(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(&name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "found the listener connection");
    gw.revoke(&id).await;
    let took = within(Duration::from_millis(1500), || async {
        get(&gw.url("/x"), &auth).await.status == 401
    })
    .await;
    assert!(took.is_some(), "revocation missed while the feed was down");
    gw.shutdown().await;
}
