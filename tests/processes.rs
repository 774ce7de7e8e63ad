//! The real binary as operators run it: the CLI contract, revocations made by another
//! process, two replicas on one PostgreSQL database, large bodies in bounded memory,
//! and SIGTERM.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;

async fn sqlite() -> TestDb {
    TestDb::new(Backend::Sqlite).await.unwrap()
}

#[tokio::test]
async fn cli_follows_the_documented_contract() {
    let db = sqlite().await;
    let file = config_file(&db, "http://127.0.0.1:9", "127.0.0.1:0");
    first_start(&file).await;

    let (code, stdout, stderr) = run_cli(
        &file,
        &[
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "ci",
            "--expires",
            "30d",
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the token is the only line: {stdout:?}");
    assert!(lines[0].starts_with("dpat_"));
    assert_eq!(
        patgate::core::token::check_format(lines[0].as_bytes()),
        Ok(())
    );

    let (code, stdout, _) = run_cli(
        &file,
        &[
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "deploy-bot",
            "--expires",
            "never",
            "--json",
        ],
    )
    .await;
    assert_eq!(code, 0);
    let created: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(created["token"].as_str().unwrap().starts_with("dpat_"));
    assert!(created["expires_at"].is_null());
    let id = created["id"].as_str().unwrap().to_string();

    let (code, stdout, _) = run_cli(&file, &["token", "list", "--user", "alice", "--json"]).await;
    assert_eq!(code, 0);
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!stdout.contains("dpat_"), "a listing shows a token value");
    let thirty = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap();
    let expires = humantime::parse_rfc3339(thirty["expires_at"].as_str().unwrap()).unwrap();
    let days = expires
        .duration_since(std::time::SystemTime::now())
        .unwrap()
        .as_secs()
        / 86_400;
    assert_eq!(days, 29, "30d is 30 days from now, in UTC RFC 3339");

    let (code, _, _) = run_cli(&file, &["token", "revoke", &id]).await;
    assert_eq!(code, 0);

    // Bad input: non-zero exit and one line on stderr that says what to do.
    for args in [
        vec![
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "x",
            "--expires",
            "90d",
        ],
        vec![
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "ci",
            "--expires",
            "7d",
        ],
        vec!["token", "revoke", "no-such-id"],
        vec!["user", "disable", "nobody"],
        vec![
            "token",
            "create",
            "--user",
            "",
            "--name",
            "x",
            "--expires",
            "7d",
        ],
    ] {
        let (code, stdout, stderr) = run_cli(&file, &args).await;
        assert_ne!(code, 0, "{args:?} succeeded");
        assert!(stdout.is_empty(), "{args:?} printed {stdout:?}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?} said {stderr:?}");
    }
    let (_, _, stderr) = run_cli(
        &file,
        &[
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "ci",
            "--expires",
            "7d",
        ],
    )
    .await;
    assert!(
        stderr.contains("already has an active token named"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn check_config_names_the_key_value_and_fix() {
    let db = sqlite().await;
    let file = config_file(&db, "htp://deploy:4516", "127.0.0.1:0");
    let (code, _, stderr) = run_cli(&file, &["check-config"]).await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains(
            "upstream.url \"htp://deploy:4516\": unsupported scheme \"htp\"; use http or https"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1);

    let good = config_file(&db, "http://deploy:4516", "127.0.0.1:0");
    let (code, stdout, stderr) = run_cli(&good, &["check-config"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("valid"));
}

#[tokio::test]
async fn cli_revocation_reaches_a_running_gateway_on_the_same_sqlite_file() {
    let db = sqlite().await;
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let gateway = Process::start(&file).await;
    let token = cli_token(&file, "alice", "ci", "7d").await;
    let (_, listed, _) = run_cli(&file, &["token", "list", "--user", "alice", "--json"]).await;
    let id = serde_json::from_str::<serde_json::Value>(&listed).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let auth = [("authorization", basic("", &token))];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(get(&gateway.url("/api/v1/x"), &auth).await.status, 200);

    let (code, _, _) = run_cli(&file, &["token", "revoke", &id]).await;
    assert_eq!(code, 0);
    let took = within(Duration::from_secs(1), || async {
        get(&gateway.url("/api/v1/x"), &auth).await.status == 401
    })
    .await;
    assert!(
        took.is_some(),
        "revocation by another process not seen within 1 s"
    );

    // Disabling the user from another process works the same way.
    let (_, token2, _) = run_cli(
        &file,
        &[
            "token",
            "create",
            "--user",
            "bob",
            "--name",
            "ci",
            "--expires",
            "7d",
        ],
    )
    .await;
    let header = [("x-deploy-personal-token", token2.trim())];
    assert_eq!(get(&gateway.url("/x"), &header).await.status, 200);
    run_cli(&file, &["user", "disable", "bob"]).await;
    let took = within(Duration::from_secs(1), || async {
        get(&gateway.url("/x"), &header).await.status == 401
    })
    .await;
    assert!(
        took.is_some(),
        "user disable by another process not seen within 1 s"
    );

    let logs = gateway.stderr.lock().unwrap().clone();
    assert!(
        !logs.contains(&token) && !logs.contains(token2.trim()),
        "a token reached the log"
    );
    let status = gateway.terminate().await;
    assert!(status.success(), "SIGTERM exit: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_both_refuse_a_revoked_token_within_a_second() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let one = Process::start(&file).await;
    let two = Process::start(&file).await;
    let (_, token, stderr) = run_cli(
        &file,
        &[
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "ci",
            "--expires",
            "60d",
        ],
    )
    .await;
    assert!(!token.is_empty(), "{stderr}");
    let token = token.trim().to_string();
    let header = [("x-deploy-personal-token", token.as_str())];
    for replica in [&one, &two] {
        assert_eq!(get(&replica.url("/x"), &header).await.status, 200);
        assert_eq!(get(&replica.url("/x"), &header).await.status, 200);
    }
    let (_, listed, _) = run_cli(&file, &["token", "list", "--user", "alice", "--json"]).await;
    let id = serde_json::from_str::<serde_json::Value>(&listed).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    run_cli(&file, &["token", "revoke", &id]).await;
    for replica in [&one, &two] {
        let took = within(Duration::from_secs(1), || async {
            get(&replica.url("/x"), &header).await.status == 401
        })
        .await;
        assert!(
            took.is_some(),
            "a replica accepted a revoked token after 1 s"
        );
    }
    one.terminate().await;
    two.terminate().await;
}

/// Sends `len` bytes as a streamed upload and reads a streamed download of `len`
/// bytes, counting without keeping either.
async fn stream_through(addr: std::net::SocketAddr, token: &str, len: u64) -> (u64, u64) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let upload = http::Request::post("/upload")
        .header("host", "deploy")
        .header("x-deploy-personal-token", token)
        .body(Generated::new(len))
        .unwrap();
    let response = sender.send_request(upload).await.unwrap();
    assert_eq!(response.status(), 200);
    let uploaded: u64 = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
    .parse()
    .unwrap();

    sender.ready().await.unwrap();
    let download = http::Request::get(format!("/download/{len}"))
        .header("host", "deploy")
        .header("x-deploy-personal-token", token)
        .body(Generated::new(0))
        .unwrap();
    let response = sender.send_request(download).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut downloaded = 0u64;
    while let Some(frame) = body.frame().await {
        let frame: hyper::body::Frame<Bytes> = frame.unwrap();
        downloaded += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0);
    }
    (uploaded, downloaded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_in_bounded_memory() {
    const SIZE: u64 = 200 * 1024 * 1024;
    let db = sqlite().await;
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let gateway = Process::start(&file).await;
    let token = cli_token(&file, "alice", "big", "7d").await;
    // Warm up (pools, caches), then measure the peak against the settled size.
    stream_through(gateway.addr, &token, 1024 * 1024).await;
    let before = gateway.rss_kib();
    let (up, down) = stream_through(gateway.addr, &token, SIZE).await;
    assert_eq!(up, SIZE, "upload arrived incomplete");
    assert_eq!(down, SIZE, "download arrived incomplete");
    let peak = gateway.peak_rss_kib();
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!(
        "gateway RSS before {} MiB, peak {} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(
        growth_mib < 32,
        "memory grew by {growth_mib} MiB while streaming 2 x 200 MiB"
    );
    gateway.terminate().await;
}

#[tokio::test]
async fn no_secret_reaches_the_log_even_at_trace_level() {
    let db = sqlite().await;
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let jwt_key = db.dir.path().join("jwt.key");
    let gateway = Process::start_with_env(
        &file,
        &[
            ("PATGATE_LOG__LEVEL", "trace"),
            ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
            (
                "PATGATE_UPSTREAM__IDENTITY__JWT__KEY_FILE",
                jwt_key.to_str().unwrap(),
            ),
            ("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", "shared-s3cret"),
        ],
    )
    .await;
    let token = cli_token(&file, "alice", "ci", "7d").await;
    let unknown = patgate::core::token::PlainToken::generate()
        .expose()
        .to_string();
    let password = basic("admin", "admin-pa55word");
    get(
        &gateway.url("/api?apikey=query-secret"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    get(
        &gateway.url("/api"),
        &[("x-deploy-personal-token", &unknown)],
    )
    .await;
    get(&gateway.url("/api"), &[("authorization", &password)]).await;
    get(
        &gateway.url("/api"),
        &[("x-deploy-personal-token", "dpat_malformed")],
    )
    .await;
    let jwt = upstream.seen()[0].headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    let log = gateway.stderr.clone();
    assert!(gateway.terminate().await.success());
    tokio::time::sleep(Duration::from_millis(200)).await; // let the reader drain the pipe
    let logs = log.lock().unwrap().clone();
    for secret in [
        token.as_str(),
        unknown.as_str(),
        "admin-pa55word",
        &password,
        &jwt[7..],
        "shared-s3cret",
        "query-secret",
    ] {
        assert!(
            !logs.contains(secret),
            "a secret reached the log: {secret:.12}…"
        );
    }
    assert!(
        logs.contains("refused token"),
        "the log does record refusals"
    );
}

/// After SIGTERM with `shutdown_delay`, readiness answers 503 while requests are still
/// served, so that a load balancer polling it stops sending; only then does the port
/// close, and the process exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_for_shutdown_delay_before_the_port_closes() {
    let db = sqlite().await;
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let mut gateway = Process::start_with_env(&file, &[("PATGATE_SHUTDOWN_DELAY", "2s")]).await;
    assert_eq!(get(&gateway.url("/patgate/readyz"), &[]).await.status, 200);

    let pid = gateway.child.id().unwrap().to_string();
    let signalled = std::time::Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let not_ready = within(Duration::from_secs(1), || async {
        get(&gateway.url("/patgate/readyz"), &[]).await.status == 503
    })
    .await;
    assert!(
        not_ready.is_some(),
        "readiness still 200 a second after SIGTERM"
    );
    let answer = get(&gateway.url("/patgate/readyz"), &[]).await;
    assert_eq!(answer.error_code(), "not_ready");
    // Still serving: a request for Deploy gets through.
    assert_eq!(get(&gateway.url("/deployit/x"), &[]).await.status, 200);
    assert!(signalled.elapsed() < Duration::from_secs(2));

    let closed = within(Duration::from_secs(4), || async {
        tokio::net::TcpStream::connect(gateway.addr).await.is_err()
    })
    .await;
    assert!(closed.is_some(), "the port still accepts 6 s after SIGTERM");
    let open_for = signalled.elapsed();
    assert!(
        open_for >= Duration::from_secs(2),
        "the port closed {open_for:?} after SIGTERM, before shutdown_delay"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), gateway.child.wait())
        .await
        .expect("the gateway exited")
        .unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");
}
