//! Token rows: creation, listing, revocation, the authentication lookup and last-use.
//!
//! Token rows carry no plaintext: only the keyed hash, and [`TokenRecord`] has no field
//! for even that, so no listing can leak it.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::core::cidr::IpNet;
use crate::core::scope::{MadeBy, Scope};
use crate::core::time::now;
use crate::core::token::{hex, TokenHash};

/// A token as listed to its owner or an administrator. No secret, no hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub username: String,
    pub name: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub last_used_ip: Option<String>,
    pub scope: Scope,
    /// Networks the token may be used from; empty: anywhere.
    pub allowed_addresses: Vec<String>,
    /// The expiration choice it was made with (`30d`, `never`, …); `None` for tokens
    /// made before choices were kept.
    pub expiration: Option<String>,
    /// The token this one replaced by rotation.
    pub rotated_from: Option<String>,
    /// The token that replaced this one by rotation.
    pub replaced_by: Option<String>,
    /// Until when a rotated-away token still works.
    pub grace_until: Option<i64>,
    /// How it was made; `None` for tokens made before that was kept.
    pub made_by: Option<MadeBy>,
}

/// What a new token is made with, besides its hash.
#[derive(Debug, Clone, Default)]
pub struct NewToken<'a> {
    pub username: &'a str,
    pub name: &'a str,
    pub key_id: Option<&'a str>,
    /// The instant `expires_at` was counted from, so that the token's lifetime is
    /// exactly its expiration choice.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub expiration: Option<&'a str>,
    pub scope: Scope,
    /// Empty: from anywhere.
    pub allowed_addresses: &'a [IpNet],
    pub made_by: MadeBy,
    /// Refuse it ([`StoreError::TooManyTokens`]) when its user would then have more
    /// active tokens than this (tokens from a token exchange not counted).
    pub max_active: Option<i64>,
}

/// What a rotation did.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub old: TokenRecord,
    pub new: TokenRecord,
}

/// What became of one reported leaked token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakOutcome {
    Revoked,
    AlreadyRevoked,
    Unknown,
}

/// What authentication needs to know about a presented token's hash.
#[derive(Debug, Clone)]
pub struct AuthRecord {
    pub token_id: String,
    pub username: String,
    pub expires_at: Option<i64>,
    pub revoked: bool,
    pub user_disabled: bool,
    /// The owner is an SSO user and administrators have switched SSO users' tokens off.
    pub sso_blocked: bool,
    /// The SSO provider refused to re-validate the owner: refused until they sign in
    /// through SSO again.
    pub sso_suspended: bool,
    /// The owner's roles: from SCIM Groups, a re-validation or the last SSO sign-in.
    pub roles: Vec<String>,
    pub last_used_at: Option<i64>,
    pub scope: Scope,
    /// `None`: from anywhere. A stored list that cannot be read allows nowhere.
    pub allowed_addresses: Option<Vec<IpNet>>,
    /// Set on a rotated-away token: a use at or after this instant is a reuse.
    pub grace_until: Option<i64>,
}

/// One last-use observation, written in batches.
#[derive(Debug, Clone)]
pub struct Usage {
    pub token_id: String,
    pub at: i64,
    pub ip: std::net::IpAddr,
}

fn new_token_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 12];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect()
}

pub(super) fn token_record(row: &AnyRow) -> Result<TokenRecord, sqlx::Error> {
    Ok(TokenRecord {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_used_at: row.try_get("last_used_at")?,
        last_used_ip: row.try_get("last_used_ip")?,
        scope: scope(row)?,
        allowed_addresses: row
            .try_get::<Option<String>, _>("allowed_addresses")?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default(),
        expiration: row.try_get("expiration")?,
        rotated_from: row.try_get("rotated_from")?,
        replaced_by: row.try_get("replaced_by")?,
        grace_until: row.try_get("grace_until")?,
        made_by: row
            .try_get::<Option<String>, _>("made_by")?
            .and_then(|m| m.parse().ok()),
    })
}

fn scope(row: &AnyRow) -> Result<Scope, sqlx::Error> {
    let text: String = row.try_get("scope")?;
    text.parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))
}

/// The condition of a token that works at the instant `now` (a placeholder): not
/// revoked, not expired, not rotated away past its grace. `t` prefixes the columns.
pub(super) fn active(t: &str, now: &str) -> String {
    format!(
        "{t}revoked_at IS NULL AND {} > {now} \
         AND ({t}grace_until IS NULL OR {t}grace_until > {now})",
        expiry(t)
    )
}

/// A token's expiry with "never" as the latest instant: the expression the expiry
/// index is built on (migration 0015), so that a range of expiries, or an order by
/// expiry, is read from that index on both databases.
pub(super) fn expiry(t: &str) -> String {
    format!("COALESCE({t}expires_at, 9223372036854775807)")
}

pub(super) const TOKEN_COLUMNS: &str =
    "id, username, name, created_at, expires_at, revoked_at, last_used_at, last_used_ip, \
     scope, allowed_addresses, expiration, rotated_from, replaced_by, grace_until, made_by";

/// Reads a stored allowlist; one that cannot be read allows nowhere (fails closed).
fn allowlist(text: &str) -> Vec<IpNet> {
    let entries: Option<Vec<String>> = serde_json::from_str(text).ok();
    let parsed = entries.and_then(|e| e.iter().map(|n| n.parse().ok()).collect());
    parsed.unwrap_or_else(|| {
        tracing::warn!("a token's stored address allowlist cannot be read; it allows nowhere");
        Vec::new()
    })
}

/// Inserts a token row inside `tx`.
async fn insert_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    new: &NewToken<'_>,
    hash: &TokenHash,
    rotated_from: Option<&str>,
) -> Result<TokenRecord, StoreError> {
    let allowed: Vec<String> = new
        .allowed_addresses
        .iter()
        .map(|n| n.to_string())
        .collect();
    let record = TokenRecord {
        id: new_token_id(),
        username: new.username.to_string(),
        name: new.name.to_string(),
        created_at: new.created_at,
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
        last_used_ip: None,
        scope: new.scope,
        expiration: new.expiration.map(str::to_string),
        rotated_from: rotated_from.map(str::to_string),
        replaced_by: None,
        grace_until: None,
        allowed_addresses: allowed,
        made_by: Some(new.made_by),
    };
    let allowed_json = (!record.allowed_addresses.is_empty())
        .then(|| serde_json::to_string(&record.allowed_addresses).unwrap_or_default());
    let inserted = sqlx::query(
        "INSERT INTO tokens (id, username, name, token_hash, created_at, expires_at, key_id, \
         scope, allowed_addresses, expiration, rotated_from, made_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&record.id)
    .bind(new.username)
    .bind(new.name)
    .bind(hex(hash))
    .bind(record.created_at)
    .bind(new.expires_at)
    .bind(new.key_id)
    .bind(new.scope.as_str())
    .bind(allowed_json)
    .bind(new.expiration)
    .bind(rotated_from)
    .bind(new.made_by.as_str())
    .execute(&mut **tx)
    .await;
    match inserted {
        Ok(_) => Ok(record),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::NameTaken(
            new.username.to_string(),
            new.name.to_string(),
        )),
        Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
            Err(StoreError::NoSuchUser(new.username.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

impl Store {
    /// Replaces live token `old_id` by a new one with the same name and rules under
    /// `hash`; the old one keeps working for `grace_secs`, and a use after that is a
    /// reuse ([`Store::revoke_family`]).
    pub async fn rotate_token(
        &self,
        old_id: &str,
        new: &NewToken<'_>,
        hash: &TokenHash,
        grace_secs: i64,
    ) -> Result<Rotated, StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        // A placeholder first, so that the unique live name is free for the new row;
        // the real successor id is written once it exists.
        let marked = sqlx::query(
            "UPDATE tokens SET replaced_by = '', rotated_at = $1, grace_until = $2 \
             WHERE id = $3 AND revoked_at IS NULL AND replaced_by IS NULL",
        )
        .bind(at)
        .bind(at + grace_secs)
        .bind(old_id)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() != 1 {
            return Err(StoreError::NoSuchToken(old_id.to_string()));
        }
        let created = insert_token(&mut tx, new, hash, Some(old_id)).await?;
        sqlx::query("UPDATE tokens SET replaced_by = $1 WHERE id = $2")
            .bind(&created.id)
            .bind(old_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Rotated {
            old: self.get_token(old_id).await?,
            new: created,
        })
    }

    /// A rotated-away token was used after its grace: revokes it and the rest of its
    /// family (successors, and predecessors still in their grace). Returns the others
    /// revoked, or `None` when another process
    /// (or an earlier use) got there first.
    pub async fn revoke_family(&self, old_id: &str) -> Result<Option<Vec<String>>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        let first = sqlx::query(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
             AND grace_until IS NOT NULL",
        )
        .bind(at)
        .bind(old_id)
        .execute(&mut *tx)
        .await?;
        if first.rows_affected() != 1 {
            return Ok(None);
        }
        let mut revoked = Vec::new();
        // Successors, then predecessors still in their grace. Bounded: a chain cannot
        // be longer than the table, and ids never repeat.
        for link in ["replaced_by", "rotated_from"] {
            let mut current = old_id.to_string();
            for _ in 0..10_000 {
                let next: Option<Option<String>> =
                    sqlx::query_scalar(&format!("SELECT {link} FROM tokens WHERE id = $1"))
                        .bind(&current)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(next) = next.flatten().filter(|n| !n.is_empty()) else {
                    break;
                };
                let done = sqlx::query(
                    "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(&next)
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() == 1 {
                    revoked.push(next.clone());
                }
                current = next;
            }
        }
        tx.commit().await?;
        Ok(Some(revoked))
    }

    /// Revokes the token stored under `hash`, reported as leaked.
    pub async fn revoke_leaked(
        &self,
        hash: &TokenHash,
    ) -> Result<(LeakOutcome, Option<TokenRecord>), StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE token_hash = $1"
        ))
        .bind(hex(hash))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok((LeakOutcome::Unknown, None));
        };
        let record = token_record(&row)?;
        let revoked =
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now())
                .bind(&record.id)
                .execute(&self.pool)
                .await?;
        if revoked.rows_affected() == 1 {
            Ok((
                LeakOutcome::Revoked,
                Some(self.get_token(&record.id).await?),
            ))
        } else {
            Ok((LeakOutcome::AlreadyRevoked, Some(record)))
        }
    }

    /// Stores a new token under its hash.
    pub async fn create_token(
        &self,
        username: &str,
        name: &str,
        hash: &TokenHash,
        expires_at: Option<i64>,
    ) -> Result<TokenRecord, StoreError> {
        self.create_token_keyed(username, name, hash, None, now(), expires_at)
            .await
    }

    /// Stores a new token under its hash, recording which key made the hash.
    /// `created_at` is the instant `expires_at` was counted from, so that a token's
    /// lifetime is exactly its expiration choice.
    pub async fn create_token_keyed(
        &self,
        username: &str,
        name: &str,
        hash: &TokenHash,
        key_id: Option<&str>,
        created_at: i64,
        expires_at: Option<i64>,
    ) -> Result<TokenRecord, StoreError> {
        let new = NewToken {
            username,
            name,
            key_id,
            created_at,
            expires_at,
            ..NewToken::default()
        };
        self.create_token_with(&new, hash).await
    }

    /// Stores a new token with its rules under its hash.
    pub async fn create_token_with(
        &self,
        new: &NewToken<'_>,
        hash: &TokenHash,
    ) -> Result<TokenRecord, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(max) = new.max_active {
            self.lock_user(&mut tx, new.username).await?;
            let record = insert_token(&mut tx, new, hash, None).await?;
            // Counted after the insert, inside the transaction that holds the lock, so
            // that two creations side by side cannot both pass.
            let active: i64 = sqlx::query_scalar(&format!(
                "SELECT COUNT(*) FROM tokens WHERE username = $1 AND {} \
                 AND (expiration IS NULL OR expiration <> 'exchange')",
                active("", "$2")
            ))
            .bind(new.username)
            .bind(now())
            .fetch_one(&mut *tx)
            .await?;
            if active > max {
                tx.rollback().await?;
                return Err(StoreError::TooManyTokens(new.username.to_string(), max));
            }
            tx.commit().await?;
            return Ok(record);
        }
        let record = insert_token(&mut tx, new, hash, None).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Holds `username`'s row until `tx` ends, so that checks of their tokens and the
    /// writes that follow are not interleaved with another process's. SQLite has one
    /// writer at a time and a deferred transaction becomes one at its first write: the
    /// insert that follows is that write, so nothing is needed there.
    async fn lock_user(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        username: &str,
    ) -> Result<(), StoreError> {
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT username FROM users WHERE username = $1 FOR UPDATE")
                .bind(username)
                .fetch_optional(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// A user's live tokens (expired ones included, revoked ones not), newest first.
    pub async fn live_tokens(&self, username: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE username = $1 AND revoked_at IS NULL \
             AND (grace_until IS NULL OR grace_until > $2) ORDER BY created_at DESC, id"
        ))
        .bind(username)
        .bind(now())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(token_record).collect::<Result<_, _>>()?)
    }

    /// Marks tokens that expired since the last sweep as logged and returns them, each
    /// exactly once across replicas.
    pub async fn take_newly_expired(&self, limit: i64) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE expiry_logged = FALSE \
             AND expires_at IS NOT NULL AND expires_at <= $1 AND revoked_at IS NULL \
             ORDER BY expires_at LIMIT $2"
        ))
        .bind(now())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut taken = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = token_record(row)?;
            let claimed = sqlx::query(
                "UPDATE tokens SET expiry_logged = TRUE WHERE id = $1 AND expiry_logged = FALSE",
            )
            .bind(&record.id)
            .execute(&self.pool)
            .await?;
            if claimed.rows_affected() == 1 {
                taken.push(record);
            }
        }
        Ok(taken)
    }

    /// Records `key_id` for hashes stored without one (made before ids were kept).
    pub async fn stamp_key_id(&self, key_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET key_id = $1 WHERE key_id IS NULL")
            .bind(key_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Moves a token's hash to the current key (`from` guards against a concurrent
    /// change).
    pub async fn rehash(
        &self,
        token_id: &str,
        from: &TokenHash,
        to: &TokenHash,
        key_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tokens SET token_hash = $1, key_id = $2 WHERE id = $3 AND token_hash = $4",
        )
        .bind(hex(to))
        .bind(key_id)
        .bind(token_id)
        .bind(hex(from))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Live (not revoked, not expired) tokens per key id.
    pub async fn live_tokens_by_key(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT COALESCE(key_id, '') AS key_id, COUNT(*) AS n FROM tokens \
             WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) \
             AND (grace_until IS NULL OR grace_until > $1) \
             GROUP BY COALESCE(key_id, '')",
        )
        .bind(now())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key_id")?, r.try_get("n")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Revokes the live tokens stored under `key_id`; returns their ids.
    pub async fn revoke_by_key(&self, key_id: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE key_id = $1 AND revoked_at IS NULL"
        ))
        .bind(key_id)
        .fetch_all(&self.pool)
        .await?;
        let mut revoked = Vec::new();
        for row in &rows {
            let record = token_record(row)?;
            revoked.push(self.revoke_token(&record.id).await?);
        }
        Ok(revoked)
    }

    /// A user's tokens, newest first, revoked ones included.
    pub async fn list_tokens(&self, username: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE username = $1 ORDER BY created_at DESC, id"
        ))
        .bind(username)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(token_record).collect::<Result<_, _>>()?)
    }

    /// One token by id.
    pub async fn get_token(&self, id: &str) -> Result<TokenRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(token_record(&row)?),
            None => Err(StoreError::NoSuchToken(id.to_string())),
        }
    }

    /// Marks a token revoked (kept for audit). Revoking twice is not an error.
    pub async fn revoke_token(&self, id: &str) -> Result<TokenRecord, StoreError> {
        sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        self.get_token(id).await
    }

    /// What authentication needs for one hash, in one indexed query.
    pub async fn lookup(&self, hash: &TokenHash) -> Result<Option<AuthRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT t.id, t.username, t.expires_at, t.revoked_at, t.last_used_at, u.roles, \
             t.scope, t.allowed_addresses, t.grace_until, \
             CASE WHEN u.disabled THEN 1 ELSE 0 END AS disabled, \
             CASE WHEN u.sso_suspended_at IS NULL THEN 0 ELSE 1 END AS suspended, \
             CASE WHEN u.source = 'sso' AND NOT s.sso_pat_creation_enabled THEN 1 ELSE 0 END \
             AS sso_blocked \
             FROM tokens t JOIN users u ON u.username = t.username \
             LEFT JOIN settings s ON s.id = 1 WHERE t.token_hash = $1",
        )
        .bind(hex(hash))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AuthRecord {
            token_id: row.try_get("id")?,
            username: row.try_get("username")?,
            expires_at: row.try_get("expires_at")?,
            revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
            last_used_at: row.try_get("last_used_at")?,
            user_disabled: row.try_get::<i64, _>("disabled")? != 0,
            sso_blocked: row.try_get::<i64, _>("sso_blocked")? != 0,
            sso_suspended: row.try_get::<i64, _>("suspended")? != 0,
            roles: row
                .try_get::<Option<String>, _>("roles")?
                .and_then(|r| serde_json::from_str(&r).ok())
                .unwrap_or_default(),
            scope: scope(&row)?,
            allowed_addresses: row
                .try_get::<Option<String>, _>("allowed_addresses")?
                .map(|text| allowlist(&text)),
            grace_until: row.try_get("grace_until")?,
        }))
    }
}
