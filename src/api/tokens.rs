//! `/patgate/api/v1/tokens`: a user's own tokens: create (shown once), list with the
//! "Expires in" pill, delete. Also answers the seed's `GET /deployit/tokens/users`.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{rfc3339, ApiError, ApiRef, JsonBody};
use crate::signin::{Caller, Via};
use crate::store::{self, AuditEvent, TokenRecord};
use crate::tokens::format::Expiration;
use crate::tokens::issue::{self, IssueError};

/// A new token's name and lifetime.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// 1 to 100 characters; no control characters, `<` or `>`; unique among your live tokens.
    pub name: String,
    /// One of the choices `GET /me` offers.
    #[schema(value_type = String, example = "30d")]
    pub expiration: Expiration,
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
}

/// Lists the caller's tokens, newest first (expired included, deleted not).
#[utoipa::path(get, path = "/patgate/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = [TokenView]), (status = 401, description = "not signed in")))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let api = api.get()?;
    let now = store::now();
    let tokens = api.store.live_tokens(&caller.username).await?;
    Ok(Json(
        tokens.into_iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

/// Creates a token for the caller; needs a password or a session, not a token.
#[utoipa::path(post, path = "/patgate/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken),
        (status = 400, description = "invalid name, or an expiration over the maximum"),
        (status = 403, description = "creation disabled for SSO users, or a token was used to ask"),
        (status = 409, description = "a live token with this name exists")))]
pub async fn create(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    let (record, token) = issue::issue(
        &api.store,
        &api.hasher,
        &caller.username,
        caller.source,
        &body.name,
        body.expiration,
    )
    .await
    .map_err(|e| match e {
        IssueError::InvalidName(message) => ApiError::bad_request("invalid_name", message),
        e @ IssueError::OverMaximum { .. } => {
            ApiError::bad_request("over_maximum_expiration", e.to_string())
        }
        e @ IssueError::SsoDisabled => ApiError::new(
            StatusCode::FORBIDDEN,
            "sso_creation_disabled",
            e.to_string(),
        ),
        IssueError::Store(e) => e.into(),
    })?;
    api.audit(AuditEvent {
        actor: Some(caller.username.clone()),
        action: "token.created",
        username: Some(caller.username.clone()),
        token_id: Some(record.id.clone()),
        ip: Some(caller.ip.to_string()),
        detail: Some(
            serde_json::json!({"name": record.name, "expiration": body.expiration.as_str()}),
        ),
    })
    .await;
    let view = TokenView::new(record, store::now());
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            id: view.id,
            name: view.name,
            token: token.expose().to_string(),
            created_at: view.created_at,
            expires_at: view.expires_at,
            expires_in: view.expires_in,
        }),
    ))
}

/// Deletes one of the caller's tokens (administrators: anyone's). It stops working
/// within a second on every replica.
#[utoipa::path(delete, path = "/patgate/api/v1/tokens/{id}", tag = "tokens",
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
    if token.revoked_at.is_some() || (token.username != caller.username && !as_admin) {
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
