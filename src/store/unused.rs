//! Tokens left unused: those due for the warning before they are revoked, those due
//! for revocation, and the revocation itself, conditional so that of several replicas
//! only one revokes (and tells the owner).
//!
//! "Unused since" is the last use, or the creation for a token never used; a rotated
//! or exchanged token is a token like any other (its own creation starts its clock),
//! and the token it replaced, on its way out, is neither warned nor revoked.

use sqlx::Row;

use super::{Store, StoreError};

/// A live token unused since `since`, and where its owner's e-mail goes.
#[derive(Debug, Clone)]
pub struct UnusedToken {
    pub token_id: String,
    pub username: String,
    pub name: String,
    /// The last use, or the creation when never used.
    pub since: i64,
    /// `None`: the user has no known e-mail address.
    pub email: Option<String>,
}

/// How long before revocation the warning goes out, and the least time a warned
/// token is given.
pub const UNUSED_WARNING_DAYS: i64 = 7;

fn unused_token(row: &sqlx::any::AnyRow) -> Result<UnusedToken, sqlx::Error> {
    Ok(UnusedToken {
        token_id: row.try_get("id")?,
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        since: row.try_get("since")?,
        email: row
            .try_get::<Option<String>, _>("email")?
            .filter(|e| !e.trim().is_empty()),
    })
}

impl Store {
    /// Up to `limit` live tokens of enabled users unused since `unused_before` or
    /// earlier, not yet warned for this stretch of non-use: no row, a failed row from
    /// another pass, or a claim taken before `stale_before`.
    pub async fn due_unused_warnings(
        &self,
        unused_before: i64,
        now: i64,
        stale_before: i64,
        pass: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<UnusedToken>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.username, t.name, COALESCE(t.last_used_at, t.created_at) AS since, \
             u.email FROM tokens t \
             JOIN users u ON u.username = t.username \
             LEFT JOIN notifications n ON n.token_id = t.id AND n.kind = 'unused' \
             AND n.reminder = COALESCE(t.last_used_at, t.created_at) \
             WHERE t.revoked_at IS NULL AND t.replaced_by IS NULL \
             AND (t.expires_at IS NULL OR t.expires_at > $2) \
             AND COALESCE(t.last_used_at, t.created_at) <= $1 \
             AND u.disabled = FALSE \
             AND (n.token_id IS NULL \
                  OR (n.status = 'failed' AND n.claimed_by <> $4) \
                  OR (n.status = 'claimed' AND n.claimed_at < $3)) \
             AND t.id > $6 ORDER BY t.id LIMIT $5",
        )
        .bind(unused_before)
        .bind(now)
        .bind(stale_before)
        .bind(pass)
        .bind(limit)
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(unused_token)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Up to `limit` live tokens unused since `unused_before` or earlier whose
    /// warning, if one went out for this stretch, went out at `warned_before` or
    /// earlier (a warned token always has its days), each with whether its warning
    /// is done: it went out, or none is due (a disabled user's tokens are warned of
    /// nothing). One whose warning is not done (failed, still being sent, or never
    /// tried) is revoked only when its owner cannot be warned at all, which the
    /// caller decides.
    pub async fn due_unused_revocations(
        &self,
        unused_before: i64,
        warned_before: i64,
        now: i64,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(UnusedToken, bool)>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.username, t.name, COALESCE(t.last_used_at, t.created_at) AS since, \
             u.email, CASE WHEN n.sent_at IS NOT NULL OR u.disabled = TRUE THEN 1 ELSE 0 END \
             AS warning_done FROM tokens t \
             JOIN users u ON u.username = t.username \
             LEFT JOIN notifications n ON n.token_id = t.id AND n.kind = 'unused' \
             AND n.reminder = COALESCE(t.last_used_at, t.created_at) AND n.status = 'sent' \
             WHERE t.revoked_at IS NULL AND t.replaced_by IS NULL \
             AND (t.expires_at IS NULL OR t.expires_at > $3) \
             AND COALESCE(t.last_used_at, t.created_at) <= $1 \
             AND (n.sent_at IS NULL OR n.sent_at <= $2) \
             AND t.id > $5 ORDER BY t.id LIMIT $4",
        )
        .bind(unused_before)
        .bind(warned_before)
        .bind(now)
        .bind(limit)
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    unused_token(row)?,
                    row.try_get::<i64, _>("warning_done")? != 0,
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Revokes a token still unused since `since`; `false` when it was used since,
    /// or is revoked already (another replica did it). Setting `revoked_at` is what
    /// the change feed announces to every cache.
    pub async fn revoke_unused(
        &self,
        token_id: &str,
        since: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND COALESCE(last_used_at, created_at) = $3",
        )
        .bind(now)
        .bind(token_id)
        .bind(since)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
