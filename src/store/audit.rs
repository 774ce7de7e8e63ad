//! The audit log: who did what, when, from where. Never a secret: callers pass names,
//! ids, addresses and reason codes only. Every entry is bounded whatever a caller
//! passes: names and addresses at [`MAX_FIELD_CHARS`], each text in the detail at
//! [`MAX_DETAIL_TEXT_CHARS`], so that no request can grow the log by more than a row.

use sqlx::Row;

use super::{Store, StoreError};
use crate::core::time::now;

/// Longest actor, username, token id or address kept.
pub const MAX_FIELD_CHARS: usize = 255;
/// Longest text kept in an entry's detail (a template, a server's answer).
pub const MAX_DETAIL_TEXT_CHARS: usize = 2_000;

fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text,
    }
}

fn cut_detail(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(cut(text, MAX_DETAIL_TEXT_CHARS)),
        Value::Array(items) => Value::Array(items.into_iter().map(cut_detail).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (cut(k, MAX_FIELD_CHARS), cut_detail(v)))
                .collect(),
        ),
        other => other,
    }
}

/// One audit entry to write.
#[derive(Debug, Clone, Default)]
pub struct AuditEvent {
    /// Who acted (a username), or `None` for the gateway itself.
    pub actor: Option<String>,
    /// A stable dotted name: `token.created`, `signin.failed`, …
    pub action: &'static str,
    /// The user the action concerns.
    pub username: Option<String>,
    pub token_id: Option<String>,
    pub ip: Option<String>,
    /// Extra facts as a JSON object (no secrets).
    pub detail: Option<serde_json::Value>,
}

/// One audit entry as read back.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: i64,
    pub at: i64,
    pub actor: Option<String>,
    pub action: String,
    pub username: Option<String>,
    pub token_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// Filters for reading the log; all optional.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub username: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub offset: i64,
    pub limit: i64,
}

impl Store {
    pub async fn audit(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.audit_at(now(), event).await
    }

    /// Writes an audit entry where a failure must not fail the action: it is logged,
    /// never shown to the caller.
    pub async fn audit_or_log(&self, event: AuditEvent) {
        let action = event.action;
        if let Err(e) = self.audit(event).await {
            tracing::warn!(error = %e, action, "could not write an audit entry");
        }
    }

    pub async fn audit_at(&self, at: i64, event: AuditEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit (at, actor, action, username, token_id, ip, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(at)
        .bind(event.actor.map(|a| cut(a, MAX_FIELD_CHARS)))
        .bind(event.action)
        .bind(event.username.map(|u| cut(u, MAX_FIELD_CHARS)))
        .bind(event.token_id.map(|t| cut(t, MAX_FIELD_CHARS)))
        .bind(event.ip.map(|ip| cut(ip, MAX_FIELD_CHARS)))
        .bind(event.detail.map(|d| cut_detail(d).to_string()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes at most `limit` entries written before `before` (seconds), oldest
    /// first through the index on `at`; returns how many went.
    pub async fn prune_audit(&self, before: i64, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM audit WHERE id IN \
             (SELECT id FROM audit WHERE at < $1 ORDER BY at LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Entries matching `query`, newest first, and how many match in all.
    pub async fn read_audit(
        &self,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditEntry>, i64), StoreError> {
        const FILTER: &str = "($1 IS NULL OR username = $1) AND ($2 IS NULL OR action = $2) \
             AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at <= $4)";
        let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM audit WHERE {FILTER}"))
            .bind(query.username.as_deref())
            .bind(query.action.as_deref())
            .bind(query.since)
            .bind(query.until)
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT id, at, actor, action, username, token_id, ip, detail FROM audit \
             WHERE {FILTER} ORDER BY at DESC, id DESC LIMIT $5 OFFSET $6"
        ))
        .bind(query.username.as_deref())
        .bind(query.action.as_deref())
        .bind(query.since)
        .bind(query.until)
        .bind(query.limit)
        .bind(query.offset)
        .fetch_all(&self.pool)
        .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in rows {
            let detail: Option<String> = row.try_get("detail")?;
            entries.push(AuditEntry {
                id: row.try_get("id")?,
                at: row.try_get("at")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                username: row.try_get("username")?,
                token_id: row.try_get("token_id")?,
                ip: row.try_get("ip")?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
            });
        }
        Ok((entries, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_everywhere_in_the_detail() {
        let detail =
            serde_json::json!({"reason": "x".repeat(60_000), "list": ["y".repeat(3_000), 7]});
        let cut = cut_detail(detail);
        assert_eq!(
            cut["reason"].as_str().unwrap().chars().count(),
            MAX_DETAIL_TEXT_CHARS + 1
        );
        assert_eq!(
            cut["list"][0].as_str().unwrap().chars().count(),
            MAX_DETAIL_TEXT_CHARS + 1
        );
        assert_eq!(cut["list"][1], 7);
        assert_eq!(super::cut("short".into(), 10), "short");
    }
}
