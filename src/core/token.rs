//! Personal access tokens: their text format, generation and keyed hash.
//!
//! Format: `dpat_` + 43 base62 characters of OS randomness (256 bits) + 6 base62
//! characters encoding the CRC32 of everything before them. The prefix lets secret
//! scanners recognise a leaked token; the checksum lets the gateway reject a mistyped or
//! invented one without touching the cache or the database.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Fixed prefix of every token.
pub const PREFIX: &str = "dpat_";
const RANDOM_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
/// Total length of a well-formed token.
pub const TOKEN_LEN: usize = PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented string is not a well-formed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MalformedToken {
    #[error("token is empty")]
    Empty,
    #[error("token has whitespace or a line break around it (a newline or carriage return kept from a file?); strip it before sending the token")]
    Whitespace,
    #[error("token does not start with \"dpat_\"")]
    Prefix,
    #[error("token has the wrong length")]
    Length,
    #[error("token contains characters outside A-Z, a-z, 0-9")]
    Alphabet,
    #[error("token checksum does not match; it was mistyped or truncated")]
    Checksum,
}

/// A token in plaintext. Deliberately not `Debug`/`Display`: it must not reach a log.
pub struct PlainToken(String);

impl PlainToken {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> PlainToken {
        let mut out = String::with_capacity(TOKEN_LEN);
        out.push_str(PREFIX);
        // Rejection sampling keeps every character uniform: 248 = 4 * 62. No counter:
        // the characters are taken from an endless stream of random bytes, so the loop
        // ends however a byte is judged.
        let bytes = std::iter::repeat_with(|| {
            let mut buf = [0u8; 64];
            getrandom::getrandom(&mut buf).expect("the operating system's random source failed");
            buf
        })
        .flatten();
        for b in bytes.filter(|&b| b < 248).take(RANDOM_LEN) {
            out.push(BASE62[(b % 62) as usize] as char);
        }
        let sum = crc32fast::hash(out.as_bytes());
        out.push_str(&encode_checksum(sum));
        PlainToken(out)
    }

    /// The plaintext, for the single moment it is shown to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

fn encode_checksum(mut sum: u32) -> String {
    let mut digits = [b'0'; CHECKSUM_LEN];
    for d in digits.iter_mut().rev() {
        *d = BASE62[(sum % 62) as usize];
        sum /= 62;
    }
    String::from_utf8(digits.to_vec()).expect("base62 is ASCII")
}

/// Checks format and checksum: cheap, no allocation, no I/O.
pub fn check_format(token: &[u8]) -> Result<(), MalformedToken> {
    if token.is_empty() {
        return Err(MalformedToken::Empty);
    }
    let spaced = |b: Option<&u8>| b.is_some_and(u8::is_ascii_whitespace);
    if spaced(token.first()) || spaced(token.last()) {
        return Err(MalformedToken::Whitespace);
    }
    if !token.starts_with(PREFIX.as_bytes()) {
        return Err(MalformedToken::Prefix);
    }
    if token.len() != TOKEN_LEN {
        return Err(MalformedToken::Length);
    }
    let body = &token[PREFIX.len()..];
    if !body.iter().all(u8::is_ascii_alphanumeric) {
        return Err(MalformedToken::Alphabet);
    }
    let (head, checksum) = token.split_at(TOKEN_LEN - CHECKSUM_LEN);
    if encode_checksum(crc32fast::hash(head)).as_bytes() != checksum {
        return Err(MalformedToken::Checksum);
    }
    Ok(())
}

/// Whether a credential claims to be a token (has our prefix, in any case), well-formed
/// or not.
pub fn looks_like_token(credential: &[u8]) -> bool {
    credential
        .get(..PREFIX.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(PREFIX.as_bytes()))
}

/// Whether `text` contains a string in the token format anywhere: the prefix, in any
/// case, followed by as many letters and digits as a token has.
pub fn contains_token(text: &[u8]) -> bool {
    let rest = TOKEN_LEN - PREFIX.len();
    (0..text.len().saturating_sub(TOKEN_LEN - 1)).any(|i| {
        looks_like_token(&text[i..])
            && text[i + PREFIX.len()..][..rest]
                .iter()
                .all(u8::is_ascii_alphanumeric)
    })
}

/// The keyed hash under which a token is stored and cached: HMAC-SHA256 with the
/// server's token key, so a copy of the database alone cannot confirm a guessed token.
pub type TokenHash = [u8; 32];

/// Computes token hashes with the server key; while a key is being rotated, also with
/// the previous keys, so that tokens stored under them still verify.
#[derive(Clone)]
pub struct TokenHasher {
    mac: Hmac<Sha256>,
    key_id: String,
    keys: Vec<Vec<u8>>,
    previous: Vec<(String, Hmac<Sha256>)>,
}

impl TokenHasher {
    pub fn new(key: &[u8]) -> TokenHasher {
        TokenHasher::with_previous(key, &[])
    }

    /// The current key, and older keys that still verify stored hashes.
    pub fn with_previous(key: &[u8], previous: &[Vec<u8>]) -> TokenHasher {
        let mac = |k: &[u8]| Hmac::new_from_slice(k).expect("HMAC accepts keys of any length");
        let mut keys = vec![key.to_vec()];
        keys.extend(previous.iter().cloned());
        TokenHasher {
            mac: mac(key),
            key_id: crate::core::sealed::key_id(key),
            previous: previous
                .iter()
                .map(|k| (crate::core::sealed::key_id(k), mac(k)))
                .collect(),
            keys,
        }
    }

    pub fn hash(&self, token: &[u8]) -> TokenHash {
        let mut mac = self.mac.clone();
        mac.update(token);
        mac.finalize().into_bytes().into()
    }

    /// The current key's public id (stored beside each hash it makes).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Hashes under each previous key, with their ids.
    pub fn previous_hashes(&self, token: &[u8]) -> Vec<(String, TokenHash)> {
        self.previous
            .iter()
            .map(|(id, mac)| {
                let mut mac = mac.clone();
                mac.update(token);
                (id.clone(), mac.finalize().into_bytes().into())
            })
            .collect()
    }

    pub fn rotating(&self) -> bool {
        !self.previous.is_empty()
    }

    /// Ids of every configured key, current first.
    pub fn key_ids(&self) -> Vec<String> {
        std::iter::once(self.key_id.clone())
            .chain(self.previous.iter().map(|(id, _)| id.clone()))
            .collect()
    }

    /// The raw keys, current first (to derive the sealing keys).
    pub fn raw_keys(&self) -> &[Vec<u8>] {
        &self.keys
    }
}

/// Lower-case hex, as hashes are stored in the database.
pub fn hex(hash: &TokenHash) -> String {
    use std::fmt::Write;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The expiration choices users are offered: exactly Deploy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiration {
    Days7,
    Days30,
    Days45,
    Days60,
    Year1,
    Never,
}

impl Expiration {
    pub const ALL: [Expiration; 6] = [
        Expiration::Days7,
        Expiration::Days30,
        Expiration::Days45,
        Expiration::Days60,
        Expiration::Year1,
        Expiration::Never,
    ];

    /// The spelling used by the CLI and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Expiration::Days7 => "7d",
            Expiration::Days30 => "30d",
            Expiration::Days45 => "45d",
            Expiration::Days60 => "60d",
            Expiration::Year1 => "1y",
            Expiration::Never => "never",
        }
    }

    /// Length of the lifetime in seconds, `None` for no expiration.
    pub fn seconds(self) -> Option<i64> {
        const DAY: i64 = 86_400;
        match self {
            Expiration::Days7 => Some(7 * DAY),
            Expiration::Days30 => Some(30 * DAY),
            Expiration::Days45 => Some(45 * DAY),
            Expiration::Days60 => Some(60 * DAY),
            Expiration::Year1 => Some(365 * DAY),
            Expiration::Never => None,
        }
    }
}

impl utoipa::PartialSchema for Expiration {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(Expiration::ALL.map(Expiration::as_str)))
            .description(Some(
                "A token lifetime: Deploy's choices, 7, 30, 45 or 60 days, a year, or never.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Expiration {}

impl serde::Serialize for Expiration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Expiration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Expiration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Expiration::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| {
                format!("unknown expiration {s:?}; choose one of 7d, 30d, 45d, 60d, 1y, never")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let a = PlainToken::generate();
        let b = PlainToken::generate();
        assert_eq!(a.expose().len(), TOKEN_LEN);
        assert!(a.expose().starts_with("dpat_"));
        assert_eq!(check_format(a.expose().as_bytes()), Ok(()));
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn a_single_changed_character_fails_the_checksum() {
        let t = PlainToken::generate();
        let mut bytes = t.expose().as_bytes().to_vec();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        assert_eq!(check_format(&bytes), Err(MalformedToken::Checksum));
    }

    #[test]
    fn malformed_tokens_are_classified() {
        assert_eq!(check_format(b""), Err(MalformedToken::Empty));
        assert_eq!(check_format(b"ghp_abc"), Err(MalformedToken::Prefix));
        assert_eq!(check_format(b"dpat_abc"), Err(MalformedToken::Length));
        let t = PlainToken::generate();
        // Whitespace at either end alone is named as such, not as a wrong length: the
        // client is told to strip the newline kept from a file.
        for spaced in [
            format!("{}\n", t.expose()),
            format!("{} ", t.expose()),
            format!("\t{}", t.expose()),
            format!(" {} ", t.expose()),
        ] {
            assert_eq!(
                check_format(spaced.as_bytes()),
                Err(MalformedToken::Whitespace),
                "{spaced:?}"
            );
        }
        let mut bytes = t.expose().as_bytes().to_vec();
        bytes[8] = 0;
        assert_eq!(check_format(&bytes), Err(MalformedToken::Alphabet));
    }

    #[test]
    fn tokens_are_found_inside_other_text() {
        let t = PlainToken::generate();
        assert!(contains_token(t.expose().as_bytes()));
        assert!(contains_token(format!("x:{}\n", t.expose()).as_bytes()));
        assert!(contains_token(
            t.expose().replace("dpat_", "DPAT_").as_bytes()
        ));
        assert!(!contains_token(&t.expose().as_bytes()[..TOKEN_LEN - 1]));
        assert!(!contains_token(b"my dpat_ password"));
        // The prefix and a few letters in a long text are not a token: every character
        // up to a token's length must be a letter or a digit.
        let short = format!("dpat_{} {}", "a".repeat(20), "and more words ".repeat(3));
        assert!(short.len() > TOKEN_LEN);
        assert!(!contains_token(short.as_bytes()));
    }

    #[test]
    fn hashes_depend_on_the_key() {
        let t = PlainToken::generate();
        let h1 = TokenHasher::new(b"key one").hash(t.expose().as_bytes());
        let h2 = TokenHasher::new(b"key two").hash(t.expose().as_bytes());
        assert_ne!(h1, h2);
        assert_eq!(hex(&h1).len(), 64);
    }

    #[test]
    fn expiration_choices_match_deploy() {
        let names: Vec<_> = Expiration::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names, ["7d", "30d", "45d", "60d", "1y", "never"]);
        assert!("90d".parse::<Expiration>().is_err());
    }
}
