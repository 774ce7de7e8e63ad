//! patgate: a personal-access-token gateway in front of Digital.ai Deploy.
//!
//! A request's path: [`server`] accepts it, [`gateway`] routes it; reserved paths go to
//! [`endpoints`], everything else through [`credentials`] → [`auth`] (cache, [`store`])
//! → [`identity`] → [`proxy`] → [`upstream`] (each worker's connections to Deploy).
//! Token requests to a plain-http Deploy take [`fastpath`] instead of the general
//! HTTP stack, with the same rules.
//! Beside it: [`limiter`] throttles addresses that send bad tokens, [`invalidation`]
//! keeps caches honest across processes, [`usage`] records last-use off the request
//! path, [`cli`] administers the store.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod endpoints;
pub mod fastpath;
pub mod gateway;
pub mod identity;
pub mod invalidation;
pub mod keys;
pub mod limiter;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod response;
pub mod server;
pub mod store;
pub mod token;
pub mod upstream;
pub mod usage;
