//! Who is calling the API: a browser session, a Deploy username and password (checked
//! by Deploy itself), or the caller's own personal access token. SSO users sign in with
//! OpenID Connect ([`oidc`]) and then hold a session ([`session`]).
//!
//! Never stores or logs a password: a successful password check is remembered only under
//! a keyed hash of the credentials.
//!
//! May import: the floors up to `identity` (`core`, `config`, `store`, `tokens` in
//! use); no HTTP framework types: the API's extractor (`crate::api::caller`) and SSO
//! handlers (`crate::api::sso`) sit on top of it.

use std::net::IpAddr;

use crate::config::Config;
use crate::core::token::TokenHasher;
use crate::identity::UpstreamIdentity;
use crate::store::Store;
use crate::tokens::limiter::FailureLimiter;

pub mod deploy;
pub mod failures;
pub mod http_client;
pub mod oidc;
pub mod refresh;
pub mod session;

/// Sign-in state shared by the API: Deploy's password check and sessions.
pub struct SignIn {
    pub deploy: deploy::DeployCheck,
    pub sessions: session::Sessions,
    /// OpenID Connect sign-in; `None` without `sso.issuer`. Replaced by a reload.
    oidc: std::sync::RwLock<Option<std::sync::Arc<oidc::Oidc>>>,
    /// SSO sign-ins started per client address (`sso.starts_per_minute`).
    sso_starts: FailureLimiter<IpAddr>,
    /// Seals the providers' refresh tokens kept for re-validation.
    sealer: crate::core::sealed::Sealer,
}

impl SignIn {
    /// `identity` is how the gateway asserts users to Deploy, for asking Deploy again
    /// whether an administrator still is one.
    pub fn new(
        config: &Config,
        store: Store,
        hasher: TokenHasher,
        identity: Option<UpstreamIdentity>,
    ) -> anyhow::Result<SignIn> {
        let sealer = crate::core::sealed::Sealer::new(hasher.raw_keys());
        let per_minute = config.sso.as_ref().map_or(20, |sso| sso.starts_per_minute);
        Ok(SignIn {
            deploy: deploy::DeployCheck::new(config, hasher, identity)?,
            sessions: session::Sessions::new(&config.signin, store),
            oidc: std::sync::RwLock::new(
                config
                    .sso
                    .clone()
                    .map(oidc::Oidc::new)
                    .transpose()?
                    .map(std::sync::Arc::new),
            ),
            sso_starts: FailureLimiter::new(&crate::config::Limits {
                failures_per_second: f64::from(per_minute) / 60.0,
                failure_burst: per_minute,
            }),
            sealer,
        })
    }

    /// The OpenID Connect settings and client as they are now.
    pub fn oidc(&self) -> Option<std::sync::Arc<oidc::Oidc>> {
        self.oidc.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Builds the client for new `sso.*` settings without using it yet: a reload
    /// checks everything before it changes anything.
    pub fn prepare_sso(
        sso: Option<crate::config::Sso>,
    ) -> anyhow::Result<Option<std::sync::Arc<oidc::Oidc>>> {
        Ok(sso
            .map(oidc::Oidc::new)
            .transpose()?
            .map(std::sync::Arc::new))
    }

    /// Uses new `sso.*` settings (a reload): sign-ins started from now on, and the next
    /// re-validation.
    pub fn set_sso(&self, oidc: Option<std::sync::Arc<oidc::Oidc>>) {
        let per_minute = oidc.as_ref().map_or(20, |o| o.settings.starts_per_minute);
        self.sso_starts.set(&crate::config::Limits {
            failures_per_second: f64::from(per_minute) / 60.0,
            failure_burst: per_minute,
        });
        *self.oidc.write().unwrap_or_else(|p| p.into_inner()) = oidc;
    }

    /// Failed sign-ins counted since the last call, for the audit log.
    pub fn failures(&self) -> &failures::FailureLog {
        &self.deploy.failures
    }
}
