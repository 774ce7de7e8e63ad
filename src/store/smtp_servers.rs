//! `notification.PatSmtpServer` items. The password is kept sealed: the row type holds
//! only the ciphertext ([`SealedPassword`]), so no listing or log can show it.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::core::time::now;

/// A password as stored: `v1:` + base64 of nonce and AES-256-GCM ciphertext. Opening
/// it takes the server's key (`notify::secret`).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedPassword(pub String);

impl std::fmt::Debug for SealedPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealedPassword(<sealed>)")
    }
}

/// One SMTP server item.
#[derive(Debug, Clone)]
pub struct SmtpServerRecord {
    /// Full path, generated at creation (`Configuration/SMTPSERVERTEST`); never changes.
    pub id: String,
    /// Unique display name.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<SealedPassword>,
    pub from_address: String,
    pub test_address: Option<String>,
    /// JavaMail properties as the administrator wrote them, understood or not.
    pub properties: BTreeMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, name, host, port, username, password_sealed, from_address, \
     test_address, properties, created_at, updated_at";

fn record(row: &AnyRow) -> Result<SmtpServerRecord, sqlx::Error> {
    let properties: String = row.try_get("properties")?;
    let port: i64 = row.try_get("port")?;
    Ok(SmtpServerRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        host: row.try_get("host")?,
        port: u16::try_from(port).unwrap_or(0),
        username: row.try_get("username")?,
        password: row
            .try_get::<Option<String>, _>("password_sealed")?
            .map(SealedPassword),
        from_address: row.try_get("from_address")?,
        test_address: row.try_get("test_address")?,
        properties: serde_json::from_str(&properties).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn smtp_servers(&self) -> Result<Vec<SmtpServerRecord>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM smtp_servers ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
    }

    pub async fn smtp_server(&self, id: &str) -> Result<SmtpServerRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM smtp_servers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        match row {
            Some(row) => Ok(record(&row)?),
            None => Err(StoreError::NoSuchSmtpServer(id.to_string())),
        }
    }

    /// Stores a new item; `record.id` must already be generated.
    pub async fn create_smtp_server(&self, record: &SmtpServerRecord) -> Result<(), StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO smtp_servers ({COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(&record.id)
        .bind(&record.name)
        .bind(&record.host)
        .bind(i64::from(record.port))
        .bind(record.username.as_deref())
        .bind(record.password.as_ref().map(|p| p.0.as_str()))
        .bind(&record.from_address)
        .bind(record.test_address.as_deref())
        .bind(properties_json(&record.properties))
        .bind(record.created_at)
        .bind(record.updated_at)
        .execute(&self.pool)
        .await;
        self.name_taken(done, &record.name)
    }

    /// Replaces every field but `id` and `created_at`.
    pub async fn update_smtp_server(&self, record: &SmtpServerRecord) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE smtp_servers SET name = $2, host = $3, port = $4, username = $5, \
             password_sealed = $6, from_address = $7, test_address = $8, properties = $9, \
             updated_at = $10 WHERE id = $1",
        )
        .bind(&record.id)
        .bind(&record.name)
        .bind(&record.host)
        .bind(i64::from(record.port))
        .bind(record.username.as_deref())
        .bind(record.password.as_ref().map(|p| p.0.as_str()))
        .bind(&record.from_address)
        .bind(record.test_address.as_deref())
        .bind(properties_json(&record.properties))
        .bind(now())
        .execute(&self.pool)
        .await;
        if matches!(&done, Ok(d) if d.rows_affected() == 0) {
            return Err(StoreError::NoSuchSmtpServer(record.id.clone()));
        }
        self.name_taken(done, &record.name)
    }

    fn name_taken(
        &self,
        done: Result<sqlx::any::AnyQueryResult, sqlx::Error>,
        name: &str,
    ) -> Result<(), StoreError> {
        match done {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::SmtpServerNameTaken(name.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an item, unless the notification settings send through it.
    pub async fn delete_smtp_server(&self, id: &str) -> Result<(), StoreError> {
        let in_use: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM notify_settings WHERE smtp_server_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?;
        if in_use > 0 {
            return Err(StoreError::SmtpServerInUse(id.to_string()));
        }
        let done = sqlx::query("DELETE FROM smtp_servers WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await;
        match done {
            Ok(d) if d.rows_affected() == 0 => Err(StoreError::NoSuchSmtpServer(id.to_string())),
            Ok(_) => Ok(()),
            // Chosen by the settings between the check and the delete.
            Err(sqlx::Error::Database(e)) if e.is_foreign_key_violation() => {
                Err(StoreError::SmtpServerInUse(id.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether an id is taken (ids outlive renames, so a new name may collide).
    pub async fn smtp_server_exists(&self, id: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM smtp_servers WHERE id = $1")
            .bind(id)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }
}

fn properties_json(properties: &BTreeMap<String, String>) -> String {
    serde_json::to_string(properties).unwrap_or_else(|_| "{}".into())
}
