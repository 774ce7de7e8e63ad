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

use crate::config::Config;
use crate::core::token::TokenHasher;
use crate::store::Store;

pub mod deploy;
pub mod http_client;
pub mod oidc;
pub mod session;

/// Sign-in state shared by the API: Deploy's password check and sessions.
pub struct SignIn {
    pub deploy: deploy::DeployCheck,
    pub sessions: session::Sessions,
    pub oidc: Option<oidc::Oidc>,
}

impl SignIn {
    pub fn new(config: &Config, store: Store, hasher: TokenHasher) -> anyhow::Result<SignIn> {
        Ok(SignIn {
            deploy: deploy::DeployCheck::new(config, hasher)?,
            sessions: session::Sessions::new(&config.signin, store),
            oidc: config.sso.clone().map(oidc::Oidc::new).transpose()?,
        })
    }
}
