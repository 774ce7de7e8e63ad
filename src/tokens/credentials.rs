//! Finding a personal access token in a request, exactly as Deploy's clients send one:
//! `Authorization: Basic base64(":" + pat)`, `Basic base64(user + ":" + pat)`, or
//! `x-deploy-personal-token: <pat>`.
//!
//! Anything else (a username and password, a session cookie, a bearer token) is not
//! ours and passes through untouched.

use base64::Engine;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName};

use crate::tokens::format;

/// Deploy's header for a token.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-deploy-personal-token");

/// What a request presents.
#[derive(PartialEq, Eq)]
pub enum Credential {
    /// No token: forward as is.
    None,
    /// A token to check; `claimed_user` is set for `Basic user:pat`.
    Token {
        token: Vec<u8>,
        claimed_user: Option<Vec<u8>>,
    },
    /// Credentials we cannot even read; refused with this message.
    Unreadable(&'static str),
}

// Never print the token.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::Token { .. } => f.write_str("Token(<redacted>)"),
            Credential::Unreadable(why) => write!(f, "Unreadable({why:?})"),
        }
    }
}

/// Longest Basic credential we decode; a token is far shorter, and anything longer is
/// not ours to judge.
const MAX_CREDENTIAL_LEN: usize = 4096;

/// Reads the request's credential. The token header wins over `Authorization`.
pub fn extract(headers: &HeaderMap) -> Credential {
    extract_from(
        headers.get_all(&TOKEN_HEADER).iter().map(|v| v.as_bytes()),
        headers.get_all(AUTHORIZATION).iter().map(|v| v.as_bytes()),
    )
}

/// [`extract`] over raw header values: every `x-deploy-personal-token` value and every
/// `Authorization` value, in order.
pub fn extract_from<'a>(
    mut token_headers: impl Iterator<Item = &'a [u8]>,
    mut authorizations: impl Iterator<Item = &'a [u8]>,
) -> Credential {
    if let Some(value) = token_headers.next() {
        if token_headers.next().is_some() {
            return Credential::Unreadable(
                "more than one x-deploy-personal-token header; send one",
            );
        }
        return Credential::Token {
            token: value.trim_ascii().to_vec(),
            claimed_user: None,
        };
    }
    let Some(value) = authorizations.next() else {
        return Credential::None;
    };
    if authorizations.next().is_some() {
        return Credential::Unreadable("more than one Authorization header; send one");
    }
    if let Some(bearer) = strip_scheme(value, b"bearer ") {
        // A token sent the wrong way is still a token: check it rather than pass it on.
        let bearer = bearer.trim_ascii();
        if format::looks_like_token(bearer) {
            return Credential::Token {
                token: bearer.to_vec(),
                claimed_user: None,
            };
        }
        return Credential::None;
    }
    let Some(encoded) = strip_scheme(value, b"basic ") else {
        return Credential::None;
    };
    let encoded = encoded.trim_ascii();
    if encoded.len() > MAX_CREDENTIAL_LEN {
        return Credential::None;
    }
    let Ok(decoded) = BASIC.decode(encoded) else {
        return Credential::Unreadable("Authorization: Basic credentials are not valid base64");
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        if format::looks_like_token(&decoded) {
            // `Basic base64(pat)`, without the colon.
            return Credential::Token {
                token: decoded,
                claimed_user: None,
            };
        }
        // Not user:password at all; Deploy will say so.
        return Credential::None;
    };
    let (user, secret) = (&decoded[..colon], &decoded[colon + 1..]);
    if user.is_empty() {
        // `curl -u :<pat>`: an empty username only ever means a token.
        return Credential::Token {
            token: secret.to_vec(),
            claimed_user: None,
        };
    }
    if format::looks_like_token(secret) {
        return Credential::Token {
            token: secret.to_vec(),
            claimed_user: Some(user.to_vec()),
        };
    }
    Credential::None
}

/// Standard base64, padded or not, as HTTP clients send it.
const BASIC: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn strip_scheme<'a>(value: &'a [u8], scheme: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = value.split_at_checked(scheme.len())?;
    head.eq_ignore_ascii_case(scheme).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn basic(user_pass: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        );
        h.insert(AUTHORIZATION, HeaderValue::from_str(&value).unwrap());
        h
    }

    #[test]
    fn empty_username_means_token() {
        let c = extract(&basic(b":dpat_x"));
        assert_eq!(
            c,
            Credential::Token {
                token: b"dpat_x".to_vec(),
                claimed_user: None
            }
        );
    }

    #[test]
    fn user_with_token_password_claims_the_user() {
        let c = extract(&basic(b"alice:dpat_x"));
        assert_eq!(
            c,
            Credential::Token {
                token: b"dpat_x".to_vec(),
                claimed_user: Some(b"alice".to_vec())
            }
        );
    }

    #[test]
    fn passwords_and_other_schemes_pass_through() {
        assert_eq!(extract(&basic(b"alice:secret")), Credential::None);
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(extract(&h), Credential::None);
        assert_eq!(extract(&HeaderMap::new()), Credential::None);
    }

    #[test]
    fn tokens_sent_the_wrong_way_are_still_tokens() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer dpat_x"));
        assert!(matches!(extract(&h), Credential::Token { .. }));
        assert!(matches!(
            extract(&basic(b"dpat_x")),
            Credential::Token { .. }
        ));
    }

    #[test]
    fn unpadded_basic_passwords_pass_through() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic YWxpY2U6cHc"));
        assert_eq!(extract(&h), Credential::None);
    }

    #[test]
    fn two_authorization_headers_are_refused() {
        let mut h = basic(b"alice:pw");
        h.append(AUTHORIZATION, HeaderValue::from_static("Basic Ojpw"));
        assert!(matches!(extract(&h), Credential::Unreadable(_)));
    }

    #[test]
    fn bad_base64_is_unreadable() {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic ***"));
        assert!(matches!(extract(&h), Credential::Unreadable(_)));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let c = extract(&basic(b":dpat_secretvalue"));
        assert!(!format!("{c:?}").contains("secretvalue"));
    }
}
