//! Linking an existing user to an SSO identity: after it, an SSO sign-in with that
//! provider subject becomes this user (an internal or LDAP one included, who keeps
//! their source). Without a link, an SSO sign-in never takes over a user it did not
//! create. The same operation for the API and the command line; each change audited.

use crate::store::{AuditEvent, Store, StoreError};

/// Why a link cannot be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("SSO is not configured on this gateway (no sso.issuer)")]
    NoSso,
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("subject {subject:?} is linked to {holder:?} already; unlink that user first")]
    SubjectTaken { subject: String, holder: String },
    #[error("user {user:?} is linked to subject {subject:?} already; unlink it first")]
    UserLinked { user: String, subject: String },
    #[error("user {0:?} is not linked to an SSO identity")]
    NotLinked(String),
    #[error("subject: give the provider's subject (the ID token's sub), 1 to 255 characters without control characters")]
    BadSubject,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Who asks, for the audit log.
pub struct Requester {
    pub actor: String,
    pub ip: Option<String>,
}

/// Links `username` to `subject` at `issuer` (`None`: SSO is off); returns the user's
/// stored name.
pub async fn link(
    store: &Store,
    issuer: Option<&str>,
    username: &str,
    subject: &str,
    by: Requester,
) -> Result<String, LinkError> {
    if !crate::core::pattern::is_subject(subject) {
        return Err(LinkError::BadSubject);
    }
    let subject = subject.trim();
    let issuer = issuer.ok_or(LinkError::NoSso)?;
    let user = store
        .user(username)
        .await?
        .ok_or_else(|| LinkError::NoSuchUser(username.to_string()))?;
    if let Some(holder) = store.sso_identity(issuer, subject).await? {
        if holder == user.username {
            return Ok(holder);
        }
        return Err(LinkError::SubjectTaken {
            subject: subject.to_string(),
            holder,
        });
    }
    if let Some(existing) = store.sso_subject(issuer, &user.username).await? {
        return Err(LinkError::UserLinked {
            user: user.username,
            subject: existing,
        });
    }
    if !store
        .bind_sso_identity(issuer, subject, &user.username, Some(&by.actor))
        .await?
    {
        // Someone else's link landed in between.
        return Err(LinkError::SubjectTaken {
            subject: subject.to_string(),
            holder: store
                .sso_identity(issuer, subject)
                .await?
                .unwrap_or_default(),
        });
    }
    store
        .audit_or_log(AuditEvent {
            actor: Some(by.actor),
            action: "user.sso_linked",
            username: Some(user.username.clone()),
            ip: by.ip,
            detail: Some(serde_json::json!({"issuer": issuer, "subject": subject})),
            ..AuditEvent::default()
        })
        .await;
    Ok(user.username)
}

/// Removes the user's link at `issuer`: their next SSO sign-in is refused (an internal
/// or LDAP user) or binds anew (an SSO user).
pub async fn unlink(
    store: &Store,
    issuer: Option<&str>,
    username: &str,
    by: Requester,
) -> Result<String, LinkError> {
    let issuer = issuer.ok_or(LinkError::NoSso)?;
    let user = store
        .user(username)
        .await?
        .ok_or_else(|| LinkError::NoSuchUser(username.to_string()))?;
    if !store.unbind_sso_identity(issuer, &user.username).await? {
        return Err(LinkError::NotLinked(user.username));
    }
    store
        .audit_or_log(AuditEvent {
            actor: Some(by.actor),
            action: "user.sso_unlinked",
            username: Some(user.username.clone()),
            ip: by.ip,
            detail: Some(serde_json::json!({"issuer": issuer})),
            ..AuditEvent::default()
        })
        .await;
    Ok(user.username)
}
