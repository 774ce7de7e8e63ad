//! Expiry notifications: the administrators' settings, the tokens due for a reminder,
//! the per-token, per-reminder claim that makes each message go out once, and the
//! record of passes.
//!
//! Exactly once: a pass claims a token's row for one reminder before sending (insert, or take over a
//! failed row or a claim older than the lease, in one conditional statement), and only
//! the pass holding the claim may mark it sent or failed. Two passes on two replicas
//! never both hold it; a pass that dies between claim and send leaves the claim to
//! expire, after which the next pass retries (the e-mail may then go out twice, if the
//! first attempt reached the server before the crash).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};

/// What administrators chose; templates `None` mean the built-in ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifySettings {
    pub enabled: bool,
    /// Days before expiry a reminder goes out, largest first, never empty.
    pub reminder_days: Vec<i64>,
    /// Days without use after which a token is revoked; `None`: never.
    pub unused_token_revoke_days: Option<i64>,
    pub smtp_server_id: Option<String>,
    pub subject: Option<String>,
    pub body: Option<String>,
}

impl NotifySettings {
    /// The widest reminder window: what `days_before` meant when there was one
    /// reminder, and how early the proxy's expiry warning header starts.
    pub fn days_before(&self) -> i64 {
        self.reminder_days.iter().copied().max().unwrap_or(7)
    }
}

/// The kind of a notification row: an expiry reminder (one per reminder day) or the
/// warning before an unused token is revoked (one per stretch of non-use).
pub const KIND_EXPIRY: &str = "expiry";
pub const KIND_UNUSED: &str = "unused";

/// Which message a claim is for: its kind and reminder (the reminder day, or for
/// `unused` the last use the warning is about).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reminder {
    pub kind: &'static str,
    pub reminder: i64,
}

/// A live token whose expiry falls in the window and that has no e-mail yet.
#[derive(Debug, Clone)]
pub struct DueToken {
    pub token_id: String,
    pub username: String,
    pub name: String,
    pub expires_at: i64,
    /// `None`: the user has no known e-mail address.
    pub email: Option<String>,
}

/// Statuses a notification row can have.
pub const NOTIFICATION_STATUSES: [&str; 3] = ["claimed", "sent", "failed"];

/// One token's notification outcome, as administrators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NotificationRecord {
    pub token_id: String,
    /// `expiry` or `unused`.
    pub kind: String,
    /// The reminder day (`expiry`), or the last use warned about (`unused`).
    pub reminder: i64,
    pub username: String,
    pub token_name: String,
    pub email: String,
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub claimed_at: i64,
    pub sent_at: Option<i64>,
    pub updated_at: i64,
}

/// One pass, as recorded when it finished.
#[derive(Debug, Clone)]
pub struct PassRecord {
    pub started_at: i64,
    pub finished_at: i64,
    pub cause: String,
    pub outcome: String,
    pub due: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub detail: serde_json::Value,
}

impl Store {
    pub async fn notify_settings(&self) -> Result<NotifySettings, StoreError> {
        let row = sqlx::query(
            "SELECT CASE WHEN enabled THEN 1 ELSE 0 END AS enabled, days_before, \
             reminder_days, unused_token_revoke_days, \
             smtp_server_id, subject, body FROM notify_settings WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(NotifySettings {
                enabled: false,
                reminder_days: vec![7],
                unused_token_revoke_days: None,
                smtp_server_id: None,
                subject: None,
                body: None,
            });
        };
        let days_before: i64 = row.try_get("days_before")?;
        let reminder_days = row
            .try_get::<Option<String>, _>("reminder_days")?
            .and_then(|text| serde_json::from_str::<Vec<i64>>(&text).ok())
            .filter(|days| !days.is_empty())
            .unwrap_or_else(|| vec![days_before]);
        Ok(NotifySettings {
            enabled: row.try_get::<i64, _>("enabled")? != 0,
            reminder_days,
            unused_token_revoke_days: row.try_get("unused_token_revoke_days")?,
            smtp_server_id: row.try_get("smtp_server_id")?,
            subject: row.try_get("subject")?,
            body: row.try_get("body")?,
        })
    }

    pub async fn save_notify_settings(
        &self,
        settings: &NotifySettings,
        by: &str,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE notify_settings SET enabled = $1, days_before = $2, smtp_server_id = $3, \
             subject = $4, body = $5, updated_at = $6, updated_by = $7, reminder_days = $8, \
             unused_token_revoke_days = $9 WHERE id = 1",
        )
        .bind(settings.enabled)
        .bind(settings.days_before())
        .bind(settings.smtp_server_id.as_deref())
        .bind(settings.subject.as_deref())
        .bind(settings.body.as_deref())
        .bind(crate::core::time::now())
        .bind(by)
        .bind(serde_json::to_string(&settings.reminder_days).unwrap_or_default())
        .bind(settings.unused_token_revoke_days)
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(()),
            // The item was deleted between the caller's check and this write.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Err(
                StoreError::NoSuchSmtpServer(settings.smtp_server_id.clone().unwrap_or_default()),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// Up to `limit` tokens that expire in `(from, until]`, are live, belong to an
    /// enabled user and are not notified for reminder `day`: no row, a failed row from
    /// another pass, or a claim taken before `stale_before`. Ordered by (expiry, id),
    /// starting after `after` (keyset paging).
    #[expect(clippy::too_many_arguments, reason = "one keyset page of one window")]
    pub async fn due_notifications(
        &self,
        day: i64,
        from: i64,
        until: i64,
        stale_before: i64,
        pass: &str,
        after: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<DueToken>, StoreError> {
        // One lower bound only, or SQLite ranges the index from the window's start on
        // every page. Expiries are whole seconds: "after from" is "from from + 1".
        let (after_at, after_id) = match after {
            Some((at, id)) if at > from => (at, id),
            _ => (from + 1, ""),
        };
        let mut tx = self.pool.begin().await?;
        if self.backend == super::Backend::Postgres {
            // The window is read page by page in index order; without statistics on a
            // freshly filled table the planner would sort the whole remaining window
            // for every page instead (quadratic: 7 s for 80,000 due tokens).
            for setting in [
                "SET LOCAL enable_sort = off",
                "SET LOCAL enable_bitmapscan = off",
                "SET LOCAL max_parallel_workers_per_gather = 0",
            ] {
                sqlx::query(setting).execute(&mut *tx).await?;
            }
        }
        let rows = sqlx::query(
            "SELECT t.id, t.username, t.name, t.expires_at, u.email \
             FROM tokens t \
             JOIN users u ON u.username = t.username \
             LEFT JOIN notifications n ON n.token_id = t.id AND n.kind = 'expiry' \
             AND n.reminder = $7 \
             WHERE t.revoked_at IS NULL AND t.replaced_by IS NULL \
             AND (t.expiration IS NULL OR t.expiration <> 'exchange') \
             AND t.expires_at >= $4 AND (t.expires_at > $4 OR t.id > $5) \
             AND t.expires_at <= $1 \
             AND u.disabled = FALSE \
             AND (n.token_id IS NULL \
                  OR (n.status = 'failed' AND n.claimed_by <> $3) \
                  OR (n.status = 'claimed' AND n.claimed_at < $2)) \
             ORDER BY t.expires_at, t.id LIMIT $6",
        )
        .bind(until)
        .bind(stale_before)
        .bind(pass)
        .bind(after_at)
        .bind(after_id)
        .bind(limit)
        .bind(day)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(DueToken {
                    token_id: row.try_get("id")?,
                    username: row.try_get("username")?,
                    name: row.try_get("name")?,
                    expires_at: row.try_get("expires_at")?,
                    email: row
                        .try_get::<Option<String>, _>("email")?
                        .filter(|e| !e.trim().is_empty()),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Claims a token's notification of `which` for `pass`; `false` when another pass
    /// holds it or it was sent. One statement, so concurrent passes cannot both win.
    /// `email` is `""` when the message goes to channels only.
    pub async fn claim_notification(
        &self,
        token_id: &str,
        which: Reminder,
        email: &str,
        pass: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO notifications \
             (token_id, kind, reminder, status, email, attempts, claimed_by, claimed_at, \
             updated_at) VALUES ($1, $6, $7, 'claimed', $2, 1, $3, $4, $4) \
             ON CONFLICT (token_id, kind, reminder) DO UPDATE SET status = 'claimed', email = $2, \
             attempts = notifications.attempts + 1, claimed_by = $3, claimed_at = $4, \
             updated_at = $4 \
             WHERE (notifications.status = 'failed' AND notifications.claimed_by <> $3) \
             OR (notifications.status = 'claimed' AND notifications.claimed_at < $5)",
        )
        .bind(token_id)
        .bind(email)
        .bind(pass)
        .bind(now)
        .bind(stale_before)
        .bind(which.kind)
        .bind(which.reminder)
        .execute(&self.pool)
        .await;
        claimed(done)
    }

    /// When the newest claim still held (`claimed`) and taken at or after `since` was
    /// taken: a pass under way, or one that died before recording its outcome.
    pub async fn newest_held_claim(&self, since: i64) -> Result<Option<i64>, StoreError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(claimed_at) FROM notifications \
             WHERE status = 'claimed' AND claimed_at >= $1",
        )
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(at)
    }

    /// Records the outcome of a claimed notification: `error` `None` means sent. Only
    /// the pass holding the claim can; returns whether it still did.
    pub async fn finish_notification(
        &self,
        token_id: &str,
        which: Reminder,
        pass: &str,
        now: i64,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = match error {
            None => sqlx::query(
                "UPDATE notifications SET status = 'sent', sent_at = $3, last_error = NULL, \
                 updated_at = $3 WHERE token_id = $1 AND claimed_by = $2 AND status = 'claimed' \
                 AND kind = $4 AND reminder = $5",
            )
            .bind(token_id)
            .bind(pass)
            .bind(now)
            .bind(which.kind)
            .bind(which.reminder),
            Some(error) => sqlx::query(
                "UPDATE notifications SET status = 'failed', last_error = $4, updated_at = $3 \
                 WHERE token_id = $1 AND claimed_by = $2 AND status = 'claimed' \
                 AND kind = $5 AND reminder = $6",
            )
            .bind(token_id)
            .bind(pass)
            .bind(now)
            .bind(error)
            .bind(which.kind)
            .bind(which.reminder),
        }
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The most recent notification outcomes, newest first, optionally of one status.
    pub async fn notifications(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<NotificationRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT n.token_id, n.kind, n.reminder, t.username, t.name, n.email, n.status, n.attempts, \
             n.last_error, n.claimed_at, n.sent_at, n.updated_at \
             FROM notifications n JOIN tokens t ON t.id = n.token_id \
             WHERE ($1 IS NULL OR n.status = $1) \
             ORDER BY n.updated_at DESC, n.token_id LIMIT $2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NotificationRecord {
                    token_id: row.try_get("token_id")?,
                    kind: row.try_get("kind")?,
                    reminder: row.try_get("reminder")?,
                    username: row.try_get("username")?,
                    token_name: row.try_get("name")?,
                    email: row.try_get("email")?,
                    status: row.try_get("status")?,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    claimed_at: row.try_get("claimed_at")?,
                    sent_at: row.try_get("sent_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// How many notification rows have each status.
    pub async fn notification_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM notifications GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("status")?, row.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    pub async fn record_pass(&self, pass: &PassRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO notify_passes \
             (started_at, finished_at, cause, outcome, due, sent, failed, skipped, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(pass.started_at)
        .bind(pass.finished_at)
        .bind(&pass.cause)
        .bind(&pass.outcome)
        .bind(pass.due)
        .bind(pass.sent)
        .bind(pass.failed)
        .bind(pass.skipped)
        .bind(pass.detail.to_string())
        .execute(&self.pool)
        .await?;
        // Keep the last year of daily passes, and no more.
        sqlx::query(
            "DELETE FROM notify_passes WHERE id NOT IN \
             (SELECT id FROM notify_passes ORDER BY started_at DESC, id DESC LIMIT 400)",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The pass that started last, by any replica or the command line.
    pub async fn last_pass(&self) -> Result<Option<PassRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT started_at, finished_at, cause, outcome, due, sent, failed, skipped, detail \
             FROM notify_passes ORDER BY started_at DESC, id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(pass_record)
            .transpose()
            .map_err(StoreError::from)
    }
}

fn pass_record(row: &AnyRow) -> Result<PassRecord, sqlx::Error> {
    let detail: Option<String> = row.try_get("detail")?;
    Ok(PassRecord {
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        cause: row.try_get("cause")?,
        outcome: row.try_get("outcome")?,
        due: row.try_get("due")?,
        sent: row.try_get("sent")?,
        failed: row.try_get("failed")?,
        skipped: row.try_get("skipped")?,
        detail: detail
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or(serde_json::Value::Null),
    })
}

/// Whether a conditional claim (an insert, or an update of a row it may take over)
/// won: one row written. A row it refers to deleted meanwhile (the token, the
/// channel) is no claim.
pub(super) fn claimed(
    done: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
) -> Result<bool, StoreError> {
    match done {
        Ok(d) => Ok(d.rows_affected() == 1),
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}
