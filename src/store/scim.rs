//! The SCIM side of users: which users an identity provider manages (those with a SCIM
//! id), their `externalId`, and when the provider last changed them. Disabling and
//! enabling go through the same store calls as the admin API.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError, UserSource};
use crate::core::time::now;

/// A user as a SCIM client sees them.
#[derive(Debug, Clone)]
pub struct ScimUser {
    /// The resource id (`/Users/{id}`), chosen by the gateway.
    pub id: String,
    pub username: String,
    /// The provider's own id for the user.
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which SCIM users to list: all, or the one with this username (in any case or form,
/// as SCIM's `userName` is compared); a page of them.
#[derive(Debug, Clone)]
pub struct ScimUserQuery<'a> {
    pub username: Option<&'a str>,
    /// From 0.
    pub offset: i64,
    pub limit: i64,
}

const COLUMNS: &str = "scim_id, username, scim_external_id, email, \
     CASE WHEN disabled THEN 1 ELSE 0 END AS disabled, created_at, \
     COALESCE(scim_updated_at, created_at) AS updated_at";

fn scim_user(row: &AnyRow) -> Result<ScimUser, sqlx::Error> {
    Ok(ScimUser {
        id: row.try_get("scim_id")?,
        username: row.try_get("username")?,
        external_id: row.try_get("scim_external_id")?,
        email: row.try_get("email")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// A new resource id: 128 random bits written as a UUID (version 4), as providers
/// expect ids to look.
pub fn new_scim_id() -> String {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).expect("the operating system's random source failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

impl Store {
    /// The SCIM-managed user with this resource id.
    pub async fn scim_user(&self, id: &str) -> Result<Option<ScimUser>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE scim_id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(scim_user).transpose()?)
    }

    /// SCIM-managed users, oldest first, and how many match in all.
    pub async fn scim_users(
        &self,
        query: ScimUserQuery<'_>,
    ) -> Result<(Vec<ScimUser>, i64), StoreError> {
        const FILTER: &str = "scim_id IS NOT NULL AND ($1 IS NULL OR name_key = $1)";
        let key = query.username.map(crate::core::text::username_key);
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM users WHERE {FILTER}"))
            .bind(key.as_deref())
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM users WHERE {FILTER} \
             ORDER BY created_at, username LIMIT $2 OFFSET $3"
        ))
        .bind(key.as_deref())
        .bind(query.limit)
        .bind(query.offset)
        .fetch_all(&self.pool)
        .await?;
        let users = rows.iter().map(scim_user).collect::<Result<_, _>>()?;
        Ok((users, total))
    }

    /// Puts `username` under SCIM management with a new resource id: a new user is
    /// created as an SSO user; a known one (who signed in before being provisioned) is
    /// taken over with its tokens. `None` if a SCIM resource has that username already,
    /// or if the user the name finds is written differently (`ALICE` for `alice`): a
    /// variant of a name never becomes a second user.
    pub async fn scim_link(
        &self,
        username: &str,
        external_id: Option<&str>,
        email: Option<&str>,
    ) -> Result<Option<ScimUser>, StoreError> {
        if self.ensure_user(username, UserSource::Sso, email).await? != username {
            return Ok(None);
        }
        let id = new_scim_id();
        let done = sqlx::query(
            "UPDATE users SET scim_id = $1, scim_external_id = $2, scim_updated_at = $3, \
             email = COALESCE($4, email) WHERE username = $5 AND scim_id IS NULL",
        )
        .bind(&id)
        .bind(external_id)
        .bind(now())
        .bind(email)
        .bind(username)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.scim_user(&id).await
    }

    /// Replaces what SCIM manages of a user besides `active`: the external id and the
    /// e-mail address. False if there is no such resource.
    pub async fn scim_update(
        &self,
        id: &str,
        external_id: Option<&str>,
        email: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET scim_external_id = $1, email = $2, scim_updated_at = $3 \
             WHERE scim_id = $4",
        )
        .bind(external_id)
        .bind(email)
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends SCIM management of a user (the resource is deleted); the user row stays.
    pub async fn scim_unlink(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET scim_id = NULL, scim_external_id = NULL, scim_updated_at = $1 \
             WHERE scim_id = $2",
        )
        .bind(now())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
