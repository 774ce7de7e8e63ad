//! Who is calling the API, as an axum extractor: a browser session, a Deploy username
//! and password (checked by Deploy, [`crate::signin::deploy`]), or the caller's own
//! personal access token. State-changing requests from another site are refused
//! whatever they carry.

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode};

use super::ApiRef;
use crate::core::client::ClientInfo;
use crate::core::error::ApiError;
use crate::core::refusal::Refusal;
use crate::signin::session;
use crate::store::UserSource;
use crate::tokens::credentials::Credential;
use crate::tokens::rules::Attempt;

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session; `id_hash` names it in the store.
    Session { id_hash: String, csrf_token: String },
    /// `Authorization: Basic user:password`, checked by Deploy.
    Password,
    /// The caller's own personal access token: lists and deletes their tokens only.
    Token,
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub username: String,
    pub source: UserSource,
    pub admin: bool,
    pub via: Via,
    pub ip: IpAddr,
}

impl Caller {
    /// Refuses callers that came with a token: creating tokens, changing settings and
    /// the like need a password or a session, so that a stolen token cannot mint more.
    pub fn require_signed_in(&self) -> Result<(), ApiError> {
        if self.via == Via::Token {
            return Err(ApiError::forbidden(
                "a personal access token may only list and delete its owner's tokens; \
                 sign in with your password or SSO for this",
            ));
        }
        Ok(())
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require_signed_in()?;
        if !self.admin {
            return Err(ApiError::forbidden("this needs an administrator"));
        }
        Ok(())
    }
}

/// `Authorization: Basic user:password` where the password is not a token.
fn basic_password(parts: &Parts) -> Option<(String, String)> {
    use base64::Engine;
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    if user.is_empty() || password.is_empty() {
        return None;
    }
    Some((user.to_string(), password.to_string()))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A state-changing request from another site is refused whatever credentials it
/// carries: browsers name the requesting origin in `Origin` (and `Sec-Fetch-Site`).
fn check_origin(parts: &Parts) -> Result<(), ApiError> {
    if is_safe(&parts.method) {
        return Ok(());
    }
    if let Some(site) = parts.headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(cross_origin());
        }
    }
    let Some(origin) = parts.headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .map(|h| h.as_bytes())
        .unwrap_or_default();
    // The origin's scheme is not compared: behind a proxy that terminates TLS the
    // browser's origin is https while the gateway is reached over http.
    let origin = origin.as_bytes();
    let authority = origin
        .iter()
        .position(|&b| b == b':')
        .and_then(|colon| origin.get(colon + 3..))
        .filter(|_| origin.windows(3).any(|w| w == b"://"));
    if authority != Some(host) || host.is_empty() {
        return Err(cross_origin());
    }
    Ok(())
}

fn cross_origin() -> ApiError {
    ApiError::forbidden("cross-site requests may not change anything here")
}

impl FromRequestParts<ApiRef> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiRef) -> Result<Caller, ApiError> {
        let api = state.get()?;
        let client = parts
            .extensions
            .get::<ClientInfo>()
            .cloned()
            .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", ""))?;
        check_origin(parts)?;
        match crate::edge::admission::credential_of(&parts.headers) {
            Credential::Token {
                token,
                claimed_user,
            } => {
                let principal = api
                    .tokens
                    .check(
                        &token,
                        claimed_user.as_deref(),
                        client.ip,
                        Attempt {
                            method: parts.method.as_str().as_bytes(),
                            path: parts.uri.path().as_bytes(),
                        },
                    )
                    .await
                    .map_err(token_refused)?;
                let username = principal.username.to_string();
                let source = api
                    .store
                    .user(&username)
                    .await?
                    .map(|u| u.source)
                    .unwrap_or(UserSource::Internal);
                return Ok(Caller {
                    username,
                    source,
                    admin: false,
                    via: Via::Token,
                    ip: client.ip,
                });
            }
            Credential::Unreadable(message) => {
                return Err(ApiError::bad_request("malformed_credentials", message));
            }
            Credential::Deploy => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthenticated",
                    "this is not a token of the gateway's (they start with dpat_): a personal access token of Deploy's own works with Deploy, not with the gateway's API; sign in with your password or SSO, or use a gateway token",
                ));
            }
            Credential::None => {}
        }
        if let Some((username, password)) = basic_password(parts) {
            let checked = api
                .signin
                .deploy
                .check(&api.store, &username, &password, client.ip, false)
                .await?;
            return Ok(Caller {
                username,
                source: UserSource::Internal,
                admin: checked.admin,
                via: Via::Password,
                ip: client.ip,
            });
        }
        if let Some(session) = api.signin.sessions.resolve(&parts.headers).await? {
            if !is_safe(&parts.method) {
                session::check_csrf(&parts.headers, &session.csrf_token)?;
            }
            return Ok(Caller {
                username: session.username,
                source: session.source,
                admin: session.admin,
                via: Via::Session {
                    id_hash: session.id_hash,
                    csrf_token: session.csrf_token,
                },
                ip: client.ip,
            });
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "sign in: send your Deploy username and password (Basic), a session cookie \
             from POST /patgate/api/v1/session or SSO, or your personal access token",
        ))
    }
}

/// A refused token, in the API's error shape (the same codes as the proxy's).
fn token_refused(refusal: Refusal) -> ApiError {
    let status = refusal.status();
    let mut error = ApiError::new(status, refusal.code(), refusal.to_string());
    if status == StatusCode::UNAUTHORIZED {
        error.headers.push((
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Digital.ai Deploy\""),
        ));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        error
            .headers
            .push((http::header::RETRY_AFTER, HeaderValue::from_static("1")));
    }
    error
}
