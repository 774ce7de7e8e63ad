//! Service accounts: the flag on an account that has no active owner left (an owner
//! disabled, deprovisioned by SCIM or suspended by the identity provider), audited once
//! when it is set and once when it clears, and the retirement of an account.

use crate::store::{AuditEvent, Store, StoreError};

/// Flags accounts that lost their last active owner and clears the flag of those that
/// have one again, each change audited (`service_account.orphaned`,
/// `service_account.owner_restored`) by whichever replica makes it. Called after every
/// change of a user's access and by the once-a-minute housekeeping (which catches
/// suspensions by the identity provider).
pub async fn check_owners(store: &Store) -> Result<(), StoreError> {
    for change in store.mark_orphaned_service_accounts().await? {
        if change.orphaned {
            tracing::warn!(
                account = %change.account,
                "service account has no active owner left; name new owners (patgate service-account set-owners, or the Service accounts page)"
            );
        }
        store
            .audit_or_log(AuditEvent {
                action: if change.orphaned {
                    "service_account.orphaned"
                } else {
                    "service_account.owner_restored"
                },
                username: Some(change.account),
                ..AuditEvent::default()
            })
            .await;
    }
    Ok(())
}

/// Retires a service account: its live tokens are revoked (each audited as
/// `token.deleted`), then the account and its owners are forgotten; its user stays,
/// so that the audit log keeps naming it.
pub async fn delete(
    store: &Store,
    name: &str,
    actor: Option<String>,
    ip: String,
    via: Option<&'static str>,
) -> Result<usize, StoreError> {
    let account = store.service_account(name).await?;
    let tokens = store.live_tokens(&account.name).await?;
    super::access::delete_all_tokens(store, &account.name, actor.clone(), ip.clone(), via).await?;
    store.delete_service_account(&account.name).await?;
    store
        .audit_or_log(AuditEvent {
            actor,
            action: "service_account.deleted",
            username: Some(account.name),
            ip: Some(ip),
            detail: Some(serde_json::json!({"revoked_tokens": tokens.len(), "via": via})),
            ..AuditEvent::default()
        })
        .await;
    Ok(tokens.len())
}
