//! What an operator's Prometheus reads: `/patgate/metrics` after traffic of every route
//! class passes `promtool check metrics` and counts what happened; the alert rules in
//! `deploy/prometheus-rules.yaml` pass `promtool check rules`; the rules and the Grafana
//! dashboard in `deploy/` ask only for metrics the gateway exports.
//!
//! promtool comes from Debian's prometheus package (`scripts/prometheus-setup.sh`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use common::*;
use patgate::core::token::Expiration;
use tokio::io::AsyncWriteExt;

fn promtool() -> Option<&'static str> {
    if Path::new("/usr/bin/promtool").exists() {
        return Some("/usr/bin/promtool");
    }
    assert!(
        std::env::var("CI").is_err(),
        "promtool is missing: scripts/prometheus-setup.sh installs it, and CI runs it"
    );
    eprintln!("skipping: promtool is not installed (bash scripts/prometheus-setup.sh)");
    None
}

fn value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in\n{text}"))
}

/// The metric names a scrape exports, histograms by their family name.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The `patgate_…` names an expression text asks for, with histogram suffixes taken off.
fn asked_for(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("patgate_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        names.insert(family);
    }
    names
}

/// A scrape after a token request, a passthrough, a refusal, an API call, a page, a
/// forward-auth check and a gateway route.
async fn scrape_after_traffic() -> (String, Gateway, Upstream, TestDb) {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[("PATGATE_WORKERS", "1")])).await;
    let (_, token) = gw
        .create_token("alice", "metrics", Expiration::Days30)
        .await;
    let auth = [("x-deploy-personal-token", token.as_str())];
    assert_eq!(
        get(&gw.url("/deployit/repository/ci"), &auth).await.status,
        200
    );
    assert_eq!(
        get(&gw.url("/deployit/repository/ci"), &[]).await.status,
        200
    );
    let unknown = patgate::core::token::PlainToken::generate();
    let refused = get(
        &gw.url("/deployit/server/info"),
        &[("x-deploy-personal-token", unknown.expose())],
    )
    .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        get(&gw.url("/patgate/api/v1/tokens"), &auth).await.status,
        200
    );
    assert_eq!(get(&gw.url("/patgate/signin"), &[]).await.status, 200);
    get(&gw.url("/patgate/auth"), &auth).await;
    assert_eq!(get(&gw.url("/patgate/healthz"), &[]).await.status, 200);
    let text =
        String::from_utf8(get(&gw.url("/patgate/metrics"), &[]).await.body.to_vec()).unwrap();
    (text, gw, upstream, db)
}

#[tokio::test]
async fn the_metrics_pass_promtool_and_count_every_route_class() {
    let Some(promtool) = promtool() else {
        return;
    };
    let (text, gw, _upstream, _db) = scrape_after_traffic().await;
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .await
        .unwrap();
    let checked = child.wait_with_output().await.unwrap();
    assert!(
        checked.status.success() && checked.stdout.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let count = |labels: &str| {
        value(
            &text,
            &format!("patgate_request_duration_seconds_count{{{labels}}}"),
        )
    };
    assert_eq!(count("route=\"token\",outcome=\"ok\""), 1.0, "{text}");
    assert_eq!(count("route=\"token\",outcome=\"refused\""), 1.0, "{text}");
    assert_eq!(count("route=\"passthrough\",outcome=\"ok\""), 1.0, "{text}");
    assert_eq!(count("route=\"api\",outcome=\"ok\""), 1.0, "{text}");
    assert_eq!(count("route=\"ui\",outcome=\"ok\""), 1.0, "{text}");
    assert!(
        count("route=\"forward_auth\",outcome=\"refused\"")
            + count("route=\"forward_auth\",outcome=\"ok\"")
            == 1.0,
        "{text}"
    );
    assert!(count("route=\"gateway\",outcome=\"ok\"") >= 1.0, "{text}");
    // Deploy answered the token request and the passthrough.
    assert_eq!(value(&text, "patgate_upstream_wait_seconds_count"), 2.0);
    assert_eq!(
        value(
            &text,
            "patgate_token_lookup_seconds_count{backend=\"sqlite\"}"
        ),
        2.0,
        "one lookup for the valid token, one for the unknown one: {text}"
    );
    // The scrape's own connection is open while it is answered.
    assert!(value(&text, "patgate_client_connections") >= 1.0);
    assert!(value(&text, "patgate_upstream_pool_connections") >= 1.0);
    assert!(value(&text, "patgate_invalidation_feed_lag_seconds") < 5.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_alert_rules_pass_promtool_and_the_dashboard_asks_only_for_exported_metrics() {
    let Some(promtool) = promtool() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules = root.join("deploy/prometheus-rules.yaml");
    let checked = tokio::process::Command::new(promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .await
        .unwrap();
    assert!(
        checked.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let (text, gw, _upstream, _db) = scrape_after_traffic().await;
    let exported = exported(&text);
    let rules_text = std::fs::read_to_string(&rules).unwrap();
    let asked = asked_for(&rules_text);
    assert!(asked.len() >= 5, "{asked:?}");
    let unknown: Vec<_> = asked.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the rules ask for {unknown:?}, which are not exported"
    );

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut expressions = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            expressions.push_str(target["expr"].as_str().unwrap());
            expressions.push('\n');
        }
    }
    let asked = asked_for(&expressions);
    assert!(asked.len() >= 10, "{asked:?}");
    let unknown: Vec<_> = asked.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard asks for {unknown:?}, which are not exported"
    );
    gw.shutdown().await;
}
