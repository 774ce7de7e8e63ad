//! The users list counts live tokens only: a revoked token, an expired one and one
//! replaced by a rotation whose grace is over are not counted, on SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::api::as_user;
use common::*;
use patgate::core::time::now;
use patgate::core::token::Expiration;
use patgate::store::NewToken;

on_both_backends!(the_users_list_counts_only_tokens_that_still_work);

const DAY: i64 = 86_400;

async fn token_count(gw: &Gateway, user: &str) -> (serde_json::Value, serde_json::Value) {
    let listed = as_user(
        "GET",
        &gw.url(&format!("/patgate/api/v1/users?search={user}")),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let one = as_user(
        "GET",
        &gw.url(&format!("/patgate/api/v1/users/{user}")),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(one.status, 200, "{:?}", one.body);
    (
        listed.json()["users"][0]["tokens"].clone(),
        one.json()["tokens"].clone(),
    )
}

async fn the_users_list_counts_only_tokens_that_still_work(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let api = gw.api().unwrap();

    gw.create_token("carol", "works", Expiration::Days30).await;
    gw.create_token("carol", "forever", Expiration::Never).await;
    let (revoked, _) = gw
        .create_token("carol", "revoked", Expiration::Days30)
        .await;
    gw.revoke(&revoked).await;
    // Made 31 days ago with a 30-day expiry: expired a day ago.
    let made = now() - 31 * DAY;
    let expired = NewToken {
        username: "carol",
        name: "expired",
        created_at: made,
        expires_at: Some(made + 30 * DAY),
        ..NewToken::default()
    };
    api.store
        .create_token_with(&expired, &api.hasher.hash(b"dpat_expired_for_the_test"))
        .await
        .unwrap();
    // Rotated with no grace: the old one stops at once, its successor counts.
    let (rotated, _) = gw
        .create_token("carol", "rotated", Expiration::Days30)
        .await;
    let successor = NewToken {
        username: "carol",
        name: "rotated",
        created_at: now(),
        expires_at: Some(now() + 30 * DAY),
        ..NewToken::default()
    };
    api.store
        .rotate_token(
            &rotated,
            &successor,
            &api.hasher.hash(b"dpat_successor_for_the_test"),
            0,
        )
        .await
        .unwrap();

    // Live: works, forever, and the rotated token's successor.
    let (listed, one) = token_count(&gw, "carol").await;
    assert_eq!(listed, 3, "the users list counts live tokens only");
    assert_eq!(one, 3, "one user's answer counts live tokens only");

    // A rotation with grace: both work until the grace is over, so both count.
    let (graced, _) = gw.create_token("carol", "graced", Expiration::Days30).await;
    let next = NewToken {
        username: "carol",
        name: "graced",
        created_at: now(),
        expires_at: Some(now() + 30 * DAY),
        ..NewToken::default()
    };
    api.store
        .rotate_token(
            &graced,
            &next,
            &api.hasher.hash(b"dpat_graced_for_the_test"),
            3600,
        )
        .await
        .unwrap();
    assert_eq!(token_count(&gw, "carol").await, (5.into(), 5.into()));
    gw.shutdown().await;
}
