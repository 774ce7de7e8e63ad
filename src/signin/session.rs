//! Browser sessions: a random id in an HttpOnly, SameSite cookie scoped to `/patgate/`
//! (`Secure` and `__Secure-` prefixed over https, [`crate::core::cookie`]), only its
//! hash in the database so every replica sees it, an idle and an absolute timeout, and
//! a CSRF token that every state-changing request must echo in `X-CSRF-Token`.

use http::{HeaderMap, HeaderValue};

use super::deploy::DeployCheck;
use crate::config;
use crate::core::cookie;
use crate::core::error::ApiError;
use crate::core::text::random_text;
use crate::core::text::same_secret;
use crate::core::text::sha256_hex;
use crate::store::{self, NewSession, SignInMethod, Store, UserSource};

/// The session cookie's name (without the `__Secure-` prefix it has over https).
pub const COOKIE: &str = cookie::SESSION;
/// The session cookie's path: the gateway's routes, never Deploy's.
const COOKIE_PATH: &str = "/patgate/";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Last-seen times are written at most this often per session.
const TOUCH_EVERY_SECS: i64 = 60;

/// A live session, resolved from a request's cookie.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub id_hash: String,
    pub username: String,
    pub source: UserSource,
    pub method: SignInMethod,
    pub admin: bool,
    /// The session had administrator rights that Deploy could not confirm just now
    /// (they count as none until it can, or until the user signs in again).
    pub admin_unconfirmed: bool,
    pub csrf_token: String,
    /// When Deploy last confirmed the administrator rights.
    admin_checked_at: i64,
}

pub struct Sessions {
    store: Store,
    idle_secs: i64,
    absolute_secs: i64,
    /// `signin.admin_recheck`.
    admin_recheck_secs: i64,
}

impl Sessions {
    pub fn new(settings: &config::SignIn, store: Store) -> Sessions {
        Sessions {
            store,
            idle_secs: settings.session_idle_timeout.as_secs() as i64,
            absolute_secs: settings.session_absolute_timeout.as_secs() as i64,
            admin_recheck_secs: settings.admin_recheck.as_secs() as i64,
        }
    }

    /// Starts a session; returns the `Set-Cookie` value and the CSRF token.
    pub async fn create(
        &self,
        username: &str,
        method: SignInMethod,
        admin: bool,
        ip: std::net::IpAddr,
        https: bool,
    ) -> Result<(HeaderValue, String), ApiError> {
        let id = random_text(32);
        let csrf_token = random_text(32);
        self.store
            .create_session(NewSession {
                id_hash: &sha256_hex(&id),
                username,
                csrf_token: &csrf_token,
                method,
                admin,
                ip: &ip.to_string(),
            })
            .await?;
        let cookie = cookie::set(COOKIE, &id, COOKIE_PATH, self.absolute_secs, https);
        let mut value = HeaderValue::from_str(&cookie).expect("cookie text is ASCII");
        value.set_sensitive(true);
        Ok((value, csrf_token))
    }

    /// The session a request's cookie names, if it is still valid; ends it when it has
    /// timed out. Over https only the `__Secure-` cookie counts.
    pub async fn resolve(
        &self,
        headers: &HeaderMap,
        https: bool,
    ) -> Result<Option<Resolved>, ApiError> {
        let Some(id) = cookie::read(headers, &cookie::name(COOKIE, https)) else {
            return Ok(None);
        };
        let id_hash = sha256_hex(id);
        let Some(session) = self.store.session(&id_hash).await? else {
            return Ok(None);
        };
        let now = crate::core::time::now();
        if now - session.last_seen_at > self.idle_secs
            || now - session.created_at > self.absolute_secs
        {
            self.store.delete_session(&id_hash).await?;
            return Ok(None);
        }
        if now - session.last_seen_at >= TOUCH_EVERY_SECS {
            self.store.touch_session(&id_hash).await?;
        }
        Ok(Some(Resolved {
            id_hash,
            username: session.username,
            source: session.source,
            method: session.method,
            admin: session.admin,
            admin_unconfirmed: false,
            csrf_token: session.csrf_token,
            admin_checked_at: session.admin_checked_at,
        }))
    }

    /// A password session's administrator rights, asked of Deploy again once they are
    /// older than `signin.admin_recheck`: an administrator removed in Deploy loses them
    /// within that time. SSO sessions keep the rights their roles gave at sign-in.
    pub async fn confirm_admin(&self, session: &mut Resolved, deploy: &DeployCheck) {
        let now = crate::core::time::now();
        if !session.admin
            || session.method != SignInMethod::Password
            || now - session.admin_checked_at < self.admin_recheck_secs
        {
            return;
        }
        match deploy.recheck_admin(&self.store, &session.username).await {
            Some(admin) => {
                if let Err(e) = self
                    .store
                    .confirm_session_admin(&session.id_hash, admin)
                    .await
                {
                    tracing::warn!(error = %e, "could not record a session's admin check");
                }
                if !admin {
                    tracing::info!(user = %session.username, "Deploy no longer says this user is an administrator; the session's rights end");
                }
                session.admin = admin;
                session.admin_checked_at = now;
            }
            None => {
                session.admin = false;
                session.admin_unconfirmed = true;
            }
        }
    }

    /// Forgets timed-out sessions and abandoned SSO sign-ins.
    pub async fn prune(&self) -> Result<(), store::StoreError> {
        let now = crate::core::time::now();
        self.store
            .prune_sessions(
                now - self.idle_secs,
                now - self.absolute_secs,
                now - super::oidc::SIGN_IN_WINDOW_SECS,
            )
            .await
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(https: bool) -> HeaderValue {
    HeaderValue::from_str(&cookie::set(COOKIE, "", COOKIE_PATH, 0, https))
        .expect("cookie text is ASCII")
}

/// A state-changing request with a session must carry the session's CSRF token.
pub fn check_csrf(headers: &HeaderMap, expected: &str) -> Result<(), ApiError> {
    let sent = headers
        .get(CSRF_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if sent.is_empty() || !same_secret(sent, expected.as_bytes()) {
        return Err(ApiError::new(
            http::StatusCode::FORBIDDEN,
            "csrf_failed",
            "send the csrf_token from GET /patgate/api/v1/me in the X-CSRF-Token header",
        ));
    }
    Ok(())
}
