//! The `signin:` and `sso:` sections: how people prove who they are to the gateway's
//! own API and pages (Deploy's password check, OpenID Connect), and how long a browser
//! session lasts.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, number, optional_path, ListOrText};
use super::ConfigError;

/// Password sign-in (checked by Deploy) and browser sessions.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// Deploy path that answers 200 to valid credentials and 401 to others.
    pub deploy_check_path: String,
    /// Deploy path that answers `<boolean>true</boolean>` for administrators; `None`
    /// leaves admin status to `admin_users`.
    pub deploy_admin_path: Option<String>,
    /// Users who are administrators of the gateway whatever Deploy says.
    pub admin_users: Vec<String>,
    /// How long a successful password check is remembered (under a keyed hash).
    pub cache_ttl: Duration,
    /// Failed sign-ins allowed per minute, per client address and per username.
    pub failures_per_minute: f64,
    pub failure_burst: u32,
    pub session_idle_timeout: Duration,
    pub session_absolute_timeout: Duration,
    /// How long a password session's administrator rights hold before Deploy is asked
    /// again (an administrator removed in Deploy loses them within this time).
    pub admin_recheck: Duration,
}

/// OpenID Connect sign-in for SSO users.
#[derive(Clone)]
pub struct Sso {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub username_claim: String,
    pub email_claim: String,
    pub roles_claim: String,
    /// Members of any of these roles (groups) are administrators.
    pub admin_roles: Vec<String>,
    pub scopes: Vec<String>,
    /// The callback address registered with the provider. Required: a callback built
    /// from a request's `Host` would send codes wherever a client says.
    pub redirect_url: String,
    /// Extra PEM CA bundle for the provider's https endpoints.
    pub ca_file: Option<PathBuf>,
    /// SSO sign-ins one client address may start per minute (and at once).
    pub starts_per_minute: u32,
    /// How often each SSO user is asked again at the provider with the refresh token
    /// kept at sign-in; `None`: never (roles as of the last sign-in, or SCIM's).
    pub revalidate_every: Option<Duration>,
    /// Whether sign-ins ask for `offline_access` (what most providers need to issue a
    /// refresh token).
    pub offline_access: OfflineAccess,
}

/// When sign-ins ask for the `offline_access` scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineAccess {
    /// When the provider's discovery document lists it.
    Auto,
    Always,
    Never,
}

impl std::fmt::Debug for Sso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sso")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSignIn {
    deploy_check_path: String,
    deploy_admin_path: String,
    admin_users: ListOrText,
    cache_ttl: String,
    #[serde(deserialize_with = "number")]
    failures_per_minute: f64,
    #[serde(deserialize_with = "number")]
    failure_burst: u32,
    session_idle_timeout: String,
    session_absolute_timeout: String,
    admin_recheck: String,
}

impl Default for RawSignIn {
    fn default() -> Self {
        RawSignIn {
            deploy_check_path: "/deployit/server/info".into(),
            deploy_admin_path: "/deployit/security/check/admin".into(),
            admin_users: ListOrText::Empty,
            cache_ttl: "60s".into(),
            failures_per_minute: 6.0,
            failure_burst: 10,
            session_idle_timeout: "30m".into(),
            session_absolute_timeout: "12h".into(),
            admin_recheck: "5m".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSso {
    issuer: String,
    client_id: String,
    client_secret: String,
    username_claim: String,
    email_claim: String,
    roles_claim: String,
    admin_roles: ListOrText,
    scopes: ListOrText,
    redirect_url: String,
    ca_file: String,
    #[serde(deserialize_with = "number")]
    starts_per_minute: u32,
    revalidate_every: String,
    offline_access: String,
}

impl Default for RawSso {
    fn default() -> Self {
        RawSso {
            issuer: String::new(),
            client_id: String::new(),
            client_secret: String::new(),
            username_claim: "preferred_username".into(),
            email_claim: "email".into(),
            roles_claim: "groups".into(),
            admin_roles: ListOrText::Empty,
            scopes: ListOrText::Empty,
            redirect_url: String::new(),
            ca_file: String::new(),
            starts_per_minute: 20,
            revalidate_every: "15m".into(),
            offline_access: "auto".into(),
        }
    }
}

fn path_key(key: &str, value: &str) -> Result<String, ConfigError> {
    if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
        return Err(ConfigError::key(
            key,
            value,
            "write a path on Deploy starting with /, without query",
        ));
    }
    Ok(value.to_string())
}

fn http_url(key: &str, value: &str) -> Result<String, ConfigError> {
    let uri: http::Uri = value
        .parse()
        .map_err(|_| ConfigError::key(key, value, "not a URL; write https://HOST[:PORT][/PATH]"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(ConfigError::key(
            key,
            value,
            "write an http:// or https:// URL with a host",
        ));
    }
    Ok(value.trim_end_matches('/').to_string())
}

impl RawSignIn {
    pub(super) fn validate(self) -> Result<SignIn, ConfigError> {
        let per_minute = self.failures_per_minute;
        if !(per_minute > 0.0 && per_minute.is_finite()) {
            return Err(ConfigError::key(
                "signin.failures_per_minute",
                &per_minute.to_string(),
                "must be a positive number",
            ));
        }
        if self.failure_burst == 0 {
            return Err(ConfigError::key(
                "signin.failure_burst",
                "0",
                "must be at least 1",
            ));
        }
        let idle = duration("signin.session_idle_timeout", &self.session_idle_timeout)?;
        let absolute = duration(
            "signin.session_absolute_timeout",
            &self.session_absolute_timeout,
        )?;
        if idle < Duration::from_secs(60) || absolute < idle {
            return Err(ConfigError(format!(
                "signin.session_idle_timeout {:?} and session_absolute_timeout {:?}: the idle \
                 timeout must be at least 1m and no longer than the absolute timeout",
                self.session_idle_timeout, self.session_absolute_timeout
            )));
        }
        let admin_recheck = duration("signin.admin_recheck", &self.admin_recheck)?;
        if admin_recheck < Duration::from_secs(1) || admin_recheck > Duration::from_secs(3600) {
            return Err(ConfigError::key(
                "signin.admin_recheck",
                &self.admin_recheck,
                "must be between 1s and 1h; Deploy is asked again this often whether an administrator still is one",
            ));
        }
        Ok(SignIn {
            deploy_check_path: path_key("signin.deploy_check_path", &self.deploy_check_path)?,
            deploy_admin_path: match self.deploy_admin_path.trim() {
                "" => None,
                path => Some(path_key("signin.deploy_admin_path", path)?),
            },
            admin_users: self.admin_users.into_vec(),
            cache_ttl: duration("signin.cache_ttl", &self.cache_ttl)?,
            failures_per_minute: per_minute,
            failure_burst: self.failure_burst,
            session_idle_timeout: idle,
            session_absolute_timeout: absolute,
            admin_recheck,
        })
    }
}

impl RawSso {
    /// `None` when SSO is off (no issuer).
    pub(super) fn validate(self) -> Result<Option<Sso>, ConfigError> {
        if self.issuer.trim().is_empty() {
            return Ok(None);
        }
        let issuer = http_url("sso.issuer", self.issuer.trim())?;
        if self.client_id.is_empty() {
            return Err(ConfigError(
                "sso.client_id: required with sso.issuer; use the client id registered with your provider".into(),
            ));
        }
        if self.client_secret.is_empty() {
            return Err(ConfigError(
                "sso.client_secret: required with sso.issuer; set it here or in PATGATE_SSO__CLIENT_SECRET".into(),
            ));
        }
        for (key, value) in [
            ("sso.username_claim", &self.username_claim),
            ("sso.email_claim", &self.email_claim),
            ("sso.roles_claim", &self.roles_claim),
        ] {
            if value.trim().is_empty() {
                return Err(ConfigError::key(key, value, "name a claim"));
            }
        }
        let mut scopes = self.scopes.into_vec();
        if scopes.is_empty() {
            scopes = vec!["openid".into(), "profile".into(), "email".into()];
        }
        let redirect_url = match self.redirect_url.trim() {
            "" => {
                return Err(ConfigError(
                    "sso.redirect_url: required with sso.issuer; write the callback URL registered with your provider, like https://deploy.example.com/patgate/sso/callback".into(),
                ))
            }
            url => http_url("sso.redirect_url", url)?,
        };
        if !redirect_url.ends_with("/patgate/sso/callback") {
            return Err(ConfigError::key(
                "sso.redirect_url",
                &redirect_url,
                "must end in /patgate/sso/callback, the gateway's callback route",
            ));
        }
        if self.starts_per_minute == 0 {
            return Err(ConfigError::key(
                "sso.starts_per_minute",
                "0",
                "must be at least 1: the SSO sign-ins one client address may start per minute",
            ));
        }
        let revalidate_every = match self.revalidate_every.trim() {
            "off" | "0" | "0s" => None,
            text => {
                let every = duration("sso.revalidate_every", text)?;
                if every < Duration::from_secs(1) || every > Duration::from_secs(86_400) {
                    return Err(ConfigError::key(
                        "sso.revalidate_every",
                        text,
                        "must be between 1s and 24h, or off: how often each SSO user's roles and status are asked again at the provider",
                    ));
                }
                Some(every)
            }
        };
        let offline_access = match self.offline_access.trim() {
            "auto" => OfflineAccess::Auto,
            "always" | "true" => OfflineAccess::Always,
            "never" | "false" => OfflineAccess::Never,
            other => return Err(ConfigError::key(
                "sso.offline_access",
                other,
                "write auto (ask for offline_access when the provider lists it), always or never",
            )),
        };
        Ok(Some(Sso {
            issuer,
            client_id: self.client_id,
            client_secret: self.client_secret,
            username_claim: self.username_claim,
            email_claim: self.email_claim,
            roles_claim: self.roles_claim,
            admin_roles: self.admin_roles.into_vec(),
            scopes,
            redirect_url,
            ca_file: optional_path(&self.ca_file),
            starts_per_minute: self.starts_per_minute,
            revalidate_every,
            offline_access,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{env, MINIMAL};
    use super::super::Config;

    const SSO: [(&str, &str); 3] = [
        ("PATGATE_SSO__ISSUER", "https://login.example.com"),
        ("PATGATE_SSO__CLIENT_ID", "patgate"),
        ("PATGATE_SSO__CLIENT_SECRET", "s3cret"),
    ];

    fn load(extra: &[(&str, &str)]) -> Result<Config, String> {
        let mut all = SSO.to_vec();
        all.extend_from_slice(extra);
        Config::from_yaml(MINIMAL, &env(&all)).map_err(|e| e.to_string())
    }

    #[test]
    fn sso_needs_the_registered_callback_url() {
        // Built from a request's Host, a callback would go wherever a client says.
        let err = load(&[]).unwrap_err();
        assert!(err.contains("sso.redirect_url: required"), "{err}");
        let err = load(&[(
            "PATGATE_SSO__REDIRECT_URL",
            "https://deploy.example.com/elsewhere",
        )])
        .unwrap_err();
        assert!(err.contains("/patgate/sso/callback"), "{err}");
        let cfg = load(&[(
            "PATGATE_SSO__REDIRECT_URL",
            "https://deploy.example.com/patgate/sso/callback",
        )])
        .unwrap();
        assert_eq!(cfg.sso.unwrap().starts_per_minute, 20);
        let err = load(&[
            (
                "PATGATE_SSO__REDIRECT_URL",
                "https://deploy.example.com/patgate/sso/callback",
            ),
            ("PATGATE_SSO__STARTS_PER_MINUTE", "0"),
        ])
        .unwrap_err();
        assert!(err.contains("sso.starts_per_minute"), "{err}");
    }

    #[test]
    fn admin_recheck_is_a_bounded_duration() {
        let cfg = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(
            cfg.signin.admin_recheck,
            std::time::Duration::from_secs(300)
        );
        for bad in ["0s", "2h", "soon"] {
            let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_SIGNIN__ADMIN_RECHECK", bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("signin.admin_recheck"), "{bad}: {err}");
        }
    }
}
