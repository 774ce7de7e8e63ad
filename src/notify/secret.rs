//! Sealing of SMTP passwords at rest, with the gateway's sealing keys (AES-256-GCM under a
//! key derived from the token key, see `tokens::sealed`), so that one secret protects
//! both and replicas sharing it can read each other's items.

use crate::store::SealedPassword;

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

/// Seals and opens passwords with the gateway's sealing keys (`tokens::sealed`); the
/// item's id is bound in, so a sealed value moved to another item does not open.
pub struct Sealer {
    inner: crate::core::sealed::Sealer,
}

impl Sealer {
    /// `token_keys`: the current token key first, then previous ones (rotation).
    pub fn new(token_keys: &[Vec<u8>]) -> Sealer {
        Sealer {
            inner: crate::core::sealed::Sealer::new(token_keys),
        }
    }

    fn context(item_id: &str) -> String {
        format!("smtp-password:{item_id}")
    }

    pub fn seal(&self, item_id: &str, password: &Password) -> SealedPassword {
        SealedPassword(
            self.inner
                .seal(password.0.as_bytes(), &Self::context(item_id)),
        )
    }

    /// A webhook channel's signing secret, bound to the channel's id.
    pub fn seal_channel_secret(&self, channel_id: &str, secret: &Password) -> SealedPassword {
        SealedPassword(
            self.inner
                .seal(secret.0.as_bytes(), &format!("channel-secret:{channel_id}")),
        )
    }

    pub fn open_channel_secret(
        &self,
        channel_id: &str,
        sealed: &SealedPassword,
    ) -> Result<Password, Unsealable> {
        let plain = self
            .inner
            .open(&sealed.0, &format!("channel-secret:{channel_id}"))
            .map_err(|_| Unsealable)?;
        String::from_utf8(plain)
            .map(Password)
            .map_err(|_| Unsealable)
    }

    pub fn open(&self, item_id: &str, sealed: &SealedPassword) -> Result<Password, Unsealable> {
        let plain = self
            .inner
            .open(&sealed.0, &Self::context(item_id))
            .map_err(|_| Unsealable)?;
        String::from_utf8(plain)
            .map(Password)
            .map_err(|_| Unsealable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_passwords_open_only_with_the_same_key_and_item() {
        let sealer = Sealer::new(&[vec![7u8; 32]]);
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
        assert!(Sealer::new(&[vec![8u8; 32]])
            .open("Configuration/A", &sealed)
            .is_err());
        assert!(sealer
            .open("Configuration/A", &SealedPassword("v1:AAAA".into()))
            .is_err());
    }
}
