//! Browser sessions: a random id in an HttpOnly, SameSite cookie (Secure over TLS),
//! only its hash in the database so every replica sees it, an idle and an absolute
//! timeout, and a CSRF token that every state-changing request must echo in
//! `X-CSRF-Token`.

use http::{HeaderMap, HeaderValue};

use crate::config;
use crate::core::error::ApiError;
use crate::core::text::random_text;
use crate::core::text::same_secret;
use crate::core::text::sha256_hex;
use crate::store::{self, NewSession, SignInMethod, Store, UserSource};

/// The session cookie's name.
pub const COOKIE: &str = "patgate_session";
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
    pub admin: bool,
    pub csrf_token: String,
}

pub struct Sessions {
    store: Store,
    idle_secs: i64,
    absolute_secs: i64,
}

impl Sessions {
    pub fn new(settings: &config::SignIn, store: Store) -> Sessions {
        Sessions {
            store,
            idle_secs: settings.session_idle_timeout.as_secs() as i64,
            absolute_secs: settings.session_absolute_timeout.as_secs() as i64,
        }
    }

    /// Starts a session; returns the `Set-Cookie` value and the CSRF token.
    pub async fn create(
        &self,
        username: &str,
        method: SignInMethod,
        admin: bool,
        ip: std::net::IpAddr,
        tls: bool,
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
        let cookie = format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
            self.absolute_secs,
            if tls { "; Secure" } else { "" }
        );
        let mut value = HeaderValue::from_str(&cookie).expect("cookie text is ASCII");
        value.set_sensitive(true);
        Ok((value, csrf_token))
    }

    /// The session a request's cookie names, if it is still valid; ends it when it has
    /// timed out.
    pub async fn resolve(&self, headers: &HeaderMap) -> Result<Option<Resolved>, ApiError> {
        let Some(id) = cookie(headers, COOKIE) else {
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
            admin: session.admin,
            csrf_token: session.csrf_token,
        }))
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
pub fn clear_cookie(tls: bool) -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        if tls { "; Secure" } else { "" }
    ))
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

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}
