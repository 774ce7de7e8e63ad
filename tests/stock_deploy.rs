//! A stock Deploy's view of the gateway: a stand-in that validates the gateway's JWTs
//! the way Deploy's OIDC `access-token` settings do, with an independent library (jose),
//! fetching the JWKS from the gateway. Every algorithm, the claims Deploy reads, the
//! refusals that prove the stand-in really validates, `check-deploy`, and both key
//! rotations under load with no valid request refused.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::deploy_jwt::{JwtDeploy, JwtDeployOptions};
use common::*;
use patgate::cli::{self, Admin, JwtKeyCommand, TokenKeyCommand};
use patgate::core::token::Expiration;

const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-shared";

/// A gateway in jwt mode in front of a validating stand-in.
struct Pair {
    deploy: JwtDeploy,
    gw: Gateway,
}

async fn pair(db: &TestDb, algorithm: &str, extra: &[(&str, &str)]) -> Pair {
    let port = free_port();
    let jwks = format!("http://127.0.0.1:{port}/patgate/.well-known/jwks.json");
    let deploy = JwtDeploy::start(JwtDeployOptions {
        jwks_url: (algorithm != "HS256").then(|| jwks.clone()),
        hs256_secret: (algorithm == "HS256").then(|| HS_SECRET.to_string()),
        issuer: "https://patgate.example".into(),
        audience: "deploy-prod".into(),
        algorithms: vec![algorithm.into()],
        username_claim: Some("preferred_username".into()),
        roles_claim: Some("groups".into()),
        admin_role: Some("deploy-admins".into()),
        role_permissions: Some(serde_json::json!({
            "deployers": {"": ["login"], "Applications/App1": ["read", "deploy#initial"]},
            "deploy-admins": {"": ["admin"]},
        })),
    })
    .await;
    let listen = format!("127.0.0.1:{port}");
    let mut settings = vec![
        ("PATGATE_LISTEN", listen.as_str()),
        ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__ALGORITHM", algorithm),
        (
            "PATGATE_UPSTREAM__IDENTITY__JWT__ISSUER",
            "https://patgate.example",
        ),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__AUDIENCE", "deploy-prod"),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__SECRET", HS_SECRET),
        (
            "PATGATE_UPSTREAM__IDENTITY__JWT__DEFAULT_ROLES",
            "deployers",
        ),
        (
            "PATGATE_UPSTREAM__IDENTITY__JWT__USER_ROLES__ALICE",
            "deploy-admins",
        ),
    ];
    settings.extend_from_slice(extra);
    let mut config = config(db, &deploy.url, &settings);
    config.upstream.identity.jwt.key_file = db.dir.path().join("no-such.key");
    let gw = Gateway::start(config).await;
    Pair { deploy, gw }
}

fn claims(jwt: &str) -> serde_json::Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_is_accepted_by_an_independent_validator_and_forgeries_are_not() {
    for algorithm in ["RS256", "EdDSA", "HS256"] {
        let db = TestDb::new(Backend::Sqlite).await.unwrap();
        let p = pair(&db, algorithm, &[]).await;
        if algorithm != "HS256" {
            let jwks = get(&p.gw.url("/patgate/.well-known/jwks.json"), &[])
                .await
                .json();
            assert_eq!(jwks["keys"][0]["alg"], algorithm);
            assert_eq!(
                jwks["keys"][0]["kty"],
                if algorithm == "RS256" { "RSA" } else { "OKP" }
            );
        }
        let (_, alice) = p.gw.create_token("alice", "ci", Expiration::Days30).await;
        let (_, bob) = p.gw.create_token("bob", "ci", Expiration::Days30).await;
        let answer = get(
            &p.gw.url("/deployit/repository/ci/Applications"),
            &[("authorization", &basic("", &alice))],
        )
        .await;
        assert_eq!(answer.status, 200, "{algorithm}: {:?}", answer.body);
        let seen = answer.json();
        assert_eq!(seen["user"], "alice", "{algorithm}");
        assert_eq!(
            seen["roles"],
            serde_json::json!(["deployers", "deploy-admins"]),
            "{algorithm}"
        );
        assert_eq!(seen["claims"]["sub"], "alice");
        assert!(seen["claims"]["jti"].as_str().is_some());
        let bob_seen = get(&p.gw.url("/x"), &[("x-deploy-personal-token", &bob)])
            .await
            .json();
        assert_eq!(bob_seen["user"], "bob");
        assert_eq!(bob_seen["roles"], serde_json::json!(["deployers"]));

        // Forgeries, sent to the stand-in directly: unsigned, and signed by another
        // gateway's key or for another audience.
        let minted = mint(&p.gw, "alice").await;
        let payload = minted.split('.').nth(1).unwrap();
        let none = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        let refused = p.deploy.get("/x", Some(&none)).await;
        assert_eq!(refused.status, 401, "{algorithm}: alg none");

        let other_db = TestDb::new(Backend::Sqlite).await.unwrap();
        let mut other_config = config(
            &other_db,
            &p.deploy.url,
            &[
                ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
                ("PATGATE_UPSTREAM__IDENTITY__JWT__ALGORITHM", algorithm),
                (
                    "PATGATE_UPSTREAM__IDENTITY__JWT__ISSUER",
                    "https://patgate.example",
                ),
                ("PATGATE_UPSTREAM__IDENTITY__JWT__AUDIENCE", "deploy-prod"),
                (
                    "PATGATE_UPSTREAM__IDENTITY__JWT__SECRET",
                    "another-secret-of-at-least-32-characters",
                ),
            ],
        );
        other_config.upstream.identity.jwt.key_file = other_db.dir.path().join("none.key");
        let other = Gateway::start(other_config).await;
        let (_, token) = other.create_token("alice", "x", Expiration::Days7).await;
        let answer = get(&other.url("/x"), &[("x-deploy-personal-token", &token)]).await;
        assert_eq!(
            answer.status, 401,
            "{algorithm}: another key: {:?}",
            answer.body
        );

        let mut audience_config = other.config.clone();
        audience_config.upstream.identity.jwt.audience = "another-deploy".into();
        audience_config.upstream.identity.jwt.secret = Some(HS_SECRET.into());
        audience_config.listen = "127.0.0.1:0".parse().unwrap();
        drop(other);
        let wrong_audience = Gateway::start(audience_config).await;
        let answer = get(
            &wrong_audience.url("/x"),
            &[("x-deploy-personal-token", &token)],
        )
        .await;
        assert_eq!(answer.status, 401, "{algorithm}: wrong audience");
        assert!(
            String::from_utf8_lossy(&answer.body).contains("ERR_"),
            "{:?}",
            answer.body
        );
        assert_eq!(
            p.deploy.stats().await["refused"].as_i64().unwrap(),
            3,
            "{algorithm}"
        );
    }
}

/// A JWT as the gateway mints it for `user` (through its identity settings).
async fn mint(gw: &Gateway, user: &str) -> String {
    let minter = patgate::identity::jwt::JwtMinter::start(
        &gw.config.upstream.identity.jwt,
        patgate::app::open_store(&gw.config).await.unwrap().0,
        Arc::new(patgate::core::sealed::Sealer::new(
            patgate::app::open_store(&gw.config)
                .await
                .unwrap()
                .1
                .raw_keys(),
        )),
    )
    .await
    .unwrap();
    let value = minter.bearer(&Arc::from(user), &[]).await.unwrap();
    value
        .to_str()
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_deploy_says_accepted_refused_or_unreachable() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let p = pair(&db, "RS256", &[]).await;
    let run = |config: patgate::config::Config, user: &str| {
        let user = user.to_string();
        async move { cli::run_admin(&config, Admin::CheckDeploy { user }).await }
    };
    let accepted = run(p.gw.config.clone(), "alice").await.unwrap();
    assert!(
        accepted.contains("accepted") && accepted.contains("as alice"),
        "{accepted}"
    );
    assert!(
        accepted.contains("is an administrator")
            || accepted.contains("treats them as an administrator"),
        "{accepted}"
    );
    // Deploy's own word on the roles the JWT mapped to, and what they grant.
    let lines: Vec<&str> = accepted.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "Deploy says alice has the roles: deployers, deploy-admins.",
            "Deploy says alice has the granted permissions: login, admin; on Applications/App1: read, deploy#initial.",
        ],
        "{accepted}"
    );
    let plain = run(p.gw.config.clone(), "bob").await.unwrap();
    assert!(
        plain.contains("does not treat them as an administrator"),
        "{plain}"
    );
    assert!(
        plain.contains("Deploy says bob has the roles: deployers.\n"),
        "{plain}"
    );
    let mut no_roles = p.gw.config.clone();
    no_roles.upstream.identity.jwt.default_roles.clear();
    let bare = run(no_roles, "bob").await.unwrap();
    assert!(
        bare.contains("Deploy says bob has no roles: the JWT carries none; give bob roles with upstream.identity.jwt.default_roles"),
        "{bare}"
    );
    assert!(
        bare.ends_with("Deploy says bob has no granted permissions."),
        "{bare}"
    );

    let mut wrong = p.gw.config.clone();
    wrong.upstream.identity.jwt.audience = "not-deploy".into();
    let refused = run(wrong, "alice").await.unwrap_err().to_string();
    assert!(
        refused.contains("refused") && refused.contains("HTTP 401") && refused.contains("audience"),
        "{refused}"
    );

    let mut down = p.gw.config.clone();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    down.upstream.url = format!("http://{}", closed.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(closed);
    let unreachable = run(down, "alice").await.unwrap_err().to_string();
    assert!(
        unreachable.contains("could not be reached"),
        "{unreachable}"
    );
}

/// Sends requests with `tokens` through `gateways` (round robin) until `stop`; counts
/// answers that were not 200.
fn load(
    gateways: Vec<String>,
    tokens: Vec<String>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    tokio::task::JoinHandle<Vec<String>>,
) {
    let ok = Arc::new(AtomicUsize::new(0));
    let bad = Arc::new(AtomicUsize::new(0));
    let (ok2, bad2) = (ok.clone(), bad.clone());
    let handle = tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut i = 0usize;
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            let gw = &gateways[i % gateways.len()];
            let token = &tokens[i % tokens.len()];
            let answer = get(&format!("{gw}/x"), &[("x-deploy-personal-token", token)]).await;
            if answer.status == 200 {
                ok2.fetch_add(1, Ordering::Relaxed);
            } else {
                bad2.fetch_add(1, Ordering::Relaxed);
                failures.push(format!("{} {:?}", answer.status, answer.body));
            }
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        failures
    });
    (ok, bad, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signing_key_rotates_under_load_without_a_refused_request() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let p = pair(
        &db,
        "RS256",
        &[
            ("PATGATE_UPSTREAM__IDENTITY__JWT__TTL", "30s"),
            ("PATGATE_UPSTREAM__IDENTITY__JWT__ROTATION_LEAD", "3s"),
            ("PATGATE_UPSTREAM__IDENTITY__JWT__CLOCK_SKEW", "1s"),
        ],
    )
    .await;
    // A second replica on the same database publishes the same keys.
    let mut second_config = p.gw.config.clone();
    second_config.listen = "127.0.0.1:0".parse().unwrap();
    let second = Gateway::start(second_config).await;
    let mut tokens = Vec::new();
    for user in ["alice", "bob", "carol"] {
        tokens.push(p.gw.create_token(user, "load", Expiration::Days7).await.1);
    }
    let first_kid = get(&p.gw.url("/patgate/.well-known/jwks.json"), &[])
        .await
        .json()["keys"][0]["kid"]
        .clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, bad, handle) = load(
        vec![p.gw.url(""), second.url("")],
        tokens.clone(),
        stop.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    let rotated = cli::run_admin(&p.gw.config, Admin::JwtKey(JwtKeyCommand::Rotate))
        .await
        .unwrap();
    assert!(rotated.contains("published now"), "{rotated}");
    for gw in [&p.gw, &second] {
        let published = within(Duration::from_secs(2), || async {
            get(&gw.url("/patgate/.well-known/jwks.json"), &[])
                .await
                .json()["keys"]
                .as_array()
                .unwrap()
                .len()
                == 2
        })
        .await;
        assert!(
            published.is_some(),
            "the next key is published by every replica before it signs"
        );
    }
    // After the lead the new key signs; the old one stays published meanwhile.
    let switched = within(Duration::from_secs(10), || async {
        let listed = cli::run_admin(&p.gw.config, Admin::JwtKey(JwtKeyCommand::List))
            .await
            .unwrap();
        listed
            .lines()
            .any(|l| l.contains("signing") && !l.contains(first_kid.as_str().unwrap()))
    })
    .await;
    assert!(switched.is_some(), "the new key never started signing");
    let retired = within(Duration::from_secs(45), || async {
        let keys = get(&p.gw.url("/patgate/.well-known/jwks.json"), &[])
            .await
            .json()["keys"]
            .clone();
        keys.as_array().unwrap().len() == 1 && keys[0]["kid"] != first_kid
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let failures = handle.await.unwrap();
    assert!(
        retired.is_some(),
        "the replaced key was still published after its last JWT expired"
    );
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "refused during the rotation: {failures:?}"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "too little load: {}",
        ok.load(Ordering::Relaxed)
    );
    let stats = p.deploy.stats().await;
    assert_eq!(stats["refused"], 0, "{stats}");
    // JWTs minted after the switch carry the new key.
    let minted = mint(&p.gw, "alice").await;
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(minted.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_ne!(header["kid"], first_kid);
    assert_eq!(claims(&minted)["preferred_username"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_key_rotates_under_load_without_a_refused_request() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else {
            continue;
        };
        let upstream = Upstream::start().await;
        let old_key = "11".repeat(32);
        let new_key = "22".repeat(32);
        let phase = |current: &str, previous: &str| {
            let mut c = config(
                &db,
                &upstream.url(),
                &[
                    ("PATGATE_SECRETS__TOKEN_KEY", current),
                    ("PATGATE_SECRETS__PREVIOUS_TOKEN_KEYS", previous),
                ],
            );
            if previous.is_empty() {
                c.secrets.previous_token_keys.clear();
            }
            c
        };
        let before = Gateway::start(phase(&old_key, "")).await;
        let mut tokens = Vec::new();
        for i in 0..4 {
            tokens.push(
                before
                    .create_token(&format!("user{i}"), "t", Expiration::Days7)
                    .await
                    .1,
            );
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Phase 1 (the new key known everywhere), then phase 2 (the new key current),
        // with replicas of every phase serving at once.
        let phase1 = Gateway::start(phase(&old_key, &new_key)).await;
        let phase2 = Gateway::start(phase(&new_key, &old_key)).await;
        let (ok, bad, handle) = load(
            vec![before.url(""), phase1.url(""), phase2.url("")],
            tokens[..3].to_vec(),
            stop.clone(),
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Tokens made under the new key work on the replicas that know it.
        let (_, fresh) = phase2.create_token("newbie", "t", Expiration::Days7).await;
        for gw in [&phase1, &phase2] {
            assert_eq!(
                get(&gw.url("/x"), &[("x-deploy-personal-token", &fresh)])
                    .await
                    .status,
                200
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        let failures = handle.await.unwrap();
        drop(before);
        assert_eq!(
            bad.load(Ordering::Relaxed),
            0,
            "{backend:?}: refused: {failures:?}"
        );
        assert!(ok.load(Ordering::Relaxed) > 50);

        // All replicas restarted on phase 2; tokens last moved by a phase-1 replica, and
        // the one never used, still sit under the old key.
        drop(phase1);
        drop(phase2);
        let phase2 = Gateway::start(phase(&new_key, &old_key)).await;
        let old_id = patgate::core::sealed::key_id(&[0x11; 32]);
        let status = cli::run_admin(&phase2.config, Admin::TokenKey(TokenKeyCommand::Status))
            .await
            .unwrap();
        // Each configured key is listed with its role and its count: the old key
        // still holds the tokens last moved by a phase-1 replica.
        let new_id = patgate::core::sealed::key_id(&[0x22; 32]);
        let row = |id: &str| {
            status
                .lines()
                .find(|l| l.starts_with(id))
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
        };
        assert_eq!(row(&new_id).unwrap()[1], "current", "{status}");
        let old_row = row(&old_id).unwrap();
        assert_eq!(old_row[1], "previous", "{status}");
        assert!(old_row[2].parse::<u32>().unwrap() > 0, "{status}");
        assert!(!status.contains("missing"), "{status}");
        let early = cli::run_admin(
            &phase2.config,
            Admin::TokenKey(TokenKeyCommand::Retire {
                id: old_id.clone(),
                revoke_remaining: false,
            }),
        )
        .await;
        assert!(early
            .unwrap_err()
            .to_string()
            .contains("still stored under key"));
        // Their next use moves them (the one made under the new key too: a phase-1
        // replica moved it back when it was used there).
        for token in tokens.iter().chain([&fresh]) {
            let moved = get(&phase2.url("/x"), &[("x-deploy-personal-token", token)]).await;
            assert_eq!(moved.status, 200);
        }
        let retired = within(Duration::from_secs(3), || async {
            cli::run_admin(
                &phase2.config,
                Admin::TokenKey(TokenKeyCommand::Retire {
                    id: old_id.clone(),
                    revoke_remaining: false,
                }),
            )
            .await
            .is_ok()
        })
        .await;
        if retired.is_none() {
            let status = cli::run_admin(&phase2.config, Admin::TokenKey(TokenKeyCommand::Status))
                .await
                .unwrap();
            panic!("{backend:?}: tokens still under the old key after use:\n{status}");
        }
        // Without the old key every token still works.
        let after = Gateway::start(phase(&new_key, "")).await;
        for token in tokens.iter().chain([&fresh]) {
            assert_eq!(
                get(&after.url("/x"), &[("x-deploy-personal-token", token)])
                    .await
                    .status,
                200,
                "{backend:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_before_key_ids_were_recorded_count_under_the_only_key() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else {
            continue;
        };
        let upstream = Upstream::start().await;
        let key = "33".repeat(32);
        let mut config = config(
            &db,
            &upstream.url(),
            &[("PATGATE_SECRETS__TOKEN_KEY", key.as_str())],
        );
        config.secrets.previous_token_keys.clear();
        let gw = Gateway::start(config.clone()).await;
        let (_, token) = gw.create_token("alice", "old", Expiration::Days7).await;
        drop(gw);
        // A database from before key ids were recorded holds hashes without one.
        let raw = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&db.url)
            .await
            .unwrap();
        sqlx::query("UPDATE tokens SET key_id = NULL")
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;

        // Opened with a single key, those hashes were made with it: the status counts
        // them under it instead of calling them unverifiable.
        let status = cli::run_admin(&config, Admin::TokenKey(TokenKeyCommand::Status))
            .await
            .unwrap();
        let id = patgate::core::sealed::key_id(&[0x33; 32]);
        let row = status.lines().find(|l| l.starts_with(&id));
        assert_eq!(
            row.map(|l| l.split_whitespace().collect::<Vec<_>>()),
            Some(vec![id.as_str(), "current", "1"]),
            "{backend:?}:\n{status}"
        );
        assert!(!status.contains("missing"), "{backend:?}:\n{status}");
        let gw = Gateway::start(config).await;
        let used = get(&gw.url("/x"), &[("x-deploy-personal-token", &token)]).await;
        assert_eq!(used.status, 200, "{backend:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_keys_open_only_under_the_token_key_they_were_sealed_with() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(db) = TestDb::new(backend).await else {
            continue;
        };
        let old_key = "44".repeat(32);
        let p = pair(
            &db,
            "RS256",
            &[("PATGATE_SECRETS__TOKEN_KEY", old_key.as_str())],
        )
        .await;
        let jwt = mint(&p.gw, "alice").await;
        assert_eq!(claims(&jwt)["preferred_username"], "alice");
        let mut config = p.gw.config.clone();
        drop(p);

        // A database copied to a gateway with another token key: the signing key sealed
        // in it does not open, and the gateway says which key to restore.
        config.secrets.token_key = Some("55".repeat(32));
        config.secrets.previous_token_keys.clear();
        let refused = patgate::app::start(config.clone()).await;
        let old_id = patgate::core::sealed::key_id(&[0x44; 32]);
        let message = format!("{:#}", refused.err().expect("started without the key"));
        assert!(
            message.contains(&format!("sealed under key {old_id}"))
                && message.contains("secrets.previous_token_keys"),
            "{backend:?}: {message}"
        );
        // With the old key restored as a previous key, it opens again.
        config.secrets.previous_token_keys = vec![old_key];
        let running = patgate::app::start(config).await;
        assert!(running.is_ok(), "{backend:?}: {:?}", running.err());
        running.unwrap().shutdown().await.unwrap();
    }
}
