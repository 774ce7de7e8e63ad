//! Token expiry e-mails end to end, against a real SMTP server (aiosmtpd): the SMTP
//! server items and Send Test Mail (plain, STARTTLS, implicit TLS, AUTH, and the
//! failures an administrator must tell apart), the notification settings, and passes
//! run with an injected "now": the window's boundaries, one e-mail per token across
//! passes, failures retried, concurrent passes, escaping, and the schedule's catch-up.

#[macro_use]
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::api::as_user;
use common::smtp::{Mode, SmtpServer, PASSWORD, USER};
use common::*;
use patgate::api::Api;
use patgate::notify::Cause;
use patgate::store::{PassRecord, Reminder, UserSource, KIND_EXPIRY};
use serde_json::{json, Value};

on_both_backends!(
    smtp_server_items_are_checked_and_never_show_their_password,
    a_stored_smtp_password_goes_nowhere_else_and_never_in_clear,
    a_pass_mails_each_due_token_once_at_the_window_boundaries,
    a_failed_pass_is_retried_by_the_next_and_never_counted_as_sent,
    two_concurrent_passes_send_each_email_once,
    a_claim_left_by_a_crashed_pass_is_retried_only_after_the_lease,
    settings_refuse_bad_templates_and_unknown_servers,
    nothing_is_sent_while_disabled_or_without_a_server_and_the_api_says_why,
);

const SERVERS: &str = "/patgate/api/v1/smtp-servers";
const SETTINGS: &str = "/patgate/api/v1/settings";
const NOTIFICATIONS: &str = "/patgate/api/v1/notifications";
const DAY: i64 = 86_400;

/// A gateway whose own schedule is off: tests run passes themselves.
async fn start(db: &TestDb, extra: &[(&str, &str)]) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let mut all = vec![
        ("PATGATE_NOTIFY__DAILY_AT", "off"),
        ("PATGATE_NOTIFY__TIME_ZONE", "Europe/Paris"),
        ("PATGATE_NOTIFY__PUBLIC_URL", "https://deploy.example.com"),
        ("PATGATE_NOTIFY__SEND_TIMEOUT", "3s"),
    ];
    all.extend_from_slice(extra);
    let gw = Gateway::start(config(db, &upstream.url(), &all)).await;
    (upstream, gw)
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<&Value>) -> Answer {
    as_user(method, &gw.url(path), "admin", "admin-pw", body).await
}

fn api(gw: &Gateway) -> Arc<Api> {
    gw.api().unwrap()
}

/// An item pointing at `port` on loopback, speaking `mode`.
fn item(name: &str, port: u16, mode: Mode, auth: Option<&str>) -> Value {
    let mut properties = json!({});
    match mode {
        Mode::Plain => {}
        Mode::StartTls => {
            properties["mail.smtp.starttls.enable"] = "true".into();
            properties["mail.smtp.starttls.required"] = "true".into();
        }
        Mode::Tls => properties["mail.smtp.ssl.enable"] = "true".into(),
    }
    if mode != Mode::Plain {
        // The test server's certificate is self-signed: trusted by name, as for an
        // internal relay.
        properties["mail.smtp.ssl.trust"] = "127.0.0.1".into();
    }
    let mut body = json!({
        "name": name,
        "host": "127.0.0.1",
        "port": port,
        "from_address": "Deploy <deploy@example.com>",
        "test_address": "ops@example.com",
        "smtp_properties": properties,
    });
    if let Some(password) = auth {
        body["username"] = USER.into();
        body["password"] = password.into();
        body["smtp_properties"]["mail.smtp.auth"] = "true".into();
        if mode == Mode::Plain {
            // A relay on a trusted network: the password may cross it in clear.
            body["smtp_properties"]["patgate.smtp.auth.plaintext"] = "true".into();
        }
    }
    body
}

async fn create_item(gw: &Gateway, body: &Value) -> String {
    let made = admin(gw, "POST", SERVERS, Some(body)).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    made.json()["id"].as_str().unwrap().to_string()
}

fn path_of(id: &str) -> String {
    format!("{SERVERS}/{}", id.replace('/', "%2F"))
}

async fn enable(gw: &Gateway, server_id: &str, days: i64) {
    let answer = admin(
        gw,
        "PUT",
        SETTINGS,
        Some(&json!({"notifications": {"enabled": true, "days_before": days, "smtp_server_id": server_id}})),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

/// A token stored directly, with an exact expiry (and any name).
async fn token(gw: &Gateway, user: &str, name: &str, expires_at: Option<i64>) -> String {
    let api = api(gw);
    let plain = patgate::core::token::PlainToken::generate();
    let hash = api.hasher.hash(plain.expose().as_bytes());
    api.store
        .create_token(user, name, &hash, expires_at)
        .await
        .unwrap()
        .id
}

async fn user(gw: &Gateway, name: &str, email: Option<&str>) {
    let api = api(gw);
    api.store
        .ensure_user(name, UserSource::Internal, email)
        .await
        .unwrap();
}

async fn smtp_server_items_are_checked_and_never_show_their_password(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    for (body, field) in [
        (
            json!({"name": "A", "port": 25, "from_address": "a@example.com"}),
            "host",
        ),
        (
            json!({"name": "A", "host": "smtp.example.com", "port": 0, "from_address": "a@example.com"}),
            "port",
        ),
        (
            json!({"name": "A", "host": "smtp.example.com", "port": 70000, "from_address": "a@example.com"}),
            "port",
        ),
        (
            json!({"name": "A", "host": "smtp.example.com", "port": 25, "from_address": "not an address"}),
            "from_address",
        ),
        (
            json!({"name": "A", "host": "smtp.example.com", "port": 25, "from_address": "a@example.com", "test_address": "x@"}),
            "test_address",
        ),
        (
            json!({"name": "A", "host": "smtp example", "port": 25, "from_address": "a@example.com"}),
            "host",
        ),
        (
            json!({"name": "A", "host": "smtp.example.com", "port": 25, "from_address": "a@example.com", "smtp_properties": {"mail.smtp.auth": "maybe"}}),
            "mail.smtp.auth",
        ),
        (
            json!({"name": "A", "host": "smtp.example.com", "port": "25", "from_address": "a@example.com"}),
            "port",
        ),
    ] {
        let refused = admin(&gw, "POST", SERVERS, Some(&body)).await;
        // A property's value is a rule the document can only name: 422, not 400.
        let status = if field == "mail.smtp.auth" { 422 } else { 400 };
        assert_eq!(refused.status, status, "{body}: {:?}", refused.body);
        let message = refused.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(field), "{field} not named in {message:?}");
    }
    let not_admin = as_user("GET", &gw.url(SERVERS), "alice", "alice-pw", None).await;
    assert_eq!(not_admin.status, 403);

    let made = admin(
        &gw,
        "POST",
        SERVERS,
        Some(&json!({
            "name": "SMTPSERVERTEST",
            "type": "notification.PatSmtpServer",
            "host": "smtp.example.com",
            "port": 587,
            "username": "deploy@example.com",
            "password": "hunter2-smtp",
            "from_address": "deploy@example.com",
            "smtp_properties": {"mail.smtp.starttls.enable": true, "mail.debug": "true"},
        })),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let item = made.json();
    assert_eq!(item["id"], "Configuration/SMTPSERVERTEST");
    assert_eq!(item["type"], "notification.PatSmtpServer");
    assert_eq!(item["password_set"], true);
    assert_eq!(item["smtp_properties"]["mail.smtp.starttls.enable"], "true");
    assert_eq!(item["smtp_properties"]["mail.debug"], "true");
    assert_eq!(item["ignored_properties"], json!(["mail.debug"]));
    let duplicate = admin(&gw, "POST", SERVERS, Some(&json!({"name": "SMTPSERVERTEST", "host": "h.example.com", "port": 25, "from_address": "a@example.com"}))).await;
    assert_eq!(duplicate.status, 409);

    // By full id (encoded) or by its last segment; GET's answer goes back unchanged.
    let by_name = admin(&gw, "GET", &format!("{SERVERS}/SMTPSERVERTEST"), None).await;
    assert_eq!(by_name.status, 200);
    let back = admin(
        &gw,
        "PUT",
        &path_of("Configuration/SMTPSERVERTEST"),
        Some(&by_name.json()),
    )
    .await;
    assert_eq!(back.status, 200, "{:?}", back.body);
    assert_eq!(
        back.json()["password_set"],
        true,
        "a PUT without password keeps it"
    );
    let stored = api(&gw)
        .store
        .smtp_server("Configuration/SMTPSERVERTEST")
        .await
        .unwrap();
    let sealed = format!("{:?} {}", stored, stored.password.clone().unwrap().0);
    assert!(!sealed.contains("hunter2"), "{sealed}");
    let opened = api(&gw)
        .notifier
        .sealer
        .open(&stored.id, stored.password.as_ref().unwrap())
        .unwrap();
    assert_eq!(opened.expose(), "hunter2-smtp");

    // Nothing anywhere shows it: listings, the audit log.
    for path in [SERVERS, "/patgate/api/v1/audit"] {
        let answer = admin(&gw, "GET", path, None).await;
        assert_eq!(answer.status, 200);
        assert!(
            !String::from_utf8_lossy(&answer.body).contains("hunter2"),
            "{path}"
        );
    }
    let cleared = admin(
        &gw,
        "PUT",
        &path_of("Configuration/SMTPSERVERTEST"),
        Some(&json!({"password": null})),
    )
    .await;
    assert_eq!(cleared.json()["password_set"], false);

    // In use by the notification settings: not deletable, and the answer says why.
    enable(&gw, "Configuration/SMTPSERVERTEST", 7).await;
    let in_use = admin(
        &gw,
        "DELETE",
        &path_of("Configuration/SMTPSERVERTEST"),
        None,
    )
    .await;
    assert_eq!(in_use.status, 409);
    assert_eq!(in_use.error_code(), "smtp_server_in_use");
    assert!(in_use.json()["message"]
        .as_str()
        .unwrap()
        .contains("notifications"));
    let off = admin(
        &gw,
        "PUT",
        SETTINGS,
        Some(&json!({"notifications": {"smtp_server_id": null}})),
    )
    .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    let deleted = admin(
        &gw,
        "DELETE",
        &path_of("Configuration/SMTPSERVERTEST"),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    let gone = admin(&gw, "GET", &path_of("Configuration/SMTPSERVERTEST"), None).await;
    assert_eq!(gone.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_mail_over_plain_starttls_and_implicit_tls_with_and_without_auth() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (_upstream, gw) = start(&db, &[]).await;
    for mode in [Mode::Plain, Mode::StartTls, Mode::Tls] {
        for auth in [false, true] {
            let smtp = SmtpServer::start(mode, auth).await;
            let name = format!("{mode:?}-{auth}");
            let id =
                create_item(&gw, &item(&name, smtp.port, mode, auth.then_some(PASSWORD))).await;
            let sent = admin(&gw, "POST", &format!("{}/test", path_of(&id)), None).await;
            assert_eq!(sent.status, 200, "{name}: {:?}", sent.body);
            assert_eq!(sent.json()["sent_to"], "ops@example.com");
            let to_other = admin(
                &gw,
                "POST",
                &format!("{}/test", path_of(&id)),
                Some(&json!({"to": "someone@example.com"})),
            )
            .await;
            assert_eq!(to_other.status, 200, "{name}: {:?}", to_other.body);
            let received = smtp.received();
            assert_eq!(received.len(), 2, "{name}");
            assert_eq!(received[0].rcpt_tos, vec!["ops@example.com"]);
            assert_eq!(received[1].rcpt_tos, vec!["someone@example.com"]);
            assert_eq!(received[0].mail_from, "deploy@example.com");
            if auth {
                let wrong = admin(
                    &gw,
                    "PUT",
                    &path_of(&id),
                    Some(&json!({"password": "not-the-password"})),
                )
                .await;
                assert_eq!(wrong.status, 200);
                let refused = admin(&gw, "POST", &format!("{}/test", path_of(&id)), None).await;
                assert_eq!(refused.status, 502, "{name}: {:?}", refused.body);
                assert_eq!(
                    refused.error_code(),
                    "smtp_authentication_failed",
                    "{name}: {:?}",
                    refused.body
                );
                let message = refused.json()["message"].as_str().unwrap().to_string();
                assert!(message.contains("535"), "{message}");
                assert!(!message.contains("not-the-password"), "{message}");
            }
            if mode != Mode::Plain {
                // Without trusting the self-signed certificate, the handshake fails (a
                // change of transport security needs the password again).
                let mut untrusted = json!({"smtp_properties": item(&name, smtp.port, mode, auth.then_some(PASSWORD))["smtp_properties"].as_object().unwrap().iter().filter(|(k, _)| *k != "mail.smtp.ssl.trust").map(|(k, v)| (k.clone(), v.clone())).collect::<serde_json::Map<_, _>>()});
                if auth {
                    untrusted["password"] = PASSWORD.into();
                }
                let untrusted = admin(&gw, "PUT", &path_of(&id), Some(&untrusted)).await;
                assert_eq!(untrusted.status, 200, "{:?}", untrusted.body);
                let refused = admin(&gw, "POST", &format!("{}/test", path_of(&id)), None).await;
                assert_eq!(refused.status, 502, "{name}: {:?}", refused.body);
                assert_eq!(
                    refused.error_code(),
                    "smtp_tls_failed",
                    "{name}: {:?}",
                    refused.body
                );
                assert!(refused.json()["message"]
                    .as_str()
                    .unwrap()
                    .contains("mail.smtp.ssl.trust"));
            }
            smtp.stop().await;
        }
    }

    // Nothing listening: connection refused, named as such.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let id = create_item(&gw, &item("refused", port, Mode::Plain, None)).await;
    let refused = admin(&gw, "POST", &format!("{}/test", path_of(&id)), None).await;
    assert_eq!(refused.status, 502, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "smtp_connection_refused");
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains(&format!("127.0.0.1:{port}")));

    // A server that accepts and never speaks: a timeout within notify.send_timeout,
    // while the proxy and the rest of the API keep answering.
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_port = hanging.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = hanging.accept().await {
            kept.push(stream);
        }
    });
    let id = create_item(&gw, &item("hanging", hanging_port, Mode::Plain, None)).await;
    let test_url = gw.url(&format!("{}/test", path_of(&id)));
    let started = std::time::Instant::now();
    let pending =
        tokio::spawn(async move { as_user("POST", &test_url, "admin", "admin-pw", None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let meanwhile = admin(&gw, "GET", SERVERS, None).await;
    assert_eq!(meanwhile.status, 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let timed_out = pending.await.unwrap();
    assert_eq!(timed_out.status, 504, "{:?}", timed_out.body);
    assert_eq!(timed_out.error_code(), "smtp_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );

    let no_address = create_item(&gw, &json!({"name": "no-test-address", "host": "127.0.0.1", "port": port, "from_address": "deploy@example.com"})).await;
    let refused = admin(&gw, "POST", &format!("{}/test", path_of(&no_address)), None).await;
    // Well formed, but the item as it stands has nowhere to send to.
    assert_eq!(refused.status, 409);
    assert_eq!(refused.error_code(), "no_test_address");
    held.abort();
}

async fn a_pass_mails_each_due_token_once_at_the_window_boundaries(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    let id = create_item(&gw, &item("relay", smtp.port, Mode::Plain, None)).await;
    enable(&gw, &id, 7).await;
    let now = patgate::core::time::now() + 3 * DAY;
    user(&gw, "alice", Some("alice@example.com")).await;
    user(&gw, "bob", Some("bob@example.com")).await;
    user(&gw, "carol", None).await;
    user(&gw, "dave", Some("dave@example.com")).await;
    let at_boundary = token(&gw, "alice", "exactly seven days", Some(now + 7 * DAY)).await;
    let soon = token(&gw, "bob", "tomorrow", Some(now + DAY - 60)).await;
    token(&gw, "alice", "one second too late", Some(now + 7 * DAY + 1)).await;
    token(&gw, "alice", "expired", Some(now - 1)).await;
    token(&gw, "alice", "expires now", Some(now)).await;
    token(&gw, "alice", "never", None).await;
    let revoked = token(&gw, "alice", "deleted", Some(now + DAY)).await;
    api(&gw).store.revoke_token(&revoked).await.unwrap();
    token(&gw, "dave", "owner disabled", Some(now + DAY)).await;
    api(&gw)
        .store
        .set_user_disabled("dave", true)
        .await
        .unwrap();
    let no_email = token(&gw, "carol", "no address", Some(now + 2 * DAY)).await;

    let first = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!(first.outcome, "completed");
    assert_eq!(
        (first.due, first.sent, first.failed, first.skipped),
        (3, 2, 0, 1),
        "{first:?}"
    );
    assert_eq!(first.skipped_tokens[0].token_id, no_email);
    assert!(first.skipped_tokens[0].reason.contains("e-mail address"));
    let received = smtp.received();
    assert_eq!(received.len(), 2);
    let to_alice = received
        .iter()
        .find(|m| m.rcpt_tos == ["alice@example.com"])
        .unwrap();
    let text = to_alice.decoded();
    assert!(
        text.contains(
            "Subject: Your personal access token \"exactly seven days\" expires in 7 days"
        ),
        "{text}"
    );
    assert!(text.contains("multipart/alternative"), "{text}");
    assert!(
        text.contains("text/plain") && text.contains("text/html"),
        "{text}"
    );
    assert!(
        text.contains("https://deploy.example.com/patgate/"),
        "{text}"
    );
    assert!(
        text.contains(" CET") || text.contains(" CEST"),
        "server zone shown: {text}"
    );
    let to_bob = received
        .iter()
        .find(|m| m.rcpt_tos == ["bob@example.com"])
        .unwrap();
    assert!(
        to_bob.decoded().contains("expires in 1 day\r\n")
            || to_bob.decoded().contains("expires in 1 day"),
        "{}",
        to_bob.decoded()
    );

    // The next pass sends nothing more; one a second later sends only the token that
    // has just entered the window.
    let again = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!(
        (again.due, again.sent, again.skipped),
        (1, 0, 1),
        "{again:?}"
    );
    let later = api(&gw)
        .notifier
        .run_pass(now + 1, Cause::Command)
        .await
        .unwrap();
    assert_eq!(later.sent, 1, "{later:?}");
    assert_eq!(smtp.received().len(), 3);

    // Administrators see the outcome per token and the last pass.
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await;
    assert_eq!(status.status, 200, "{:?}", status.body);
    let status = status.json();
    assert_eq!(status["active"], true);
    assert_eq!(status["counts"]["sent"], 3);
    let ids: Vec<&str> = status["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["token_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&at_boundary.as_str()) && ids.contains(&soon.as_str()));
    assert!(status["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["status"] == "sent"));
    assert_eq!(status["last_pass"]["skipped"], 1);
    assert_eq!(
        status["last_pass"]["detail"]["skipped_tokens"][0]["username"],
        "carol"
    );

    // Metrics count what went out.
    let metrics = get(&gw.url("/patgate/metrics"), &[]).await;
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        metrics.contains("patgate_notification_emails_total{result=\"sent\"} 3"),
        "{metrics}"
    );
}

async fn a_failed_pass_is_retried_by_the_next_and_never_counted_as_sent(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = closed.local_addr().unwrap().port();
    drop(closed);
    let id = create_item(&gw, &item("relay", dead_port, Mode::Plain, None)).await;
    enable(&gw, &id, 7).await;
    let now = patgate::core::time::now();
    user(&gw, "alice", Some("alice@example.com")).await;
    for i in 0..3 {
        token(&gw, "alice", &format!("t{i}"), Some(now + DAY * (i + 1))).await;
    }
    let failed = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!((failed.sent, failed.failed), (0, 3), "{failed:?}");
    assert!(
        failed.failures[0].reason.contains("connection refused"),
        "{failed:?}"
    );
    let status = admin(&gw, "GET", &format!("{NOTIFICATIONS}?status=failed"), None)
        .await
        .json();
    assert_eq!(status["outcomes"].as_array().unwrap().len(), 3);
    assert!(status["outcomes"][0]["last_error"]
        .as_str()
        .unwrap()
        .contains("connection refused"));
    assert_eq!(status["counts"].get("sent"), None);

    let smtp = SmtpServer::start(Mode::Plain, false).await;
    let moved = admin(&gw, "PUT", &path_of(&id), Some(&json!({"port": smtp.port}))).await;
    assert_eq!(moved.status, 200);
    let good = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!((good.sent, good.failed), (3, 0), "{good:?}");
    let after = api(&gw)
        .notifier
        .run_pass(now + 60, Cause::Command)
        .await
        .unwrap();
    assert_eq!(after.sent, 0);
    assert_eq!(smtp.received().len(), 3);
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    assert!(
        status["outcomes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["status"] == "sent" && o["attempts"] == 2),
        "{status}"
    );
}

async fn two_concurrent_passes_send_each_email_once(db: TestDb) {
    let (_upstream, one) = start(&db, &[("PATGATE_NOTIFY__CONCURRENCY", "8")]).await;
    let two = Gateway::start(one.config.clone()).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    let id = create_item(&one, &item("relay", smtp.port, Mode::Plain, None)).await;
    enable(&one, &id, 30).await;
    let now = patgate::core::time::now();
    user(&one, "alice", Some("alice@example.com")).await;
    const TOKENS: i64 = 40;
    for i in 0..TOKENS {
        token(&one, "alice", &format!("t{i}"), Some(now + 3600 * (i + 1))).await;
    }
    let (api_one, api_two) = (api(&one), api(&two));
    let (a, b) = tokio::join!(
        api_one.notifier.run_pass(now, Cause::Schedule),
        api_two.notifier.run_pass(now, Cause::Schedule),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sent + b.sent, TOKENS, "{a:?} {b:?}");
    assert_eq!(a.failed + b.failed, 0);
    let received = smtp.received();
    assert_eq!(received.len() as i64, TOKENS);
    let mut subjects: Vec<String> = received
        .iter()
        .map(|m| {
            m.data
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap()
                .to_string()
        })
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len() as i64, TOKENS, "one e-mail per token");
}

async fn a_claim_left_by_a_crashed_pass_is_retried_only_after_the_lease(db: TestDb) {
    let (_upstream, gw) = start(&db, &[("PATGATE_NOTIFY__CLAIM_LEASE", "15m")]).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    let id = create_item(&gw, &item("relay", smtp.port, Mode::Plain, None)).await;
    enable(&gw, &id, 7).await;
    let now = patgate::core::time::now();
    user(&gw, "alice", Some("alice@example.com")).await;
    let recent = token(&gw, "alice", "claimed a minute ago", Some(now + DAY)).await;
    let stale = token(&gw, "alice", "claimed an hour ago", Some(now + DAY)).await;
    // Passes that claimed these and died before recording anything.
    let store = &api(&gw).store;
    for (token_id, at) in [(&recent, now - 60), (&stale, now - 3600)] {
        let claimed = store
            .claim_notification(
                token_id,
                Reminder {
                    kind: KIND_EXPIRY,
                    reminder: 7,
                },
                "alice@example.com",
                "crashed",
                at,
                at - 900,
            )
            .await
            .unwrap();
        assert!(claimed);
    }
    let pass = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.sent, 1, "{pass:?}");
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].decoded().contains("claimed an hour ago"));
    // Once the lease of the other has run out, it goes too; then nothing more.
    let later = api(&gw)
        .notifier
        .run_pass(now + 900, Cause::Command)
        .await
        .unwrap();
    assert_eq!(later.sent, 1, "{later:?}");
    let last = api(&gw)
        .notifier
        .run_pass(now + 7200, Cause::Command)
        .await
        .unwrap();
    assert_eq!(last.sent, 0, "{last:?}");
    assert_eq!(smtp.received().len(), 2);
}

async fn settings_refuse_bad_templates_and_unknown_servers(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let settings = admin(&gw, "GET", SETTINGS, None).await;
    assert_eq!(settings.status, 200);
    let settings = settings.json();
    let n = &settings["notifications"];
    assert_eq!(n["enabled"], false);
    assert_eq!(n["days_before"], 7);
    assert_eq!(n["smtp_server_id"], Value::Null);
    assert!(n["subject"].as_str().unwrap().contains("{{ token_name }}"));
    assert!(n["body"].as_str().unwrap().contains("{{ tokens_url }}"));
    // GET's answer goes back unchanged.
    let back = admin(&gw, "PUT", SETTINGS, Some(&settings)).await;
    assert_eq!(back.status, 200, "{:?}", back.body);
    assert_eq!(back.json(), settings);

    for (body, code, words) in [
        (
            json!({"notifications": {"days_before": 0}}),
            "invalid_settings",
            "days_before",
        ),
        (
            json!({"notifications": {"days_before": 366}}),
            "invalid_settings",
            "days_before",
        ),
        (
            json!({"notifications": {"smtp_server_id": "Configuration/NOPE"}}),
            "unknown_smtp_server",
            "Configuration/NOPE",
        ),
        (
            json!({"notifications": {"body": "<p>Hello</p>\n<p>{{ user </p>"}}),
            "invalid_template",
            "body, line 2",
        ),
        (
            json!({"notifications": {"subject": "{{ token_nmae }}"}}),
            "invalid_template",
            "subject, line 1",
        ),
        (
            json!({"notifications": {"body": "{% for x in %}"}}),
            "invalid_template",
            "line 1",
        ),
        (
            json!({"notifications": {"colour": "blue"}}),
            "invalid_body",
            "colour",
        ),
        // Costly templates are stopped, not run for as long as they like.
        (
            json!({"notifications": {"body": "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{{ c }}{% endfor %}{% endfor %}{% endfor %}"}}),
            "invalid_template",
            "simplify",
        ),
        (
            json!({"notifications": {"body": "x".repeat(17 * 1024)}}),
            "invalid_template",
            "16 KiB",
        ),
    ] {
        let started = std::time::Instant::now();
        let refused = tokio::time::timeout(
            Duration::from_secs(10),
            admin(&gw, "PUT", SETTINGS, Some(&body)),
        )
        .await
        .expect("a template is checked within seconds");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        // What the document's schema states is 400; a template that does not render
        // and an id that names nothing are 422.
        let status = match code {
            "invalid_template" | "unknown_smtp_server" => 422,
            _ => 400,
        };
        assert_eq!(refused.status, status, "{body}: {:?}", refused.body);
        assert_eq!(refused.error_code(), code, "{body}: {:?}", refused.body);
        let message = refused.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(words), "{words:?} not in {message:?}");
    }
    let unchanged = admin(&gw, "GET", SETTINGS, None).await.json();
    assert_eq!(unchanged, settings);

    let custom = admin(
        &gw,
        "PUT",
        SETTINGS,
        Some(&json!({"notifications": {"subject": "{{ token_name }} ends in {{ days_left }}d", "days_before": 14}})),
    )
    .await;
    assert_eq!(custom.status, 200, "{:?}", custom.body);
    let custom = custom.json();
    assert_eq!(custom["notifications"]["days_before"], 14);
    assert_eq!(
        custom["notifications"]["subject"],
        "{{ token_name }} ends in {{ days_left }}d"
    );
    assert_eq!(
        custom["notifications"]["body"],
        settings["notifications"]["body"]
    );
    assert_eq!(
        custom["max_token_expiration"],
        settings["max_token_expiration"]
    );
}

async fn nothing_is_sent_while_disabled_or_without_a_server_and_the_api_says_why(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    let now = patgate::core::time::now();
    user(&gw, "alice", Some("alice@example.com")).await;
    token(&gw, "alice", "soon", Some(now + DAY)).await;

    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    assert_eq!(status["active"], false);
    assert!(
        status["reason"].as_str().unwrap().contains("disabled"),
        "{status}"
    );
    assert_eq!(
        status["next_pass_at"],
        Value::Null,
        "this gateway's schedule is off"
    );
    let pass = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.outcome, "disabled");

    let on = admin(
        &gw,
        "PUT",
        SETTINGS,
        Some(&json!({"notifications": {"enabled": true}})),
    )
    .await;
    assert_eq!(on.status, 200);
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    assert_eq!(status["active"], false);
    assert!(
        status["reason"]
            .as_str()
            .unwrap()
            .contains("no SMTP server"),
        "{status}"
    );
    let pass = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.outcome, "no_smtp_server");
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    assert_eq!(status["last_pass"]["outcome"], "no_smtp_server");
    assert!(status["last_pass"]["detail"]["reason"]
        .as_str()
        .unwrap()
        .contains("smtp-servers"));
    assert!(smtp.received().is_empty());

    let id = create_item(&gw, &item("relay", smtp.port, Mode::Plain, None)).await;
    enable(&gw, &id, 7).await;
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    assert_eq!(status["active"], true);
    assert_eq!(status["reason"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_name_with_markup_arrives_escaped_in_the_html_body() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (_upstream, gw) = start(&db, &[]).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    let id = create_item(&gw, &item("relay", smtp.port, Mode::Plain, None)).await;
    enable(&gw, &id, 7).await;
    let now = patgate::core::time::now();
    user(&gw, "alice", Some("alice@example.com")).await;
    // Through the store: the API refuses such names, older rows may have them.
    token(&gw, "alice", "<script>alert(1)</script>", Some(now + DAY)).await;
    let pass = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.sent, 1, "{pass:?}");
    let message = smtp.received()[0].decoded();
    let html = &message[message.find("Content-Type: text/html").unwrap()..];
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_missed_the_daily_pass_catches_up_at_start() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let upstream = Upstream::start().await;
    let cfg = config(
        &db,
        &upstream.url(),
        &[("PATGATE_NOTIFY__TIME_ZONE", "UTC")],
    );
    // A pass three days ago, by a gateway that has been down since.
    let (store, _) = patgate::app::open_store(&cfg).await.unwrap();
    let long_ago = patgate::core::time::now() - 3 * DAY;
    store
        .record_pass(&PassRecord {
            started_at: long_ago,
            finished_at: long_ago,
            cause: "schedule".into(),
            outcome: "completed".into(),
            due: 0,
            sent: 0,
            failed: 0,
            skipped: 0,
            detail: json!({}),
        })
        .await
        .unwrap();
    let gw = Gateway::start(cfg).await;
    let caught_up = within(Duration::from_secs(5), || async {
        store
            .last_pass()
            .await
            .unwrap()
            .is_some_and(|p| p.cause == "catch-up")
    })
    .await;
    assert!(caught_up.is_some(), "no catch-up pass within 5 s");
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    assert_eq!(status["last_pass"]["cause"], "catch-up");
    assert!(
        status["next_pass_at"]
            .as_str()
            .unwrap()
            .ends_with("T01:00:00Z"),
        "{status}"
    );
    // Started again the same day: no second catch-up.
    gw.shutdown().await;
    let passes_before = store.last_pass().await.unwrap().unwrap().started_at;
    let again = Gateway::start(config(
        &db,
        &upstream.url(),
        &[("PATGATE_NOTIFY__TIME_ZONE", "UTC")],
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.last_pass().await.unwrap().unwrap().started_at,
        passes_before
    );
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_smtp_server_holds_up_neither_the_proxy_nor_shutdown() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (upstream, setup) = start(&db, &[("PATGATE_NOTIFY__SEND_TIMEOUT", "30s")]).await;
    let hanging = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = hanging.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = hanging.accept().await {
            kept.push(stream);
        }
    });
    let id = create_item(&setup, &item("hanging", port, Mode::Plain, None)).await;
    enable(&setup, &id, 7).await;
    let now = patgate::core::time::now();
    user(&setup, "alice", Some("alice@example.com")).await;
    for i in 0..10 {
        token(&setup, "alice", &format!("t{i}"), Some(now + DAY)).await;
    }
    let (_, pat) = setup
        .create_token("bob", "proxy", patgate::core::token::Expiration::Days7)
        .await;
    setup.shutdown().await;

    // No pass yet: this gateway's scheduler catches up at start, and hangs on SMTP.
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_NOTIFY__SEND_TIMEOUT", "30s"),
            ("PATGATE_NOTIFY__TIME_ZONE", "UTC"),
        ],
    ))
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = std::time::Instant::now();
    let proxied = get(&gw.url("/deployit/x"), &[("x-deploy-personal-token", &pat)]).await;
    assert_eq!(proxied.status, 200);
    let api_answer = admin(&gw, "GET", NOTIFICATIONS, None).await;
    assert_eq!(api_answer.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let stopping = std::time::Instant::now();
    gw.shutdown().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        stopping.elapsed()
    );
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_from_the_command_line_prints_one_line() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    // The command line never creates the database: the gateway has made it.
    let (_upstream, gw) = start(&db, &[]).await;
    let (code, stdout, stderr) = run_cli(&file, &["notify", "run-once"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("nothing sent (disabled)"), "{stdout}");

    // With a server that refuses: the failures are an error, on one line.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let id = create_item(&gw, &item("refused", port, Mode::Plain, None)).await;
    enable(&gw, &id, 7).await;
    user(&gw, "alice", Some("alice@example.com")).await;
    token(&gw, "alice", "soon", Some(patgate::core::time::now() + DAY)).await;
    let (code, stdout, stderr) = run_cli(&file, &["notify", "run-once"]).await;
    assert_eq!(code, 1, "{stdout}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("1 failed"), "{stderr}");

    let smtp = SmtpServer::start(Mode::Plain, false).await;
    admin(&gw, "PUT", &path_of(&id), Some(&json!({"port": smtp.port}))).await;
    let (code, stdout, stderr) = run_cli(&file, &["notify", "run-once"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 sent"), "{stdout}");
    assert_eq!(smtp.received().len(), 1);
}

async fn a_stored_smtp_password_goes_nowhere_else_and_never_in_clear(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    // A plain server that offers AUTH without TLS, as a careless relay would.
    let smtp = SmtpServer::start(Mode::Plain, true).await;
    let mut careless = item("careless", smtp.port, Mode::Plain, Some(PASSWORD));
    careless["smtp_properties"]
        .as_object_mut()
        .unwrap()
        .remove("patgate.smtp.auth.plaintext");
    let id = create_item(&gw, &careless).await;
    let test = format!("{}/test", path_of(&id));
    let refused = admin(&gw, "POST", &test, None).await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "smtp_configuration");
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("in clear"));
    // STARTTLS "when offered" is not enough for a password: this server offers none.
    let opportunistic = admin(
        &gw,
        "PUT",
        &path_of(&id),
        Some(&json!({"password": PASSWORD, "smtp_properties": {
            "mail.smtp.auth": "true", "mail.smtp.starttls.enable": "true"}})),
    )
    .await;
    assert_eq!(opportunistic.status, 200, "{:?}", opportunistic.body);
    let refused = admin(&gw, "POST", &test, None).await;
    assert_ne!(refused.status, 200, "{:?}", refused.body);
    assert!(smtp.received().is_empty(), "a password went out in clear");

    // Said explicitly, it may.
    let allowed = admin(
        &gw,
        "PUT",
        &path_of(&id),
        Some(&json!({"password": PASSWORD, "smtp_properties": {
            "mail.smtp.auth": "true", "patgate.smtp.auth.plaintext": "true"}})),
    )
    .await;
    assert_eq!(allowed.status, 200, "{:?}", allowed.body);
    assert_eq!(admin(&gw, "POST", &test, None).await.status, 200);

    // Another host, port or transport security needs the password again; other
    // changes keep it.
    for change in [
        json!({"host": "localhost"}),
        json!({"port": 2526}),
        json!({"smtp_properties": {"mail.smtp.auth": "true", "patgate.smtp.auth.plaintext": "true",
            "mail.smtp.ssl.trust": "*"}}),
    ] {
        let answer = admin(&gw, "PUT", &path_of(&id), Some(&change)).await;
        assert_eq!(answer.status, 409, "{change}: {:?}", answer.body);
        assert_eq!(answer.error_code(), "password_required", "{change}");
    }
    let kept = admin(
        &gw,
        "PUT",
        &path_of(&id),
        Some(&json!({"test_address": "other@example.com", "name": "renamed"})),
    )
    .await;
    assert_eq!(kept.status, 200, "{:?}", kept.body);
    assert_eq!(kept.json()["password_set"], true);
    assert_eq!(kept.json()["host"], "127.0.0.1");
    let moved = admin(
        &gw,
        "PUT",
        &path_of(&id),
        Some(&json!({"host": "localhost", "password": PASSWORD})),
    )
    .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    let dropped = admin(
        &gw,
        "PUT",
        &path_of(&id),
        Some(&json!({"host": "127.0.0.1", "password": null})),
    )
    .await;
    assert_eq!(dropped.status, 200, "{:?}", dropped.body);
    assert_eq!(dropped.json()["password_set"], false);
    smtp.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_hosts_can_be_limited_and_other_services_are_not_echoed() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // Not an SMTP server: it greets like SSH and says something private.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let banner = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = stream
                .write_all(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3 internal-secret\r\n")
                .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let (upstream, gw) = start(&db, &[]).await;
    let id = create_item(&gw, &item("probe", port, Mode::Plain, None)).await;
    let probed = admin(&gw, "POST", &format!("{}/test", path_of(&id)), None).await;
    assert_eq!(probed.status, 502, "{:?}", probed.body);
    let message = probed.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("did not answer like an SMTP server"),
        "{message}"
    );
    assert!(
        !message.contains("SSH") && !message.contains("internal-secret"),
        "{message}"
    );
    gw.shutdown().await;
    banner.abort();

    // With notify.smtp_hosts, items name those hosts only, and an older item
    // elsewhere is not used.
    let limited = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_NOTIFY__DAILY_AT", "off"),
            (
                "PATGATE_NOTIFY__SMTP_HOSTS",
                "smtp.example.com,*.corp.example",
            ),
        ],
    ))
    .await;
    let refused = admin(
        &limited,
        "POST",
        SERVERS,
        Some(&item("elsewhere", 25, Mode::Plain, None)),
    )
    .await;
    // The operator's limit forbids it.
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "smtp_host_not_allowed");
    assert!(refused.json()["message"]
        .as_str()
        .unwrap()
        .contains("notify.smtp_hosts"));
    let mut listed = item("relay", 25, Mode::Plain, None);
    listed["host"] = "relay.eu.corp.example".into();
    create_item(&limited, &listed).await;
    let old = admin(&limited, "POST", &format!("{}/test", path_of(&id)), None).await;
    // The item as stored can no longer be used here: a conflict, not a bad request.
    assert_eq!(old.status, 409, "{:?}", old.body);
    assert_eq!(old.error_code(), "smtp_configuration");
}
