//! The `scim:` section: the bearer secret an identity provider (Okta, Azure AD) uses to
//! provision and deprovision users at `/patgate/scim/v2`. Unset, SCIM is off.

use serde::Deserialize;

use super::ConfigError;

/// Shortest secret accepted: anything that can be guessed would let its finder disable
/// or re-enable any user.
const MIN_SECRET_LEN: usize = 32;

/// SCIM provisioning; built only when `scim.secret` is set.
#[derive(Clone)]
pub struct Scim {
    /// The bearer token SCIM clients send (`Authorization: Bearer …`).
    pub secret: String,
}

// Never print the secret.
impl std::fmt::Debug for Scim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scim")
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawScim {
    secret: String,
}

impl RawScim {
    pub(super) fn validate(self) -> Result<Option<Scim>, ConfigError> {
        let secret = self.secret;
        if secret.is_empty() {
            return Ok(None);
        }
        // The value is a secret: errors name its length, never its text.
        if secret.len() < MIN_SECRET_LEN {
            return Err(ConfigError::new(format!(
                "scim.secret (hidden, {} characters): too short; use at least {MIN_SECRET_LEN} random characters, for example from `openssl rand -hex 32`, and give the same value to the identity provider",
                secret.len()
            )));
        }
        if secret.trim() != secret || secret.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            return Err(ConfigError::new(
                "scim.secret (hidden): only printable characters without spaces can travel in an Authorization header; generate one with `openssl rand -hex 32`",
            ));
        }
        Ok(Some(Scim { secret }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(secret: &str) -> RawScim {
        RawScim {
            secret: secret.into(),
        }
    }

    #[test]
    fn unset_is_off_short_or_spaced_is_refused_without_showing_the_value() {
        assert!(raw("").validate().unwrap().is_none());
        let err = raw("shortsecret").validate().unwrap_err().to_string();
        assert!(
            err.contains("scim.secret") && err.contains("at least 32"),
            "{err}"
        );
        assert!(!err.contains("shortsecret"), "{err}");
        let spaced = format!("{} x", "a".repeat(40));
        let err = raw(&spaced).validate().unwrap_err().to_string();
        assert!(err.contains("printable") && !err.contains("aaaa"), "{err}");
        let good = "0123456789abcdef0123456789abcdef";
        assert_eq!(raw(good).validate().unwrap().unwrap().secret, good);
        assert!(!format!("{:?}", raw(good).validate().unwrap()).contains(good));
    }
}
