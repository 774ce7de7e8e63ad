//! Users known to the gateway: where they come from, their e-mail, disabled or not.

use super::{Store, StoreError};
use crate::core::time::now;

/// Where a user's identity comes from; decides which policies apply (SSO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserSource {
    Internal,
    Ldap,
    Sso,
}

impl UserSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UserSource::Internal => "internal",
            UserSource::Ldap => "ldap",
            UserSource::Sso => "sso",
        }
    }
}

impl std::str::FromStr for UserSource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "internal" => Ok(UserSource::Internal),
            "ldap" => Ok(UserSource::Ldap),
            "sso" => Ok(UserSource::Sso),
            other => Err(format!(
                "unknown user source {other:?}; use internal, ldap or sso"
            )),
        }
    }
}

impl Store {
    /// Creates the user if unknown; an existing user keeps its source and e-mail.
    pub async fn ensure_user(
        &self,
        username: &str,
        source: UserSource,
        email: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (username, source, email, disabled, created_at) \
             VALUES ($1, $2, $3, FALSE, $4) ON CONFLICT (username) DO NOTHING",
        )
        .bind(username)
        .bind(source.as_str())
        .bind(email)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Disables or re-enables a user; their tokens stop or resume working at once.
    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE username = $2")
            .bind(disabled)
            .bind(username)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchUser(username.to_string()));
        }
        Ok(())
    }
}

/// A user as administrators see them.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub username: String,
    pub source: UserSource,
    pub email: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    pub created_at: i64,
    pub last_sign_in_at: Option<i64>,
    /// Tokens not revoked (expired ones included).
    pub live_tokens: i64,
}

const USER_COLUMNS: &str = "u.username, u.source, u.email, \
     CASE WHEN u.admin THEN 1 ELSE 0 END AS admin, \
     CASE WHEN u.disabled THEN 1 ELSE 0 END AS disabled, u.created_at, u.last_sign_in_at, \
     (SELECT COUNT(*) FROM tokens t WHERE t.username = u.username AND t.revoked_at IS NULL) \
     AS live_tokens";

fn user_record(row: &sqlx::any::AnyRow) -> Result<UserRecord, sqlx::Error> {
    use sqlx::Row;
    let source: String = row.try_get("source")?;
    Ok(UserRecord {
        username: row.try_get("username")?,
        source: source.parse().unwrap_or(UserSource::Internal),
        email: row.try_get("email")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        last_sign_in_at: row.try_get("last_sign_in_at")?,
        live_tokens: row.try_get("live_tokens")?,
    })
}

impl Store {
    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE u.username = $1"
        ))
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(user_record).transpose()?)
    }

    /// Users whose name or e-mail contains `search` (any case), by name, and how many
    /// match in all.
    pub async fn users(
        &self,
        search: Option<&str>,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<UserRecord>, i64), StoreError> {
        let pattern = search.map(|s| {
            let escaped = s
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
        const FILTER: &str = "($1 IS NULL OR LOWER(u.username) LIKE $1 ESCAPE '\\' \
             OR LOWER(COALESCE(u.email, '')) LIKE $1 ESCAPE '\\')";
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users u WHERE {FILTER}"))
                .bind(pattern.as_deref())
                .fetch_one(&self.pool)
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users u WHERE {FILTER} \
             ORDER BY u.username LIMIT $2 OFFSET $3"
        ))
        .bind(pattern.as_deref())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let users = rows.iter().map(user_record).collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    /// Records a sign-in: creates the user if new; for SSO users also refreshes the
    /// e-mail and groups from the provider's claims. Admin status is refreshed always.
    pub async fn record_sign_in(
        &self,
        username: &str,
        source: UserSource,
        admin: bool,
        sso_claims: Option<(Option<&str>, &[String])>,
    ) -> Result<(), StoreError> {
        self.ensure_user(username, source, None).await?;
        match sso_claims {
            Some((email, roles)) => {
                let roles = serde_json::to_string(roles).unwrap_or_else(|_| "[]".into());
                sqlx::query(
                    "UPDATE users SET admin = $1, last_sign_in_at = $2, email = $3, roles = $4, \
                     source = 'sso' WHERE username = $5",
                )
                .bind(admin)
                .bind(now())
                .bind(email)
                .bind(roles)
                .bind(username)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE users SET admin = $1, last_sign_in_at = $2 WHERE username = $3",
                )
                .bind(admin)
                .bind(now())
                .bind(username)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// The user's roles as last seen at an SSO sign-in (none for others).
    pub async fn user_roles(&self, username: &str) -> Result<Vec<String>, StoreError> {
        let roles: Option<Option<String>> =
            sqlx::query_scalar("SELECT roles FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        Ok(roles
            .flatten()
            .and_then(|r| serde_json::from_str(&r).ok())
            .unwrap_or_default())
    }

    pub async fn set_email(&self, username: &str, email: Option<&str>) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET email = $1 WHERE username = $2")
            .bind(email)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
