//! The `secrets:` section: the keys token hashes are made with, current and previous.

use std::path::PathBuf;

use serde::Deserialize;

use super::values::ListOrText;

#[derive(Clone)]
pub struct Secrets {
    /// Inline HMAC key for token hashes (hex or base64, at least 32 bytes); wins over the file.
    pub token_key: Option<String>,
    /// Key file, created with mode 0600 on first start when `token_key` is not set.
    pub token_key_file: PathBuf,
    /// Older keys (hex or base64) that still verify tokens stored under them, while a
    /// key is rotated; tokens are re-hashed under the current key when next used.
    pub previous_token_keys: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("token_key", &self.token_key.as_ref().map(|_| "<redacted>"))
            .field("token_key_file", &self.token_key_file)
            .field("previous_token_keys", &self.previous_token_keys.len())
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSecrets {
    #[serde(default)]
    token_key: String,
    #[serde(default = "default_token_key_file")]
    token_key_file: String,
    #[serde(default)]
    previous_token_keys: ListOrText,
}

impl Default for RawSecrets {
    fn default() -> Self {
        RawSecrets {
            token_key: String::new(),
            token_key_file: default_token_key_file(),
            previous_token_keys: ListOrText::Empty,
        }
    }
}

fn default_token_key_file() -> String {
    "data/token-hmac.key".into()
}

impl RawSecrets {
    /// Nothing is refused here: the keys are read and checked at start (`tokens::keys`).
    pub(super) fn validate(self) -> Secrets {
        Secrets {
            token_key: (!self.token_key.is_empty()).then_some(self.token_key),
            token_key_file: PathBuf::from(self.token_key_file),
            previous_token_keys: self.previous_token_keys.into_vec(),
        }
    }
}
