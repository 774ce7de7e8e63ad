//! The `upstream:` section: where Deploy is, and how each request tells it who the user is.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::jwt::{JwtSettings, RawJwt};
use super::values::{duration, flag, number, optional_path};
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: http::Uri,
    pub connect_timeout: Duration,
    /// Longest wait for the upstream's response head; bodies stream without a limit.
    pub read_timeout: Duration,
    /// Extra PEM CA bundle trusted for an `https` upstream, besides the OS store.
    pub ca_file: Option<PathBuf>,
    pub max_idle_per_host: usize,
    pub identity: Identity,
}

impl Upstream {
    /// Where Deploy is, for messages: scheme, host and port, never user information.
    pub fn address(&self) -> String {
        let scheme = self.url.scheme_str().unwrap_or("http");
        let host = self.url.host().unwrap_or("");
        match self.url.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub mode: IdentityMode,
    /// Header carrying the authenticated username to Deploy (all modes).
    pub header: http::HeaderName,
    /// Optional header + value proving to Deploy that a request came through the gateway.
    pub shared_secret: Option<(http::HeaderName, http::HeaderValue)>,
    pub jwt: JwtSettings,
    pub basic: Option<BasicAccount>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityMode {
    Header,
    Jwt,
    Basic,
}

#[derive(Clone)]
pub struct BasicAccount {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAccount")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    /// Empty when not written, so that a missing URL gets the same message as an empty one.
    #[serde(default)]
    url: String,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: String,
    #[serde(default = "default_read_timeout")]
    read_timeout: String,
    #[serde(default)]
    ca_file: String,
    #[serde(default = "default_idle", deserialize_with = "number")]
    max_idle_per_host: usize,
    #[serde(default)]
    identity: RawIdentity,
}

fn default_connect_timeout() -> String {
    "5s".into()
}
fn default_read_timeout() -> String {
    "300s".into()
}
fn default_idle() -> usize {
    64
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(default = "default_mode")]
    mode: String,
    #[serde(default = "default_header")]
    header: String,
    #[serde(default = "default_secret_header")]
    shared_secret_header: String,
    #[serde(default)]
    shared_secret: String,
    /// Header mode without a shared secret, knowingly (trying the gateway out).
    #[serde(default, deserialize_with = "flag")]
    allow_header_without_secret: bool,
    #[serde(default)]
    jwt: RawJwt,
    #[serde(default)]
    basic: RawBasic,
}

impl Default for RawIdentity {
    fn default() -> Self {
        RawIdentity {
            mode: default_mode(),
            header: default_header(),
            shared_secret_header: default_secret_header(),
            shared_secret: String::new(),
            allow_header_without_secret: false,
            jwt: RawJwt::default(),
            basic: RawBasic::default(),
        }
    }
}

fn default_mode() -> String {
    "header".into()
}
fn default_header() -> String {
    "X-Deploy-User".into()
}
fn default_secret_header() -> String {
    "X-Patgate-Secret".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasic {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

impl RawUpstream {
    pub(super) fn validate(self) -> Result<Upstream, ConfigError> {
        if self.url.trim().is_empty() {
            let missing = ConfigError::key(
                "upstream.url",
                &self.url,
                "not set; set PATGATE_UPSTREAM__URL (or upstream.url) to Deploy's address as \
                 the gateway reaches it, http://HOST:PORT",
            );
            // One start names everything missing, not one thing per restart.
            return Err(match self.identity.validate() {
                Ok(_) => missing,
                Err(identity) => ConfigError(format!("{missing}; and {identity}")),
            });
        }
        let url: http::Uri = self.url.parse().map_err(|_| {
            ConfigError::key(
                "upstream.url",
                &self.url,
                "not a URL; write http://HOST:PORT",
            )
        })?;
        match url.scheme_str() {
            Some("http") | Some("https") => {}
            Some(other) => {
                return Err(ConfigError::key(
                    "upstream.url",
                    &self.url,
                    format!("unsupported scheme {other:?}; use http or https"),
                ))
            }
            None => {
                return Err(ConfigError::key(
                    "upstream.url",
                    &self.url,
                    "missing scheme; write http://HOST:PORT or https://HOST:PORT",
                ))
            }
        }
        if url.host().is_none() {
            return Err(ConfigError::key("upstream.url", &self.url, "missing host"));
        }
        if url
            .path_and_query()
            .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
        {
            return Err(ConfigError::key(
                "upstream.url",
                &self.url,
                "must not carry a path; requests keep their own path",
            ));
        }
        let identity = self.identity.validate()?;
        Ok(Upstream {
            url,
            connect_timeout: duration("upstream.connect_timeout", &self.connect_timeout)?,
            read_timeout: duration("upstream.read_timeout", &self.read_timeout)?,
            ca_file: optional_path(&self.ca_file),
            max_idle_per_host: self.max_idle_per_host,
            identity,
        })
    }
}

impl RawIdentity {
    fn validate(self) -> Result<Identity, ConfigError> {
        let mode = match self.mode.as_str() {
            "header" => IdentityMode::Header,
            "jwt" => IdentityMode::Jwt,
            "basic" => IdentityMode::Basic,
            other => {
                return Err(ConfigError::key(
                    "upstream.identity.mode",
                    other,
                    "unknown mode; use header, jwt or basic",
                ))
            }
        };
        let header = header_name("upstream.identity.header", &self.header)?;
        let shared_secret = if self.shared_secret.is_empty() {
            None
        } else {
            let name = header_name(
                "upstream.identity.shared_secret_header",
                &self.shared_secret_header,
            )?;
            let mut value = http::HeaderValue::from_str(&self.shared_secret).map_err(|_| {
                ConfigError(
                    "upstream.identity.shared_secret: not a valid header value; use printable ASCII".into(),
                )
            })?;
            value.set_sensitive(true);
            Some((name, value))
        };
        if mode == IdentityMode::Header
            && shared_secret.is_none()
            && !self.allow_header_without_secret
        {
            return Err(ConfigError(format!(
                "upstream.identity.shared_secret \"\": header mode needs a shared secret: \
                 without one, Deploy cannot tell the gateway's {0} from one sent by anything else \
                 that reaches it; set PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET (e.g. \
                 openssl rand -hex 32) and have Deploy check it (deploy/README.md), or choose \
                 another mode with PATGATE_UPSTREAM__IDENTITY__MODE (jwt for a stock Deploy; \
                 basic with PATGATE_UPSTREAM__IDENTITY__BASIC__USERNAME and __PASSWORD), or \
                 set upstream.identity.allow_header_without_secret: true to run without one",
                self.header
            )));
        }
        let jwt = self.jwt.validate(mode == IdentityMode::Jwt)?;
        let basic = if self.basic.username.is_empty() {
            None
        } else {
            Some(BasicAccount {
                username: self.basic.username,
                password: self.basic.password,
            })
        };
        if mode == IdentityMode::Basic && basic.is_none() {
            return Err(ConfigError(
                "upstream.identity.mode \"basic\": set upstream.identity.basic.username and .password, the service account (PATGATE_UPSTREAM__IDENTITY__BASIC__USERNAME and PATGATE_UPSTREAM__IDENTITY__BASIC__PASSWORD)".into(),
            ));
        }

        Ok(Identity {
            mode,
            header,
            shared_secret,
            jwt,
            basic,
        })
    }
}

fn header_name(key: &str, value: &str) -> Result<http::HeaderName, ConfigError> {
    let fix = "not a valid HTTP header name; use letters, digits and '-'";
    if value.contains('_') {
        // Servers drop such names or read '_' as '-'; the gateway drops their look-alikes.
        return Err(ConfigError::key(
            key,
            value,
            format!("{fix} ('_' is read as '-' by many servers)"),
        ));
    }
    http::HeaderName::from_bytes(value.as_bytes()).map_err(|_| ConfigError::key(key, value, fix))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, MINIMAL};
    use crate::config::Config;

    #[test]
    fn bad_scheme_names_key_value_and_fix() {
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_UPSTREAM__URL", "htp://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("upstream.url"), "{err}");
        assert!(err.contains("htp://x"), "{err}");
        assert!(err.contains("use http or https"), "{err}");
    }

    #[test]
    fn a_missing_or_empty_url_names_the_key_the_variable_and_what_else_is_missing() {
        let no_url = MINIMAL.replace("  url: http://127.0.0.1:14516\n", "");
        for (yaml, env_pairs) in [
            (no_url.as_str(), &[][..]),
            (MINIMAL, &[("PATGATE_UPSTREAM__URL", "")][..]),
        ] {
            let err = Config::from_yaml(yaml, &env(env_pairs))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("upstream.url \"\": not set;"), "{err}");
            assert!(err.contains("PATGATE_UPSTREAM__URL"), "{err}");
            assert!(!err.contains("shared_secret"), "{err}");
        }
        let bare = MINIMAL
            .replace("http://127.0.0.1:14516", "\"\"")
            .replace("  identity:\n    allow_header_without_secret: true\n", "");
        let err = Config::from_yaml(&bare, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("PATGATE_UPSTREAM__URL"), "{err}");
        assert!(
            err.contains("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET"),
            "{err}"
        );
        let err = Config::from_yaml(
            &bare,
            &env(&[("PATGATE_UPSTREAM__IDENTITY__MODE", "basic")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("PATGATE_UPSTREAM__URL"), "{err}");
        assert!(
            err.contains("PATGATE_UPSTREAM__IDENTITY__BASIC__PASSWORD"),
            "{err}"
        );
    }

    #[test]
    fn basic_mode_requires_service_account() {
        let err = Config::from_yaml(
            MINIMAL,
            &env(&[("PATGATE_UPSTREAM__IDENTITY__MODE", "basic")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("upstream.identity.basic.username"), "{err}");
    }

    #[test]
    fn header_mode_needs_a_secret_or_an_explicit_choice() {
        let bare = MINIMAL.replace("  identity:\n    allow_header_without_secret: true\n", "");
        let err = Config::from_yaml(&bare, &env(&[])).unwrap_err().to_string();
        assert!(err.contains("upstream.identity.shared_secret"), "{err}");
        assert!(err.contains("allow_header_without_secret: true"), "{err}");
        assert!(err.contains("X-Deploy-User"), "{err}");
        for fix in [
            ("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", "s3cret"),
            (
                "PATGATE_UPSTREAM__IDENTITY__ALLOW_HEADER_WITHOUT_SECRET",
                "true",
            ),
            ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
        ] {
            assert!(Config::from_yaml(&bare, &env(&[fix])).is_ok(), "{fix:?}");
        }
        let err = Config::from_yaml(
            &bare,
            &env(&[(
                "PATGATE_UPSTREAM__IDENTITY__ALLOW_HEADER_WITHOUT_SECRET",
                "yes",
            )]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not true or false"), "{err}");
    }

    #[test]
    fn identity_header_names_have_no_underscore() {
        let err = Config::from_yaml(
            MINIMAL,
            &env(&[("PATGATE_UPSTREAM__IDENTITY__HEADER", "X_Remote_User")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("upstream.identity.header \"X_Remote_User\""),
            "{err}"
        );
    }
}
