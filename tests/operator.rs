//! The operator's side, run as an operator would: the binary from another working
//! directory, with its output on a full disk or a closed pipe, with misspelt settings,
//! a second process on the port, and requests a careless client sends.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;

/// A configuration folder as an operator lays it out: `etc/gateway.yaml` with relative
/// paths, beside an unrelated working directory `elsewhere/`.
struct Site {
    _root: tempfile::TempDir,
    root: PathBuf,
    etc: PathBuf,
    elsewhere: PathBuf,
    config: PathBuf,
}

impl Site {
    fn new(upstream: &str) -> Site {
        Self::with(upstream, "127.0.0.1:0", "")
    }

    fn with(upstream: &str, listen: &str, extra: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        let etc = root.join("etc");
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        let config = etc.join("gateway.yaml");
        std::fs::write(
            &config,
            format!(
                "listen: {listen}\nupstream:\n  url: {upstream}\n  identity:\n    allow_header_without_secret: true\ndatabase:\n  url: sqlite://data/patgate.db\nsecrets:\n  token_key_file: data/token-hmac.key\ncache:\n  poll_interval: 100ms\nshutdown_grace: 2s\nlog:\n  level: info\n{extra}"
            ),
        )
        .unwrap();
        Site {
            _root: dir,
            root,
            etc,
            elsewhere,
            config,
        }
    }

    /// `patgate --config ../etc/gateway.yaml ARGS` from `elsewhere/`.
    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        self.cli_env(args, &[]).await
    }

    async fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
        let mut all = vec!["--config", "../etc/gateway.yaml"];
        all.extend_from_slice(args);
        run_in(&self.elsewhere, &all, env).await
    }

    /// The gateway, started from the site's root folder.
    async fn serve(&self, env: &[(&str, &str)]) -> Process {
        Process::start_in(&self.root, &self.config, env).await
    }

    fn database_line(&self) -> String {
        format!(
            "changed database sqlite://{}/data/patgate.db (configuration {})",
            self.etc.display(),
            self.config.display()
        )
    }
}

fn create_args<'a>(name: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "token",
        "create",
        "--user",
        "alice",
        "--name",
        name,
        "--expires",
        "7d",
    ];
    args.extend_from_slice(extra);
    args
}

async fn token_works(gateway: &Process, token: &str) -> bool {
    get(
        &gateway.url("/deployit/repository/ci"),
        &[("x-deploy-personal-token", token)],
    )
    .await
    .status
        == 200
}

/// Lists alice's tokens as JSON through the CLI.
async fn tokens_of_alice(site: &Site) -> Vec<serde_json::Value> {
    let (code, out, err) = site
        .cli(&["token", "list", "--user", "alice", "--json"])
        .await;
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_cli_run_from_another_folder_acts_on_the_gateways_database() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site.serve(&[]).await;

    let (code, out, err) = site.cli(&create_args("from-elsewhere", &["--json"])).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&site.database_line()), "{err}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    let token = created["token"].as_str().unwrap();
    assert!(
        !site.elsewhere.join("data").exists(),
        "nothing is created in the working directory"
    );
    assert!(
        token_works(&gateway, token).await,
        "the running gateway accepts the token the CLI made"
    );

    let id = created["id"].as_str().unwrap();
    let (code, out, err) = site.cli(&["token", "revoke", id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked token"), "{out}");
    assert!(err.contains(&site.database_line()), "{err}");
    let refused = within(Duration::from_secs(2), || async {
        !token_works(&gateway, token).await
    })
    .await;
    assert!(refused.is_some(), "the revocation reached the gateway");
    gateway.terminate().await;
}

#[tokio::test]
async fn admin_commands_never_create_a_database_or_a_key() {
    let site = Site::new("http://127.0.0.1:9");
    let (code, out, err) = site.cli(&create_args("nowhere", &[])).await;
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "no token printed: {out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains(&format!(
            "no token key at {}/data/token-hmac.key",
            site.etc.display()
        )),
        "{err}"
    );
    assert!(err.contains(&site.config.display().to_string()), "{err}");
    assert!(!site.etc.join("data").exists());
    assert!(!site.elsewhere.join("data").exists());

    // A key but no database: named as well, and still nothing created.
    std::fs::create_dir_all(site.etc.join("data")).unwrap();
    std::fs::write(site.etc.join("data/token-hmac.key"), "ab".repeat(32)).unwrap();
    for args in [
        create_args("nowhere", &[]),
        vec!["token", "list", "--user", "alice"],
        vec!["user", "disable", "alice"],
    ] {
        let (code, _, err) = site.cli(&args).await;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(
            err.contains(&format!(
                "no database at {}/data/patgate.db",
                site.etc.display()
            )),
            "{args:?}: {err}"
        );
    }
    assert!(!site.etc.join("data/patgate.db").exists());
}

#[tokio::test]
async fn a_token_nobody_could_see_is_revoked_again() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site.serve(&[]).await;

    // A full disk, and a pipe whose reader has gone.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    for (name, stdout) in [
        ("to-dev-full", Stdio::from(full)),
        ("to-closed-pipe", Stdio::from(writer)),
    ] {
        let child = tokio::process::Command::new(binary())
            .current_dir(&site.elsewhere)
            .args(["--config", "../etc/gateway.yaml"])
            .args(create_args(name, &[]))
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(
            err.lines()
                .any(|l| l.contains("could not write the token") && l.contains("revoked again")),
            "{name}: {err}"
        );
        let listed = tokens_of_alice(&site).await;
        let token = listed.iter().find(|t| t["name"] == name).unwrap();
        assert!(
            token["revoked_at"].is_string(),
            "{name}: the unseen token is revoked: {token}"
        );
    }

    // Other commands fail the same way, without a panic.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = tokio::process::Command::new(binary())
        .current_dir(&site.elsewhere)
        .args([
            "--config",
            "../etc/gateway.yaml",
            "token",
            "list",
            "--user",
            "alice",
        ])
        .stdout(Stdio::from(full))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
        .wait_with_output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    gateway.terminate().await;
}

#[tokio::test]
async fn check_config_refuses_what_serve_refuses_and_both_exit_2() {
    let site = Site::new("http://127.0.0.1:9");
    let cases: [(&[(&str, &str)], String); 3] = [
        (
            &[("PATGATE_SECRETS__TOKEN_KEY", "short")],
            "secrets.token_key".to_string(),
        ),
        (
            &[
                ("PATGATE_TLS__CERT_FILE", "tls/missing.pem"),
                ("PATGATE_TLS__KEY_FILE", "tls/missing-key.pem"),
            ],
            format!("tls.cert_file {}/tls/missing.pem", site.etc.display()),
        ),
        (
            &[
                ("PATGATE_UPSTREAM__IDENTITY__JWT__KEY_FILE", "bad.key"),
                ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
            ],
            format!(
                "upstream.identity.jwt.key_file {}/bad.key",
                site.etc.display()
            ),
        ),
    ];
    std::fs::write(site.etc.join("bad.key"), "not a key").unwrap();
    for (env, expected) in cases {
        for command in ["check-config", "serve"] {
            let (code, _, err) = site.cli_env(&[command], env).await;
            assert_eq!(code, 2, "{command} {env:?}: {err}");
            assert!(err.contains(&expected), "{command} {env:?}: {err}");
        }
    }
    assert!(
        !site.etc.join("data").exists(),
        "neither command made a key or database on the way"
    );

    let (code, out, err) = site.cli(&["check-config"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("is valid"), "{out}");
    assert!(
        out.contains("does not exist yet; serve creates it"),
        "{out}"
    );
}

#[tokio::test]
async fn check_config_connect_reaches_the_database_and_deploy() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let (code, out, err) = site.cli(&["check-config", "--connect"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no file yet; serve creates it"), "{out}");
    assert!(
        out.contains(&format!("Deploy at {}: answered", upstream.url())),
        "{out}"
    );
    assert!(
        !site.etc.join("data").exists(),
        "--connect creates nothing either"
    );

    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (code, _, err) = site
        .cli_env(
            &["check-config", "--connect"],
            &[("PATGATE_UPSTREAM__URL", &dead_url)],
        )
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Deploy (upstream.url"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
}

#[tokio::test]
async fn check_deploy_in_basic_mode_names_the_service_accounts_roles_or_what_deploy_did_not_say() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    first_start(&site.config).await;
    let basic = [
        ("PATGATE_UPSTREAM__IDENTITY__MODE", "basic"),
        ("PATGATE_UPSTREAM__IDENTITY__BASIC__USERNAME", "svc-patgate"),
        ("PATGATE_UPSTREAM__IDENTITY__BASIC__PASSWORD", "svc-pw"),
    ];
    let check = || site.cli_env(&["check-deploy", "--user", "alice"], &basic);
    let said = [
        "Deploy says the service account svc-patgate has the roles: deployers, ci.",
        "Deploy says the service account svc-patgate has the granted permissions: login; on Applications/App1: read, deploy#initial, deploy#upgrade.",
    ];
    // Deploy answering XML although asked for JSON, and answering JSON.
    for wording in [
        api::Wording::Xml,
        api::Wording::XmlIndented,
        api::Wording::Json,
    ] {
        upstream.set_security(api::Security {
            wording,
            ..api::Security::default()
        });
        let (code, out, err) = check().await;
        assert_eq!(code, 0, "{wording:?}: {err}");
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("Deploy accepted the gateway's identity as the service account"),
            "{out}"
        );
        assert!(
            lines[0].ends_with("Deploy does not treat them as an administrator."),
            "{out}"
        );
        assert_eq!(lines[1..], said, "{wording:?}");
        assert!(
            !out.contains("svc-pw") && !err.contains("svc-pw"),
            "{out}{err}"
        );
    }
    let asked: Vec<(String, String)> = upstream
        .seen()
        .iter()
        .map(|s| {
            (
                s.path.clone(),
                s.headers["accept"].to_str().unwrap().to_string(),
            )
        })
        .collect();
    let lists = "application/json".to_string();
    let xml = "application/xml".to_string();
    assert_eq!(
        asked[..4],
        [
            ("/deployit/server/info".to_string(), xml.clone()),
            ("/deployit/security/check/admin".to_string(), xml),
            ("/deployit/security/role/roles".to_string(), lists.clone()),
            ("/deployit/security/granted-permissions".to_string(), lists),
        ]
    );

    // A Deploy without the lists: the check still passes, and says what is missing.
    upstream.set_security(api::Security {
        without_lists: true,
        ..api::Security::default()
    });
    let (code, out, err) = check().await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Deploy did not say which roles the service account svc-patgate has: HTTP 404 from /deployit/security/role/roles: this Deploy does not have it."), "{out}");
    assert!(out.contains("Deploy did not say which permissions the service account svc-patgate has: HTTP 404 from /deployit/security/granted-permissions"), "{out}");

    // A service account Deploy refuses fails the check, with what to fix.
    let wrong = [
        basic[0],
        basic[1],
        ("PATGATE_UPSTREAM__IDENTITY__BASIC__PASSWORD", "not-it"),
    ];
    let (code, _, err) = site
        .cli_env(&["check-deploy", "--user", "alice"], &wrong)
        .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("HTTP 401") && err.contains("upstream.identity.basic"),
        "{err}"
    );
    assert!(!err.contains("not-it"), "{err}");
}

#[tokio::test]
async fn an_unreachable_postgresql_is_named_with_its_cause() {
    let site = Site::new("http://127.0.0.1:9");
    // Nothing listens on 5439 on these machines; PostgreSQL itself is on 5432.
    let env = [(
        "PATGATE_DATABASE__URL",
        "postgres://postgres:secret-pw@127.0.0.1:5439/test",
    )];
    for args in [&["serve"][..], &["check-config", "--connect"][..]] {
        let (code, _, err) = site.cli_env(args, &env).await;
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("connection refused at 127.0.0.1:5439"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("secret-pw"), "{args:?}: {err}");
    }
}

#[tokio::test]
async fn misspelt_settings_are_refused_with_what_to_write() {
    let site = Site::new("http://127.0.0.1:9");
    let (code, _, err) = site
        .cli_env(&["serve"], &[("PATGATE_LOG__LEVEL", "verbose")])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("log.level \"verbose\"")
            && err.contains("off, error, warn, info, debug, trace"),
        "{err}"
    );

    let (code, _, err) = site
        .cli_env(
            &["serve"],
            &[("PATGATE_UPSTREAM_URL", "http://127.0.0.1:9")],
        )
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("environment variable PATGATE_UPSTREAM_URL")
            && err.contains("did you mean PATGATE_UPSTREAM__URL?"),
        "{err}"
    );
}

#[tokio::test]
async fn a_second_gateway_on_the_same_port_is_refused_unless_asked_for() {
    let upstream = Upstream::start().await;
    let first_site = Site::new(&upstream.url());
    let first = first_site.serve(&[]).await;
    let port = first.addr.port();

    let second_site = Site::with(&upstream.url(), &format!("127.0.0.1:{port}"), "");
    let (code, _, err) = run_in(
        &second_site.root,
        &["--config", second_site.config.to_str().unwrap(), "serve"],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another gateway already serves this port") && err.contains("share_port"),
        "{err}"
    );

    let overlapping = second_site.serve(&[("PATGATE_SHARE_PORT", "true")]).await;
    assert_eq!(overlapping.addr.port(), port);
    overlapping.terminate().await;
    first.terminate().await;
}

#[tokio::test]
async fn a_port_held_by_something_else_is_named_without_the_share_port_hint() {
    // An ordinary listener (no SO_REUSEPORT), as most servers are.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let upstream = Upstream::start().await;
    let site = Site::with(&upstream.url(), &format!("127.0.0.1:{port}"), "");
    let (code, _, err) = run_in(
        &site.root,
        &["--config", site.config.to_str().unwrap(), "serve"],
        &[],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("another process holds this port") && !err.contains("share_port"),
        "{err}"
    );
    drop(holder);
}

/// Sends raw bytes and returns the whole answer as text.
async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    raw_status(addr, request).await
}

fn body_of(answer: &str) -> serde_json::Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

#[tokio::test]
async fn careless_requests_get_json_with_a_hint_and_a_request_id() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site.serve(&[]).await;
    let (_, out, err) = site.cli(&create_args("careless", &[])).await;
    let token = out.trim().to_string();
    assert!(token.starts_with("dpat_"), "{err}");

    // A token read from a CRLF file, in Deploy's header.
    let crlf = format!(
        "GET /deployit/repository/ci HTTP/1.1\r\nhost: deploy\r\nx-deploy-personal-token: {token}\r\r\n\r\n"
    );
    let (status, answer) = raw(gateway.addr, crlf.as_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-request-id: "),
        "{answer}"
    );
    let json = body_of(&answer);
    assert_eq!(json["error"], "malformed_request", "{answer}");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("trailing newline"),
        "{answer}"
    );
    assert!(!answer.contains(&token), "the token is never echoed");

    // A NUL byte in a header, and a head over 64 KiB.
    let (status, answer) = raw(
        gateway.addr,
        b"GET / HTTP/1.1\r\nhost: deploy\r\nx-thing: a\0b\r\n\r\n",
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(body_of(&answer)["error"], "malformed_request");
    let huge = format!(
        "GET / HTTP/1.1\r\nhost: deploy\r\nx-big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let (status, answer) = raw(gateway.addr, huge.as_bytes()).await;
    assert_eq!(status, 431, "{answer}");
    assert_eq!(body_of(&answer)["error"], "request_head_too_large");
    assert!(
        answer.to_ascii_lowercase().contains("x-request-id: "),
        "{answer}"
    );

    // The same token with its newline, as Python's requests sends it in Basic.
    let answer = get(
        &gateway.url("/deployit/repository/ci"),
        &[("authorization", &basic("", &format!("{token}\n")))],
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.error_code(), "malformed_token");
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("line break"),
        "{:?}",
        answer.json()
    );
    assert!(answer.headers.contains_key("x-request-id"));
    assert_eq!(upstream.count(), 0, "none of these reached Deploy");
    let metrics = get(&gateway.url("/patgate/metrics"), &[]).await;
    assert!(
        String::from_utf8_lossy(&metrics.body)
            .contains("patgate_request_refusals_total{reason=\"malformed_request\"} 3"),
        "the three malformed heads are counted"
    );

    let logged = gateway.stderr.lock().unwrap().clone();
    assert!(
        logged.contains("refused a malformed request head"),
        "{logged}"
    );
    assert!(!logged.contains(&token), "the token is never logged");
    gateway.terminate().await;
}

#[tokio::test]
async fn listen_takes_host_names_and_ipv6_serves_both_families() {
    let upstream = Upstream::start().await;
    let named = Site::with(&upstream.url(), "localhost:0", "");
    let gateway = named.serve(&[]).await;
    assert!(gateway.addr.ip().is_loopback());
    let answer = get(&gateway.url("/patgate/healthz"), &[]).await;
    assert_eq!(answer.status, 200);
    gateway.terminate().await;

    let both = Site::with(&upstream.url(), "\"[::]:0\"", "");
    let gateway = both.serve(&[]).await;
    let port = gateway.addr.port();
    for address in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let answer = get(&format!("http://{address}/patgate/healthz"), &[]).await;
        assert_eq!(answer.status, 200, "{address}");
    }
    gateway.terminate().await;
}

#[tokio::test]
async fn every_argument_has_help_and_commands_say_what_they_did_not_do() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_about().is_none() && sub.get_name() != "help" {
                missing.push(format!("{path} {} (no description)", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&patgate::cli::Cli::command(), "patgate", &mut missing);
    assert!(missing.is_empty(), "without help text: {missing:?}");

    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site.serve(&[]).await;
    let (_, out, _) = site.cli(&create_args("twice", &["--json"])).await;
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, _) = site.cli(&["token", "revoke", &id]).await;
    assert_eq!(code, 0);
    let (code, out, err) = site.cli(&["token", "revoke", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("was already revoked at"), "{out}");
    assert!(!err.contains("changed database"), "{err}");

    let (code, out, err) = site.cli(&["token", "list", "--user", "nobody"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("no user \"nobody\""), "{err}");
    gateway.terminate().await;
}

/// The admin listener's address, from the gateway's log.
async fn admin_address(gateway: &Process) -> String {
    let find = || {
        let text = gateway.stderr.lock().unwrap().clone();
        text.split("bound=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
    };
    within(Duration::from_secs(5), || {
        std::future::ready(find().is_some())
    })
    .await;
    find().expect("the admin listener logged its address")
}

#[tokio::test]
async fn metrics_and_readiness_move_to_the_admin_listener() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site.serve(&[("PATGATE_ADMIN_LISTEN", "127.0.0.1:0")]).await;
    let admin = admin_address(&gateway).await;
    for path in ["/patgate/metrics", "/patgate/readyz"] {
        let public = get(&gateway.url(path), &[]).await;
        assert_eq!(public.status, 404, "{path} is not public");
        let private = get(&format!("http://{admin}{path}"), &[]).await;
        assert_eq!(private.status, 200, "{path} on the admin listener");
    }
    let metrics = get(&format!("http://{admin}/patgate/metrics"), &[]).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("patgate_requests_total"));
    assert_eq!(get(&gateway.url("/patgate/healthz"), &[]).await.status, 200);
    let elsewhere = get(&format!("http://{admin}/deployit/repository/ci"), &[]).await;
    assert_eq!(elsewhere.status, 404, "the admin listener is not a proxy");
    assert_eq!(upstream.count(), 0);
    gateway.terminate().await;
}

#[tokio::test]
async fn the_access_log_has_one_line_per_request_without_secrets() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site.serve(&[("PATGATE_LOG__ACCESS", "true")]).await;
    let (_, out, _) = site.cli(&create_args("logged", &[])).await;
    let token = out.trim().to_string();

    let answer = get(
        &gateway.url("/deployit/repository/ci?password=hunter2"),
        &[("x-deploy-personal-token", &token)],
    )
    .await;
    assert_eq!(answer.status, 200);
    let id = answer.headers["x-request-id"].to_str().unwrap().to_string();
    let plain = get(&gateway.url("/deployit/server/info"), &[]).await;
    let plain_id = plain.headers["x-request-id"].to_str().unwrap().to_string();

    let line_of = |id: &str| {
        gateway
            .stderr
            .lock()
            .unwrap()
            .lines()
            .find(|l| l.contains(id) && l.contains("status") && l.contains("duration_ms"))
            .map(str::to_string)
    };
    within(Duration::from_secs(3), || {
        std::future::ready(line_of(&id).is_some() && line_of(&plain_id).is_some())
    })
    .await;
    let token_line = line_of(&id).expect("an access line for the token request");
    for part in ["GET", "/deployit/repository/ci", "200", "alice", "token"] {
        assert!(token_line.contains(part), "{part}: {token_line}");
    }
    assert!(!token_line.contains("hunter2"), "no query: {token_line}");
    let plain_line = line_of(&plain_id).expect("an access line for the plain request");
    assert!(plain_line.contains("/deployit/server/info"), "{plain_line}");

    let logged = gateway.stderr.lock().unwrap().clone();
    assert!(!logged.contains(&token), "the token is never logged");
    assert!(!logged.contains("hunter2"));
    gateway.terminate().await;
}

#[tokio::test]
async fn the_json_access_log_names_every_field_and_no_secret() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site
        .serve(&[
            ("PATGATE_LOG__ACCESS", "true"),
            ("PATGATE_LOG__FORMAT", "json"),
        ])
        .await;
    let (_, out, _) = site.cli(&create_args("logged", &["--json"])).await;
    let created: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let token_id = created["id"].as_str().unwrap().to_string();

    let ok = get(
        &gateway.url("/deployit/repository/ci?password=hunter2"),
        &[
            ("x-deploy-personal-token", &token),
            ("cookie", "JSESSIONID=cookie-secret"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        upstream.last().headers["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "an incoming traceparent reaches Deploy unchanged"
    );
    let ok_id = ok.headers["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(upstream.last().headers["x-request-id"], ok_id.as_str());
    let unknown = patgate::core::token::PlainToken::generate();
    let refused = get(
        &gateway.url("/deployit/server/info"),
        &[("authorization", &basic("", unknown.expose()))],
    )
    .await;
    assert_eq!(refused.status, 401);
    let refused_id = refused.headers["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();

    let line_of = |id: &str| -> Option<serde_json::Value> {
        let logged = gateway.stderr.lock().unwrap().clone();
        logged
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == "request" && v["fields"]["request_id"] == id)
    };
    within(Duration::from_secs(3), || {
        std::future::ready(line_of(&ok_id).is_some() && line_of(&refused_id).is_some())
    })
    .await;
    let line = line_of(&ok_id).unwrap_or_else(|| {
        panic!(
            "a JSON access line for the token request in {}",
            gateway.stderr.lock().unwrap()
        )
    });
    let fields = &line["fields"];
    assert_eq!(fields["client"], "127.0.0.1", "{line}");
    assert_eq!(fields["method"], "GET", "{line}");
    assert_eq!(fields["path"], "/deployit/repository/ci", "{line}");
    assert_eq!(fields["status"], 200, "{line}");
    assert_eq!(fields["route"], "token", "{line}");
    assert_eq!(fields["user"], "alice", "{line}");
    assert_eq!(fields["credential"], "token", "{line}");
    assert_eq!(fields["token_id"], token_id.as_str(), "{line}");
    assert_eq!(fields["scope"], "full", "{line}");
    assert_eq!(fields["refusal"], "-", "{line}");
    assert!(fields["duration_ms"].as_f64().is_some(), "{line}");
    assert!(
        fields["upstream_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{line}"
    );
    let line = line_of(&refused_id).expect("a JSON access line for the refused request");
    assert_eq!(line["fields"]["refusal"], "invalid_token", "{line}");
    assert_eq!(line["fields"]["status"], 401, "{line}");

    let logged = gateway.stderr.lock().unwrap().clone();
    for secret in [token.as_str(), unknown.expose(), "hunter2", "cookie-secret"] {
        assert!(!logged.contains(secret), "{secret} in the log");
    }
    gateway.terminate().await;
}

#[tokio::test]
async fn ordinary_headers_reach_deploy_and_claimed_identities_are_removed_and_logged() {
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site
        .serve(&[(
            "PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET",
            "deploy-trusts-this-0123456789",
        )])
        .await;
    let (_, out, _) = site.cli(&create_args("headers", &[])).await;
    let token = out.trim().to_string();

    // A token request (the fast path): the client's own headers go on untouched.
    let answer = get(
        &gateway.url("/deployit/repository/ci"),
        &[
            ("x-deploy-personal-token", &token),
            ("accept", "application/json"),
            ("x-trace-id", "abc123"),
            ("user-agent", "ci-bot/1.0"),
            // Forwarding headers are the gateway's to set, never the client's.
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "gopher"),
            ("x-real-ip", "10.9.9.9"),
            ("forwarded", "for=10.9.9.9;host=evil.example"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = upstream.last();
    for (name, value) in [
        ("x-forwarded-host", gateway.addr.to_string()),
        ("x-forwarded-proto", "http".to_string()),
    ] {
        let values: Vec<_> = seen.headers.get_all(name).iter().collect();
        assert_eq!(values, [value.as_str()], "{name}: {seen:?}");
    }
    for name in ["x-real-ip", "forwarded"] {
        assert!(seen.headers.get(name).is_none(), "{name}: {seen:?}");
    }
    assert_eq!(seen.headers["accept"], "application/json");
    assert_eq!(seen.headers["x-trace-id"], "abc123");
    assert_eq!(seen.headers["user-agent"], "ci-bot/1.0");
    assert_eq!(seen.headers["x-deploy-user"], "alice");

    // A request without a token that claims to be someone: the claim is removed, and
    // the operator can see that it was tried.
    let answer = get(
        &gateway.url("/deployit/metadata/type"),
        &[("x-deploy-user", "admin"), ("accept", "application/xml")],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen = upstream.last();
    assert!(seen.headers.get("x-deploy-user").is_none(), "{seen:?}");
    assert_eq!(seen.headers["accept"], "application/xml");
    let id = answer.headers["x-request-id"].to_str().unwrap().to_string();
    let logged = || {
        gateway
            .stderr
            .lock()
            .unwrap()
            .lines()
            .any(|l| l.contains(&id) && l.contains("removed client-supplied identity headers"))
    };
    within(Duration::from_secs(3), || std::future::ready(logged())).await;
    assert!(logged(), "the removal is logged with the request id");
    gateway.terminate().await;
}

#[tokio::test]
async fn secret_files_are_private_and_loose_ones_are_named() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let upstream = Upstream::start().await;
    let site = Site::new(&upstream.url());
    let gateway = site.serve(&[]).await;
    let data = site.etc.join("data");
    assert_eq!(mode(&data), 0o700, "data/");
    for file in [
        "token-hmac.key",
        "patgate.db",
        "patgate.db-wal",
        "patgate.db-shm",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let quiet = gateway.stderr.lock().unwrap().clone();
    assert!(!quiet.contains("other users"), "{quiet}");
    gateway.terminate().await;

    // Files an operator opened up are used, and named with the fix.
    for file in ["token-hmac.key", "patgate.db"] {
        std::fs::set_permissions(data.join(file), std::fs::Permissions::from_mode(0o666)).unwrap();
    }
    let gateway = site.serve(&[]).await;
    let said = gateway.stderr.lock().unwrap().clone();
    assert!(
        said.contains("key file can be read by other users") && said.contains("chmod 600"),
        "{said}"
    );
    assert!(
        said.contains("database file can be read by other users"),
        "{said}"
    );
    assert!(!said.contains(
        &std::fs::read_to_string(data.join("token-hmac.key"))
            .unwrap()
            .trim()
            .to_string()
    ));
    gateway.terminate().await;
}
