//! One notification pass: for each reminder day, find the live tokens whose expiry
//! entered that reminder's window, claim each for that reminder in the database, send
//! (e-mail and channels), and record each token's outcome and the pass. Then the
//! unused tokens ([`super::unused`]).
//!
//! Reminder windows do not overlap: with days `[30, 7, 1]` the 30-day reminder is for
//! expiries in (7, 30] days, the 7-day one for (1, 7], the 1-day one for (0, 1]; a
//! token made 3 days before its expiry gets the 7-day and then the 1-day reminder.
//!
//! Users without a known e-mail address and without a channel are skipped and
//! reported; they hold up no one.
//! Sends run `notify.concurrency` at a time, each bounded by `notify.send_timeout`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::task::JoinSet;

use super::channels::{Deliverer, Message, Once};
use super::recipients::{recipients_of, Recipients};
use super::smtp::{Mail, Mailer};
use super::templates::{Templates, Variables};
use super::{Cause, Notifier};
use crate::metrics::Metrics;
use crate::store::{
    ChannelRecord, DueToken, NotifySettings, PassRecord, Reminder, Store, StoreError, KIND_EXPIRY,
};

/// Tokens read from the database at a time.
pub(super) const BATCH: i64 = 500;
const DAY: i64 = 86_400;
/// Skipped and failed tokens listed in a pass's record (the counts are complete).
const LISTED: usize = 100;

/// A skipped or failed token, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct TokenIssue {
    pub token_id: String,
    pub username: String,
    pub reason: String,
}

/// What a pass did.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    pub started_at: i64,
    pub finished_at: i64,
    pub cause: &'static str,
    /// `completed`, or why nothing was sent: `disabled`, `no_smtp_server`,
    /// `smtp_server_unusable`, `template_error`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    /// Tokens found in the window without an e-mail yet.
    pub due: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Due tokens another pass (another replica) claimed first.
    pub claimed_elsewhere: i64,
    pub skipped_tokens: Vec<TokenIssue>,
    pub failures: Vec<TokenIssue>,
    /// Unused tokens warned that they will be revoked.
    pub unused_warned: i64,
    /// Unused tokens revoked.
    pub unused_revoked: i64,
    /// Unused tokens due for revocation but kept: their owner can be warned and the
    /// warning has not gone out yet (it is retried).
    pub unused_held: i64,
    /// When the newest claim this pass found held by another (a pass under way, or
    /// one that died before recording its outcome) runs out of its lease: the gateway
    /// passes again then, so that what a crash left is not put off to the next day.
    #[serde(skip)]
    pub retry_at: Option<i64>,
}

impl PassReport {
    /// One line, for the command line and the log.
    pub fn summary(&self) -> String {
        let line = self.sent_summary();
        if self.unused_warned + self.unused_revoked + self.unused_held == 0 {
            return line;
        }
        format!(
            "{line}; unused tokens: {} warned, {} revoked, {} kept until their warning goes out",
            self.unused_warned, self.unused_revoked, self.unused_held
        )
    }

    fn sent_summary(&self) -> String {
        match &self.reason {
            Some(reason) if self.outcome != "completed" => {
                format!("nothing sent ({}): {reason}", self.outcome)
            }
            _ => format!(
                "notification pass: {} due, {} sent, {} failed, {} skipped, {} claimed by another pass",
                self.due, self.sent, self.failed, self.skipped, self.claimed_elsewhere
            ),
        }
    }

    fn record(&self) -> PassRecord {
        PassRecord {
            started_at: self.started_at,
            finished_at: self.finished_at,
            cause: self.cause.to_string(),
            outcome: self.outcome.to_string(),
            due: self.due,
            sent: self.sent,
            failed: self.failed,
            skipped: self.skipped,
            detail: serde_json::json!({
                "reason": self.reason,
                "claimed_elsewhere": self.claimed_elsewhere,
                "unused_warned": self.unused_warned,
                "unused_revoked": self.unused_revoked,
                "unused_held": self.unused_held,
                "skipped_tokens": self.skipped_tokens,
                "failures": self.failures,
            }),
        }
    }
}

/// Why settings send nothing: (outcome, reason).
pub fn idle_reason(settings: &NotifySettings) -> Option<(&'static str, &'static str)> {
    if !settings.enabled {
        return Some((
            "disabled",
            "expiry notifications are disabled; enable them in the settings (notifications.enabled)",
        ));
    }
    if settings.smtp_server_id.is_none() {
        return Some((
            "no_smtp_server",
            "no SMTP server is chosen; create one under /patgate/api/v1/smtp-servers and set notifications.smtp_server_id",
        ));
    }
    None
}

/// What one send came to.
enum Outcome {
    Sent,
    Failed(String),
    ClaimedElsewhere,
}

impl Notifier {
    /// Runs one pass as of `now` (Unix seconds; the real clock except in tests) and
    /// records it. Errors are database errors; failed sends are in the report.
    pub async fn run_pass(&self, now: i64, cause: Cause) -> Result<PassReport, StoreError> {
        let clock = Instant::now();
        let pass_id = pass_id();
        let mut report = PassReport {
            started_at: now,
            finished_at: now,
            cause: cause.as_str(),
            outcome: "completed",
            reason: None,
            due: 0,
            sent: 0,
            failed: 0,
            skipped: 0,
            claimed_elsewhere: 0,
            skipped_tokens: Vec::new(),
            failures: Vec::new(),
            unused_warned: 0,
            unused_revoked: 0,
            unused_held: 0,
            retry_at: None,
        };
        let settings = self.store.notify_settings().await?;
        let channels = self.store.channels(None).await?;
        let mailer = match self.prepare(&settings).await? {
            Err((outcome, reason)) => {
                report.outcome = outcome;
                report.reason = Some(reason);
                None
            }
            Ok((mailer, templates)) => {
                for (day, from, until) in windows(&settings.reminder_days, now) {
                    let window = Window {
                        which: Reminder {
                            kind: KIND_EXPIRY,
                            reminder: day,
                        },
                        from,
                        until,
                    };
                    self.send_due(
                        window,
                        &mailer,
                        &templates,
                        &channels,
                        &pass_id,
                        now,
                        &mut report,
                    )
                    .await?;
                }
                Some(mailer)
            }
        };
        let mailer_ready = mailer.is_some();
        // Unused tokens are revoked whether or not e-mail can be sent; while it is set
        // up (even if failing now), an owner with an address is warned first.
        if let Some(days) = settings.unused_token_revoke_days {
            let mail_set_up = idle_reason(&settings).is_none();
            let retire = super::unused::Retire {
                days,
                mailer,
                mail_set_up,
            };
            self.retire_unused(retire, &channels, &pass_id, now, &mut report)
                .await?;
        }
        // Channels whose delivery failed while the e-mail went out.
        self.retry_channels(
            &channels,
            mailer_ready,
            settings.unused_token_revoke_days,
            &pass_id,
            now,
        )
        .await?;
        let lease = self.settings().claim_lease.as_secs() as i64;
        report.retry_at = self
            .store
            .newest_held_claim(now - lease)
            .await?
            .map(|claimed_at| claimed_at + lease + 1);
        report.finished_at = now + clock.elapsed().as_secs() as i64;
        self.metrics.local().notify_pass.observe(clock.elapsed());
        self.store.record_pass(&report.record()).await?;
        match report.outcome {
            "completed" => tracing::info!(
                due = report.due,
                sent = report.sent,
                failed = report.failed,
                skipped = report.skipped,
                cause = report.cause,
                "notification pass finished"
            ),
            // Off by choice (the default): nothing an operator must act on.
            "disabled" => tracing::debug!(
                cause = report.cause,
                "notification pass sent nothing: {}",
                report.reason.as_deref().unwrap_or("")
            ),
            outcome => tracing::info!(
                outcome,
                cause = report.cause,
                "notification pass sent nothing: {}",
                report.reason.as_deref().unwrap_or("")
            ),
        }
        Ok(report)
    }

    /// The transport and templates, or why there are none.
    async fn prepare(
        &self,
        settings: &NotifySettings,
    ) -> Result<Result<(Arc<Mailer>, Arc<Templates>), (&'static str, String)>, StoreError> {
        if let Some((outcome, reason)) = idle_reason(settings) {
            return Ok(Err((outcome, reason.to_string())));
        }
        let id = settings.smtp_server_id.clone().unwrap_or_default();
        let item = match self.store.smtp_server(&id).await {
            Ok(item) => item,
            Err(StoreError::NoSuchSmtpServer(_)) => {
                return Ok(Err((
                    "no_smtp_server",
                    format!("the chosen SMTP server {id:?} does not exist; choose another"),
                )))
            }
            Err(e) => return Err(e),
        };
        let mailer = match self.mailer(&item) {
            Ok(mailer) => mailer,
            Err(e) => {
                return Ok(Err((
                    "smtp_server_unusable",
                    format!("SMTP server {id:?}: {}", e.message),
                )))
            }
        };
        let templates =
            match Templates::prepare(settings.subject.clone(), settings.body.clone()).await {
                Ok(t) => t,
                Err(e) => return Ok(Err(("template_error", e))),
            };
        Ok(Ok((Arc::new(mailer), Arc::new(templates))))
    }

    #[expect(clippy::too_many_arguments, reason = "one reminder window of one pass")]
    async fn send_due(
        &self,
        window: Window,
        mailer: &Arc<Mailer>,
        templates: &Arc<Templates>,
        channels: &[ChannelRecord],
        pass_id: &str,
        now: i64,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let stale_before = now - self.settings().claim_lease.as_secs() as i64;
        let mut tasks: JoinSet<(DueToken, Outcome)> = JoinSet::new();
        let mut after: Option<(i64, String)> = None;
        loop {
            let batch = self
                .store
                .due_notifications(
                    window.which.reminder,
                    window.from,
                    window.until,
                    stale_before,
                    pass_id,
                    after.as_ref().map(|(at, id)| (*at, id.as_str())),
                    BATCH,
                )
                .await?;
            let full = batch.len() as i64 == BATCH;
            after = batch.last().map(|t| (t.expires_at, t.token_id.clone()));
            for due in batch {
                report.due += 1;
                let to = recipients_of(
                    &self.store,
                    &due.username,
                    due.email.as_deref(),
                    true,
                    channels,
                )
                .await;
                if to.is_empty() {
                    tracing::warn!(
                        user = %due.username,
                        token_id = %due.token_id,
                        "expiry notification skipped: no e-mail address known for the user"
                    );
                    report.skipped += 1;
                    if report.skipped_tokens.len() < LISTED {
                        report.skipped_tokens.push(TokenIssue {
                            token_id: due.token_id,
                            username: due.username,
                            reason: "no e-mail address is known for this user; they can set one with PUT /patgate/api/v1/me, or SSO can provide it".into(),
                        });
                    }
                    continue;
                }
                while tasks.len() >= self.settings().concurrency {
                    if let Some(done) = tasks.join_next().await {
                        tally(done, report);
                    }
                }
                let vars = self.variables(&due, to.email.as_deref().unwrap_or(""), now);
                let job = Job {
                    store: self.store.clone(),
                    mailer: mailer.clone(),
                    templates: templates.clone(),
                    metrics: self.metrics.clone(),
                    deliverer: self.channels.clone(),
                    message: expiring_message(&vars, due.expires_at),
                    vars,
                    which: window.which,
                    pass_id: pass_id.to_string(),
                    now,
                    stale_before,
                };
                tasks.spawn(async move {
                    let sent = job.run(&due.token_id, to).await;
                    (due, sent)
                });
            }
            if !full {
                break;
            }
        }
        while let Some(done) = tasks.join_next().await {
            tally(done, report);
        }
        Ok(())
    }

    pub(super) fn variables(&self, due: &DueToken, email: &str, now: i64) -> Variables {
        let expires =
            jiff::Timestamp::from_second(due.expires_at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let local = expires
            .to_zoned(self.settings().time_zone.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string();
        let left = due.expires_at - now;
        Variables {
            user: due.username.clone(),
            email: email.to_string(),
            token_name: due.name.clone(),
            token_id: due.token_id.clone(),
            expires_at_utc: crate::core::time::rfc3339(due.expires_at),
            expires_at_local: local,
            time_zone: self.zone_name(),
            days_left: (left + 86_399) / 86_400,
            tokens_url: match self.settings().public_url.as_str() {
                "" => String::new(),
                base => format!("{base}/patgate/"),
            },
        }
    }
}

fn tally(done: Result<(DueToken, Outcome), tokio::task::JoinError>, report: &mut PassReport) {
    match done {
        Ok((_, Outcome::Sent)) => report.sent += 1,
        Ok((_, Outcome::ClaimedElsewhere)) => report.claimed_elsewhere += 1,
        Ok((due, Outcome::Failed(reason))) => {
            report.failed += 1;
            if report.failures.len() < LISTED {
                report.failures.push(TokenIssue {
                    token_id: due.token_id,
                    username: due.username,
                    reason,
                });
            }
        }
        Err(e) => {
            report.failed += 1;
            tracing::warn!(error = %e, "a notification task failed");
        }
    }
}

/// The reminder windows of `days` (any order) as of `now`: (day, from, until), each
/// holding the expiries in `(from, until]`, largest first, not overlapping.
pub fn windows(days: &[i64], now: i64) -> Vec<(i64, i64, i64)> {
    let mut days = days.to_vec();
    days.sort_unstable_by(|a, b| b.cmp(a));
    days.dedup();
    (0..days.len())
        .map(|i| {
            let lower = days.get(i + 1).copied().unwrap_or(0);
            (days[i], now + lower * DAY, now + days[i] * DAY)
        })
        .collect()
}

/// One reminder's window of expiries, `(from, until]`.
#[derive(Clone, Copy)]
struct Window {
    which: Reminder,
    from: i64,
    until: i64,
}

/// What channels are told of a reminder.
pub(super) fn expiring_message(vars: &Variables, expires_at: i64) -> Message {
    Message {
        event: "token.expiring",
        token_id: vars.token_id.clone(),
        token_name: vars.token_name.clone(),
        username: vars.user.clone(),
        expires_at: Some(crate::core::time::rfc3339(expires_at)),
        days_left: Some(vars.days_left),
        text: format!(
            "Personal access token \"{}\" of {} expires in {} day{} ({}).",
            vars.token_name,
            vars.user,
            vars.days_left,
            if vars.days_left == 1 { "" } else { "s" },
            vars.expires_at_utc
        ),
    }
}

/// One token's reminder: everything the task needs, owned.
struct Job {
    store: Store,
    mailer: Arc<Mailer>,
    templates: Arc<Templates>,
    metrics: Arc<Metrics>,
    deliverer: Arc<Deliverer>,
    message: Message,
    vars: Variables,
    which: Reminder,
    pass_id: String,
    now: i64,
    stale_before: i64,
}

impl Job {
    async fn run(self, token_id: &str, to: Recipients) -> Outcome {
        let email = to.email.as_deref().unwrap_or("");
        match self
            .store
            .claim_notification(
                token_id,
                self.which,
                email,
                &self.pass_id,
                self.now,
                self.stale_before,
            )
            .await
        {
            Ok(true) => {}
            Ok(false) => return Outcome::ClaimedElsewhere,
            Err(e) => return Outcome::Failed(format!("could not claim in the database: {e}")),
        }
        // Channels are told by the pass that holds the claim, each once.
        self.deliverer.deliver_once(
            &to.channels,
            &self.message,
            Once {
                which: self.which,
                pass_id: self.pass_id.clone(),
                now: self.now,
                stale_before: self.stale_before,
            },
        );
        let outcome = match self.templates.render_apart(&self.vars).await {
            Err(e) => Err(e),
            Ok(_) if email.is_empty() => Ok(()),
            Ok(rendered) => {
                let sending = Instant::now();
                let sent = self
                    .mailer
                    .send(&Mail {
                        to: email.to_string(),
                        subject: rendered.subject,
                        html: rendered.html,
                        text: rendered.text,
                    })
                    .await
                    .map_err(|e| e.message);
                self.metrics.local().smtp_send.observe(sending.elapsed());
                sent
            }
        };
        let counters = self.metrics.local();
        match &outcome {
            Ok(()) => counters.notify_sent.fetch_add(1, Ordering::Relaxed),
            Err(_) => counters.notify_failed.fetch_add(1, Ordering::Relaxed),
        };
        let error = outcome.as_ref().err().map(String::as_str);
        if let Some(error) = error {
            tracing::warn!(user = %self.vars.user, token_id, error, "expiry notification failed; the next pass retries");
        }
        match self
            .store
            .finish_notification(token_id, self.which, &self.pass_id, self.now, error)
            .await
        {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                token_id,
                "notification claim was taken over by another pass before its outcome was recorded"
            ),
            // The claim stays; after the lease another pass retries (the e-mail may
            // then go out twice).
            Err(e) => {
                tracing::warn!(token_id, error = %e, "could not record a notification's outcome")
            }
        }
        match outcome {
            Ok(()) => Outcome::Sent,
            Err(reason) => Outcome::Failed(reason),
        }
    }
}

pub(super) fn pass_id() -> String {
    let mut bytes = [0u8; 9];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
