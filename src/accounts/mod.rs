//! Operations on accounts and their tokens that more than one caller makes: the API's
//! handlers, SCIM provisioning, the command line and the housekeeping task all call
//! these rather than each other.
//!
//! May import: `core`, `config`, `store`, `tokens`, `notify` (and what they import).

pub mod access;
pub mod leaked;
pub mod sso_link;
