//! The limits both request paths hold a request head to, and the general path's HTTP
//! library is configured with, so that the two paths refuse the same heads.

use std::time::Duration;

/// Largest request or response head; a longer request head gets 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A client must finish sending its request head within this time.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Most header lines in a request or an answer (hyper's own default): a longer request
/// head is refused with 431, a longer answer with 502.
pub const MAX_HEADERS: usize = 100;
