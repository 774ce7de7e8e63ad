//! Password sign-in, checked by Deploy: the gateway asks Deploy a harmless question
//! (`GET /deployit/server/info`) with the caller's credentials; 200 means valid, 401
//! not. Admin status comes from Deploy's admin check ([`admin_answer`]) and/or
//! `signin.admin_users`.
//!
//! A successful check is remembered for `signin.cache_ttl` under a keyed hash of the
//! credentials, never the password. Failures are limited per client address and per
//! username; Deploy unreachable is a 503, never "wrong password".

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode};
use moka::future::Cache;

use super::http_client::HttpClient;
use crate::config::{self, Config};
use crate::core::error::ApiError;
use crate::core::token::{TokenHash, TokenHasher};
use crate::store::{AuditEvent, Store, UserSource};
use crate::tokens::limiter::FailureLimiter;

/// What a successful password check found.
#[derive(Debug, Clone, Copy)]
pub struct Checked {
    pub admin: bool,
}

pub struct DeployCheck {
    client: HttpClient,
    base: String,
    check_path: String,
    admin_path: Option<String>,
    admin_users: Vec<String>,
    hasher: TokenHasher,
    cache: Option<Cache<TokenHash, Checked>>,
    by_address: FailureLimiter<IpAddr>,
    by_user: FailureLimiter<String>,
}

impl DeployCheck {
    pub fn new(config: &Config, hasher: TokenHasher) -> anyhow::Result<DeployCheck> {
        let signin = &config.signin;
        let limits = config::Limits {
            failures_per_second: signin.failures_per_minute / 60.0,
            failure_burst: signin.failure_burst,
        };
        let url = config.upstream.url.to_string();
        Ok(DeployCheck {
            client: HttpClient::new(
                config.upstream.ca_file.as_deref(),
                config.upstream.connect_timeout + Duration::from_secs(10),
            )?,
            base: url.trim_end_matches('/').to_string(),
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
            by_user: FailureLimiter::new(&limits),
        })
    }

    /// Whether `username` is an administrator by configuration.
    pub fn configured_admin(&self, username: &str) -> bool {
        self.admin_users.iter().any(|u| u == username)
    }

    /// Checks a username and password; records the sign-in (and audits it when it was
    /// checked with Deploy rather than remembered, or when `always_audit`).
    pub async fn check(
        &self,
        store: &Store,
        username: &str,
        password: &str,
        ip: IpAddr,
        always_audit: bool,
    ) -> Result<Checked, ApiError> {
        let user_key = username.to_lowercase();
        if self.by_address.blocked(&ip).await || self.by_user.blocked(&user_key).await {
            return Err(too_many());
        }
        let key = self.key(username, password);
        let remembered = match &self.cache {
            Some(cache) => cache.get(&key).await,
            None => None,
        };
        let checked = match remembered {
            Some(checked) => checked,
            None => match self.ask_deploy(username, password).await? {
                Some(checked) => checked,
                None => {
                    let over = self.by_address.record_failure(ip).await
                        | self.by_user.record_failure(user_key).await;
                    store.audit_or_log(AuditEvent {
                        actor: Some(username.to_string()),
                        action: "signin.failed",
                        username: Some(username.to_string()),
                        ip: Some(ip.to_string()),
                        detail: Some(serde_json::json!({"method": "password", "reason": "rejected by Deploy"})),
                        ..AuditEvent::default()
                    })
                    .await;
                    if over {
                        return Err(too_many());
                    }
                    return Err(ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "invalid_credentials",
                        "Deploy did not accept this username and password",
                    ));
                }
            },
        };
        if let Some(user) = store.user(username).await? {
            if user.disabled {
                return Err(ApiError::forbidden(
                    "your account is disabled in the gateway; ask an administrator",
                ));
            }
        }
        if remembered.is_none() || always_audit {
            store
                .record_sign_in(username, UserSource::Internal, checked.admin, None)
                .await?;
            store
                .audit_or_log(AuditEvent {
                    actor: Some(username.to_string()),
                    action: "signin.succeeded",
                    username: Some(username.to_string()),
                    ip: Some(ip.to_string()),
                    detail: Some(serde_json::json!({"method": "password"})),
                    ..AuditEvent::default()
                })
                .await;
        }
        if let (None, Some(cache)) = (remembered, &self.cache) {
            cache.insert(key, checked).await;
        }
        Ok(checked)
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
        let answer = self.get(&self.check_path, &basic).await?;
        match answer.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Ok(None),
            other => {
                tracing::warn!(status = other.as_u16(), path = %self.check_path, "Deploy's password check answered unexpectedly");
                return Err(deploy_unavailable());
            }
        }
        let mut admin = self.configured_admin(username);
        if let (false, Some(path)) = (admin, &self.admin_path) {
            let answer = self.get(path, &basic).await?;
            admin = answer.status().is_success() && admin_answer(answer.body());
        }
        Ok(Some(Checked { admin }))
    }

    async fn get(
        &self,
        path: &str,
        authorization: &HeaderValue,
    ) -> Result<http::Response<Vec<u8>>, ApiError> {
        let request = Request::get(format!("{}{path}", self.base))
            .header(http::header::AUTHORIZATION, authorization.clone())
            .header(http::header::ACCEPT, ADMIN_ANSWER_TYPE)
            .body(Vec::new())
            .map_err(|_| deploy_unavailable())?;
        self.client.send(request).await.map_err(|e| {
            tracing::warn!(error = %e, "Deploy could not be asked to check a password");
            deploy_unavailable()
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

fn basic(username: &str, password: &str) -> Result<HeaderValue, ApiError> {
    use base64::Engine;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .map_err(|_| ApiError::bad_request("invalid_credentials", "unusable credentials"))?;
    value.set_sensitive(true);
    Ok(value)
}

fn deploy_unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "deploy_unavailable",
        "Deploy could not be reached to check your password; try again later",
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
