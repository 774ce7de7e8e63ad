//! The request path: listener, routing, the fast and general proxy paths, the upstream
//! pool and the answers the gateway writes itself. Nothing here writes to the database
//! or takes a lock per request.
//!
//! May import: the floors up to `accounts` (`core`, `config`, `metrics`, `store`,
//! `tokens`, `identity` in use). The API and the pages are above it: it reaches them
//! through [`gateway::OwnRoutes`], which `crate::app` wires once.

pub mod access;
pub mod admission;
pub mod endpoints;
pub mod expiry;
pub mod fastpath;
pub mod forward_auth;
pub mod forwarded;
pub mod gateway;
pub mod headers;
pub mod limits;
pub mod live;
pub mod malformed;
pub mod proxy;
pub mod rewind;
pub mod server;
pub mod upstream;
