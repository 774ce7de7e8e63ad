//! `/patgate/api/v1/service-accounts`: Deploy users that automation's tokens act as,
//! looked after by owners so that a pipeline keeps working when a person leaves.
//! Administrators create, change and delete accounts; owners (and administrators)
//! create, list, rotate and delete their tokens; the token routes take the same body
//! and answer the same JSON as `/tokens`.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::tokens::{issue_error, CreateToken, CreatedToken, TokenView};
use super::{ApiRef, JsonBody};
use crate::api::caller::Caller;
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::core::time::rfc3339;
use crate::store::{AuditEvent, ServiceAccount, StoreError, UserSource};
use crate::tokens::issue::{self, TokenRules};

/// Most owners one account may have.
pub const MAX_OWNERS: usize = 50;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;

/// A service account as administrators and its owners see it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceAccountView {
    /// The Deploy user its tokens act as.
    pub name: String,
    pub description: String,
    pub owners: Vec<OwnerView>,
    /// Owners neither disabled nor suspended by the identity provider.
    pub active_owners: usize,
    /// True when no owner is active: its tokens keep working, but nobody looks after
    /// them; name new owners.
    pub no_active_owner: bool,
    /// RFC 3339, UTC: since when no owner has been active (set within a minute).
    pub no_active_owner_since: Option<String>,
    /// Its tokens that work or may again (not revoked, expired or rotated away).
    pub live_tokens: i64,
    pub created_at: String,
    pub created_by: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OwnerView {
    pub username: String,
    /// False once the owner is disabled, deprovisioned or suspended.
    pub active: bool,
}

impl From<ServiceAccount> for ServiceAccountView {
    fn from(a: ServiceAccount) -> Self {
        let active_owners = a.owners.iter().filter(|o| o.active).count();
        ServiceAccountView {
            name: a.name,
            description: a.description,
            owners: a
                .owners
                .into_iter()
                .map(|o| OwnerView {
                    username: o.username,
                    active: o.active,
                })
                .collect(),
            active_owners,
            no_active_owner: active_owners == 0,
            no_active_owner_since: a.orphaned_at.map(rfc3339),
            live_tokens: a.live_tokens,
            created_at: rfc3339(a.created_at),
            created_by: a.created_by,
            updated_at: rfc3339(a.updated_at),
        }
    }
}

/// A new account, or the whole of one (`PUT`: `name` the path's or left out).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountBody {
    #[schema(schema_with = pattern::username_schema)]
    pub name: Option<String>,
    /// Up to 500 characters, no control characters.
    #[serde(default)]
    pub description: String,
    /// 1 to 50 users the gateway knows (signed in once, provisioned by SCIM, or given a
    /// token); not service accounts.
    pub owners: Vec<String>,
}

const INVALID: &str =
    "`invalid_service_account`: a field breaks the rules (the message names it): \
    a name that is not a Deploy username; a description over 500 characters or with control \
    characters; no owner, more than 50, or an owner the gateway does not know, the account \
    itself or another service account";

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_service_account",
        message,
    )
}

/// An account's name is a Deploy username: the rules of names, and no `:` (which
/// would break `Basic` credentials).
pub fn check_account_name(name: &str) -> Result<(), ApiError> {
    issue::check_name("name", name).map_err(invalid)?;
    if name.contains(':') {
        return Err(invalid("name: a Deploy username cannot contain ':'"));
    }
    Ok(())
}

/// The rules of a body past its name (the command line applies them too).
pub fn check_body(body: &ServiceAccountBody) -> Result<(), ApiError> {
    if body.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(format!(
            "description: at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    if body.description.chars().any(char::is_control) {
        return Err(invalid("description: no control characters"));
    }
    if body.owners.is_empty() {
        return Err(invalid(
            "owners: name at least one user who looks after the account",
        ));
    }
    if body.owners.len() > MAX_OWNERS {
        return Err(invalid(format!("owners: at most {MAX_OWNERS}")));
    }
    for owner in &body.owners {
        issue::check_name("owner", owner).map_err(invalid)?;
    }
    Ok(())
}

/// Lists service accounts: every one for administrators, the caller's own otherwise.
#[utoipa::path(get, path = "/patgate/api/v1/service-accounts", tag = "service-accounts",
    operation_id = "service_accounts_list",
    security(("password" = []), ("session" = []), ("token" = [])),
    responses((status = 200, body = [ServiceAccountView])))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
) -> Result<Json<Vec<ServiceAccountView>>, ApiError> {
    let api = api.get()?;
    let owner = (!as_admin(&caller)).then_some(caller.username.as_str());
    let accounts = api.store.service_accounts(owner).await?;
    Ok(Json(accounts.into_iter().map(Into::into).collect()))
}

/// Makes a Deploy user a service account with its owners.
#[utoipa::path(post, path = "/patgate/api/v1/service-accounts", tag = "service-accounts",
    operation_id = "service_accounts_create", security(("password" = []), ("session" = [])),
    request_body = ServiceAccountBody,
    responses((status = 201, body = ServiceAccountView),
        (status = 409, description = "`not_service_account`: a service account of this name exists, \
            or the name is a person's (an SSO or SCIM user)"),
        (status = 422, description = INVALID)))]
pub async fn create(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<ServiceAccountBody>,
) -> Result<(StatusCode, Json<ServiceAccountView>), ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let Some(name) = body.name.as_deref() else {
        return Err(invalid("name: required"));
    };
    check_account_name(name)?;
    check_body(&body)?;
    let stored = api
        .store
        .write_service_account(
            name,
            &body.description,
            &body.owners,
            Some(&caller.username),
            false,
        )
        .await?;
    let account = api.store.service_account(&stored).await?;
    audit_change(&api, &caller, "service_account.created", &account).await;
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// One service account (administrators and its owners).
#[utoipa::path(get, path = "/patgate/api/v1/service-accounts/{name}", tag = "service-accounts",
    operation_id = "service_accounts_get",
    security(("password" = []), ("session" = []), ("token" = [])),
    params(("name" = String, Path, description = "the account's name")),
    responses((status = 200, body = ServiceAccountView),
        (status = 404, description = "no such service account of yours")))]
pub async fn one(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ServiceAccountView>, ApiError> {
    let api = api.get()?;
    Ok(Json(visible(&api, &caller, &name).await?.into()))
}

/// Replaces an account's description and owners (administrators).
#[utoipa::path(put, path = "/patgate/api/v1/service-accounts/{name}", tag = "service-accounts",
    operation_id = "service_accounts_replace", security(("password" = []), ("session" = [])),
    params(("name" = String, Path, description = "the account's name")),
    request_body = ServiceAccountBody,
    responses((status = 200, body = ServiceAccountView),
        (status = 404, description = "no such service account"),
        (status = 422, description = INVALID)))]
pub async fn replace(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ServiceAccountBody>,
) -> Result<Json<ServiceAccountView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let current = api.store.service_account(&name).await?;
    if body.name.as_deref().is_some_and(|n| n != current.name) {
        return Err(invalid(
            "name: an account cannot be renamed; its tokens act as that Deploy user",
        ));
    }
    check_body(&body)?;
    api.store
        .write_service_account(&current.name, &body.description, &body.owners, None, true)
        .await?;
    if let Err(e) = crate::accounts::service::check_owners(&api.store).await {
        tracing::warn!(error = %e, "could not check service accounts' owners");
    }
    let account = api.store.service_account(&current.name).await?;
    audit_change(&api, &caller, "service_account.updated", &account).await;
    Ok(Json(account.into()))
}

/// Retires an account (administrators): its tokens are revoked at once on every
/// replica; the Deploy user itself is not touched.
#[utoipa::path(delete, path = "/patgate/api/v1/service-accounts/{name}", tag = "service-accounts",
    operation_id = "service_accounts_delete", security(("password" = []), ("session" = [])),
    params(("name" = String, Path, description = "the account's name")),
    responses((status = 204, description = "deleted, its tokens revoked"),
        (status = 404, description = "no such service account")))]
pub async fn remove(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    crate::accounts::service::delete(
        &api.store,
        &name,
        Some(caller.username.clone()),
        caller.ip.to_string(),
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's tokens, newest first (owners and administrators).
#[utoipa::path(get, path = "/patgate/api/v1/service-accounts/{name}/tokens", tag = "service-accounts",
    operation_id = "service_accounts_tokens_list",
    security(("password" = []), ("session" = []), ("token" = [])),
    params(("name" = String, Path, description = "the account's name")),
    responses((status = 200, body = [TokenView]),
        (status = 404, description = "no such service account of yours")))]
pub async fn tokens(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let api = api.get()?;
    let account = visible(&api, &caller, &name).await?;
    let now = crate::core::time::now();
    let tokens = api.store.live_tokens(&account.name).await?;
    Ok(Json(
        tokens.into_iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

/// Creates a token that acts as the account (owners and administrators, with a
/// password or a session). The same choices and policies as `POST /tokens`.
#[utoipa::path(post, path = "/patgate/api/v1/service-accounts/{name}/tokens", tag = "service-accounts",
    operation_id = "service_accounts_tokens_create", security(("password" = []), ("session" = [])),
    params(("name" = String, Path, description = "the account's name")),
    request_body = CreateToken,
    responses((status = 201, body = CreatedToken),
        (status = 403, description = "`over_maximum_expiration`, or a token was used to ask"),
        (status = 404, description = "no such service account of yours"),
        (status = 409, description = "`name_taken`: a live token of the account has this name"),
        (status = 422, description = "`invalid_allowed_addresses`")))]
pub async fn create_token(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<CreateToken>,
) -> Result<impl IntoResponse, ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    let account = visible(&api, &caller, &name).await?;
    let rules = TokenRules {
        scope: body.scope,
        allowed_addresses: body.allowed_addresses,
        made_by: caller.made_by(),
    };
    // The account is not a person: the switch for SSO users' tokens does not apply.
    let (record, token) = issue::issue_with(
        &api.store,
        &api.hasher,
        &account.name,
        UserSource::Internal,
        &body.name,
        body.expiration,
        &rules,
    )
    .await
    .map_err(|e| match e {
        issue::IssueError::Store(StoreError::NameTaken(_, token_name)) => ApiError::new(
            StatusCode::CONFLICT,
            "name_taken",
            format!(
                "service account {:?} already has a token named {token_name:?}; pick another name",
                account.name
            ),
        ),
        e => issue_error(e),
    })?;
    api.audit(AuditEvent {
        actor: Some(caller.username.clone()),
        action: "token.created",
        username: Some(account.name.clone()),
        token_id: Some(record.id.clone()),
        ip: Some(caller.ip.to_string()),
        detail: Some(serde_json::json!({
            "name": record.name,
            "expiration": body.expiration.as_str(),
            "scope": record.scope.as_str(),
            "allowed_addresses": record.allowed_addresses,
            "service_account": true,
        })),
    })
    .await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken::new(record, token.expose())),
    ))
}

fn as_admin(caller: &Caller) -> bool {
    caller.acts_as_admin()
}

/// The account, if the caller may see it: administrators every one, owners theirs;
/// anyone else is told it does not exist.
async fn visible(
    api: &super::Api,
    caller: &Caller,
    name: &str,
) -> Result<ServiceAccount, ApiError> {
    let account = api.store.service_account(name).await?;
    if as_admin(caller) || account.owners.iter().any(|o| o.username == caller.username) {
        return Ok(account);
    }
    Err(StoreError::NoSuchServiceAccount(name.to_string()).into())
}

/// Whether `caller` may manage the tokens of `username` because it is a service account
/// the caller owns or, as an administrator, looks after (the token routes ask this).
pub async fn manages(api: &super::Api, caller: &Caller, username: &str) -> Result<bool, ApiError> {
    if !api.store.is_service_account(username).await? {
        return Ok(false);
    }
    Ok(as_admin(caller)
        || api
            .store
            .owns_service_account(&caller.username, username)
            .await?)
}

async fn audit_change(
    api: &super::Api,
    caller: &Caller,
    action: &'static str,
    account: &ServiceAccount,
) {
    api.audit(AuditEvent {
        actor: Some(caller.username.clone()),
        action,
        username: Some(account.name.clone()),
        ip: Some(caller.ip.to_string()),
        detail: Some(serde_json::json!({
            "description": account.description,
            "owners": account.owners.iter().map(|o| &o.username).collect::<Vec<_>>(),
        })),
        ..AuditEvent::default()
    })
    .await;
}
