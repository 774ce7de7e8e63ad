//! Browser sessions and SSO sign-ins under way, kept in the database so that every
//! replica sees them and a logout ends a session everywhere. Only a hash of a session
//! id is stored; [`SessionRecord`] has no field for the id itself.

use sqlx::Row;

use super::{Store, StoreError, UserSource};
use crate::core::time::now;

/// How a session was signed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInMethod {
    Password,
    Sso,
}

impl SignInMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInMethod::Password => "password",
            SignInMethod::Sso => "sso",
        }
    }
}

/// A live session as the API needs it.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub username: String,
    pub source: UserSource,
    pub csrf_token: String,
    pub method: SignInMethod,
    pub admin: bool,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// When the administrator rights were last confirmed (the start, at first).
    pub admin_checked_at: i64,
}

/// A new session's facts.
pub struct NewSession<'a> {
    pub id_hash: &'a str,
    pub username: &'a str,
    pub csrf_token: &'a str,
    pub method: SignInMethod,
    pub admin: bool,
    pub ip: &'a str,
}

/// What an SSO sign-in under way must remember until the provider sends the user back.
pub struct PendingSso {
    pub nonce: String,
    pub pkce_verifier: String,
    pub created_at: i64,
    /// Hash of the value in the starting browser's binding cookie; `None` for sign-ins
    /// started before there was one, which cannot finish.
    pub binding_hash: Option<String>,
}

impl Store {
    pub async fn create_session(&self, session: NewSession<'_>) -> Result<(), StoreError> {
        let at = now();
        sqlx::query(
            "INSERT INTO sessions (id_hash, username, csrf_token, method, admin, created_at, \
             last_seen_at, ip, admin_checked_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $6)",
        )
        .bind(session.id_hash)
        .bind(session.username)
        .bind(session.csrf_token)
        .bind(session.method.as_str())
        .bind(session.admin)
        .bind(at)
        .bind(session.ip)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session with this id hash, if it exists and its user is not disabled.
    pub async fn session(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT s.username, u.source, s.csrf_token, s.method, \
             CASE WHEN s.admin THEN 1 ELSE 0 END AS admin, s.created_at, s.last_seen_at, \
             COALESCE(s.admin_checked_at, s.created_at) AS admin_checked_at \
             FROM sessions s JOIN users u ON u.username = s.username \
             WHERE s.id_hash = $1 AND NOT u.disabled",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let source: String = row.try_get("source")?;
        let method: String = row.try_get("method")?;
        Ok(Some(SessionRecord {
            username: row.try_get("username")?,
            source: source.parse().unwrap_or(UserSource::Internal),
            csrf_token: row.try_get("csrf_token")?,
            method: if method == "sso" {
                SignInMethod::Sso
            } else {
                SignInMethod::Password
            },
            admin: row.try_get::<i64, _>("admin")? != 0,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            admin_checked_at: row.try_get("admin_checked_at")?,
        }))
    }

    /// Records what Deploy now says of a session's administrator rights.
    pub async fn confirm_session_admin(
        &self,
        id_hash: &str,
        admin: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET admin = $1, admin_checked_at = $2 WHERE id_hash = $3")
            .bind(admin)
            .bind(now())
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn touch_session(&self, id_hash: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(now())
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every session of a user (disabled by an administrator).
    pub async fn delete_user_sessions(&self, username: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE username = $1")
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets sessions idle since `idle_before` or created before `created_before`,
    /// and SSO sign-ins started before `sso_before`.
    pub async fn prune_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
        sso_before: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE last_seen_at < $1 OR created_at < $2")
            .bind(idle_before)
            .bind(created_before)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sso_logins WHERE created_at < $1")
            .bind(sso_before)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a sign-in under way; `binding_hash` is the hash of the value in the
    /// starting browser's cookie.
    pub async fn start_sso(
        &self,
        state: &str,
        nonce: &str,
        pkce_verifier: &str,
        binding_hash: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sso_logins (state, nonce, pkce_verifier, created_at, binding_hash) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(state)
        .bind(nonce)
        .bind(pkce_verifier)
        .bind(now())
        .bind(binding_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Takes (and deletes) the sign-in started with `state`: each can finish once.
    pub async fn finish_sso(&self, state: &str) -> Result<Option<PendingSso>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM sso_logins WHERE state = $1 \
             RETURNING nonce, pkce_verifier, created_at, binding_hash",
        )
        .bind(state)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(PendingSso {
            nonce: row.try_get("nonce")?,
            pkce_verifier: row.try_get("pkce_verifier")?,
            created_at: row.try_get("created_at")?,
            binding_hash: row.try_get("binding_hash")?,
        }))
    }
}
