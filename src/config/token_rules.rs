//! The `webhooks:` and `leaked:` sections: which paths a `webhook`-scoped token may
//! reach, and the secret that signs reports of leaked tokens.

use serde::Deserialize;

use super::values::list;
use super::ConfigError;

/// Paths a token of scope `webhook` may reach (prefixes).
#[derive(Debug, Clone, Default)]
pub struct Webhooks {
    pub paths: Vec<String>,
}

/// Reports of leaked tokens (`POST /patgate/api/v1/leaked`).
#[derive(Clone, Default)]
pub struct Leaked {
    /// The HMAC-SHA256 key reports are signed with; `None`: the endpoint is off.
    pub secret: Option<String>,
}

impl std::fmt::Debug for Leaked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaked")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWebhooks {
    #[serde(deserialize_with = "list")]
    paths: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawLeaked {
    secret: String,
}

/// Shortest `leaked.secret`: a report signed with a guessable key would let anyone
/// revoke tokens.
const MIN_SECRET_CHARS: usize = 32;

impl RawWebhooks {
    pub(super) fn validate(self) -> Result<Webhooks, ConfigError> {
        for path in &self.paths {
            let fix = "write a path prefix that starts with / and is not under /patgate/, such as /webhooks/";
            if !path.starts_with('/') || path.starts_with("/patgate/") || path == "/patgate" {
                return Err(ConfigError::key("webhooks.paths", path, fix));
            }
            if path.contains(['?', '#', ';', '%', '\\'])
                || path.contains("..")
                || path.contains("//")
            {
                return Err(ConfigError::key(
                    "webhooks.paths",
                    path,
                    format!(
                        "no query, fragment, parameters, encoded characters or dot segments; {fix}"
                    ),
                ));
            }
        }
        Ok(Webhooks { paths: self.paths })
    }
}

impl RawLeaked {
    pub(super) fn validate(self) -> Result<Leaked, ConfigError> {
        let secret = self.secret.trim();
        if secret.is_empty() {
            return Ok(Leaked { secret: None });
        }
        if secret.chars().count() < MIN_SECRET_CHARS {
            return Err(ConfigError(format!(
                "leaked.secret: shorter than {MIN_SECRET_CHARS} characters; use a random value such as the output of `openssl rand -hex 32`"
            )));
        }
        Ok(Leaked {
            secret: Some(secret.to_string()),
        })
    }
}
