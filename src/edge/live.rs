//! The request path's settings that a reload may change (`SIGHUP`, `patgate reload`):
//! Deploy's address and TLS trust, the identity asserted to Deploy, the header rules and
//! trusted proxies, the access log, Deploy's own tokens, the listener's certificate.
//!
//! A [`LiveCell`] holds the current [`Live`] value and a generation number. A
//! connection keeps the value it started with and, before each request, compares one
//! number (a relaxed atomic load of a line nobody writes between reloads) to take the
//! new value after a reload: no lock and no shared write per request. A worker builds
//! its upstream connections again for a new generation; requests already on their way
//! finish on the old ones, and open client connections are not cut.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;

use crate::config::{self, Config, DeployTokens};
use crate::edge::headers::Rules;
use crate::identity::UpstreamIdentity;

/// One generation of the settings.
pub struct Live {
    /// Counts reloads: 0 for the settings the gateway started with.
    pub generation: u64,
    pub rules: Rules,
    pub identity: UpstreamIdentity,
    /// Whether each request gets an access line (`log.access`).
    pub access_log: bool,
    /// Whether Deploy's own personal access tokens are forwarded or refused.
    pub deploy_tokens: DeployTokens,
    /// Deploy's address, TLS trust and connection limits, for the workers' pools.
    pub upstream: config::Upstream,
    /// The listener's certificate, when it serves TLS.
    pub tls: Option<TlsAcceptor>,
}

impl Live {
    /// The request path's part of `config`; `identity` and `tls` are built by the
    /// caller (they read key files).
    pub fn new(config: &Config, identity: UpstreamIdentity, tls: Option<TlsAcceptor>) -> Live {
        Live {
            generation: 0,
            rules: Rules::new(config),
            identity,
            access_log: config.log.access,
            deploy_tokens: config.deploy_tokens,
            upstream: config.upstream.clone(),
            tls,
        }
    }
}

/// The current settings, replaced whole by a reload.
pub struct LiveCell {
    generation: AtomicU64,
    current: RwLock<Arc<Live>>,
}

impl LiveCell {
    pub fn new(live: Live) -> LiveCell {
        LiveCell {
            generation: AtomicU64::new(live.generation),
            current: RwLock::new(Arc::new(live)),
        }
    }

    /// The current settings.
    pub fn current(&self) -> Arc<Live> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The current generation (0 until the first reload).
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Takes the current settings into `held` if a reload replaced them since.
    #[inline]
    pub fn refresh(&self, held: &mut Arc<Live>) {
        if self.generation.load(Ordering::Relaxed) != held.generation {
            *held = self.current();
        }
    }

    /// Replaces the settings; returns the new generation.
    pub fn replace(&self, mut live: Live) -> u64 {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        live.generation = current.generation + 1;
        let generation = live.generation;
        *current = Arc::new(live);
        self.generation.store(generation, Ordering::Release);
        generation
    }
}
