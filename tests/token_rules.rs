//! Per-token rules end to end, on SQLite and PostgreSQL, through the fast path (a
//! plain-http Deploy) and the general path (an https Deploy): scopes, address
//! allowlists behind a trusted proxy, rotation with reuse detection, leaked-token
//! reports (signed, with the owner told by e-mail), the command line, and bad input
//! that changes nothing.

#[macro_use]
mod common;

use std::path::Path;
use std::time::Duration;

use common::api::{as_user, call};
use common::smtp::{Mode, SmtpServer};
use common::tls::{acceptor, self_signed};
use common::*;
use patgate::cli::{Admin, CreateArgs, TokenCommand};
use patgate::core::token::Expiration;
use serde_json::{json, Value};

on_both_backends!(
    scopes_decide_what_reaches_deploy,
    allowlists_read_the_peer_or_a_trusted_proxys_entry,
    rotation_keeps_the_rules_and_a_reused_old_token_revokes_the_family,
    leaked_reports_are_signed_and_revoke_without_naming_owners,
    bad_input_gets_a_clear_error_and_changes_nothing,
    the_command_line_takes_scopes_allowlists_rotation_and_leaks,
);

const TOKENS: &str = "/patgate/api/v1/tokens";
const LEAKED: &str = "/patgate/api/v1/leaked";
const SECRET: &str = "leak-report-secret-0123456789abcdef";

/// Which of the gateway's two request paths a setup exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A plain-http Deploy: token requests take the fast path.
    Fast,
    /// An https Deploy: every request takes the general path.
    General,
}

const ROUTES: [Route; 2] = [Route::Fast, Route::General];

/// A Deploy stand-in for `route` and the gateway in front of it.
async fn start(db: &TestDb, route: Route, extra: &[(&str, &str)]) -> (Upstream, Gateway) {
    let mut all: Vec<(&str, &str)> = extra.to_vec();
    match route {
        Route::Fast => {
            let upstream = Upstream::start().await;
            let gw = Gateway::start(config(db, &upstream.url(), &all)).await;
            (upstream, gw)
        }
        Route::General => {
            let dir = db.dir.path().join(format!("tls-{}", random_suffix()));
            std::fs::create_dir_all(&dir).unwrap();
            let (cert, key) = self_signed(&dir, "deploy");
            let upstream = Upstream::start_with(Some(acceptor(&cert, &key))).await;
            let ca = cert.to_str().unwrap().to_string();
            all.push(("PATGATE_UPSTREAM__CA_FILE", &ca));
            let url = upstream.url().replace("127.0.0.1", "localhost");
            let gw = Gateway::start(config(db, &url, &all)).await;
            (upstream, gw)
        }
    }
}

/// A token made as the command line makes it; returns (id, token).
async fn create(
    gw: &Gateway,
    user: &str,
    name: &str,
    scope: &str,
    allow_from: &[&str],
) -> (String, String) {
    let out = patgate::cli::run_admin(
        &gw.config,
        Admin::Token(TokenCommand::Create(CreateArgs {
            user: user.into(),
            name: name.into(),
            expires: Expiration::Days30,
            source: patgate::store::UserSource::Internal,
            email: None,
            scope: scope.parse().unwrap(),
            allow_from: allow_from.iter().map(|a| a.to_string()).collect(),
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

async fn with_token(method: &str, gw: &Gateway, path: &str, token: &str) -> Answer {
    send(method, &gw.url(path), &[("x-deploy-personal-token", token)]).await
}

/// Uses `token` until it is refused (revocations reach the cache within a second), and
/// asserts that the refusal is `code` and never reached Deploy.
async fn assert_stops(gw: &Gateway, upstream: &Upstream, token: &str, status: u16, code: &str) {
    for _ in 0..30 {
        let before = upstream.count();
        let answer = with_token("GET", gw, "/x", token).await;
        if answer.status != 200 {
            assert_refused(&answer, status, code, upstream, before);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the token still works after 3 s");
}

/// Asserts a refusal: its status, its code, and that Deploy never saw it.
fn assert_refused(answer: &Answer, status: u16, code: &str, upstream: &Upstream, before: usize) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.error_code(), code, "{:?}", answer.body);
    assert_eq!(upstream.count(), before, "a refused request reached Deploy");
}

async fn scopes_decide_what_reaches_deploy(db: TestDb) {
    for route in ROUTES {
        let (upstream, gw) = start(&db, route, &[("PATGATE_WEBHOOKS__PATHS", "/webhooks/")]).await;
        let tag = format!("{route:?}");
        let (_, read) = create(&gw, "alice", &format!("{tag}-read"), "read", &[]).await;
        let (_, hook) = create(&gw, "alice", &format!("{tag}-hook"), "webhook", &[]).await;
        let (_, full) = create(&gw, "alice", &format!("{tag}-full"), "full", &[]).await;

        for method in ["GET", "HEAD", "OPTIONS"] {
            let answer = with_token(method, &gw, "/api/v1/deployit", &read).await;
            assert_eq!(answer.status, 200, "{route:?} {method}: {:?}", answer.body);
            assert_eq!(upstream.last().method, method);
            assert_eq!(upstream.last().headers["x-deploy-user"], "alice");
        }
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let before = upstream.count();
            let answer = with_token(method, &gw, "/api/v1/deployit", &read).await;
            assert_refused(&answer, 403, "scope_denied", &upstream, before);
            let message = answer.json()["message"].as_str().unwrap().to_string();
            assert!(message.contains("read"), "{route:?}: {message}");
        }

        let answer = with_token("POST", &gw, "/webhooks/git?ref=main", &hook).await;
        assert_eq!(answer.status, 200, "{route:?}: {:?}", answer.body);
        assert_eq!(upstream.last().path, "/webhooks/git");
        for path in [
            "/api/v1/deployit",
            "/webhooks",
            "/webhooks/../api/v1/deployit",
            "/webhooks/%2e%2e/api/v1/deployit",
        ] {
            let before = upstream.count();
            let answer = with_token("POST", &gw, path, &hook).await;
            assert_refused(&answer, 403, "scope_denied", &upstream, before);
            assert!(answer.json()["message"]
                .as_str()
                .unwrap()
                .contains("webhook"));
        }

        // A full token is as before; the API answers with the scope too.
        assert_eq!(
            with_token("DELETE", &gw, "/api/v1/x", &full).await.status,
            200
        );
        let me = with_token("GET", &gw, TOKENS, &hook).await;
        assert_refused(&me, 403, "scope_denied", &upstream, upstream.count());
        let listed = with_token("GET", &gw, TOKENS, &read).await;
        assert_eq!(listed.status, 200, "{:?}", listed.body);
        let scopes: Vec<(String, String)> = listed
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["scope"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(scopes.contains(&(format!("{tag}-hook"), "webhook".into())));
        assert!(scopes.contains(&(format!("{tag}-read"), "read".into())));
        assert!(scopes.contains(&(format!("{tag}-full"), "full".into())));
        gw.shutdown().await;
    }
}

async fn allowlists_read_the_peer_or_a_trusted_proxys_entry(db: TestDb) {
    for route in ROUTES {
        let tag = format!("{route:?}");
        // Without trusted proxies, X-Forwarded-For is the client's own word: ignored.
        let (upstream, gw) = start(&db, route, &[]).await;
        let (_, here) = create(&gw, "alice", &format!("{tag}-here"), "full", &["127.0.0.1"]).await;
        let (_, office) = create(
            &gw,
            "alice",
            &format!("{tag}-office"),
            "full",
            &["10.1.0.0/16", "2001:db8::/32"],
        )
        .await;
        assert_eq!(with_token("GET", &gw, "/x", &here).await.status, 200);
        let before = upstream.count();
        let spoofed = send(
            "GET",
            &gw.url("/x"),
            &[
                ("x-deploy-personal-token", &office),
                ("x-forwarded-for", "10.1.2.3"),
            ],
        )
        .await;
        assert_refused(&spoofed, 403, "address_not_allowed", &upstream, before);
        gw.shutdown().await;

        // Behind a trusted proxy, its entry is the client.
        let (upstream, gw) = start(&db, route, &[("PATGATE_TRUSTED_PROXIES", "127.0.0.1")]).await;
        for (from, status) in [("10.1.2.3", 200), ("2001:db8::7", 200), ("192.0.2.1", 403)] {
            let before = upstream.count();
            let answer = send(
                "GET",
                &gw.url("/x"),
                &[
                    ("x-deploy-personal-token", &office),
                    ("x-forwarded-for", from),
                ],
            )
            .await;
            assert_eq!(
                answer.status, status,
                "{route:?} from {from}: {:?}",
                answer.body
            );
            if status == 403 {
                assert_refused(&answer, 403, "address_not_allowed", &upstream, before);
            }
        }
        // The refusals are in the audit log, one row per address and reason.
        let api = gw.api().unwrap();
        patgate::app::housekeeping::round(&api).await;
        let audit = as_user(
            "GET",
            &gw.url("/patgate/api/v1/audit?action=token.refused&per_page=200"),
            "admin",
            "admin-pw",
            None,
        )
        .await;
        assert_eq!(audit.status, 200, "{:?}", audit.body);
        let text = audit.json().to_string();
        assert!(
            text.contains("address_not_allowed") && text.contains("192.0.2.1"),
            "{text}"
        );
        assert!(!text.contains(&office), "a token in the audit log");
        gw.shutdown().await;
    }
}

async fn rotation_keeps_the_rules_and_a_reused_old_token_revokes_the_family(db: TestDb) {
    for route in ROUTES {
        let (upstream, gw) = start(&db, route, &[]).await;
        let tag = format!("{route:?}-ci");
        let made = as_user(
            "POST",
            &gw.url(TOKENS),
            "alice",
            "alice-pw",
            Some(&json!({"name": tag, "expiration": "30d", "scope": "read",
                         "allowed_addresses": ["127.0.0.1", "10.0.0.0/8"]})),
        )
        .await;
        assert_eq!(made.status, 201, "{:?}", made.body);
        let first = made.json();
        let first_token = first["token"].as_str().unwrap().to_string();
        let first_id = first["id"].as_str().unwrap().to_string();

        // With an hour's grace both work; the new one has the same name and rules and
        // a 30-day life of its own.
        let rotate = |id: &str, body: Option<Value>| {
            let url = gw.url(&format!("{TOKENS}/{id}/rotate"));
            async move { as_user("POST", &url, "alice", "alice-pw", body.as_ref()).await }
        };
        let second = rotate(&first_id, Some(json!({"grace": "1h"}))).await;
        assert_eq!(second.status, 201, "{:?}", second.body);
        let second = second.json();
        assert_eq!(second["name"], tag.as_str());
        assert_eq!(second["scope"], "read");
        assert_eq!(
            second["allowed_addresses"],
            json!(["127.0.0.1", "10.0.0.0/8"])
        );
        assert_eq!(second["rotated_from"], first_id.as_str());
        assert!(second["old_token_valid_until"].is_string());
        assert_eq!(second["expires_in"]["days"], 30);
        let second_token = second["token"].as_str().unwrap().to_string();
        let second_id = second["id"].as_str().unwrap().to_string();
        assert_ne!(second_token, first_token);
        for token in [&first_token, &second_token] {
            assert_eq!(with_token("GET", &gw, "/x", token).await.status, 200);
        }
        let before = upstream.count();
        let post = with_token("POST", &gw, "/x", &second_token).await;
        assert_refused(&post, 403, "scope_denied", &upstream, before);

        // Rotated again without grace: the middle token is finished at once. Its use
        // is a reuse: it and every successor are revoked, and an alert recorded.
        let third = rotate(&second_id, None).await;
        assert_eq!(third.status, 201, "{:?}", third.body);
        let third_token = third.json()["token"].as_str().unwrap().to_string();
        assert_eq!(with_token("GET", &gw, "/x", &third_token).await.status, 200);
        assert_stops(&gw, &upstream, &second_token, 401, "invalid_token").await;
        // The whole family: the newest, and the oldest still in its grace.
        assert_stops(&gw, &upstream, &third_token, 401, "invalid_token").await;
        assert_stops(&gw, &upstream, &first_token, 401, "invalid_token").await;
        let alerts = as_user(
            "GET",
            &gw.url("/patgate/api/v1/audit?action=token.reuse_detected"),
            "admin",
            "admin-pw",
            None,
        )
        .await
        .json();
        let ours: Vec<&Value> = alerts["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["token_id"] == second_id.as_str())
            .collect();
        assert_eq!(ours.len(), 1, "one alert per reuse: {alerts}");
        assert_eq!(ours[0]["user"], "alice");
        let others = ours[0]["detail"]["revoked"].to_string();
        assert!(others.contains(&first_id), "{others}");

        // A revoked token cannot be rotated.
        let again = rotate(&second_id, None).await;
        assert_eq!(again.status, 404, "{:?}", again.body);
        gw.shutdown().await;
    }
}

fn sign(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn report(gw: &Gateway, body: &Value, signature: Option<&str>) -> Answer {
    let text = body.to_string();
    let mut headers = vec![("content-type", "application/json")];
    if let Some(signature) = signature {
        headers.push(("x-patgate-signature", signature));
    }
    common::oidc::request("POST", &gw.url(LEAKED), &headers, text.into()).await
}

async fn leaked_reports_are_signed_and_revoke_without_naming_owners(db: TestDb) {
    // Off while no secret is configured.
    let (_, off) = start(&db, Route::Fast, &[]).await;
    let answer = report(&off, &json!(["dpat_x"]), Some("sha256=00")).await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    assert_eq!(answer.error_code(), "leaked_reports_off");
    off.shutdown().await;

    let smtp = SmtpServer::start(Mode::Plain, false).await;
    for route in ROUTES {
        let (upstream, gw) = start(&db, route, &[("PATGATE_LEAKED__SECRET", SECRET)]).await;
        let tag = format!("{route:?}");
        let api = gw.api().unwrap();
        api.store
            .ensure_user("alice", patgate::store::UserSource::Internal, None)
            .await
            .unwrap();
        api.store
            .set_email("alice", Some("alice@example.com"))
            .await
            .unwrap();
        if route == Route::Fast {
            let id = smtp.item_at(&gw.url(""), "mail").await;
            let on = as_user(
                "PUT",
                &gw.url("/patgate/api/v1/settings"),
                "admin",
                "admin-pw",
                Some(&json!({"notifications": {"enabled": true, "smtp_server_id": id}})),
            )
            .await;
            assert_eq!(on.status, 200, "{:?}", on.body);
        }
        let (_, leaked) = create(&gw, "alice", &format!("{tag}-leaked"), "full", &[]).await;
        let (_, kept) = create(&gw, "alice", &format!("{tag}-kept"), "full", &[]).await;
        assert_eq!(with_token("GET", &gw, "/x", &leaked).await.status, 200);
        let never_issued = patgate::core::token::PlainToken::generate();
        let body = json!([
            {"token": leaked, "type": "patgate_pat", "url": "https://example.com/commit/1", "source": "scanner"},
            never_issued.expose(),
            "not a token",
        ]);

        // Unsigned, wrongly signed, or signed over other bytes: refused, nothing revoked.
        for signature in [
            None,
            Some("sha256=".to_string() + &"0".repeat(64)),
            Some(sign(b"[]")),
        ] {
            let answer = report(&gw, &body, signature.as_deref()).await;
            assert_eq!(answer.status, 401, "{:?}", answer.body);
            assert_eq!(answer.error_code(), "invalid_signature");
        }
        assert_eq!(with_token("GET", &gw, "/x", &leaked).await.status, 200);

        let answer = report(&gw, &body, Some(&sign(body.to_string().as_bytes()))).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(
            answer.json()["results"],
            json!([
                {"index": 0, "result": "revoked"},
                {"index": 1, "result": "unknown"},
                {"index": 2, "result": "malformed"},
            ])
        );
        let text = String::from_utf8_lossy(&answer.body).to_string();
        assert!(!text.contains("alice") && !text.contains(&leaked), "{text}");

        assert_stops(&gw, &upstream, &leaked, 401, "invalid_token").await;
        assert_eq!(with_token("GET", &gw, "/x", &kept).await.status, 200);

        let again = json!([leaked]);
        let answer = report(&gw, &again, Some(&sign(again.to_string().as_bytes()))).await;
        assert_eq!(answer.json()["results"][0]["result"], "already_revoked");

        let audit = as_user(
            "GET",
            &gw.url("/patgate/api/v1/audit?action=token.leaked_revoked"),
            "admin",
            "admin-pw",
            None,
        )
        .await
        .json();
        let entry = audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["user"] == "alice")
            .cloned()
            .unwrap_or_else(|| panic!("{audit}"));
        assert_eq!(entry["detail"]["report"]["source"], "scanner", "{entry}");

        // The owner hears of it.
        let mut told = false;
        for _ in 0..50 {
            told = smtp.received().iter().any(|m| {
                m.rcpt_tos.contains(&"alice@example.com".to_string())
                    && m.decoded().contains(&format!("{tag}-leaked"))
            });
            if told {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            told,
            "{route:?}: no e-mail to the owner of the leaked token"
        );
        gw.shutdown().await;
    }
    smtp.stop().await;
}

async fn bad_input_gets_a_clear_error_and_changes_nothing(db: TestDb) {
    let (upstream, gw) = start(&db, Route::Fast, &[]).await;
    // What a user would notice of their tokens (not the last-use columns).
    let list = |user: &'static str, password: &'static str| {
        let url = gw.url(TOKENS);
        async move {
            let listed = as_user("GET", &url, user, password, None).await.json();
            listed
                .as_array()
                .unwrap()
                .iter()
                .map(|t| {
                    json!([
                        t["id"],
                        t["name"],
                        t["scope"],
                        t["expires_at"],
                        t["allowed_addresses"]
                    ])
                })
                .collect::<Vec<_>>()
        }
    };
    let before = list("alice", "alice-pw").await;

    let unknown_scope = as_user(
        "POST",
        &gw.url(TOKENS),
        "alice",
        "alice-pw",
        Some(&json!({"name": "x", "expiration": "7d", "scope": "admin"})),
    )
    .await;
    assert_eq!(unknown_scope.status, 400);
    let message = unknown_scope.json()["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("scope") && message.contains("admin"),
        "{message}"
    );

    for bad in ["10.1.0.0/33", "10.1.0.1/16", "office", "2001:db8::/129"] {
        let answer = as_user(
            "POST",
            &gw.url(TOKENS),
            "alice",
            "alice-pw",
            Some(
                &json!({"name": "x", "expiration": "7d", "allowed_addresses": ["10.0.0.0/8", bad]}),
            ),
        )
        .await;
        // Whether an entry is a network is parsed, not said by the schema: 422.
        assert_eq!(answer.status, 422, "{bad}");
        assert_eq!(answer.error_code(), "invalid_allowed_addresses");
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(bad), "{message}");
    }
    assert_eq!(
        list("alice", "alice-pw").await,
        before,
        "a refused create left a token"
    );

    // Another user's token: as if it did not exist, and it keeps working unchanged.
    let (bob_id, bob_token) = create(&gw, "bob", "bobs", "read", &[]).await;
    let bobs_before = list("bob", "bob-pw").await;
    let url = gw.url(&format!("{TOKENS}/{bob_id}/rotate"));
    let answer = as_user("POST", &url, "alice", "alice-pw", None).await;
    assert_eq!(answer.status, 404);
    let admin = as_user("POST", &url, "admin", "admin-pw", None).await;
    assert_eq!(admin.status, 404, "the new value would go to someone else");
    let too_long = as_user(
        "POST",
        &url,
        "bob",
        "bob-pw",
        Some(&json!({"grace": "25h"})),
    )
    .await;
    assert_eq!(too_long.status, 400);
    assert_eq!(too_long.error_code(), "invalid_grace");
    let nonsense = as_user(
        "POST",
        &url,
        "bob",
        "bob-pw",
        Some(&json!({"grace": "soon"})),
    )
    .await;
    assert_eq!(nonsense.status, 400);
    assert_eq!(list("bob", "bob-pw").await, bobs_before);
    assert_eq!(with_token("GET", &gw, "/x", &bob_token).await.status, 200);
    // An expired token is not brought back by a rotation.
    let api = gw.api().unwrap();
    let lapsed = patgate::core::token::PlainToken::generate();
    let lapsed_id = api
        .store
        .create_token(
            "bob",
            "lapsed",
            &api.hasher.hash(lapsed.expose().as_bytes()),
            Some(patgate::core::time::now() - 10),
        )
        .await
        .unwrap()
        .id;
    let bobs_before = list("bob", "bob-pw").await;
    let expired = as_user(
        "POST",
        &gw.url(&format!("{TOKENS}/{lapsed_id}/rotate")),
        "bob",
        "bob-pw",
        None,
    )
    .await;
    assert_eq!(expired.status, 409, "{:?}", expired.body);
    assert_eq!(expired.error_code(), "token_expired");
    assert_eq!(list("bob", "bob-pw").await, bobs_before);
    // Rotation cannot be asked with a token, nor widen the scope.
    let by_token = call(
        "POST",
        &url,
        &[("x-deploy-personal-token", &bob_token)],
        Some(&json!({"scope": "full"})),
    )
    .await;
    assert!(
        by_token.status == 400 || by_token.status == 403,
        "{:?}",
        by_token.body
    );
    let widen = as_user(
        "POST",
        &url,
        "bob",
        "bob-pw",
        Some(&json!({"scope": "full"})),
    )
    .await;
    assert_eq!(widen.status, 400, "{:?}", widen.body);
    assert_eq!(list("bob", "bob-pw").await, bobs_before);

    // Configuration: a bad webhook path or a short secret stops the start, naming the key.
    for (key, value, named) in [
        ("PATGATE_WEBHOOKS__PATHS", "webhooks/", "webhooks.paths"),
        ("PATGATE_WEBHOOKS__PATHS", "/patgate/x", "webhooks.paths"),
        ("PATGATE_LEAKED__SECRET", "short", "leaked.secret"),
    ] {
        let yaml = format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: {}\n  identity:\n    allow_header_without_secret: true\ndatabase:\n  url: {}\nsecrets:\n  token_key_file: {}\n",
            upstream.url(),
            db.url,
            db.dir.path().join("token.key").display(),
        );
        let env = [(key.to_string(), value.to_string())].into_iter().collect();
        let err = patgate::config::Config::from_yaml(&yaml, &env).unwrap_err();
        assert!(err.to_string().contains(named), "{err}");
    }
    gw.shutdown().await;
}

/// Runs the binary with `input` on standard input; returns (exit code, stdout, stderr).
async fn run_with_input(config_file: &Path, args: &[&str], input: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(binary())
        .arg("--config")
        .arg(config_file)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn the_command_line_takes_scopes_allowlists_rotation_and_leaks(db: TestDb) {
    let (upstream, gw) = start(&db, Route::Fast, &[]).await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let (code, out, err) = run_cli(
        &file,
        &[
            "token",
            "create",
            "--user",
            "carol",
            "--name",
            "ci",
            "--expires",
            "7d",
            "--scope",
            "read",
            "--allow-from",
            "127.0.0.1",
            "--allow-from",
            "10.0.0.0/8",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(made["scope"], "read");
    assert_eq!(
        made["allowed_addresses"],
        json!(["127.0.0.1", "10.0.0.0/8"])
    );
    let token = made["token"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(with_token("GET", &gw, "/x", &token).await.status, 200);
    assert_eq!(with_token("POST", &gw, "/x", &token).await.status, 403);

    for (args, named) in [
        (vec!["--scope", "admin"], "admin"),
        (vec!["--allow-from", "10.0.0.1/8"], "10.0.0.1/8"),
    ] {
        let mut all = vec![
            "token",
            "create",
            "--user",
            "carol",
            "--name",
            "bad",
            "--expires",
            "7d",
        ];
        all.extend(args);
        let (code, out, err) = run_cli(&file, &all).await;
        assert_ne!(code, 0);
        assert!(out.is_empty(), "{out}");
        assert!(err.contains(named), "{err}");
    }

    let (code, out, err) =
        run_cli(&file, &["token", "rotate", &id, "--grace", "1h", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rotated["scope"], "read");
    assert_eq!(rotated["rotated_from"], id.as_str());
    let new_token = rotated["token"].as_str().unwrap().to_string();
    assert_eq!(with_token("GET", &gw, "/x", &new_token).await.status, 200);
    assert_eq!(
        with_token("GET", &gw, "/x", &token).await.status,
        200,
        "grace"
    );
    let (code, _, err) = run_cli(&file, &["token", "rotate", &id, "--grace", "2d"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("24h"), "{err}");

    let (code, out, err) = run_cli(&file, &["token", "list", "--user", "carol", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["scope"] == "read"));

    let input = format!("  {new_token}  \n\ndpat_nothing\n");
    let (code, out, err) = run_with_input(&file, &["token", "revoke", "--leaked"], &input).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "line 1: revoked\nline 2: malformed", "{out}");
    assert!(!out.contains("carol"));
    assert_stops(&gw, &upstream, &new_token, 401, "invalid_token").await;
    let (code, _, err) = run_with_input(&file, &["token", "revoke", "--leaked"], "\n").await;
    assert_ne!(code, 0);
    assert!(err.contains("standard input"), "{err}");
    gw.shutdown().await;
}
