//! The token check: format and checksum, keyed hash, moka cache, store.
//!
//! Found tokens (valid or not) are cached under their hash with what policy needs to
//! decide; unknown hashes go to a separate, short-lived negative cache so that a flood
//! of invented tokens cannot evict real ones. Expiry is decided against the clock on
//! every request, so a cached token still expires at its exact instant. Revocations
//! and user changes evict entries through [`TokenCheck::invalidate`], driven by the
//! store's change feed (`invalidation`).

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use moka::future::Cache;

use crate::config;
use crate::core::refusal::Refusal;
use crate::core::token::{self, TokenHash, TokenHasher};
use crate::metrics::Metrics;
use crate::store::{self, Invalidation, Store};
use crate::tokens::limiter::FailureLimiter;
use crate::tokens::refusals::RefusalLog;
use crate::tokens::rules::{AccessRules, Attempt, Denied};
use crate::tokens::usage::UsageRecorder;

pub use entry::CachedToken;

/// The authenticated principal of a request: the cached token it presented.
pub type Principal = Arc<CachedToken>;

/// Shared token-check state; one per process.
pub struct TokenCheck {
    hasher: TokenHasher,
    store: Store,
    found: Cache<TokenHash, Arc<CachedToken>>,
    unknown: Cache<TokenHash, ()>,
    /// Bumped before every eviction, so a lookup that raced with one can tell.
    generation: AtomicU64,
    /// When the change feed last proved itself working, on [`Self::clock_ms`].
    feed_confirmed_ms: AtomicU64,
    /// `cache.serve_stale_for` (see [`stale`]).
    stale: stale::StaleServing,
    /// Start of the feed's clock.
    #[cfg(not(test))]
    epoch: std::time::Instant,
    /// Unit tests: the feed's clock, moved by hand instead of by sleeping (see
    /// [`Self::clock_ms`]). Not compiled into the gateway.
    #[cfg(test)]
    manual_clock_ms: AtomicU64,
    /// Tests: holds a store lookup open until released (see [`hold::LookupHold`]).
    #[cfg(test)]
    hold: hold::LookupHold,
    /// The runtime that owns the database connections (the main one).
    runtime: tokio::runtime::Handle,
    usage: UsageRecorder,
    limiter: FailureLimiter,
    metrics: Arc<Metrics>,
    /// Refused attempts, for the audit log.
    pub refusals: RefusalLog,
    /// Scopes and allowlists: what a valid token may do, and from where. Read only for
    /// `webhook` tokens (their paths); replaced by a reload.
    rules: std::sync::RwLock<Arc<AccessRules>>,
    /// How long before its expiry a token's answers warn of it (the administrators'
    /// `notifications.days_before`, in seconds; refreshed by housekeeping).
    expiry_warning: AtomicI64,
}

impl TokenCheck {
    pub fn new(
        hasher: TokenHasher,
        store: Store,
        settings: &config::Cache,
        limiter: FailureLimiter,
        usage: UsageRecorder,
        metrics: Arc<Metrics>,
    ) -> TokenCheck {
        let found = Cache::builder()
            .max_capacity(settings.max_tokens)
            .time_to_live(settings.ttl)
            .support_invalidation_closures()
            .build();
        // Unknown hashes are cheap to forget and mostly junk: a quarter of the room.
        let unknown = Cache::builder()
            .max_capacity((settings.max_tokens / 4).max(1_000))
            .time_to_live(settings.negative_ttl)
            .build();
        TokenCheck {
            hasher,
            store,
            found,
            unknown,
            generation: AtomicU64::new(0),
            // Confirmed at start: the feed subscribes before serving begins.
            feed_confirmed_ms: AtomicU64::new(FEED_MAX_SILENCE_MS + 1),
            stale: stale::StaleServing::new(settings.serve_stale_for, FEED_MAX_SILENCE_MS + 1),
            #[cfg(not(test))]
            epoch: std::time::Instant::now(),
            #[cfg(test)]
            manual_clock_ms: AtomicU64::new(0),
            #[cfg(test)]
            hold: hold::LookupHold::default(),
            runtime: tokio::runtime::Handle::current(),
            usage,
            limiter,
            metrics,
            refusals: RefusalLog::default(),
            rules: std::sync::RwLock::new(Arc::new(AccessRules::default())),
            expiry_warning: AtomicI64::new(7 * 86_400),
        }
    }

    /// Sets the process-wide part of the per-token rules (`webhooks.paths`).
    pub fn with_rules(self, rules: AccessRules) -> TokenCheck {
        self.set_rules(rules);
        self
    }

    /// Replaces the process-wide rules (`webhooks.paths`; a reload).
    pub fn set_rules(&self, rules: AccessRules) {
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
    }

    /// Replaces the failed-check limits (`limits`; a reload).
    pub fn set_limits(&self, limits: &crate::config::Limits) {
        self.limiter.set(limits);
    }

    /// Checks a presented token for `attempt` from `client_ip`: valid, and allowed
    /// by its scope and address allowlist. `claimed_user` is the username of
    /// `Basic user:pat`. Every path that accepts a token asks this.
    pub async fn check(
        self: &Arc<Self>,
        presented: &[u8],
        claimed_user: Option<&[u8]>,
        client_ip: IpAddr,
        attempt: Attempt<'_>,
    ) -> Result<Principal, Refusal> {
        let result = match self
            .evaluate(presented, claimed_user, client_ip, attempt, true)
            .await
        {
            Err(refusal @ (Refusal::Malformed(_) | Refusal::Invalid)) => {
                if self.limiter.record_failure(client_ip).await {
                    Err(Refusal::TooManyFailures)
                } else {
                    Err(refusal)
                }
            }
            other => other,
        };
        if let Err(refusal) = &result {
            self.refusals.record(client_ip, refusal.code());
        }
        result
    }

    /// Re-checks a token without counting a failure against the address (open
    /// tunnels ask this every few hundred milliseconds).
    pub async fn still_valid(
        self: &Arc<Self>,
        presented: &[u8],
        claimed_user: Option<&[u8]>,
        client_ip: IpAddr,
        attempt: Attempt<'_>,
    ) -> bool {
        self.evaluate(presented, claimed_user, client_ip, attempt, false)
            .await
            .is_ok()
    }

    /// Seconds a limited client should wait.
    pub fn retry_after_secs(&self) -> u64 {
        self.limiter.retry_after_secs()
    }

    /// How long before its expiry a token's answers warn of it, in seconds.
    pub fn expiry_warning_secs(&self) -> i64 {
        self.expiry_warning.load(Ordering::Relaxed)
    }

    /// Sets that from the administrators' `notifications.days_before`.
    pub fn set_expiry_warning_days(&self, days: i64) {
        self.expiry_warning
            .store(days.saturating_mul(86_400), Ordering::Relaxed);
    }

    /// `counted`: a request (counted in the token's usage, its refusal kept), not a
    /// tunnel's re-check.
    async fn evaluate(
        self: &Arc<Self>,
        presented: &[u8],
        claimed_user: Option<&[u8]>,
        client_ip: IpAddr,
        attempt: Attempt<'_>,
        counted: bool,
    ) -> Result<Principal, Refusal> {
        token::check_format(presented).map_err(Refusal::Malformed)?;
        let hash = self.hasher.hash(presented);
        let previous = if self.hasher.rotating() {
            self.hasher.previous_hashes(presented)
        } else {
            Vec::new()
        };
        let entry = self.entry(&hash, previous, client_ip).await?;
        let now = crate::core::time::now();
        let decided = self.decide(&entry, claimed_user, client_ip, attempt, now);
        match decided {
            Ok(()) => {
                if counted {
                    self.usage.count(&entry, now);
                }
                self.usage.report(
                    &entry.last_reported,
                    &entry.last_ip,
                    &entry.token_id,
                    now,
                    client_ip,
                );
                Ok(entry)
            }
            Err(refusal) => {
                if counted {
                    self.usage.refused(&entry, refusal.code(), now);
                }
                Err(refusal)
            }
        }
    }

    /// The policy for a found token: revoked, reused, expired, its owner, its rules.
    fn decide(
        &self,
        entry: &CachedToken,
        claimed_user: Option<&[u8]>,
        client_ip: IpAddr,
        attempt: Attempt<'_>,
        now: i64,
    ) -> Result<(), Refusal> {
        if entry.revoked || claimed_user.is_some_and(|u| u != entry.username.as_bytes()) {
            // Same answer as unknown: do not confirm whose token it is.
            return Err(Refusal::Invalid);
        }
        if entry.grace_until <= now {
            // A rotated-away token used after its grace: the family is compromised.
            self.reuse_detected(entry, client_ip);
            return Err(Refusal::Invalid);
        }
        if entry.expires_at <= now {
            return Err(Refusal::Expired);
        }
        if entry.user_disabled {
            return Err(Refusal::UserDisabled);
        }
        if entry.sso_blocked {
            return Err(Refusal::SsoDisabled);
        }
        if entry.sso_suspended {
            return Err(Refusal::SsoSuspended);
        }
        let permitted = if entry.scope == crate::core::scope::Scope::Webhook {
            let rules = self.rules.read().unwrap_or_else(|p| p.into_inner()).clone();
            rules.permits(entry.scope, entry.allowed.as_deref(), attempt, client_ip)
        } else {
            AccessRules::default().permits(
                entry.scope,
                entry.allowed.as_deref(),
                attempt,
                client_ip,
            )
        };
        permitted.map_err(|denied| match denied {
            Denied::Scope(scope) => Refusal::ScopeDenied(scope),
            Denied::Address => Refusal::AddressNotAllowed,
        })
    }

    /// Revokes a reused token's family and records the alert, off the request's path
    /// and once across replicas (the store's update decides who does it).
    fn reuse_detected(&self, entry: &CachedToken, client_ip: IpAddr) {
        let store = self.store.clone();
        let token_id = entry.token_id.to_string();
        let username = entry.username.to_string();
        self.runtime.spawn(async move {
            match store.revoke_family(&token_id).await {
                Ok(Some(successors)) => {
                    tracing::warn!(
                        token_id,
                        user = username,
                        "a rotated-away token was used after its grace; its successors are revoked"
                    );
                    let event = store::AuditEvent {
                        actor: None,
                        action: "token.reuse_detected",
                        username: Some(username),
                        token_id: Some(token_id),
                        ip: Some(client_ip.to_string()),
                        detail: Some(serde_json::json!({ "revoked": successors })),
                    };
                    if let Err(e) = store.audit(event).await {
                        tracing::warn!(error = %e, "could not record a token reuse");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "could not revoke a reused token's family"),
            }
        });
    }

    async fn entry(
        self: &Arc<Self>,
        hash: &TokenHash,
        previous: Vec<(String, TokenHash)>,
        client_ip: IpAddr,
    ) -> Result<Arc<CachedToken>, Refusal> {
        let trusted = self.feed_is_fresh();
        if trusted {
            if let Some(hit) = self.found.get(hash).await {
                self.metrics
                    .local()
                    .cache_hits
                    .fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
            if self.unknown.contains_key(hash) {
                self.metrics
                    .local()
                    .cache_hits
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Invalid);
            }
        } else if let Some(hit) = self.stale_hit(hash).await {
            return Ok(hit);
        }
        // Not cached: an address over its failure limit gets no database query.
        if self.limiter.blocked(&client_ip).await {
            return Err(Refusal::TooManyFailures);
        }
        self.metrics
            .local()
            .cache_misses
            .fetch_add(1, Ordering::Relaxed);
        // On the main runtime, where the database connections live, and to completion
        // even if the client goes away: a half-done miss could leave a stale entry.
        let this = self.clone();
        let hash = *hash;
        self.runtime
            .spawn(async move { this.miss(hash, &previous, trusted).await })
            .await
            .unwrap_or(Err(Refusal::Unavailable))
    }

    /// Looks a hash up in the store and caches the answer, unless an invalidation ran
    /// meanwhile (then the answer is used once, not cached) or the feed is not fresh.
    async fn miss(
        &self,
        hash: TokenHash,
        previous: &[(String, TokenHash)],
        cache: bool,
    ) -> Result<Arc<CachedToken>, Refusal> {
        if !cache {
            let looked_up = self.fetch(&hash, previous).await;
            return self.or_stale(&hash, looked_up).await;
        }
        // Concurrent misses for one hash share one query.
        let looked_up = self
            .found
            .try_get_with(hash, self.fetch(&hash, previous))
            .await;
        let now = self.generation.load(Ordering::Acquire);
        match looked_up {
            Ok(entry) if entry.generation == now => Ok(entry),
            Ok(_) => {
                // Read before an eviction that ran while we (or the lookup we joined)
                // waited: read again, and leave it to the next request to cache.
                self.found.invalidate(&hash).await;
                self.fetch(&hash, previous).await.map_err(Refusal::from)
            }
            Err(e) => match *e {
                // No trigger fires on insert, so nothing can make "unknown" stale except
                // the token being created, and nobody can present a token before that.
                Lookup::NotFound => {
                    self.unknown.insert(hash, ()).await;
                    Err(Refusal::Invalid)
                }
                Lookup::Failed => Err(Refusal::Unavailable),
            },
        }
    }

    /// One store query (one per configured key while a key is rotated), bounded in
    /// time; the entry remembers the generation it was read in. A token found under a
    /// previous key is moved to the current one, off the request's path.
    async fn fetch(
        &self,
        hash: &TokenHash,
        previous: &[(String, TokenHash)],
    ) -> Result<Arc<CachedToken>, Lookup> {
        self.metrics
            .local()
            .store_lookups
            .fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let generation = self.generation.load(Ordering::Acquire);
        let lookups = async {
            if let Some(found) = self.store.lookup(hash).await? {
                return Ok(Some((found, None)));
            }
            for (_, old) in previous {
                if let Some(found) = self.store.lookup(old).await? {
                    return Ok(Some((found, Some(*old))));
                }
            }
            Ok::<_, store::StoreError>(None)
        };
        let answer = tokio::time::timeout(LOOKUP_TIMEOUT, lookups).await;
        self.metrics.local().store_lookup.observe(started.elapsed());
        #[cfg(test)]
        self.hold.pass().await;
        match answer {
            Ok(Ok(Some((record, stored_under)))) => {
                if let Some(old) = stored_under {
                    let store = self.store.clone();
                    let (id, new, key_id) = (
                        record.token_id.clone(),
                        *hash,
                        self.hasher.key_id().to_string(),
                    );
                    tokio::spawn(async move {
                        if let Err(e) = store.rehash(&id, &old, &new, &key_id).await {
                            tracing::warn!(error = %e, "could not move a token to the current key");
                        }
                    });
                }
                let mut entry = CachedToken::new(record, generation);
                entry.stored_under = stored_under.map(Box::new);
                Ok(Arc::new(entry))
            }
            Ok(Ok(None)) => Err(Lookup::NotFound),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "token lookup failed");
                Err(Lookup::Failed)
            }
            Err(_) => {
                tracing::warn!(timeout = ?LOOKUP_TIMEOUT, "token lookup timed out");
                Err(Lookup::Failed)
            }
        }
    }

    /// Whether the change feed has confirmed recently that it is working; if not, the
    /// cache may hold entries a missed change made stale, and is bypassed.
    fn feed_is_fresh(&self) -> bool {
        let now = self.clock_ms();
        now.saturating_sub(self.feed_confirmed_ms.load(Ordering::Acquire)) <= FEED_MAX_SILENCE_MS
    }

    /// Milliseconds on the feed's clock; it starts past the silence limit, so that a
    /// confirmation time of 0 ([`Self::feed_lost`]) always reads as stale. In unit
    /// tests the clock stands still unless the test moves it.
    fn clock_ms(&self) -> u64 {
        #[cfg(not(test))]
        let elapsed = self.epoch.elapsed().as_millis() as u64;
        #[cfg(test)]
        let elapsed = self.manual_clock_ms.load(Ordering::Acquire);
        elapsed + FEED_MAX_SILENCE_MS + 1
    }

    /// Seconds since the change feed last confirmed it is working (a lost feed reads as
    /// the time since the gateway started).
    pub fn feed_lag_secs(&self) -> f64 {
        let since = self
            .clock_ms()
            .saturating_sub(self.feed_confirmed_ms.load(Ordering::Acquire));
        since as f64 / 1000.0
    }

    /// Called by the change feed when it knows it has lost changes (its connection
    /// dropped): the cache is bypassed at once, and emptied when the feed confirms
    /// itself again.
    pub fn feed_lost(&self) {
        self.feed_confirmed_ms.store(0, Ordering::Release);
    }

    /// Called by the change feed each time it has proven itself working (a poll
    /// succeeded; a ping came back). After a silence, everything cached is dropped:
    /// changes made during it may have been missed.
    pub fn confirm_feed(&self) {
        let now = self.clock_ms();
        let previous = self.feed_confirmed_ms.load(Ordering::Acquire);
        if now.saturating_sub(previous) > FEED_MAX_SILENCE_MS {
            tracing::info!("token change feed confirmed again after a silence; cache emptied");
            self.invalidate_all();
        }
        self.feed_confirmed_ms.store(now, Ordering::Release);
        self.stale.confirmed(now);
    }

    /// Evicts what a change in the store made stale.
    pub async fn invalidate(&self, change: &Invalidation) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        match change {
            Invalidation::Token(hex_hash) => {
                if let Some(hash) = parse_hex(hex_hash) {
                    self.found.invalidate(&hash).await;
                    self.unknown.invalidate(&hash).await;
                    if self.hasher.rotating() {
                        // Entries read under a previous key are cached under the
                        // current key's hash; the store announces the one it holds.
                        let evict = self.found.invalidate_entries_if(move |_, e| {
                            e.stored_under.as_deref() == Some(&hash)
                        });
                        if evict.is_err() {
                            self.found.invalidate_all();
                        }
                    }
                }
            }
            Invalidation::All => {
                self.found.invalidate_all();
                self.unknown.invalidate_all();
            }
            Invalidation::User(username) => {
                let username: Arc<str> = username.as_str().into();
                if let Err(e) = self
                    .found
                    .invalidate_entries_if(move |_, entry| entry.username == username)
                {
                    tracing::warn!(error = %e, "could not evict a user's tokens; evicting all");
                    self.found.invalidate_all();
                }
            }
        }
        self.metrics
            .local()
            .invalidations
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Evicts what a batch of changes made stale. Users' changes are evicted together,
    /// with one pass over the cache: a mass suspension or deprovisioning would otherwise
    /// queue one scan of the cache per user, and the request path would pay for them.
    pub async fn invalidate_batch(&self, changes: &[Invalidation]) {
        let users: std::collections::HashSet<Arc<str>> = changes
            .iter()
            .filter_map(|change| match change {
                Invalidation::User(username) => Some(Arc::from(username.as_str())),
                _ => None,
            })
            .collect();
        if users.len() < 2 {
            for change in changes {
                self.invalidate(change).await;
            }
            return;
        }
        for change in changes {
            if !matches!(change, Invalidation::User(_)) {
                self.invalidate(change).await;
            }
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        let count = users.len() as u64;
        if let Err(e) = self
            .found
            .invalidate_entries_if(move |_, entry| users.contains(&entry.username))
        {
            tracing::warn!(error = %e, "could not evict users' tokens; evicting all");
            self.found.invalidate_all();
        }
        self.metrics
            .local()
            .invalidations
            .fetch_add(count, Ordering::Relaxed);
    }

    /// Evicts everything (after a gap in the change feed).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.found.invalidate_all();
        self.unknown.invalidate_all();
    }

    /// Number of cached valid entries (approximate; for metrics).
    pub fn cached_tokens(&self) -> u64 {
        self.found.entry_count()
    }
}

#[derive(Debug)]
enum Lookup {
    NotFound,
    Failed,
}

impl From<Lookup> for Refusal {
    fn from(lookup: Lookup) -> Self {
        match lookup {
            Lookup::NotFound => Refusal::Invalid,
            Lookup::Failed => Refusal::Unavailable,
        }
    }
}

/// Longest a token lookup may take before the request gets 503.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Longest the change feed may stay silent before the cache is bypassed.
const FEED_MAX_SILENCE_MS: u64 = 750;

fn parse_hex(text: &str) -> Option<TokenHash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

mod entry;
#[cfg(test)]
mod hold;
mod stale;

#[cfg(test)]
mod tests;
