//! Deploy's own personal access tokens beside the gateway's, and what the gateway tells
//! a client about its token's expiry, on the fast path and the general path alike and
//! on both databases.
//!
//! Deploy 25.3 and later issues tokens of its own, sent exactly as the gateway's are
//! (`Basic :<token>` or `x-deploy-personal-token`). A value without the gateway's
//! `dpat_` prefix is Deploy's to judge: forwarded untouched (`deploy_tokens: forward`,
//! the default) or refused (`deploy_tokens: refuse`). Every request is sent as exact
//! bytes, once first on its connection (a token request takes the fast path) and once
//! behind a gateway route (the connection is then on the general path); Deploy is a
//! scripted server that records what it receives.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::scripted::{exchange, status, Scripted, PATHS};
use common::*;
use patgate::core::token::Expiration;

/// A token as Deploy 25.3 issues them: not in the gateway's format.
const DEPLOY_TOKEN: &str = "dXBAbmF0aXZlLXRva2VuLTQyLWZyb20tZGVwbG95";

fn deploy(_method: &str, path: &str) -> (Vec<u8>, bool) {
    let body = format!("path={path}");
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    (answer.into_bytes(), false)
}

fn request(credential: &str) -> String {
    format!("GET /deployit/server/info HTTP/1.1\r\nHost: gw.example\r\n{credential}Connection: close\r\n\r\n")
}

/// Both spellings of a token, as header lines.
fn spellings(token: &str) -> [(&'static str, String); 2] {
    [
        (
            "Basic :token",
            format!(
                "Authorization: Basic {}\r\n",
                STANDARD.encode(format!(":{token}"))
            ),
        ),
        (
            "token header",
            format!("x-deploy-personal-token: {token}\r\n"),
        ),
    ]
}

async fn deploy_tokens_case(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let deploy = Scripted::start(deploy).await;

    // forward (the default): Deploy receives the credential exactly as it was sent.
    let gw = Gateway::start(config(&db, &deploy.url(), &[("PATGATE_WORKERS", "1")])).await;
    let (_, ours) = gw.create_token("alice", "ours", Expiration::Days30).await;
    for (spelling, line) in spellings(DEPLOY_TOKEN) {
        for (path, before) in PATHS {
            let answer = exchange(gw.addr, before, &request(&line)).await;
            assert_eq!(status(&answer), "200", "{spelling}, {path}: {answer}");
            let head = deploy.last_head();
            let (name, value) = line.trim_end().split_once(": ").unwrap();
            assert_eq!(
                header(&head, name),
                Some(value),
                "{spelling}, {path}: Deploy receives the credential as sent: {head}"
            );
            let lower = head.to_ascii_lowercase();
            assert!(
                !lower.contains("x-deploy-user"),
                "{spelling}, {path}: Deploy judges its own token, the gateway asserts nobody: {head}"
            );
            assert!(
                !answer.to_ascii_lowercase().contains("x-deploy-token-expiration"),
                "{spelling}, {path}: the gateway knows nothing of a Deploy token's expiry: {answer}"
            );
        }
    }
    // A value with the gateway's prefix is the gateway's, however wrong: refused, and
    // never forwarded.
    let mut wrong = ours.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let heads_before = deploy.connections();
    for (spelling, line) in spellings(&wrong) {
        for (path, before) in PATHS {
            let answer = exchange(gw.addr, before, &request(&line)).await;
            assert_eq!(status(&answer), "401", "{spelling}, {path}: {answer}");
            assert!(
                answer.contains("malformed_token"),
                "{spelling}, {path}: {answer}"
            );
        }
    }
    assert_eq!(
        deploy.connections(),
        heads_before,
        "a bad gateway token reached Deploy"
    );
    let metrics =
        String::from_utf8(get(&gw.url("/patgate/metrics"), &[]).await.body.to_vec()).unwrap();
    assert_eq!(
        metric(&metrics, "patgate_proxied_total{auth=\"deploy_token\"}"),
        4
    );
    gw.shutdown().await;

    // refuse: Deploy's tokens stop at the gateway, with their own code; the gateway's
    // own tokens work as before.
    let gw = Gateway::start(config(
        &db,
        &deploy.url(),
        &[
            ("PATGATE_WORKERS", "1"),
            ("PATGATE_DEPLOY_TOKENS", "refuse"),
        ],
    ))
    .await;
    let heads_before = deploy.connections();
    for (spelling, line) in spellings(DEPLOY_TOKEN) {
        for (path, before) in PATHS {
            let answer = exchange(gw.addr, before, &request(&line)).await;
            assert_eq!(status(&answer), "401", "{spelling}, {path}: {answer}");
            assert!(
                answer.contains("\"error\":\"deploy_token_refused\"")
                    && answer.contains("deploy_tokens: refuse"),
                "{spelling}, {path}: {answer}"
            );
        }
    }
    assert_eq!(
        deploy.connections(),
        heads_before,
        "a refused Deploy token reached Deploy"
    );
    for (spelling, line) in spellings(&ours) {
        for (path, before) in PATHS {
            let answer = exchange(gw.addr, before, &request(&line)).await;
            assert_eq!(status(&answer), "200", "{spelling}, {path}: {answer}");
            assert!(deploy.last_head().contains("x-deploy-user: alice\r\n"));
        }
    }
    let metrics =
        String::from_utf8(get(&gw.url("/patgate/metrics"), &[]).await.body.to_vec()).unwrap();
    assert_eq!(
        metric(
            &metrics,
            "patgate_request_refusals_total{reason=\"deploy_token_refused\"}"
        ),
        4
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn deploys_own_tokens_are_forwarded_untouched_or_refused_as_configured() {
    deploy_tokens_case(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_deploys_own_tokens_are_forwarded_untouched_or_refused_as_configured() {
    deploy_tokens_case(Backend::Postgres).await;
}

/// The value of header `name` (lower case) in a raw answer, if any.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or_default();
    head.split("\r\n").find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn expiry_case(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let deploy = Scripted::start(deploy).await;
    let gw = Gateway::start(config(&db, &deploy.url(), &[("PATGATE_WORKERS", "1")])).await;
    let (_, week) = gw.create_token("alice", "week", Expiration::Days7).await;
    let (_, month) = gw.create_token("alice", "month", Expiration::Days30).await;
    let (_, never) = gw.create_token("alice", "never", Expiration::Never).await;
    let listed = get(
        &gw.url("/patgate/api/v1/tokens"),
        &[("authorization", &basic("", &month))],
    )
    .await
    .json();
    let expires = |name: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .and_then(|t| t["expires_at"].as_str())
            .unwrap()
            .to_string()
    };
    for (path, before) in PATHS {
        // 30 days out: announced, no warning (the window is 7 days by default).
        let line = format!("x-deploy-personal-token: {month}\r\n");
        let answer = exchange(gw.addr, before, &request(&line)).await;
        assert_eq!(status(&answer), "200", "{path}: {answer}");
        assert_eq!(
            header(&answer, "x-deploy-token-expiration"),
            Some(expires("month").as_str()),
            "{path}: {answer}"
        );
        assert!(
            header(&answer, "x-deploy-token-expiration-warning").is_none(),
            "{path}: {answer}"
        );
        // 7 days out: within the window, so the answer warns.
        let line = format!("x-deploy-personal-token: {week}\r\n");
        let answer = exchange(gw.addr, before, &request(&line)).await;
        assert_eq!(
            header(&answer, "x-deploy-token-expiration"),
            Some(expires("week").as_str()),
            "{path}: {answer}"
        );
        let warning = header(&answer, "x-deploy-token-expiration-warning")
            .unwrap_or_else(|| panic!("{path}: no warning in {answer}"));
        assert!(
            warning.starts_with("this token expires in 6 days")
                || warning.starts_with("this token expires in 7 days"),
            "{path}: {warning}"
        );
        // Never: nothing to announce.
        let line = format!("x-deploy-personal-token: {never}\r\n");
        let answer = exchange(gw.addr, before, &request(&line)).await;
        assert_eq!(status(&answer), "200", "{path}: {answer}");
        assert!(
            header(&answer, "x-deploy-token-expiration").is_none(),
            "{path}: {answer}"
        );
        // Not token-authenticated: nothing either.
        let answer = exchange(gw.addr, before, &request("")).await;
        assert!(
            header(&answer, "x-deploy-token-expiration").is_none(),
            "{path}: {answer}"
        );
    }
    // The window follows the administrators' notifications.days_before.
    let api = gw.api().expect("the embedded gateway's API");
    let mut settings = api.store.notify_settings().await.unwrap();
    settings.reminder_days = vec![40];
    api.store
        .save_notify_settings(&settings, "admin")
        .await
        .unwrap();
    patgate::app::housekeeping::round(&api).await;
    for (path, before) in PATHS {
        let line = format!("x-deploy-personal-token: {month}\r\n");
        let answer = exchange(gw.addr, before, &request(&line)).await;
        let warning = header(&answer, "x-deploy-token-expiration-warning")
            .unwrap_or_else(|| panic!("{path}: no warning in {answer}"));
        assert!(
            warning.contains("days; create a new one"),
            "{path}: {warning}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn token_answers_say_when_the_token_expires_and_warn_within_the_window() {
    expiry_case(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_token_answers_say_when_the_token_expires_and_warn_within_the_window() {
    expiry_case(Backend::Postgres).await;
}
