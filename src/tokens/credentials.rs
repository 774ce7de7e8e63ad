//! Finding a personal access token in a request, as Deploy's clients send one:
//! `Authorization: Basic base64(":" + pat)`, `Basic base64(user + ":" + pat)`, or
//! `x-deploy-personal-token: <pat>`.
//!
//! A token is the gateway's when it carries the gateway's prefix (`dpat_`, in any case):
//! then it is checked, refused when wrong, and never forwarded. Without the prefix, a
//! value sent the way tokens are sent is a personal access token of Deploy's own
//! (Deploy 25.3 and later has them, sent the same two ways): Deploy's to judge, so it
//! is forwarded untouched unless `deploy_tokens: refuse` says otherwise.
//!
//! Anything else (a username and password, a session cookie, a bearer token) is not
//! ours and passes through untouched, unless it contains, or decodes to, a string in
//! the token format: such a half-recognised credential is a token attempt, checked or
//! refused, and never carries the token on to Deploy.

use base64::Engine;
use http::HeaderName;

use crate::core::token;

/// Deploy's header for a token.
pub const TOKEN_HEADER: HeaderName = HeaderName::from_static("x-deploy-personal-token");

/// What a request presents.
#[derive(PartialEq, Eq)]
pub enum Credential {
    /// No token: forward as is.
    None,
    /// A token of the gateway's to check; `claimed_user` is set for `Basic user:pat`.
    Token {
        token: Vec<u8>,
        claimed_user: Option<Vec<u8>>,
    },
    /// A personal access token of Deploy's own, sent as the gateway's are but not in
    /// the gateway's format: forwarded untouched for Deploy to judge (or refused with
    /// `deploy_tokens: refuse`).
    Deploy,
    /// Credentials we cannot even read; refused with this message.
    Unreadable(&'static str),
}

// Never print the token.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("None"),
            Credential::Token { .. } => f.write_str("Token(<redacted>)"),
            Credential::Deploy => f.write_str("Deploy(<redacted>)"),
            Credential::Unreadable(why) => write!(f, "Unreadable({why:?})"),
        }
    }
}

/// Longest Basic credential we decode; a token is far shorter, and anything longer is
/// not ours to judge.
const MAX_CREDENTIAL_LEN: usize = 4096;

/// Reads the request's credential from raw header values: every token header value
/// and every `Authorization` value, in order. The token header wins over
/// `Authorization`. Which header lines count as token headers is the caller's to say
/// (`edge::headers`: look-alikes included).
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
        let value = value.trim_ascii();
        if !value.is_empty() && !token::looks_like_token(value) {
            if token::contains_token(value) {
                return Credential::Unreadable(
                    "x-deploy-personal-token holds a personal access token with something before it; send the token alone",
                );
            }
            return Credential::Deploy;
        }
        return Credential::Token {
            token: value.to_vec(),
            claimed_user: None,
        };
    }
    let Some(value) = authorizations.next() else {
        return Credential::None;
    };
    if authorizations.next().is_some() {
        return Credential::Unreadable("more than one Authorization header; send one");
    }
    match authorization(value) {
        Credential::None if carries_token(value) => Credential::Unreadable(MISREAD),
        credential => credential,
    }
}

/// Why a credential holding a token in a form the gateway does not read is refused.
const MISREAD: &str = "Authorization holds what looks like a personal access token in a form the gateway does not read; send Basic base64(\":\" + token) or x-deploy-personal-token";

/// One `Authorization` value as Deploy would read it.
fn authorization(value: &[u8]) -> Credential {
    if let Some(bearer) = scheme(value, b"bearer") {
        // A token sent the wrong way is still a token: check it rather than pass it on.
        if token::looks_like_token(bearer) {
            return Credential::Token {
                token: bearer.to_vec(),
                claimed_user: None,
            };
        }
        return Credential::None;
    }
    let Some(encoded) = scheme(value, b"basic") else {
        return Credential::None;
    };
    if encoded.len() > MAX_CREDENTIAL_LEN {
        // Not decoded here; [`carries_token`] still looks inside.
        return Credential::None;
    }
    let Ok(decoded) = BASIC.decode(encoded) else {
        return Credential::Unreadable("Authorization: Basic credentials are not valid base64");
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        if token::looks_like_token(&decoded) {
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
        // `curl -u :<pat>`: an empty username only ever means a token, the gateway's
        // when it has the prefix (stray whitespace around it is the client's mistake,
        // refused as such) or is empty, Deploy's otherwise.
        let secret_text = secret.trim_ascii();
        if !secret_text.is_empty() && !token::looks_like_token(secret_text) {
            // Deploy's, unless a value in the gateway's format is inside: that is never
            // passed on.
            if token::contains_token(secret_text) {
                return Credential::Unreadable(MISREAD);
            }
            return Credential::Deploy;
        }
        return Credential::Token {
            token: secret.to_vec(),
            claimed_user: None,
        };
    }
    if token::looks_like_token(secret) {
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

/// The credentials after auth-scheme `name` (any case) and the spaces or tabs that
/// must follow it.
fn scheme<'a>(value: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (head, rest) = value.split_at_checked(name.len())?;
    let separated = matches!(rest.first(), Some(b' ' | b'\t'));
    (head.eq_ignore_ascii_case(name) && separated).then(|| rest.trim_ascii())
}

/// Whether a credential that was not read as a token still holds one: in plain text,
/// or inside any base64 in it, whatever precedes the base64 (`Basic<b64>` without a
/// space). Runs for credentials that pass through, never for token requests.
fn carries_token(value: &[u8]) -> bool {
    // Base64 of the shortest text that holds a whole token.
    const SHORTEST: usize = token::TOKEN_LEN.div_ceil(3) * 4;
    if token::contains_token(value) {
        return true;
    }
    let is_base64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    value
        .split(|b| !is_base64(b))
        .filter(|run| run.len() >= SHORTEST)
        // One of four starting points lines up with the base64's own groups of four;
        // whatever stands before it decodes to a few stray bytes.
        .any(|run| (0..4).any(|skip| decodes_to_token(&run[skip..])))
}

fn decodes_to_token(run: &[u8]) -> bool {
    let mut run = run;
    while let [rest @ .., b'='] = run {
        run = rest;
    }
    if run.len() % 4 == 1 {
        run = &run[..run.len() - 1];
    }
    LENIENT
        .decode(run)
        .is_ok_and(|decoded| token::contains_token(&decoded))
}

/// For looking inside: standard base64 with whatever padding and trailing bits.
const LENIENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::AUTHORIZATION;
    use http::{HeaderMap, HeaderValue};

    fn extract(headers: &HeaderMap) -> Credential {
        extract_from(
            headers.get_all(&TOKEN_HEADER).iter().map(|v| v.as_bytes()),
            headers.get_all(AUTHORIZATION).iter().map(|v| v.as_bytes()),
        )
    }

    fn authorization(value: &str) -> Credential {
        extract_from(std::iter::empty(), std::iter::once(value.as_bytes()))
    }

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

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
    fn tokens_without_the_gateway_prefix_are_deploys_own() {
        // Deploy 25.3+ tokens, in both of the spellings clients send.
        assert_eq!(extract(&basic(b":aZ09deployissued")), Credential::Deploy);
        let mut h = HeaderMap::new();
        h.insert(
            &TOKEN_HEADER,
            HeaderValue::from_static(" aZ09deployissued "),
        );
        assert_eq!(extract(&h), Credential::Deploy);
        // The gateway's prefix in any case keeps a value the gateway's, however wrong
        // the rest of it (a bad checksum is refused at the check, never forwarded).
        for ours in [":dpat_x", ":DPAT_x", ": dpat_x"] {
            assert!(
                matches!(extract(&basic(ours.as_bytes())), Credential::Token { .. }),
                "{ours}"
            );
        }
        h.insert(&TOKEN_HEADER, HeaderValue::from_static("Dpat_0000"));
        assert!(matches!(extract(&h), Credential::Token { .. }));
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

    #[test]
    fn half_recognised_credentials_are_token_attempts() {
        let pat = crate::core::token::PlainToken::generate();
        let pat = pat.expose();
        let is_token = |c: Credential| matches!(c, Credential::Token { .. });
        let is_refused = |c: Credential| matches!(c, Credential::Unreadable(_));
        // A tab after the scheme is a separator, as Deploy's Basic reader takes it.
        assert!(is_token(authorization(&format!(
            "Basic\t{}",
            b64(&format!(":{pat}"))
        ))));
        assert!(is_token(authorization(&format!(
            "Bearer {}",
            pat.replace("dpat_", "DPAT_")
        ))));
        // Glued to its scheme, too long to be ours, or in the wrong place: refused.
        assert!(is_refused(authorization(&format!(
            "Basic{}",
            b64(&format!(":{pat}"))
        ))));
        for skip in 1..4 {
            let glued = format!("Basic{}{}", &"xyz"[..skip], b64(&format!("alice:{pat}")));
            assert!(is_refused(authorization(&glued)), "{skip}");
        }
        let long = format!("Basic {}", b64(&format!("{}:{pat}", "a".repeat(4000))));
        assert!(is_refused(authorization(&long)));
        assert!(is_refused(authorization(&format!(
            "Basic {}",
            b64(&format!("{pat}:"))
        ))));
        assert!(is_refused(authorization(&format!("Token {pat}"))));
        assert!(is_refused(authorization(&format!("Bearer{pat}"))));
        // Passwords and other bearers are still not ours.
        assert_eq!(authorization(&basic_value("alice", "pw")), Credential::None);
        let long_password = format!("Basic {}", b64(&format!("alice:{}", "p".repeat(5000))));
        assert_eq!(authorization(&long_password), Credential::None);
        assert_eq!(
            authorization("Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"),
            Credential::None
        );
    }

    #[test]
    fn basic_credentials_up_to_4096_characters_are_read_and_longer_ones_refused() {
        let pat = crate::core::token::PlainToken::generate();
        let pat = pat.expose();
        // 3,072 bytes are 4,096 base64 characters; 3,075 are 4,100.
        let of_length = |bytes: usize| {
            let user = "a".repeat(bytes - 1 - pat.len());
            format!("Basic {}", b64(&format!("{user}:{pat}")))
        };
        let at_limit = of_length(3_072);
        assert_eq!(at_limit.len(), "Basic ".len() + 4_096);
        assert!(matches!(
            authorization(&at_limit),
            Credential::Token {
                claimed_user: Some(_),
                ..
            }
        ));
        let over = of_length(3_075);
        assert_eq!(over.len(), "Basic ".len() + 4_100);
        assert!(matches!(authorization(&over), Credential::Unreadable(_)));
    }

    #[test]
    fn a_token_in_base64_glued_to_its_scheme_is_refused_with_a_stray_character_after_it() {
        let pat = crate::core::token::PlainToken::generate();
        // "alice:" + the token is 60 bytes: 80 base64 characters, no padding.
        let encoded = b64(&format!("alice:{}", pat.expose()));
        assert_eq!(encoded.len(), 80);
        for stray in ["A", "x", "+"] {
            let value = format!("Basic{encoded}{stray}");
            assert!(
                matches!(authorization(&value), Credential::Unreadable(_)),
                "{stray:?} after the base64 let a token through"
            );
        }
    }

    fn basic_value(user: &str, password: &str) -> String {
        format!("Basic {}", b64(&format!("{user}:{password}")))
    }
}
