//! Configuration: `gateway.yaml`, overridden key by key from `PATGATE_<SECTION>__<KEY>`
//! environment variables, parsed and validated once into typed values.
//!
//! Every error names the key, the value and what to do about it, so that a bad config
//! stops the gateway at start with one readable line.
//!
//! Here: [`Config`], its raw mirror as written in YAML, and [`ConfigError`]. `load` reads
//! the file and resolves its relative paths, `env` applies the overrides, `values` parses
//! the kinds of value all sections share, and each section has a file with its typed
//! settings, raw mirror, defaults and checks (`server` for the top-level keys).
//!
//! May import: `core` alone; every other floor reads it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use values::{duration, flag, list, number};

mod audit;
mod cache;
mod database;
mod env;
mod exchange;
mod jwt;
mod load;
mod log;
mod notify;
mod scim;
mod secrets;
mod server;
mod signin;
mod token_rules;
mod upstream;
mod values;

use crate::core::cidr::IpNet;
pub use audit::Audit;
pub use cache::{Cache, Limits};
pub use database::{redact_url, Database};
pub use exchange::Exchange;
pub use jwt::{JwtAlgorithm, JwtSettings};
pub use load::Written;
pub use log::Log;
pub use notify::Notify;
pub use scim::Scim;
pub use secrets::Secrets;
pub use server::{DeployTokens, TlsFiles, UnderscoreHeaders};
pub use signin::{OfflineAccess, SignIn, Sso};
pub use token_rules::{Leaked, Webhooks};
pub use upstream::{BasicAccount, Identity, IdentityMode, Upstream};

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "PATGATE_CONFIG";

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
    /// Where `serve` writes its process id, for `patgate reload`.
    pub pid_file: Option<PathBuf>,
    pub tls: Option<TlsFiles>,
    pub upstream: Upstream,
    pub database: Database,
    pub secrets: Secrets,
    pub cache: Cache,
    pub log: Log,
    pub limits: Limits,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_grace: Duration,
    /// How long readiness answers 503 after SIGTERM/SIGINT while the listeners still
    /// serve, so that a load balancer polling it stops sending before they close.
    pub shutdown_delay: Duration,
    /// Request-serving threads, each with its own event loop and upstream pool.
    pub workers: usize,
    pub signin: SignIn,
    /// OpenID Connect sign-in; `None` when no issuer is configured.
    pub sso: Option<Sso>,
    /// The expiry notifier's schedule and limits.
    pub notify: Notify,
    /// How long the audit log keeps its entries.
    pub audit: Audit,
    /// SCIM provisioning at `/patgate/scim/v2`; `None` (off) while `scim.secret` is unset.
    pub scim: Option<Scim>,
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// What becomes of request headers whose names contain `_`.
    pub underscore_headers: UnderscoreHeaders,
    /// Whether Deploy's own personal access tokens are forwarded or refused.
    pub deploy_tokens: DeployTokens,
    /// Paths a `webhook`-scoped token may reach.
    pub webhooks: Webhooks,
    /// The signing secret of leaked-token reports.
    pub leaked: Leaked,
    /// How CI identity tokens are checked for a token exchange.
    pub exchange: Exchange,
    /// What was written, key by key, for a reload to compare.
    pub written: Written,
}

/// The whole file as written, overrides applied; each section's part is in its own file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: String,
    #[serde(default, deserialize_with = "flag")]
    share_port: bool,
    #[serde(default)]
    admin_listen: String,
    #[serde(default)]
    pid_file: String,
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
    #[serde(default = "server::default_delay")]
    shutdown_delay: String,
    #[serde(default, deserialize_with = "number")]
    workers: usize,
    #[serde(default)]
    signin: signin::RawSignIn,
    #[serde(default)]
    sso: signin::RawSso,
    #[serde(default)]
    notify: notify::RawNotify,
    #[serde(default)]
    audit: audit::RawAudit,
    #[serde(default)]
    scim: scim::RawScim,
    #[serde(default, deserialize_with = "list")]
    trusted_proxies: Vec<String>,
    #[serde(default = "server::default_underscores")]
    underscore_headers: String,
    #[serde(default = "server::default_deploy_tokens")]
    deploy_tokens: String,
    #[serde(default)]
    webhooks: token_rules::RawWebhooks,
    #[serde(default)]
    leaked: token_rules::RawLeaked,
    #[serde(default)]
    exchange: exchange::RawExchange,
}

impl Raw {
    /// Checks the sections one after another; the first problem found is the one reported.
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
        let deploy_tokens = server::deploy_tokens(&self.deploy_tokens)?;
        Ok(Config {
            source: None,
            listen,
            share_port: self.share_port,
            admin_listen,
            pid_file: (!self.pid_file.trim().is_empty())
                .then(|| PathBuf::from(self.pid_file.trim())),
            tls,
            upstream,
            database,
            secrets: self.secrets.validate(),
            cache,
            log,
            limits,
            shutdown_grace: duration("shutdown_grace", &self.shutdown_grace)?,
            shutdown_delay: server::shutdown_delay(&self.shutdown_delay)?,
            workers,
            signin: self.signin.validate()?,
            sso: self.sso.validate()?,
            trusted_proxies,
            underscore_headers,
            deploy_tokens,
            notify: self.notify.validate()?,
            audit: self.audit.validate()?,
            webhooks: self.webhooks.validate()?,
            leaked: self.leaked.validate()?,
            scim: self.scim.validate()?,
            exchange: self.exchange.validate()?,
            written: Written::default(),
        })
    }
}

#[cfg(test)]
mod tests;
