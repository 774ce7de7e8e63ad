//! `/patgate/api/v1/settings` (administrators): the maximum token expiration and the
//! switch for SSO users' tokens. What `GET` returns, `PUT` accepts back; fields left
//! out keep their value.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiError, ApiRef, JsonBody};
use crate::signin::Caller;
use crate::store::{AuditEvent, Settings};
use crate::tokens::format::Expiration;

/// The administrators' policies.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// The longest expiration users may choose; `never` means no maximum. Tokens made
    /// before a lower maximum keep their expiry.
    #[schema(value_type = Option<String>, example = "60d")]
    pub max_token_expiration: Option<Expiration>,
    /// Whether SSO users may create tokens, and whether their existing tokens work.
    pub sso_pat_creation_enabled: Option<bool>,
}

impl From<&Settings> for SettingsBody {
    fn from(s: &Settings) -> SettingsBody {
        SettingsBody {
            max_token_expiration: Some(s.max_token_expiration),
            sso_pat_creation_enabled: Some(s.sso_pat_creation_enabled),
        }
    }
}

/// The current policies.
#[utoipa::path(get, path = "/patgate/api/v1/settings", tag = "admin",
    responses((status = 200, body = SettingsBody), (status = 403, description = "not an administrator")))]
pub async fn get_settings(
    State(api): State<ApiRef>,
    caller: Caller,
) -> Result<Json<SettingsBody>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    Ok(Json((&api.store.settings().await?).into()))
}

/// Changes the policies; every replica applies them within a second.
#[utoipa::path(put, path = "/patgate/api/v1/settings", tag = "admin", request_body = SettingsBody,
    responses((status = 200, body = SettingsBody), (status = 400, description = "invalid value"),
        (status = 403, description = "not an administrator")))]
pub async fn put_settings(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<Json<SettingsBody>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let before = api.store.settings().await?;
    let after = Settings {
        max_token_expiration: body
            .max_token_expiration
            .unwrap_or(before.max_token_expiration),
        sso_pat_creation_enabled: body
            .sso_pat_creation_enabled
            .unwrap_or(before.sso_pat_creation_enabled),
    };
    if after != before {
        api.store.save_settings(&after, &caller.username).await?;
        api.audit(AuditEvent {
            actor: Some(caller.username.clone()),
            action: "settings.changed",
            ip: Some(caller.ip.to_string()),
            detail: Some(serde_json::json!({
                "before": SettingsBody::from(&before),
                "after": SettingsBody::from(&after),
            })),
            ..AuditEvent::default()
        })
        .await;
    }
    Ok(Json((&after).into()))
}
