//! Service accounts and their owners. An account is a user row (its tokens are that
//! user's tokens) marked here, with the users who look after it. An owner is active
//! while their user is neither disabled (by an administrator, SCIM or the command
//! line) nor suspended by the identity provider; an account with no active owner is
//! flagged (`orphaned_at`), once, so that the flag can be audited once.

use sqlx::Row;

use super::{Store, StoreError};
use crate::core::text::username_key;
use crate::core::time::now;

/// A service account as administrators and owners see it.
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    /// The Deploy user name its tokens act as.
    pub name: String,
    pub description: String,
    pub owners: Vec<ServiceAccountOwner>,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub updated_at: i64,
    /// Since when no owner has been active; `None` while one is.
    pub orphaned_at: Option<i64>,
    /// Tokens that still work or may again (not revoked, not expired, not rotated
    /// away past their grace).
    pub live_tokens: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountOwner {
    pub username: String,
    pub active: bool,
}

/// An account whose flag changed: it lost its last active owner (`orphaned`), or has
/// one again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanChange {
    pub account: String,
    pub orphaned: bool,
}

/// Whether owner `o`'s user `u` is active.
const ACTIVE_OWNER: &str = "u.disabled = FALSE AND u.sso_suspended_at IS NULL";

const ACCOUNT_COLUMNS: &str = "a.username, a.description, a.created_at, a.created_by, \
     a.updated_at, a.orphaned_at, \
     (SELECT COUNT(*) FROM tokens t WHERE t.username = a.username AND t.revoked_at IS NULL \
        AND (t.expires_at IS NULL OR t.expires_at > $1) \
        AND (t.replaced_by IS NULL OR t.replaced_by = '' OR t.grace_until > $1)) AS live_tokens";

impl Store {
    /// Every service account (`owner`: only those this user owns), by name.
    pub async fn service_accounts(
        &self,
        owner: Option<&str>,
    ) -> Result<Vec<ServiceAccount>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM service_accounts a \
             WHERE $2 IS NULL OR EXISTS (SELECT 1 FROM service_account_owners o \
                 WHERE o.account = a.username AND o.owner = $2) \
             ORDER BY a.username"
        ))
        .bind(now())
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let mut accounts = Vec::with_capacity(rows.len());
        for row in rows {
            let mut account = account_record(&row)?;
            account.owners = self.owners_of(&account.name).await?;
            accounts.push(account);
        }
        Ok(accounts)
    }

    /// The account with this name, in any case or Unicode form.
    pub async fn service_account(&self, name: &str) -> Result<ServiceAccount, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM service_accounts a JOIN users f \
             ON f.username = a.username WHERE a.username = $2 OR f.name_key = $3 \
             ORDER BY CASE WHEN a.username = $2 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(now())
        .bind(name)
        .bind(username_key(name))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NoSuchServiceAccount(name.to_string()));
        };
        let mut account = account_record(&row)?;
        account.owners = self.owners_of(&account.name).await?;
        Ok(account)
    }

    /// Whether `username` is a service account (its stored name).
    pub async fn is_service_account(&self, username: &str) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM service_accounts WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Whether `owner` (a stored name) looks after the account `account` (a stored name).
    pub async fn owns_service_account(
        &self,
        owner: &str,
        account: &str,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM service_account_owners WHERE account = $1 AND owner = $2",
        )
        .bind(account)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        Ok(found.is_some())
    }

    async fn owners_of(&self, account: &str) -> Result<Vec<ServiceAccountOwner>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT o.owner, CASE WHEN {ACTIVE_OWNER} THEN 1 ELSE 0 END AS active \
             FROM service_account_owners o JOIN users u ON u.username = o.owner \
             WHERE o.account = $1 ORDER BY o.owner"
        ))
        .bind(account)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ServiceAccountOwner {
                    username: row.try_get("owner")?,
                    active: row.try_get::<i64, _>("active")? != 0,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Makes `name` a service account looked after by `owners`, or (`replace`) gives an
    /// existing one this description and these owners. The account's user is created if
    /// the gateway does not know it; a person's account (one that signed in to the
    /// gateway, or was provisioned by SCIM) cannot become one. Owners must be users the gateway knows
    /// (signed in once, provisioned, or given a token) and not service accounts.
    /// Returns the account's stored name.
    pub async fn write_service_account(
        &self,
        name: &str,
        description: &str,
        owners: &[String],
        by: Option<&str>,
        replace: bool,
    ) -> Result<String, StoreError> {
        let name = if replace {
            self.service_account(name).await?.name
        } else {
            self.ensure_user(name, super::UserSource::Internal, None)
                .await?
        };
        let mut stored_owners = Vec::with_capacity(owners.len());
        for owner in owners {
            stored_owners.push(self.owner_name(owner, &name).await?);
        }
        stored_owners.sort();
        stored_owners.dedup();
        let now = now();
        let mut tx = self.pool.begin().await?;
        if replace {
            sqlx::query(
                "UPDATE service_accounts SET description = $1, updated_at = $2 WHERE username = $3",
            )
            .bind(description)
            .bind(now)
            .bind(&name)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM service_account_owners WHERE account = $1")
                .bind(&name)
                .execute(&mut *tx)
                .await?;
        } else {
            let person: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM users WHERE username = $1 \
                 AND (source = 'sso' OR scim_id IS NOT NULL OR last_sign_in_at IS NOT NULL)",
            )
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await?;
            if person.is_some() {
                return Err(StoreError::NotServiceAccount(
                    name,
                    "it is a person's account (signed in to the gateway, or provisioned by SCIM)",
                ));
            }
            let inserted = sqlx::query(
                "INSERT INTO service_accounts (username, description, created_at, created_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $3) ON CONFLICT DO NOTHING",
            )
            .bind(&name)
            .bind(description)
            .bind(now)
            .bind(by)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::NotServiceAccount(
                    name,
                    "a service account of this name exists already",
                ));
            }
        }
        for owner in &stored_owners {
            sqlx::query(
                "INSERT INTO service_account_owners (account, owner, added_at) VALUES ($1, $2, $3)",
            )
            .bind(&name)
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(name)
    }

    /// The stored name of a would-be owner of `account`.
    async fn owner_name(&self, owner: &str, account: &str) -> Result<String, StoreError> {
        let Some(user) = self.user(owner).await? else {
            return Err(StoreError::NotOwner(
                owner.to_string(),
                "the gateway does not know this user: owners must have signed in once, \
                 been provisioned by SCIM, or have a token",
            ));
        };
        if user.username == account {
            return Err(StoreError::NotOwner(
                user.username,
                "an account cannot own itself",
            ));
        }
        if self.is_service_account(&user.username).await? {
            return Err(StoreError::NotOwner(
                user.username,
                "it is a service account; owners are people",
            ));
        }
        Ok(user.username)
    }

    /// Removes the account's mark and owners; its user and (revoked) tokens stay for the
    /// audit log.
    pub async fn delete_service_account(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM service_accounts WHERE username = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchServiceAccount(name.to_string()));
        }
        Ok(())
    }

    /// Flags accounts that lost their last active owner and clears the flag of those
    /// that have one again; each change is returned once, whichever replica makes it.
    pub async fn mark_orphaned_service_accounts(&self) -> Result<Vec<OrphanChange>, StoreError> {
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
            "SELECT a.username, CASE WHEN a.orphaned_at IS NULL THEN 0 ELSE 1 END, \
                 CASE WHEN EXISTS (SELECT 1 FROM service_account_owners o \
                     JOIN users u ON u.username = o.owner \
                     WHERE o.account = a.username AND {ACTIVE_OWNER}) THEN 1 ELSE 0 END \
             FROM service_accounts a"
        ))
        .fetch_all(&self.pool)
        .await?;
        let mut changes = Vec::new();
        for (account, flagged, has_active) in rows {
            let orphaned = has_active == 0;
            if orphaned == (flagged != 0) {
                continue;
            }
            let done = if orphaned {
                sqlx::query(
                    "UPDATE service_accounts SET orphaned_at = $1 \
                     WHERE username = $2 AND orphaned_at IS NULL",
                )
                .bind(now())
                .bind(&account)
                .execute(&self.pool)
                .await?
            } else {
                sqlx::query(
                    "UPDATE service_accounts SET orphaned_at = NULL \
                     WHERE username = $1 AND orphaned_at IS NOT NULL",
                )
                .bind(&account)
                .execute(&self.pool)
                .await?
            };
            if done.rows_affected() == 1 {
                changes.push(OrphanChange { account, orphaned });
            }
        }
        Ok(changes)
    }
}

impl Store {
    /// For a service account, its active owners and their e-mail addresses (those
    /// known), who hear about its tokens; `None` for any other user.
    pub async fn service_account_audience(
        &self,
        username: &str,
    ) -> Result<Option<Vec<(String, Option<String>)>>, StoreError> {
        if !self.is_service_account(username).await? {
            return Ok(None);
        }
        let rows: Vec<(String, Option<String>)> = sqlx::query_as(&format!(
            "SELECT o.owner, u.email FROM service_account_owners o \
             JOIN users u ON u.username = o.owner WHERE o.account = $1 AND {ACTIVE_OWNER} \
             ORDER BY o.owner"
        ))
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(rows))
    }
}

fn account_record(row: &sqlx::any::AnyRow) -> Result<ServiceAccount, sqlx::Error> {
    Ok(ServiceAccount {
        name: row.try_get("username")?,
        description: row.try_get("description")?,
        owners: Vec::new(),
        created_at: row.try_get("created_at")?,
        created_by: row.try_get("created_by")?,
        updated_at: row.try_get("updated_at")?,
        orphaned_at: row.try_get("orphaned_at")?,
        live_tokens: row.try_get("live_tokens")?,
    })
}
