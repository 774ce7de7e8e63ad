//! Revoking a token reported as leaked (by a secret scanner, the API or the command
//! line), tried under every configured key, audited with the report's source; the
//! owner is told by e-mail off the caller's path.

use crate::core::token::{self, TokenHasher};
use crate::notify::Notifier;
use crate::store::{AuditEvent, LeakOutcome, Store, StoreError, TokenRecord};

/// Revokes one reported token (tried under every configured key) and audits it with
/// its source; the record is returned when it was revoked now, for the owner's e-mail.
pub async fn revoke(
    store: &Store,
    hasher: &TokenHasher,
    token: &str,
    ip: Option<&str>,
    detail: serde_json::Value,
) -> Result<(&'static str, Option<TokenRecord>), StoreError> {
    let presented = token.trim().as_bytes();
    if token::check_format(presented).is_err() {
        return Ok(("malformed", None));
    }
    let mut hashes = vec![hasher.hash(presented)];
    if hasher.rotating() {
        hashes.extend(
            hasher
                .previous_hashes(presented)
                .into_iter()
                .map(|(_, h)| h),
        );
    }
    for hash in &hashes {
        let (outcome, record) = store.revoke_leaked(hash).await?;
        let Some(record) = record else { continue };
        if outcome == LeakOutcome::Revoked {
            store
                .audit(AuditEvent {
                    actor: None,
                    action: "token.leaked_revoked",
                    username: Some(record.username.clone()),
                    token_id: Some(record.id.clone()),
                    ip: ip.map(str::to_string),
                    detail: Some(detail),
                })
                .await?;
            return Ok(("revoked", Some(record)));
        }
        return Ok(("already_revoked", None));
    }
    Ok(("unknown", None))
}

/// E-mails the owner off the report's path; a failure is logged.
pub fn tell_owner(notifier: &std::sync::Arc<Notifier>, record: TokenRecord) {
    let notifier = notifier.clone();
    tokio::spawn(async move {
        match notifier.tell_leaked(&record).await {
            Ok(true) => tracing::info!(token_id = record.id, "told the owner of a leaked token"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(token_id = record.id, error = %e, "could not e-mail the owner of a leaked token")
            }
        }
    });
}
