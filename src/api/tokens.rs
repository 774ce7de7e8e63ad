//! `/patgate/api/v1/tokens`: a user's own tokens: create (shown once), list with the
//! "Expires in" pill, rotate, delete. Also answers the seed's `GET /deployit/tokens/users`.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiRef, JsonBody, OptionalJsonBody};
use crate::api::caller::{Caller, Via};
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::core::scope::Scope;
use crate::core::time::rfc3339;
use crate::core::token::Expiration;
use crate::store::{self, AuditEvent, TokenRecord};
use crate::tokens::issue::{self, IssueError, TokenRules};

/// A new token's name and lifetime.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[schema(schema_with = pattern::token_name_schema)]
    pub name: String,
    /// One of the choices `GET /me` offers: a choice over the administrators' maximum is
    /// 403 `over_maximum_expiration`.
    #[schema(example = "30d")]
    pub expiration: Expiration,
    /// `full` (default: everything you may do), `read` (only GET, HEAD and OPTIONS) or
    /// `webhook` (only the paths under `webhooks.paths`). Cannot be changed later.
    #[serde(default)]
    pub scope: Scope,
    #[serde(default)]
    #[schema(schema_with = pattern::allowed_addresses_schema)]
    pub allowed_addresses: Vec<String>,
}

/// How long the rotated-away token keeps working.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateToken {
    #[serde(default)]
    #[schema(schema_with = pattern::grace_schema)]
    pub grace: Option<String>,
}

/// The seed's "Expires in" pill.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
pub struct ExpiresIn {
    /// `never`, `days`, `warning_days` (5 days or fewer), `warning_hours` (under 24 hours) or `expired`.
    pub state: &'static str,
    /// Whole days left, counted from the exact expiry instant (rounded up); null for `never`.
    pub days: Option<i64>,
    /// `No expiration`, `12 days`, `1 day`, `Less than 24 hours` or `Expired`.
    pub label: String,
}

/// Days at or below which the pill warns.
pub const WARNING_DAYS: i64 = 5;

/// The pill for a token expiring at `expires_at`, seen at `now`.
pub fn expires_in(expires_at: Option<i64>, now: i64) -> ExpiresIn {
    const DAY: i64 = 86_400;
    let Some(at) = expires_at else {
        return ExpiresIn {
            state: "never",
            days: None,
            label: "No expiration".into(),
        };
    };
    let left = at - now;
    if left <= 0 {
        return ExpiresIn {
            state: "expired",
            days: Some(0),
            label: "Expired".into(),
        };
    }
    if left < DAY {
        return ExpiresIn {
            state: "warning_hours",
            days: Some(0),
            label: "Less than 24 hours".into(),
        };
    }
    let days = (left + DAY - 1) / DAY;
    ExpiresIn {
        state: if days <= WARNING_DAYS {
            "warning_days"
        } else {
            "days"
        },
        days: Some(days),
        label: if days == 1 {
            "1 day".into()
        } else {
            format!("{days} days")
        },
    }
}

/// A token as listed: never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC; null when it never expires.
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
    pub last_used_ip: Option<String>,
    pub expires_in: ExpiresIn,
    pub scope: Scope,
    /// Empty: usable from anywhere.
    pub allowed_addresses: Vec<String>,
    /// Set on a token made by rotation: the id of the token it replaced.
    pub rotated_from: Option<String>,
    /// Set on a token replaced by rotation: the id of its successor.
    pub replaced_by: Option<String>,
    /// RFC 3339, UTC: until when a replaced token still works.
    pub grace_until: Option<String>,
}

impl TokenView {
    pub fn new(record: TokenRecord, now: i64) -> TokenView {
        TokenView {
            expires_in: expires_in(record.expires_at, now),
            id: record.id,
            name: record.name,
            created_at: rfc3339(record.created_at),
            expires_at: record.expires_at.map(rfc3339),
            last_used_at: record.last_used_at.map(rfc3339),
            last_used_ip: record.last_used_ip,
            scope: record.scope,
            allowed_addresses: record.allowed_addresses,
            rotated_from: record.rotated_from,
            replaced_by: record.replaced_by.filter(|r| !r.is_empty()),
            grace_until: record.grace_until.map(rfc3339),
        }
    }
}

/// A token just created: the only answer that ever carries its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub id: String,
    pub name: String,
    /// The token itself. Shown this once; store it now.
    pub token: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub expires_in: ExpiresIn,
    pub scope: Scope,
    pub allowed_addresses: Vec<String>,
    /// After a rotation: the token this one replaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
    /// After a rotation: until when the replaced token still works (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_token_valid_until: Option<String>,
}

impl CreatedToken {
    pub(crate) fn new(record: TokenRecord, token: &str) -> CreatedToken {
        let rotated_from = record.rotated_from.clone();
        let view = TokenView::new(record, crate::core::time::now());
        CreatedToken {
            id: view.id,
            name: view.name,
            token: token.to_string(),
            created_at: view.created_at,
            expires_at: view.expires_at,
            expires_in: view.expires_in,
            scope: view.scope,
            allowed_addresses: view.allowed_addresses,
            rotated_from,
            old_token_valid_until: None,
        }
    }
}

/// Lists the caller's tokens, newest first (expired included, deleted not).
#[utoipa::path(get, path = "/patgate/api/v1/tokens", tag = "tokens", operation_id = "tokens_list",
    security(("password" = []), ("session" = []), ("token" = [])),
    responses((status = 200, body = [TokenView])))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let api = api.get()?;
    let now = crate::core::time::now();
    let tokens = api.store.live_tokens(&caller.username).await?;
    Ok(Json(
        tokens.into_iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

/// Creates a token for the caller; needs a password or a session, not a token.
#[utoipa::path(post, path = "/patgate/api/v1/tokens", tag = "tokens", operation_id = "tokens_create",
    request_body = CreateToken, security(("password" = []), ("session" = [])),
    responses((status = 201, body = CreatedToken),
        (status = 403, description = "`over_maximum_expiration`: the expiration is over the \
            administrators' maximum; `sso_creation_disabled`: creation is disabled for SSO users; \
            or a token was used to ask"),
        (status = 409, description = "`name_taken`: a live token of yours has this name"),
        (status = 422, description = "`invalid_allowed_addresses`: an entry is not an address \
            or network, or has address bits set past its prefix")))]
pub async fn create(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    let rules = TokenRules {
        scope: body.scope,
        allowed_addresses: body.allowed_addresses,
        made_by: caller.made_by(),
    };
    let (record, token) = issue::issue_with(
        &api.store,
        &api.hasher,
        &caller.username,
        caller.source,
        &body.name,
        body.expiration,
        &rules,
    )
    .await
    .map_err(issue_error)?;
    api.audit(AuditEvent {
        actor: Some(caller.username.clone()),
        action: "token.created",
        username: Some(caller.username.clone()),
        token_id: Some(record.id.clone()),
        ip: Some(caller.ip.to_string()),
        detail: Some(serde_json::json!({
            "name": record.name,
            "expiration": body.expiration.as_str(),
            "scope": record.scope.as_str(),
            "allowed_addresses": record.allowed_addresses,
        })),
    })
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken::new(record, token.expose())),
    ))
}

pub(crate) fn issue_error(e: IssueError) -> ApiError {
    match e {
        IssueError::InvalidName(message) => ApiError::bad_request("invalid_name", message),
        e @ IssueError::OverMaximum { .. } => ApiError::new(
            StatusCode::FORBIDDEN,
            "over_maximum_expiration",
            e.to_string(),
        ),
        e @ IssueError::SsoDisabled => ApiError::new(
            StatusCode::FORBIDDEN,
            "sso_creation_disabled",
            e.to_string(),
        ),
        IssueError::InvalidAllowlist(message) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_allowed_addresses",
            message,
        ),
        e @ IssueError::InvalidGrace(_) => ApiError::bad_request("invalid_grace", e.to_string()),
        e @ IssueError::Expired => {
            ApiError::new(StatusCode::CONFLICT, "token_expired", e.to_string())
        }
        e @ IssueError::Exchanged => {
            ApiError::new(StatusCode::CONFLICT, "exchanged_token", e.to_string())
        }
        IssueError::Store(e) => e.into(),
    }
}

/// Replaces one of the caller's tokens by a new one with the same name, scope and
/// address allowlist, and an expiry by the same choice (capped at the administrators'
/// maximum). The old token works for the grace asked for; a use after that revokes
/// the new one too. A service account's owners and administrators may rotate its tokens.
#[utoipa::path(post, path = "/patgate/api/v1/tokens/{id}/rotate", tag = "tokens",
    operation_id = "tokens_rotate", security(("password" = []), ("session" = [])),
    params(("id" = String, Path, description = "the token's id")),
    request_body(content = Option<RotateToken>, description = "optional; an empty body means no grace"),
    responses((status = 201, body = CreatedToken),
        (status = 403, description = "`sso_creation_disabled`: creation is disabled for SSO users, \
            or a token was used to ask"),
        (status = 404, description = "no such live token of yours"),
        (status = 409, description = "`token_expired`: the token has expired; create a new one")))]
pub async fn rotate(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<RotateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    let grace = match body.grace.as_deref() {
        None => 0,
        Some(text) => {
            issue::parse_grace(text).map_err(|m| ApiError::bad_request("invalid_grace", m))?
        }
    };
    let old = match api.store.get_token(&id).await {
        Ok(token) => token,
        Err(store::StoreError::NoSuchToken(_)) => return Err(no_such_token()),
        Err(e) => return Err(e.into()),
    };
    // Only the owner (or a service account's owners): the answer carries the new token's value.
    if old.revoked_at.is_some()
        || old.replaced_by.is_some()
        || (old.username != caller.username
            && !super::service_accounts::manages(&api, &caller, &old.username).await?)
    {
        return Err(no_such_token());
    }
    let (rotated, token, expiration) = issue::rotate(
        &api.store,
        &api.hasher,
        &old,
        caller.source,
        grace,
        caller.made_by(),
    )
    .await
    .map_err(|e| match e {
        IssueError::Store(store::StoreError::NoSuchToken(_)) => no_such_token(),
        e => issue_error(e),
    })?;
    api.audit(AuditEvent {
        actor: Some(caller.username.clone()),
        action: "token.rotated",
        username: Some(caller.username.clone()),
        token_id: Some(rotated.new.id.clone()),
        ip: Some(caller.ip.to_string()),
        detail: Some(serde_json::json!({
            "name": rotated.new.name,
            "rotated_from": old.id,
            "grace_seconds": grace,
            "expiration": expiration.as_str(),
        })),
    })
    .await;
    let mut created = CreatedToken::new(rotated.new, token.expose());
    created.old_token_valid_until = rotated.old.grace_until.map(rfc3339);
    Ok((StatusCode::CREATED, Json(created)))
}

/// Deletes one of the caller's tokens (administrators: anyone's; owners of a service
/// account: its tokens). It stops working
/// within a second on every replica.
#[utoipa::path(delete, path = "/patgate/api/v1/tokens/{id}", tag = "tokens", operation_id = "tokens_delete",
    security(("password" = []), ("session" = []), ("token" = [])),
    params(("id" = String, Path, description = "the token's id")),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such token of yours")))]
pub async fn remove(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let api = api.get()?;
    let token = match api.store.get_token(&id).await {
        Ok(token) => token,
        Err(store::StoreError::NoSuchToken(_)) => return Err(no_such_token()),
        Err(e) => return Err(e.into()),
    };
    let as_admin = caller.admin && caller.via != Via::Token;
    if token.revoked_at.is_some()
        || (token.username != caller.username
            && !as_admin
            && !super::service_accounts::manages(&api, &caller, &token.username).await?)
    {
        // Another user's token answers as one that does not exist.
        return Err(no_such_token());
    }
    api.store.revoke_token(&id).await?;
    api.audit(AuditEvent {
        actor: Some(caller.username.clone()),
        action: "token.deleted",
        username: Some(token.username),
        token_id: Some(token.id),
        ip: Some(caller.ip.to_string()),
        detail: Some(serde_json::json!({"name": token.name})),
    })
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /deployit/tokens/users`: the seed's example route, answered as `GET /tokens`.
#[utoipa::path(get, path = "/deployit/tokens/users", tag = "tokens", operation_id = "deploy_tokens_list",
    security(("password" = []), ("session" = []), ("token" = [])),
    responses((status = 200, body = [TokenView])))]
pub async fn deploy_list(
    state: State<ApiRef>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    list(state, caller).await
}

fn no_such_token() -> ApiError {
    ApiError::not_found("you have no token with this id")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn pills_count_whole_days_from_the_exact_instant() {
        let now = 1_000_000_000;
        let pill = |left: Option<i64>| expires_in(left.map(|l| now + l), now);
        assert_eq!(pill(None).state, "never");
        assert_eq!(pill(None).label, "No expiration");
        assert_eq!(pill(Some(30 * DAY)).label, "30 days");
        assert_eq!(pill(Some(30 * DAY)).state, "days");
        assert_eq!(pill(Some(6 * DAY)).state, "days");
        assert_eq!(pill(Some(5 * DAY + 1)).label, "6 days");
        assert_eq!(pill(Some(5 * DAY)).state, "warning_days");
        assert_eq!(pill(Some(5 * DAY)).label, "5 days");
        assert_eq!(pill(Some(DAY)).label, "1 day");
        assert_eq!(pill(Some(DAY - 1)).state, "warning_hours");
        assert_eq!(pill(Some(DAY - 1)).label, "Less than 24 hours");
        assert_eq!(pill(Some(1)).state, "warning_hours");
        assert_eq!(pill(Some(0)).state, "expired");
        assert_eq!(pill(Some(-DAY)).label, "Expired");
    }
}
