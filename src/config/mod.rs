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

use values::{duration, flag, list, number};

mod cache;
mod database;
mod jwt;
mod log;
mod notify;
mod scim;
mod secrets;
mod server;
mod signin;
mod token_rules;
mod upstream;
mod values;

pub use cache::{Cache, Limits};
pub use database::{redact_url, Database};
pub use jwt::{JwtAlgorithm, JwtSettings};
pub use log::Log;
pub use notify::Notify;
pub use scim::Scim;
pub use secrets::Secrets;
pub use server::{TlsFiles, UnderscoreHeaders};
pub use signin::{SignIn, Sso};
pub use token_rules::{Leaked, Webhooks};
pub use upstream::{BasicAccount, Identity, IdentityMode, Upstream};
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
    /// A problem in words; for checks made outside this module (key files, TLS files).
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }

    /// Whether `error` is, or was caused by, a configuration problem (exit code 2).
    pub fn is_cause_of(error: &anyhow::Error) -> bool {
        error.chain().any(|cause| cause.is::<ConfigError>())
    }

    fn key(key: &str, value: &str, problem: impl std::fmt::Display) -> Self {
        ConfigError(format!("{key} {value:?}: {problem}"))
    }
}

/// The validated configuration the gateway runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from (absolute), when it came from one;
    /// relative paths in it were resolved against its folder.
    pub source: Option<PathBuf>,
    pub listen: SocketAddr,
    /// Whether `listen` may be shared with another process already serving it
    /// (`SO_REUSEPORT`), for a zero-downtime restart; otherwise such a start is refused.
    pub share_port: bool,
    /// A second listener for `/patgate/metrics` and `/patgate/readyz`, which then are
    /// not served on `listen`.
    pub admin_listen: Option<SocketAddr>,
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
    /// SCIM provisioning at `/patgate/scim/v2`; `None` (off) while `scim.secret` is unset.
    pub scim: Option<Scim>,
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// What becomes of request headers whose names contain `_`.
    pub underscore_headers: UnderscoreHeaders,
    /// Paths a `webhook`-scoped token may reach.
    pub webhooks: Webhooks,
    /// The signing secret of leaked-token reports.
    pub leaked: Leaked,
}

// ---- raw, as written in YAML ----

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: String,
    #[serde(default, deserialize_with = "flag")]
    share_port: bool,
    #[serde(default)]
    admin_listen: String,
    #[serde(default)]
    tls: server::RawTls,
    upstream: upstream::RawUpstream,
    database: database::RawDatabase,
    #[serde(default)]
    secrets: secrets::RawSecrets,
    #[serde(default)]
    cache: cache::RawCache,
    #[serde(default)]
    log: log::RawLog,
    #[serde(default)]
    limits: cache::RawLimits,
    #[serde(default = "server::default_grace")]
    shutdown_grace: String,
    #[serde(default, deserialize_with = "number")]
    workers: usize,
    #[serde(default)]
    signin: signin::RawSignIn,
    #[serde(default)]
    sso: signin::RawSso,
    #[serde(default)]
    notify: notify::RawNotify,
    #[serde(default)]
    scim: scim::RawScim,
    #[serde(default, deserialize_with = "list")]
    trusted_proxies: Vec<String>,
    #[serde(default = "server::default_underscores")]
    underscore_headers: String,
    #[serde(default)]
    webhooks: token_rules::RawWebhooks,
    #[serde(default)]
    leaked: token_rules::RawLeaked,
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
        let mut config = Self::from_yaml(&text, &env)
            .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
        let file = std::fs::canonicalize(path)
            .or_else(|_| std::path::absolute(path))
            .unwrap_or_else(|_| path.to_path_buf());
        let folder = file.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&folder);
        config.source = Some(file);
        Ok(config)
    }

    /// Makes every relative path absolute against `folder` (the configuration file's),
    /// as nginx and systemd do: the CLI run from any directory then uses the same
    /// database and keys as the gateway.
    pub fn resolve_paths(&mut self, folder: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() && !path.as_os_str().is_empty() {
                *path = folder.join(&*path);
            }
        };
        resolve(&mut self.secrets.token_key_file);
        if let Some(tls) = &mut self.tls {
            resolve(&mut tls.cert_file);
            resolve(&mut tls.key_file);
        }
        if let Some(ca) = &mut self.upstream.ca_file {
            resolve(ca);
        }
        resolve(&mut self.upstream.identity.jwt.key_file);
        if let Some(ca) = self.sso.as_mut().and_then(|sso| sso.ca_file.as_mut()) {
            resolve(ca);
        }
        if let Some(file) = self.database.sqlite_file() {
            if file.is_relative() {
                let (_, query) = self.database.url.split_once('?').unwrap_or(("", ""));
                let absolute = folder.join(file);
                self.database.url = match query {
                    "" => format!("sqlite://{}", absolute.display()),
                    q => format!("sqlite://{}?{q}", absolute.display()),
                };
            }
        }
    }

    /// Where the configuration came from, for messages.
    pub fn source_text(&self) -> String {
        match &self.source {
            Some(path) => path.display().to_string(),
            None => "(no file)".into(),
        }
    }

    /// Parses YAML text with the given environment (only `PATGATE_*` variables count).
    pub fn from_yaml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut file: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError(format!("not valid YAML: {e}")))?;
        if file.is_null() {
            file = Value::Mapping(Default::default());
        }
        let overrides: Vec<Override> = env
            .iter()
            .filter_map(|(name, value)| {
                let path = name.strip_prefix(OVERRIDE_PREFIX)?;
                (name != CONFIG_ENV && !path.starts_with("TEST_")).then(|| Override {
                    var: name.clone(),
                    path: path.to_string(),
                    value: value.clone(),
                })
            })
            .collect();
        match deserialize(&file, &overrides)? {
            Ok(raw) => raw.validate(),
            Err(e) => Err(explain(e, &file, &overrides)),
        }
    }
}

/// One `PATGATE_…` environment variable.
#[derive(Clone)]
struct Override {
    var: String,
    /// The part after the prefix: `UPSTREAM__URL`.
    path: String,
    value: String,
}

type DeError = serde_path_to_error::Error<serde_yaml_ng::Error>;

/// The file's tree with the overrides applied, deserialized; the outer error is an
/// override that cannot be applied at all.
fn deserialize(file: &Value, overrides: &[Override]) -> Result<Result<Raw, DeError>, ConfigError> {
    let mut tree = file.clone();
    for o in overrides {
        apply_override(&mut tree, &o.var, &o.path, &o.value)?;
    }
    Ok(serde_path_to_error::deserialize(tree))
}

/// The name in serde's "unknown field `name`, expected …".
fn unknown_field(error: &DeError) -> Option<String> {
    let text = error.inner().to_string();
    let rest = text.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// Words an operator's failed deserialization, naming the environment variable when one
/// brought in the unknown key, with the spelling it probably meant.
fn explain(error: DeError, file: &Value, overrides: &[Override]) -> ConfigError {
    if let Some(field) = unknown_field(&error) {
        let culprit = overrides.iter().position(|o| {
            o.path
                .rsplit("__")
                .next()
                .is_some_and(|last| last.eq_ignore_ascii_case(&field))
        });
        if let Some(i) = culprit {
            let var = &overrides[i].var;
            let key = overrides[i]
                .path
                .split("__")
                .collect::<Vec<_>>()
                .join(".")
                .to_ascii_lowercase();
            let hint =
                "sections and keys are separated by two underscores: PATGATE_<SECTION>__<KEY>";
            return match suggest(file, overrides, i) {
                Some(better) => ConfigError(format!(
                    "environment variable {var}: no setting {key}; did you mean {OVERRIDE_PREFIX}{better}? ({hint})"
                )),
                None => ConfigError(format!(
                    "environment variable {var}: no setting {key} ({hint}); see the configuration reference in README.md"
                )),
            };
        }
    }
    let key = error.path().to_string();
    ConfigError(format!(
        "key {key}: {}; see the configuration reference in README.md",
        error.into_inner()
    ))
}

/// Another spelling of override `i`, with some single underscores doubled, that names
/// a real setting.
fn suggest(file: &Value, overrides: &[Override], i: usize) -> Option<String> {
    let path = &overrides[i].path;
    let bytes = path.as_bytes();
    // Single underscores: not next to another one.
    let singles: Vec<usize> = (0..bytes.len())
        .filter(|&j| {
            bytes[j] == b'_' && bytes.get(j + 1) != Some(&b'_') && (j == 0 || bytes[j - 1] != b'_')
        })
        .collect();
    if singles.is_empty() || singles.len() > 8 {
        return None;
    }
    // Fewest doubled underscores first.
    let mut masks: Vec<u32> = (1..1u32 << singles.len()).collect();
    masks.sort_by_key(|m| m.count_ones());
    for mask in masks {
        let mut candidate = String::with_capacity(path.len() + singles.len());
        for (j, c) in path.char_indices() {
            candidate.push(c);
            if let Some(k) = singles.iter().position(|&s| s == j) {
                if mask & (1 << k) != 0 {
                    candidate.push('_');
                }
            }
        }
        let mut trial = overrides.to_vec();
        trial[i].path = candidate.clone();
        let last = candidate
            .rsplit("__")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match deserialize(file, &trial) {
            Ok(Ok(_)) => return Some(candidate),
            Ok(Err(e)) if unknown_field(&e).is_none_or(|f| f != last) => return Some(candidate),
            _ => {}
        }
    }
    None
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

impl Raw {
    fn validate(self) -> Result<Config, ConfigError> {
        let (listen, admin_listen) = server::addresses(&self.listen, &self.admin_listen)?;
        let tls = self.tls.validate()?;
        let upstream = self.upstream.validate()?;

        let database = self.database.validate()?;

        let log = self.log.validate()?;
        let limits = self.limits.validate()?;
        let cache = self.cache.validate()?;

        let workers = server::workers(self.workers)?;
        let trusted_proxies = server::trusted_proxies(&self.trusted_proxies)?;
        let underscore_headers = server::underscore_headers(&self.underscore_headers)?;

        Ok(Config {
            source: None,
            listen,
            share_port: self.share_port,
            admin_listen,
            tls,
            upstream,
            database,
            secrets: self.secrets.validate(),
            cache,
            log,
            limits,
            shutdown_grace: duration("shutdown_grace", &self.shutdown_grace)?,
            workers,
            signin: self.signin.validate()?,
            sso: self.sso.validate()?,
            trusted_proxies,
            underscore_headers,
            notify: self.notify.validate()?,
            webhooks: self.webhooks.validate()?,
            leaked: self.leaked.validate()?,
            scim: self.scim.validate()?,
        })
    }
}

#[cfg(test)]
mod tests;
