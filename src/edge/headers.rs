//! Header rules both request paths apply, the fast path to raw header lines and the
//! general path to a `HeaderMap`: the hop-by-hop and forwarding headers a client may
//! not pass on, and the most header lines a message may have.

use http::header::{self, HeaderMap, HeaderName};

/// Most header lines in a request or an answer, on both paths (hyper's own default):
/// a longer request head is refused with 431, a longer answer with 502.
pub const MAX_HEADERS: usize = 100;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus the
/// obsolete `Proxy-Connection` and `Keep-Alive` that clients still send.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Forwarding headers a client could use to pose as someone else to Deploy: removed.
pub const CLIENT_FORWARDING: [&str; 5] = [
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
];

/// One of the hop-by-hop headers (`name` in lower case).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_str().as_bytes() == name)
}

/// The options a request's `Connection` headers list.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}
