//! `/patgate/api/v1/tokens/{id}/usage`: what a token's owner can see of its use:
//! requests per UTC day over the last 30 days, the last distinct client addresses and
//! the last refusal. Counted off the request path (`tokens::usage`), kept 90 days.

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::ApiRef;
use crate::api::caller::Caller;
use crate::core::error::ApiError;
use crate::core::time::rfc3339;
use crate::store::StoreError;
use crate::tokens::usage::day_of;

/// Days the answer covers, today included.
pub const DAYS_SHOWN: i64 = 30;

/// Requests on one UTC day.
#[derive(Debug, Serialize, ToSchema)]
pub struct DayRequests {
    /// `YYYY-MM-DD`, UTC.
    #[schema(example = "2026-12-02")]
    pub date: String,
    /// Requests the token was accepted for that day, on every replica.
    pub requests: i64,
}

/// A client address the token was used from.
#[derive(Debug, Serialize, ToSchema)]
pub struct AddressView {
    pub ip: String,
    /// RFC 3339, UTC.
    pub first_seen: String,
    /// RFC 3339, UTC; to the minute.
    pub last_seen: String,
}

/// The last time the token was refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefusalView {
    /// The error code the client got (`token_expired`, `scope_denied`, …; see docs/errors.md).
    pub code: String,
    /// RFC 3339, UTC.
    pub at: String,
}

/// A token's use.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageView {
    /// The last 30 UTC days, oldest first, days without requests included.
    pub days: Vec<DayRequests>,
    /// The last five distinct client addresses, most recently seen first.
    pub addresses: Vec<AddressView>,
    pub last_refusal: Option<RefusalView>,
}

/// A token's use over the last 30 days (its owner; administrators: anyone's).
#[utoipa::path(get, path = "/patgate/api/v1/tokens/{id}/usage", tag = "tokens",
    operation_id = "tokens_usage", security(("password" = []), ("session" = []), ("token" = [])),
    params(("id" = String, Path, description = "the token's id")),
    responses((status = 200, body = UsageView),
        (status = 404, description = "no such token of yours")))]
pub async fn usage(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UsageView>, ApiError> {
    let api = api.get()?;
    let token = match api.store.get_token(&id).await {
        Ok(token) => token,
        Err(StoreError::NoSuchToken(_)) => return Err(no_such_token()),
        Err(e) => return Err(e.into()),
    };
    let as_admin = caller.acts_as_admin();
    if token.username != caller.username && !as_admin {
        // Another user's token answers as one that does not exist.
        return Err(no_such_token());
    }
    let today = day_of(crate::core::time::now());
    let first = today - DAYS_SHOWN + 1;
    let used = api.store.token_usage(&id, first).await?;
    let mut counts = used.days.into_iter().peekable();
    let days = (first..=today)
        .map(|day| {
            let requests = match counts.peek() {
                Some(&(d, n)) if d == day => {
                    counts.next();
                    n
                }
                _ => 0,
            };
            DayRequests {
                date: rfc3339(day * 86_400)[..10].to_string(),
                requests,
            }
        })
        .collect();
    Ok(Json(UsageView {
        days,
        addresses: used
            .addresses
            .into_iter()
            .map(|a| AddressView {
                ip: a.ip,
                first_seen: rfc3339(a.first_seen),
                last_seen: rfc3339(a.last_seen),
            })
            .collect(),
        last_refusal: used.last_refusal.map(|(code, at)| RefusalView {
            code,
            at: rfc3339(at),
        }),
    }))
}

fn no_such_token() -> ApiError {
    ApiError::not_found("you have no token with this id")
}
