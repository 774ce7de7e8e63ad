//! Issuing a token under the seed's rules, for the API and the command line alike:
//! a valid name, an expiration choice within the administrators' maximum, and no new
//! tokens for SSO users while administrators have switched that off.

use crate::core::cidr::IpNet;
use crate::core::pattern;
use crate::core::scope::{MadeBy, Scope};
use crate::core::token::{Expiration, PlainToken, TokenHasher};
use crate::store::{NewToken, Rotated, Settings, Store, StoreError, TokenRecord, UserSource};
use crate::tokens::rules;

/// Longest token name, in characters.
pub const MAX_NAME_CHARS: usize = pattern::TOKEN_NAME_MAX_CHARS;

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
    #[error("{0}")]
    InvalidAllowlist(String),
    #[error("grace {0} s: choose from 0 to 86400 seconds (24 hours)")]
    InvalidGrace(i64),
    #[error("the token has expired; an expired token cannot be rotated, create a new one")]
    Expired,
    #[error("the token was issued by a token exchange: it cannot be rotated; exchange a new identity token instead")]
    Exchanged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What SSO users are told while they may not create tokens.
pub const SSO_CREATION_DISABLED: &str =
    "An administrator has disabled personal access token creation for SSO users.";

/// A token name must be non-empty, at most [`MAX_NAME_CHARS`], without control or
/// Unicode format characters (a right-to-left override or a zero-width space makes one
/// name read as another) or angle brackets (names appear in pages and e-mails): the
/// rule of [`pattern::is_token_name`], which the API's document states too.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if pattern::is_token_name(name) {
        return Ok(());
    }
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
    if crate::core::text::has_format_chars(name) {
        return Err(format!(
            "{what} must not contain invisible formatting characters (right-to-left overrides, zero-width spaces)"
        ));
    }
    Err(format!("{what} must not contain < or >"))
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

/// What a token may do and where from, besides its name and lifetime; and how it is
/// being made (the inventory's `made_by`).
#[derive(Debug, Clone, Default)]
pub struct TokenRules {
    pub scope: Scope,
    /// Networks it may be used from, as the user wrote them; empty: anywhere.
    pub allowed_addresses: Vec<String>,
    pub made_by: MadeBy,
}

/// Longest grace a rotated-away token may keep working.
pub const MAX_GRACE_SECS: i64 = pattern::GRACE_MAX_SECS;

/// Parses a grace such as `0s`, `15m` or `1h` (a whole number and one unit, at most 24
/// hours) into seconds.
pub fn parse_grace(text: &str) -> Result<i64, String> {
    pattern::parse_grace(text).ok_or_else(|| {
        format!(
            "grace {text:?}: write a whole number and one unit, s, m or h, from 0s to 24h \
             (such as 90s, 15m or 1h)"
        )
    })
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
    let rules = TokenRules::default();
    issue_with(store, hasher, username, source, name, expiration, &rules).await
}

/// [`issue`] with a scope and an address allowlist.
pub async fn issue_with(
    store: &Store,
    hasher: &TokenHasher,
    username: &str,
    source: UserSource,
    name: &str,
    expiration: Expiration,
    rules: &TokenRules,
) -> Result<(TokenRecord, PlainToken), IssueError> {
    check_name("name", name).map_err(IssueError::InvalidName)?;
    let allowed =
        rules::parse_allowlist(&rules.allowed_addresses).map_err(IssueError::InvalidAllowlist)?;
    let settings = store.settings().await?;
    check_policy(&settings, source, expiration)?;
    let token = PlainToken::generate();
    // One instant for both, so the lifetime is exactly the choice.
    let created_at = crate::core::time::now();
    let new = NewToken {
        username,
        name,
        key_id: Some(hasher.key_id()),
        created_at,
        expires_at: expiration.seconds().map(|s| created_at + s),
        expiration: Some(expiration.as_str()),
        scope: rules.scope,
        allowed_addresses: &allowed,
        made_by: rules.made_by,
        max_active: settings.max_tokens_per_user,
    };
    let record = store
        .create_token_with(&new, &hasher.hash(token.expose().as_bytes()))
        .await?;
    Ok((record, token))
}

/// The choice a token was made with; for tokens made before choices were kept, the
/// shortest choice that covers its lifetime.
pub fn expiration_of(record: &TokenRecord) -> Expiration {
    if let Some(choice) = record.expiration.as_deref().and_then(|e| e.parse().ok()) {
        return choice;
    }
    let Some(expires_at) = record.expires_at else {
        return Expiration::Never;
    };
    let lifetime = expires_at - record.created_at;
    Expiration::ALL
        .into_iter()
        .find(|e| e.seconds().is_some_and(|s| s >= lifetime))
        .unwrap_or(Expiration::Year1)
}

/// Replaces `old` (a live token, checked to be the caller's) by a new token with the
/// same name, scope and allowlist, and a lifetime of the same choice, shortened to the
/// administrators' maximum if that is now lower. The old one works for `grace_secs`.
/// The limit of active tokens per user does not apply: a rotation replaces a token.
pub async fn rotate(
    store: &Store,
    hasher: &TokenHasher,
    old: &TokenRecord,
    source: UserSource,
    grace_secs: i64,
    made_by: MadeBy,
) -> Result<(Rotated, PlainToken, Expiration), IssueError> {
    if !(0..=MAX_GRACE_SECS).contains(&grace_secs) {
        return Err(IssueError::InvalidGrace(grace_secs));
    }
    if old.expiration.as_deref() == Some(EXCHANGED) {
        return Err(IssueError::Exchanged);
    }
    if old
        .expires_at
        .is_some_and(|at| at <= crate::core::time::now())
    {
        return Err(IssueError::Expired);
    }
    let settings = store.settings().await?;
    let expiration = expiration_of(old).min(settings.max_token_expiration);
    check_policy(&settings, source, expiration)?;
    let allowed: Vec<IpNet> = old
        .allowed_addresses
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect();
    if allowed.len() != old.allowed_addresses.len() {
        return Err(IssueError::InvalidAllowlist(
            "the token's stored address allowlist cannot be read; create a new token".into(),
        ));
    }
    let token = PlainToken::generate();
    let created_at = crate::core::time::now();
    let new = NewToken {
        username: &old.username,
        name: &old.name,
        key_id: Some(hasher.key_id()),
        created_at,
        expires_at: expiration.seconds().map(|s| created_at + s),
        expiration: Some(expiration.as_str()),
        scope: old.scope,
        allowed_addresses: &allowed,
        made_by,
        max_active: None,
    };
    let rotated = store
        .rotate_token(
            &old.id,
            &new,
            &hasher.hash(token.expose().as_bytes()),
            grace_secs,
        )
        .await?;
    Ok((rotated, token, expiration))
}

/// The `expiration` a token issued by a token exchange is stored with: its lifetime is
/// the policy's, in minutes, and it is never rotated, extended or sent a reminder.
pub const EXCHANGED: &str = "exchange";

/// Issues the short-lived token of a token exchange under `policy`: named after the
/// policy and a random suffix (pipelines run side by side), living `lifetime_secs`
/// from `now`. The administrators' maximum and the SSO switch do not apply: the
/// policy is the administrators' own decision.
#[allow(clippy::too_many_arguments)]
pub async fn issue_exchanged(
    store: &Store,
    hasher: &TokenHasher,
    username: &str,
    policy: &str,
    now: i64,
    lifetime_secs: i64,
    scope: Scope,
    allowed: &[IpNet],
) -> Result<(TokenRecord, PlainToken), StoreError> {
    let token = PlainToken::generate();
    // Within the name limit whatever the policy's name (up to 100 characters).
    let short: String = policy.chars().take(MAX_NAME_CHARS - 20).collect();
    let name = format!("{short} exchange {}", crate::core::text::random_text(5));
    let new = NewToken {
        username,
        name: &name,
        key_id: Some(hasher.key_id()),
        created_at: now,
        expires_at: Some(now + lifetime_secs),
        expiration: Some(EXCHANGED),
        scope,
        allowed_addresses: allowed,
        made_by: MadeBy::Exchange,
        max_active: None,
    };
    let record = store
        .create_token_with(&new, &hasher.hash(token.expose().as_bytes()))
        .await?;
    Ok((record, token))
}
