//! Who is calling the API, as an axum extractor: a browser session, a Deploy username
//! and password (checked by Deploy, [`crate::signin::deploy`]), or the caller's own
//! personal access token. State-changing requests from another site are refused
//! whatever they carry ([`check_origin`], which [`super::Api::handle`] applies to every
//! request, sign-in included, before anything else).

use std::net::IpAddr;

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use super::ApiRef;
use crate::core::client::ClientInfo;
use crate::core::error::ApiError;
use crate::core::refusal::Refusal;
use crate::signin::deploy::Purpose;
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
    /// An administrator's session whose rights Deploy could not confirm just now.
    pub admin_unconfirmed: bool,
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

    /// Whether the caller acts as an administrator where a route also serves others:
    /// confirmed rights, and never with a token.
    pub fn acts_as_admin(&self) -> bool {
        self.admin && !self.admin_unconfirmed && self.via != Via::Token
    }

    /// How a token this caller makes was made, for the inventory: on the pages when
    /// they came with a browser session, through the API otherwise.
    pub fn made_by(&self) -> crate::core::scope::MadeBy {
        match self.via {
            Via::Session { .. } => crate::core::scope::MadeBy::Page,
            Via::Password | Via::Token => crate::core::scope::MadeBy::Api,
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require_signed_in()?;
        if self.admin_unconfirmed {
            return Err(ApiError::forbidden(
                "your administrator rights could not be confirmed with Deploy just now \
                 (they are asked again every signin.admin_recheck); sign in again",
            ));
        }
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
/// carries: browsers name the requesting origin in `Origin` (and `Sec-Fetch-Site`). The
/// origin must be the gateway's as the client addressed it (behind a trusted proxy, its
/// `X-Forwarded-Host` and `-Proto`); over https it must be https. Over plain http both
/// schemes pass, since a proxy that terminates TLS may not be among `trusted_proxies`.
pub fn check_origin(
    method: &Method,
    headers: &HeaderMap,
    client: &ClientInfo,
) -> Result<(), ApiError> {
    if is_safe(method) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.as_bytes(), b"same-origin" | b"none") {
            return Err(cross_origin());
        }
    }
    let Some(origin) = headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let Some(host) = client.host.as_deref().filter(|h| !h.is_empty()) else {
        return Err(cross_origin());
    };
    let origin = origin.as_bytes();
    let matches = |scheme: &str| {
        origin.len() == scheme.len() + 3 + host.len()
            && origin.starts_with(scheme.as_bytes())
            && origin[scheme.len()..].starts_with(b"://")
            && origin[scheme.len() + 3..].eq_ignore_ascii_case(host.as_bytes())
    };
    if matches("https") || (!client.https && matches("http")) {
        return Ok(());
    }
    Err(cross_origin())
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
                    admin_unconfirmed: false,
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
            let signed_in = api
                .signin
                .deploy
                .check(
                    &api.store,
                    &username,
                    &password,
                    client.ip,
                    Purpose::Request,
                )
                .await?;
            return Ok(Caller {
                username: signed_in.username,
                source: signed_in.source,
                admin: signed_in.admin,
                admin_unconfirmed: false,
                via: Via::Password,
                ip: client.ip,
            });
        }
        if let Some(mut session) = api
            .signin
            .sessions
            .resolve(&parts.headers, client.https)
            .await?
        {
            if !is_safe(&parts.method) {
                session::check_csrf(&parts.headers, &session.csrf_token)?;
            }
            api.signin
                .sessions
                .confirm_admin(&mut session, &api.signin.deploy)
                .await;
            return Ok(Caller {
                username: session.username,
                source: session.source,
                admin: session.admin,
                admin_unconfirmed: session.admin_unconfirmed,
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
