//! SSO identities: which user an OpenID provider's (issuer, subject) is. The username
//! claim alone never decides it, since on some providers users choose their own names.

use super::{Store, StoreError};
use crate::core::time::now;

impl Store {
    /// The user bound to this issuer and subject.
    pub async fn sso_identity(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT username FROM sso_identities WHERE issuer = $1 AND subject = $2",
        )
        .bind(issuer)
        .bind(subject)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The subject bound to `username` at this issuer (its exact stored name).
    pub async fn sso_subject(
        &self,
        issuer: &str,
        username: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT subject FROM sso_identities WHERE issuer = $1 AND username = $2",
        )
        .bind(issuer)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Binds an issuer and subject to a user (stored name); `linked_by` names the
    /// administrator who linked an existing user. False when either side is bound
    /// already (the subject to someone, or the user to another subject).
    pub async fn bind_sso_identity(
        &self,
        issuer: &str,
        subject: &str,
        username: &str,
        linked_by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO sso_identities (issuer, subject, username, linked_by, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(issuer)
        .bind(subject)
        .bind(username)
        .bind(linked_by)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Removes the user's binding at this issuer; false if there was none.
    pub async fn unbind_sso_identity(
        &self,
        issuer: &str,
        username: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM sso_identities WHERE issuer = $1 AND username = $2")
            .bind(issuer)
            .bind(username)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
