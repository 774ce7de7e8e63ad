//! Once a minute, off the request path: refused token attempts and failed sign-ins go
//! into the audit log (one row per address and reason, with the user when the gateway
//! knows them), tokens that expired since the last round are logged (each once, across
//! replicas), timed-out sessions and abandoned SSO sign-ins are forgotten, and tokens'
//! day counts past their 90 days and audit entries past `audit.retention` are pruned in
//! small batches (every replica may prune: deleting rows already gone does nothing).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::Api;
use crate::store::{AuditEvent, StoreError};

const EVERY: Duration = Duration::from_secs(60);
/// Most expired tokens logged per round; the rest wait for the next one.
const EXPIRED_PER_ROUND: i64 = 1_000;
/// Days a token's request counts are kept.
pub const USAGE_KEPT_DAYS: i64 = 90;
/// Rows deleted per statement, and statements per round (day rows, audit entries): a
/// long backlog is worked off over several rounds without holding the database.
const PRUNE_BATCH: i64 = 1_000;
const PRUNE_BATCHES_PER_ROUND: usize = 10;
/// Audit entries go faster: 100,000 a round works off years of a busy log in hours.
const AUDIT_BATCHES_PER_ROUND: usize = 100;
/// The pause between two statements, for the requests' own writes.
const PRUNE_PAUSE: Duration = Duration::from_millis(10);

/// Runs until `stop` changes, then flushes the refusal counts once more.
pub async fn run(api: Arc<Api>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => round(&api).await,
            _ = stop.changed() => break,
        }
    }
    flush_refusals(&api).await;
    flush_sign_in_failures(&api).await;
}

/// One round of everything.
pub async fn round(api: &Api) {
    flush_refusals(api).await;
    flush_sign_in_failures(api).await;
    // Other replicas' changes to the window reach this one's answers here.
    if let Ok(settings) = api.store.notify_settings().await {
        api.tokens.set_expiry_warning_days(settings.days_before());
    }
    match api.store.take_newly_expired(EXPIRED_PER_ROUND).await {
        Ok(expired) => {
            for token in expired {
                let at = token.expires_at.unwrap_or_default();
                let event = AuditEvent {
                    action: "token.expired",
                    username: Some(token.username),
                    token_id: Some(token.id),
                    detail: Some(serde_json::json!({"name": token.name})),
                    ..AuditEvent::default()
                };
                if let Err(e) = api.store.audit_at(at, event).await {
                    tracing::warn!(error = %e, "could not log an expired token");
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not look for expired tokens"),
    }
    // Owners suspended by the identity provider reach the service accounts' flag here.
    if let Err(e) = crate::accounts::service::check_owners(&api.store).await {
        tracing::warn!(error = %e, "could not check service accounts' owners");
    }
    if let Err(e) = api.signin.sessions.prune().await {
        tracing::warn!(error = %e, "could not prune old sessions");
    }
    let now = crate::core::time::now();
    prune_usage(api, now).await;
    prune_audit(api, now).await;
}

/// Deletes day counts older than [`USAGE_KEPT_DAYS`] as of `now` (the real clock
/// except in tests), a batch at a time; returns how many went.
pub async fn prune_usage(api: &Api, now: i64) -> u64 {
    let before = crate::tokens::usage::day_of(now) - USAGE_KEPT_DAYS + 1;
    in_batches("old token usage days", PRUNE_BATCHES_PER_ROUND, || {
        api.store.prune_usage_days(before, PRUNE_BATCH)
    })
    .await
}

/// Deletes audit entries older than `audit.retention` as of `now` (the real clock
/// except in tests), a batch at a time; returns how many went.
pub async fn prune_audit(api: &Api, now: i64) -> u64 {
    let retention = api.audit_retention();
    let before = now.saturating_sub(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    let pruned = in_batches("old audit entries", AUDIT_BATCHES_PER_ROUND, || {
        api.store.prune_audit(before, PRUNE_BATCH)
    })
    .await;
    if pruned > 0 {
        tracing::info!(
            pruned,
            retention = %humantime::format_duration(retention),
            "pruned audit entries older than audit.retention"
        );
    }
    pruned
}

/// Runs `batch`, which deletes at most [`PRUNE_BATCH`] rows, until it deletes fewer or
/// has run `most` times, pausing between two; returns how many rows went.
async fn in_batches<F, Fut>(what: &str, most: usize, mut batch: F) -> u64
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut pruned = 0;
    for i in 0..most {
        if i > 0 {
            tokio::time::sleep(PRUNE_PAUSE).await;
        }
        match batch().await {
            Ok(n) => {
                pruned += n;
                if n < PRUNE_BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not prune {what}");
                break;
            }
        }
    }
    pruned
}

async fn flush_refusals(api: &Api) {
    let (counts, overflow) = api.tokens.refusals.drain();
    for (ip, reason, count) in counts {
        api.audit(AuditEvent {
            action: "token.refused",
            ip: Some(ip.to_string()),
            detail: Some(serde_json::json!({"reason": reason, "count": count})),
            ..AuditEvent::default()
        })
        .await;
    }
    if overflow > 0 {
        api.audit(AuditEvent {
            action: "token.refused",
            detail: Some(
                serde_json::json!({"reason": "from too many addresses to list", "count": overflow}),
            ),
            ..AuditEvent::default()
        })
        .await;
    }
}

async fn flush_sign_in_failures(api: &Api) {
    let (counts, overflow) = api.signin.failures().drain();
    for (key, count) in counts {
        api.audit(AuditEvent {
            actor: key.username.clone(),
            action: "signin.failed",
            username: key.username,
            ip: Some(key.ip.to_string()),
            detail: Some(
                serde_json::json!({"method": key.method, "reason": key.reason, "count": count}),
            ),
            ..AuditEvent::default()
        })
        .await;
    }
    if overflow > 0 {
        api.audit(AuditEvent {
            action: "signin.failed",
            detail: Some(
                serde_json::json!({"reason": "from too many addresses to list", "count": overflow}),
            ),
            ..AuditEvent::default()
        })
        .await;
    }
}
