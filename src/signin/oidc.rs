//! SSO sign-in with OpenID Connect: authorization code flow with PKCE against the
//! organisation's provider (Okta, Azure AD, Keycloak…), found by discovery from
//! `sso.issuer`.
//!
//! `GET /patgate/sso/login` stores a single-use state (with nonce and PKCE verifier) in
//! the database, so any replica can finish the sign-in, ties it to the starting browser
//! (a random value in a short-lived cookie, its hash in the row), and redirects to the
//! provider; `GET /patgate/sso/callback` checks the state and that same browser,
//! exchanges the code, verifies the ID token (signature, issuer, audience, expiry,
//! nonce), finds the user by the token's issuer and subject (never by the username
//! claim alone), and starts a session. Every failure is a readable page, not a 500.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use tokio::sync::RwLock;

use super::failures::FailureKey;
use super::http_client::HttpClient;
use super::SignIn;
use crate::config::{OfflineAccess, Sso};
use crate::core::client::ClientInfo;
use crate::core::cookie;
use crate::core::text::{has_format_chars, outside_text, random_text, same_secret, sha256_hex};
use crate::store::{AuditEvent, SignInMethod, Store, StoreError, UserSource};

/// How long a started sign-in may take to come back.
pub const SIGN_IN_WINDOW_SECS: i64 = 600;
/// How long discovery metadata (and the provider's keys) are reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(600);
/// Where the binding cookie is sent: the SSO routes only.
const BINDING_PATH: &str = "/patgate/sso/";
/// Where a signed-in browser goes: the Access tokens page.
pub const AFTER_SIGN_IN: &str = "/patgate/";

pub struct Oidc {
    pub(super) settings: Sso,
    http: HttpClient,
    discovered: RwLock<Option<(Instant, CoreProviderMetadata)>>,
}

/// A sign-in that cannot go on, shown to the person as a page.
#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    /// A stable code for the audit log (`state_mismatch`, `not_linked`, …).
    pub reason: &'static str,
    pub message: String,
    /// The user it concerns, when the gateway knows them (stored name).
    pub username: Option<String>,
}

impl Failure {
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status,
            reason,
            message: message.into(),
            username: None,
        }
    }

    fn of(mut self, username: &str) -> Failure {
        self.username = Some(username.to_string());
        self
    }
}

/// The database could not be reached.
fn unavailable(e: StoreError) -> Failure {
    tracing::warn!(error = %e, "the database failed during an SSO sign-in");
    Failure::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database_unavailable",
        "the gateway's database could not be reached; try again",
    )
}

impl Oidc {
    pub fn new(settings: Sso) -> anyhow::Result<Oidc> {
        Ok(Oidc {
            http: HttpClient::new(settings.ca_file.as_deref(), Duration::from_secs(10))?,
            settings,
            discovered: RwLock::new(None),
        })
    }

    pub(super) async fn metadata(&self) -> Result<CoreProviderMetadata, Failure> {
        if let Some((at, metadata)) = &*self.discovered.read().await {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(metadata.clone());
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "provider_unusable",
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
                    "provider_unusable",
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

    pub(super) fn http_fn(
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

    /// The configured issuer, as SSO identities are stored under it.
    pub fn issuer(&self) -> &str {
        self.settings.issuer.trim_end_matches('/')
    }

    pub(super) fn redirect_url(&self) -> Result<RedirectUrl, Failure> {
        RedirectUrl::new(self.settings.redirect_url.clone()).map_err(|e| {
            Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "provider_unusable",
                format!("sso.redirect_url is not a URL: {e}"),
            )
        })
    }

    pub(super) fn client(
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

/// What `/patgate/sso/login` answers: where the browser goes, and the cookie that
/// ties the sign-in to it.
pub struct Started {
    pub location: HeaderValue,
    pub binding_cookie: HeaderValue,
}

/// The `Set-Cookie` value that removes the binding cookie (every callback sends it).
pub fn clear_binding_cookie(https: bool) -> HeaderValue {
    HeaderValue::from_str(&cookie::set(
        cookie::SSO_BINDING,
        "",
        BINDING_PATH,
        0,
        https,
    ))
    .expect("cookie text is ASCII")
}

impl SignIn {
    /// `GET /patgate/sso/login`: records a single-use state bound to this browser and
    /// answers where to send it (the provider's authorization URL). Each client address
    /// may start `sso.starts_per_minute` sign-ins a minute.
    pub async fn start_sso(&self, store: &Store, client: &ClientInfo) -> Result<Started, Failure> {
        let oidc = self.oidc().ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not_configured",
                "SSO is not configured on this gateway (no sso.issuer); sign in with your Deploy password",
            )
        })?;
        if self.sso_starts.record_failure(client.ip).await {
            return Err(Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_starts",
                "too many SSO sign-ins were started from your address; wait a minute and try again",
            ));
        }
        let metadata = oidc.metadata().await?;
        let offline = match oidc.settings.offline_access {
            OfflineAccess::Always => true,
            OfflineAccess::Never => false,
            OfflineAccess::Auto => {
                oidc.settings.revalidate_every.is_some()
                    && metadata
                        .scopes_supported()
                        .is_some_and(|s| s.iter().any(|s| s.as_str() == "offline_access"))
            }
        };
        let oidc_client = oidc.client(metadata, oidc.redirect_url()?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = oidc_client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &oidc.settings.scopes {
            if scope != "openid" && !(offline && scope == "offline_access") {
                request = request.add_scope(Scope::new(scope.clone()));
            }
        }
        if offline {
            request = request.add_scope(Scope::new("offline_access".into()));
        }
        let (url, state, nonce) = request.url();
        let binding = random_text(32);
        store
            .start_sso(
                state.secret(),
                nonce.secret(),
                verifier.secret(),
                &sha256_hex(&binding),
            )
            .await
            .map_err(unavailable)?;
        let location = HeaderValue::from_str(url.as_str()).map_err(|_| {
            Failure::new(
                StatusCode::BAD_GATEWAY,
                "provider_unusable",
                "unusable authorization URL",
            )
        })?;
        let mut binding_cookie = HeaderValue::from_str(&cookie::set(
            cookie::SSO_BINDING,
            &binding,
            BINDING_PATH,
            SIGN_IN_WINDOW_SECS,
            client.https,
        ))
        .expect("cookie text is ASCII");
        binding_cookie.set_sensitive(true);
        Ok(Started {
            location,
            binding_cookie,
        })
    }

    /// `GET /patgate/sso/callback`: checks the provider's answer and the browser,
    /// finds the user and starts a session; answers the session cookie.
    pub async fn finish_sso(
        &self,
        store: &Store,
        headers: &HeaderMap,
        client: &ClientInfo,
        params: &HashMap<String, String>,
    ) -> Result<HeaderValue, Failure> {
        let oidc = self.oidc().ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "not_configured",
                "SSO is not configured",
            )
        })?;
        if let Some(error) = params.get("error") {
            // The provider's words come through the browser: anyone can write them.
            let description = params
                .get("error_description")
                .map(|d| format!(": {}", outside_text(d, 200)))
                .unwrap_or_default();
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "provider_refused",
                format!(
                    "the SSO provider refused the sign-in ({}{description})",
                    outside_text(error, 60)
                ),
            ));
        }
        let (Some(code), Some(state)) = (params.get("code"), params.get("state")) else {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "incomplete_answer",
                "the provider's answer has no code or state; start again from the sign-in page",
            ));
        };
        let pending = store
            .finish_sso(state)
            .await
            .map_err(unavailable)?
            .filter(|p| crate::core::time::now() - p.created_at <= SIGN_IN_WINDOW_SECS)
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::BAD_REQUEST,
                    "state_mismatch",
                    "this sign-in is unknown, expired or already used (state does not match); start again",
                )
            })?;
        // The sign-in must come back to the browser that started it: otherwise anyone
        // could send a victim a callback link that signs them in as someone else.
        let binding = cookie::read(headers, &cookie::name(cookie::SSO_BINDING, client.https));
        let same_browser = match (binding, &pending.binding_hash) {
            (Some(value), Some(hash)) => same_secret(sha256_hex(value).as_bytes(), hash.as_bytes()),
            _ => false,
        };
        if !same_browser {
            return Err(Failure::new(
                StatusCode::BAD_REQUEST,
                "other_browser",
                "this sign-in was not started in this browser (or its cookie expired); start again from the sign-in page",
            ));
        }
        let metadata = oidc.metadata().await?;
        if let Some(iss) = params.get("iss") {
            // RFC 9207: the provider names itself; a mix-up attack names another.
            if iss.trim_end_matches('/') != metadata.issuer().as_str().trim_end_matches('/') {
                return Err(Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "wrong_issuer",
                    format!(
                        "the answer came from issuer {:?}, not the configured one",
                        outside_text(iss, 200)
                    ),
                ));
            }
        }
        let issuer = oidc.issuer().to_string();
        let oidc_client = oidc.client(metadata, oidc.redirect_url()?);
        let http = oidc.http_fn();
        let tokens = oidc_client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .map_err(|e| {
                Failure::new(
                    StatusCode::BAD_GATEWAY,
                    "provider_unusable",
                    format!("the provider has no token endpoint: {e}"),
                )
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&http)
            .await
            .map_err(|e| {
                tracing::info!(error = %error_chain(&e), "SSO code exchange refused");
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "code_refused",
                    format!(
                        "the provider did not accept the sign-in code (it may have been used already): {}",
                        outside_text(&error_chain(&e), 300)
                    ),
                )
            })?;
        let id_token = tokens.id_token().ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_GATEWAY,
                "no_id_token",
                "the provider sent no ID token",
            )
        })?;
        let verified = id_token
            .claims(&oidc_client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| {
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "id_token_refused",
                    format!("the ID token was refused: {}", error_chain(&e)),
                )
            })?;
        let subject = verified.subject().as_str().to_string();
        // Verified above (signature, issuer, audience, expiry, nonce); its payload is read
        // whole here because the configured claims (roles, a custom username) are not all
        // standard ones.
        let claims = payload(&id_token.to_string()).ok_or_else(|| {
            Failure::new(
                StatusCode::BAD_GATEWAY,
                "id_token_unreadable",
                "the ID token's claims could not be read",
            )
        })?;
        let settings = &oidc.settings;
        let claimed = claims
            .get(&settings.username_claim)
            .and_then(|v| v.as_str())
            .map(str::trim)
            .filter(|u| {
                !u.is_empty()
                    && u.chars().count() <= 255
                    && !u.chars().any(char::is_control)
                    && !has_format_chars(u)
            })
            .ok_or_else(|| {
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    "no_username",
                    format!(
                        "the ID token has no usable {:?} claim (sso.username_claim)",
                        settings.username_claim
                    ),
                )
            })?
            .to_string();
        let (email, claimed_roles) = super::refresh::read_claims(settings, &claims);
        let username = sso_user(store, &issuer, &subject, &claimed).await?;
        let mut sso_source = true;
        if let Some(user) = store.user(&username).await.map_err(unavailable)? {
            if user.disabled {
                return Err(Failure::new(
                    StatusCode::FORBIDDEN,
                    "user_disabled",
                    "your account is disabled in the gateway; ask an administrator",
                )
                .of(&username));
            }
            sso_source = user.source == UserSource::Sso;
        }
        // Roles SCIM Groups pushed are the provider's word as of now; a sign-in's ID
        // token may be older, so it leaves them as they are.
        let roles = if sso_source
            && self
                .roles_pushed_by_scim(store, &username)
                .await
                .map_err(unavailable)?
        {
            store
                .roles_and_source(&username)
                .await
                .map_err(unavailable)?
                .0
        } else {
            claimed_roles
        };
        let admin = self.admin_for(&username, &roles);
        store
            .record_sign_in(&username, UserSource::Sso, admin, Some(email.as_deref()))
            .await
            .map_err(unavailable)?;
        if sso_source {
            self.apply_roles(
                store,
                &username,
                &roles,
                crate::store::FROM_SIGNIN,
                Some(username.clone()),
                Some(client.ip.to_string()),
            )
            .await
            .map_err(unavailable)?;
        }
        self.after_sso_sign_in(
            store,
            &username,
            tokens.refresh_token().map(|t| t.secret().as_str()),
            &client.ip.to_string(),
        )
        .await
        .map_err(unavailable)?;
        let (cookie, _) = self
            .sessions
            .create(&username, SignInMethod::Sso, admin, client.ip, client.https)
            .await
            .map_err(|e| Failure::new(e.status, "session_failed", e.message))?;
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

    /// Counts a failed SSO sign-in for the audit log.
    pub fn sso_failed(&self, client: &ClientInfo, failure: &Failure) {
        self.failures().record(FailureKey {
            ip: client.ip,
            method: "sso",
            reason: failure.reason,
            username: failure.username.clone(),
        });
    }
}

/// The user an ID token signs in, by its issuer and subject: the user bound to them;
/// else, for a subject seen for the first time, a new SSO user under the username
/// claim, or the SSO user of that name nobody is bound to yet (one provisioned by SCIM,
/// or who signed in before identities were kept). An internal or LDAP user of that
/// name is never taken over: an administrator links the two first.
async fn sso_user(
    store: &Store,
    issuer: &str,
    subject: &str,
    claimed: &str,
) -> Result<String, Failure> {
    if let Some(bound) = store
        .sso_identity(issuer, subject)
        .await
        .map_err(unavailable)?
    {
        return Ok(bound);
    }
    let taken = || {
        Failure::new(
            StatusCode::FORBIDDEN,
            "name_taken",
            format!(
                "the name {claimed:?} belongs to another SSO identity in this gateway; ask an administrator"
            ),
        )
    };
    let username = match store.user(claimed).await.map_err(unavailable)? {
        None => store
            .ensure_user(claimed, UserSource::Sso, None)
            .await
            .map_err(unavailable)?,
        Some(user) if user.source == UserSource::Sso => user.username,
        Some(user) => {
            tracing::info!(user = %user.username, subject, "SSO sign-in onto a user that is not linked to it refused");
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                "not_linked",
                format!(
                    "{:?} is an {} user of this gateway, and an SSO sign-in becomes them only once an administrator links the two (patgate user link-sso {} --subject {subject}); your SSO subject is {subject}",
                    user.username,
                    user.source.as_str(),
                    user.username,
                ),
            )
            .of(&user.username));
        }
    };
    if store
        .sso_subject(issuer, &username)
        .await
        .map_err(unavailable)?
        .is_some()
    {
        return Err(taken().of(&username));
    }
    if !store
        .bind_sso_identity(issuer, subject, &username, None)
        .await
        .map_err(unavailable)?
    {
        return Err(taken().of(&username));
    }
    Ok(username)
}

/// The claims of a compact JWS (its middle part), as JSON.
pub(super) fn payload(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let middle = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(middle.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An error and its causes on one line.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
