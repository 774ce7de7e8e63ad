//! The administrators' policies: one row, read on every sign-in and token creation,
//! and joined into the token lookup so that a change reaches every cache (a trigger
//! announces it as an `all` invalidation).

use sqlx::Row;

use super::{Store, StoreError};
use crate::core::time::now;
use crate::core::token::Expiration;

/// The policies of the seed: the longest expiration users may choose, and whether SSO
/// users may have tokens at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `Never` means no maximum.
    pub max_token_expiration: Expiration,
    pub sso_pat_creation_enabled: bool,
    /// At most this many active tokens per user (tokens from a token exchange aside);
    /// `None`: no limit.
    pub max_tokens_per_user: Option<i64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_token_expiration: Expiration::Never,
            sso_pat_creation_enabled: true,
            max_tokens_per_user: None,
        }
    }
}

impl Settings {
    /// The expiration choices allowed under the maximum, shortest first.
    pub fn allowed_expirations(&self) -> Vec<Expiration> {
        Expiration::ALL
            .into_iter()
            .filter(|e| *e <= self.max_token_expiration)
            .collect()
    }
}

impl Store {
    pub async fn settings(&self) -> Result<Settings, StoreError> {
        let row = sqlx::query(
            "SELECT max_token_expiration, \
             CASE WHEN sso_pat_creation_enabled THEN 1 ELSE 0 END AS sso, max_tokens_per_user \
             FROM settings WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Settings::default());
        };
        let max: String = row.try_get("max_token_expiration")?;
        Ok(Settings {
            // A value this version does not know (written by a newer one) is read as
            // the strictest choice rather than as no limit.
            max_token_expiration: max.parse().unwrap_or(Expiration::Days7),
            sso_pat_creation_enabled: row.try_get::<i64, _>("sso")? != 0,
            max_tokens_per_user: row.try_get("max_tokens_per_user")?,
        })
    }

    pub async fn save_settings(&self, settings: &Settings, by: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE settings SET max_token_expiration = $1, sso_pat_creation_enabled = $2, \
             updated_at = $3, updated_by = $4, max_tokens_per_user = $5 WHERE id = 1",
        )
        .bind(settings.max_token_expiration.as_str())
        .bind(settings.sso_pat_creation_enabled)
        .bind(now())
        .bind(by)
        .bind(settings.max_tokens_per_user)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
