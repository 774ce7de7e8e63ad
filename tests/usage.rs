//! What each token's owner sees of its use, end to end on SQLite and PostgreSQL:
//! requests counted on the fast path (a plain-http Deploy) and the general path (an
//! https Deploy), from two client addresses behind a trusted proxy, the last refusal,
//! two replicas adding up, and day counts pruned after 90 days with a moved clock.

#[macro_use]
mod common;

use std::time::Duration;

use common::api::as_user;
use common::tls::{acceptor, self_signed};
use common::*;
use patgate::cli::{Admin, CreateArgs, TokenCommand};
use patgate::core::token::Expiration;
use serde_json::Value;

on_both_backends!(
    the_usage_shows_each_request_both_addresses_and_the_last_refusal,
    two_replicas_add_up,
    day_counts_are_kept_90_days,
);

const DAY: i64 = 86_400;
/// The usage writer flushes every 5 s.
const FLUSHED: Duration = Duration::from_secs(8);

/// Which of the gateway's two request paths a setup exercises.
#[derive(Debug, Clone, Copy)]
enum Route {
    Fast,
    General,
}

/// A Deploy stand-in for `route` and the gateway in front of it, believing
/// `X-Forwarded-For` from loopback.
async fn start(db: &TestDb, route: Route) -> (Upstream, Gateway) {
    let mut all = vec![("PATGATE_TRUSTED_PROXIES", "127.0.0.1".to_string())];
    let (upstream, url) = match route {
        Route::Fast => {
            let upstream = Upstream::start().await;
            let url = upstream.url();
            (upstream, url)
        }
        Route::General => {
            let dir = db.dir.path().join(format!("tls-{}", random_suffix()));
            std::fs::create_dir_all(&dir).unwrap();
            let (cert, key) = self_signed(&dir, "deploy");
            let upstream = Upstream::start_with(Some(acceptor(&cert, &key))).await;
            all.push((
                "PATGATE_UPSTREAM__CA_FILE",
                cert.to_str().unwrap().to_string(),
            ));
            let url = upstream.url().replace("127.0.0.1", "localhost");
            (upstream, url)
        }
    };
    let env: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gateway::start(config(db, &url, &env)).await;
    (upstream, gw)
}

/// A token of alice's with `scope`; returns (id, token).
async fn create(gw: &Gateway, name: &str, scope: &str) -> (String, String) {
    let out = patgate::cli::run_admin(
        &gw.config,
        Admin::Token(TokenCommand::Create(CreateArgs {
            user: "alice".into(),
            name: name.into(),
            expires: Expiration::Days30,
            source: patgate::store::UserSource::Internal,
            email: None,
            scope: scope.parse().unwrap(),
            allow_from: Vec::new(),
            json: true,
        })),
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    (
        v["id"].as_str().unwrap().into(),
        v["token"].as_str().unwrap().into(),
    )
}

async fn usage_as(gw: &Gateway, user: &str, id: &str) -> Answer {
    let url = gw.url(&format!("/patgate/api/v1/tokens/{id}/usage"));
    as_user("GET", &url, user, &format!("{user}-pw"), None).await
}

/// Today's count in a usage answer.
fn today(usage: &Value) -> i64 {
    usage["days"][29]["requests"].as_i64().unwrap_or(-1)
}

fn today_date() -> String {
    patgate::core::time::rfc3339(patgate::core::time::now())[..10].to_string()
}

async fn the_usage_shows_each_request_both_addresses_and_the_last_refusal(db: TestDb) {
    for route in [Route::Fast, Route::General] {
        let (upstream, gw) = start(&db, route).await;
        let (id, token) = create(&gw, &format!("{route:?}-ci"), "read").await;
        let fresh = usage_as(&gw, "alice", &id).await;
        assert_eq!(fresh.status, 200, "{:?}", fresh.body);
        let fresh = fresh.json();
        assert_eq!(fresh["days"].as_array().unwrap().len(), 30);
        assert!(fresh["addresses"].as_array().unwrap().is_empty());
        assert!(fresh["last_refusal"].is_null());

        let (first, second) = ("192.0.2.10", "198.51.100.20");
        for from in [first, first, first, first, second, second, second] {
            let answer = send(
                "GET",
                &gw.url("/api/v1/deployit"),
                &[
                    ("x-deploy-personal-token", &token),
                    ("x-forwarded-for", from),
                ],
            )
            .await;
            assert_eq!(answer.status, 200, "{route:?}: {:?}", answer.body);
        }
        // A read-only token may not POST: refused, and not counted.
        let before = upstream.count();
        let refused = send(
            "POST",
            &gw.url("/api/v1/deployit"),
            &[
                ("x-deploy-personal-token", &token),
                ("x-forwarded-for", first),
            ],
        )
        .await;
        assert_eq!(refused.status, 403);
        assert_eq!(refused.error_code(), "scope_denied");
        assert_eq!(upstream.count(), before);

        let shown = within(FLUSHED, || async {
            let usage = usage_as(&gw, "alice", &id).await.json();
            today(&usage) == 7 && !usage["last_refusal"].is_null()
        })
        .await;
        let usage = usage_as(&gw, "alice", &id).await.json();
        assert!(shown.is_some(), "{route:?}: {usage}");
        let days = usage["days"].as_array().unwrap();
        assert_eq!(days[29]["date"], today_date());
        assert!(days[..29].iter().all(|d| d["requests"] == 0), "{usage}");
        assert!(days[0]["date"].as_str().unwrap() < days[1]["date"].as_str().unwrap());
        let mut ips: Vec<&str> = usage["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["ip"].as_str().unwrap())
            .collect();
        ips.sort();
        assert_eq!(ips, vec![first, second], "{usage}");
        for address in usage["addresses"].as_array().unwrap() {
            assert!(address["first_seen"].as_str().unwrap().ends_with('Z'));
            assert!(address["first_seen"].as_str() <= address["last_seen"].as_str());
        }
        assert_eq!(usage["last_refusal"]["code"], "scope_denied");
        assert!(usage["last_refusal"]["at"].as_str().unwrap().ends_with('Z'));

        // Someone else's token and an unknown id answer alike; an administrator sees it.
        let other = usage_as(&gw, "bob", &id).await;
        assert_eq!(other.status, 404);
        let unknown = usage_as(&gw, "alice", "nosuchtoken").await;
        assert_eq!(unknown.status, 404);
        assert_eq!(other.json()["error"], unknown.json()["error"]);
        assert_eq!(
            usage_as(&gw, "admin", &id).await.json()["days"][29]["requests"],
            7
        );
        gw.shutdown().await;
    }
}

async fn two_replicas_add_up(db: TestDb) {
    let (_upstream, one) = start(&db, Route::Fast).await;
    let two = Gateway::start(one.config.clone()).await;
    let (id, token) = create(&one, "shared", "full").await;
    for (gw, n) in [(&one, 3), (&two, 4)] {
        for _ in 0..n {
            let answer = get(&gw.url("/x"), &[("x-deploy-personal-token", &token)]).await;
            assert_eq!(answer.status, 200);
        }
    }
    let added = within(FLUSHED, || async {
        today(&usage_as(&one, "alice", &id).await.json()) == 7
    })
    .await;
    let usage = usage_as(&two, "alice", &id).await.json();
    assert!(added.is_some(), "{usage}");
    assert_eq!(today(&usage), 7);
}

async fn day_counts_are_kept_90_days(db: TestDb) {
    let (_upstream, gw) = start(&db, Route::Fast).await;
    let (id, token) = create(&gw, "old", "full").await;
    for _ in 0..2 {
        get(&gw.url("/x"), &[("x-deploy-personal-token", &token)]).await;
    }
    let counted = within(FLUSHED, || async {
        today(&usage_as(&gw, "alice", &id).await.json()) == 2
    })
    .await;
    assert!(counted.is_some());
    let api = gw.api().unwrap();
    let now = patgate::core::time::now();
    let stored = |api: std::sync::Arc<patgate::api::Api>| {
        let id = id.clone();
        async move { api.store.token_usage(&id, 0).await.unwrap().days }
    };
    // Today is the 90th day kept 89 days from now, and pruned the day after.
    let kept = patgate::app::housekeeping::prune_usage(&api, now + 89 * DAY).await;
    assert_eq!(kept, 0);
    assert_eq!(stored(api.clone()).await.len(), 1);
    let pruned = patgate::app::housekeeping::prune_usage(&api, now + 90 * DAY).await;
    assert_eq!(pruned, 1);
    assert!(stored(api.clone()).await.is_empty());
    // The token's other usage stays.
    let usage = usage_as(&gw, "alice", &id).await.json();
    assert_eq!(today(&usage), 0);
    assert_eq!(usage["addresses"][0]["ip"], "127.0.0.1");
}
