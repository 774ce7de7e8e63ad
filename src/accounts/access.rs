//! Disabling, enabling and clearing out a user: the same operation whether an
//! administrator asks through the API, an identity provider through SCIM, or an
//! operator through the command line. Each change is audited; tokens stop on every
//! replica within a second through the store's change feed.

use crate::store::{AuditEvent, Store, StoreError};

/// Disables or enables a user, the one way every caller does it (this API, SCIM): the
/// flag, whose change evicts the user's cached tokens on every replica within a second;
/// when disabled, the end of their browser sessions; an audit entry (`via` names the
/// channel in its detail when it is not this API).
pub async fn change_access(
    store: &Store,
    username: &str,
    disabled: bool,
    actor: Option<String>,
    ip: String,
    via: Option<&'static str>,
) -> Result<(), StoreError> {
    store.set_user_disabled(username, disabled).await?;
    if disabled {
        store.delete_user_sessions(username).await?;
    }
    // An owner's change of access may leave a service account without one, or give it one.
    if let Err(e) = super::service::check_owners(store).await {
        tracing::warn!(error = %e, "could not check service accounts' owners");
    }
    store
        .audit_or_log(AuditEvent {
            actor,
            action: if disabled {
                "user.disabled"
            } else {
                "user.enabled"
            },
            username: Some(username.to_string()),
            ip: Some(ip),
            detail: via.map(|via| serde_json::json!({ "via": via })),
            ..AuditEvent::default()
        })
        .await;
    Ok(())
}

/// Deletes every live token of a user, each audited (`via` as in [`change_access`]).
pub async fn delete_all_tokens(
    store: &Store,
    username: &str,
    actor: Option<String>,
    ip: String,
    via: Option<&'static str>,
) -> Result<(), StoreError> {
    for token in store.live_tokens(username).await? {
        store.revoke_token(&token.id).await?;
        let mut detail = serde_json::json!({"name": token.name});
        if let Some(via) = via {
            detail["via"] = via.into();
        }
        store
            .audit_or_log(AuditEvent {
                actor: actor.clone(),
                action: "token.deleted",
                username: Some(username.to_string()),
                token_id: Some(token.id),
                ip: Some(ip.clone()),
                detail: Some(detail),
            })
            .await;
    }
    Ok(())
}
