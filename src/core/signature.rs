//! The `X-Patgate-Signature` scheme: `sha256=` and the hex HMAC-SHA256 of the raw
//! body under a shared secret. Leaked-token reports are checked with it and webhook
//! channels' deliveries are signed with it, so a receiver verifies both the same way.

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-patgate-signature";

/// The header value for `body` under `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Whether `value` is the signature of `body` under `secret`, compared in constant time.
pub fn verify(secret: &[u8], value: &str, body: &[u8]) -> bool {
    let Some(signature) = value.trim().strip_prefix("sha256=").and_then(decode_hex) else {
        return false;
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    ring::hmac::verify(&key, body, &signature).is_ok()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_and_secret() {
        let signed = sign(b"secret", b"{\"a\":1}");
        assert!(signed.starts_with("sha256=") && signed.len() == 71);
        assert!(verify(b"secret", &signed, b"{\"a\":1}"));
        assert!(!verify(b"secret", &signed, b"{\"a\":2}"));
        assert!(!verify(b"other", &signed, b"{\"a\":1}"));
        assert!(!verify(b"secret", "sha256=zz", b"{\"a\":1}"));
    }
}
