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

use std::net::SocketAddr;
use std::time::Duration;

use common::scripted::{raw_exchange, Scripted};
use common::*;
use patgate::tokens::format::Expiration;

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

/// The two ways to a request: first on its connection (a token request takes the fast
/// path), or behind a gateway route, which puts the connection on the general path.
const PATHS: [(&str, &str); 2] = [
    ("fast path", ""),
    (
        "general path",
        "GET /patgate/healthz HTTP/1.1\r\nHost: gw.example\r\n\r\n",
    ),
];

/// Sends `request` after `before` and returns the gateway's answer to `request`.
async fn exchange(addr: SocketAddr, before: &str, request: &str) -> String {
    let answers = raw_exchange(addr, format!("{before}{request}").as_bytes()).await;
    if before.is_empty() {
        return answers;
    }
    let second = answers[1..]
        .find("HTTP/1.1 ")
        .map_or(answers.len(), |at| at + 1);
    answers[second..].to_string()
}

fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or_default()
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
