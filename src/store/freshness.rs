//! How fresh an SSO user's roles and status are: who last set the roles (`signin`,
//! `scim`, `revalidation`) and when, the provider's refresh token the gateway asks it
//! again with, and the suspension that follows when the provider refuses.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Store, StoreError};
use crate::core::time::now;

/// Who set a user's roles.
pub const FROM_SIGNIN: &str = "signin";
pub const FROM_SCIM: &str = "scim";
pub const FROM_REVALIDATION: &str = "revalidation";

/// A re-validation that is due: the user and their sealed refresh token.
#[derive(Debug, Clone)]
pub struct DueRevalidation {
    pub username: String,
    pub sealed_refresh_token: String,
    pub next_at: i64,
}

/// How a re-validation ended, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevalidationResult {
    Ok,
    /// The provider refused the refresh token (`invalid_grant`): suspended.
    Refused,
    /// The provider could not be reached or answered unexpectedly: nobody suspended.
    Unreachable,
}

impl RevalidationResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RevalidationResult::Ok => "ok",
            RevalidationResult::Refused => "refused",
            RevalidationResult::Unreachable => "unreachable",
        }
    }
}

/// One user's freshness, for the users list.
#[derive(Debug, Clone, Default)]
pub struct UserFreshness {
    pub roles: Vec<String>,
    pub roles_source: Option<String>,
    pub roles_updated_at: Option<i64>,
    pub suspended_at: Option<i64>,
    /// Whether a refresh token is kept (`None`: never signed in through SSO since).
    pub refresh_token: Option<bool>,
    pub revalidated_at: Option<i64>,
    pub revalidation_result: Option<String>,
}

/// Every SSO user's freshness at once, for the settings.
#[derive(Debug, Clone, Default)]
pub struct FreshnessSummary {
    pub scim_groups: i64,
    pub sso_users: i64,
    /// SSO users by who last set their roles (`none` when nobody has).
    pub by_source: BTreeMap<String, i64>,
    pub suspended: i64,
    /// SSO users the gateway cannot ask the provider about (no refresh token kept).
    pub without_refresh_token: i64,
    /// Whose last re-validation found the provider unreachable.
    pub unreachable: i64,
    pub last_run_at: Option<i64>,
}

fn roles_json(roles: &[String]) -> String {
    serde_json::to_string(roles).unwrap_or_else(|_| "[]".into())
}

fn parse_roles(text: Option<String>) -> Vec<String> {
    text.and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or_default()
}

impl Store {
    /// The user's roles and who set them.
    pub async fn roles_and_source(
        &self,
        username: &str,
    ) -> Result<(Vec<String>, Option<String>), StoreError> {
        let row: Option<(Option<String>, Option<String>)> =
            sqlx::query_as("SELECT roles, roles_source FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        let (roles, source) = row.unwrap_or_default();
        Ok((parse_roles(roles), source))
    }

    /// Sets a user's roles as `source` says them, and their administrator status (in
    /// the user row and in their SSO sessions). Answers the roles before when they
    /// changed.
    pub async fn set_roles(
        &self,
        username: &str,
        roles: &[String],
        source: &str,
        admin: bool,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let (before, before_source) = self.roles_and_source(username).await?;
        let changed = before != roles;
        if changed || before_source.as_deref() != Some(source) {
            sqlx::query(
                "UPDATE users SET roles = $1, roles_source = $2, roles_updated_at = $3 \
                 WHERE username = $4",
            )
            .bind(roles_json(roles))
            .bind(source)
            .bind(now())
            .bind(username)
            .execute(&self.pool)
            .await?;
        }
        sqlx::query("UPDATE users SET admin = $1 WHERE username = $2")
            .bind(admin)
            .bind(username)
            .execute(&self.pool)
            .await?;
        sqlx::query("UPDATE sessions SET admin = $1 WHERE username = $2 AND method = 'sso'")
            .bind(admin)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(changed.then_some(before))
    }

    /// Keeps the refresh token an SSO sign-in brought (sealed), or records that it
    /// brought none; the next re-validation is due at `next_at`.
    pub async fn keep_refresh_token(
        &self,
        username: &str,
        sealed: Option<&str>,
        next_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sso_revalidation (username, refresh_token, next_at) VALUES ($1, $2, $3) \
             ON CONFLICT (username) DO UPDATE SET refresh_token = excluded.refresh_token, \
             next_at = excluded.next_at, last_result = NULL, last_error = NULL",
        )
        .bind(username)
        .bind(sealed)
        .bind(next_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// SSO users with a refresh token kept, whom re-validation asks about.
    pub async fn revalidation_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM sso_revalidation WHERE refresh_token IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Re-validations due by `at`, oldest first.
    pub async fn due_revalidations(
        &self,
        at: i64,
        limit: i64,
    ) -> Result<Vec<DueRevalidation>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, refresh_token, next_at FROM sso_revalidation \
             WHERE next_at <= $1 AND refresh_token IS NOT NULL ORDER BY next_at LIMIT $2",
        )
        .bind(at)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DueRevalidation {
                    username: row.try_get("username")?,
                    sealed_refresh_token: row.try_get("refresh_token")?,
                    next_at: row.try_get("next_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Takes a due re-validation for this replica by moving it to `next_at`; false if
    /// another replica took it first.
    pub async fn claim_revalidation(
        &self,
        due: &DueRevalidation,
        next_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sso_revalidation SET next_at = $1 WHERE username = $2 AND next_at = $3",
        )
        .bind(next_at)
        .bind(&due.username)
        .bind(due.next_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records how a re-validation ended. `refresh_token`: `Some(Some(_))` replaces the
    /// kept token (the provider rotated it), `Some(None)` drops it, `None` keeps it.
    pub async fn record_revalidation(
        &self,
        username: &str,
        result: RevalidationResult,
        error: Option<&str>,
        refresh_token: Option<Option<&str>>,
    ) -> Result<(), StoreError> {
        let (set_token, token) = match refresh_token {
            Some(token) => (true, token),
            None => (false, None),
        };
        sqlx::query(
            "UPDATE sso_revalidation SET last_at = $1, last_result = $2, last_error = $3, \
             refresh_token = CASE WHEN $4 THEN $5 ELSE refresh_token END WHERE username = $6",
        )
        .bind(now())
        .bind(result.as_str())
        .bind(error)
        .bind(set_token)
        .bind(token)
        .bind(username)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Suspends (`true`) or reinstates a user's tokens; answers whether that changed
    /// anything.
    pub async fn set_sso_suspended(
        &self,
        username: &str,
        suspended: bool,
    ) -> Result<bool, StoreError> {
        let done = if suspended {
            sqlx::query(
                "UPDATE users SET sso_suspended_at = $1 \
                 WHERE username = $2 AND sso_suspended_at IS NULL",
            )
            .bind(now())
            .bind(username)
            .execute(&self.pool)
            .await?
        } else {
            sqlx::query(
                "UPDATE users SET sso_suspended_at = NULL \
                 WHERE username = $1 AND sso_suspended_at IS NOT NULL",
            )
            .bind(username)
            .execute(&self.pool)
            .await?
        };
        Ok(done.rows_affected() > 0)
    }

    /// Each of these users' freshness.
    pub async fn user_freshness(
        &self,
        usernames: &[&str],
    ) -> Result<BTreeMap<String, UserFreshness>, StoreError> {
        let mut out = BTreeMap::new();
        for username in usernames {
            let row = sqlx::query(
                "SELECT u.roles, u.roles_source, u.roles_updated_at, u.sso_suspended_at, \
                 CASE WHEN r.username IS NULL THEN NULL \
                      WHEN r.refresh_token IS NULL THEN 0 ELSE 1 END AS has_refresh, \
                 r.last_at, r.last_result \
                 FROM users u LEFT JOIN sso_revalidation r ON r.username = u.username \
                 WHERE u.username = $1",
            )
            .bind(*username)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { continue };
            out.insert(
                username.to_string(),
                UserFreshness {
                    roles: parse_roles(row.try_get("roles")?),
                    roles_source: row.try_get("roles_source")?,
                    roles_updated_at: row.try_get("roles_updated_at")?,
                    suspended_at: row.try_get("sso_suspended_at")?,
                    refresh_token: row
                        .try_get::<Option<i64>, _>("has_refresh")?
                        .map(|v| v != 0),
                    revalidated_at: row.try_get("last_at")?,
                    revalidation_result: row.try_get("last_result")?,
                },
            );
        }
        Ok(out)
    }

    /// What the settings show about every SSO user's freshness.
    pub async fn freshness_summary(&self) -> Result<FreshnessSummary, StoreError> {
        let mut summary = FreshnessSummary {
            scim_groups: self.scim_group_count().await?,
            ..FreshnessSummary::default()
        };
        let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
            "SELECT roles_source, COUNT(*) FROM users WHERE source = 'sso' GROUP BY roles_source",
        )
        .fetch_all(&self.pool)
        .await?;
        for (source, count) in rows {
            summary.sso_users += count;
            *summary
                .by_source
                .entry(source.unwrap_or_else(|| "none".into()))
                .or_default() += count;
        }
        summary.suspended = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users WHERE source = 'sso' AND sso_suspended_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        summary.without_refresh_token = sqlx::query_scalar(
            "SELECT COUNT(*) FROM users u LEFT JOIN sso_revalidation r ON r.username = u.username \
             WHERE u.source = 'sso' AND u.sso_suspended_at IS NULL AND r.refresh_token IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        summary.unreachable = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sso_revalidation WHERE last_result = 'unreachable'",
        )
        .fetch_one(&self.pool)
        .await?;
        summary.last_run_at = sqlx::query_scalar("SELECT MAX(last_at) FROM sso_revalidation")
            .fetch_one(&self.pool)
            .await?;
        Ok(summary)
    }
}
