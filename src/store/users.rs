//! Users known to the gateway: where they come from, their e-mail, disabled or not.

use super::{now, Store, StoreError};

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
