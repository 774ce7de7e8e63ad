//! Configuration: `gateway.yaml`, overridden key by key from `PATGATE_<SECTION>__<KEY>`
//! environment variables, parsed and validated once into typed values.
//!
//! Every error names the key, the value and what to do about it, so that a bad config
//! stops the gateway at start with one readable line.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_yaml_ng::Value;

mod jwt;
mod notify;
mod signin;

pub use jwt::{JwtAlgorithm, JwtSettings};
pub use notify::Notify;
pub use signin::{SignIn, Sso};
mod cidr;
pub use cidr::IpNet;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "PATGATE_CONFIG";
/// Prefix of the variables that override single config keys.
const OVERRIDE_PREFIX: &str = "PATGATE_";

/// A configuration problem, worded for the operator who has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn key(key: &str, value: &str, problem: impl std::fmt::Display) -> Self {
        ConfigError(format!("{key} {value:?}: {problem}"))
    }
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls: Option<TlsFiles>,
    pub upstream: Upstream,
    pub database: Database,
    pub secrets: Secrets,
    pub cache: Cache,
    pub log: Log,
    pub limits: Limits,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// Request-serving threads, each with its own event loop and upstream pool.
    pub workers: usize,
    pub signin: SignIn,
    /// OpenID Connect sign-in; `None` when no issuer is configured.
    pub sso: Option<Sso>,
    /// The expiry notifier's schedule and limits.
    pub notify: Notify,
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// What becomes of request headers whose names contain `_`.
    pub underscore_headers: UnderscoreHeaders,
}

/// Request headers with `_` in their name: a downstream that reads `_` as `-` would
/// take `X_Deploy_User` for `X-Deploy-User`. Look-alikes of the headers the gateway
/// itself reads or sets are dropped whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnderscoreHeaders {
    /// Forwarded as they are.
    Forward,
    /// Removed, as nginx does by default.
    Drop,
    /// The request is refused with 400.
    Refuse,
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

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

#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub max_connections: u32,
}

impl Database {
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }
}

#[derive(Clone)]
pub struct Secrets {
    /// Inline HMAC key for token hashes (hex or base64, at least 32 bytes); wins over the file.
    pub token_key: Option<String>,
    /// Key file, created with mode 0600 on first start when `token_key` is not set.
    pub token_key_file: PathBuf,
    /// Older keys (hex or base64) that still verify tokens stored under them, while a
    /// key is rotated; tokens are re-hashed under the current key when next used.
    pub previous_token_keys: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("token_key", &self.token_key.as_ref().map(|_| "<redacted>"))
            .field("token_key_file", &self.token_key_file)
            .field("previous_token_keys", &self.previous_token_keys.len())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    pub max_tokens: u64,
    /// Upper bound on how long a valid token stays cached (revocations evict at once).
    pub ttl: Duration,
    /// How long an unknown token hash is remembered as unknown.
    pub negative_ttl: Duration,
    /// How often the store is polled for revocations made by other processes.
    pub poll_interval: Duration,
}

/// Per-address limit on failed token checks (see `limiter`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub failures_per_second: f64,
    pub failure_burst: u32,
}

#[derive(Debug, Clone)]
pub struct Log {
    pub level: String,
    pub json: bool,
}

// ---- raw, as written in YAML ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: String,
    #[serde(default)]
    tls: RawTls,
    upstream: RawUpstream,
    database: RawDatabase,
    #[serde(default)]
    secrets: RawSecrets,
    #[serde(default)]
    cache: RawCache,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default = "default_grace")]
    shutdown_grace: String,
    #[serde(default, deserialize_with = "number")]
    workers: usize,
    #[serde(default)]
    signin: signin::RawSignIn,
    #[serde(default)]
    sso: signin::RawSso,
    #[serde(default)]
    notify: notify::RawNotify,
    #[serde(default, deserialize_with = "list")]
    trusted_proxies: Vec<String>,
    #[serde(default = "default_underscores")]
    underscore_headers: String,
}

fn default_underscores() -> String {
    "forward".into()
}

fn default_grace() -> String {
    "30s".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
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
    jwt: jwt::RawJwt,
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
            jwt: jwt::RawJwt::default(),
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    url: String,
    /// 0: 4 for SQLite (one writer; lookups are single index seeks), 8 for PostgreSQL.
    #[serde(default, deserialize_with = "number")]
    max_connections: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    #[serde(default)]
    token_key: String,
    #[serde(default = "default_token_key_file")]
    token_key_file: String,
    #[serde(default)]
    previous_token_keys: signin::ListOrText,
}

impl Default for RawSecrets {
    fn default() -> Self {
        RawSecrets {
            token_key: String::new(),
            token_key_file: default_token_key_file(),
            previous_token_keys: signin::ListOrText::Empty,
        }
    }
}

fn default_token_key_file() -> String {
    "data/token-hmac.key".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    #[serde(default = "default_max_tokens", deserialize_with = "number")]
    max_tokens: u64,
    #[serde(default = "default_cache_ttl")]
    ttl: String,
    #[serde(default = "default_negative_ttl")]
    negative_ttl: String,
    #[serde(default = "default_poll")]
    poll_interval: String,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            max_tokens: default_max_tokens(),
            ttl: default_cache_ttl(),
            negative_ttl: default_negative_ttl(),
            poll_interval: default_poll(),
        }
    }
}

fn default_max_tokens() -> u64 {
    200_000
}
fn default_cache_ttl() -> String {
    "10m".into()
}
fn default_negative_ttl() -> String {
    "30s".into()
}
fn default_poll() -> String {
    "250ms".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_failures_per_second", deserialize_with = "number")]
    failures_per_second: f64,
    #[serde(default = "default_failure_burst", deserialize_with = "number")]
    failure_burst: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            failures_per_second: default_failures_per_second(),
            failure_burst: default_failure_burst(),
        }
    }
}

fn default_failures_per_second() -> f64 {
    10.0
}
fn default_failure_burst() -> u32 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default = "default_level")]
    level: String,
    #[serde(default = "default_format")]
    format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: default_level(),
            format: default_format(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}
fn default_format() -> String {
    "text".into()
}

impl Config {
    /// Reads `path`, applies the process environment's overrides and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "config file {}: {e}; pass --config PATH or set {CONFIG_ENV}",
                path.display()
            ))
        })?;
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::from_yaml(&text, &env)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
    }

    /// Parses YAML text with the given environment (only `PATGATE_*` variables count).
    pub fn from_yaml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut tree: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError(format!("not valid YAML: {e}")))?;
        if tree.is_null() {
            tree = Value::Mapping(Default::default());
        }
        for (name, value) in env {
            let Some(path) = name.strip_prefix(OVERRIDE_PREFIX) else {
                continue;
            };
            if name == CONFIG_ENV || path.starts_with("TEST_") {
                continue;
            }
            apply_override(&mut tree, name, path, value)?;
        }
        let raw: Raw = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            ConfigError(format!(
                "key {key}: {}; see the configuration reference in README.md",
                e.into_inner()
            ))
        })?;
        raw.validate()
    }
}

/// Sets one key from `PATGATE_A__B__C=value`, creating sections as needed.
fn apply_override(tree: &mut Value, var: &str, path: &str, value: &str) -> Result<(), ConfigError> {
    let keys: Vec<String> = path.split("__").map(|k| k.to_ascii_lowercase()).collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(ConfigError(format!(
            "environment variable {var}: empty key segment; write PATGATE_<SECTION>__<KEY>"
        )));
    }
    let mut node = tree;
    for key in &keys {
        if !node.is_mapping() {
            return Err(ConfigError(format!(
                "environment variable {var}: {key} is not inside a section"
            )));
        }
        let map = node.as_mapping_mut().expect("checked above");
        node = map
            .entry(Value::String(key.clone()))
            .or_insert(Value::Mapping(Default::default()));
    }
    // Always text: numeric keys parse it themselves, so a password of digits stays text.
    *node = Value::String(value.to_string());
    Ok(())
}

/// A number written as a YAML number or as text (environment overrides are text).
fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + serde::Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText<T> {
        Number(T),
        Text(String),
    }
    match NumberOrText::<T>::deserialize(deserializer)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a number"))),
    }
}

/// `true` or `false`, as YAML or as text.
fn flag<'de, D>(deserializer: D) -> Result<bool, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FlagOrText {
        Flag(bool),
        Text(String),
    }
    match FlagOrText::deserialize(deserializer)? {
        FlagOrText::Flag(flag) => Ok(flag),
        FlagOrText::Text(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "{text:?} is not true or false"
            ))),
        },
    }
}

/// A list, as a YAML sequence or as text separated by commas or spaces (an
/// environment override).
fn list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(deserializer)? {
        ListOrText::List(items) => items,
        ListOrText::Text(text) => text
            .split([',', ' '])
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value)
        .map_err(|e| ConfigError::key(key, value, format!("{e}; write a duration like 30s or 5m")))
}

fn optional_path(value: &str) -> Option<PathBuf> {
    (!value.trim().is_empty()).then(|| PathBuf::from(value))
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

impl Raw {
    fn validate(self) -> Result<Config, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            ConfigError::key(
                "listen",
                &self.listen,
                "not an address; write HOST:PORT like 0.0.0.0:4516",
            )
        })?;

        let tls = match (
            optional_path(&self.tls.cert_file),
            optional_path(&self.tls.key_file),
        ) {
            (None, None) => None,
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file,
                key_file,
            }),
            _ => {
                return Err(ConfigError(
                    "tls: set both tls.cert_file and tls.key_file, or neither".into(),
                ))
            }
        };

        let url: http::Uri = self.upstream.url.parse().map_err(|_| {
            ConfigError::key(
                "upstream.url",
                &self.upstream.url,
                "not a URL; write http://HOST:PORT",
            )
        })?;
        match url.scheme_str() {
            Some("http") | Some("https") => {}
            Some(other) => {
                return Err(ConfigError::key(
                    "upstream.url",
                    &self.upstream.url,
                    format!("unsupported scheme {other:?}; use http or https"),
                ))
            }
            None => {
                return Err(ConfigError::key(
                    "upstream.url",
                    &self.upstream.url,
                    "missing scheme; write http://HOST:PORT or https://HOST:PORT",
                ))
            }
        }
        if url.host().is_none() {
            return Err(ConfigError::key(
                "upstream.url",
                &self.upstream.url,
                "missing host",
            ));
        }
        if url
            .path_and_query()
            .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
        {
            return Err(ConfigError::key(
                "upstream.url",
                &self.upstream.url,
                "must not carry a path; requests keep their own path",
            ));
        }

        let identity = self.upstream.identity;
        let mode = match identity.mode.as_str() {
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
        let header = header_name("upstream.identity.header", &identity.header)?;
        let shared_secret = if identity.shared_secret.is_empty() {
            None
        } else {
            let name = header_name(
                "upstream.identity.shared_secret_header",
                &identity.shared_secret_header,
            )?;
            let mut value = http::HeaderValue::from_str(&identity.shared_secret).map_err(|_| {
                ConfigError(
                    "upstream.identity.shared_secret: not a valid header value; use printable ASCII".into(),
                )
            })?;
            value.set_sensitive(true);
            Some((name, value))
        };
        if mode == IdentityMode::Header
            && shared_secret.is_none()
            && !identity.allow_header_without_secret
        {
            return Err(ConfigError(format!(
                "upstream.identity.shared_secret \"\": header mode needs a shared secret: \
                 without one, Deploy cannot tell the gateway's {0} from a {0} sent by anything \
                 else that reaches it; set PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET (e.g. \
                 openssl rand -hex 32) and have Deploy check it (deploy/README.md), or set \
                 upstream.identity.allow_header_without_secret: true to run without one",
                identity.header
            )));
        }
        let jwt = identity.jwt.validate(mode == IdentityMode::Jwt)?;
        let basic = if identity.basic.username.is_empty() {
            None
        } else {
            Some(BasicAccount {
                username: identity.basic.username,
                password: identity.basic.password,
            })
        };
        if mode == IdentityMode::Basic && basic.is_none() {
            return Err(ConfigError(
                "upstream.identity.mode \"basic\": set upstream.identity.basic.username and .password (the service account)".into(),
            ));
        }

        let url_text = self.database.url.trim().to_string();
        if !(url_text.starts_with("sqlite:")
            || url_text.starts_with("postgres://")
            || url_text.starts_with("postgresql://"))
        {
            return Err(ConfigError::key(
                "database.url",
                &redact_url(&url_text),
                "unsupported database; use sqlite://PATH or postgres://USER@HOST/DB",
            ));
        }
        let max_connections = match self.database.max_connections {
            0 if url_text.starts_with("sqlite:") => 4,
            0 => 8,
            n => n,
        };

        let log_json = match self.log.format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError::key("log.format", other, "use text or json"));
            }
        };
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            ConfigError::key(
                "log.level",
                &self.log.level,
                format!("{e}; use error, warn, info, debug or trace"),
            )
        })?;
        if !(self.limits.failures_per_second > 0.0 && self.limits.failures_per_second.is_finite()) {
            return Err(ConfigError::key(
                "limits.failures_per_second",
                &self.limits.failures_per_second.to_string(),
                "must be a positive number",
            ));
        }
        if self.limits.failure_burst == 0 {
            return Err(ConfigError::key(
                "limits.failure_burst",
                "0",
                "must be at least 1",
            ));
        }
        let poll = duration("cache.poll_interval", &self.cache.poll_interval)?;
        if poll < Duration::from_millis(10) || poll > Duration::from_millis(500) {
            return Err(ConfigError::key(
                "cache.poll_interval",
                &self.cache.poll_interval,
                "must be between 10ms and 500ms, so that revocations apply within a second",
            ));
        }
        if self.workers > 256 {
            return Err(ConfigError::key(
                "workers",
                &self.workers.to_string(),
                "at most 256; 0 means one per CPU",
            ));
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse()
                    .map_err(|problem| ConfigError::key("trusted_proxies", text, problem))
            })
            .collect::<Result<Vec<IpNet>, _>>()?;
        let underscore_headers = match self.underscore_headers.as_str() {
            "forward" => UnderscoreHeaders::Forward,
            "drop" => UnderscoreHeaders::Drop,
            "refuse" => UnderscoreHeaders::Refuse,
            other => {
                return Err(ConfigError::key(
                    "underscore_headers",
                    other,
                    "use forward, drop or refuse",
                ))
            }
        };
        if self.cache.max_tokens == 0 {
            return Err(ConfigError::key(
                "cache.max_tokens",
                "0",
                "must be at least 1",
            ));
        }

        Ok(Config {
            listen,
            tls,
            upstream: Upstream {
                url,
                connect_timeout: duration(
                    "upstream.connect_timeout",
                    &self.upstream.connect_timeout,
                )?,
                read_timeout: duration("upstream.read_timeout", &self.upstream.read_timeout)?,
                ca_file: optional_path(&self.upstream.ca_file),
                max_idle_per_host: self.upstream.max_idle_per_host,
                identity: Identity {
                    mode,
                    header,
                    shared_secret,
                    jwt,
                    basic,
                },
            },
            database: Database {
                url: url_text,
                max_connections,
            },
            secrets: Secrets {
                token_key: (!self.secrets.token_key.is_empty()).then_some(self.secrets.token_key),
                token_key_file: PathBuf::from(self.secrets.token_key_file),
                previous_token_keys: self.secrets.previous_token_keys.into_vec(),
            },
            cache: Cache {
                max_tokens: self.cache.max_tokens,
                ttl: duration("cache.ttl", &self.cache.ttl)?,
                negative_ttl: duration("cache.negative_ttl", &self.cache.negative_ttl)?,
                poll_interval: poll,
            },
            log: Log {
                level: self.log.level,
                json: log_json,
            },
            limits: Limits {
                failures_per_second: self.limits.failures_per_second,
                failure_burst: self.limits.failure_burst,
            },
            shutdown_grace: duration("shutdown_grace", &self.shutdown_grace)?,
            workers: match self.workers {
                0 => std::thread::available_parallelism().map_or(1, usize::from),
                n => n,
            },
            signin: self.signin.validate()?,
            sso: self.sso.validate()?,
            trusted_proxies,
            underscore_headers,
            notify: self.notify.validate()?,
        })
    }
}

/// Hides a password in a database URL (user info or `password=` parameter) before it
/// goes into a message.
pub fn redact_url(url: &str) -> String {
    let redacted = redact_userinfo(url);
    match redacted.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => redacted,
    }
}

fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "listen: 127.0.0.1:4516\nupstream:\n  url: http://127.0.0.1:14516\n  identity:\n    allow_header_without_secret: true\ndatabase:\n  url: sqlite://x.db\n";

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let cfg = Config::from_yaml(
            MINIMAL,
            &env(&[
                ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
                ("PATGATE_DATABASE__URL", "postgres://u:pw@db/x"),
                ("PATGATE_CACHE__MAX_TOKENS", "7"),
                ("PATGATE_LISTEN", "0.0.0.0:9"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.upstream.identity.mode, IdentityMode::Jwt);
        assert!(cfg.database.is_postgres());
        assert_eq!(cfg.cache.max_tokens, 7);
        assert_eq!(cfg.listen.port(), 9);
    }

    #[test]
    fn text_keys_keep_digits_as_text_and_numbers_parse() {
        let cfg = Config::from_yaml(
            MINIMAL,
            &env(&[
                ("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", "123456"),
                ("PATGATE_LIMITS__FAILURES_PER_SECOND", "2.5"),
            ]),
        )
        .unwrap();
        let (_, secret) = cfg.upstream.identity.shared_secret.unwrap();
        assert_eq!(secret, "123456");
        assert_eq!(cfg.limits.failures_per_second, 2.5);
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_CACHE__MAX_TOKENS", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cache.max_tokens") && err.contains("lots"),
            "{err}"
        );
    }

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
    fn unknown_key_is_named() {
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_UPSTREAM__URLL", "http://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("urll"), "{err}");
    }

    #[test]
    fn database_password_is_redacted_in_errors() {
        let err = Config::from_yaml(
            MINIMAL,
            &env(&[("PATGATE_DATABASE__URL", "mysql://u:hunter2@h/x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn password_parameters_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h/db?sslmode=require&password=x"),
            "postgres://u:***@h/db?sslmode=require&password=***"
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

    #[test]
    fn the_shipped_gateway_yaml_starts_as_it_is() {
        let cfg = Config::from_yaml(include_str!("../../gateway.yaml"), &env(&[])).unwrap();
        assert!(cfg.trusted_proxies.is_empty());
        assert_eq!(cfg.underscore_headers, UnderscoreHeaders::Forward);
    }

    #[test]
    fn trusted_proxies_are_networks_from_yaml_or_the_environment() {
        let yaml =
            format!("{MINIMAL}trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.1]\n");
        let cfg = Config::from_yaml(&yaml, &env(&[])).unwrap();
        assert_eq!(cfg.trusted_proxies.len(), 3);
        assert!(cfg.trusted_proxies[1].contains("2001:db8::7".parse().unwrap()));
        let cfg = Config::from_yaml(
            MINIMAL,
            &env(&[("PATGATE_TRUSTED_PROXIES", "10.0.0.0/8, fd00::/8")]),
        )
        .unwrap();
        assert_eq!(cfg.trusted_proxies.len(), 2);
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_TRUSTED_PROXIES", "10.1.2.3/8")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trusted_proxies \"10.1.2.3/8\"") && err.contains("write 10.0.0.0/8"),
            "{err}"
        );
    }

    #[test]
    fn underscore_headers_is_one_of_three() {
        let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_UNDERSCORE_HEADERS", "strip")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("underscore_headers \"strip\""), "{err}");
    }
}
