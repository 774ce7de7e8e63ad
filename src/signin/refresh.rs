//! Keeping an SSO user's roles and status as the provider holds them: the refresh
//! token a sign-in brings is kept sealed, and the provider is asked again with it
//! (`grant_type=refresh_token`). A fresh ID token carries the roles and e-mail again;
//! `invalid_grant` means the provider no longer vouches for the user (disabled,
//! deleted, consent revoked). An unreachable provider says nothing about anyone.
//!
//! The roles a user carries upstream, and their administrator status, are set here for
//! every source (sign-in, SCIM Groups, re-validation), and each change is audited with
//! its source.

use std::time::Duration;

use openidconnect::core::CoreErrorResponseType;
use openidconnect::{Nonce, OAuth2TokenResponse, RefreshToken, RequestTokenError, TokenResponse};

use super::SignIn;
use crate::config::Sso;
use crate::core::text::outside_text;
use crate::store::{AuditEvent, Store, StoreError, FROM_SCIM};

/// What the sealed refresh tokens are bound to.
pub const SEAL_CONTEXT: &str = "sso refresh token";

/// What an SSO sign-in or re-validation says about a user.
#[derive(Debug, Clone)]
pub struct IdentityClaims {
    pub subject: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
}

/// How asking the provider again went.
#[derive(Debug)]
pub enum Refreshed {
    /// The provider still vouches for the user. `claims`: from the new ID token
    /// (`None` when it sent none); `refresh_token`: a new one, when it rotates them.
    Valid {
        claims: Option<IdentityClaims>,
        refresh_token: Option<String>,
    },
    /// `invalid_grant`: the user lost access at the provider.
    Refused(String),
    /// The provider could not be reached, or answered something else: nobody is
    /// suspended for it.
    Unreachable(String),
}

/// The e-mail and roles in an ID token's claims, as `sso.email_claim` and
/// `sso.roles_claim` name them.
pub(super) fn read_claims(
    settings: &Sso,
    claims: &serde_json::Value,
) -> (Option<String>, Vec<String>) {
    let email = claims
        .get(&settings.email_claim)
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let roles: Vec<String> = match claims.get(&settings.roles_claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    (email, roles)
}

/// When a user is asked again next: one period from now, less up to a fifth of it at
/// random, so that users who signed in together do not all come due together.
pub fn next_revalidation(every: Duration) -> i64 {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).expect("the operating system's random source failed");
    let fraction = f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX);
    let secs = every.as_secs_f64() * (1.0 - 0.2 * fraction);
    crate::core::time::now() + (secs.round() as i64).max(1)
}

impl SignIn {
    /// `sso.revalidate_every`, when SSO is on.
    pub fn revalidate_every(&self) -> Option<Duration> {
        self.oidc()?.settings.revalidate_every
    }

    /// Whether the user is an administrator with these roles: named in
    /// `signin.admin_users`, or holding one of `sso.admin_roles`.
    pub fn admin_for(&self, username: &str, roles: &[String]) -> bool {
        self.deploy.configured_admin(username)
            || self
                .oidc()
                .is_some_and(|o| roles.iter().any(|r| o.settings.admin_roles.contains(r)))
    }

    /// Sets the roles `source` reports for a user and the administrator status they
    /// give; a change is audited with its source. Answers whether the roles changed.
    pub async fn apply_roles(
        &self,
        store: &Store,
        username: &str,
        roles: &[String],
        source: &'static str,
        actor: Option<String>,
        ip: Option<String>,
    ) -> Result<bool, StoreError> {
        let admin = self.admin_for(username, roles);
        let Some(before) = store.set_roles(username, roles, source, admin).await? else {
            return Ok(false);
        };
        store
            .audit_or_log(AuditEvent {
                actor,
                action: "user.roles_changed",
                username: Some(username.to_string()),
                ip,
                detail: Some(serde_json::json!({
                    "source": source,
                    "from": before,
                    "to": roles,
                    "admin": admin,
                })),
                ..AuditEvent::default()
            })
            .await;
        Ok(true)
    }

    /// Whether SCIM Groups set this user's roles (a sign-in or re-validation then
    /// leaves them alone).
    pub async fn roles_pushed_by_scim(
        &self,
        store: &Store,
        username: &str,
    ) -> Result<bool, StoreError> {
        Ok(store.roles_and_source(username).await?.1.as_deref() == Some(FROM_SCIM))
    }

    pub fn seal_refresh_token(&self, token: &str) -> String {
        self.sealer.seal(token.as_bytes(), SEAL_CONTEXT)
    }

    /// The refresh token, or `None` if it cannot be opened (sealed under a token key no
    /// longer configured).
    pub fn open_refresh_token(&self, sealed: &str) -> Option<String> {
        let opened = self.sealer.open(sealed, SEAL_CONTEXT).ok()?;
        String::from_utf8(opened).ok()
    }

    /// After an SSO sign-in: keeps the provider's refresh token (or records that there
    /// is none) and lifts a suspension, which only a fresh SSO sign-in does.
    pub(super) async fn after_sso_sign_in(
        &self,
        store: &Store,
        username: &str,
        refresh_token: Option<&str>,
        ip: &str,
    ) -> Result<(), StoreError> {
        let every = self.revalidate_every().unwrap_or(Duration::from_secs(900));
        let sealed = refresh_token
            .filter(|_| self.revalidate_every().is_some())
            .map(|t| self.seal_refresh_token(t));
        store
            .keep_refresh_token(username, sealed.as_deref(), next_revalidation(every))
            .await?;
        if store.set_sso_suspended(username, false).await? {
            store
                .audit_or_log(AuditEvent {
                    actor: Some(username.to_string()),
                    action: "user.reinstated",
                    username: Some(username.to_string()),
                    ip: Some(ip.to_string()),
                    detail: Some(serde_json::json!({"source": "signin"})),
                    ..AuditEvent::default()
                })
                .await;
        }
        Ok(())
    }

    /// Asks the provider about a user again with their refresh token.
    pub async fn refresh_identity(&self, refresh_token: &str) -> Refreshed {
        let Some(oidc) = self.oidc() else {
            return Refreshed::Unreachable("SSO is not configured".into());
        };
        let metadata = match oidc.metadata().await {
            Ok(metadata) => metadata,
            Err(failure) => return Refreshed::Unreachable(failure.message),
        };
        let redirect = match oidc.redirect_url() {
            Ok(redirect) => redirect,
            Err(failure) => return Refreshed::Unreachable(failure.message),
        };
        let client = oidc.client(metadata, redirect);
        let token = RefreshToken::new(refresh_token.to_string());
        let request = match client.exchange_refresh_token(&token) {
            Ok(request) => request,
            Err(e) => {
                return Refreshed::Unreachable(format!("the provider has no token endpoint: {e}"))
            }
        };
        let http = oidc.http_fn();
        let answer = match request.request_async(&http).await {
            Ok(answer) => answer,
            Err(RequestTokenError::ServerResponse(error))
                if *error.error() == CoreErrorResponseType::InvalidGrant =>
            {
                let description = error
                    .error_description()
                    .map(|d| format!(": {}", outside_text(d, 200)))
                    .unwrap_or_default();
                return Refreshed::Refused(format!("invalid_grant{description}"));
            }
            Err(RequestTokenError::ServerResponse(error)) => {
                return Refreshed::Unreachable(format!(
                    "the provider answered {}",
                    outside_text(error.error().as_ref(), 60)
                ))
            }
            Err(e) => {
                return Refreshed::Unreachable(outside_text(&super::oidc::error_chain(&e), 300))
            }
        };
        let refresh_token = answer.refresh_token().map(|t| t.secret().clone());
        let Some(id_token) = answer.id_token() else {
            return Refreshed::Valid {
                claims: None,
                refresh_token,
            };
        };
        // A refreshed ID token carries no nonce (OpenID Connect Core §12.2); everything
        // else is verified as at sign-in.
        let verified =
            match id_token.claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(())) {
                Ok(verified) => verified,
                Err(e) => {
                    return Refreshed::Unreachable(format!(
                        "the provider's new ID token was refused: {}",
                        super::oidc::error_chain(&e)
                    ))
                }
            };
        let subject = verified.subject().as_str().to_string();
        let Some(payload) = super::oidc::payload(&id_token.to_string()) else {
            return Refreshed::Unreachable("the new ID token's claims could not be read".into());
        };
        let (email, roles) = read_claims(&oidc.settings, &payload);
        Refreshed::Valid {
            claims: Some(IdentityClaims {
                subject,
                email,
                roles,
            }),
            refresh_token,
        }
    }
}
