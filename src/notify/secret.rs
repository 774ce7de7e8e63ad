//! Sealing of SMTP passwords at rest: AES-256-GCM under a key derived from the server's
//! token key with a labelled HMAC, so that one secret file (or `secrets.token_key`)
//! protects both and replicas sharing it can read each other's items.

use base64::Engine;
use hmac::{Hmac, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sha2::Sha256;

use crate::store::SealedPassword;

/// Label of the derived key; a new label is a new key.
const LABEL: &[u8] = b"patgate smtp password sealing v1";
const PREFIX: &str = "v1:";

/// A password in clear, only in memory, for the SMTP conversation.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(text: String) -> Password {
        Password(text)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The password could not be opened: the token key changed since it was sealed, or the
/// row was altered.
#[derive(Debug, thiserror::Error)]
#[error("the stored SMTP password cannot be decrypted (was the token key changed?); set the password again")]
pub struct Unsealable;

/// Seals and opens passwords; the item's id is bound in, so a sealed value moved to
/// another item does not open.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    pub fn new(token_key: &[u8]) -> Sealer {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(token_key)
            .expect("HMAC accepts keys of any length");
        mac.update(LABEL);
        let derived = mac.finalize().into_bytes();
        let key = UnboundKey::new(&AES_256_GCM, &derived)
            .expect("an HMAC-SHA256 output is an AES-256 key");
        Sealer {
            key: LessSafeKey::new(key),
        }
    }

    pub fn seal(&self, item_id: &str, password: &Password) -> SealedPassword {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).expect("the operating system's random source failed");
        let mut data = password.0.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(item_id.as_bytes()),
                &mut data,
            )
            .expect("AES-GCM seals any message shorter than 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        SealedPassword(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    pub fn open(&self, item_id: &str, sealed: &SealedPassword) -> Result<Password, Unsealable> {
        let bytes = sealed
            .0
            .strip_prefix(PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .ok_or(Unsealable)?;
        if bytes.len() < NONCE_LEN {
            return Err(Unsealable);
        }
        let (nonce, data) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| Unsealable)?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(item_id.as_bytes()), &mut data)
            .map_err(|_| Unsealable)?;
        String::from_utf8(plain.to_vec())
            .map(Password)
            .map_err(|_| Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_passwords_open_only_with_the_same_key_and_item() {
        let sealer = Sealer::new(&[7u8; 32]);
        let password = Password::new("s3cret-pw".into());
        let sealed = sealer.seal("Configuration/A", &password);
        assert!(!sealed.0.contains("s3cret"));
        assert_ne!(
            sealed,
            sealer.seal("Configuration/A", &password),
            "fresh nonce"
        );
        assert_eq!(sealer.open("Configuration/A", &sealed).unwrap(), password);
        assert!(sealer.open("Configuration/B", &sealed).is_err());
        assert!(Sealer::new(&[8u8; 32])
            .open("Configuration/A", &sealed)
            .is_err());
        assert!(sealer
            .open("Configuration/A", &SealedPassword("v1:AAAA".into()))
            .is_err());
    }
}
