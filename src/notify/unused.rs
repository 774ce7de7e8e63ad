//! Unused tokens retired, in the daily pass: a token unused for
//! `unused_token_revoke_days` − 7 days gets one warning, and at the full count it is
//! revoked, audited as `token.revoked_unused`, and its owner told. E-mail and channels
//! as for reminders ([`super::recipients`]); warnings go `notify.concurrency` at a time.
//!
//! The daily pass, not the once-a-minute housekeeping: the setting counts whole days,
//! the pass already holds the SMTP transport, the claims that keep a warning to one
//! e-mail across replicas, and the "now" tests move; and it reads no token table
//! every minute. A warned token always has its 7 days: it is revoked no sooner than 7
//! days after the warning went out. A token is revoked only once its warning went
//! out, unless its owner cannot be warned at all (no address or no e-mail set up,
//! and no channel): while the warning fails it is retried and the token kept.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::channels::{Deliverer, Message, Once};
use super::pass::{PassReport, BATCH};
use super::recipients::{recipients_of, Recipients};
use super::smtp::{Mail, Mailer};
use super::Notifier;
use crate::core::text::escape_html;
use crate::core::time::rfc3339;
use crate::store::{
    AuditEvent, ChannelRecord, Reminder, Store, StoreError, UnusedToken, KIND_UNUSED,
    UNUSED_WARNING_DAYS,
};

const DAY: i64 = 86_400;

/// How unused tokens are retired in a pass.
pub(super) struct Retire {
    /// `unused_token_revoke_days`.
    pub days: i64,
    /// `None`: no e-mail can be sent now (channels still are).
    pub mailer: Option<Arc<Mailer>>,
    /// Whether e-mail is set up (enabled, an SMTP server chosen), even if it fails
    /// now: an owner with an address can then be warned, and is before revocation.
    pub mail_set_up: bool,
}

impl Notifier {
    /// Warns the owners of tokens nearing `days` unused, and revokes those that
    /// reached it whose warning went out, or whose owner cannot be warned at all.
    pub(super) async fn retire_unused(
        &self,
        retire: Retire,
        channels: &[ChannelRecord],
        pass_id: &str,
        now: i64,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let Retire {
            days,
            mailer,
            mail_set_up,
        } = retire;
        let stale_before = now - self.settings().claim_lease.as_secs() as i64;
        let warn_before = now - (days - UNUSED_WARNING_DAYS) * DAY;
        let mut tasks: JoinSet<Result<bool, StoreError>> = JoinSet::new();
        let mut after = String::new();
        loop {
            let batch = self
                .store
                .due_unused_warnings(warn_before, now, stale_before, pass_id, &after, BATCH)
                .await?;
            let Some(last) = batch.last() else { break };
            after = last.token_id.clone();
            for token in batch {
                let to = self
                    .unused_recipients(&token, mailer.is_some(), channels)
                    .await;
                if to.is_empty() {
                    continue;
                }
                while tasks.len() >= self.settings().concurrency {
                    if let Some(done) = tasks.join_next().await {
                        tally(done, report)?;
                    }
                }
                let warning = Warning {
                    store: self.store.clone(),
                    deliverer: self.channels.clone(),
                    mailer: mailer.clone(),
                    pass_id: pass_id.to_string(),
                    days,
                    now,
                    stale_before,
                };
                tasks.spawn(warning.send(token, to));
            }
        }
        while let Some(done) = tasks.join_next().await {
            tally(done, report)?;
        }
        let revoke_before = now - days * DAY;
        let warned_before = now - UNUSED_WARNING_DAYS * DAY;
        let mut after = String::new();
        loop {
            let batch = self
                .store
                .due_unused_revocations(revoke_before, warned_before, now, &after, BATCH)
                .await?;
            let Some((last, _)) = batch.last() else {
                break;
            };
            after = last.token_id.clone();
            for (token, warning_done) in batch {
                // The owner is warned before the token goes: one whose warning has not
                // gone out (it is retried above) keeps the token, unless no message
                // can reach them at all (no address, or no e-mail set up, and no
                // channel).
                if !warning_done
                    && !self
                        .unused_recipients(&token, mail_set_up, channels)
                        .await
                        .is_empty()
                {
                    report.unused_held += 1;
                    continue;
                }
                // Of several replicas, the one whose update revoked it tells the owner.
                if !self
                    .store
                    .revoke_unused(&token.token_id, token.since, now)
                    .await?
                {
                    continue;
                }
                report.unused_revoked += 1;
                self.store
                    .audit_or_log(AuditEvent {
                        action: "token.revoked_unused",
                        username: Some(token.username.clone()),
                        token_id: Some(token.token_id.clone()),
                        detail: Some(serde_json::json!({
                            "name": token.name,
                            "unused_since": rfc3339(token.since),
                            "unused_token_revoke_days": days,
                        })),
                        ..AuditEvent::default()
                    })
                    .await;
                let to = self
                    .unused_recipients(&token, mailer.is_some(), channels)
                    .await;
                self.channels
                    .deliver(&to.channels, &revoked_message(&token, days));
                if let (Some(mailer), Some(email)) = (&mailer, &to.email) {
                    if let Err(e) = mailer.send(&revoked_mail(&token, email, days)).await {
                        tracing::warn!(token_id = %token.token_id, error = %e.message, "could not e-mail the owner of a token revoked as unused");
                    }
                }
            }
        }
        Ok(())
    }

    async fn unused_recipients(
        &self,
        token: &UnusedToken,
        can_mail: bool,
        channels: &[ChannelRecord],
    ) -> Recipients {
        recipients_of(
            &self.store,
            &token.username,
            token.email.as_deref(),
            can_mail,
            channels,
        )
        .await
    }
}

fn tally(
    done: Result<Result<bool, StoreError>, tokio::task::JoinError>,
    report: &mut PassReport,
) -> Result<(), StoreError> {
    match done {
        Ok(Ok(true)) => report.unused_warned += 1,
        Ok(Ok(false)) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => tracing::warn!(error = %e, "an unused-token warning task failed"),
    }
    Ok(())
}

/// One unused token's warning: everything its task needs, owned.
struct Warning {
    store: Store,
    deliverer: Arc<Deliverer>,
    mailer: Option<Arc<Mailer>>,
    pass_id: String,
    days: i64,
    now: i64,
    stale_before: i64,
}

impl Warning {
    /// Claims, sends and records; `true` when the warning went out.
    async fn send(self, token: UnusedToken, to: Recipients) -> Result<bool, StoreError> {
        let which = Reminder {
            kind: KIND_UNUSED,
            reminder: token.since,
        };
        let email = to.email.as_deref().unwrap_or("");
        if !self
            .store
            .claim_notification(
                &token.token_id,
                which,
                email,
                &self.pass_id,
                self.now,
                self.stale_before,
            )
            .await?
        {
            return Ok(false);
        }
        let revoke_at = (token.since + self.days * DAY).max(self.now + UNUSED_WARNING_DAYS * DAY);
        let left = (revoke_at - self.now + DAY - 1) / DAY;
        self.deliverer.deliver_once(
            &to.channels,
            &warning_message(&token, left, revoke_at),
            Once {
                which,
                pass_id: self.pass_id.clone(),
                now: self.now,
                stale_before: self.stale_before,
            },
        );
        let sent = match (&self.mailer, &to.email) {
            (Some(mailer), Some(email)) => mailer
                .send(&warning_mail(&token, email, self.days, revoke_at))
                .await
                .map_err(|e| e.message),
            _ => Ok(()),
        };
        if let Err(error) = &sent {
            tracing::warn!(token_id = %token.token_id, error, "unused-token warning failed; the next pass retries");
        }
        self.store
            .finish_notification(
                &token.token_id,
                which,
                &self.pass_id,
                self.now,
                sent.as_ref().err().map(String::as_str),
            )
            .await?;
        Ok(sent.is_ok())
    }
}

pub(super) fn warning_message(token: &UnusedToken, left: i64, revoke_at: i64) -> Message {
    Message {
        event: "token.unused_warning",
        token_id: token.token_id.clone(),
        token_name: token.name.clone(),
        username: token.username.clone(),
        expires_at: Some(rfc3339(revoke_at)),
        days_left: Some(left),
        text: format!(
            "Personal access token \"{}\" of {} has not been used since {} and will be revoked on {} unless it is used.",
            token.name,
            token.username,
            rfc3339(token.since),
            rfc3339(revoke_at)
        ),
    }
}

fn revoked_message(token: &UnusedToken, days: i64) -> Message {
    Message {
        event: "token.revoked_unused",
        token_id: token.token_id.clone(),
        token_name: token.name.clone(),
        username: token.username.clone(),
        expires_at: None,
        days_left: None,
        text: format!(
            "Personal access token \"{}\" of {} was revoked: unused for {days} days.",
            token.name, token.username
        ),
    }
}

fn warning_mail(token: &UnusedToken, to: &str, days: i64, revoke_at: i64) -> Mail {
    let since = rfc3339(token.since);
    let on = rfc3339(revoke_at);
    Mail {
        to: to.to_string(),
        subject: format!(
            "Your personal access token \"{}\" is unused and will be revoked",
            token.name
        ),
        text: format!(
            "Your personal access token \"{name}\" has not been used since {since}. Tokens \
             unused for {days} days are revoked: this one will be on {on} unless it is \
             used before then.\n\nIf you no longer need it, revoke it yourself on the \
             Access tokens page.\n",
            name = token.name
        ),
        html: format!(
            "<p>Your personal access token <b>{name}</b> has not been used since {since}. \
             Tokens unused for {days} days are revoked: this one will be on {on} unless \
             it is used before then.</p><p>If you no longer need it, revoke it yourself on \
             the Access tokens page.</p>",
            name = escape_html(&token.name)
        ),
    }
}

fn revoked_mail(token: &UnusedToken, to: &str, days: i64) -> Mail {
    Mail {
        to: to.to_string(),
        subject: format!(
            "Personal access token \"{}\" revoked: unused for {days} days",
            token.name
        ),
        text: format!(
            "Your personal access token \"{name}\" was revoked because it had not been used \
             for {days} days. Anything that still uses it will now be refused.\n\nCreate a \
             new token on the Access tokens page if you need one.\n",
            name = token.name
        ),
        html: format!(
            "<p>Your personal access token <b>{name}</b> was revoked because it had not been \
             used for {days} days. Anything that still uses it will now be refused.</p>\
             <p>Create a new token on the Access tokens page if you need one.</p>",
            name = escape_html(&token.name)
        ),
    }
}
