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

use common::*;

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
