//! The SQLite change feed's table: every change that must evict cached tokens, in
//! commit order (PostgreSQL announces the same changes with NOTIFY instead).

use sqlx::Row;

use super::{Store, StoreError};
use crate::core::time::now;

/// Most invalidation rows read per poll (the SQL says the same number).
pub const INVALIDATION_BATCH: usize = 1000;

/// A change that must evict cached entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One token, by its hex hash.
    Token(String),
    /// Every token of a user.
    User(String),
    /// Everything: a policy changed that can change any token's answer.
    All,
}

impl Invalidation {
    /// Parses the NOTIFY payload / table row form: `t:<hash>` or `u:<username>`.
    pub fn parse(kind: &str, key: &str) -> Option<Invalidation> {
        match kind {
            "t" | "token" => Some(Invalidation::Token(key.to_string())),
            "u" | "user" => Some(Invalidation::User(key.to_string())),
            "a" | "all" => Some(Invalidation::All),
            _ => None,
        }
    }
}

impl Store {
    /// SQLite only: the newest invalidation id, where a new process starts polling.
    pub async fn latest_invalidation(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM invalidations")
            .fetch_one(&self.pool)
            .await?;
        Ok(id.unwrap_or(0))
    }

    /// SQLite only: invalidations after `after`, oldest first, at most
    /// [`INVALIDATION_BATCH`] of them.
    pub async fn invalidations_since(
        &self,
        after: i64,
    ) -> Result<Vec<(i64, Invalidation)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, key FROM invalidations WHERE id > $1 ORDER BY id LIMIT 1000",
        )
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let kind: String = row.try_get("kind")?;
            let key: String = row.try_get("key")?;
            if let Some(inv) = Invalidation::parse(&kind, &key) {
                out.push((id, inv));
            }
        }
        Ok(out)
    }

    /// SQLite only: forgets invalidations older than `age_secs` (every poller has seen them).
    pub async fn prune_invalidations(&self, age_secs: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM invalidations WHERE created_at < $1")
            .bind(now() - age_secs)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
