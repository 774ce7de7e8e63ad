//! What the cache holds for a token found in the store.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::Arc;

use crate::core::cidr::IpNet;
use crate::core::scope::Scope;
use crate::core::token::TokenHash;
use crate::store::AuthRecord;

/// What is cached for a token found in the store.
///
/// A hundred thousand of these can be cached, so each field costs what it needs: times
/// as plain integers (`NEVER` for none), the empty role list and the rare key-rotation
/// hash without an allocation of their own.
#[derive(Debug)]
pub struct CachedToken {
    pub token_id: Box<str>,
    pub username: Arc<str>,
    /// Unix seconds; [`NEVER`]: the token does not expire (see [`Self::expires_at`]).
    pub(super) expires_at: i64,
    pub revoked: bool,
    pub user_disabled: bool,
    /// An SSO user's token while administrators have SSO users' tokens switched off.
    pub sso_blocked: bool,
    /// The SSO provider refused to re-validate the owner.
    pub sso_suspended: bool,
    /// The owner's roles from SSO, for a JWT upstream.
    pub roles: Arc<[String]>,
    pub scope: Scope,
    /// Networks the token may be used from; `None`: anywhere.
    pub allowed: Option<Box<[IpNet]>>,
    /// On a rotated-away token: from this instant on, a use is a reuse; [`NEVER`]: not
    /// rotated away.
    pub(super) grace_until: i64,
    /// When this token's use was last reported for the last-used columns.
    pub(super) last_reported: AtomicI64,
    /// The address of that report, folded (see `usage`).
    pub(super) last_ip: AtomicU64,
    /// Accepted requests not yet taken by the usage writer.
    pub(crate) unreported: AtomicU64,
    /// The usage writer holds this entry and will take its count.
    pub(crate) handed: AtomicBool,
    /// A refusal of this entry is on its way to the usage writer: later ones until it
    /// is written are not sent again (a flood of refusals cannot fill the channel).
    pub(crate) refusal_sent: AtomicBool,
    /// The invalidation generation when it was read: if another began since, the
    /// entry may predate a revocation.
    pub(super) generation: u64,
    /// While a token key is rotated: the hash the store held when this entry was read
    /// under a previous key (changes to the row are announced under that hash).
    pub(super) stored_under: Option<Box<TokenHash>>,
}

/// No instant: a time field that is not set.
pub(super) const NEVER: i64 = i64::MAX;

/// The role list of every token whose owner has none (most of them), shared.
static NO_ROLES: std::sync::LazyLock<Arc<[String]>> =
    std::sync::LazyLock::new(|| Arc::from(Vec::new()));

impl CachedToken {
    pub(crate) fn new(r: AuthRecord, generation: u64) -> Self {
        CachedToken {
            token_id: r.token_id.into_boxed_str(),
            username: r.username.into(),
            expires_at: r.expires_at.unwrap_or(NEVER),
            revoked: r.revoked,
            user_disabled: r.user_disabled,
            sso_blocked: r.sso_blocked,
            sso_suspended: r.sso_suspended,
            roles: if r.roles.is_empty() {
                NO_ROLES.clone()
            } else {
                r.roles.into()
            },
            scope: r.scope,
            allowed: r.allowed_addresses.map(Vec::into_boxed_slice),
            grace_until: r.grace_until.unwrap_or(NEVER),
            last_reported: AtomicI64::new(r.last_used_at.unwrap_or(0)),
            last_ip: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            handed: AtomicBool::new(false),
            refusal_sent: AtomicBool::new(false),
            generation,
            stored_under: None,
        }
    }

    /// When the token expires, in Unix seconds; `None`: never.
    pub fn expires_at(&self) -> Option<i64> {
        (self.expires_at != NEVER).then_some(self.expires_at)
    }
}
