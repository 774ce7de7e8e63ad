//! The API held to its OpenAPI document: a standard validator (openapi-spec-validator)
//! accepts the document the gateway serves, and a property-based tester (schemathesis,
//! both installed by scripts/openapi-setup.sh) sends requests generated from it, as an
//! ordinary user and as an administrator, on a seeded database. Neither may find a
//! server error, an answer the document does not describe (status, content type or
//! body), a valid request refused for a reason the document does not give, or an
//! invalid one accepted. How it runs: docs/api-contract.md.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use common::api::as_user;
use common::smtp::{Mode, SmtpServer};
use common::*;
use serde_json::json;

const LEAKED_SECRET: &str = "contract-test-leak-secret-0123456789abcdef";

/// What schemathesis checks of every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_schema_conformance,positive_data_acceptance,negative_data_rejection";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The checkers' virtual environment, installed when it is missing.
fn venv_bin(name: &str) -> PathBuf {
    let bin = root().join("tests/openapi/.venv/bin").join(name);
    if !bin.exists() {
        let status = std::process::Command::new("bash")
            .arg(root().join("scripts/openapi-setup.sh"))
            .status()
            .expect("bash runs scripts/openapi-setup.sh");
        assert!(status.success(), "scripts/openapi-setup.sh failed");
    }
    bin
}

/// A gateway in front of the Deploy stand-in, with an SMTP server to send through and
/// a database holding what a working installation holds: users who signed in, their
/// tokens, an e-mail address, an SMTP server item chosen for notifications.
struct Seeded {
    _upstream: Upstream,
    _smtp: SmtpServer,
    gw: Gateway,
    _db: TestDb,
}

async fn seeded(db: TestDb) -> Seeded {
    let upstream = Upstream::start().await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_LEAKED__SECRET", LEAKED_SECRET),
            // Generated sign-ins fail by the hundred; the limits are not under test here.
            ("PATGATE_SIGNIN__FAILURE_BURST", "1000000"),
            ("PATGATE_SIGNIN__FAILURES_PER_MINUTE", "1000000"),
            ("PATGATE_LOG__LEVEL", "error"),
        ],
    ))
    .await;
    let api = |path: &str| gw.url(&format!("/patgate/api/v1{path}"));
    for (user, password) in [
        ("alice", "alice-pw"),
        ("bob", "bob-pw"),
        ("admin", "admin-pw"),
    ] {
        let me = as_user("GET", &api("/me"), user, password, None).await;
        assert_eq!(me.status, 200, "{:?}", me.body);
        for (name, expiration) in [("ci", "30d"), ("laptop", "never")] {
            let body = json!({"name": name, "expiration": expiration});
            let made = as_user("POST", &api("/tokens"), user, password, Some(&body)).await;
            assert_eq!(made.status, 201, "{:?}", made.body);
        }
    }
    let email = json!({"email": "alice@example.com"});
    let put = as_user("PUT", &api("/me"), "alice", "alice-pw", Some(&email)).await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    let item = json!({"name": "MAIN", "host": "127.0.0.1", "port": smtp.port,
        "from_address": "Deploy <deploy@example.com>", "test_address": "ops@example.com"});
    let created = as_user(
        "POST",
        &api("/smtp-servers"),
        "admin",
        "admin-pw",
        Some(&item),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let settings = json!({"notifications": {"enabled": true,
        "smtp_server_id": created.json()["id"], "days_before": 7}});
    let put = as_user(
        "PUT",
        &api("/settings"),
        "admin",
        "admin-pw",
        Some(&settings),
    )
    .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    Seeded {
        _upstream: upstream,
        _smtp: smtp,
        gw,
        _db: db,
    }
}

/// Runs schemathesis against the gateway as `user`; fails with its report on any
/// finding.
async fn run_schemathesis(gw: &Gateway, user: &str, password: &str) {
    let schemathesis = venv_bin("schemathesis");
    let started = Instant::now();
    let base = gw.url("");
    let report = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(&schemathesis)
        .arg("--config-file")
        .arg(root().join("tests/openapi/schemathesis.toml"))
        .args(["--no-color", "run", "--checks", CHECKS, "--url", &base])
        .arg("--report-dir")
        .arg(report.path())
        .arg(gw.url("/patgate/api/v1/openapi.json"))
        // Its cache goes there too, not into the work tree.
        .current_dir(report.path())
        .env("SCHEMATHESIS_HOOKS", root().join("tests/openapi/hooks.py"))
        .env("PATGATE_CONTRACT_BASE", &base)
        .env("PATGATE_CONTRACT_USER", user)
        .env("PATGATE_CONTRACT_PASSWORD", password)
        .env("PATGATE_CONTRACT_LEAKED_SECRET", LEAKED_SECRET)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("schemathesis runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "schemathesis as {user}: {:.0?}\n{}",
        started.elapsed(),
        text.lines()
            .rev()
            .take(12)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found the API untrue to its document as {user}:\n{text}"
    );
    // A run that tested little proves little.
    let generated: usize = text
        .lines()
        .find_map(|l| l.trim().split_once(" generated, ")?.0.parse().ok())
        .unwrap_or(0);
    assert!(generated >= 1000, "only {generated} test cases:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_validator_accepts_the_document() {
    let stack = seeded(TestDb::new(Backend::Sqlite).await.unwrap()).await;
    let doc = get(&stack.gw.url("/patgate/api/v1/openapi.json"), &[]).await;
    assert_eq!(doc.status, 200);
    assert!(doc.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &doc.body).unwrap();
    let out = tokio::process::Command::new(venv_bin("openapi-spec-validator"))
        .arg(&file)
        .output()
        .await
        .expect("openapi-spec-validator runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains(": OK"), "{text}");

    // Operation ids are unique and say resource and action.
    let doc = doc.json();
    let mut ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "operation ids repeat: {ids:?}");
    for id in [
        "tokens_list",
        "users_list",
        "smtp_servers_create",
        "audit_list",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    // Where the routes it does not describe are specified.
    let description = doc["info"]["description"].as_str().unwrap();
    for named in [
        "/patgate/scim/v2",
        "RFC 7644",
        "/patgate/sso/login",
        "/patgate/auth",
    ] {
        assert!(description.contains(named), "{named}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_user_finds_the_api_true_to_its_document() {
    let stack = seeded(TestDb::new(Backend::Sqlite).await.unwrap()).await;
    run_schemathesis(&stack.gw, "alice", "alice-pw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_finds_the_api_true_to_its_document_on_sqlite() {
    let stack = seeded(TestDb::new(Backend::Sqlite).await.unwrap()).await;
    run_schemathesis(&stack.gw, "admin", "admin-pw").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_finds_the_api_true_to_its_document_on_postgresql() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let stack = seeded(db).await;
    run_schemathesis(&stack.gw, "admin", "admin-pw").await;
}
