//! `/patgate/api/v1/users` (administrators): find users, see and revoke their tokens,
//! disable and enable them, link them to an SSO identity. A disabled user's tokens stop
//! working within a second everywhere and their browser sessions end. A user is named
//! in any case or Unicode form of their name; answers use the name as stored.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::tokens::TokenView;
use super::{query, ApiRef, JsonBody, Page};
use crate::accounts::access;
use crate::accounts::sso_link::{self, LinkError, Requester};
use crate::api::caller::Caller;
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::core::time::rfc3339;
use crate::store::UserRecord;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Part of a username or e-mail address, any case.
    pub search: Option<String>,
    #[param(schema_with = pattern::page_schema)]
    pub page: Option<i64>,
    #[param(schema_with = pattern::per_page_schema)]
    pub per_page: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub username: String,
    pub source: String,
    pub email: Option<String>,
    pub admin: bool,
    pub disabled: bool,
    pub created_at: String,
    pub last_sign_in_at: Option<String>,
    /// Live tokens: not deleted, not expired, and not replaced by a rotation whose
    /// grace is over.
    pub tokens: i64,
    /// For SSO users: their roles and how fresh they are (`null` for others).
    pub sso: Option<super::freshness::UserRolesView>,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> UserView {
        UserView {
            username: u.username,
            source: u.source.as_str().to_string(),
            email: u.email,
            admin: u.admin,
            disabled: u.disabled,
            created_at: rfc3339(u.created_at),
            last_sign_in_at: u.last_sign_in_at.map(rfc3339),
            tokens: u.live_tokens,
            sso: None,
        }
    }
}

/// Fills in the SSO users' roles and freshness.
async fn with_freshness(api: &super::Api, users: &mut [UserView]) -> Result<(), ApiError> {
    let names: Vec<&str> = users
        .iter()
        .filter(|u| u.source == "sso")
        .map(|u| u.username.as_str())
        .collect();
    let mut found = api.store.user_freshness(&names).await?;
    for user in users.iter_mut() {
        user.sso = found.remove(&user.username).map(Into::into);
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<UserView>,
    pub total: i64,
    pub page: i64,
    pub per_page: i64,
}

/// Users, by name, searchable and paginated.
#[utoipa::path(get, path = "/patgate/api/v1/users", tag = "admin", operation_id = "users_list",
    params(UsersQuery), security(("password" = []), ("session" = [])),
    responses((status = 200, body = UserPage), (status = 400, description = "a query parameter is invalid")))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
    params: Result<Query<UsersQuery>, QueryRejection>,
) -> Result<Json<UserPage>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let params = query(params)?;
    let page = Page::new(params.page, params.per_page)?;
    let search = params
        .search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let (users, total) = api
        .store
        .users(search, page.offset(), page.per_page)
        .await?;
    let mut users: Vec<UserView> = users.into_iter().map(UserView::from).collect();
    with_freshness(&api, &mut users).await?;
    Ok(Json(UserPage {
        users,
        total,
        page: page.page,
        per_page: page.per_page,
    }))
}

async fn existing(api: &super::Api, username: &str) -> Result<UserRecord, ApiError> {
    api.store
        .user(username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user {username:?}")))
}

/// One user.
#[utoipa::path(get, path = "/patgate/api/v1/users/{username}", tag = "admin",
    operation_id = "users_get", security(("password" = []), ("session" = [])),
    params(("username" = String, Path,)),
    responses((status = 200, body = UserView), (status = 404, description = "no such user")))]
pub async fn one(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let mut user = [UserView::from(existing(&api, &username).await?)];
    with_freshness(&api, &mut user).await?;
    let [user] = user;
    Ok(Json(user))
}

/// A user's tokens, newest first.
#[utoipa::path(get, path = "/patgate/api/v1/users/{username}/tokens", tag = "admin",
    operation_id = "users_tokens_list", security(("password" = []), ("session" = [])),
    params(("username" = String, Path,)),
    responses((status = 200, body = [TokenView]), (status = 404, description = "no such user")))]
pub async fn tokens(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let username = existing(&api, &username).await?.username;
    let now = crate::core::time::now();
    let tokens = api.store.live_tokens(&username).await?;
    Ok(Json(
        tokens.into_iter().map(|t| TokenView::new(t, now)).collect(),
    ))
}

/// Deletes every token of a user.
#[utoipa::path(delete, path = "/patgate/api/v1/users/{username}/tokens", tag = "admin",
    operation_id = "users_tokens_delete_all", security(("password" = []), ("session" = [])),
    params(("username" = String, Path,)),
    responses((status = 204, description = "all deleted"), (status = 404, description = "no such user")))]
pub async fn revoke_all(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let username = existing(&api, &username).await?.username;
    let actor = Some(caller.username.clone());
    access::delete_all_tokens(&api.store, &username, actor, caller.ip.to_string(), None).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_disabled(
    api: ApiRef,
    caller: Caller,
    username: String,
    disabled: bool,
) -> Result<Json<UserView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let username = existing(&api, &username).await?.username;
    if disabled && username == caller.username {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "cannot_disable_self",
            "you cannot disable your own account",
        ));
    }
    let actor = Some(caller.username.clone());
    access::change_access(
        &api.store,
        &username,
        disabled,
        actor,
        caller.ip.to_string(),
        None,
    )
    .await?;
    Ok(Json(existing(&api, &username).await?.into()))
}

/// Disables a user: their tokens are refused within a second and their sessions end.
#[utoipa::path(post, path = "/patgate/api/v1/users/{username}/disable", tag = "admin",
    operation_id = "users_disable", security(("password" = []), ("session" = [])),
    params(("username" = String, Path,)),
    responses((status = 200, body = UserView), (status = 404, description = "no such user"),
        (status = 403, description = "`cannot_disable_self`: you cannot disable your own account")))]
pub async fn disable(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    set_disabled(api, caller, username, true).await
}

/// Enables a user again.
#[utoipa::path(post, path = "/patgate/api/v1/users/{username}/enable", tag = "admin",
    operation_id = "users_enable", security(("password" = []), ("session" = [])),
    params(("username" = String, Path,)),
    responses((status = 200, body = UserView), (status = 404, description = "no such user")))]
pub async fn enable(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    set_disabled(api, caller, username, false).await
}

/// The SSO identity to link a user to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SsoLinkBody {
    /// The provider's subject for the person (the ID token's `sub`); a refused SSO
    /// sign-in shows it.
    #[schema(schema_with = pattern::subject_schema)]
    pub subject: String,
}

/// A user's link to an SSO identity.
#[derive(Debug, Serialize, ToSchema)]
pub struct SsoLinkView {
    pub username: String,
    pub issuer: String,
    pub subject: String,
}

fn link_error(e: LinkError) -> ApiError {
    match e {
        LinkError::Store(e) => e.into(),
        LinkError::NoSuchUser(_) | LinkError::NotLinked(_) => ApiError::not_found(e.to_string()),
        LinkError::SubjectTaken { .. } | LinkError::UserLinked { .. } => {
            ApiError::new(StatusCode::CONFLICT, "already_linked", e.to_string())
        }
        LinkError::NoSso => {
            ApiError::new(StatusCode::NOT_FOUND, "sso_not_configured", e.to_string())
        }
        LinkError::BadSubject => ApiError::bad_request("invalid_body", e.to_string()),
    }
}

/// Links a user to an SSO identity: an SSO sign-in with this subject then becomes
/// this user, even an internal or LDAP one (whose source stays as it is). Without a
/// link an SSO sign-in under an internal or LDAP user's name is refused.
#[utoipa::path(put, path = "/patgate/api/v1/users/{username}/sso-link", tag = "admin",
    operation_id = "users_sso_link_set", security(("password" = []), ("session" = [])),
    params(("username" = String, Path,)), request_body = SsoLinkBody,
    responses((status = 200, body = SsoLinkView),
        (status = 404, description = "no such user, or `sso_not_configured`: SSO is not configured"),
        (status = 409, description = "`already_linked`: the subject or the user is linked already")))]
pub async fn link(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(username): Path<String>,
    JsonBody(body): JsonBody<SsoLinkBody>,
) -> Result<Json<SsoLinkView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let issuer = api.signin.oidc().map(|o| o.issuer().to_string());
    let username = sso_link::link(
        &api.store,
        issuer.as_deref(),
        &username,
        &body.subject,
        Requester {
            actor: caller.username.clone(),
            ip: Some(caller.ip.to_string()),
        },
    )
    .await
    .map_err(link_error)?;
    Ok(Json(SsoLinkView {
        username,
        issuer: issuer.unwrap_or_default(),
        subject: body.subject.trim().to_string(),
    }))
}

/// Removes a user's link to an SSO identity.
#[utoipa::path(delete, path = "/patgate/api/v1/users/{username}/sso-link", tag = "admin",
    operation_id = "users_sso_link_delete", security(("password" = []), ("session" = [])),
    params(("username" = String, Path,)),
    responses((status = 204, description = "unlinked"),
        (status = 404, description = "no such user, not linked, or `sso_not_configured`: SSO is not configured")))]
pub async fn unlink(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let issuer = api.signin.oidc().map(|o| o.issuer().to_string());
    sso_link::unlink(
        &api.store,
        issuer.as_deref(),
        &username,
        Requester {
            actor: caller.username.clone(),
            ip: Some(caller.ip.to_string()),
        },
    )
    .await
    .map_err(link_error)?;
    Ok(StatusCode::NO_CONTENT)
}
