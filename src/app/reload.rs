//! Reloading the configuration in place (`SIGHUP`, `patgate reload`): the file and the
//! environment are read again and validated with the checks `check-config` makes; what
//! the request path can take live is applied at once (new connections and the next
//! request of open ones), what cannot is named in the log and left as it was. A file
//! that fails validation changes nothing. The gateway never stops because of a reload.

use std::sync::{Arc, Mutex};

use crate::api::Api;
use crate::config::{Config, IdentityMode, Written};
use crate::core::sealed::Sealer;
use crate::edge::gateway::Gateway;
use crate::edge::live::Live;
use crate::edge::server;
use crate::identity::jwt::JwtMinter;
use crate::identity::UpstreamIdentity;
use crate::logging::LogLevel;
use crate::metrics::Metrics;
use crate::signin::deploy::DeployCheck;
use crate::signin::SignIn;
use crate::store::Store;
use crate::tokens::rules::AccessRules;

/// Keys a reload applies: a key is live when it or a section above it is listed.
const LIVE: [&str; 13] = [
    "upstream",
    "sso",
    "notify",
    "tls",
    "limits",
    "webhooks",
    "scim",
    "trusted_proxies",
    "underscore_headers",
    "deploy_tokens",
    "log.level",
    "log.access",
    "audit",
];

fn under(key: &str, section: &str) -> bool {
    key == section
        || key
            .strip_prefix(section)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// Whether a reload applies `key`.
pub fn is_live(key: &str) -> bool {
    LIVE.iter().any(|s| under(key, s))
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct Reloaded {
    /// Keys whose new value is in use.
    pub applied: Vec<String>,
    /// Keys that changed but need a restart; their old value is still in use.
    pub needs_restart: Vec<String>,
}

/// Applies new configurations to a running gateway; cloned freely.
#[derive(Clone)]
pub struct Reloader {
    inner: Arc<Inner>,
}

struct Inner {
    gateway: Arc<Gateway>,
    api: Arc<Api>,
    /// The JWT signing keys in use (jwt mode); a reload that changes the mode or the JWT
    /// settings starts new ones.
    jwt: Mutex<Option<Arc<JwtMinter>>>,
    store: Store,
    sealer: Arc<Sealer>,
    metrics: Arc<Metrics>,
    log: Mutex<Option<LogLevel>>,
    /// The configuration in use, and what it was read from (live keys as the last
    /// reload wrote them, the others as at start).
    state: tokio::sync::Mutex<(Config, Written)>,
}

impl Reloader {
    pub fn new(
        config: Config,
        gateway: Arc<Gateway>,
        api: Arc<Api>,
        jwt: Option<Arc<JwtMinter>>,
        store: Store,
        sealer: Arc<Sealer>,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        let written = config.written.clone();
        Reloader {
            inner: Arc::new(Inner {
                gateway,
                api,
                jwt: Mutex::new(jwt),
                store,
                sealer,
                metrics,
                log: Mutex::new(None),
                state: tokio::sync::Mutex::new((config, written)),
            }),
        }
    }

    /// Lets reloads change the log level.
    pub fn set_log_level(&self, log: LogLevel) {
        *self.inner.log.lock().unwrap_or_else(|p| p.into_inner()) = Some(log);
    }

    /// Reads the file the gateway was started with again, with the environment.
    pub async fn reload_file(&self) -> anyhow::Result<Reloaded> {
        let source = self.inner.state.lock().await.0.source.clone();
        let Some(path) = source else {
            anyhow::bail!("the gateway was not started from a configuration file");
        };
        let result = match Config::load(&path) {
            Ok(config) => self.apply(config).await,
            Err(e) => Err(e.into()),
        };
        self.count(&result);
        result
    }

    /// Applies `new` (already read); nothing changes unless all of it is valid.
    pub async fn reload(&self, new: Config) -> anyhow::Result<Reloaded> {
        let result = self.apply(new).await;
        self.count(&result);
        result
    }

    fn count(&self, result: &anyhow::Result<Reloaded>) {
        let local = self.inner.metrics.local();
        let counter = match result {
            Ok(_) => &local.reloads_ok,
            Err(_) => &local.reloads_failed,
        };
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn apply(&self, new: Config) -> anyhow::Result<Reloaded> {
        // The checks `check-config` and `serve` make.
        crate::app::preflight::check(&new)?;
        let mut state = self.inner.state.lock().await;
        let (running, written) = &mut *state;
        let changed = written.changed(&new.written);
        let (applied, needs_restart): (Vec<String>, Vec<String>) =
            changed.into_iter().partition(|key| is_live(key));

        // New signing keys when the mode or the JWT settings changed (they are shared
        // through the database, so every replica publishes the same ones).
        let upstream = new.upstream.clone();
        let jwt_changed = applied
            .iter()
            .any(|key| under(key, "upstream.identity.mode") || under(key, "upstream.identity.jwt"));
        let current = self
            .inner
            .jwt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let jwt = match upstream.identity.mode {
            IdentityMode::Jwt if jwt_changed || current.is_none() => Some(
                JwtMinter::start(
                    &upstream.identity.jwt,
                    self.inner.store.clone(),
                    self.inner.sealer.clone(),
                )
                .await?,
            ),
            IdentityMode::Jwt => current,
            _ => None,
        };
        let identity = UpstreamIdentity::new(&upstream.identity, jwt.clone())?;
        let deploy = DeployCheck::prepare_upstream(
            &upstream,
            Some(UpstreamIdentity::new(&upstream.identity, jwt.clone())?),
        )?;
        // The certificate files are read again even when their names did not change:
        // a renewed certificate is usually written over the old one.
        let tls = new.tls.as_ref().map(server::tls_acceptor).transpose()?;
        let oidc = SignIn::prepare_sso(new.sso.clone())?;
        if running.log.level != new.log.level {
            if let Some(log) = &*self.inner.log.lock().unwrap_or_else(|p| p.into_inner()) {
                log.set(&new.log.level)
                    .map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
            }
        }
        // Everything that could fail has been built: from here on the reload applies
        // whole.

        let mut effective = running.clone();
        effective.upstream = upstream;
        effective.tls = new.tls.clone();
        effective.trusted_proxies = new.trusted_proxies.clone();
        effective.underscore_headers = new.underscore_headers;
        effective.deploy_tokens = new.deploy_tokens;
        effective.log.level = new.log.level.clone();
        effective.log.access = new.log.access;
        effective.limits = new.limits.clone();
        effective.webhooks = new.webhooks.clone();
        effective.scim = new.scim.clone();
        effective.notify = new.notify.clone();
        effective.sso = new.sso.clone();
        effective.audit = new.audit.clone();
        self.inner
            .api
            .set_audit_retention(effective.audit.retention);
        self.inner.api.signin.set_sso(oidc);
        self.inner
            .api
            .notifier
            .set_settings(effective.notify.clone());
        // The API's password checks and administrator re-checks ask the new Deploy.
        self.inner.api.signin.deploy.set_upstream(deploy);
        let tokens = &self.inner.gateway.tokens;
        tokens.set_limits(&effective.limits);
        tokens.set_rules(AccessRules::new(&effective.webhooks.paths));
        *self
            .inner
            .api
            .scim
            .write()
            .unwrap_or_else(|p| p.into_inner()) = effective.scim.clone();
        self.inner
            .gateway
            .live
            .replace(Live::new(&effective, identity, tls));
        for key in &applied {
            written.take(&new.written, key);
        }
        *running = effective;
        *self.inner.jwt.lock().unwrap_or_else(|p| p.into_inner()) = jwt;
        Ok(Reloaded {
            applied,
            needs_restart,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_live;

    #[test]
    fn the_request_paths_keys_are_live_and_the_rest_waits_for_a_restart() {
        for key in [
            "upstream.url",
            "upstream.ca_file",
            "upstream.identity.header",
            "upstream.identity.shared_secret.value",
            "tls.cert_file",
            "trusted_proxies",
            "log.level",
            "log.access",
            "deploy_tokens",
            "limits.failures_per_second",
            "webhooks.paths",
            "scim.secret",
            "upstream.identity.mode",
            "upstream.identity.jwt.audience",
            "notify.daily_at",
            "sso.issuer",
            "sso.revalidate_every",
            "audit.retention",
        ] {
            assert!(is_live(key), "{key}");
        }
        for key in [
            "listen",
            "workers",
            "database.url",
            "log.json",
            "logging",
            "tlsx",
            "signin.cache_ttl",
            "cache.serve_stale_for",
        ] {
            assert!(!is_live(key), "{key}");
        }
    }
}
