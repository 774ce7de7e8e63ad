//! patgate: a personal-access-token gateway in front of Digital.ai Deploy.
//!
//! `src/` is arranged by concern; a request's path runs through the first two folders:
//!
//! - [`edge`]: the request path. [`edge::server`] accepts a connection,
//!   [`edge::gateway`] routes it; token requests to a plain-http Deploy take
//!   [`edge::fastpath`], everything else the general path ([`edge::proxy`] over
//!   [`edge::upstream`]); both apply the header rules in [`edge::headers`] and take the
//!   client address from [`edge::forwarded`]; [`edge::identity`] tells Deploy who the
//!   user is; [`edge::endpoints`] answers the gateway's own `/patgate/` routes (and the
//!   admin listener), and [`edge::forward_auth`] the same checks for a proxy that asks
//!   at `/patgate/auth`; [`edge::malformed`] answers heads the parser refuses;
//!   [`edge::access`] writes the access log; [`edge::preflight`] holds every check
//!   `serve` makes before it listens, shared with `check-config`.
//! - [`tokens`]: what a token is and how it is checked: [`tokens::format`] (format,
//!   checksum, hash), [`tokens::credentials`] (reading it from a request),
//!   [`tokens::check`] (cache, store, policy), [`tokens::rules`] (a token's scope and
//!   address allowlist), [`tokens::limiter`] (failed-check limit),
//!   [`tokens::invalidation`] (the change feed that keeps caches honest),
//!   [`tokens::usage`] (last-use, written off the request path), [`tokens::keys`].
//! - [`api`]: the self-service and admin API under `/patgate/api/v1/` (one file per
//!   resource) and its OpenAPI description; [`signin`]: who is calling it (Deploy's
//!   password check, OpenID Connect, browser sessions); [`scim`]: SCIM 2.0 provisioning
//!   at `/patgate/scim/v2`, where an identity provider disables and enables users.
//! - [`ui`]: the web pages at `/patgate/` (sign-in, Access tokens, admin pages), static
//!   files embedded in the binary that use the API and nothing else.
//! - [`store`]: the database, one file per table group.
//! - [`notify`]: the expiry notifier, a side task of `serve`: daily, it e-mails users
//!   whose tokens expire soon through the administrators' SMTP server item
//!   ([`notify::pass`], [`notify::smtp`], [`notify::templates`], [`notify::schedule`]).
//! - [`config`], [`metrics`], [`logging`], [`cli`]: settings, counters, logs and the
//!   command line.
#![forbid(unsafe_code)]

pub mod accounts;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod edge;
pub mod identity;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod signin;
pub mod store;
pub mod tokens;
pub mod ui;
