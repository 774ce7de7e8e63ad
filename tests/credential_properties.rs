//! Properties of the token format and the credential parser, over generated input
//! (proptest shrinks any failure to a minimal case): whatever the bytes, nothing
//! panics; the format check accepts exactly what the documented rules say
//! (docs/request-handling.md); a token is found however a client sends it; and a value
//! in the gateway's format is never passed on to Deploy, whatever surrounds it.

use base64::Engine;
use patgate::core::token::{check_format, PlainToken, PREFIX, TOKEN_LEN};
use patgate::tokens::credentials::{extract_from, Credential};
use proptest::prelude::*;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The documented rule, written out again here: `dpat_`, 43 letters or digits, and the
/// CRC-32 of everything before it in 6 base62 digits.
fn by_the_rules(token: &[u8]) -> bool {
    if token.len() != 54 || !token.starts_with(b"dpat_") {
        return false;
    }
    if !token[5..].iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    let mut sum = crc32fast::hash(&token[..48]);
    let mut digits = [0u8; 6];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(sum % 62) as usize];
        sum /= 62;
    }
    token[48..] == digits
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn with_header(value: &[u8]) -> Credential {
    extract_from(std::iter::once(value), std::iter::empty())
}

fn with_authorization(value: &[u8]) -> Credential {
    extract_from(std::iter::empty(), std::iter::once(value))
}

fn is_token(credential: &Credential, expected: &[u8]) -> bool {
    matches!(credential, Credential::Token { token, .. } if token == expected)
}

/// Passed on to Deploy with the request.
fn forwarded(credential: &Credential) -> bool {
    matches!(credential, Credential::None | Credential::Deploy)
}

/// A string in the gateway's format, its checksum right or not.
fn token_shaped() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![Just("dpat_"), Just("DPAT_"), Just("Dpat_"), Just("dPaT_")],
        proptest::collection::vec(proptest::sample::select(BASE62.to_vec()), TOKEN_LEN - 5),
    )
        .prop_map(|(prefix, body)| [prefix.as_bytes(), &body].concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_format_check_follows_the_rules_for_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        prop_assert_eq!(check_format(&bytes).is_ok(), by_the_rules(&bytes));
    }

    #[test]
    fn the_format_check_follows_the_rules_near_a_token(
        at in 0..TOKEN_LEN,
        with in any::<u8>(),
        cut in proptest::option::of(0..TOKEN_LEN),
    ) {
        let token = PlainToken::generate();
        prop_assert!(check_format(token.expose().as_bytes()).is_ok());
        let mut bytes = token.expose().as_bytes().to_vec();
        bytes[at] = with;
        if let Some(cut) = cut {
            bytes.truncate(cut);
        }
        prop_assert_eq!(check_format(&bytes).is_ok(), by_the_rules(&bytes));
        if bytes != token.expose().as_bytes() {
            // One changed character or a cut is always caught.
            prop_assert!(check_format(&bytes).is_err());
        }
    }

    #[test]
    fn any_header_values_are_read_without_panic(
        tokens in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..3),
        authorizations in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..3),
    ) {
        let _ = extract_from(
            tokens.iter().map(Vec::as_slice),
            authorizations.iter().map(Vec::as_slice),
        );
    }

    #[test]
    fn a_token_is_found_however_it_is_sent(
        user in "[a-zA-Z0-9._@-]{1,20}",
        scheme in prop_oneof![Just("Basic"), Just("basic"), Just("BASIC")],
        gap in prop_oneof![Just(" "), Just("  "), Just("\t")],
    ) {
        let token = PlainToken::generate();
        let t = token.expose().as_bytes();
        prop_assert!(is_token(&with_header(t), t));
        for decoded in [[b":", t].concat(), [user.as_bytes(), b":", t].concat(), t.to_vec()] {
            let value = format!("{scheme}{gap}{}", b64(&decoded));
            prop_assert!(is_token(&with_authorization(value.as_bytes()), t), "{}", value);
        }
        let bearer = format!("Bearer{gap}{}", token.expose());
        prop_assert!(is_token(&with_authorization(bearer.as_bytes()), t));
    }

    #[test]
    fn a_value_in_the_gateways_format_is_never_forwarded(
        shaped in token_shaped(),
        before in "[ -~]{0,24}",
        after in "[ -~]{0,24}",
        user in "[a-zA-Z0-9._@-]{0,12}",
    ) {
        let text = [before.as_bytes(), &shaped, after.as_bytes()].concat();
        let basic = |decoded: &[u8]| format!("Basic {}", b64(decoded));
        let cases: Vec<(String, Credential)> = vec![
            ("token header".into(), with_header(&text)),
            ("raw Authorization".into(), with_authorization(&text)),
            ("Bearer".into(), with_authorization(&[b"Bearer ", text.as_slice()].concat())),
            ("Basic :value".into(), with_authorization(basic(&[b":", text.as_slice()].concat()).as_bytes())),
            (
                "Basic user:value".into(),
                with_authorization(basic(&[user.as_bytes(), b":", &text].concat()).as_bytes()),
            ),
            ("Basic value".into(), with_authorization(basic(&text).as_bytes())),
            (
                "Basic without its space".into(),
                with_authorization(format!("Basic{}", b64(&[b":", text.as_slice()].concat())).as_bytes()),
            ),
        ];
        for (how, credential) in cases {
            prop_assert!(!forwarded(&credential), "{} forwarded {:?}", how, String::from_utf8_lossy(&text));
        }
    }

    #[test]
    fn a_password_without_the_prefix_is_never_taken_for_a_token(
        user in "[a-zA-Z0-9._@-]{1,20}",
        password in "[ -~]{0,40}",
    ) {
        prop_assume!(!password.to_ascii_lowercase().contains(&PREFIX.to_ascii_lowercase()));
        let value = format!("Basic {}", b64(format!("{user}:{password}").as_bytes()));
        prop_assert_eq!(with_authorization(value.as_bytes()), Credential::None);
    }
}
