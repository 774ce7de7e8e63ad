//! Password sign-in, checked by Deploy: the gateway asks Deploy a harmless question
//! (`GET /deployit/server/info`) with the caller's credentials; 200 means valid, 401
//! not. Admin status comes from Deploy's admin check ([`admin_answer`]) and/or
//! `signin.admin_users`.
//!
//! A successful check is remembered for `signin.cache_ttl` under a keyed hash of the
//! credentials, never the password; a new session never uses that memory, so its
//! administrator rights are Deploy's answer of now. Failures are limited hard per
//! client address and per (user, address); per user they only slow the check down, so
//! that nobody can lock another person out by guessing wrong. Deploy unreachable is a
//! 503, never "wrong password". A personal access token is never sent to Deploy as a
//! password or a name.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Request, StatusCode};
use moka::future::Cache;

use super::failures::{FailureKey, FailureLog};
use super::http_client::HttpClient;
use crate::config::{self, Config, IdentityMode};
use crate::core::error::ApiError;
use crate::core::text::username_key;
use crate::core::token::{contains_token, TokenHash, TokenHasher};
use crate::identity::UpstreamIdentity;
use crate::store::{AuditEvent, Store, UserSource};
use crate::tokens::limiter::FailureLimiter;

/// How long a check waits while the user's name is over its failure limit: guessing
/// slows down, the right password still gets through.
const SLOWDOWN: Duration = Duration::from_secs(1);

/// What a successful password check found.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    pub admin: bool,
}

/// The user a successful check signed in, as the gateway knows them.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The name as stored (`alice` for a sign-in as `Alice`).
    pub username: String,
    pub source: UserSource,
    pub admin: bool,
}

/// Why the password is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A browser session starts: Deploy is asked now, whatever is remembered.
    NewSession,
    /// One API request with `Authorization: Basic`: a remembered answer will do.
    Request,
}

pub struct DeployCheck {
    /// Where Deploy is and how it is asked; replaced by a reload.
    target: std::sync::RwLock<Arc<Target>>,
    check_path: String,
    admin_path: Option<String>,
    admin_users: Vec<String>,
    hasher: TokenHasher,
    cache: Option<Cache<TokenHash, Checked>>,
    by_address: FailureLimiter<IpAddr>,
    by_user_address: FailureLimiter<(String, IpAddr)>,
    by_user: FailureLimiter<String>,
    /// Failed sign-ins, written to the audit log once a minute.
    pub failures: Arc<FailureLog>,
}

/// Deploy as a reload will have the API ask it.
pub struct DeployTarget(Arc<Target>);

/// Deploy, as the API asks it.
struct Target {
    client: HttpClient,
    base: String,
    /// `base` without user information, for messages.
    address: String,
    /// How the gateway asserts a user to Deploy, for asking Deploy again about an
    /// administrator without their password; `None` in basic mode, where it cannot.
    identity: Option<UpstreamIdentity>,
}

impl Target {
    fn new(
        upstream: &config::Upstream,
        identity: Option<UpstreamIdentity>,
    ) -> anyhow::Result<Target> {
        let url = upstream.url.to_string();
        Ok(Target {
            client: HttpClient::new(
                upstream.ca_file.as_deref(),
                upstream.connect_timeout + Duration::from_secs(10),
            )?,
            base: url.trim_end_matches('/').to_string(),
            address: upstream.address(),
            identity: identity.filter(|_| upstream.identity.mode != IdentityMode::Basic),
        })
    }
}

impl DeployCheck {
    /// Where `upstream` says Deploy is, asserting users with `identity`: built before a
    /// reload changes anything, used by [`DeployCheck::set_upstream`].
    pub fn prepare_upstream(
        upstream: &config::Upstream,
        identity: Option<UpstreamIdentity>,
    ) -> anyhow::Result<DeployTarget> {
        Ok(DeployTarget(Arc::new(Target::new(upstream, identity)?)))
    }

    /// Asks Deploy there from now on (a reload).
    pub fn set_upstream(&self, target: DeployTarget) {
        *self.target.write().unwrap_or_else(|p| p.into_inner()) = target.0;
    }

    fn target(&self) -> Arc<Target> {
        self.target
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn new(
        config: &Config,
        hasher: TokenHasher,
        identity: Option<UpstreamIdentity>,
    ) -> anyhow::Result<DeployCheck> {
        let signin = &config.signin;
        let limits = config::Limits {
            failures_per_second: signin.failures_per_minute / 60.0,
            failure_burst: signin.failure_burst,
        };
        Ok(DeployCheck {
            target: std::sync::RwLock::new(Arc::new(Target::new(&config.upstream, identity)?)),
            check_path: signin.deploy_check_path.clone(),
            admin_path: signin.deploy_admin_path.clone(),
            admin_users: signin.admin_users.clone(),
            hasher,
            cache: (!signin.cache_ttl.is_zero()).then(|| {
                Cache::builder()
                    .max_capacity(10_000)
                    .time_to_live(signin.cache_ttl)
                    .build()
            }),
            by_address: FailureLimiter::new(&limits),
            by_user_address: FailureLimiter::new(&limits),
            by_user: FailureLimiter::new(&limits),
            failures: Arc::default(),
        })
    }

    /// Whether `username` is an administrator by configuration.
    pub fn configured_admin(&self, username: &str) -> bool {
        let key = username_key(username);
        self.admin_users.iter().any(|u| username_key(u) == key)
    }

    /// Checks a username and password; records the sign-in (and audits it when it was
    /// checked with Deploy rather than remembered, or for a new session).
    pub async fn check(
        &self,
        store: &Store,
        username: &str,
        password: &str,
        ip: IpAddr,
        purpose: Purpose,
    ) -> Result<SignedIn, ApiError> {
        if contains_token(username.as_bytes()) || contains_token(password.as_bytes()) {
            return Err(ApiError::bad_request(
                "token_not_password",
                "this is a personal access token, not a Deploy password: API clients send it \
                 as the password of an empty username (curl -u :TOKEN); sign in with your Deploy \
                 username and password",
            ));
        }
        let key = self.key(username, password);
        let remembered = match (&self.cache, purpose) {
            (Some(cache), Purpose::Request) => cache.get(&key).await,
            _ => None,
        };
        let checked = match remembered {
            Some(checked) => checked,
            None => self.ask_limited(store, username, password, ip).await?,
        };
        let user = store.user(username).await?;
        if user.as_ref().is_some_and(|u| u.disabled) {
            return Err(ApiError::forbidden(
                "your account is disabled in the gateway; ask an administrator",
            ));
        }
        let source = user.as_ref().map_or(UserSource::Internal, |u| u.source);
        let mut username = user.map_or_else(|| username.to_string(), |u| u.username);
        if remembered.is_none() {
            username = store
                .record_sign_in(&username, UserSource::Internal, checked.admin, None)
                .await?;
            store
                .audit_or_log(AuditEvent {
                    actor: Some(username.clone()),
                    action: "signin.succeeded",
                    username: Some(username.clone()),
                    ip: Some(ip.to_string()),
                    detail: Some(serde_json::json!({"method": "password"})),
                    ..AuditEvent::default()
                })
                .await;
            if let Some(cache) = &self.cache {
                cache.insert(key, checked).await;
            }
        }
        Ok(SignedIn {
            username,
            source,
            admin: checked.admin,
        })
    }

    /// Asks Deploy, within the failure limits: refused outright when this address, or
    /// this name from this address, failed too often; slowed down when the name did.
    async fn ask_limited(
        &self,
        store: &Store,
        username: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<Checked, ApiError> {
        let name = username_key(username);
        let pair = (name.clone(), ip);
        if self.by_address.blocked(&ip).await || self.by_user_address.blocked(&pair).await {
            return Err(too_many());
        }
        if self.by_user.blocked(&name).await {
            tokio::time::sleep(SLOWDOWN).await;
        }
        if let Some(checked) = self.ask_deploy(username, password).await? {
            return Ok(checked);
        }
        let over = self.by_address.record_failure(ip).await
            | self.by_user_address.record_failure(pair).await;
        self.by_user.record_failure(name).await;
        // A name nobody has is never written down: it may be a password typed into the
        // wrong field.
        let known = store
            .user(username)
            .await
            .ok()
            .flatten()
            .map(|u| u.username);
        self.failures.record(FailureKey {
            ip,
            method: "password",
            reason: "rejected_by_deploy",
            username: known,
        });
        if over {
            return Err(too_many());
        }
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "Deploy did not accept this username and password",
        ))
    }

    /// Asks Deploy again whether `username` is an administrator, asserting them as
    /// their tokens' requests do (header or jwt mode), since the gateway never keeps a
    /// password. `None` when Deploy cannot be asked: basic mode, or Deploy unreachable.
    pub async fn recheck_admin(&self, store: &Store, username: &str) -> Option<bool> {
        if self.configured_admin(username) {
            return Some(true);
        }
        let Some(path) = &self.admin_path else {
            return Some(false);
        };
        let target = self.target();
        let identity = target.identity.as_ref()?;
        let roles = store.user_roles(username).await.ok()?;
        let mut headers = HeaderMap::new();
        if let Err(e) = identity
            .apply(&mut headers, &Arc::from(username), &roles)
            .await
        {
            tracing::warn!(error = %e, "could not assert a user to Deploy for its admin check");
            return None;
        }
        let answer = self.get(path, headers).await.ok()?;
        Some(is_admin_answer(&answer))
    }

    fn key(&self, username: &str, password: &str) -> TokenHash {
        let mut material = Vec::with_capacity(username.len() + password.len() + 8);
        material.extend_from_slice(b"signin\0");
        material.extend_from_slice(username.as_bytes());
        material.push(0);
        material.extend_from_slice(password.as_bytes());
        self.hasher.hash(&material)
    }

    /// `Some` when Deploy accepts the credentials, `None` when it refuses them.
    async fn ask_deploy(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<Checked>, ApiError> {
        let basic = basic(username, password)?;
        let answer = self.get(&self.check_path, authorized(&basic)).await?;
        match answer.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Ok(None),
            other => {
                tracing::warn!(status = other.as_u16(), path = %self.check_path, "Deploy's password check answered unexpectedly");
                return Err(deploy_unexpected(other, &self.check_path));
            }
        }
        let mut admin = self.configured_admin(username);
        if let (false, Some(path)) = (admin, &self.admin_path) {
            let answer = self.get(path, authorized(&basic)).await?;
            admin = is_admin_answer(&answer);
        }
        Ok(Some(Checked { admin }))
    }

    async fn get(
        &self,
        path: &str,
        headers: HeaderMap,
    ) -> Result<http::Response<Vec<u8>>, ApiError> {
        let target = self.target();
        let mut request = Request::get(format!("{}{path}", target.base))
            .header(http::header::ACCEPT, ADMIN_ANSWER_TYPE)
            .body(Vec::new())
            .map_err(|_| deploy_unavailable(&target.address))?;
        request.headers_mut().extend(headers);
        target.client.send(request).await.map_err(|e| {
            tracing::warn!(error = %e, "Deploy could not be asked to check a password");
            deploy_unavailable(&target.address)
        })
    }
}

/// What the gateway asks Deploy's admin check for: its documented content type.
pub const ADMIN_ANSWER_TYPE: &str = "application/xml";

/// Whether Deploy's admin check (`GET /deployit/security/check/admin`) said yes. Deploy
/// documents a boolean in `application/xml` and shows no example body, so both
/// `<boolean>true</boolean>` (an XML declaration before it, whitespace around the value)
/// and a JSON `true` count; anything else, `false` included, is no.
pub fn admin_answer(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    let text = text.trim_start_matches('\u{feff}').trim();
    if serde_json::from_str::<bool>(text).is_ok_and(|yes| yes) {
        return true;
    }
    let element = match text.strip_prefix("<?xml") {
        Some(declared) => match declared.split_once("?>") {
            Some((_, rest)) => rest.trim_start(),
            None => return false,
        },
        None => text,
    };
    element
        .strip_prefix("<boolean>")
        .and_then(|rest| rest.strip_suffix("</boolean>"))
        .is_some_and(|value| value.trim() == "true")
}

/// Deploy's admin check said yes.
fn is_admin_answer(answer: &http::Response<Vec<u8>>) -> bool {
    answer.status().is_success() && admin_answer(answer.body())
}

fn authorized(value: &HeaderValue) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, value.clone());
    headers
}

fn basic(username: &str, password: &str) -> Result<HeaderValue, ApiError> {
    use base64::Engine;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| ApiError::bad_request("invalid_credentials", "unusable credentials"))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Deploy did not answer at all: the address is named (it is the operator's setting,
/// not a secret) so that a wrong `upstream.url` is found at once.
fn deploy_unavailable(base: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "deploy_unavailable",
        format!(
            "Deploy could not be reached at {base} to check your password (upstream.url); try again later"
        ),
    )
}

/// Deploy answered, but neither yes nor no: a wrong `signin.deploy_check_path`, or
/// something else than Deploy at the upstream address.
fn deploy_unexpected(status: StatusCode, path: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "deploy_unexpected_answer",
        format!(
            "Deploy answered unexpectedly (status {} at {path}) when asked to check your password; \
             check upstream.url and signin.deploy_check_path",
            status.as_u16()
        ),
    )
}

fn too_many() -> ApiError {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_sign_in_failures",
        "too many failed sign-ins for this user or from your address; wait a minute and try again",
    );
    error
        .headers
        .push((http::header::RETRY_AFTER, HeaderValue::from_static("60")));
    error
}

#[cfg(test)]
mod tests {
    use super::admin_answer;

    #[test]
    fn the_admin_check_says_yes_in_xml_or_json_and_nothing_else_counts() {
        let yes = [
            "<boolean>true</boolean>",
            "<boolean> true\n</boolean>\n",
            "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<boolean>\n  true\n</boolean>",
            "true",
            " true\r\n",
        ];
        for body in yes {
            assert!(admin_answer(body.as_bytes()), "{body:?}");
        }
        let no = [
            "",
            "<boolean>false</boolean>",
            "false",
            "\"true\"",
            "TRUE",
            "<boolean>TRUE</boolean>",
            "<boolean>truest</boolean>",
            "<boolean>true</boolean><boolean>false</boolean>",
            "<html><body><boolean>true</boolean></body></html>",
            "{\"admin\": true}",
            "[true]",
            "<?xml version=\"1.0\"<boolean>true</boolean>",
        ];
        for body in no {
            assert!(!admin_answer(body.as_bytes()), "{body:?}");
        }
        assert!(!admin_answer(b"<boolean>\xfftrue</boolean>"));
    }
}
