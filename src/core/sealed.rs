//! Secrets kept in the database (signing keys, later SMTP passwords) are sealed with
//! AES-256-GCM under a key derived from the token HMAC key, so a copy of the database
//! alone reveals none of them. Sealed text names the key it was sealed under, so
//! secrets stay readable while an older token key is still configured.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;

/// Seals and opens secrets; the first key seals, every key opens.
pub struct Sealer {
    keys: Vec<(String, LessSafeKey)>,
}

/// Why a sealed secret could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "sealed under key {0}, which is not configured; restore it in secrets.previous_token_keys"
    )]
    UnknownKey(String),
    #[error("damaged sealed secret")]
    Damaged,
}

impl Sealer {
    /// `token_keys`: the current token HMAC key first, then older ones.
    pub fn new(token_keys: &[Vec<u8>]) -> Sealer {
        let keys = token_keys
            .iter()
            .map(|key| {
                let derived = hmac::sign(
                    &hmac::Key::new(hmac::HMAC_SHA256, key),
                    b"patgate sealed secrets v1",
                );
                let unbound = UnboundKey::new(&AES_256_GCM, derived.as_ref())
                    .expect("32 bytes make an AES-256 key");
                (key_id(key), LessSafeKey::new(unbound))
            })
            .collect();
        Sealer { keys }
    }

    /// Whether `sealed` was sealed under another key than the current one.
    pub fn is_stale(&self, sealed: &str) -> bool {
        !sealed.starts_with(&format!("v1:{}:", self.keys[0].0))
    }

    /// `v1:<key id>:<base64 nonce + ciphertext>`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).expect("the operating system's random source failed");
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut sealed,
        )
        .expect("sealing cannot fail for small inputs");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1:{id}:{}", STANDARD.encode(out))
    }

    /// Opens what [`Self::seal`] made with the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, SealError> {
        let mut parts = sealed.splitn(3, ':');
        let (Some("v1"), Some(id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SealError::Damaged);
        };
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let bytes = STANDARD.decode(body).map_err(|_| SealError::Damaged)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Damaged);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Damaged)?;
        let mut buffer = ciphertext.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| SealError::Damaged)?;
        Ok(plain.to_vec())
    }
}

/// A short public name for a token key: the first 8 hex digits of its SHA-256.
pub fn key_id(key: &[u8]) -> String {
    use sha2::Digest;
    crate::core::token::hex(&sha2::Sha256::digest(key).into())[..8].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_under_any_configured_key_and_only_in_their_context() {
        let old = vec![1u8; 32];
        let new = vec![2u8; 32];
        let sealed = Sealer::new(std::slice::from_ref(&old)).seal(b"private key", "jwt");
        assert!(!sealed.contains("private"));
        let rotated = Sealer::new(&[new.clone(), old]);
        assert_eq!(rotated.open(&sealed, "jwt").unwrap(), b"private key");
        assert!(matches!(
            rotated.open(&sealed, "smtp"),
            Err(SealError::Damaged)
        ));
        assert!(matches!(
            Sealer::new(&[new]).open(&sealed, "jwt"),
            Err(SealError::UnknownKey(_))
        ));
    }
}
