//! Users known to the gateway: where they come from, their e-mail, disabled or not.
//! A user is found by the key of their name ([`username_key`]): `Alice` finds `alice`,
//! and no second user can be made under a variant of a name.

use super::{Store, StoreError};
use crate::core::text::username_key;
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
    /// Creates the user if no user has this name (in any case or Unicode form); an
    /// existing user keeps its name, source and e-mail. Returns the user's name as
    /// stored, which every later query uses.
    pub async fn ensure_user(
        &self,
        username: &str,
        source: UserSource,
        email: Option<&str>,
    ) -> Result<String, StoreError> {
        let key = username_key(username);
        // No conflict target: a taken name or a taken key both leave the row as it is.
        sqlx::query(
            "INSERT INTO users (username, name_key, source, email, disabled, created_at) \
             VALUES ($1, $2, $3, $4, FALSE, $5) ON CONFLICT DO NOTHING",
        )
        .bind(username)
        .bind(&key)
        .bind(source.as_str())
        .bind(email)
        .bind(now())
        .execute(&self.pool)
        .await?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT username FROM users WHERE name_key = $1")
                .bind(&key)
                .fetch_optional(&self.pool)
                .await?;
        stored.ok_or_else(|| StoreError::NoSuchUser(username.to_string()))
    }

    /// Gives rows made before names had keys their key. Should two old rows share one
    /// (`alice` and `Alice`), the older keeps it and the other is logged: it can then
    /// only be reached by its exact name, and an operator should disable or delete it.
    /// Replicas starting at once may do this together: a row another one filled is
    /// left as it is.
    pub(super) async fn fill_name_keys(&self) -> Result<(), StoreError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT username FROM users WHERE name_key IS NULL ORDER BY created_at, username",
        )
        .fetch_all(&self.pool)
        .await?;
        for (username,) in rows {
            let key = username_key(&username);
            let set = |key: String| {
                sqlx::query(
                    "UPDATE users SET name_key = $1 WHERE username = $2 AND name_key IS NULL",
                )
                .bind(key)
                .bind(username.clone())
                .execute(&self.pool)
            };
            match set(key.clone()).await {
                Ok(_) => continue,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {}
                Err(e) => return Err(e.into()),
            }
            let holder: Option<String> =
                sqlx::query_scalar("SELECT username FROM users WHERE name_key = $1")
                    .bind(&key)
                    .fetch_optional(&self.pool)
                    .await?;
            let holder = holder.unwrap_or_default();
            tracing::warn!(
                user = %username,
                same_as = %holder,
                "two users differ only in the case or form of their name; the older one keeps the name, this one is reached by its exact name only: disable it (patgate user disable) or move its tokens"
            );
            set(format!("{key} (same name as {holder}: {username})")).await?;
        }
        Ok(())
    }

    /// Disables or re-enables a user; their tokens stop or resume working at once.
    pub async fn set_user_disabled(
        &self,
        username: &str,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE users SET disabled = $1 WHERE username = ({})",
            found_by_name(2, 3)
        ))
        .bind(disabled)
        .bind(username)
        .bind(username_key(username))
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
    /// Live tokens: not revoked, not expired, not rotated away with their grace over.
    pub live_tokens: i64,
}

/// A query for the stored name of the user a name finds: parameter `$name` exactly,
/// else by its key, parameter `$key`.
fn found_by_name(name: u8, key: u8) -> String {
    format!(
        "SELECT f.username FROM users f WHERE f.username = ${name} OR f.name_key = ${key} \
         ORDER BY CASE WHEN f.username = ${name} THEN 0 ELSE 1 END LIMIT 1"
    )
}

/// The columns of a [`UserRecord`]; parameter `$now` is the instant live tokens are
/// counted at (not revoked, not expired, not rotated away with their grace over).
fn user_columns(now: u8) -> String {
    format!(
        "u.username, u.source, u.email, \
         CASE WHEN u.admin THEN 1 ELSE 0 END AS admin, \
         CASE WHEN u.disabled THEN 1 ELSE 0 END AS disabled, u.created_at, u.last_sign_in_at, \
         (SELECT COUNT(*) FROM tokens t WHERE t.username = u.username AND t.revoked_at IS NULL \
         AND (t.expires_at IS NULL OR t.expires_at > ${now}) \
         AND (t.grace_until IS NULL OR t.grace_until > ${now})) AS live_tokens"
    )
}

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
    /// The user with this name, in any case or Unicode form (the one with exactly
    /// this name first, should two older rows clash).
    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM users u WHERE u.username = ({})",
            user_columns(3),
            found_by_name(1, 2)
        ))
        .bind(username)
        .bind(username_key(username))
        .bind(now())
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
            "SELECT {} FROM users u WHERE {FILTER} \
             ORDER BY u.username LIMIT $2 OFFSET $3",
            user_columns(4)
        ))
        .bind(pattern.as_deref())
        .bind(limit)
        .bind(offset)
        .bind(now())
        .fetch_all(&self.pool)
        .await?;
        let users = rows.iter().map(user_record).collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    /// Records a sign-in: creates the user if new (as `source`); for SSO users also
    /// refreshes the e-mail from the provider's claims (their roles are set by
    /// `SignIn::apply_roles`, which audits a change). Admin status is refreshed always.
    /// An existing user's source never changes here: an internal user linked to an SSO
    /// identity stays internal, and keeps their own e-mail. Returns the user's name as
    /// stored.
    pub async fn record_sign_in(
        &self,
        username: &str,
        source: UserSource,
        admin: bool,
        sso_email: Option<Option<&str>>,
    ) -> Result<String, StoreError> {
        let username = self.ensure_user(username, source, None).await?;
        if let Some(email) = sso_email {
            sqlx::query("UPDATE users SET email = $1 WHERE username = $2 AND source = 'sso'")
                .bind(email)
                .bind(&username)
                .execute(&self.pool)
                .await?;
        }
        sqlx::query("UPDATE users SET admin = $1, last_sign_in_at = $2 WHERE username = $3")
            .bind(admin)
            .bind(now())
            .bind(&username)
            .execute(&self.pool)
            .await?;
        Ok(username)
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
