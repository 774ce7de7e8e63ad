//! The composition root, on the top floor: everything the gateway is made of is built
//! and wired here at start-up ([`start()`]), including the gateway's own routes that the
//! request path reaches through [`crate::edge::gateway::OwnRoutes`]; the checks `serve`
//! and `check-config` make before listening ([`preflight`]); `patgate check-deploy`
//! ([`deploy_check`], reading Deploy's lists with [`deploy_lists`]); the store's opening ([`store`]); and the once-a-minute
//! [`housekeeping`].
//!
//! May import: every floor below it.

pub mod deploy_check;
pub mod deploy_lists;
pub mod housekeeping;
pub mod preflight;
pub mod reload;
pub mod start;
pub mod store;

pub use start::{first_steps, start, Running};
pub use store::{open_existing_store, open_store};
