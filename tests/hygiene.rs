//! Hostile header lines on the wire, on the fast path and the general path alike:
//! look-alike identity headers, `Host` games, session ids in URLs, tokens hidden in
//! half-recognised credentials, answers with many header lines or bad chunked framing,
//! and `X-Forwarded-For` claims.
//!
//! Every request is sent as exact bytes, once on a fresh connection (a token request
//! takes the fast path) and once behind a request for a gateway route (the connection
//! is then on the general path). Deploy is a scripted server that records the exact
//! bytes it receives.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::scripted::{exchange, status, Scripted, PATHS};
use common::*;
use patgate::core::token::{Expiration, PlainToken};

/// Deploy's answers: one path per kind of answer the tests need.
fn deploy(_method: &str, path: &str) -> (Vec<u8>, bool) {
    let answer = match path {
        _ if path.starts_with("/redirect") => "HTTP/1.1 302 Found\r\nLocation: http://gw.example/deployit/app;jsessionid=NEW?x=1\r\ncontent-length: 0\r\n\r\n".to_string(),
        "/many-headers" | "/too-many-headers" => {
            let lines = if path == "/many-headers" { 99 } else { 100 };
            let mut answer = String::from("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n");
            for i in 0..lines {
                answer.push_str(&format!("x-h-{i}: {i}\r\n"));
            }
            answer + "\r\nmany"
        }
        "/bare-lf-chunks" => {
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\nok\r\n0\r\n\r\n".to_string()
        }
        "/spaced-chunk-size" => {
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2 5\r\nok\r\n0\r\n\r\n".to_string()
        }
        _ => {
            let body = format!("path={path}");
            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len())
        }
    };
    (answer.into_bytes(), false)
}

struct Setup {
    _db: TestDb,
    deploy: Scripted,
    gw: Gateway,
    token: String,
}

async fn setup(extra: &[(&str, &str)]) -> Setup {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let deploy = Scripted::start(deploy).await;
    let mut settings = vec![("PATGATE_WORKERS", "1")];
    settings.extend_from_slice(extra);
    let gw = Gateway::start(config(&db, &deploy.url(), &settings)).await;
    let (_, token) = gw.create_token("alice", "wire", Expiration::Days7).await;
    Setup {
        _db: db,
        deploy,
        gw,
        token,
    }
}

#[tokio::test]
async fn look_alike_identity_headers_never_reach_deploy() {
    let s = setup(&[("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", "s3cret")]).await;
    let look_alikes = "X_Deploy_User: admin\r\nx_deploy_user: admin\r\nX-Deploy_User: admin\r\nX_Patgate_Secret: guess\r\n";
    let kinds = [
        ("no credentials", String::new()),
        (
            "password",
            format!("Authorization: {}\r\n", basic("admin", "admin-pw")),
        ),
        ("cookie", "Cookie: JSESSIONID=abc\r\n".to_string()),
        ("token", format!("x-deploy-personal-token: {}\r\n", s.token)),
    ];
    for (kind, credential) in &kinds {
        for (path, before) in PATHS {
            let request = format!(
                "GET /x HTTP/1.1\r\nHost: gw.example\r\n{look_alikes}{credential}Connection: close\r\n\r\n"
            );
            let answer = exchange(s.gw.addr, before, &request).await;
            assert_eq!(status(&answer), "200", "{kind}, {path}: {answer}");
            let head = s.deploy.last_head().to_ascii_lowercase();
            for name in ["x_deploy_user", "x-deploy_user", "x_patgate_secret"] {
                assert!(!head.contains(name), "{kind}, {path}: {name} in {head}");
            }
            if *kind == "token" {
                assert_eq!(head.matches("x-deploy-user").count(), 1, "{path}: {head}");
                assert!(head.contains("x-deploy-user: alice\r\n"), "{path}: {head}");
                assert!(
                    head.contains("x-patgate-secret: s3cret\r\n"),
                    "{path}: {head}"
                );
            } else {
                assert!(!head.contains("x-deploy-user"), "{kind}, {path}: {head}");
                assert!(!head.contains("x-patgate-secret"), "{kind}, {path}: {head}");
            }
        }
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn headers_with_underscores_follow_the_setting() {
    for setting in ["forward", "drop", "refuse"] {
        let s = setup(&[("PATGATE_UNDERSCORE_HEADERS", setting)]).await;
        for with_token in [false, true] {
            let token = if with_token {
                format!("x-deploy-personal-token: {}\r\n", s.token)
            } else {
                String::new()
            };
            for (path, before) in PATHS {
                let before_count = s.deploy.heads.lock().unwrap().len();
                let request = format!(
                    "GET /x HTTP/1.1\r\nHost: gw.example\r\nX_Custom: 1\r\n{token}Connection: close\r\n\r\n"
                );
                let answer = exchange(s.gw.addr, before, &request).await;
                let case = format!("{setting}, token {with_token}, {path}");
                let reached = s.deploy.heads.lock().unwrap().len() > before_count;
                match setting {
                    "refuse" => {
                        assert_eq!(status(&answer), "400", "{case}: {answer}");
                        assert!(answer.contains("\"underscore_header\""), "{case}: {answer}");
                        assert!(!reached, "{case}");
                    }
                    _ => {
                        assert_eq!(status(&answer), "200", "{case}: {answer}");
                        let head = s.deploy.last_head().to_ascii_lowercase();
                        assert_eq!(
                            head.contains("x_custom: 1"),
                            setting == "forward",
                            "{case}: {head}"
                        );
                    }
                }
            }
        }
        s.gw.shutdown().await;
    }
}

#[tokio::test]
async fn a_request_needs_exactly_one_valid_host() {
    let s = setup(&[]).await;
    let cases = [
        (
            "Host: second.example\r\nHost: gw.example\r\nConnection: close\r\n",
            "duplicate_host",
        ),
        ("Connection: close\r\n", "missing_host"),
        (
            "Host: gw.example\r\nConnection: host, close\r\n",
            "invalid_host",
        ),
        (
            "Host: user@gw.example\r\nConnection: close\r\n",
            "invalid_host",
        ),
    ];
    for (lines, code) in cases {
        for token in [
            String::new(),
            format!("x-deploy-personal-token: {}\r\n", s.token),
        ] {
            for (path, before) in PATHS {
                let request = format!("GET /x HTTP/1.1\r\n{token}{lines}\r\n");
                let answer = exchange(s.gw.addr, before, &request).await;
                let case = format!("{lines:?}, {path}, token {}", !token.is_empty());
                assert_eq!(status(&answer), "400", "{case}: {answer}");
                assert!(answer.contains(&format!("\"{code}\"")), "{case}: {answer}");
            }
        }
    }
    assert_eq!(s.deploy.connections(), 0, "a bad Host reached Deploy");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn session_ids_in_urls_never_attach_to_a_token() {
    let s = setup(&[]).await;
    let token = format!("x-deploy-personal-token: {}\r\n", s.token);
    for target in [
        "/deployit/login;jsessionid=ATTACKER",
        "/deployit/a;JSessionId=ATTACKER/b?x=1",
    ] {
        for (path, before) in PATHS {
            let request = format!(
                "GET {target} HTTP/1.1\r\nHost: gw.example\r\n{token}Connection: close\r\n\r\n"
            );
            let answer = exchange(s.gw.addr, before, &request).await;
            assert_eq!(status(&answer), "400", "{target}, {path}: {answer}");
            assert!(answer.contains("\"session_id_in_url\""), "{answer}");
        }
    }
    assert_eq!(s.deploy.connections(), 0);

    // Deploy's redirect loses its session id on the way to a token client...
    for (path, before) in PATHS {
        let request = format!(
            "GET /redirect HTTP/1.1\r\nHost: gw.example\r\n{token}Connection: close\r\n\r\n"
        );
        let answer = exchange(s.gw.addr, before, &request).await;
        assert_eq!(status(&answer), "302", "{path}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("location: http://gw.example/deployit/app?x=1\r\n"),
            "{path}: {answer}"
        );
    }
    // ...while browsers and password logins are Deploy's business.
    let answer = exchange(
        s.gw.addr,
        "",
        "GET /redirect;jsessionid=MINE HTTP/1.1\r\nHost: gw.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.contains(";jsessionid=NEW?x=1"), "{answer}");
    assert!(s
        .deploy
        .last_head()
        .starts_with("GET /redirect;jsessionid=MINE "));
    s.gw.shutdown().await;
}

#[tokio::test]
async fn half_recognised_credentials_never_carry_a_token_to_deploy() {
    let s = setup(&[]).await;
    let pat = s.token.clone();
    let b64 = |text: String| STANDARD.encode(text);
    let cases = [
        (
            format!("Authorization: Basic{}", b64(format!(":{pat}"))),
            "400",
        ),
        (
            format!("Authorization: Basic\t{}", b64(format!(":{pat}"))),
            "200",
        ),
        (
            format!(
                "Authorization: Basic {}",
                b64(format!("{}:{pat}", "a".repeat(4100)))
            ),
            "400",
        ),
        (format!("x_deploy_personal_token: {pat}"), "200"),
        (
            format!("Authorization: Bearer {}", pat.replace("dpat_", "DPAT_")),
            "401",
        ),
    ];
    for (line, expected) in &cases {
        for (path, before) in PATHS {
            let before_count = s.deploy.heads.lock().unwrap().len();
            let request = format!(
                "GET /x HTTP/1.1\r\nHost: gw.example\r\n{line}\r\nConnection: close\r\n\r\n"
            );
            let answer = exchange(s.gw.addr, before, &request).await;
            let case = format!("{}, {path}", &line[..30]);
            assert_eq!(status(&answer), *expected, "{case}: {answer}");
            assert!(!answer.contains(&pat[5..]), "{case}: the token came back");
            let heads = s.deploy.heads.lock().unwrap().clone();
            if *expected == "200" {
                assert!(
                    heads[before_count].contains("x-deploy-user: alice\r\n"),
                    "{case}"
                );
            } else {
                assert_eq!(heads.len(), before_count, "{case}: reached Deploy");
                let code = if *expected == "400" {
                    "malformed_credentials"
                } else {
                    "malformed_token"
                };
                assert!(answer.contains(&format!("\"{code}\"")), "{case}: {answer}");
            }
        }
    }
    for head in s.deploy.heads.lock().unwrap().iter() {
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains(&pat[5..].to_ascii_lowercase()), "{head}");
        assert!(!lower.contains("authorization"), "{head}");
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn both_paths_take_answers_of_up_to_100_header_lines() {
    let s = setup(&[]).await;
    let token = format!("x-deploy-personal-token: {}\r\n", s.token);
    for (path, before) in PATHS {
        let request = format!(
            "GET /many-headers HTTP/1.1\r\nHost: gw.example\r\n{token}Connection: close\r\n\r\n"
        );
        let answer = exchange(s.gw.addr, before, &request).await;
        assert_eq!(status(&answer), "200", "{path}: {answer}");
        assert!(answer.contains("x-h-98: 98\r\n"), "{path}: {answer}");
        assert!(answer.ends_with("\r\n\r\nmany"), "{path}: {answer}");

        let request = format!(
            "GET /too-many-headers HTTP/1.1\r\nHost: gw.example\r\n{token}Connection: close\r\n\r\n"
        );
        let answer = exchange(s.gw.addr, before, &request).await;
        assert_eq!(status(&answer), "502", "{path}: {answer}");
        assert!(s.deploy.last_head().starts_with("GET /too-many-headers "));
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn malformed_chunked_answers_are_not_relayed() {
    let s = setup(&[]).await;
    let token = format!("x-deploy-personal-token: {}\r\n", s.token);
    for target in ["/bare-lf-chunks", "/spaced-chunk-size"] {
        for (path, before) in PATHS {
            let request = format!(
                "GET {target} HTTP/1.1\r\nHost: gw.example\r\n{token}Connection: close\r\n\r\n"
            );
            let answer = exchange(s.gw.addr, before, &request).await;
            // The general path learns of it after the head has gone; neither path passes
            // the malformed framing on.
            assert!(!answer.contains("ok\r\n"), "{target}, {path}: {answer:?}");
            if path == "fast path" {
                assert_eq!(status(&answer), "502", "{target}: {answer}");
            }
        }
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn forwarded_for_names_the_peer_unless_a_trusted_proxy_sent_it() {
    let untrusted = setup(&[]).await;
    let trusted = setup(&[("PATGATE_TRUSTED_PROXIES", "127.0.0.0/8, ::1")]).await;
    for (s, expected) in [
        (&untrusted, "x-forwarded-for: 127.0.0.1\r\n"),
        (&trusted, "x-forwarded-for: 203.0.113.9, 127.0.0.1\r\n"),
    ] {
        for token in [
            String::new(),
            format!("x-deploy-personal-token: {}\r\n", s.token),
        ] {
            for (path, before) in PATHS {
                let request = format!(
                    "GET /x HTTP/1.1\r\nHost: gw.example\r\nX-Forwarded-For: 192.0.2.66, 203.0.113.9\r\n{token}Connection: close\r\n\r\n"
                );
                let answer = exchange(s.gw.addr, before, &request).await;
                assert_eq!(status(&answer), "200", "{answer}");
                let head = s.deploy.last_head().to_ascii_lowercase();
                assert_eq!(head.matches("x-forwarded-for").count(), 1, "{head}");
                assert!(
                    head.contains(expected),
                    "{path}, token {}: {head}",
                    !token.is_empty()
                );
            }
        }
    }
    untrusted.gw.shutdown().await;
    trusted.gw.shutdown().await;
}

#[tokio::test]
async fn failure_limits_count_the_client_a_trusted_proxy_names() {
    let s = setup(&[
        ("PATGATE_TRUSTED_PROXIES", "127.0.0.0/8"),
        ("PATGATE_LIMITS__FAILURES_PER_SECOND", "0.01"),
        ("PATGATE_LIMITS__FAILURE_BURST", "2"),
    ])
    .await;
    let unknown = PlainToken::generate();
    let from = |client: &str| {
        format!(
            "GET /x HTTP/1.1\r\nHost: gw.example\r\nX-Forwarded-For: {client}\r\nx-deploy-personal-token: {}\r\nConnection: close\r\n\r\n",
            unknown.expose()
        )
    };
    // One client, behind the same proxy as everyone else, uses up its failures...
    let mut limited = false;
    for _ in 0..4 {
        let answer = exchange(s.gw.addr, "", &from("203.0.113.9")).await;
        if status(&answer) == "429" {
            limited = true;
            break;
        }
        assert_eq!(status(&answer), "401", "{answer}");
    }
    assert!(limited, "the failing client was never limited");
    // ...and only that client is limited, on either path.
    for (path, before) in PATHS {
        let answer = exchange(s.gw.addr, before, &from("198.51.100.7")).await;
        assert_eq!(status(&answer), "401", "{path}: {answer}");
        let answer = exchange(s.gw.addr, before, &from("203.0.113.9")).await;
        assert_eq!(status(&answer), "429", "{path}: {answer}");
    }
    s.gw.shutdown().await;
}

#[tokio::test]
async fn header_mode_without_a_secret_does_not_start() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let file = db.dir.path().join("no-secret.yaml");
    std::fs::write(
        &file,
        format!(
            "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:9\ndatabase:\n  url: {}\nsecrets:\n  token_key_file: {}\n",
            db.url,
            db.dir.path().join("token.key").display()
        ),
    )
    .unwrap();
    let run = tokio::process::Command::new(binary())
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the gateway started instead of refusing")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("upstream.identity.shared_secret"),
        "{stderr}"
    );
    assert!(
        stderr.contains("allow_header_without_secret: true"),
        "{stderr}"
    );
    drop(db);
}
