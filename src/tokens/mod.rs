//! Personal access tokens: their format, how a request carries one, and the check that
//! decides whether it is valid (cache, store, policy), with the pieces that keep that
//! check fast and honest. Never holds or logs a token's plaintext beyond the request.
//!
//! May import: `core`, `config`, `metrics`, `store`.

pub mod check;
pub mod credentials;
pub mod invalidation;
pub mod issue;
pub mod keys;
pub mod limiter;
pub mod refusals;
pub mod rules;
pub mod usage;
