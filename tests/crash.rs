//! Crash consistency: the real binary killed with SIGKILL at random moments (seeded:
//! the seed is printed, `PATGATE_TEST_CRASH_SEED` replays it; `PATGATE_TEST_CRASH_KILLS` sets
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

on_both_backends!(
    reminders_survive_kills_mid_pass,
    tokens_are_whole_after_kills_mid_api_calls,
    key_rotations_survive_kills,
);

const DAY: i64 = 86_400;

// ---------------------------------------------------------------- reminders

/// Tokens with a reminder due, one per user so that the recipient names the token.
const REMINDERS: usize = 24;
/// `notify.concurrency`: e-mails under way at once, so at most this many in flight.
const CONCURRENCY: usize = 4;
/// How late the SMTP server answers each message it has already recorded.
const SMTP_DELAY: Duration = Duration::from_millis(250);
/// The notifier of the processes under test: a pass at start (no pass has run yet),
/// leases short enough to see them run out, and a send timeout that a loaded machine
/// does not reach.
const NOTIFIER: [(&str, &str); 5] = [
    ("PATGATE_NOTIFY__DAILY_AT", "01:00"),
    ("PATGATE_NOTIFY__TIME_ZONE", "UTC"),
    ("PATGATE_NOTIFY__SEND_TIMEOUT", "2s"),
    ("PATGATE_NOTIFY__CLAIM_LEASE", "4s"),
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
    let relay = smtp.item_at(&gw.url(""), "relay").await;
    let settings = json!({"notifications": {"enabled": true, "smtp_server_id": relay,
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
        let failed: Vec<Value> = status.json()["outcomes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|o| o["status"] != "sent")
            .map(|o| json!([o["email"], o["status"], o["last_error"]]))
            .collect();
        *counts.lock().unwrap() = json!([status.json()["counts"], failed]);
        status.json()["counts"] == json!({"sent": REMINDERS})
    })
    .await;
    let got = recipients(smtp);
    let distinct: std::collections::BTreeSet<_> = got.iter().collect();
    let log = gw.stderr.lock().unwrap().clone();
    let notifier: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("notif") || l.contains("WARN") || l.contains("ERROR"))
        .collect();
    assert!(
        done.is_some(),
        "reminders not all recorded as sent after the restart ({}); {} of {REMINDERS} recipients reached; the gateway said:\n{}",
        counts.lock().unwrap(),
        distinct.len(),
        notifier.join("\n")
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
    // No claim is left to run out: nothing more comes (a last look all the same).
    tokio::time::sleep(Duration::from_secs(1)).await;
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
        tokio::time::sleep(Duration::from_secs(1)).await;
        let got = recipients(&smtp);
        // The survivor's messages come between the dead one's.
        assert_reminders(&got, &at_kill, 2, rng.seed);
    }
}

// ---------------------------------------------------------------- the API

/// What the client knows of one token of alice's.
#[derive(Debug, Clone)]
struct Known {
    /// The value, when an answer carried it.
    value: Option<String>,
    fate: Fate,
}

#[derive(Debug, Clone, PartialEq)]
enum Fate {
    /// Made (or found whole after a kill), never rotated or revoked since.
    Live,
    /// `DELETE` answered 204.
    Revoked,
    /// Rotation answered 201: the successor and whether the old one keeps a grace.
    Rotated { successor: String, grace: bool },
    /// Revocation sent, no answer: the kill came first.
    RevokeUnanswered,
    /// Rotation sent, no answer.
    RotateUnanswered { grace: bool },
}

/// The client's side of a stream of calls: what it was told, and the creations that
/// got no answer (by name).
#[derive(Debug, Default)]
struct Ledger {
    tokens: BTreeMap<String, Known>,
    unanswered_creates: Vec<String>,
    made: usize,
    /// Calls the kill cut off, over the whole test.
    unanswered: usize,
}

const ALICE: (&str, &str) = ("alice", "alice-pw");
/// Every refused token is tried after every kill: more than the failed-check limit
/// lets one address try by default.
const LIMITS: [(&str, &str); 1] = [("PATGATE_LIMITS__FAILURE_BURST", "100000")];

async fn alice(
    gw: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Option<Answer> {
    let auth = basic(ALICE.0, ALICE.1);
    try_call(
        method,
        &format!("{gw}{path}"),
        &[("authorization", &auth)],
        body,
    )
    .await
}

/// Creates, rotates and revokes alice's tokens one call at a time until a call gets
/// no answer (the process was killed), writing down what each answer said.
async fn stream_of_calls(gw: String, mut ledger: Ledger, mut rng: Rng) -> Ledger {
    loop {
        let live: Vec<String> = ledger
            .tokens
            .iter()
            .filter(|(_, k)| k.fate == Fate::Live)
            .map(|(id, _)| id.clone())
            .collect();
        let roll = rng.below(100);
        if live.len() < 3 || roll < 40 {
            ledger.made += 1;
            let name = format!("t{}", ledger.made);
            let body = json!({"name": name, "expiration": "7d"});
            let Some(answer) = alice(&gw, "POST", "/patgate/api/v1/tokens", Some(&body)).await
            else {
                ledger.unanswered_creates.push(name);
                ledger.unanswered += 1;
                return ledger;
            };
            assert_eq!(answer.status, 201, "create: {:?}", answer.body);
            let made = answer.json();
            ledger.tokens.insert(
                made["id"].as_str().unwrap().to_string(),
                Known {
                    value: Some(made["token"].as_str().unwrap().to_string()),
                    fate: Fate::Live,
                },
            );
            continue;
        }
        let id = live[rng.below(live.len() as u64) as usize].clone();
        if roll < 70 {
            let grace = rng.below(2) == 0;
            let body = json!({"grace": if grace { "1h" } else { "0s" }});
            let path = format!("/patgate/api/v1/tokens/{id}/rotate");
            let Some(answer) = alice(&gw, "POST", &path, Some(&body)).await else {
                ledger.tokens.get_mut(&id).unwrap().fate = Fate::RotateUnanswered { grace };
                ledger.unanswered += 1;
                return ledger;
            };
            assert_eq!(answer.status, 201, "rotate: {:?}", answer.body);
            let made = answer.json();
            let successor = made["id"].as_str().unwrap().to_string();
            ledger.tokens.get_mut(&id).unwrap().fate = Fate::Rotated {
                successor: successor.clone(),
                grace,
            };
            ledger.tokens.insert(
                successor,
                Known {
                    value: Some(made["token"].as_str().unwrap().to_string()),
                    fate: Fate::Live,
                },
            );
        } else {
            let path = format!("/patgate/api/v1/tokens/{id}");
            let Some(answer) = alice(&gw, "DELETE", &path, None).await else {
                ledger.tokens.get_mut(&id).unwrap().fate = Fate::RevokeUnanswered;
                ledger.unanswered += 1;
                return ledger;
            };
            assert_eq!(answer.status, 204, "revoke: {:?}", answer.body);
            ledger.tokens.get_mut(&id).unwrap().fate = Fate::Revoked;
        }
    }
}

/// Whether `value` gets a request through to Deploy.
async fn works(gw: &Process, value: &str) -> bool {
    let answer = get(
        &gw.url("/deployit/repository/ci/x"),
        &[("x-deploy-personal-token", value)],
    )
    .await;
    assert!(
        answer.status == 200 || answer.status == 401,
        "neither accepted nor refused: {} {:?}",
        answer.status,
        answer.body
    );
    answer.status == 200
}

/// Checks the restarted gateway against what the client was told, and settles the
/// calls that got no answer by what the gateway has (each one whole or not at all).
async fn check_ledger(gw: &Process, ledger: &mut Ledger, seed: u64) {
    let listed = as_user(
        "GET",
        &gw.url("/patgate/api/v1/tokens"),
        ALICE.0,
        ALICE.1,
        None,
    )
    .await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let listed: BTreeMap<String, Value> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap().to_string(), t.clone()))
        .collect();
    let live_listed = |id: &str| listed.get(id).is_some_and(|t| t["replaced_by"].is_null());
    // No token has two live successors.
    for (id, _) in listed.iter() {
        let successors: Vec<_> = listed
            .values()
            .filter(|t| t["rotated_from"] == id.as_str())
            .map(|t| t["id"].clone())
            .collect();
        assert!(
            successors.len() <= 1,
            "seed {seed}: {id} has live successors {successors:?}"
        );
    }
    let ids: Vec<String> = ledger.tokens.keys().cloned().collect();
    for id in ids {
        let known = ledger.tokens[&id].clone();
        let value = known.value.as_deref();
        match &known.fate {
            Fate::Live => {
                assert!(live_listed(&id), "seed {seed}: acknowledged {id} is gone");
                if let Some(value) = value {
                    assert!(
                        works(gw, value).await,
                        "seed {seed}: {id} is listed, refused"
                    );
                }
            }
            Fate::Revoked => {
                assert!(
                    !listed.contains_key(&id),
                    "seed {seed}: revoked {id} listed"
                );
                if let Some(value) = value {
                    assert!(
                        !works(gw, value).await,
                        "seed {seed}: revoked {id} works again"
                    );
                }
            }
            Fate::Rotated { successor, grace } => {
                // Listed while in its grace only, and then pointing at its successor.
                if let Some(old) = listed.get(&id) {
                    assert_eq!(old["replaced_by"], successor.as_str(), "seed {seed}");
                }
                assert_eq!(listed.contains_key(&id), *grace, "seed {seed}: {id}");
                // A predecessor in its grace works; one past it is not tried here:
                // its use would be a reuse, revoking the family.
                if let (true, Some(value)) = (grace, value) {
                    assert!(
                        works(gw, value).await,
                        "seed {seed}: {id} in its grace refused"
                    );
                }
            }
            Fate::RevokeUnanswered => {
                let there = listed.contains_key(&id);
                if let Some(value) = value {
                    assert_eq!(
                        works(gw, value).await,
                        there,
                        "seed {seed}: {id} (revocation unanswered) listed: {there}"
                    );
                }
                ledger.tokens.get_mut(&id).unwrap().fate =
                    if there { Fate::Live } else { Fate::Revoked };
            }
            Fate::RotateUnanswered { grace } => {
                // A predecessor past its grace is no longer listed; its successor is.
                let successor = listed
                    .values()
                    .find(|t| t["rotated_from"] == id.as_str())
                    .map(|t| t["id"].as_str().unwrap().to_string());
                if let (Some(old), Some(successor)) = (listed.get(&id), &successor) {
                    assert_eq!(old["replaced_by"], successor.as_str(), "seed {seed}");
                }
                match successor {
                    None => {
                        assert!(live_listed(&id), "seed {seed}: {id} vanished in a rotation");
                        if let Some(value) = value {
                            assert!(works(gw, value).await, "seed {seed}: {id} refused");
                        }
                        ledger.tokens.get_mut(&id).unwrap().fate = Fate::Live;
                    }
                    Some(successor) => {
                        assert!(live_listed(&successor), "seed {seed}: {successor}");
                        ledger.tokens.get_mut(&id).unwrap().fate = Fate::Rotated {
                            successor: successor.clone(),
                            grace: *grace,
                        };
                        ledger.tokens.insert(
                            successor,
                            Known {
                                value: None,
                                fate: Fate::Live,
                            },
                        );
                    }
                }
            }
        }
    }
    // A creation without an answer is there whole (listed, live) or not at all.
    for name in std::mem::take(&mut ledger.unanswered_creates) {
        let found: Vec<_> = listed
            .iter()
            .filter(|(_, t)| t["name"] == name.as_str())
            .collect();
        assert!(found.len() <= 1, "seed {seed}: {name} twice: {found:?}");
        if let Some((id, t)) = found.first() {
            assert!(t["replaced_by"].is_null() && t["rotated_from"].is_null());
            ledger.tokens.insert(
                id.to_string(),
                Known {
                    value: None,
                    fate: Fate::Live,
                },
            );
        }
    }
    // Nothing listed that no call made.
    for id in listed.keys() {
        assert!(
            ledger.tokens.contains_key(id),
            "seed {seed}: {id} listed, made by no call"
        );
    }
}

async fn tokens_are_whole_after_kills_mid_api_calls(db: TestDb) {
    let mut rng = Rng::new("tokens_are_whole_after_kills_mid_api_calls");
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    first_start(&file).await;
    let mut ledger = Ledger::default();
    let mut gw = Process::start_with_env(&file, &LIMITS).await;
    let kills = kills(5);
    for _ in 0..kills {
        let calls = tokio::spawn(stream_of_calls(
            gw.url(""),
            ledger,
            Rng::new_seeded(rng.next()),
        ));
        tokio::time::sleep(rng.between(Duration::from_millis(200), Duration::from_millis(1_500)))
            .await;
        sigkill(gw).await;
        ledger = calls.await.unwrap();
        gw = Process::start_with_env(&file, &LIMITS).await;
        check_ledger(&gw, &mut ledger, rng.seed).await;
    }
    // Last, the predecessors rotated without a grace: refused.
    for known in ledger.tokens.values() {
        if let (Fate::Rotated { grace: false, .. }, Some(value)) = (&known.fate, &known.value) {
            assert!(
                !works(&gw, value).await,
                "seed {}: a token rotated without a grace still works",
                rng.seed
            );
        }
    }
    eprintln!(
        "{} tokens over {kills} kills, {} calls cut off by a kill",
        ledger.tokens.len(),
        ledger.unanswered
    );
}

// ---------------------------------------------------------------- key rotations

/// The gateway in jwt mode (RS256) in front of a Deploy stand-in that validates its
/// JWTs with jose against the gateway's JWKS, with short key lifetimes.
fn jwt_mode(db: &TestDb, token_key: &str, previous: &str) -> Vec<(String, String)> {
    [
        ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__ALGORITHM", "RS256"),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__ISSUER", ISSUER),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__AUDIENCE", AUDIENCE),
        (
            "PATGATE_UPSTREAM__IDENTITY__JWT__DEFAULT_ROLES",
            "deployers",
        ),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__TTL", "30s"),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__ROTATION_LEAD", "2s"),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__CLOCK_SKEW", "1s"),
        ("PATGATE_SECRETS__TOKEN_KEY", token_key),
        ("PATGATE_SECRETS__PREVIOUS_TOKEN_KEYS", previous),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "PATGATE_UPSTREAM__IDENTITY__JWT__KEY_FILE".to_string(),
        db.dir.path().join("jwt.key").display().to_string(),
    )])
    .collect()
}

const ISSUER: &str = "https://patgate.example";
const AUDIENCE: &str = "deploy-prod";

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Requests with `tokens` through the gateway at `url` until `stop`, every 20 ms.
/// Answers come back as statuses, and the JWTs Deploy got; a request that got no
/// answer (the gateway was down) counts as neither.
struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<(usize, Vec<String>, Vec<String>)>,
}

impl Load {
    fn start(url: String, tokens: Vec<String>) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let until = stop.clone();
        let handle = tokio::spawn(async move {
            let (mut ok, mut refused, mut jwts) = (0, Vec::new(), Vec::new());
            let mut i = 0;
            while !until.load(std::sync::atomic::Ordering::Relaxed) {
                let token = &tokens[i % tokens.len()];
                i += 1;
                let url = format!("{url}/deployit/repository/ci/x");
                let headers = [("x-deploy-personal-token", token.as_str())];
                match try_call("GET", &url, &headers, None).await {
                    Some(a) if a.status == 200 => {
                        ok += 1;
                        if let Some(jwt) = bearer_seen(&a) {
                            jwts.push(jwt);
                        }
                    }
                    Some(a) => {
                        refused.push(format!("{} {}", a.status, String::from_utf8_lossy(&a.body)))
                    }
                    None => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, refused, jwts)
        });
        Load { stop, handle }
    }

    /// Stops; checks that no answer was a refusal (`during` says when, `seed` how to
    /// replay) and that the load was real; returns how many got through and the JWTs.
    async fn stop(self, during: &str, seed: u64) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, refused, jwts) = self.handle.await.unwrap();
        assert!(
            refused.is_empty(),
            "seed {seed}: refused during {during}: {refused:?}"
        );
        assert!(ok > 10, "too little load during {during}: {ok}");
        (ok, jwts)
    }
}

/// The JWT the stand-in received, from the headers it echoes.
fn bearer_seen(answer: &Answer) -> Option<String> {
    answer.json()["headers"]
        .as_array()?
        .iter()
        .find(|h| {
            h[0].as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("authorization"))
        })
        .and_then(|h| h[1].as_str()?.strip_prefix("Bearer ").map(str::to_string))
}

/// Kills `patgate jwt-key rotate` and the gateway at seeded moments of the rotation,
/// then the same during the token HMAC key's phase 2 (tokens moved to the new key as
/// they are used, the signing keys sealed again); after each restart, once the
/// survivors settle, no valid request is refused: tokens made before and after work,
/// and the JWTs Deploy already validated still validate until they expire.
async fn key_rotations_survive_kills(db: TestDb) {
    use common::deploy_jwt::{JwtDeploy, JwtDeployOptions};
    let mut rng = Rng::new("key_rotations_survive_kills");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let deploy = JwtDeploy::start(JwtDeployOptions {
        jwks_url: Some(format!("http://{listen}/patgate/.well-known/jwks.json")),
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithms: vec!["RS256".into()],
        username_claim: Some("sub".into()),
        ..JwtDeployOptions::default()
    })
    .await;
    let file = config_file(&db, &deploy.url, &listen);
    first_start(&file).await;
    let (old_key, new_key) = ("11".repeat(32), "22".repeat(32));
    let phase1 = jwt_mode(&db, &old_key, "");
    let phase2 = jwt_mode(&db, &new_key, &old_key);
    let (code, before, err) = run_in(
        std::path::Path::new("."),
        &[
            "--config",
            file.to_str().unwrap(),
            "token",
            "create",
            "--user",
            "alice",
            "--name",
            "before",
            "--expires",
            "7d",
        ],
        &pairs(&phase1),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let before = before.trim().to_string();

    let mut gw = Process::start_with_env(&file, &pairs(&phase1)).await;
    let load = Load::start(gw.url(""), vec![before.clone()]);
    let rounds = kills(2);
    let mut cut_off = 0;
    for round in 0..rounds {
        let mut rotate = tokio::process::Command::new(binary())
            .args(["--config", file.to_str().unwrap(), "jwt-key", "rotate"])
            .envs(pairs(&phase1))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        if round + 1 == rounds {
            // The last rotation completes; the gateway dies in its lead, with the next
            // key published and not yet signing.
            assert!(rotate.wait().await.unwrap().success());
        } else {
            tokio::time::sleep(rng.between(Duration::ZERO, Duration::from_millis(1_500))).await;
            if rotate.try_wait().unwrap().is_none() {
                rotate.start_kill().unwrap();
                cut_off += 1;
            }
            let _ = rotate.wait().await;
        }
        tokio::time::sleep(rng.between(Duration::ZERO, Duration::from_millis(1_500))).await;
        sigkill(gw).await;
        gw = Process::start_with_env(&file, &pairs(&phase1)).await;
    }
    let mut tokens = vec![before];
    tokens.push(settle_and_check(&gw, &file, &phase1, &tokens, &deploy).await);
    let (ok, jwts) = load.stop("the JWT key rotations", rng.seed).await;
    // A JWT Deploy accepted before the kills still validates (30 s lifetime).
    let first = jwts.first().expect("Deploy received JWTs");
    let again = deploy.get("/deployit/repository/ci/x", Some(first)).await;
    assert_eq!(again.status, 200, "seed {}: {:?}", rng.seed, again.body);
    let keys = get(&gw.url("/patgate/.well-known/jwks.json"), &[])
        .await
        .json()["keys"]
        .as_array()
        .map_or(0, Vec::len);
    eprintln!(
        "JWT key: {rounds} rotations and gateway kills, {cut_off} rotations killed while running, {keys} keys published after, {ok} requests served"
    );

    // Phase 2 of the token key, killed while tokens move and signing keys are sealed
    // again.
    sigkill(gw).await;
    let mut gw = Process::start_with_env(&file, &pairs(&phase2)).await;
    let load = Load::start(gw.url(""), tokens.clone());
    for _ in 0..kills(2) {
        tokio::time::sleep(rng.between(Duration::from_millis(50), Duration::from_millis(1_000)))
            .await;
        sigkill(gw).await;
        gw = Process::start_with_env(&file, &pairs(&phase2)).await;
    }
    tokens.push(settle_and_check(&gw, &file, &phase2, &tokens, &deploy).await);
    load.stop("the token key's phase 2", rng.seed).await;
    // Every token was used under phase 2 (the ones the kills cut off again just now):
    // soon none is left under the old key.
    let old_id = patgate::core::sealed::key_id(&[0x11; 32]);
    let retire = [
        "--config",
        file.to_str().unwrap(),
        "token-key",
        "retire",
        &old_id,
    ];
    let retired = within(Duration::from_secs(5), || async {
        run_in(std::path::Path::new("."), &retire, &pairs(&phase2))
            .await
            .0
            == 0
    })
    .await;
    let (_, status, _) = run_in(
        std::path::Path::new("."),
        &["--config", file.to_str().unwrap(), "token-key", "status"],
        &pairs(&phase2),
    )
    .await;
    assert!(
        retired.is_some(),
        "seed {}: old key still holds tokens:\n{status}",
        rng.seed
    );
    sigkill(gw).await;
    // And without the old key, the tokens and the signing keys are all readable.
    let without_old = jwt_mode(&db, &new_key, "");
    let gw = Process::start_with_env(&file, &pairs(&without_old)).await;
    settle_and_check(&gw, &file, &without_old, &tokens, &deploy).await;
}

/// Waits out a rotation's lead, then: the tokens made before work, a token made now
/// works (returned), and `jwt-key list` answers.
async fn settle_and_check(
    gw: &Process,
    file: &std::path::Path,
    env: &[(String, String)],
    before: &[String],
    deploy: &common::deploy_jwt::JwtDeploy,
) -> String {
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    let args = ["--config", file.to_str().unwrap()];
    let (code, listed, err) = run_in(
        std::path::Path::new("."),
        &[&args[..], &["jwt-key", "list"]].concat(),
        &pairs(env),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let name = format!("after-{}", random_suffix());
    let (code, after, err) = run_in(
        std::path::Path::new("."),
        &[
            &args[..],
            &[
                "token",
                "create",
                "--user",
                "bob",
                "--name",
                &name,
                "--expires",
                "7d",
            ],
        ]
        .concat(),
        &pairs(env),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let after = after.trim().to_string();
    let mut all: Vec<(&str, &str)> = before.iter().map(|t| ("", t.as_str())).collect();
    all.push(("bob", &after));
    for (user, token) in all {
        let answer = get(
            &gw.url("/deployit/repository/ci/x"),
            &[("x-deploy-personal-token", token)],
        )
        .await;
        assert_eq!(
            answer.status,
            200,
            "{user}'s token refused; keys:\n{listed}\n{:?}; Deploy: {}",
            answer.body,
            deploy.stats().await
        );
        if !user.is_empty() {
            assert_eq!(answer.json()["user"], user);
        }
    }
    after
}
