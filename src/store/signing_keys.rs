//! The JWT signing keys every replica shares: sealed private keys and their public
//! JWKs, by algorithm and the instant each starts signing.

use sqlx::Row;

use super::{Store, StoreError};
use crate::core::time::now;

/// A signing key as stored; `sealed_key` is the sealed PKCS#8 private key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub sealed_key: String,
    pub public_jwk: serde_json::Value,
    pub not_before: i64,
}

impl Store {
    /// The keys of `alg`, oldest first.
    pub async fn signing_keys(&self, alg: &str) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT kid, alg, sealed_key, public_jwk, not_before FROM signing_keys \
             WHERE alg = $1 ORDER BY not_before, kid",
        )
        .bind(alg)
        .fetch_all(&self.pool)
        .await?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let jwk: String = row.try_get("public_jwk")?;
            keys.push(StoredKey {
                kid: row.try_get("kid")?,
                alg: row.try_get("alg")?,
                sealed_key: row.try_get("sealed_key")?,
                public_jwk: serde_json::from_str(&jwk).unwrap_or_default(),
                not_before: row.try_get("not_before")?,
            });
        }
        Ok(keys)
    }

    pub async fn add_signing_key(&self, key: &StoredKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, sealed_key, public_jwk, created_at, not_before) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.sealed_key)
        .bind(key.public_jwk.to_string())
        .bind(now())
        .bind(key.not_before)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Replaces a key's sealed form (sealed again under the current token key).
    pub async fn reseal_signing_key(&self, kid: &str, sealed: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE signing_keys SET sealed_key = $1 WHERE kid = $2")
            .bind(sealed)
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes a key that no longer signs and whose last JWT has expired.
    pub async fn remove_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
