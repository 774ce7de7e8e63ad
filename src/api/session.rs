//! `/patgate/api/v1/session`: how one may sign in (asked before signing in), password
//! sign-in for browsers (checked by Deploy), which sets the session cookie, and
//! sign-out, which ends the session on every replica.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::me::{describe, Me};
use super::{ApiRef, JsonBody};
use crate::api::caller::{Caller, Via};
use crate::core::client::ClientInfo;
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::signin::deploy::Purpose;
use crate::signin::session;
use crate::store::{AuditEvent, SignInMethod};

/// The ways to sign in that this gateway offers; needs no credentials.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignInOptions {
    /// Deploy username and password: always offered.
    pub password: bool,
    /// Whether OpenID Connect is configured.
    pub sso: bool,
    /// Where a browser starts an SSO sign-in; null without SSO.
    pub sso_login_url: Option<String>,
}

/// How one may sign in: password always, SSO when OpenID Connect is configured.
#[utoipa::path(get, path = "/patgate/api/v1/session", tag = "session", operation_id = "session_options",
    security(()), responses((status = 200, body = SignInOptions)))]
pub async fn options(State(api): State<ApiRef>) -> Result<Json<SignInOptions>, ApiError> {
    let api = api.get()?;
    let sso = api.signin.oidc().is_some();
    Ok(Json(SignInOptions {
        password: true,
        sso,
        sso_login_url: sso.then(|| "/patgate/sso/login".to_string()),
    }))
}

/// A Deploy username and password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    #[schema(schema_with = pattern::username_schema)]
    pub username: String,
    #[schema(schema_with = pattern::password_schema)]
    pub password: String,
}

/// Signs in with a Deploy username and password; answers what `GET /me` answers, with
/// the session's CSRF token, and sets the session cookie. Deploy is asked every time:
/// a new session's administrator rights are never an earlier answer's.
#[utoipa::path(post, path = "/patgate/api/v1/session", tag = "session", operation_id = "session_sign_in",
    request_body = SignInRequest, security(()),
    responses((status = 200, body = Me,
            headers(("Set-Cookie" = String, description = "the session cookie, `patgate_session` (`__Secure-patgate_session` over https)"))),
        (status = 400, description = "no usable username or password, or a personal access token given as one (`token_not_password`)"),
        (status = 401, description = "Deploy refused the credentials"),
        (status = 403, description = "the user is disabled, or the request came from another site"),
        (status = 429, description = "too many failed sign-ins from this address"),
        (status = 503, description = "`deploy_unavailable`: Deploy could not be asked")))]
pub async fn sign_in(
    State(api): State<ApiRef>,
    Extension(client): Extension<ClientInfo>,
    JsonBody(body): JsonBody<SignInRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let api = api.get()?;
    let username = body.username.trim();
    if !pattern::is_username(&body.username) || body.password.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "give a username (at most 255 characters, without ':', control or invisible \
             formatting characters) and a password",
        ));
    }
    let signed_in = api
        .signin
        .deploy
        .check(
            &api.store,
            username,
            &body.password,
            client.ip,
            Purpose::NewSession,
        )
        .await?;
    let (cookie, csrf_token) = api
        .signin
        .sessions
        .create(
            &signed_in.username,
            SignInMethod::Password,
            signed_in.admin,
            client.ip,
            client.https,
        )
        .await?;
    let caller = Caller {
        username: signed_in.username,
        source: signed_in.source,
        admin: signed_in.admin,
        admin_unconfirmed: false,
        via: Via::Session {
            id_hash: String::new(),
            csrf_token,
        },
        ip: client.ip,
    };
    let me = describe(&api, &caller).await?;
    let mut response = Json(me).into_response();
    response
        .headers_mut()
        .insert(http::header::SET_COOKIE, cookie);
    Ok(response)
}

/// Ends the caller's session everywhere and clears the cookie.
#[utoipa::path(delete, path = "/patgate/api/v1/session", tag = "session", operation_id = "session_sign_out",
    security(("session" = [])),
    responses((status = 204, description = "signed out; the cookie is cleared"),
        (status = 400, description = "`no_session`: the request carries no session to end")))]
pub async fn sign_out(
    State(api): State<ApiRef>,
    Extension(client): Extension<ClientInfo>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let api = api.get()?;
    let Via::Session { id_hash, .. } = &caller.via else {
        return Err(ApiError::bad_request(
            "no_session",
            "this request carries no session to end",
        ));
    };
    api.store.delete_session(id_hash).await?;
    api.audit(AuditEvent {
        actor: Some(caller.username.clone()),
        action: "signout",
        username: Some(caller.username.clone()),
        ip: Some(caller.ip.to_string()),
        ..AuditEvent::default()
    })
    .await;
    Ok((
        StatusCode::NO_CONTENT,
        [(
            http::header::SET_COOKIE,
            session::clear_cookie(client.https),
        )],
    ))
}
