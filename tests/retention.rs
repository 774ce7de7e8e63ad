//! The audit log keeps `audit.retention` (a year unless set), on SQLite and PostgreSQL:
//! entries older than that, refusal counts included, are gone from
//! `GET /patgate/api/v1/audit` after the housekeeping runs while recent ones stay; a
//! long backlog goes in one round; a reload changes the retention; a retention that
//! cannot be used stops the gateway at start with the key named.

#[macro_use]
mod common;

use common::api::as_user;
use common::*;
use patgate::app::housekeeping;
use patgate::core::time::now;
use patgate::store::AuditEvent;
use serde_json::{json, Value};

on_both_backends!(
    entries_past_a_year_go_and_recent_ones_stay,
    a_long_backlog_goes_in_one_round,
    a_reload_changes_the_retention,
);

const DAY: i64 = 86_400;

/// The audit log as an administrator sees it, filtered by `query`.
async fn audit(gw: &Gateway, query: &str) -> Value {
    let url = gw.url(&format!("/patgate/api/v1/audit?per_page=200&{query}"));
    let answer = as_user("GET", &url, "admin", "admin-pw", None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.json()
}

/// The `mark` of every entry that has one, newest first.
async fn marks(gw: &Gateway) -> Vec<String> {
    audit(gw, "").await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["detail"]["mark"].as_str().map(str::to_string))
        .collect()
}

/// Writes an entry `days_ago` days back, as the gateway would have then.
async fn write(gw: &Gateway, action: &'static str, days_ago: i64, mark: &str) {
    let event = AuditEvent {
        action,
        ip: Some("192.0.2.7".into()),
        detail: Some(json!({"reason": "unknown_token", "count": 3, "mark": mark})),
        ..AuditEvent::default()
    };
    gw.api()
        .unwrap()
        .store
        .audit_at(now() - days_ago * DAY, event)
        .await
        .unwrap();
}

async fn start(db: &TestDb, extra: &[(&str, &str)]) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(db, &upstream.url(), extra)).await;
    (upstream, gw)
}

async fn entries_past_a_year_go_and_recent_ones_stay(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    write(&gw, "token.refused", 400, "400 days").await;
    write(&gw, "signin.failed", 366, "366 days").await;
    write(&gw, "token.created", 364, "364 days").await;
    write(&gw, "token.refused", 10, "10 days").await;
    write(&gw, "signin.failed", 0, "today").await;

    // The gateway's own round at start may have pruned them already; after one, they
    // are gone either way.
    housekeeping::round(&gw.api().unwrap()).await;
    assert_eq!(marks(&gw).await, ["today", "10 days", "364 days"]);
    // The count that stays is whole.
    let listed = audit(&gw, "action=token.refused").await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["entries"][0]["detail"]["count"], 3);
    // Another round (or another replica's) finds nothing more to prune.
    housekeeping::round(&gw.api().unwrap()).await;
    assert_eq!(marks(&gw).await, ["today", "10 days", "364 days"]);
}

async fn a_long_backlog_goes_in_one_round(db: TestDb) {
    let (_upstream, gw) = start(&db, &[("PATGATE_AUDIT__RETENTION", "30d")]).await;
    // More than two statements' worth of refusal counts from 26 to 29 days ago, and
    // one from 20 days ago: five days on, the first are past the retention.
    for i in 0..2_345 {
        write(&gw, "token.refused", 26 + i % 4, "old").await;
    }
    write(&gw, "token.refused", 20, "20 days").await;
    assert_eq!(audit(&gw, "action=token.refused").await["total"], 2_346);

    let pruned = housekeeping::prune_audit(&gw.api().unwrap(), now() + 5 * DAY).await;
    assert_eq!(pruned, 2_345);
    let listed = audit(&gw, "action=token.refused").await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["entries"][0]["detail"]["mark"], "20 days");
}

async fn a_reload_changes_the_retention(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    write(&gw, "token.refused", 10, "10 days").await;
    write(&gw, "token.refused", 6, "6 days").await;
    housekeeping::round(&gw.api().unwrap()).await;
    assert_eq!(marks(&gw).await, ["6 days", "10 days"]);

    let shorter = config(&db, &upstream.url(), &[("PATGATE_AUDIT__RETENTION", "7d")]);
    let reloaded = gw
        .running
        .as_ref()
        .unwrap()
        .reloader
        .reload(shorter)
        .await
        .unwrap();
    assert_eq!(reloaded.applied, ["audit.retention"]);
    assert!(reloaded.needs_restart.is_empty(), "{reloaded:?}");
    housekeeping::round(&gw.api().unwrap()).await;
    assert_eq!(marks(&gw).await, ["6 days"]);
}

#[tokio::test]
async fn a_retention_that_cannot_be_used_stops_the_start_naming_the_key() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let file = config_file(&db, "http://127.0.0.1:9", "127.0.0.1:0");
    let path = file.to_str().unwrap();
    for (value, says) in [
        ("a year", "write a duration like 30s or 5m"),
        ("0", "at least 1d"),
        ("12h", "at least 1d"),
        ("off", "entries are always pruned"),
    ] {
        for command in ["serve", "check-config"] {
            let (code, _, stderr) = run_in(
                std::path::Path::new("."),
                &["--config", path, command],
                &[("PATGATE_AUDIT__RETENTION", value)],
            )
            .await;
            assert_eq!(code, 2, "{command} {value}: {stderr}");
            assert!(
                stderr.contains(&format!("audit.retention {value:?}")) && stderr.contains(says),
                "{command} {value}: {stderr}"
            );
            assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        }
    }
    // Written in the file, the same.
    let text = std::fs::read_to_string(&file).unwrap() + "audit:\n  retention: 6h\n";
    std::fs::write(&file, text).unwrap();
    let (code, _, stderr) = run_cli(&file, &["check-config"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("audit.retention \"6h\""), "{stderr}");
}
