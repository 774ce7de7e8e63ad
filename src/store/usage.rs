//! What each token's owner can see of its use: last use, requests per UTC day, the
//! addresses it came from and its last refusal, written in batches by the usage writer
//! (`tokens::usage`) and read by `GET /tokens/{id}/usage`.

use sqlx::Row;

use super::tokens::Usage;
use super::{Store, StoreError};

/// Requests one replica counted for a token on one UTC day.
#[derive(Debug, Clone)]
pub struct DayCount {
    pub token_id: String,
    /// Days since 1970-01-01, UTC.
    pub day: i64,
    pub requests: i64,
}

/// The last refusal of a known token seen in a batch.
#[derive(Debug, Clone)]
pub struct TokenRefusal {
    pub token_id: String,
    pub code: &'static str,
    pub at: i64,
}

/// One flush of the usage writer.
#[derive(Debug, Clone, Default)]
pub struct UsageBatch {
    pub uses: Vec<Usage>,
    pub days: Vec<DayCount>,
    pub refusals: Vec<TokenRefusal>,
}

/// An address a token was used from.
#[derive(Debug, Clone)]
pub struct AddressSeen {
    pub ip: String,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// What the owner sees of one token's use.
#[derive(Debug, Clone)]
pub struct TokenUsage {
    /// (day, requests) for the days asked for that have requests, oldest first.
    pub days: Vec<(i64, i64)>,
    /// The most recently seen distinct addresses, newest first.
    pub addresses: Vec<AddressSeen>,
    /// (code, at).
    pub last_refusal: Option<(String, i64)>,
}

/// Distinct addresses listed per token.
pub const ADDRESSES_SHOWN: i64 = 5;

impl Store {
    /// Writes one flush of the usage writer in one transaction: last use, addresses
    /// (a new one is audited), day counts added to what other replicas wrote, and
    /// refusals (a later one replaces an earlier one).
    pub async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for usage in &batch.uses {
            sqlx::query(
                "UPDATE tokens SET last_used_at = $1, last_used_ip = $2 \
                 WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(usage.at)
            .bind(usage.ip.to_string())
            .bind(&usage.token_id)
            .execute(&mut *tx)
            .await?;
            let ip = usage.ip.to_string();
            let new_address = sqlx::query(
                "INSERT INTO token_addresses (token_id, ip, first_seen, last_seen) \
                 SELECT id, $2, $3, $3 FROM tokens WHERE id = $1 \
                 ON CONFLICT (token_id, ip) DO NOTHING",
            )
            .bind(&usage.token_id)
            .bind(&ip)
            .bind(usage.at)
            .execute(&mut *tx)
            .await?;
            if new_address.rows_affected() == 1 {
                sqlx::query(
                    "INSERT INTO audit (at, actor, action, username, token_id, ip) \
                     SELECT $1, username, 'token.used_from_new_address', username, id, $2 \
                     FROM tokens WHERE id = $3",
                )
                .bind(usage.at)
                .bind(&ip)
                .bind(&usage.token_id)
                .execute(&mut *tx)
                .await?;
            } else {
                sqlx::query(
                    "UPDATE token_addresses SET last_seen = $3 WHERE token_id = $1 AND ip = $2 \
                     AND (last_seen IS NULL OR last_seen < $3)",
                )
                .bind(&usage.token_id)
                .bind(&ip)
                .bind(usage.at)
                .execute(&mut *tx)
                .await?;
            }
        }
        for count in &batch.days {
            sqlx::query(
                "INSERT INTO token_usage_days (token_id, day, requests) \
                 SELECT id, $2, $3 FROM tokens WHERE id = $1 \
                 ON CONFLICT (token_id, day) \
                 DO UPDATE SET requests = token_usage_days.requests + excluded.requests",
            )
            .bind(&count.token_id)
            .bind(count.day)
            .bind(count.requests)
            .execute(&mut *tx)
            .await?;
        }
        for refusal in &batch.refusals {
            sqlx::query(
                "INSERT INTO token_refusals (token_id, code, at) \
                 SELECT id, $2, $3 FROM tokens WHERE id = $1 \
                 ON CONFLICT (token_id) DO UPDATE SET code = excluded.code, at = excluded.at \
                 WHERE token_refusals.at <= excluded.at",
            )
            .bind(&refusal.token_id)
            .bind(refusal.code)
            .bind(refusal.at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A token's use: its day counts from `first_day` on, its recent addresses and its
    /// last refusal.
    pub async fn token_usage(
        &self,
        token_id: &str,
        first_day: i64,
    ) -> Result<TokenUsage, StoreError> {
        let days = sqlx::query(
            "SELECT day, requests FROM token_usage_days WHERE token_id = $1 AND day >= $2 \
             ORDER BY day",
        )
        .bind(token_id)
        .bind(first_day)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("day")?, r.try_get("requests")?)))
        .collect::<Result<_, sqlx::Error>>()?;
        let addresses = sqlx::query(
            "SELECT ip, first_seen, COALESCE(last_seen, first_seen) AS last_seen \
             FROM token_addresses WHERE token_id = $1 \
             ORDER BY COALESCE(last_seen, first_seen) DESC, ip LIMIT $2",
        )
        .bind(token_id)
        .bind(ADDRESSES_SHOWN)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(AddressSeen {
                ip: r.try_get("ip")?,
                first_seen: r.try_get("first_seen")?,
                last_seen: r.try_get("last_seen")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
        let last_refusal = sqlx::query("SELECT code, at FROM token_refusals WHERE token_id = $1")
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("code")?, r.try_get("at")?)))
            .transpose()?;
        Ok(TokenUsage {
            days,
            addresses,
            last_refusal,
        })
    }

    /// Deletes at most `limit` day rows older than `before_day`; returns how many.
    pub async fn prune_usage_days(&self, before_day: i64, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM token_usage_days WHERE (token_id, day) IN \
             (SELECT token_id, day FROM token_usage_days WHERE day < $1 LIMIT $2)",
        )
        .bind(before_day)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
