//! Trust policies for the CI token exchange, and the identity tokens already exchanged
//! (each `jti` is accepted once per issuer while it is valid).

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::core::scope::Scope;

/// One trust policy, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicyRecord {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    /// Claim name → exact value or glob.
    pub claims: BTreeMap<String, String>,
    /// The user the issued tokens act as.
    pub username: String,
    pub scope: Scope,
    /// Networks in CIDR notation; empty: from anywhere.
    pub allowed_addresses: Vec<String>,
    pub lifetime_seconds: i64,
    pub exchanges: i64,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "name, issuer, audience, claims, username, scope, allowed_addresses, \
     lifetime_seconds, exchanges, last_used_at, created_at, updated_at";

fn record(row: &AnyRow) -> Result<TrustPolicyRecord, sqlx::Error> {
    let claims: String = row.try_get("claims")?;
    let scope: String = row.try_get("scope")?;
    Ok(TrustPolicyRecord {
        name: row.try_get("name")?,
        issuer: row.try_get("issuer")?,
        audience: row.try_get("audience")?,
        // A row that cannot be read has no conditions, and such a policy is never used
        // (see `trust_policies_of`).
        claims: serde_json::from_str(&claims).unwrap_or_default(),
        username: row.try_get("username")?,
        scope: scope.parse().unwrap_or(Scope::Read),
        // One that cannot be read allows nowhere: the entry below is refused on issue.
        allowed_addresses: match row.try_get::<Option<String>, _>("allowed_addresses")? {
            None => Vec::new(),
            Some(text) => serde_json::from_str(&text)
                .unwrap_or_else(|_| vec![String::from("unreadable stored allowlist")]),
        },
        lifetime_seconds: row.try_get("lifetime_seconds")?,
        exchanges: row.try_get("exchanges")?,
        last_used_at: row.try_get("last_used_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn json_or_null(list: &[String]) -> Option<String> {
    (!list.is_empty()).then(|| serde_json::to_string(list).unwrap_or_default())
}

impl Store {
    pub async fn trust_policies(&self) -> Result<Vec<TrustPolicyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM trust_policies ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    /// The policies for tokens of `issuer`, by name.
    pub async fn trust_policies_of(
        &self,
        issuer: &str,
    ) -> Result<Vec<TrustPolicyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM trust_policies WHERE issuer = $1 ORDER BY name"
        ))
        .bind(issuer)
        .fetch_all(&self.pool)
        .await?;
        let policies: Vec<TrustPolicyRecord> = rows.iter().map(record).collect::<Result<_, _>>()?;
        // A stored policy always has conditions; one whose cannot be read matches nothing.
        Ok(policies
            .into_iter()
            .filter(|p| {
                let readable = !p.claims.is_empty();
                if !readable {
                    tracing::warn!(policy = %p.name, "a trust policy's stored conditions cannot be read; it is not used");
                }
                readable
            })
            .collect())
    }

    pub async fn trust_policy(&self, name: &str) -> Result<TrustPolicyRecord, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM trust_policies WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(record(&row)?),
            None => Err(StoreError::NoSuchTrustPolicy(name.to_string())),
        }
    }

    pub async fn create_trust_policy(&self, p: &TrustPolicyRecord) -> Result<(), StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO trust_policies ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, NULL, $9, $10)"
        ))
        .bind(&p.name)
        .bind(&p.issuer)
        .bind(&p.audience)
        .bind(serde_json::to_string(&p.claims).unwrap_or_default())
        .bind(&p.username)
        .bind(p.scope.as_str())
        .bind(json_or_null(&p.allowed_addresses))
        .bind(p.lifetime_seconds)
        .bind(p.created_at)
        .bind(p.updated_at)
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::TrustPolicyNameTaken(p.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces every field but the name, the counts and `created_at`.
    pub async fn update_trust_policy(&self, p: &TrustPolicyRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE trust_policies SET issuer = $2, audience = $3, claims = $4, username = $5, \
             scope = $6, allowed_addresses = $7, lifetime_seconds = $8, updated_at = $9 \
             WHERE name = $1",
        )
        .bind(&p.name)
        .bind(&p.issuer)
        .bind(&p.audience)
        .bind(serde_json::to_string(&p.claims).unwrap_or_default())
        .bind(&p.username)
        .bind(p.scope.as_str())
        .bind(json_or_null(&p.allowed_addresses))
        .bind(p.lifetime_seconds)
        .bind(p.updated_at)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchTrustPolicy(p.name.clone()));
        }
        Ok(())
    }

    pub async fn delete_trust_policy(&self, name: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM trust_policies WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchTrustPolicy(name.to_string()));
        }
        Ok(())
    }

    /// Counts one exchange under a policy.
    pub async fn count_exchange(&self, name: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE trust_policies SET exchanges = exchanges + 1, last_used_at = $2 WHERE name = $1",
        )
        .bind(name)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets an identity token whose exchange issued nothing, so that it can be tried
    /// again.
    pub async fn forget_identity_token(&self, issuer: &str, jti: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM exchanged_identity_tokens WHERE issuer = $1 AND jti = $2")
            .bind(issuer)
            .bind(jti)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records an identity token as exchanged; `false` when it was already (a replay).
    /// Entries past their expiry are dropped on the way.
    pub async fn first_use_of_identity_token(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        // Kept five minutes past expiry, the most `exchange.clock_skew` allows: a replica
        // whose clock runs ahead must not forget a jti that another still accepts.
        sqlx::query("DELETE FROM exchanged_identity_tokens WHERE expires_at < $1")
            .bind(now - 300)
            .execute(&self.pool)
            .await?;
        let done = sqlx::query(
            "INSERT INTO exchanged_identity_tokens (issuer, jti, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(issuer)
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await;
        match done {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
