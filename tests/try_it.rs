//! The README's "Try it" section, as a newcomer runs it: the repository's own
//! `gateway.yaml`, `patgate demo-deploy` in Deploy's place, `patgate serve`, and the
//! calls the walkthrough shows, from signing in to deleting the token; the README's
//! shell block is run as written. Ports are picked free rather than 4516 and 14516, so
//! that tests can run side by side.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::{as_user, Session};
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `patgate demo-deploy` on a free port, with what it prints.
struct Demo {
    _child: tokio::process::Child,
    url: String,
    said: Arc<Mutex<String>>,
}

impl Demo {
    async fn start(dir: &Path, args: &[&str]) -> Demo {
        let mut child = tokio::process::Command::new(binary())
            .current_dir(dir)
            .args(["demo-deploy", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let said = Arc::new(Mutex::new(String::new()));
        let url = loop {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .expect("demo-deploy speaks within 10 s")
                .unwrap()
                .expect("demo-deploy says where it listens");
            said.lock().unwrap().push_str(&line);
            said.lock().unwrap().push('\n');
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        let sink = said.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&line);
                sink.lock().unwrap().push('\n');
            }
        });
        Demo {
            _child: child,
            url,
            said,
        }
    }

    fn said(&self) -> String {
        self.said.lock().unwrap().clone()
    }
}

/// A fresh folder holding the repository's `gateway.yaml`, as a clone has it.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.yaml");
    std::fs::copy(shipped, dir.path().join("gateway.yaml")).unwrap();
    dir
}

async fn serve(dir: &Path, upstream: &str) -> Process {
    Process::start_in(
        dir,
        Path::new("gateway.yaml"),
        &[
            ("PATGATE_LISTEN", "127.0.0.1:0"),
            ("PATGATE_UPSTREAM__URL", upstream),
        ],
    )
    .await
}

/// Waits until the gateway's output holds `text`.
async fn said(gateway: &Process, text: &str) -> String {
    for _ in 0..100 {
        let out = gateway.stderr.lock().unwrap().clone();
        if out.contains(text) {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the gateway never said {text:?}:\n{}",
        gateway.stderr.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_works_against_the_stand_in_deploy() {
    let dir = checkout();
    let demo = Demo::start(dir.path(), &[]).await;
    assert!(
        demo.said().contains("not Digital.ai Deploy"),
        "{}",
        demo.said()
    );
    let gateway = serve(dir.path(), &demo.url).await;

    // At start: where the pages are, how to make a token, and that Deploy answers.
    let out = said(&gateway, "Deploy at").await;
    let pages = format!(
        "sign in to the token pages at http://{}/patgate/",
        gateway.addr
    );
    assert!(out.contains(&pages), "{out}");
    assert!(out.contains("token create --user NAME"), "{out}");
    assert!(
        out.contains("answered GET /deployit/server/info with 401"),
        "{out}"
    );

    // The pages send a browser without a session to sign in, on the server.
    let home = get(&gateway.url("/patgate/"), &[]).await;
    assert_eq!(home.status, 303);
    assert_eq!(home.headers["location"], "/patgate/signin?next=/patgate/");

    // Sign in as the demo user, with the demo password the stand-in checks.
    let wrong = as_user(
        "GET",
        &gateway.url("/patgate/api/v1/me"),
        "alice",
        "nope",
        None,
    )
    .await;
    assert_eq!(wrong.status, 401, "{:?}", wrong.body);
    let alice = Session::password(&gateway.url(""), "alice", "alice")
        .await
        .with_csrf()
        .await;
    let me = alice.send("GET", "/patgate/api/v1/me", None).await;
    assert_eq!(me.json()["admin"], false);
    let admin = as_user(
        "GET",
        &gateway.url("/patgate/api/v1/me"),
        "admin",
        "admin",
        None,
    )
    .await;
    assert_eq!(
        admin.json()["admin"],
        true,
        "the stand-in's admin check says yes"
    );

    // Generate a token, use it with curl's -u :TOKEN, see it in the list, delete it.
    let created = alice
        .send(
            "POST",
            "/patgate/api/v1/tokens",
            Some(&serde_json::json!({"name": "try it", "expiration": "30d"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let token = created.json()["token"].as_str().unwrap().to_string();
    let id = created.json()["id"].as_str().unwrap().to_string();
    let used = get(
        &gateway.url("/deployit/server/info"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    assert_eq!(used.status, 200, "{:?}", used.body);
    let echo = used.json();
    assert_eq!(echo["user"], "alice");
    assert!(
        echo["authenticated_by"]
            .as_str()
            .unwrap()
            .contains("asserted by the gateway"),
        "{echo}"
    );
    assert!(echo["stand_in"]
        .as_str()
        .unwrap()
        .contains("not Digital.ai Deploy"));
    assert!(!used
        .body
        .windows(token.len())
        .any(|w| w == token.as_bytes()));
    assert!(!demo.said().contains(&token));
    let listed = alice.send("GET", "/patgate/api/v1/tokens", None).await;
    assert!(listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "try it"));
    let deleted = alice
        .send("DELETE", &format!("/patgate/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let refused = get(
        &gateway.url("/deployit/server/info"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    assert_eq!(refused.status, 401, "{:?}", refused.body);

    // The command line makes tokens for the same gateway.
    let (code, out, err) = run_in(
        dir.path(),
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
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    let used = get(
        &gateway.url("/deployit/repository/ci/Applications"),
        &[("x-deploy-personal-token", token)],
    )
    .await;
    assert_eq!(used.status, 200, "{:?}", used.body);
    assert_eq!(used.json()["path"], "/deployit/repository/ci/Applications");

    // The notifier is off by default, and says so only at debug.
    let out = gateway.stderr.lock().unwrap().clone();
    assert!(!out.contains("notifications are disabled"), "{out}");
    gateway.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_deploy_the_start_and_every_answer_say_where_it_was_looked_for() {
    let dir = checkout();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gateway = serve(dir.path(), &dead).await;
    let out = said(&gateway, "requests for Deploy get 502").await;
    assert!(
        out.contains(&dead) && out.contains("patgate demo-deploy"),
        "{out}"
    );
    let (_, token, err) = run_in(
        dir.path(),
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
        &[],
    )
    .await;
    let answer = get(
        &gateway.url("/deployit/server/info"),
        &[("authorization", &basic("", token.trim()))],
    )
    .await;
    assert_eq!(answer.status, 502, "{err}");
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&dead) && message.contains("upstream.url"),
        "{message}"
    );
    gateway.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stand_in_takes_its_users_from_flags_and_believes_only_the_gateways_secret() {
    let dir = checkout();
    let demo = Demo::start(dir.path(), &["--admin", "root:r00t", "--user", "bob:b0b"]).await;
    let said = demo.said();
    assert!(
        said.contains("user root with password r00t (administrator)"),
        "{said}"
    );
    assert!(!said.contains("alice"), "{said}");
    let info = format!("{}/deployit/server/info", demo.url);
    assert_eq!(
        get(&info, &[("authorization", &basic("bob", "b0b"))])
            .await
            .status,
        200
    );
    assert_eq!(
        get(&info, &[("authorization", &basic("bob", "x"))])
            .await
            .status,
        401
    );
    let admin = format!("{}/deployit/security/check/admin", demo.url);
    let yes = get(&admin, &[("authorization", &basic("root", "r00t"))]).await;
    assert_eq!(yes.body.as_ref(), b"<boolean>true</boolean>");
    let no = get(&admin, &[("authorization", &basic("bob", "b0b"))]).await;
    assert_eq!(no.body.as_ref(), b"<boolean>false</boolean>");

    // With a shared secret configured, the user header alone is not believed.
    std::fs::write(
        dir.path().join("gateway.yaml"),
        "listen: 127.0.0.1:4516\nupstream:\n  url: http://127.0.0.1:14516\n  identity:\n    shared_secret: a-secret-of-enough-length-1234\ndatabase:\n  url: sqlite://data/p.db\n",
    )
    .unwrap();
    let strict = Demo::start(dir.path(), &[]).await;
    let info = format!("{}/deployit/server/info", strict.url);
    let claimed = get(&info, &[("x-deploy-user", "admin")]).await;
    assert_eq!(claimed.status, 401);
    let proven = get(
        &info,
        &[
            ("x-deploy-user", "alice"),
            ("x-patgate-secret", "a-secret-of-enough-length-1234"),
        ],
    )
    .await;
    assert_eq!(proven.status, 200, "{:?}", proven.body);
    assert_eq!(proven.json()["headers"]["x-patgate-secret"], "(hidden)");
}

/// The shell block the README marks as run by this test.
fn readme_commands() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let after = readme
        .split("<!-- try-it:")
        .nth(1)
        .expect("the README marks its try-it commands");
    after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .expect("a sh block after the mark")
        .0
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_commands_work_as_written() {
    let dir = checkout();
    let demo = Demo::start(dir.path(), &[]).await;
    let gateway = serve(dir.path(), &demo.url).await;
    said(&gateway, "Deploy at").await;
    let commands = readme_commands();
    assert!(commands.contains("http://localhost:4516/"), "{commands}");
    // Only the address differs from what a reader types.
    let script = commands.replace("http://localhost:4516/", &gateway.url("/"));
    let bin = Path::new(binary()).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = tokio::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // What the comments under each command say it answers.
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(answers.len(), 4, "{stdout}");
    let echo: serde_json::Value = serde_json::from_str(answers[0]).unwrap();
    assert_eq!(echo["user"], "alice");
    assert_eq!(
        echo["authenticated_by"],
        "asserted by the gateway in x-deploy-user"
    );
    assert_eq!(echo["headers"]["x-deploy-user"], "alice");
    assert!(echo["headers"].get("authorization").is_none(), "{echo}");
    let listed: serde_json::Value = serde_json::from_str(answers[1]).unwrap();
    assert_eq!(listed[0]["name"], "ci");
    assert_eq!(listed[0]["expires_in"]["days"], 30);
    assert_eq!(answers[2], "204");
    let refused: serde_json::Value = serde_json::from_str(answers[3]).unwrap();
    assert_eq!(refused["error"], "invalid_token", "{stdout}");
    gateway.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_browser_the_walkthrough_reaches_a_signed_in_access_tokens_page() {
    use common::browser::Driver;
    let dir = checkout();
    let demo = Demo::start(dir.path(), &[]).await;
    let gateway = serve(dir.path(), &demo.url).await;
    let driver = Driver::start(None).await;
    let browser = driver.browser(1280, 900).await;
    // Step 4 as written: open /patgate/, get sent to sign in, sign in as alice.
    browser.goto(&gateway.url("/patgate/")).await;
    browser.ready().await;
    assert_eq!(browser.path().await, "/patgate/signin");
    browser.fill("input[name='username']", "alice").await;
    browser.fill("input[name='password']", "alice").await;
    browser.click("#sign-in").await;
    browser.find("#user-menu-button").await;
    browser.ready().await;
    assert_eq!(browser.path().await, "/patgate/");
    browser
        .wait_text("main", "You have no personal access tokens yet.")
        .await;
    browser.click("#generate-open").await;
    browser.fill("#token-name", "from the page").await;
    browser.click("#generate").await;
    let shown = browser.find("#new-token-value").await;
    let token = shown.prop("value").await.unwrap().unwrap();
    browser.wait_text("#tokens td.name", "from the page").await;
    browser.screenshot("try-it-access-tokens-1280").await;
    // The token from the page works against the stand-in, as alice.
    let used = get(
        &gateway.url("/deployit/server/info"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    assert_eq!(used.status, 200, "{:?}", used.body);
    assert_eq!(used.json()["user"], "alice");
    browser.close().await;
    gateway.terminate().await;
}
