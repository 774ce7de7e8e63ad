//! What both request paths decide about a request before anything else, over borrowed
//! bytes so that the fast path allocates nothing: whether the gateway answers its path
//! itself, whether its method is refused, and which credential it carries. The fast
//! path asks these of raw header lines, the general path of a `HeaderMap`; neither has
//! its own copy.

use http::HeaderMap;

use crate::edge::headers::is_token_header;
use crate::tokens::credentials::{self, Credential};

/// The token listing route of Deploy's own documentation, answered by the gateway with
/// the caller's tokens.
pub const DEPLOY_TOKENS_ROUTE: &str = "/deployit/tokens/users";

/// The reserved prefix; every other path belongs to Deploy.
pub const PREFIX: &str = "/patgate/";

/// Whether the gateway answers `path` itself: its own prefix, and the token listing
/// route of Deploy's documentation (which Deploy does not have behind the gateway).
pub fn is_reserved(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/patgate" || path == DEPLOY_TOKENS_ROUTE
}

/// Methods the gateway refuses: CONNECT (it is not a forward proxy) and TRACE/TRACK
/// (Deploy would echo the identity headers the gateway adds, secrets included).
pub fn is_refused_method(method: &[u8]) -> bool {
    method == b"CONNECT" || method == b"TRACE" || method.eq_ignore_ascii_case(b"TRACK")
}

/// The credential among a request's headers, which `headers` lists as (name, value)
/// pairs in any case, once per call: every token header, look-alikes included, and
/// every `Authorization`.
pub fn credential<'a, I>(headers: impl Fn() -> I) -> Credential
where
    I: Iterator<Item = (&'a [u8], &'a [u8])>,
{
    credentials::extract_from(
        headers()
            .filter(|(name, _)| is_token_header(name))
            .map(|(_, value)| value),
        headers()
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"authorization"))
            .map(|(_, value)| value),
    )
}

/// [`credential`] of a `HeaderMap` (the general path, the API, forward-auth).
pub fn credential_of(headers: &HeaderMap) -> Credential {
    credential(|| {
        headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_methods_are_exact_but_track_in_any_case() {
        for refused in ["CONNECT", "TRACE", "TRACK", "track", "Track"] {
            assert!(is_refused_method(refused.as_bytes()), "{refused}");
        }
        for allowed in ["GET", "connect", "trace", "OPTIONS", "PATCH"] {
            assert!(!is_refused_method(allowed.as_bytes()), "{allowed}");
        }
    }

    #[test]
    fn reserved_paths_are_the_prefix_and_the_token_route() {
        assert!(is_reserved("/patgate/api/v1/me"));
        assert!(is_reserved("/patgate"));
        assert!(is_reserved(DEPLOY_TOKENS_ROUTE));
        assert!(!is_reserved("/patgate-elsewhere"));
        assert!(!is_reserved("/deployit/tokens/users/x"));
    }
}
