//! Issuing a token under the seed's rules, for the API and the command line alike:
//! a valid name, an expiration choice within the administrators' maximum, and no new
//! tokens for SSO users while administrators have switched that off.

use crate::store::{self, Settings, Store, StoreError, TokenRecord, UserSource};
use crate::tokens::format::{Expiration, PlainToken, TokenHasher};

/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Why a token was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("{0}")]
    InvalidName(String),
    #[error("expiration {chosen} is longer than the maximum an administrator allows ({max}); choose one of {allowed}")]
    OverMaximum {
        chosen: &'static str,
        max: &'static str,
        allowed: String,
    },
    #[error("{}", SSO_CREATION_DISABLED)]
    SsoDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What SSO users are told while they may not create tokens.
pub const SSO_CREATION_DISABLED: &str =
    "An administrator has disabled personal access token creation for SSO users.";

/// A token name must be non-empty, at most [`MAX_NAME_CHARS`], without control
/// characters or angle brackets (names appear in pages and e-mails).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.trim() != name {
        return Err(format!("{what} must not start or end with spaces"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("{what} is longer than {MAX_NAME_CHARS} characters"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{what} must not contain control characters"));
    }
    if name.contains(['<', '>']) {
        return Err(format!("{what} must not contain < or >"));
    }
    Ok(())
}

/// Whether the policies let a user of `source` create a token with `expiration`.
pub fn check_policy(
    settings: &Settings,
    source: UserSource,
    expiration: Expiration,
) -> Result<(), IssueError> {
    if source == UserSource::Sso && !settings.sso_pat_creation_enabled {
        return Err(IssueError::SsoDisabled);
    }
    if expiration > settings.max_token_expiration {
        let allowed: Vec<&str> = settings
            .allowed_expirations()
            .iter()
            .map(|e| e.as_str())
            .collect();
        return Err(IssueError::OverMaximum {
            chosen: expiration.as_str(),
            max: settings.max_token_expiration.as_str(),
            allowed: allowed.join(", "),
        });
    }
    Ok(())
}

/// Creates a token for an existing user under the current policies. The plaintext is
/// returned once, here.
pub async fn issue(
    store: &Store,
    hasher: &TokenHasher,
    username: &str,
    source: UserSource,
    name: &str,
    expiration: Expiration,
) -> Result<(TokenRecord, PlainToken), IssueError> {
    check_name("name", name).map_err(IssueError::InvalidName)?;
    check_policy(&store.settings().await?, source, expiration)?;
    let token = PlainToken::generate();
    // One instant for both, so the lifetime is exactly the choice.
    let created_at = store::now();
    let expires_at = expiration.seconds().map(|s| created_at + s);
    let record = store
        .create_token_keyed(
            username,
            name,
            &hasher.hash(token.expose().as_bytes()),
            Some(hasher.key_id()),
            created_at,
            expires_at,
        )
        .await?;
    Ok((record, token))
}
