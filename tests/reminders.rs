//! Several reminders per token, unused tokens retired, and notification channels,
//! end to end: passes run with a moved "now" against a real SMTP server (aiosmtpd),
//! two gateways on one database, and small HTTP receivers standing in for a webhook
//! endpoint, Slack and Teams, which check the signature and the payloads.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::as_user;
use common::smtp::{Mode, SmtpServer};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use patgate::api::Api;
use patgate::core::token::Expiration;
use patgate::notify::Cause;
use patgate::store::UserSource;
use serde_json::{json, Value};

on_both_backends!(
    three_reminders_each_go_out_once_across_two_passes,
    two_gateways_on_one_database_send_each_reminder_once,
    reminder_days_are_checked_and_days_before_still_works,
    an_unused_token_is_warned_once_then_revoked_and_refused,
    an_unused_token_is_kept_until_its_warning_goes_out,
    a_rotated_token_counts_from_its_rotation,
    channels_receive_signed_webhooks_slack_and_teams_messages,
    a_failing_channel_is_retried_recorded_and_shown,
    channel_hosts_limit_where_channels_post,
    a_users_channel_reaches_no_internal_address,
    a_listed_host_lets_a_users_channel_reach_an_internal_receiver,
    channels_hear_of_a_reminder_once_while_its_email_is_retried,
    a_channel_that_failed_is_retried_alone_after_the_email_went_out,
    a_warnings_failed_channel_is_retried_with_the_same_date,
    a_service_accounts_reminders_reach_all_its_active_owners,
);

const SETTINGS: &str = "/patgate/api/v1/settings";
const CHANNELS: &str = "/patgate/api/v1/notification-channels";
const NOTIFICATIONS: &str = "/patgate/api/v1/notifications";
const DAY: i64 = 86_400;
const SECRET: &str = "a-webhook-signing-secret";
/// Attempts per channel delivery in one pass.
const ATTEMPTS: usize = patgate::notify::channels::ATTEMPTS as usize;

/// A gateway whose own schedule is off: tests run passes themselves.
async fn start(db: &TestDb) -> (Upstream, Gateway) {
    start_with(db, &[]).await
}

async fn start_with(db: &TestDb, extra: &[(&str, &str)]) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let mut all = vec![
        ("PATGATE_NOTIFY__DAILY_AT", "off"),
        ("PATGATE_NOTIFY__TIME_ZONE", "UTC"),
        ("PATGATE_NOTIFY__SEND_TIMEOUT", "3s"),
    ];
    all.extend_from_slice(extra);
    let gw = Gateway::start(config(db, &upstream.url(), &all)).await;
    (upstream, gw)
}

/// A gateway started with `extra`, mailing through a real SMTP server one reminder a
/// week before expiry.
async fn weekly_reminders(db: &TestDb, extra: &[(&str, &str)]) -> (Upstream, Gateway, SmtpServer) {
    let (upstream, gw) = start_with(db, extra).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    mail_through(
        &gw,
        smtp.port,
        json!({"notifications": {"reminder_days": [7]}}),
    )
    .await;
    (upstream, gw, smtp)
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<&Value>) -> Answer {
    as_user(method, &gw.url(path), "admin", "admin-pw", body).await
}

fn api(gw: &Gateway) -> Arc<Api> {
    gw.api().unwrap()
}

/// An SMTP server item on `port`, chosen for notifications, with `extra` settings.
async fn mail_through(gw: &Gateway, port: u16, extra: Value) {
    mail_via(gw, "relay", port, extra).await
}

/// [`mail_through`] an item named `name`.
async fn mail_via(gw: &Gateway, name: &str, port: u16, extra: Value) {
    let made = admin(
        gw,
        "POST",
        "/patgate/api/v1/smtp-servers",
        Some(&json!({"name": name, "host": "127.0.0.1", "port": port,
            "from_address": "Deploy <deploy@example.com>"})),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let mut body = json!({"notifications": {"enabled": true, "smtp_server_id": made.json()["id"]}});
    for (key, value) in extra.as_object().unwrap() {
        if key == "notifications" {
            for (k, v) in value.as_object().unwrap() {
                body["notifications"][k] = v.clone();
            }
        } else {
            body[key] = value.clone();
        }
    }
    let saved = admin(gw, "PUT", SETTINGS, Some(&body)).await;
    assert_eq!(saved.status, 200, "{:?}", saved.body);
}

/// A token stored directly, with an exact expiry.
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
    api(gw)
        .store
        .ensure_user(name, UserSource::Internal, email)
        .await
        .unwrap();
}

fn subjects(smtp: &SmtpServer) -> Vec<String> {
    smtp.received()
        .iter()
        .map(|m| {
            m.decoded()
                .lines()
                .find(|l| l.starts_with("Subject:"))
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

async fn three_reminders_each_go_out_once_across_two_passes(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    mail_through(
        &gw,
        smtp.port,
        json!({"notifications": {"reminder_days": [1, 30, 7]}}),
    )
    .await;
    let settings = admin(&gw, "GET", SETTINGS, None).await.json();
    assert_eq!(
        settings["notifications"]["reminder_days"],
        json!([30, 7, 1])
    );
    assert_eq!(settings["notifications"]["days_before"], 30);
    user(&gw, "alice", Some("alice@example.com")).await;
    let expires = patgate::core::time::now() + 40 * DAY;
    token(&gw, "alice", "deploy pipeline", Some(expires)).await;
    let notifier = &api(&gw).notifier;

    // Long before: nothing. Then each reminder on its day, once, however many passes.
    let early = notifier
        .run_pass(expires - 31 * DAY, Cause::Command)
        .await
        .unwrap();
    assert_eq!(early.sent, 0, "{early:?}");
    for (day, wording) in [
        (30, "expires in 30 days"),
        (7, "expires in 7 days"),
        (1, "expires in 1 day"),
    ] {
        let at = expires - day * DAY + 3600;
        let first = notifier.run_pass(at, Cause::Command).await.unwrap();
        assert_eq!(first.sent, 1, "day {day}: {first:?}");
        let second = notifier.run_pass(at + 60, Cause::Command).await.unwrap();
        assert_eq!(second.sent, 0, "day {day}, second pass: {second:?}");
        let last = subjects(&smtp).pop().unwrap();
        assert!(last.contains(wording), "day {day}: {last}");
    }
    assert_eq!(smtp.received().len(), 3);

    // Each reminder is its own outcome row.
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    let mut days: Vec<i64> = status["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["reminder"].as_i64().unwrap())
        .collect();
    days.sort();
    assert_eq!(days, [1, 7, 30]);
}

async fn two_gateways_on_one_database_send_each_reminder_once(db: TestDb) {
    let (_upstream, one) = start(&db).await;
    let two = Gateway::start(one.config.clone()).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    mail_through(
        &one,
        smtp.port,
        json!({"notifications": {"reminder_days": [30, 7, 1]}}),
    )
    .await;
    user(&one, "alice", Some("alice@example.com")).await;
    let base = patgate::core::time::now() + 40 * DAY;
    const TOKENS: i64 = 10;
    for i in 0..TOKENS {
        token(&one, "alice", &format!("t{i}"), Some(base + i * 60)).await;
    }
    let (a, b) = (api(&one), api(&two));
    for day in [30, 7, 1] {
        let at = base - day * DAY + 3600;
        for _ in 0..2 {
            let (x, y) = tokio::join!(
                a.notifier.run_pass(at, Cause::Schedule),
                b.notifier.run_pass(at, Cause::Schedule),
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            assert_eq!(x.failed + y.failed, 0, "{x:?} {y:?}");
        }
    }
    let mut seen = subjects(&smtp);
    assert_eq!(seen.len() as i64, 3 * TOKENS, "{seen:?}");
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len() as i64,
        3 * TOKENS,
        "one e-mail per token and reminder"
    );
}

async fn reminder_days_are_checked_and_days_before_still_works(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let before = admin(&gw, "GET", SETTINGS, None).await.json();
    for (body, wording) in [
        (
            json!({"notifications": {"reminder_days": [0, 7]}}),
            "between 1 and 365",
        ),
        (
            json!({"notifications": {"reminder_days": [366]}}),
            "between 1 and 365",
        ),
        (
            json!({"notifications": {"reminder_days": [7, 1, 7]}}),
            "twice",
        ),
        (
            json!({"notifications": {"reminder_days": []}}),
            "at least one",
        ),
        (
            json!({"notifications": {"reminder_days": (1..=11).collect::<Vec<i64>>()}}),
            "at most 10",
        ),
        (
            json!({"unused_token_revoke_days": 45}),
            "30, 60, 90, 180 or 365",
        ),
        (
            json!({"unused_token_revoke_days": 0}),
            "30, 60, 90, 180 or 365",
        ),
    ] {
        let refused = admin(&gw, "PUT", SETTINGS, Some(&body)).await;
        assert_eq!(refused.status, 400, "{body}: {:?}", refused.body);
        assert_eq!(refused.error_code(), "invalid_settings");
        assert!(
            refused.json()["message"]
                .as_str()
                .unwrap()
                .contains(wording),
            "{body}: {:?}",
            refused.body
        );
        assert_eq!(
            admin(&gw, "GET", SETTINGS, None).await.json(),
            before,
            "nothing changed"
        );
    }
    // Older clients: days_before alone is the one-element list.
    let old = admin(
        &gw,
        "PUT",
        SETTINGS,
        Some(&json!({"notifications": {"days_before": 14}})),
    )
    .await;
    assert_eq!(old.status, 200, "{:?}", old.body);
    assert_eq!(old.json()["notifications"]["reminder_days"], json!([14]));
    // Both given: reminder_days wins, and days_before answers its largest day.
    let both = admin(
        &gw,
        "PUT",
        SETTINGS,
        Some(&json!({"notifications": {"days_before": 3, "reminder_days": [7, 21]}})),
    )
    .await
    .json();
    assert_eq!(both["notifications"]["reminder_days"], json!([21, 7]));
    assert_eq!(both["notifications"]["days_before"], 21);
    let on = admin(
        &gw,
        "PUT",
        SETTINGS,
        Some(&json!({"unused_token_revoke_days": 90})),
    )
    .await
    .json();
    assert_eq!(on["unused_token_revoke_days"], 90);
    let off = admin(
        &gw,
        "PUT",
        SETTINGS,
        Some(&json!({"unused_token_revoke_days": null})),
    )
    .await
    .json();
    assert_eq!(off["unused_token_revoke_days"], Value::Null);
}

async fn an_unused_token_is_warned_once_then_revoked_and_refused(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    mail_through(&gw, smtp.port, json!({"unused_token_revoke_days": 30})).await;
    user(&gw, "bob", Some("bob@example.com")).await;
    let (id, plain) = gw.create_token("bob", "forgotten", Expiration::Never).await;
    let info = gw.url("/deployit/server/info");
    assert_eq!(
        get(&info, &[("x-deploy-personal-token", &plain)])
            .await
            .status,
        200
    );
    // The use above is the last one; it is written off the request path.
    let used = within(Duration::from_secs(5), || async {
        api(&gw)
            .store
            .get_token(&id)
            .await
            .unwrap()
            .last_used_at
            .is_some()
    })
    .await;
    assert!(used.is_some(), "last use recorded");
    let since = api(&gw)
        .store
        .get_token(&id)
        .await
        .unwrap()
        .last_used_at
        .unwrap();
    let notifier = &api(&gw).notifier;

    // 22 days unused: nothing yet. 23: one warning, however many passes.
    let quiet = notifier
        .run_pass(since + 22 * DAY, Cause::Command)
        .await
        .unwrap();
    assert_eq!(
        (quiet.unused_warned, quiet.unused_revoked),
        (0, 0),
        "{quiet:?}"
    );
    for at in [
        since + 23 * DAY + 60,
        since + 23 * DAY + 120,
        since + 29 * DAY,
    ] {
        notifier.run_pass(at, Cause::Command).await.unwrap();
    }
    let mails = smtp.received();
    assert_eq!(mails.len(), 1, "one warning");
    let warning = mails[0].decoded();
    assert!(
        warning.contains("Tokens unused for 30 days are revoked"),
        "{warning}"
    );
    assert_eq!(mails[0].rcpt_tos, ["bob@example.com"]);
    assert_eq!(
        get(&info, &[("x-deploy-personal-token", &plain)])
            .await
            .status,
        200,
        "still works"
    );

    // 30 days: revoked, audited, the owner told, and refused by the proxy at once.
    let pass = notifier
        .run_pass(since + 30 * DAY + 60, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.unused_revoked, 1, "{pass:?}");
    let again = notifier
        .run_pass(since + 30 * DAY + 120, Cause::Command)
        .await
        .unwrap();
    assert_eq!(again.unused_revoked, 0, "{again:?}");
    let refused = within(Duration::from_secs(1), || async {
        get(&info, &[("x-deploy-personal-token", &plain)])
            .await
            .status
            == 401
    })
    .await;
    assert!(refused.is_some(), "the revoked token is refused within 1 s");
    let mails = smtp.received();
    assert_eq!(mails.len(), 2, "{:?}", subjects(&smtp));
    assert!(
        mails[1]
            .decoded()
            .contains("revoked because it had not been used"),
        "{}",
        mails[1].decoded()
    );
    let audit = admin(
        &gw,
        "GET",
        "/patgate/api/v1/audit?action=token.revoked_unused",
        None,
    )
    .await;
    assert_eq!(audit.status, 200, "{:?}", audit.body);
    let text = String::from_utf8_lossy(&audit.body).to_string();
    assert!(
        text.contains("token.revoked_unused") && text.contains(&id),
        "{text}"
    );
}

async fn an_unused_token_is_kept_until_its_warning_goes_out(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    // E-mail is set up, but nothing listens: every warning fails.
    mail_through(&gw, free_port(), json!({"unused_token_revoke_days": 30})).await;
    user(&gw, "bob", Some("bob@example.com")).await;
    user(&gw, "carol", None).await;
    let (bobs, plain) = gw.create_token("bob", "forgotten", Expiration::Never).await;
    let (carols, _) = gw
        .create_token("carol", "unreachable", Expiration::Never)
        .await;
    user(&gw, "dave", Some("dave@example.com")).await;
    let (daves, _) = gw.create_token("dave", "left", Expiration::Never).await;
    // Dave has left: disabled users are warned of nothing.
    gw.set_disabled("dave", true).await;
    let since = api(&gw).store.get_token(&bobs).await.unwrap().created_at;
    let revoked = |id: String| {
        let gw = &gw;
        async move {
            let token = api(gw).store.get_token(&id).await.unwrap();
            token.revoked_at.is_some()
        }
    };
    let failed = pass_settled(&gw, since + 23 * DAY + 60).await;
    assert_eq!(failed.unused_warned, 0, "{failed:?}");

    // 30 days: Bob was never warned, so his token stays and works; Carol cannot be
    // warned at all (no address, no channel), nor Dave, so theirs go.
    let due = pass_settled(&gw, since + 30 * DAY + 60).await;
    assert_eq!((due.unused_revoked, due.unused_held), (2, 1), "{due:?}");
    assert!(due
        .summary()
        .contains("1 kept until their warning goes out"));
    assert!(!revoked(bobs.clone()).await, "not revoked unwarned");
    assert!(revoked(carols.clone()).await, "no way to warn: revoked");
    assert!(revoked(daves).await, "disabled: revoked");
    let info = gw.url("/deployit/server/info");
    let answer = get(&info, &[("x-deploy-personal-token", &plain)]).await;
    assert_eq!(answer.status, 200, "still works");

    // The mail server is fixed; the warning goes out on day 31, and the token has
    // the 7 days it promises.
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    mail_via(&gw, "fixed relay", smtp.port, json!({})).await;
    let sent_at = since + 31 * DAY;
    let warned = pass_settled(&gw, sent_at).await;
    assert_eq!(
        (warned.unused_warned, warned.unused_revoked),
        (1, 0),
        "{warned:?}"
    );
    let mails = smtp.received();
    assert_eq!(mails.len(), 1, "{:?}", subjects(&smtp));
    let on = patgate::core::time::rfc3339(sent_at + 7 * DAY);
    assert!(mails[0].decoded().contains(&on), "{}", mails[0].decoded());
    let early = pass_settled(&gw, sent_at + 6 * DAY).await;
    assert_eq!(early.unused_revoked, 0, "{early:?}");
    assert!(!revoked(bobs.clone()).await);
    let done = pass_settled(&gw, sent_at + 7 * DAY + 60).await;
    assert_eq!(done.unused_revoked, 1, "{done:?}");
    assert!(revoked(bobs).await);
    let mails = smtp.received();
    assert_eq!(mails.len(), 2, "{:?}", subjects(&smtp));
    assert!(mails[1]
        .decoded()
        .contains("revoked because it had not been used"));
}

async fn a_rotated_token_counts_from_its_rotation(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    mail_through(&gw, smtp.port, json!({"unused_token_revoke_days": 30})).await;
    user(&gw, "bob", Some("bob@example.com")).await;
    let (old, _) = gw.create_token("bob", "rotated", Expiration::Never).await;
    let rotated = as_user(
        "POST",
        &gw.url(&format!("/patgate/api/v1/tokens/{old}/rotate")),
        "bob",
        "bob-pw",
        None,
    )
    .await;
    assert_eq!(rotated.status, 201, "{:?}", rotated.body);
    let new = rotated.json()["id"].as_str().unwrap().to_string();
    let created = api(&gw).store.get_token(&new).await.unwrap().created_at;
    let notifier = &api(&gw).notifier;
    let pass = notifier
        .run_pass(created + 23 * DAY + 60, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.unused_warned, 1, "only the new token: {pass:?}");
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    let warned: Vec<&str> = status["outcomes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "unused")
        .map(|o| o["token_id"].as_str().unwrap())
        .collect();
    assert_eq!(warned, [new.as_str()]);
    let pass = notifier
        .run_pass(created + 30 * DAY + 120, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.unused_revoked, 1, "{pass:?}");
    assert!(api(&gw)
        .store
        .get_token(&new)
        .await
        .unwrap()
        .revoked_at
        .is_some());
}

/// What a receiver got: (headers, body).
type Got = Arc<Mutex<Vec<(http::HeaderMap, Vec<u8>)>>>;

/// An HTTP receiver on loopback that answers 500 to its first `failures` requests
/// (all of them with `usize::MAX`), then 200, keeping each request.
async fn receiver(failures: usize) -> (String, Got) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Got = Arc::default();
    let kept = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let kept = kept.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes().to_vec();
                        let mut all = kept.lock().unwrap();
                        all.push((parts.headers, body));
                        let status = if all.len() <= failures { 500 } else { 200 };
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .status(status)
                                .body(Full::new(bytes::Bytes::from_static(b"ok")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, got)
}

fn bodies(got: &Got) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_slice(body).unwrap())
        .collect()
}

async fn channels_receive_signed_webhooks_slack_and_teams_messages(db: TestDb) {
    // Alice's receiver is on loopback, which users' channels reach only when listed.
    let (_upstream, gw, _smtp) =
        weekly_reminders(&db, &[("PATGATE_NOTIFY__CHANNEL_HOSTS", "127.0.0.1")]).await;
    let (hook, hook_got) = receiver(0).await;
    let (slack, slack_got) = receiver(0).await;
    let (teams, teams_got) = receiver(0).await;
    let (alices, alices_got) = receiver(0).await;

    // Bad channels are refused, and nothing is stored.
    for (body, wording) in [
        (
            json!({"kind": "email", "url": hook}),
            "webhook, slack or teams",
        ),
        (json!({"kind": "webhook", "url": hook}), "needs one"),
        (
            json!({"kind": "webhook", "url": hook, "secret": "short"}),
            "16 to 256",
        ),
        (
            json!({"kind": "slack", "url": "ftp://example.com/x"}),
            "http or https",
        ),
        (
            json!({"kind": "slack", "url": slack, "secret": SECRET}),
            "not signed",
        ),
    ] {
        let refused = admins_channel(&gw, &body).await;
        assert_eq!(refused.status, 422, "{body}: {:?}", refused.body);
        assert_eq!(refused.error_code(), "invalid_channel");
        assert!(
            String::from_utf8_lossy(&refused.body).contains(wording),
            "{:?}",
            refused.body
        );
    }
    assert_eq!(admin(&gw, "GET", CHANNELS, None).await.json(), json!([]));

    let made = admins_channel(
        &gw,
        &json!({"kind": "webhook", "url": hook, "secret": SECRET}),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert!(
        !String::from_utf8_lossy(&made.body).contains(SECRET),
        "the secret is never answered"
    );
    assert_eq!(made.json()["owner"], Value::Null);
    assert_eq!(made.json()["secret_set"], true);
    let admin_hook = made.json()["id"].as_str().unwrap().to_string();
    for (kind, url) in [("slack", &slack), ("teams", &teams)] {
        let made = admins_channel(&gw, &json!({"kind": kind, "url": url})).await;
        assert_eq!(made.status, 201, "{:?}", made.body);
    }
    // Alice's own channel: hers only, and she sees only it.
    let own = as_user(
        "POST",
        &gw.url(CHANNELS),
        "alice",
        "alice-pw",
        Some(&json!({"kind": "webhook", "url": alices, "secret": SECRET})),
    )
    .await;
    assert_eq!(own.status, 201, "{:?}", own.body);
    assert_eq!(own.json()["owner"], "alice");
    let hers = as_user("GET", &gw.url(CHANNELS), "alice", "alice-pw", None)
        .await
        .json();
    assert_eq!(hers.as_array().unwrap().len(), 1);
    let foreign = as_user(
        "DELETE",
        &gw.url(&format!("{CHANNELS}/{admin_hook}")),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(foreign.status, 404, "another's channel looks like none");
    assert_eq!(
        admin(&gw, "GET", CHANNELS, None)
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        4
    );

    user(&gw, "alice", Some("alice@example.com")).await;
    user(&gw, "bob", Some("bob@example.com")).await;
    let now = patgate::core::time::now();
    let alices_token = token(&gw, "alice", "alice's pipeline", Some(now + 3 * DAY)).await;
    token(&gw, "bob", "bob's pipeline", Some(now + 4 * DAY)).await;
    let pass = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.sent, 2, "{pass:?}");
    api(&gw).notifier.channels.settled().await;

    // The webhook: both tokens, signed the way leaked-token reports are.
    let got = hook_got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for (headers, body) in &got {
        let signature = headers["x-patgate-signature"].to_str().unwrap();
        assert!(
            patgate::core::signature::verify(SECRET.as_bytes(), signature, body),
            "signed"
        );
        assert!(!patgate::core::signature::verify(
            b"another secret",
            signature,
            body
        ));
        assert_eq!(headers["content-type"], "application/json");
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(event["event"], "token.expiring");
        assert!(event["days_left"].as_i64().unwrap() >= 3);
    }
    for event in bodies(&slack_got) {
        assert!(
            event["text"].as_str().unwrap().contains("expires in"),
            "{event}"
        );
        assert_eq!(event["blocks"][0]["type"], "section");
    }
    assert_eq!(bodies(&slack_got).len(), 2);
    let cards = bodies(&teams_got);
    assert_eq!(cards.len(), 2);
    for card in cards {
        assert_eq!(card["@type"], "MessageCard", "{card}");
        assert_eq!(card["@context"], "http://schema.org/extensions");
        assert!(card["summary"].is_string() && card["text"].is_string());
    }
    // Alice's channel heard only of her token.
    let hers = bodies(&alices_got);
    assert_eq!(hers.len(), 1, "{hers:?}");
    assert_eq!(hers[0]["token_id"], alices_token.as_str());
    assert_eq!(hers[0]["username"], "alice");

    // Deleting is audited; the secret is in no answer and no audit entry.
    let own_id = own.json()["id"].as_str().unwrap().to_string();
    let deleted = as_user(
        "DELETE",
        &gw.url(&format!("{CHANNELS}/{own_id}")),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let audit = admin(&gw, "GET", "/patgate/api/v1/audit", None).await;
    let text = String::from_utf8_lossy(&audit.body).to_string();
    assert!(
        text.contains("notification_channel.created")
            && text.contains("notification_channel.deleted"),
        "{text}"
    );
    assert!(!text.contains(SECRET));
    let listed = admin(&gw, "GET", CHANNELS, None).await;
    assert!(!String::from_utf8_lossy(&listed.body).contains(SECRET));
    assert!(listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["last_status"] == "delivered"));
}

async fn a_failing_channel_is_retried_recorded_and_shown(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    mail_through(&gw, smtp.port, json!({})).await;
    let (flaky, flaky_got) = receiver(2).await;
    let (dead, dead_got) = receiver(usize::MAX).await;
    let ids = admins_slack_channels(&gw, &[&flaky, &dead]).await;
    user(&gw, "alice", Some("alice@example.com")).await;
    let now = patgate::core::time::now();
    token(&gw, "alice", "soon", Some(now + DAY)).await;
    let started = std::time::Instant::now();
    let pass = api(&gw)
        .notifier
        .run_pass(now, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.sent, 1, "{pass:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the pass waits for no channel"
    );
    api(&gw).notifier.channels.settled().await;

    // Failed twice, then delivered: three attempts, each recorded.
    assert_eq!(flaky_got.lock().unwrap().len(), 3);
    let attempts = api(&gw).store.deliveries(&ids[0]).await.unwrap();
    let statuses: Vec<(i64, &str)> = attempts
        .iter()
        .map(|(_, n, s, _)| (*n, s.as_str()))
        .collect();
    assert_eq!(statuses, [(1, "failed"), (2, "failed"), (3, "delivered")]);
    // Always failing: every attempt, then shown as failing.
    assert_eq!(dead_got.lock().unwrap().len(), 4);
    let status = admin(&gw, "GET", NOTIFICATIONS, None).await.json();
    let failing = status["failing_channels"].as_array().unwrap();
    assert_eq!(failing.len(), 1, "{status}");
    assert_eq!(failing[0]["id"], ids[1].as_str());
    assert!(failing[0]["last_error"]
        .as_str()
        .unwrap()
        .contains("HTTP 500"));
    assert!(failing[0]["failing_since"].is_string());
    let listed = admin(&gw, "GET", CHANNELS, None).await.json();
    let flaky_view = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == ids[0].as_str())
        .unwrap();
    assert_eq!(flaky_view["last_status"], "delivered");
    assert_eq!(flaky_view["failing_since"], Value::Null);
}

async fn channel_hosts_limit_where_channels_post(db: TestDb) {
    let (_upstream, gw) = start_with(
        &db,
        &[(
            "PATGATE_NOTIFY__CHANNEL_HOSTS",
            "hooks.slack.com, *.example.com",
        )],
    )
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest",
        "https://example.com/x",
    ] {
        assert!(refused_for_alice(&gw, url)
            .await
            .contains("notify.channel_hosts"));
    }
    for url in [
        "https://hooks.slack.com/services/T/B/X",
        "https://teams.example.com/hook",
    ] {
        let made = alices_channel(&gw, &json!({"kind": "slack", "url": url})).await;
        assert_eq!(made.status, 201, "{url}: {:?}", made.body);
    }
}

/// The administrator asks for a channel.
async fn admins_channel(gw: &Gateway, body: &Value) -> Answer {
    admin(gw, "POST", CHANNELS, Some(body)).await
}

/// The administrator's Slack channels to `urls`: their ids.
async fn admins_slack_channels(gw: &Gateway, urls: &[&String]) -> Vec<String> {
    let mut ids = Vec::new();
    for url in urls {
        let made = admins_channel(gw, &json!({"kind": "slack", "url": url})).await;
        assert_eq!(made.status, 201, "{:?}", made.body);
        ids.push(made.json()["id"].as_str().unwrap().to_string());
    }
    ids
}

/// Alice asks for a channel of her own.
async fn alices_channel(gw: &Gateway, body: &Value) -> Answer {
    as_user("POST", &gw.url(CHANNELS), "alice", "alice-pw", Some(body)).await
}

/// Alice's Slack channel to `url` is refused as `invalid_channel`: the answer's text.
async fn refused_for_alice(gw: &Gateway, url: &str) -> String {
    let refused = alices_channel(gw, &json!({"kind": "slack", "url": url})).await;
    assert_eq!(refused.status, 422, "{url}: {:?}", refused.body);
    assert_eq!(refused.error_code(), "invalid_channel");
    String::from_utf8_lossy(&refused.body).to_string()
}

/// A pass as of `now`, once its channel deliveries are done.
async fn pass_settled(gw: &Gateway, now: i64) -> patgate::notify::PassReport {
    let notifier = &api(gw).notifier;
    let pass = notifier.run_pass(now, Cause::Command).await.unwrap();
    notifier.channels.settled().await;
    pass
}

/// The reason a channel's last delivery failed, as the notifications page shows it.
async fn failing_reason(gw: &Gateway, id: &str) -> String {
    let status = admin(gw, "GET", NOTIFICATIONS, None).await.json();
    let failing = status["failing_channels"].as_array().unwrap();
    let channel = failing.iter().find(|c| c["id"] == id);
    let channel = channel.unwrap_or_else(|| panic!("{id} not failing: {status}"));
    channel["last_error"].as_str().unwrap().to_string()
}

async fn a_users_channel_reaches_no_internal_address(db: TestDb) {
    let (_upstream, gw, _smtp) = weekly_reminders(&db, &[]).await;
    let (hook, hook_got) = receiver(0).await;
    let port = hook.parse::<http::Uri>().unwrap().port_u16().unwrap();

    // Where the URL itself tells, a user's channel is refused when created.
    for (url, kind) in [
        (hook.clone(), "loopback"),
        (format!("http://localhost:{port}/hook"), "loopback"),
        ("http://[::1]/hook".to_string(), "loopback"),
        (
            "http://169.254.169.254/latest/meta-data".to_string(),
            "link-local",
        ),
        ("http://10.0.0.5/hook".to_string(), "private"),
        ("https://192.168.1.10/hook".to_string(), "private"),
        ("http://[fd00::5]/hook".to_string(), "private"),
        ("http://0.0.0.0/hook".to_string(), "unspecified"),
    ] {
        let text = refused_for_alice(&gw, &url).await;
        assert!(
            text.contains(&format!("a {kind} address")) && text.contains("notify.channel_hosts"),
            "{url}: {text}"
        );
    }
    let hers = as_user("GET", &gw.url(CHANNELS), "alice", "alice-pw", None).await;
    assert_eq!(hers.json(), json!([]), "nothing stored");

    // An administrator's channel, personal or not, may post to an internal receiver.
    let admins = admins_channel(
        &gw,
        &json!({"kind": "slack", "url": hook, "personal": true}),
    )
    .await;
    assert_eq!(admins.status, 201, "{:?}", admins.body);
    assert_eq!(admins.json()["owner"], "admin");

    // A name that resolves to loopback, which creation cannot tell (a channel made
    // before, or a name of the user's own DNS): refused when delivering, once, and
    // shown as failing with the reason and no part of the URL's path.
    let now = patgate::core::time::now();
    let sneaky = api(&gw)
        .store
        .create_channel(&patgate::store::NewChannel {
            id: "ch_sneaky",
            owner: Some("alice"),
            kind: "slack",
            url: &format!("http://localhost:{port}/hook/T0/B0/secret-path"),
            secret: None,
            created_by: "alice",
            made_by_admin: false,
            now,
        })
        .await
        .unwrap();
    user(&gw, "alice", Some("alice@example.com")).await;
    user(&gw, "admin", Some("admin@example.com")).await;
    token(&gw, "alice", "alice's pipeline", Some(now + 3 * DAY)).await;
    token(&gw, "admin", "admin's pipeline", Some(now + 3 * DAY)).await;
    let pass = pass_settled(&gw, now).await;
    assert_eq!(pass.sent, 2, "{pass:?}");
    let got = bodies(&hook_got);
    assert_eq!(
        got.len(),
        1,
        "only the administrator's channel posted: {got:?}"
    );
    assert!(got[0]["text"]
        .as_str()
        .unwrap()
        .contains("\"admin's pipeline\" of admin"));
    let reason = failing_reason(&gw, &sneaky.id).await;
    assert!(
        reason.contains("resolves to") && reason.contains("a loopback address"),
        "{reason}"
    );
    assert!(reason.contains("notify.channel_hosts"), "{reason}");
    assert!(!reason.contains("secret-path"), "{reason}");
    let attempts = api(&gw).store.deliveries(&sneaky.id).await.unwrap();
    assert_eq!(attempts.len(), 1, "a refusal is not retried: {attempts:?}");
    assert_eq!(attempts[0].2, "failed");
}

async fn a_listed_host_lets_a_users_channel_reach_an_internal_receiver(db: TestDb) {
    let (_upstream, gw, _smtp) =
        weekly_reminders(&db, &[("PATGATE_NOTIFY__CHANNEL_HOSTS", "127.0.0.1")]).await;
    let (hook, hook_got) = receiver(0).await;
    let made = alices_channel(&gw, &json!({"kind": "slack", "url": hook})).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    user(&gw, "alice", Some("alice@example.com")).await;
    let now = patgate::core::time::now();
    token(&gw, "alice", "alice's pipeline", Some(now + 3 * DAY)).await;
    let pass = pass_settled(&gw, now).await;
    assert_eq!(pass.sent, 1, "{pass:?}");
    assert_eq!(bodies(&hook_got).len(), 1);
}

/// Two administrators' channels, one that answers and one that fails every attempt
/// of the first pass, then answers, and Alice's token expiring in 3 days: what each
/// channel got, their ids and the instant of the first pass.
async fn told_and_flaky(gw: &Gateway) -> (Got, Got, Vec<String>, i64) {
    let (told, told_got) = receiver(0).await;
    let (flaky, flaky_got) = receiver(ATTEMPTS).await;
    let ids = admins_slack_channels(gw, &[&told, &flaky]).await;
    user(gw, "alice", Some("alice@example.com")).await;
    let now = patgate::core::time::now();
    token(gw, "alice", "soon", Some(now + 3 * DAY)).await;
    (told_got, flaky_got, ids, now)
}

async fn channels_hear_of_a_reminder_once_while_its_email_is_retried(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    // Nothing listens there: every e-mail fails, and every pass retries it.
    mail_through(
        &gw,
        free_port(),
        json!({"notifications": {"reminder_days": [7]}}),
    )
    .await;
    let (told_got, flaky_got, ids, now) = told_and_flaky(&gw).await;

    let first = pass_settled(&gw, now).await;
    assert_eq!((first.sent, first.failed), (0, 1), "{first:?}");
    assert_eq!(told_got.lock().unwrap().len(), 1);
    assert_eq!(flaky_got.lock().unwrap().len(), ATTEMPTS);
    for at in [now + 60, now + 120] {
        let retried = pass_settled(&gw, at).await;
        assert_eq!(retried.failed, 1, "the e-mail is retried: {retried:?}");
    }
    // The channel told is not told again; the one that failed is retried, once.
    assert_eq!(told_got.lock().unwrap().len(), 1, "told once");
    assert_eq!(flaky_got.lock().unwrap().len(), ATTEMPTS + 1);
    let statuses: Vec<String> = api(&gw)
        .store
        .deliveries(&ids[1])
        .await
        .unwrap()
        .into_iter()
        .map(|(_, _, status, _)| status)
        .collect();
    assert_eq!(statuses.last().map(String::as_str), Some("delivered"));
    assert_eq!(api(&gw).store.deliveries(&ids[0]).await.unwrap().len(), 1);
    let listed = admin(&gw, "GET", CHANNELS, None).await.json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["last_status"] == "delivered"),
        "{listed}"
    );
}

async fn a_channel_that_failed_is_retried_alone_after_the_email_went_out(db: TestDb) {
    let (_upstream, gw, smtp) = weekly_reminders(&db, &[]).await;
    let (told_got, flaky_got, ids, now) = told_and_flaky(&gw).await;
    let first = pass_settled(&gw, now).await;
    assert_eq!(first.sent, 1, "{first:?}");
    assert_eq!(flaky_got.lock().unwrap().len(), ATTEMPTS);
    for at in [now + 60, now + 120] {
        let next = pass_settled(&gw, at).await;
        assert_eq!(
            (next.due, next.sent),
            (0, 0),
            "the e-mail is done: {next:?}"
        );
    }
    assert_eq!(smtp.received().len(), 1, "one e-mail");
    assert_eq!(told_got.lock().unwrap().len(), 1, "told once");
    let retried = bodies(&flaky_got);
    assert_eq!(
        retried.len(),
        ATTEMPTS + 1,
        "retried by the next pass, once"
    );
    assert!(
        retried[ATTEMPTS]["text"]
            .as_str()
            .unwrap()
            .contains("\"soon\" of alice expires in"),
        "{retried:?}"
    );
    let listed = admin(&gw, "GET", CHANNELS, None).await.json();
    let flaky_view = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == ids[1].as_str());
    assert_eq!(flaky_view.unwrap()["last_status"], "delivered", "{listed}");
}

async fn a_warnings_failed_channel_is_retried_with_the_same_date(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let smtp = SmtpServer::start(Mode::Plain, false).await;
    mail_through(&gw, smtp.port, json!({"unused_token_revoke_days": 30})).await;
    let (flaky, flaky_got) = receiver(ATTEMPTS).await;
    admins_slack_channels(&gw, &[&flaky]).await;
    user(&gw, "bob", Some("bob@example.com")).await;
    let (id, _) = gw.create_token("bob", "forgotten", Expiration::Never).await;
    let since = api(&gw).store.get_token(&id).await.unwrap().created_at;
    let warned_at = since + 23 * DAY + 60;
    let warned = pass_settled(&gw, warned_at).await;
    assert_eq!(warned.unused_warned, 1, "{warned:?}");
    assert_eq!(flaky_got.lock().unwrap().len(), ATTEMPTS);
    for at in [warned_at + 60, warned_at + 120] {
        assert_eq!(pass_settled(&gw, at).await.unused_warned, 0);
    }
    assert_eq!(smtp.received().len(), 1, "one e-mail");
    let got = bodies(&flaky_got);
    assert_eq!(got.len(), ATTEMPTS + 1, "retried once: {got:?}");
    let on = patgate::core::time::rfc3339(warned_at + 7 * DAY);
    for warning in [&got[0], &got[ATTEMPTS]] {
        let text = warning["text"].as_str().unwrap();
        assert!(text.contains(&format!("will be revoked on {on}")), "{text}");
    }
}

async fn a_service_accounts_reminders_reach_all_its_active_owners(db: TestDb) {
    let (_upstream, gw, smtp) = weekly_reminders(&db, &[]).await;
    user(&gw, "alice", Some("alice@example.com")).await;
    user(&gw, "bob", Some("bob@example.com")).await;
    user(&gw, "carol", Some("carol@example.com")).await;
    let made = admin(
        &gw,
        "POST",
        "/patgate/api/v1/service-accounts",
        Some(&json!({"name": "ci-bot", "owners": ["alice", "bob", "carol"]})),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    // carol has left: she hears nothing more about the account.
    gw.set_disabled("carol", true).await;
    let expires = patgate::core::time::now() + 20 * DAY;
    token(&gw, "ci-bot", "release", Some(expires)).await;
    let notifier = &api(&gw).notifier;
    let pass = notifier
        .run_pass(expires - 7 * DAY + 3600, Cause::Command)
        .await
        .unwrap();
    assert_eq!(pass.sent, 1, "{pass:?}");
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    let mut to = received[0].rcpt_tos.clone();
    to.sort();
    assert_eq!(to, ["alice@example.com", "bob@example.com"]);
    assert!(received[0].decoded().contains("release"));
}
