//! Reloading the configuration in place, with the real binary: `patgate reload` (SIGHUP
//! through `pid_file`) moves Deploy and the listener's certificate under load without
//! a failed request; a broken file is refused and the old settings keep serving; a key
//! that needs a restart is named and left as it was.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::tls::{connector_trusting, self_signed};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The configuration `config_file` writes, with Deploy at `upstream` and `extra` added.
fn write_config(file: &Path, base: &str, from: &str, upstream: &str, extra: &str) {
    let text = base.replace(from, upstream) + extra;
    std::fs::write(file, text).unwrap();
}

fn tls_keys(cert: &Path, key: &Path) -> String {
    format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n",
        cert.display(),
        key.display()
    )
}

fn der(cert: &Path) -> Vec<u8> {
    rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).unwrap(),
    ))
    .next()
    .unwrap()
    .unwrap()
    .to_vec()
}

async fn open(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
) -> TlsStream<tokio::net::TcpStream> {
    try_open(addr, connector).await.expect("TLS handshake")
}

async fn try_open(
    addr: std::net::SocketAddr,
    connector: &TlsConnector,
) -> Option<TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.ok()
}

/// The certificate the gateway presented on `stream`.
fn presented(stream: &TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// One token request on `stream`; its status (0: the connection failed).
async fn request(stream: &mut TlsStream<tokio::net::TcpStream>, token: &str, close: bool) -> u16 {
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "GET /deployit/server/info HTTP/1.1\r\nHost: localhost\r\nx-deploy-personal-token: {token}\r\nConnection: {connection}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return 0;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            if buf.len() >= end + 4 + length {
                return head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return 0,
        }
    }
}

struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Clients that each open a new connection per request, until stopped.
fn load(
    addr: std::net::SocketAddr,
    connector: TlsConnector,
    token: String,
    clients: usize,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let tasks = (0..clients)
        .map(|_| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            let (connector, token) = (connector.clone(), token.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let Some(mut stream) = try_open(addr, &connector).await else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    match request(&mut stream, &token, true).await {
                        200 => served.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    Load {
        stop,
        served,
        failed,
        tasks,
    }
}

impl Load {
    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// A token for alice made with the CLI, with extra `token create` arguments.
async fn cli_token_with(file: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "token",
        "create",
        "--user",
        "alice",
        "--name",
        "hook",
        "--expires",
        "7d",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = run_cli(file, &args).await;
    assert_eq!(code, 0, "{stderr}");
    stdout.trim().to_string()
}

/// Waits for `serve` to write its pid file.
async fn pid_written(pid_file: &Path) {
    let written = within(Duration::from_secs(2), || async { pid_file.exists() }).await;
    assert!(
        written.is_some(),
        "serve writes its pid_file {}",
        pid_file.display()
    );
}

async fn reload(file: &Path) {
    let (code, stdout, stderr) = run_cli(file, &["reload"]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("sent SIGHUP"), "{stdout}");
}

/// Waits until the gateway's log has `text` `count` times.
async fn logged(gw: &Process, text: &str, count: usize) -> String {
    let found = within(Duration::from_secs(5), || async {
        gw.stderr.lock().unwrap().matches(text).count() >= count
    })
    .await;
    let log = gw.stderr.lock().unwrap().clone();
    assert!(found.is_some(), "no {text:?} in the log:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_moves_deploy_and_the_certificate_and_drops_no_request() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = db.dir.path().to_path_buf();
    let (old, new) = (Upstream::start().await, Upstream::start().await);
    let (cert_a, key_a) = self_signed(&dir, "before");
    let (cert_b, key_b) = self_signed(&dir, "after");
    let pid_file: PathBuf = dir.join("patgate.pid");
    let file = config_file(&db, &old.url(), "127.0.0.1:0");
    let base = std::fs::read_to_string(&file).unwrap();
    let extra = |cert: &Path, key: &Path| {
        format!("{}pid_file: {}\n", tls_keys(cert, key), pid_file.display())
    };
    write_config(
        &file,
        &base,
        &old.url(),
        &old.url(),
        &extra(&cert_a, &key_a),
    );
    let gw = Process::start(&file).await;
    pid_written(&pid_file).await;
    let token = cli_token(&file, "alice", "ci", "30d").await;
    let connector = connector_trusting(&[&cert_a, &cert_b]);

    // A keep-alive connection made before the reload.
    let mut kept = open(gw.addr, &connector).await;
    assert_eq!(presented(&kept), der(&cert_a));
    assert_eq!(request(&mut kept, &token, false).await, 200);
    assert_eq!(old.count(), 1);

    let running = load(gw.addr, connector.clone(), token.clone(), 4);
    tokio::time::sleep(Duration::from_millis(400)).await;
    write_config(
        &file,
        &base,
        &old.url(),
        &new.url(),
        &extra(&cert_b, &key_b),
    );
    reload(&file).await;

    // Within a second, new connections get the new certificate and reach the new
    // Deploy.
    let moved = within(Duration::from_secs(1), || async {
        let before = new.count();
        let mut fresh = open(gw.addr, &connector).await;
        presented(&fresh) == der(&cert_b)
            && request(&mut fresh, &token, true).await == 200
            && new.count() > before
    })
    .await;
    assert!(
        moved.is_some(),
        "no new certificate and Deploy 1 s after the reload"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (served, failed) = running.finish().await;
    assert_eq!(failed, 0, "{failed} of {} requests failed", served + failed);
    assert!(served > 20, "only {served} requests served");
    // The open connection was not cut, and its next request goes to the new Deploy.
    let before = (old.count(), new.count());
    assert_eq!(request(&mut kept, &token, false).await, 200);
    assert_eq!((old.count(), new.count()), (before.0, before.1 + 1));
    assert_eq!(
        presented(&kept),
        der(&cert_a),
        "an open connection keeps its certificate"
    );
    let log = logged(&gw, "configuration reloaded", 1).await;
    assert!(
        log.contains("upstream.url") && log.contains("tls.cert_file"),
        "{log}"
    );
    assert!(!log.contains("need a restart"), "{log}");
    gw.terminate().await;
    assert!(!pid_file.exists(), "the pid_file is removed at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_changes_nothing_and_a_restart_only_key_is_named() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = db.dir.path().to_path_buf();
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let base = std::fs::read_to_string(&file).unwrap();

    // Without pid_file, `patgate reload` says what to do.
    let (code, _, stderr) = run_cli(&file, &["reload"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("pid_file is not set"), "{stderr}");

    let pid_line = format!("pid_file: {}\n", dir.join("patgate.pid").display());
    std::fs::write(&file, format!("{base}{pid_line}")).unwrap();
    let gw = Process::start(&file).await;
    let token = cli_token(&file, "alice", "ci", "30d").await;
    let header = [("x-deploy-personal-token", token.as_str())];
    assert_eq!(get(&gw.url("/x"), &header).await.status, 200);
    let hook = cli_token_with(&file, &["--scope", "webhook"]).await;

    // Not YAML, then a value the checks refuse. `patgate reload` checks the file
    // first and signals nothing; SIGHUP sent directly is refused by the gateway. Either
    // way nothing changes.
    let pid_file = dir.join("patgate.pid");
    pid_written(&pid_file).await;
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    std::fs::write(&file, "upstream: [\n").unwrap();
    let (code, _, stderr) = run_cli(&file, &["reload"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("not valid YAML"), "{stderr}");
    hangup();
    let log = logged(&gw, "configuration reload refused", 1).await;
    assert!(log.contains("not valid YAML"), "{log}");
    std::fs::write(
        &file,
        format!("{base}{pid_line}trusted_proxies: [not-an-address]\n"),
    )
    .unwrap();
    hangup();
    let log = logged(&gw, "configuration reload refused", 2).await;
    assert!(log.contains("trusted_proxies"), "{log}");
    assert_eq!(get(&gw.url("/x"), &header).await.status, 200);
    let metrics =
        String::from_utf8_lossy(&get(&gw.url("/patgate/metrics"), &[]).await.body).into_owned();
    assert!(
        metrics.contains("patgate_config_reloads_total{result=\"failed\"} 2"),
        "{metrics}"
    );

    // A key that needs a restart is named and kept; the access log, SCIM and a webhook
    // path are switched on.
    let hook_header = [("x-deploy-personal-token", hook.as_str())];
    assert_eq!(
        get(&gw.url("/deployit/package/import"), &hook_header)
            .await
            .status,
        403
    );
    let scim_secret = "a-scim-secret-of-at-least-thirty-two-characters";
    let scim_header = [("authorization", format!("Bearer {scim_secret}"))];
    let scim_header: Vec<(&str, &str)> =
        scim_header.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let scim_url = gw.url("/patgate/scim/v2/ServiceProviderConfig");
    assert_eq!(
        get(&scim_url, &scim_header).await.status,
        404,
        "SCIM is off"
    );
    let next_pass = || async {
        let answer = common::api::as_user(
            "GET",
            &gw.url("/patgate/api/v1/notifications?limit=1"),
            "admin",
            "admin-pw",
            None,
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        answer.json()["next_pass_at"].clone()
    };
    let sso_offered =
        || async { get(&gw.url("/patgate/api/v1/session"), &[]).await.json()["sso"].clone() };
    assert_eq!(sso_offered().await, false);
    let before = next_pass().await;
    assert!(
        !before.as_str().unwrap_or_default().ends_with("T03:00:00Z"),
        "{before}"
    );
    // Deploy moves too: the API's password checks follow it.
    let moved = Upstream::start().await;
    let changed = base
        .replace(&upstream.url(), &moved.url())
        .replace("shutdown_grace: 5s", "shutdown_grace: 7s")
        .replace(
            "log:\n  level: info\n",
            "log:\n  level: info\n  access: true\n",
        )
        + &pid_line
        + &format!(
            "scim:\n  secret: {scim_secret}\nwebhooks:\n  paths: [/deployit/package/]\nnotify:\n  daily_at: \"03:00\"\n  time_zone: UTC\nsso:\n  issuer: http://127.0.0.1:9/realms/x\n  client_id: patgate\n  client_secret: a-client-secret\n  redirect_url: {}\n",
            gw.url("/patgate/sso/callback")
        );
    std::fs::write(&file, changed).unwrap();
    reload(&file).await;
    let log = logged(&gw, "configuration reloaded", 1).await;
    for key in [
        "log.access",
        "scim.secret",
        "webhooks.paths",
        "notify.daily_at",
        "sso.issuer",
    ] {
        assert!(log.contains(key), "{key}: {log}");
    }
    assert_eq!(get(&scim_url, &scim_header).await.status, 200, "SCIM is on");
    assert_eq!(sso_offered().await, true, "Sign in with SSO is offered");
    let (at_old, at_new) = (upstream.count(), moved.count());
    let me = common::api::as_user(
        "GET",
        &gw.url("/patgate/api/v1/me"),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(
        upstream.count(),
        at_old,
        "the password check went to the old Deploy"
    );
    assert!(
        moved.count() > at_new,
        "the password check did not reach the new Deploy"
    );
    let next = next_pass().await;
    assert!(
        next.as_str().is_some_and(|at| at.ends_with("T03:00:00Z")),
        "the daily pass is at 03:00 UTC after the reload: {next}"
    );
    assert_eq!(
        get(&gw.url("/deployit/package/import"), &hook_header)
            .await
            .status,
        200
    );
    let log = logged(&gw, "need a restart", 1).await;
    assert!(log.contains("shutdown_grace"), "{log}");
    assert_eq!(get(&gw.url("/x"), &header).await.status, 200);
    let access = within(Duration::from_secs(3), || async {
        let _ = get(&gw.url("/x"), &header).await;
        gw.stderr
            .lock()
            .unwrap()
            .lines()
            .any(|l| l.contains("duration_ms") && l.contains("alice"))
    })
    .await;
    assert!(
        access.is_some(),
        "no access line after the reload:\n{}",
        gw.stderr.lock().unwrap()
    );
    let metrics =
        String::from_utf8_lossy(&get(&gw.url("/patgate/metrics"), &[]).await.body).into_owned();
    assert!(
        metrics.contains("patgate_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    gw.terminate().await;
}

/// The claims of the JWT in the last request `upstream` received.
fn last_jwt_claims(upstream: &Upstream) -> serde_json::Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let seen = upstream.last();
    let bearer = seen.headers["authorization"].to_str().unwrap().to_string();
    let jwt = bearer.strip_prefix("Bearer ").expect("a bearer JWT");
    let payload = URL_SAFE_NO_PAD
        .decode(jwt.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_what_the_jwt_says_and_can_switch_the_identity_mode() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let dir = db.dir.path().to_path_buf();
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let base = std::fs::read_to_string(&file).unwrap();
    let pid_line = format!("pid_file: {}\n", dir.join("patgate.pid").display());
    let jwt = |audience: &str| {
        base.replace(
            "    allow_header_without_secret: true\n",
            &format!(
                "    allow_header_without_secret: true\n    mode: jwt\n    jwt:\n      key_file: {}\n      audience: {audience}\n      algorithm: EdDSA\n",
                dir.join("jwt.key").display()
            ),
        ) + &pid_line
    };
    std::fs::write(&file, jwt("deploy-a")).unwrap();
    let gw = Process::start(&file).await;
    let token = cli_token(&file, "alice", "ci", "30d").await;
    let header = [("x-deploy-personal-token", token.as_str())];
    let pid_file = dir.join("patgate.pid");
    pid_written(&pid_file).await;
    assert_eq!(get(&gw.url("/x"), &header).await.status, 200);
    assert_eq!(last_jwt_claims(&upstream)["aud"], "deploy-a");

    // A new audience: the next JWT says it (a JWT minted for the old one is not reused).
    std::fs::write(&file, jwt("deploy-b")).unwrap();
    reload(&file).await;
    let changed = within(Duration::from_secs(3), || async {
        get(&gw.url("/x"), &header).await.status == 200
            && last_jwt_claims(&upstream)["aud"] == "deploy-b"
    })
    .await;
    assert!(changed.is_some(), "the JWT still names the old audience");
    let log = logged(&gw, "configuration reloaded", 1).await;
    assert!(log.contains("upstream.identity.jwt.audience"), "{log}");

    // Back to header mode: Deploy gets the username header and no JWT.
    std::fs::write(&file, format!("{base}{pid_line}")).unwrap();
    reload(&file).await;
    let header_mode = within(Duration::from_secs(3), || async {
        get(&gw.url("/x"), &header).await.status == 200
            && upstream.last().headers.get("authorization").is_none()
            && upstream
                .last()
                .headers
                .get("x-deploy-user")
                .is_some_and(|v| v == "alice")
    })
    .await;
    assert!(header_mode.is_some(), "still in jwt mode after the reload");
    gw.terminate().await;
}
