//! patgate: a personal-access-token gateway in front of Digital.ai Deploy.
//!
//! `src/` is a house with floors. Each top-level module may import only the floors
//! below it, bottom to top:
//!
//! `core` < `config` < `metrics` < `logging` < `store` < `tokens` < `identity` <
//! `signin` < `notify` < `accounts` < `exchange` < `edge` < `api` < `ui` < `app` < `demo` < `cli`
//!
//! `tests/layers.rs` reads every `crate::` path in `src/` and fails, naming the file and
//! line, on any import of a floor above. Each folder's `mod.rs` says what it holds and
//! what it uses.
//!
//! A request's path, listener to Deploy:
//!
//! - [`edge::server`] accepts a connection (one socket and event loop per worker);
//!   token requests to a plain-http Deploy take [`edge::fastpath`], everything else
//!   the general path, [`edge::gateway`] → [`edge::proxy`] over [`edge::upstream`].
//! - Both paths ask the same rules: [`edge::admission`] (reserved paths, refused
//!   methods, where the credential is), [`edge::headers`] (what becomes of each header,
//!   `Host`, URL session ids), [`edge::forwarded`] (the client address, trusted
//!   proxies), [`edge::limits`] (head size and time).
//! - [`tokens::credentials`] reads the token, [`tokens::check`] decides (cache, store,
//!   policy, with [`tokens::rules`] for scope and address allowlist), and
//!   [`identity`] tells Deploy who the user is (header, JWT, basic).
//! - What the gateway answers itself: [`edge::endpoints`] (health, readiness, metrics,
//!   JWKS, the admin listener), [`edge::forward_auth`] (`/patgate/auth`),
//!   [`edge::malformed`] (heads the parser refuses); the API and the pages through
//!   [`edge::gateway::OwnRoutes`], wired by [`app`].
//!
//! Beside the request path:
//!
//! - [`core`]: the ground floor: the JSON error shape and response bodies, the client
//!   connection, instants, secret and text helpers, TLS client configuration, and the
//!   token value types ([`core::token`] format and hash, [`core::scope`],
//!   [`core::cidr`], [`core::refusal`]).
//! - [`config`]: `gateway.yaml` and its environment overrides, one file per section.
//! - [`store`]: the database, one file per table group.
//! - [`signin`]: who is calling the API (Deploy's password check, sessions, OpenID
//!   Connect), with no HTTP framework types.
//! - [`notify`]: the expiry notifier, a side task of `serve`.
//! - [`exchange`]: the CI token exchange (trust policies, identity tokens checked
//!   against their issuers' keys, short-lived tokens issued).
//! - [`accounts`]: operations on users and their tokens that the API, SCIM, the CLI and
//!   housekeeping share (disable, enable, delete tokens, leaked-token revocation).
//! - [`api`]: the self-service and admin API under `/patgate/api/v1/`, the `Caller`
//!   extractor, the SSO routes, SCIM at `/patgate/scim/v2`, the OpenAPI description.
//! - [`ui`]: the web pages at `/patgate/`, static files that use the API and nothing
//!   else.
//! - [`app`]: the composition root: start-up, opening the store, preflight checks,
//!   `check-deploy`, housekeeping.
//! - [`demo`]: `patgate demo-deploy`, a stand-in for Deploy to try the gateway with.
//! - [`metrics`], [`logging`], [`cli`]: counters, logs and the command line.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod demo;
pub mod edge;
pub mod exchange;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod signin;
pub mod store;
pub mod tokens;
pub mod ui;
