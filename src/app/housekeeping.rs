//! Once a minute, off the request path: refused token attempts and failed sign-ins go
//! into the audit log (one row per address and reason, with the user when the gateway
//! knows them), tokens that expired since the last round are logged (each once, across
//! replicas), timed-out sessions and abandoned SSO sign-ins are forgotten, and tokens'
//! day counts past their 90 days are pruned in small batches.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::api::Api;
use crate::store::AuditEvent;

const EVERY: Duration = Duration::from_secs(60);
/// Most expired tokens logged per round; the rest wait for the next one.
const EXPIRED_PER_ROUND: i64 = 1_000;
/// Days a token's request counts are kept.
pub const USAGE_KEPT_DAYS: i64 = 90;
/// Day rows deleted per statement, and statements per round: a long backlog is
/// worked off over several rounds without holding the database.
const PRUNE_BATCH: i64 = 1_000;
const PRUNE_BATCHES_PER_ROUND: usize = 10;

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
    prune_usage(api, crate::core::time::now()).await;
}

/// Deletes day counts older than [`USAGE_KEPT_DAYS`] as of `now` (the real clock
/// except in tests), a batch at a time; returns how many went.
pub async fn prune_usage(api: &Api, now: i64) -> u64 {
    let before = crate::tokens::usage::day_of(now) - USAGE_KEPT_DAYS + 1;
    let mut pruned = 0;
    for _ in 0..PRUNE_BATCHES_PER_ROUND {
        match api.store.prune_usage_days(before, PRUNE_BATCH).await {
            Ok(n) => {
                pruned += n;
                if n < PRUNE_BATCH as u64 {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not prune old token usage days");
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
