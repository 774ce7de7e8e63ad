//! Operations on accounts and their tokens that more than one caller makes: the API's
//! handlers, SCIM provisioning, the command line and the housekeeping task all call
//! these rather than each other.
//!
//! `service` keeps service accounts' owners in view (the flag on an account with no
//! active owner left). `revalidation` is the side task that asks the SSO provider again about each SSO
//! user (roles, status) with the refresh token their sign-in brought.
//!
//! May import: `core`, `config`, `metrics`, `store`, `tokens`, `signin`, `notify` (and what they import).

pub mod access;
pub mod leaked;
pub mod revalidation;
pub mod service;
pub mod sso_link;
