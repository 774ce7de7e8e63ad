//! `/patgate/api/v1/me`: who the caller is and what they may do now (the expiration
//! choices under the admin maximum, whether they may create tokens and, if not, the
//! message to show), and their e-mail address for expiry notices.

use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiRef, JsonBody};
use crate::api::caller::{Caller, Via};
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::store::{AuditEvent, UserSource};
use crate::tokens::issue::SSO_CREATION_DISABLED;

/// What the pages need to know about the signed-in user.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub username: String,
    /// `internal`, `ldap` or `sso`.
    pub source: String,
    pub email: Option<String>,
    pub admin: bool,
    /// The expiration choices this user may pick now, shortest first.
    pub expiration_choices: Vec<String>,
    /// The administrators' maximum (`never`: no maximum).
    pub max_token_expiration: String,
    pub token_creation_allowed: bool,
    /// Why creation is not allowed (the seed's banner or informational message).
    pub token_creation_message: Option<String>,
    /// False for an SSO user without tokens while creation is disabled: show only the message.
    pub token_list_visible: bool,
    /// The user's live tokens (expired included).
    pub token_count: usize,
    /// For a browser session: send it as `X-CSRF-Token` on every state change.
    pub csrf_token: Option<String>,
}

/// The caller's e-mail address for expiry notices.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutMe {
    /// An e-mail address, or null to remove it. SSO users get theirs from the provider.
    #[schema(schema_with = pattern::email_or_nothing_schema)]
    pub email: Option<String>,
}

/// Who the caller is and what they may do.
#[utoipa::path(get, path = "/patgate/api/v1/me", tag = "me", operation_id = "me_get",
    security(("password" = []), ("session" = [])),
    responses((status = 200, body = Me)))]
pub async fn get_me(State(api): State<ApiRef>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    Ok(Json(describe(&api, &caller).await?))
}

pub async fn describe(api: &super::Api, caller: &Caller) -> Result<Me, ApiError> {
    let settings = api.store.settings().await?;
    let user = api.store.user(&caller.username).await?;
    let source = user.as_ref().map(|u| u.source).unwrap_or(caller.source);
    let token_count = api.store.live_tokens(&caller.username).await?.len();
    let sso_blocked = source == UserSource::Sso && !settings.sso_pat_creation_enabled;
    let message = sso_blocked.then(|| {
        if token_count == 0 {
            format!("{SSO_CREATION_DISABLED} Sign in with SSO to use Deploy; API clients should use OpenID Connect.")
        } else {
            format!("{SSO_CREATION_DISABLED} Your existing tokens are listed, but they do not authenticate while this is switched off.")
        }
    });
    Ok(Me {
        username: caller.username.clone(),
        source: source.as_str().to_string(),
        email: user.and_then(|u| u.email),
        admin: caller.admin,
        expiration_choices: settings
            .allowed_expirations()
            .iter()
            .map(|e| e.as_str().to_string())
            .collect(),
        max_token_expiration: settings.max_token_expiration.as_str().to_string(),
        token_creation_allowed: !sso_blocked,
        token_creation_message: message,
        token_list_visible: !(sso_blocked && token_count == 0),
        token_count,
        csrf_token: match &caller.via {
            Via::Session { csrf_token, .. } => Some(csrf_token.clone()),
            _ => None,
        },
    })
}

/// Sets the caller's e-mail address.
#[utoipa::path(put, path = "/patgate/api/v1/me", tag = "me", operation_id = "me_update",
    request_body = PutMe, security(("password" = []), ("session" = [])),
    responses((status = 200, body = Me),
        (status = 403, description = "`managed_by_sso`: an SSO user's address comes from the provider")))]
pub async fn put_me(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<PutMe>,
) -> Result<Json<Me>, ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    if caller.source == UserSource::Sso {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "managed_by_sso",
            "your e-mail address comes from your SSO provider; change it there",
        ));
    }
    let email = match body.email.as_deref() {
        None | Some("") => None,
        Some(email) => {
            Some(check_email(email).map_err(|m| ApiError::bad_request("invalid_email", m))?)
        }
    };
    api.store.set_email(&caller.username, email).await?;
    api.audit(AuditEvent {
        actor: Some(caller.username.clone()),
        action: "user.email_changed",
        username: Some(caller.username.clone()),
        ip: Some(caller.ip.to_string()),
        ..AuditEvent::default()
    })
    .await;
    Ok(Json(describe(&api, &caller).await?))
}

/// An e-mail address of [`pattern::is_email`]: ASCII, a dot-atom local part, a domain
/// of two or more labels.
pub fn check_email(email: &str) -> Result<&str, String> {
    if pattern::is_email(email) {
        return Ok(email);
    }
    Err(format!(
        "email {email:?} is not an e-mail address like name@example.com (ASCII only, no \
         spaces, a domain with a dot)"
    ))
}
