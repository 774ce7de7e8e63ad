//! The ground floor: values and helpers that every other folder may use and that use
//! nothing of the crate above them. The JSON error shape and response bodies, the client
//! connection, the gateway's cookies, private files, instants, secret and text helpers,
//! the rules input follows (`pattern`, shared by the checks and the API's document), the
//! TLS client configuration, and the token value types (format and hash, scope, address
//! networks, refusals).
//!
//! May import: nothing of the crate outside `core/`.

pub mod cidr;
pub mod client;
pub mod cookie;
pub mod error;
pub mod files;
pub mod pattern;
pub mod refusal;
pub mod response;
pub mod scope;
pub mod sealed;
pub mod signature;
pub mod text;
pub mod time;
pub mod tls;
pub mod token;
