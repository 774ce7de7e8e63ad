//! Small helpers for secrets and text: random values, constant-time comparison,
//! hashes for storage, HTML escaping, the form a username is compared in, and text
//! from outside made safe to keep.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// Random URL-safe text of `bytes` random bytes (session ids, CSRF tokens, state).
pub fn random_text(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    getrandom::getrandom(&mut buf).expect("the operating system's random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// SHA-256 hex of a secret, for storing session ids.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    crate::core::token::hex(&sha2::Sha256::digest(secret.as_bytes()).into())
}

/// Text made safe to put into HTML.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The form in which usernames are compared: NFKC, lower case, NFKC again. Two names
/// with the same key are the same person (`alice`, `Alice`, `ａｌｉｃｅ`), whoever
/// typed them and wherever (sign-in, SCIM, the command line).
pub fn username_key(name: &str) -> String {
    let folded: String = name.nfkc().collect::<String>().to_lowercase();
    folded.nfkc().collect()
}

/// Whether `text` holds a Unicode format character (general category Cf: right-to-left
/// overrides, zero-width spaces and joiners, …), which make a name read as another.
pub fn has_format_chars(text: &str) -> bool {
    text.chars()
        .any(|c| c.general_category() == GeneralCategory::Format)
}

/// Text that came from outside (a provider's error, a typed name), fit to keep in the
/// audit log or show on a page: control and format characters removed, at most
/// `max_chars` characters (an ellipsis marks the cut).
pub fn outside_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut kept = 0;
    for c in text.chars() {
        if c.is_control() || c.general_category() == GeneralCategory::Format {
            continue;
        }
        if kept == max_chars {
            out.push('…');
            break;
        }
        out.push(c);
        kept += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_that_read_alike_have_one_key() {
        assert_eq!(username_key("Alice"), "alice");
        assert_eq!(username_key("ALICE"), username_key("alice"));
        assert_eq!(username_key("\u{ff41}lice"), "alice");
        // é written precomposed and as e + combining accent.
        assert_eq!(username_key("Ren\u{e9}"), username_key("RENE\u{301}"));
        assert_ne!(username_key("alice"), username_key("alicia"));
    }

    #[test]
    fn format_characters_are_found() {
        assert!(has_format_chars("ci\u{202e}gpj.exe"));
        assert!(has_format_chars("ad\u{200b}min"));
        assert!(!has_format_chars("Jane Doe-2 (ci)"));
    }

    #[test]
    fn outside_text_is_cut_and_cleaned() {
        assert_eq!(outside_text("a\nb\u{202e}c", 10), "abc");
        assert_eq!(outside_text(&"x".repeat(500), 200).chars().count(), 201);
        assert!(outside_text(&"x".repeat(500), 200).ends_with('…'));
        assert_eq!(outside_text("short", 200), "short");
    }
}
