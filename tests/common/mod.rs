//! Test harness: a Deploy stand-in that records what reaches it, a database per test
//! (SQLite file, or a fresh PostgreSQL database when PATGATE_TEST_POSTGRES_URL is set),
//! the gateway itself (in this process or as the real binary), and a small client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use patgate::app::{self, Running};
use patgate::cli::{self, Admin, CreateArgs, TokenCommand, UserCommand};
use patgate::config::Config;
use patgate::core::token::Expiration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Runs each named case against SQLite and against PostgreSQL (skipped without its
/// URL outside CI): `on_both_backends!(case_a, case_b)` with `async fn case_a(db: TestDb)`.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = super::TestDb::new(super::Backend::Sqlite).await.unwrap();
                super::$name(db).await;
            })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(db) = super::TestDb::new(super::Backend::Postgres).await else { return };
                super::$name(db).await;
            })*
        }
    };
}

pub mod api;
pub mod browser;
pub mod crash;
pub mod deploy_jwt;
pub mod nginx;
pub mod node;
pub mod oidc;
pub mod outage;
pub mod scim;
pub mod scripted;
pub mod smtp;
pub mod tls;

pub const PG_ENV: &str = "PATGATE_TEST_POSTGRES_URL";

// ---------------------------------------------------------------- Deploy stand-in

/// What the stand-in saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The request target as it came on the wire.
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: u64,
}

/// A Deploy stand-in on loopback. Routes: Deploy's password and admin checks and the
/// caller's role and permission lists for the accounts of [`api::DEPLOY_ACCOUNTS`]
/// (worded as [`Upstream::set_security`] says; see [`api::deploy_check`]);
/// `/download/N` streams N bytes; `/upload` counts the body; `/slow` answers after 3 s;
/// `/ws` accepts an upgrade and echoes bytes; `/close` answers and closes the connection;
/// anything else answers 200 "deploy".
pub struct Upstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    security: Arc<Mutex<api::Security>>,
    /// Who Deploy's admin check says is an administrator now.
    admins: Arc<Mutex<Vec<String>>>,
    https: bool,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_with(None).await
    }

    /// The stand-in serving https with the given acceptor.
    pub async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let security: Arc<Mutex<api::Security>> = Arc::default();
        let log = seen.clone();
        let wording = security.clone();
        let admins = Arc::new(Mutex::new(api::deploy_admins()));
        let admins_now = admins.clone();
        let https = tls.is_some();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let wording = wording.clone();
                let admins = admins_now.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let security = *wording.lock().unwrap();
                        upstream_handle(req, log.clone(), security, admins.clone())
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = http
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            seen,
            security,
            admins,
            https,
        }
    }

    /// How the stand-in answers about security from now on.
    pub fn set_security(&self, security: api::Security) {
        *self.security.lock().unwrap() = security;
    }

    /// Makes Deploy's admin check say yes (or no) for `user` from now on.
    pub fn set_deploy_admin(&self, user: &str, admin: bool) {
        let mut admins = self.admins.lock().unwrap();
        admins.retain(|a| !a.eq_ignore_ascii_case(user));
        if admin {
            admins.push(user.to_string());
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream received a request")
    }
}

pub type TestBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn upstream_handle(
    mut req: Request<Incoming>,
    log: Arc<Mutex<Vec<Seen>>>,
    security: api::Security,
    admins: Arc<Mutex<Vec<String>>>,
) -> Result<Response<TestBody>, Infallible> {
    let path = req.uri().path().to_string();
    let target = req.uri().to_string();
    let method = req.method().to_string();
    let headers = req.headers().clone();
    // `serve`'s one question at start (is Deploy there?) is not a request under test.
    let start_check = headers
        .get("user-agent")
        .is_some_and(|v| v.as_bytes() == patgate::app::preflight::START_CHECK_AGENT.as_bytes());
    let record = |body_len| {
        if start_check {
            return;
        }
        log.lock().unwrap().push(Seen {
            method: method.clone(),
            path: path.clone(),
            target: target.clone(),
            headers: headers.clone(),
            body_len,
        })
    };
    let admins_now = admins.lock().unwrap().clone();
    if let Some(answer) = api::deploy_check(&path, &headers, security, &admins_now) {
        record(0);
        return Ok(answer);
    }
    if path == "/ws" {
        record(0);
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(upgraded) = upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(full(""))
            .unwrap();
        return Ok(response);
    }
    // Consume the body as a stream, counting, never holding it whole.
    let mut body = req.into_body();
    let mut len = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => len += frame.data_ref().map(|d| d.len() as u64).unwrap_or(0),
            Err(_) => break,
        }
    }
    record(len);
    if let Some(n) = path.strip_prefix("/download/") {
        let n: u64 = n.parse().unwrap();
        return Ok(Response::new(Generated::new(n).boxed()));
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if path == "/upload" {
        return Ok(Response::new(full(len.to_string())));
    }
    if path == "/close" {
        // Like a server ending keep-alive: answer, then close the connection.
        return Ok(Response::builder()
            .header("connection", "close")
            .body(full("closing"))
            .unwrap());
    }
    // Like Deploy, hand out a session with every answer.
    Ok(Response::builder()
        .header("x-upstream", "deploy")
        .header("set-cookie", "SESSION_XLD=from-deploy; Path=/; HttpOnly")
        .body(full("deploy"))
        .unwrap())
}

fn full(text: impl Into<Bytes>) -> TestBody {
    Full::new(text.into()).boxed()
}

/// A body of `remaining` bytes produced 64 KiB at a time, never held whole.
pub struct Generated {
    remaining: u64,
    chunk: Bytes,
}

impl Generated {
    pub fn new(len: u64) -> Generated {
        Generated {
            remaining: len,
            chunk: Bytes::from(vec![b'x'; 64 * 1024]),
        }
    }
}

impl hyper::body::Body for Generated {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

// ---------------------------------------------------------------- databases

/// One isolated database for one test; dropped (PostgreSQL) at the end.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Option<TestDb> {
        let dir = tempfile::tempdir().unwrap();
        match backend {
            Backend::Sqlite => Some(TestDb {
                url: format!("sqlite://{}", dir.path().join("patgate.db").display()),
                dir,
                pg_name: None,
            }),
            Backend::Postgres => {
                let base = postgres_base_url()?;
                let name = format!("patgate_t_{}", random_suffix());
                let mut admin = sqlx_connect(&base).await;
                sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
                    .await
                    .unwrap();
                let url = replace_database(&base, &name);
                Some(TestDb {
                    url,
                    dir,
                    pg_name: Some((base, name)),
                })
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((base, name)) = self.pg_name.take() {
            // Drop runs outside async context: use a private runtime on a thread.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut admin = sqlx_connect(&base).await;
                    let _ = sqlx::Executor::execute(
                        &mut admin,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                });
            })
            .join();
        }
    }
}

async fn sqlx_connect(url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url).await.unwrap()
}

/// The PostgreSQL base URL; `None` skips PostgreSQL cases outside CI, and in CI
/// (CI=true) a missing URL fails the test instead.
pub fn postgres_base_url() -> Option<String> {
    match std::env::var(PG_ENV) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "{PG_ENV} must be set in CI: the PostgreSQL suite may not skip"
            );
            eprintln!(
                "skipping PostgreSQL case: set {PG_ENV}=postgres://postgres@127.0.0.1:5432/test"
            );
            note_skipped();
            None
        }
    }
}

/// Where `scripts/test.sh` collects the cases that skipped, to count them at the end
/// (libtest can only call them passed).
pub const SKIP_LOG_ENV: &str = "PATGATE_TEST_SKIP_LOG";

/// Appends this case (`test-binary test::path`, from the thread libtest runs it on) to
/// the skip log, when there is one.
fn note_skipped() {
    let Ok(path) = std::env::var(SKIP_LOG_ENV) else {
        return;
    };
    let case = std::thread::current()
        .name()
        .unwrap_or("a case")
        .to_string();
    let line = format!("{} {case}\n", env!("CARGO_CRATE_NAME"));
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(line.as_bytes());
    }
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map(|(b, q)| (b, Some(q)))
        .unwrap_or((url, None));
    let slash = base.rfind('/').unwrap();
    let mut out = format!("{}/{name}", &base[..slash]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A free loopback port, for a server whose address must be known before it starts
/// (a callback registered with a provider, a browser's driver).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn random_suffix() -> String {
    let mut b = [0u8; 6];
    getrandom::getrandom(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------- the gateway

/// Gateway configuration for a test: YAML plus overrides.
pub fn config(db: &TestDb, upstream: &str, extra: &[(&str, &str)]) -> Config {
    let yaml = format!(
        "listen: 127.0.0.1:0\nupstream:\n  url: {upstream}\n  connect_timeout: 1s\n  read_timeout: 2s\n  identity:\n    allow_header_without_secret: true\ndatabase:\n  url: {}\nsecrets:\n  token_key_file: {}\n  \ncache:\n  poll_interval: 100ms\nshutdown_grace: 5s\nlog:\n  level: warn\n",
        db.url,
        db.dir.path().join("token.key").display(),
    );
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    Config::from_yaml(&yaml, &env).unwrap()
}

/// A SQLite database, a Deploy stand-in and the gateway (in this process) in front of it.
pub struct Stack {
    pub db: TestDb,
    pub upstream: Upstream,
    pub gw: Gateway,
}

/// Starts a [`Stack`] with the given config overrides.
pub async fn stack(extra: &[(&str, &str)]) -> Stack {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), extra)).await;
    Stack { db, upstream, gw }
}

/// Creates a token with the CLI binary; returns the token.
pub async fn cli_token(
    config_file: &std::path::Path,
    user: &str,
    name: &str,
    expires: &str,
) -> String {
    let (code, stdout, stderr) = run_cli(
        config_file,
        &[
            "token",
            "create",
            "--user",
            user,
            "--name",
            name,
            "--expires",
            expires,
        ],
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    stdout.trim().to_string()
}

/// Writes the same configuration as a file with env overrides, for the binary.
pub fn config_file(db: &TestDb, upstream: &str, listen: &str) -> std::path::PathBuf {
    let path = db
        .dir
        .path()
        .join(format!("gateway-{}.yaml", random_suffix()));
    std::fs::write(
        &path,
        format!(
            "listen: {listen}\nupstream:\n  url: {upstream}\n  identity:\n    allow_header_without_secret: true\ndatabase:\n  url: {}\nsecrets:\n  token_key_file: {}\ncache:\n  poll_interval: 100ms\nshutdown_grace: 5s\nlog:\n  level: info\n",
            db.url,
            db.dir.path().join("token.key").display(),
        ),
    )
    .unwrap();
    path
}

/// Creates the database and token key a configuration file names, as the gateway's
/// first start does (the command line never creates them).
pub async fn first_start(config_file: &std::path::Path) {
    let config = Config::load(config_file).unwrap();
    let (store, _) = patgate::app::open_store(&config).await.unwrap();
    store.close().await;
}

/// The gateway running in this process.
pub struct Gateway {
    pub config: Config,
    pub running: Option<Running>,
    pub addr: SocketAddr,
}

impl Gateway {
    pub async fn start(config: Config) -> Gateway {
        let running = app::start(config.clone()).await.unwrap();
        let addr = running.local_addr;
        Gateway {
            config,
            running: Some(running),
            addr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The running gateway's API state.
    pub fn api(&self) -> Option<std::sync::Arc<patgate::api::Api>> {
        self.running.as_ref().map(|r| r.api.clone())
    }

    /// Creates a token as the CLI would; returns (id, token).
    pub async fn create_token(
        &self,
        user: &str,
        name: &str,
        expires: Expiration,
    ) -> (String, String) {
        create_token(&self.config, user, name, expires).await
    }

    pub async fn revoke(&self, id: &str) {
        revoke(&self.config, id).await;
    }

    pub async fn set_disabled(&self, user: &str, disabled: bool) {
        let cmd = if disabled {
            UserCommand::Disable {
                username: user.into(),
            }
        } else {
            UserCommand::Enable {
                username: user.into(),
            }
        };
        cli::run_admin(&self.config, Admin::User(cmd))
            .await
            .unwrap();
    }

    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.unwrap();
        }
    }
}

/// Revokes token `id` as the CLI would, with `config`'s database.
pub async fn revoke(config: &Config, id: &str) {
    cli::run_admin(
        config,
        Admin::Token(TokenCommand::Revoke {
            id: Some(id.into()),
            leaked: false,
        }),
    )
    .await
    .unwrap();
}

pub async fn create_token(
    config: &Config,
    user: &str,
    name: &str,
    expires: Expiration,
) -> (String, String) {
    let out = cli::run_admin(
        config,
        Admin::Token(TokenCommand::Create(CreateArgs {
            user: user.into(),
            name: name.into(),
            expires,
            source: patgate::store::UserSource::Internal,
            email: None,
            scope: Default::default(),
            allow_from: Vec::new(),
            json: true,
        })),
    )
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["id"].as_str().unwrap().into(),
        v["token"].as_str().unwrap().into(),
    )
}

/// The real binary, as an operator runs it.
pub struct Process {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub stderr: Arc<Mutex<String>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_patgate")
}

impl Process {
    /// Starts `patgate serve` and waits for its "listening" line.
    pub async fn start(config_file: &std::path::Path) -> Process {
        Self::start_with_env(config_file, &[]).await
    }

    /// Starts with extra `PATGATE_*` overrides in the environment.
    pub async fn start_with_env(config_file: &std::path::Path, env: &[(&str, &str)]) -> Process {
        Self::start_in(std::path::Path::new("."), config_file, env).await
    }

    /// Starts from working directory `dir`, as an operator in that folder would.
    pub async fn start_in(
        dir: &std::path::Path,
        config_file: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Process {
        let mut child = tokio::process::Command::new(binary())
            .current_dir(dir)
            .args(["serve", "--config"])
            .arg(config_file)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = text.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                // In the text format `local_addr=…`; with log.json `"local_addr":"…"`.
                let addr = match line.split("local_addr=").nth(1) {
                    Some(rest) => rest.split_whitespace().next().map(str::to_string),
                    None => line
                        .split("\"local_addr\":\"")
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                        .map(str::to_string),
                };
                if let Some(addr) = addr {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        let addr = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("the gateway started within 20 s")
            .expect("the gateway printed its address");
        Process {
            child,
            addr: addr.parse().unwrap(),
            stderr: text,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Peak resident memory in KiB (VmHWM).
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.child.id().unwrap(), "VmHWM:")
    }

    pub fn rss_kib(&self) -> u64 {
        status_kib(self.child.id().unwrap(), "VmRSS:")
    }

    /// SIGTERM, then wait for exit; returns the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().unwrap();
        std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("the gateway exited after SIGTERM")
            .unwrap()
    }
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Runs the CLI binary; returns (exit code, stdout, stderr).
pub async fn run_cli(config_file: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["--config", config_file.to_str().unwrap()];
    all.extend_from_slice(args);
    run_in(std::path::Path::new("."), &all, &[]).await
}

/// Runs the binary with `args` from working directory `dir`, with extra environment
/// variables; returns (exit code, stdout, stderr).
pub async fn run_in(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let out = tokio::process::Command::new(binary())
        .current_dir(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------- client

/// A plain answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// Sends one request on a fresh connection.
pub async fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> Answer {
    let uri: http::Uri = url.parse().unwrap();
    let stream = TcpStream::connect(format!(
        "{}:{}",
        uri.host().unwrap(),
        uri.port_u16().unwrap()
    ))
    .await
    .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let host = uri.authority().unwrap().as_str();
    let target = uri.path_and_query().unwrap().as_str();
    send_on(&mut sender, method, target, host, headers).await
}

/// Sends one request on an open client connection and reads the whole answer.
pub async fn send_on(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    method: &str,
    target: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> Answer {
    sender.ready().await.expect("the connection is still open");
    let mut req = Request::builder()
        .method(method)
        .uri(target)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = sender
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    send("GET", url, headers).await
}

/// `Authorization: Basic base64(user:secret)`.
/// The value of one sample in a metrics exposition: `line` is the name with its labels.
pub fn metric(text: &str, line: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {line} in the metrics"))
}

pub fn basic(user: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

/// Writes raw bytes as a request and returns the response's status code.
pub async fn raw_status(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

/// Polls `check` every 20 ms until it is true or `within` passes; returns the time taken.
pub async fn within<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
