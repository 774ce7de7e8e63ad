//! SSO sign-in with OpenID Connect: authorization code flow with PKCE against the
//! organisation's provider (Okta, Azure AD, Keycloak…), found by discovery from
//! `sso.issuer`.
//!
//! `GET /patgate/sso/login` stores a single-use state (with nonce and PKCE verifier) in
//! the database, so any replica can finish the sign-in, and redirects to the provider;
//! `GET /patgate/sso/callback` checks the state, exchanges the code, verifies the ID
//! token (signature, issuer, audience, expiry, nonce), records the user as an `sso`
//! user with the e-mail and roles from the claims, and starts a session. Every failure
//! is a readable page, not a 500.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use tokio::sync::RwLock;

use super::http_client::HttpClient;
use super::SignIn;
use crate::config::Sso;
use crate::core::client::ClientInfo;
use crate::store::{AuditEvent, SignInMethod, Store, UserSource};

/// How long a started sign-in may take to come back.
pub const SIGN_IN_WINDOW_SECS: i64 = 600;
/// How long discovery metadata (and the provider's keys) are reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
const CALLBACK_PATH: &str = "/patgate/sso/callback";
/// Where a signed-in browser goes: the Access tokens page.
pub const AFTER_SIGN_IN: &str = "/patgate/";

pub struct Oidc {
    settings: Sso,
    http: HttpClient,
    discovered: RwLock<Option<(Instant, CoreProviderMetadata)>>,
}

/// A sign-in that cannot go on, shown to the person as a page.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub message: String,
}

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl Oidc {
    pub fn new(settings: Sso) -> anyhow::Result<Oidc> {
        Ok(Oidc {
            http: HttpClient::new(settings.ca_file.as_deref(), Duration::from_secs(10))?,
            settings,
            discovered: RwLock::new(None),
        })
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, Failure> {
        if let Some((at, metadata)) = &*self.discovered.read().await {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("sso.issuer is not a usable URL: {e}"),
            )
        })?;
        let http = self.http_fn();
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %error_chain(&e), "OpenID discovery failed");
                Failure::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the SSO provider at {} could not be used: {}",
                        self.settings.issuer,
                        error_chain(&e)
                    ),
                )
            })?;
        *self.discovered.write().await = Some((Instant::now(), metadata.clone()));
        Ok(metadata)
    }

    fn http_fn(
        &self,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<openidconnect::HttpResponse, super::http_client::HttpError>,
                > + Send,
        >,
    > {
        let client = self.http.clone();
        move |request| {
            let client = client.clone();
            Box::pin(async move { client.send(request).await })
        }
    }

    fn redirect_url(&self, headers: &HeaderMap, tls: bool) -> Result<RedirectUrl, Failure> {
        let url = match &self.settings.redirect_url {
            Some(url) => url.clone(),
            None => {
                let host = headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .ok_or_else(|| Failure::new(StatusCode::BAD_REQUEST, "no Host header"))?;
                let scheme = if tls { "https" } else { "http" };
                format!("{scheme}://{host}{CALLBACK_PATH}")
            }
        };
        RedirectUrl::new(url).map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the callback address is not a URL: {e}; set sso.redirect_url"),
            )
        })
    }

    fn client(
        &self,
        metadata: CoreProviderMetadata,
        redirect: RedirectUrl,
    ) -> openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    > {
        CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        )
        .set_redirect_uri(redirect)
    }
}

impl SignIn {
    /// `GET /patgate/sso/login`: records a single-use state and answers where to send the
    /// browser (the provider's authorization URL).
    pub async fn start_sso(
        &self,
        store: &Store,
        headers: &HeaderMap,
        tls: bool,
    ) -> Result<HeaderValue, Failure> {
        let oidc = self.oidc.as_ref().ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            "SSO is not configured on this gateway (no sso.issuer); sign in with your Deploy password",
        )
    })?;
        let metadata = oidc.metadata().await?;
        let oidc_client = oidc.client(metadata, oidc.redirect_url(headers, tls)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = oidc_client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &oidc.settings.scopes {
            if scope != "openid" {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        let (url, state, nonce) = request.url();
        store
            .start_sso(state.secret(), nonce.secret(), verifier.secret())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "could not record an SSO sign-in");
                Failure::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the gateway's database could not be reached; try again",
                )
            })?;
        HeaderValue::from_str(url.as_str())
            .map_err(|_| Failure::new(StatusCode::BAD_GATEWAY, "unusable authorization URL"))
    }

    /// `GET /patgate/sso/callback`: checks the provider's answer, records the user and
    /// starts a session; answers the session cookie.
    pub async fn finish_sso(
        &self,
        store: &Store,
        headers: &HeaderMap,
        client: &ClientInfo,
        params: &HashMap<String, String>,
    ) -> Result<HeaderValue, Failure> {
        let oidc = self
            .oidc
            .as_ref()
            .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, "SSO is not configured"))?;
        if let Some(error) = params.get("error") {
            let description = params
                .get("error_description")
                .map(|d| format!(": {d}"))
                .unwrap_or_default();
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                format!("the SSO provider refused the sign-in ({error}{description})"),
            ));
        }
        let (Some(code), Some(state)) = (params.get("code"), params.get("state")) else {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "the provider's answer has no code or state; start again from the sign-in page",
            ));
        };
        let pending = store
        .finish_sso(state)
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway's database could not be reached; try again",
            )
        })?
        .filter(|p| crate::core::time::now() - p.created_at <= SIGN_IN_WINDOW_SECS)
        .ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                "this sign-in is unknown, expired or already used (state does not match); start again",
            )
        })?;
        let metadata = oidc.metadata().await?;
        if let Some(iss) = params.get("iss") {
            // RFC 9207: the provider names itself; a mix-up attack names another.
            if iss.trim_end_matches('/') != metadata.issuer().as_str().trim_end_matches('/') {
                return Err(Failure::new(
                    StatusCode::UNAUTHORIZED,
                    format!("the answer came from issuer {iss:?}, not the configured one"),
                ));
            }
        }
        let oidc_client = oidc.client(metadata, oidc.redirect_url(headers, client.tls)?);
        let http = oidc.http_fn();
        let tokens = oidc_client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .map_err(|e| Failure::new(StatusCode::BAD_GATEWAY, format!("the provider has no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
        .request_async(&http)
        .await
        .map_err(|e| {
            tracing::info!(error = %error_chain(&e), "SSO code exchange refused");
            Failure::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "the provider did not accept the sign-in code (it may have been used already): {}",
                    error_chain(&e)
                ),
            )
        })?;
        let id_token = tokens.id_token().ok_or_else(|| {
            Failure::new(StatusCode::BAD_GATEWAY, "the provider sent no ID token")
        })?;
        id_token
            .claims(&oidc_client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| {
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    format!("the ID token was refused: {}", error_chain(&e)),
                )
            })?;
        // Verified above (signature, issuer, audience, expiry, nonce); its payload is read
        // whole here because the configured claims (roles, a custom username) are not all
        // standard ones.
        let claims = payload(&id_token.to_string()).ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_GATEWAY,
                "the ID token's claims could not be read",
            )
        })?;
        let settings = &oidc.settings;
        let username = claims
            .get(&settings.username_claim)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|u| {
                !u.is_empty() && u.chars().count() <= 255 && !u.chars().any(char::is_control)
            })
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    format!(
                        "the ID token has no usable {:?} claim (sso.username_claim)",
                        settings.username_claim
                    ),
                )
            })?
            .to_string();
        let email = claims
            .get(&settings.email_claim)
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let roles: Vec<String> = match claims.get(&settings.roles_claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let admin = self.deploy.configured_admin(&username)
            || roles.iter().any(|r| settings.admin_roles.contains(r));
        if let Ok(Some(user)) = store.user(&username).await {
            if user.disabled {
                return Err(Failure::new(
                    StatusCode::FORBIDDEN,
                    "your account is disabled in the gateway; ask an administrator",
                ));
            }
        }
        let unavailable = |_| {
            Failure::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway's database could not be reached; try again",
            )
        };
        store
            .record_sign_in(
                &username,
                UserSource::Sso,
                admin,
                Some((email.as_deref(), &roles)),
            )
            .await
            .map_err(unavailable)?;
        let (cookie, _) = self
            .sessions
            .create(&username, SignInMethod::Sso, admin, client.ip, client.tls)
            .await
            .map_err(|e| Failure::new(e.status, e.message))?;
        store
            .audit_or_log(AuditEvent {
                actor: Some(username.clone()),
                action: "signin.succeeded",
                username: Some(username.clone()),
                ip: Some(client.ip.to_string()),
                detail: Some(serde_json::json!({"method": "sso", "admin": admin})),
                ..AuditEvent::default()
            })
            .await;
        Ok(cookie)
    }
}

/// The claims of a compact JWS (its middle part), as JSON.
fn payload(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let middle = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(middle.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An error and its causes on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
