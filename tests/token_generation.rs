//! Generated tokens, as a secret scanner and an attacker would judge them: every one of
//! the 62 characters drawn evenly, no two tokens alike, and a checksum that is CRC32 as
//! the README documents it, checked here by a CRC32 that is not the gateway's.

use std::collections::HashSet;

use patgate::core::token::{check_format, MalformedToken, PlainToken, TOKEN_LEN};

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIX: &str = "dpat_";
const RANDOM_LEN: usize = 43;

/// Tokens drawn by the tests below: 5,000 tokens are 215,000 random characters, about
/// 3,468 expected of each of the 62.
const SAMPLE: usize = 5_000;

/// The chi-square statistic of uniform base62 characters has 61 degrees of freedom.
/// 128.52 is its critical value at a significance of 1e-6 (computed with mpmath:
/// the x where the regularised upper incomplete gamma Q(61/2, x/2) = 1e-6), so a fair
/// generator fails this test once in a million runs. A generator that favours one
/// character by a quarter (rejection sampling off by one) scores about 250 on this
/// sample; one drawing from 4 or 7 characters scores in the hundreds of thousands.
const CHI_SQUARE_CRITICAL_61_DF_1E_6: f64 = 128.52;

/// CRC-32 (ISO-HDLC, as zlib, PNG and the README's "CRC32"): reflected polynomial
/// 0xEDB88320, initial value and final XOR 0xFFFFFFFF. Bit by bit, independent of the
/// gateway's implementation.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// The six checksum characters read as a base62 number, most significant first.
fn checksum_value(token: &str) -> u64 {
    token[TOKEN_LEN - 6..].bytes().fold(0u64, |n, c| {
        let digit = BASE62.iter().position(|&b| b == c).expect("a base62 digit");
        n * 62 + digit as u64
    })
}

fn sample() -> Vec<String> {
    (0..SAMPLE)
        .map(|_| PlainToken::generate().expose().to_string())
        .collect()
}

#[test]
fn the_independent_crc32_agrees_with_zlib() {
    // zlib.crc32(b"123456789") in Python: the standard check value.
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    // zlib.crc32(b"dpat_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg") in Python.
    assert_eq!(
        crc32(b"dpat_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"),
        0xFFD1_510C
    );
}

#[test]
fn tokens_with_the_documented_crc32_checksum_are_accepted_and_others_refused() {
    // Built with Python: text + six base62 digits of zlib.crc32(text), most significant
    // first. A secret scanner that follows the README computes the same.
    let known = [
        "dpat_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg4gSPIC",
        "dpat_zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJ4VXKEo",
    ];
    for token in known {
        assert_eq!(check_format(token.as_bytes()), Ok(()), "{token}");
        assert_eq!(
            checksum_value(token),
            u64::from(crc32(&token.as_bytes()[..48]))
        );
    }
    // The same texts with each other's checksums.
    for (text, sum) in [(known[0], known[1]), (known[1], known[0])] {
        let swapped = format!("{}{}", &text[..48], &sum[48..]);
        assert_eq!(
            check_format(swapped.as_bytes()),
            Err(MalformedToken::Checksum)
        );
    }
}

#[test]
fn every_generated_token_carries_the_crc32_of_its_text() {
    for token in sample() {
        assert_eq!(token.len(), TOKEN_LEN);
        assert!(token.starts_with(PREFIX), "{token}");
        assert!(token[PREFIX.len()..].bytes().all(|b| BASE62.contains(&b)));
        assert_eq!(
            checksum_value(&token),
            u64::from(crc32(&token.as_bytes()[..TOKEN_LEN - 6])),
            "the checksum of a generated token is not CRC32 of its text"
        );
        assert_eq!(check_format(token.as_bytes()), Ok(()));
    }
}

#[test]
fn no_two_generated_tokens_are_equal() {
    let tokens = sample();
    let distinct: HashSet<&str> = tokens.iter().map(|t| &t[..48]).collect();
    assert_eq!(distinct.len(), tokens.len());
}

#[test]
fn generated_tokens_draw_every_base62_character_evenly() {
    let mut counts = [0u64; 62];
    for token in sample() {
        for c in token[PREFIX.len()..PREFIX.len() + RANDOM_LEN].bytes() {
            counts[BASE62.iter().position(|&b| b == c).unwrap()] += 1;
        }
    }
    let missing: String = BASE62
        .iter()
        .zip(counts)
        .filter(|(_, n)| *n == 0)
        .map(|(&c, _)| c as char)
        .collect();
    assert!(missing.is_empty(), "never drawn: {missing:?}");

    let total: u64 = counts.iter().sum();
    assert_eq!(total, (SAMPLE * RANDOM_LEN) as u64);
    let expected = total as f64 / 62.0;
    let chi_square: f64 = counts
        .iter()
        .map(|&n| (n as f64 - expected).powi(2) / expected)
        .sum();
    assert!(
        chi_square < CHI_SQUARE_CRITICAL_61_DF_1E_6,
        "characters are not drawn evenly: chi-square {chi_square:.1} over {SAMPLE} tokens \
         (critical value {CHI_SQUARE_CRITICAL_61_DF_1E_6} at 1e-6); counts {counts:?}"
    );
}
