//! Notification channels (webhook, Slack, Teams) and the record of each delivery
//! attempt. The secret is held sealed ([`SealedPassword`]) and the row type keeps it
//! apart from what listings show, so no answer or log can carry it. Each channel's
//! delivery of a token's reminder is claimed on its own, as the e-mail is
//! ([`Store::claim_channel_send`]).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Reminder, SealedPassword, Store, StoreError};

/// The kinds of channel, as the API names them.
pub const CHANNEL_KINDS: [&str; 3] = ["webhook", "slack", "teams"];

/// Delivery attempts kept per channel.
const DELIVERIES_KEPT: i64 = 1_000;

/// One channel.
#[derive(Debug, Clone)]
pub struct ChannelRecord {
    pub id: String,
    /// `None`: an administrators' channel, for every token's messages.
    pub owner: Option<String>,
    pub kind: String,
    pub url: String,
    /// The signing secret of a `webhook`, sealed under the channel's id.
    pub secret: Option<SealedPassword>,
    pub created_by: String,
    /// Made by an administrator (every administrators' channel is): it may post to
    /// internal addresses, which users' channels may not.
    pub made_by_admin: bool,
    pub created_at: i64,
    /// `delivered` or `failed`; `None` before the first delivery.
    pub last_status: Option<String>,
    pub last_at: Option<i64>,
    pub last_error: Option<String>,
    /// The first of the failures in a row; `None` while deliveries succeed.
    pub failing_since: Option<i64>,
}

/// A channel's delivery of a token's reminder (or warning) to retry: it failed, or
/// was left claimed by a process that died, while the e-mail went out.
#[derive(Debug, Clone)]
pub struct ChannelRetry {
    pub channel_id: String,
    pub token_id: String,
    /// The reminder day (`expiry`), or the last use warned about (`unused`).
    pub reminder: i64,
    pub username: String,
    pub name: String,
    pub expires_at: Option<i64>,
    /// When the e-mail went out.
    pub sent_at: i64,
}

/// A channel to create.
pub struct NewChannel<'a> {
    pub id: &'a str,
    pub owner: Option<&'a str>,
    pub kind: &'a str,
    pub url: &'a str,
    pub secret: Option<&'a SealedPassword>,
    pub created_by: &'a str,
    pub made_by_admin: bool,
    pub now: i64,
}

const COLUMNS: &str = "id, owner, kind, url, secret_sealed, created_by, \
     CASE WHEN made_by_admin THEN 1 ELSE 0 END AS made_by_admin, created_at, last_status, \
     last_at, last_error, failing_since";

fn channel(row: &AnyRow) -> Result<ChannelRecord, sqlx::Error> {
    Ok(ChannelRecord {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        kind: row.try_get("kind")?,
        url: row.try_get("url")?,
        secret: row
            .try_get::<Option<String>, _>("secret_sealed")?
            .map(SealedPassword),
        created_by: row.try_get("created_by")?,
        made_by_admin: row.try_get::<i64, _>("made_by_admin")? != 0,
        created_at: row.try_get("created_at")?,
        last_status: row.try_get("last_status")?,
        last_at: row.try_get("last_at")?,
        last_error: row.try_get("last_error")?,
        failing_since: row.try_get("failing_since")?,
    })
}

impl Store {
    pub async fn create_channel(&self, new: &NewChannel<'_>) -> Result<ChannelRecord, StoreError> {
        sqlx::query(
            "INSERT INTO notification_channels \
             (id, owner, kind, url, secret_sealed, created_by, made_by_admin, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new.id)
        .bind(new.owner)
        .bind(new.kind)
        .bind(new.url)
        .bind(new.secret.map(|s| s.0.as_str()))
        .bind(new.created_by)
        .bind(new.made_by_admin || new.owner.is_none())
        .bind(new.now)
        .execute(&self.pool)
        .await?;
        self.channel(new.id)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    pub async fn channel(&self, id: &str) -> Result<Option<ChannelRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notification_channels WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(channel).transpose()?)
    }

    /// Every channel, or with `owner` only that user's, oldest first.
    pub async fn channels(&self, owner: Option<&str>) -> Result<Vec<ChannelRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notification_channels \
             WHERE ($1 IS NULL OR owner = $1) ORDER BY created_at, id"
        ))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(channel).collect::<Result<_, _>>()?)
    }

    /// The channels a user's token's messages go to: the administrators' and theirs.
    pub async fn channels_for(&self, username: &str) -> Result<Vec<ChannelRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM notification_channels \
             WHERE owner IS NULL OR owner = $1 ORDER BY created_at, id"
        ))
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(channel).collect::<Result<_, _>>()?)
    }

    /// Deletes a channel; `false` when there was none.
    pub async fn delete_channel(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM notification_channels WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records one delivery attempt and the channel's state after it: `error` `None`
    /// means delivered (and ends a run of failures).
    pub async fn record_delivery(
        &self,
        channel_id: &str,
        event: &str,
        token_id: Option<&str>,
        attempt: i64,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        let status = if error.is_some() {
            "failed"
        } else {
            "delivered"
        };
        sqlx::query(
            "INSERT INTO channel_deliveries (channel_id, event, token_id, attempt, status, error, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(channel_id)
        .bind(event)
        .bind(token_id)
        .bind(attempt)
        .bind(status)
        .bind(error)
        .bind(now)
        .execute(&self.pool)
        .await?;
        let update = match error {
            None => {
                "UPDATE notification_channels SET last_status = $2, last_at = $3, \
                 last_error = NULL, failing_since = NULL WHERE id = $1"
            }
            Some(_) => {
                "UPDATE notification_channels SET last_status = $2, last_at = $3, \
                 last_error = $4, failing_since = COALESCE(failing_since, $3) WHERE id = $1"
            }
        };
        sqlx::query(update)
            .bind(channel_id)
            .bind(status)
            .bind(now)
            .bind(error)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "DELETE FROM channel_deliveries WHERE channel_id = $1 AND id NOT IN \
             (SELECT id FROM channel_deliveries WHERE channel_id = $1 ORDER BY id DESC LIMIT $2)",
        )
        .bind(channel_id)
        .bind(DELIVERIES_KEPT)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The attempts recorded for a channel, oldest first: (event, attempt, status,
    /// error).
    pub async fn deliveries(
        &self,
        channel_id: &str,
    ) -> Result<Vec<(String, i64, String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT event, attempt, status, error FROM channel_deliveries \
             WHERE channel_id = $1 ORDER BY id",
        )
        .bind(channel_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("event")?,
                    row.try_get("attempt")?,
                    row.try_get("status")?,
                    row.try_get("error")?,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Claims a channel's delivery of a token's reminder (or warning) `which` for
    /// `pass`: `false` when it was delivered, or another pass holds it (a failed one
    /// is retried by a later pass; a claim older than `stale_before` is taken over).
    /// One statement, so concurrent passes cannot both win.
    pub async fn claim_channel_send(
        &self,
        channel_id: &str,
        token_id: &str,
        which: Reminder,
        pass: &str,
        now: i64,
        stale_before: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO channel_sends \
             (channel_id, token_id, kind, reminder, status, claimed_by, claimed_at, updated_at) \
             VALUES ($1, $2, $3, $4, 'claimed', $5, $6, $6) \
             ON CONFLICT (channel_id, token_id, kind, reminder) DO UPDATE SET \
             status = 'claimed', claimed_by = $5, claimed_at = $6, updated_at = $6 \
             WHERE (channel_sends.status = 'failed' AND channel_sends.claimed_by <> $5) \
             OR (channel_sends.status = 'claimed' AND channel_sends.claimed_at < $7)",
        )
        .bind(channel_id)
        .bind(token_id)
        .bind(which.kind)
        .bind(which.reminder)
        .bind(pass)
        .bind(now)
        .bind(stale_before)
        .execute(&self.pool)
        .await;
        super::notifications::claimed(done)
    }

    /// Records how a claimed channel delivery ended; only the pass holding the claim
    /// can.
    pub async fn finish_channel_send(
        &self,
        channel_id: &str,
        token_id: &str,
        which: Reminder,
        pass: &str,
        delivered: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE channel_sends SET status = $6, updated_at = $7 \
             WHERE channel_id = $1 AND token_id = $2 AND kind = $3 AND reminder = $4 \
             AND claimed_by = $5 AND status = 'claimed'",
        )
        .bind(channel_id)
        .bind(token_id)
        .bind(which.kind)
        .bind(which.reminder)
        .bind(pass)
        .bind(if delivered { "delivered" } else { "failed" })
        .bind(crate::core::time::now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Up to `limit` channel deliveries of `kind` to retry: failed in another pass,
    /// or claimed before `stale_before`, for a live token of an enabled user whose
    /// e-mail of that reminder went out (a reminder still to send retries its
    /// channels itself), and for `unused` a token still unused since the same use.
    pub async fn due_channel_retries(
        &self,
        kind: &str,
        now: i64,
        stale_before: i64,
        pass: &str,
        limit: i64,
    ) -> Result<Vec<ChannelRetry>, StoreError> {
        let rows = sqlx::query(
            "SELECT cs.channel_id, cs.token_id, cs.reminder, t.username, t.name, t.expires_at, \
             n.sent_at FROM channel_sends cs \
             JOIN notifications n ON n.token_id = cs.token_id AND n.kind = cs.kind \
             AND n.reminder = cs.reminder AND n.status = 'sent' \
             JOIN tokens t ON t.id = cs.token_id \
             JOIN users u ON u.username = t.username \
             WHERE cs.kind = $1 AND t.revoked_at IS NULL AND t.replaced_by IS NULL \
             AND (t.expires_at IS NULL OR t.expires_at > $2) AND u.disabled = FALSE \
             AND (cs.kind <> 'unused' OR COALESCE(t.last_used_at, t.created_at) = cs.reminder) \
             AND ((cs.status = 'failed' AND cs.claimed_by <> $4) \
                  OR (cs.status = 'claimed' AND cs.claimed_at < $3)) \
             ORDER BY cs.token_id, cs.channel_id LIMIT $5",
        )
        .bind(kind)
        .bind(now)
        .bind(stale_before)
        .bind(pass)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ChannelRetry {
                    channel_id: row.try_get("channel_id")?,
                    token_id: row.try_get("token_id")?,
                    reminder: row.try_get("reminder")?,
                    username: row.try_get("username")?,
                    name: row.try_get("name")?,
                    expires_at: row.try_get("expires_at")?,
                    sent_at: row
                        .try_get::<Option<i64>, _>("sent_at")?
                        .unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
