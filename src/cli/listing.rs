//! How the token commands print tokens (a table, JSON), and `token revoke --leaked`.

use super::say;
use crate::config::Config;
use crate::core::token::TokenHasher;
use crate::store::{self, TokenRecord};

/// RFC 3339 in UTC, or `null`.
pub fn rfc3339(secs: Option<i64>) -> serde_json::Value {
    match secs {
        Some(s) if s >= 0 => {
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s as u64);
            humantime::format_rfc3339_seconds(at).to_string().into()
        }
        _ => serde_json::Value::Null,
    }
}

pub(super) fn record_json(r: &TokenRecord) -> serde_json::Value {
    serde_json::json!({
        "id": r.id,
        "user": r.username,
        "name": r.name,
        "created_at": rfc3339(Some(r.created_at)),
        "expires_at": rfc3339(r.expires_at),
        "revoked_at": rfc3339(r.revoked_at),
        "last_used_at": rfc3339(r.last_used_at),
        "last_used_ip": r.last_used_ip,
        "scope": r.scope,
        "allowed_addresses": r.allowed_addresses,
        "rotated_from": r.rotated_from,
        "replaced_by": r.replaced_by.as_deref().filter(|s| !s.is_empty()),
        "grace_until": rfc3339(r.grace_until),
    })
}

/// `token revoke --leaked`: the tokens on standard input, one per line, revoked as the
/// leaked-token endpoint would; one line of output per token, never whose it was.
pub(super) async fn revoke_leaked(
    config: &Config,
    store: &store::Store,
    hasher: &TokenHasher,
) -> anyhow::Result<(String, bool)> {
    let input = tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin()))
        .await?
        .map_err(|e| anyhow::anyhow!("could not read tokens from standard input: {e}"))?;
    let lines: Vec<&str> = input
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        anyhow::bail!("no tokens on standard input; give one per line");
    }
    let notifier = crate::notify::Notifier::new(
        config,
        store.clone(),
        std::sync::Arc::new(crate::metrics::Metrics::default()),
    )?;
    let mut out = Vec::new();
    let mut changed = false;
    for (i, line) in lines.iter().enumerate() {
        let detail = serde_json::json!({"via": "patgate-cli"});
        let (result, revoked) =
            crate::accounts::leaked::revoke(store, hasher, line, None, detail).await?;
        if let Some(record) = revoked {
            changed = true;
            if let Err(e) = notifier.tell_leaked(&record).await {
                say(&format!("line {}: could not e-mail the owner: {e}", i + 1));
            }
        }
        out.push(format!("line {}: {result}", i + 1));
    }
    Ok((out.join("\n"), changed))
}

pub(super) fn table(records: &[TokenRecord]) -> String {
    let show = |v: serde_json::Value| v.as_str().unwrap_or("-").to_string();
    let mut out = format!(
        "{:<14} {:<24} {:<22} {:<22} {:<8} {:<7}",
        "ID", "NAME", "CREATED", "EXPIRES", "STATE", "SCOPE"
    );
    for r in records {
        let state = if r.revoked_at.is_some() {
            "revoked"
        } else if r.grace_until.is_some_and(|g| g <= crate::core::time::now()) {
            "rotated"
        } else if r.expires_at.is_some_and(|e| e <= crate::core::time::now()) {
            "expired"
        } else {
            "active"
        };
        let expires = if r.expires_at.is_none() {
            "never".to_string()
        } else {
            show(rfc3339(r.expires_at))
        };
        out.push_str(&format!(
            "\n{:<14} {:<24} {:<22} {:<22} {:<8} {:<7}",
            r.id,
            r.name,
            show(rfc3339(Some(r.created_at))),
            expires,
            state,
            r.scope.as_str()
        ));
    }
    out
}
