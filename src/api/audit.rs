//! `/patgate/api/v1/audit` (administrators): the audit log, newest first, filterable
//! by user, action and time.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{query, ApiRef, Page};
use crate::api::caller::Caller;
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::core::time::parse_instant;
use crate::core::time::rfc3339;
use crate::store::AuditQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// The user an entry concerns.
    pub user: Option<String>,
    /// An action such as `token.created`, `token.deleted`, `token.expired`,
    /// `token.refused`, `token.used_from_new_address`, `signin.succeeded`,
    /// `signin.failed`, `settings.changed`, `user.disabled`, `user.enabled`.
    pub action: Option<String>,
    /// RFC 3339 (`2026-01-31T00:00:00Z`); entries at or after.
    #[param(schema_with = pattern::instant_schema)]
    pub since: Option<String>,
    /// RFC 3339 (`2026-01-31T00:00:00Z`); entries at or before.
    #[param(schema_with = pattern::instant_schema)]
    pub until: Option<String>,
    #[param(schema_with = pattern::page_schema)]
    pub page: Option<i64>,
    #[param(schema_with = pattern::per_page_schema)]
    pub per_page: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: String,
    /// Who acted; null for the gateway itself.
    pub actor: Option<String>,
    pub action: String,
    pub user: Option<String>,
    pub token_id: Option<String>,
    pub ip: Option<String>,
    /// What the action concerned; null when nothing more is known.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditView>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

/// Audit entries, newest first.
#[utoipa::path(get, path = "/patgate/api/v1/audit", tag = "admin", operation_id = "audit_list",
    params(AuditParams), security(("password" = []), ("session" = [])),
    responses((status = 200, body = AuditPage), (status = 400, description = "a query parameter is invalid")))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
    params: Result<Query<AuditParams>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let params = query(params)?;
    let page = Page::new(params.page, params.per_page)?;
    let filter = AuditQuery {
        username: params.user.filter(|u| !u.is_empty()),
        action: params.action.filter(|a| !a.is_empty()),
        since: params
            .since
            .as_deref()
            .map(|s| parse_instant("since", s))
            .transpose()?,
        until: params
            .until
            .as_deref()
            .map(|s| parse_instant("until", s))
            .transpose()?,
        offset: page.offset(),
        limit: page.per_page,
    };
    let (entries, total) = api.store.read_audit(&filter).await?;
    Ok(Json(AuditPage {
        entries: entries
            .into_iter()
            .map(|e| AuditView {
                id: e.id,
                at: rfc3339(e.at),
                actor: e.actor,
                action: e.action,
                user: e.username,
                token_id: e.token_id,
                ip: e.ip,
                detail: e.detail,
            })
            .collect(),
        total,
        page: page.page,
        per_page: page.per_page,
    }))
}
