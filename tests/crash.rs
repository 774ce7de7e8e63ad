//! Crash consistency: the real binary killed with SIGKILL at random moments (seeded:
//! the seed is printed, `PATGATE_CRASH_SEED` replays it; `PATGATE_CRASH_KILLS` sets
//! how many kills), then started again, on SQLite and PostgreSQL. What must survive:
//! every due reminder goes out, again only when it was in flight at the kill; a token
//! is wholly there or not at all, a revocation that was answered stays, a rotation
//! leaves one live successor; and no valid request is refused after a key rotation.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::api::as_user;
use common::crash::{kills, sigkill, try_call, Rng};
use common::smtp::{Mode, SmtpServer};
use common::*;
use patgate::store::UserSource;
use serde_json::{json, Value};

on_both_backends!(reminders_survive_kills_mid_pass,);

const DAY: i64 = 86_400;

// ---------------------------------------------------------------- reminders

/// Tokens with a reminder due, one per user so that the recipient names the token.
const REMINDERS: usize = 24;
/// `notify.concurrency`: e-mails under way at once, so at most this many in flight.
const CONCURRENCY: usize = 4;
/// How late the SMTP server answers each message it has already recorded.
const SMTP_DELAY: Duration = Duration::from_millis(250);
/// The notifier of the processes under test: a pass at start (no pass has run yet),
/// leases short enough to see them run out.
const NOTIFIER: [(&str, &str); 5] = [
    ("PATGATE_NOTIFY__DAILY_AT", "01:00"),
    ("PATGATE_NOTIFY__TIME_ZONE", "UTC"),
    ("PATGATE_NOTIFY__SEND_TIMEOUT", "1s"),
    ("PATGATE_NOTIFY__CLAIM_LEASE", "2s"),
    ("PATGATE_NOTIFY__CONCURRENCY", "4"),
];

/// Mail set up through `smtp` and [`REMINDERS`] tokens due for their 7-day reminder,
/// made by a gateway whose schedule is off, so that no pass has run; returns the
/// configuration file for the binary.
async fn due_reminders(db: &TestDb, upstream: &Upstream, smtp: &SmtpServer) -> PathBuf {
    let gw = Gateway::start(config(
        db,
        &upstream.url(),
        &[("PATGATE_NOTIFY__DAILY_AT", "off")],
    ))
    .await;
    let made = as_user(
        "POST",
        &gw.url("/patgate/api/v1/smtp-servers"),
        "admin",
        "admin-pw",
        Some(
            &json!({"name": "relay", "host": "127.0.0.1", "port": smtp.port,
            "from_address": "Deploy <deploy@example.com>"}),
        ),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let settings = json!({"notifications": {"enabled": true, "smtp_server_id": made.json()["id"],
        "reminder_days": [7]}});
    let saved = as_user(
        "PUT",
        &gw.url("/patgate/api/v1/settings"),
        "admin",
        "admin-pw",
        Some(&settings),
    )
    .await;
    assert_eq!(saved.status, 200, "{:?}", saved.body);
    let api = gw.api().unwrap();
    let expires_at = patgate::core::time::now() + 3 * DAY;
    for i in 0..REMINDERS {
        let user = format!("user{i}");
        let email = format!("user{i}@example.com");
        api.store
            .ensure_user(&user, UserSource::Internal, Some(&email))
            .await
            .unwrap();
        let plain = patgate::core::token::PlainToken::generate();
        let hash = api.hasher.hash(plain.expose().as_bytes());
        api.store
            .create_token(&user, "ci", &hash, Some(expires_at))
            .await
            .unwrap();
    }
    gw.shutdown().await;
    config_file(db, &upstream.url(), "127.0.0.1:0")
}

/// The recipient of each message the SMTP server accepted, in order.
fn recipients(smtp: &SmtpServer) -> Vec<String> {
    smtp.received()
        .iter()
        .map(|m| m.rcpt_tos.join(","))
        .collect()
}

/// Waits until every reminder was recorded as sent, and none is still claimed: the
/// passes have settled.
async fn settled(gw: &Process, smtp: &SmtpServer) {
    let counts = Mutex::new(Value::Null);
    let done = within(Duration::from_secs(30), || async {
        let status = as_user(
            "GET",
            &gw.url("/patgate/api/v1/notifications"),
            "admin",
            "admin-pw",
            None,
        )
        .await;
        *counts.lock().unwrap() = status.json()["counts"].clone();
        status.json()["counts"] == json!({"sent": REMINDERS})
    })
    .await;
    let got = recipients(smtp);
    let distinct: std::collections::BTreeSet<_> = got.iter().collect();
    assert!(
        done.is_some(),
        "reminders not all recorded as sent after the restart ({}); {} of {REMINDERS} recipients reached",
        counts.lock().unwrap(),
        distinct.len()
    );
}

/// Checks what the claim design promises: every reminder reached its recipient, and a
/// second copy only of a message the SMTP server had accepted while the killed process
/// waited for its answer, so at most [`CONCURRENCY`] per kill, each among the last
/// [`CONCURRENCY`] messages of each of `senders` processes accepted before that kill.
/// `at_kill[k]` is how many messages the server had accepted when kill `k` landed.
fn assert_reminders(got: &[String], at_kill: &[usize], senders: usize, seed: u64) {
    let mut first: BTreeMap<&str, usize> = BTreeMap::new();
    let mut duplicated = Vec::new();
    for (i, to) in got.iter().enumerate() {
        match first.get(to.as_str()) {
            None => {
                first.insert(to, i);
            }
            Some(&at) => duplicated.push((to.clone(), at)),
        }
    }
    assert_eq!(
        first.len(),
        REMINDERS,
        "seed {seed}: reminders lost: {got:?}"
    );
    for (to, at) in &duplicated {
        // The kill after which the first copy was recorded but never answered.
        let kill = at_kill.iter().position(|&n| *at < n);
        let Some(kill) = kill else {
            panic!("seed {seed}: {to} sent twice without a kill in between: {got:?}");
        };
        assert!(
            *at + CONCURRENCY * senders >= at_kill[kill],
            "seed {seed}: {to} sent again, but its first copy was not among the messages in flight at kill {kill} (message {at} of {}): {got:?}",
            at_kill[kill]
        );
    }
    for (kill, window) in at_kill.iter().enumerate() {
        let from = if kill == 0 { 0 } else { at_kill[kill - 1] };
        let again = duplicated
            .iter()
            .filter(|(_, at)| (from..*window).contains(at))
            .count();
        assert!(
            again <= CONCURRENCY,
            "seed {seed}: kill {kill} left {again} messages sent twice, over notify.concurrency ({CONCURRENCY}): {got:?}"
        );
    }
    eprintln!(
        "{} messages for {REMINDERS} reminders, {} kills, {} sent twice (in flight at a kill)",
        got.len(),
        at_kill.len(),
        duplicated.len()
    );
}

/// Waits a moment after a kill for the SMTP server to finish writing what it had
/// fully received, then counts.
async fn accepted_at_kill(smtp: &SmtpServer) -> usize {
    tokio::time::sleep(Duration::from_millis(50)).await;
    smtp.received().len()
}

async fn reminders_survive_kills_mid_pass(db: TestDb) {
    let mut rng = Rng::new("reminders_survive_kills_mid_pass");
    let upstream = Upstream::start().await;
    let smtp = SmtpServer::start_with_delay(Mode::Plain, false, SMTP_DELAY).await;
    let file = due_reminders(&db, &upstream, &smtp).await;
    let mut at_kill = Vec::new();
    for _ in 0..kills(3) {
        let gw = Process::start_with_env(&file, &NOTIFIER).await;
        // A pass takes about REMINDERS / CONCURRENCY × SMTP_DELAY (1.5 s) from the start.
        tokio::time::sleep(rng.between(Duration::from_millis(100), Duration::from_millis(1_200)))
            .await;
        sigkill(gw).await;
        at_kill.push(accepted_at_kill(&smtp).await);
    }
    // The pass the killed ones never recorded runs at the start as a catch-up; the
    // claims they left are taken over once their lease is out.
    let gw = Process::start_with_env(&file, &NOTIFIER).await;
    settled(&gw, &smtp).await;
    // Nothing more comes later (a lease running out, another pass).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_reminders(&recipients(&smtp), &at_kill, 1, rng.seed);
}

/// Two replicas on one PostgreSQL database pass at once; one is killed mid-pass, the
/// other finishes every reminder, the dead one's in flight again at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_lose_no_reminder_when_one_is_killed() {
    let mut rng = Rng::new("two_replicas_lose_no_reminder_when_one_is_killed");
    for _ in 0..kills(2) {
        let Some(db) = TestDb::new(Backend::Postgres).await else {
            return;
        };
        let upstream = Upstream::start().await;
        let smtp = SmtpServer::start_with_delay(Mode::Plain, false, SMTP_DELAY).await;
        let file = due_reminders(&db, &upstream, &smtp).await;
        let (doomed, survivor) = tokio::join!(
            Process::start_with_env(&file, &NOTIFIER),
            Process::start_with_env(&file, &NOTIFIER)
        );
        tokio::time::sleep(rng.between(Duration::from_millis(100), Duration::from_millis(1_000)))
            .await;
        sigkill(doomed).await;
        let at_kill = vec![accepted_at_kill(&smtp).await];
        settled(&survivor, &smtp).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let got = recipients(&smtp);
        // The survivor's messages come between the dead one's.
        assert_reminders(&got, &at_kill, 2, rng.seed);
    }
}
