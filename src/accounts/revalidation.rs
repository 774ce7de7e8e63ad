//! The re-validation task, a side task of `serve` while `sso.revalidate_every` is set:
//! once a second it takes the SSO users whose re-validation is due (each replica
//! claims a user before asking, so that two never ask about the same one), asks the
//! provider with their refresh token, and applies the answer:
//!
//! - still valid: the new ID token's roles become the user's (unless SCIM Groups set
//!   them), its e-mail too, and a rotated refresh token replaces the kept one;
//! - `invalid_grant`: the user is **suspended**: their tokens are refused at the proxy
//!   (`sso_suspended`) on every replica within a second and their sessions end, until
//!   they sign in through SSO again; nothing is deleted;
//! - the provider unreachable: nothing changes for anyone; counted and logged.
//!
//! Each user comes due one period after the last time, less up to a fifth at random,
//! so that users who signed in together spread out. When many come due at once (they
//! all signed in together, or the gateway was down), they are asked at a pace that
//! gets through all of them in half a period, and no faster: the request path shares
//! the machine, and the provider's token endpoint is shared too.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::signin::refresh::{next_revalidation, Refreshed};
use crate::signin::SignIn;
use crate::store::{AuditEvent, DueRevalidation, RevalidationResult, Store, FROM_REVALIDATION};

/// How often due users are looked for.
const TICK: Duration = Duration::from_secs(1);
/// Users taken per look, at most.
const BATCH: i64 = 500;
/// Users taken per look, at least (a small population is never held back).
const AT_LEAST: i64 = 10;
/// Providers asked at once, per replica.
const AT_ONCE: usize = 16;
/// The audit log's actor for changes the task makes.
const ACTOR: &str = "revalidation";

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub valid: u64,
    pub refused: u64,
    pub unreachable: u64,
}

/// Runs until `stop`; idle while re-validation is off (a reload may switch it on).
pub async fn run(
    store: Store,
    signin: Arc<SignIn>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => return,
        }
        let Some(every) = signin.revalidate_every() else {
            continue;
        };
        let done = round(&store, signin.clone(), &metrics, every).await;
        if done.unreachable > 0 {
            tracing::warn!(
                users = done.unreachable,
                "the SSO provider could not be asked about some users; nobody was suspended, they are asked again in one period"
            );
        }
    }
}

/// Takes every due user (up to a batch) and asks the provider about them.
pub async fn round(
    store: &Store,
    signin: Arc<SignIn>,
    metrics: &Arc<Metrics>,
    every: Duration,
) -> Round {
    // Everyone within half a period, one look a second.
    let population = store.revalidation_count().await.unwrap_or(BATCH);
    let looks = (every.as_secs() / 2).max(1) as i64;
    let pace = ((population + looks - 1) / looks).clamp(AT_LEAST, BATCH);
    let due = match store
        .due_revalidations(crate::core::time::now(), pace)
        .await
    {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "re-validation: the database could not be read");
            return Round::default();
        }
    };
    let mut done = Round::default();
    let mut running: JoinSet<RevalidationResult> = JoinSet::new();
    for user in due {
        match store
            .claim_revalidation(&user, next_revalidation(every))
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "re-validation: the database could not be written");
                break;
            }
        }
        if running.len() >= AT_ONCE {
            if let Some(Ok(result)) = running.join_next().await {
                count(&mut done, metrics, result);
            }
        }
        let store = store.clone();
        let signin = signin.clone();
        running.spawn(async move { revalidate(&store, &signin, &user).await });
    }
    while let Some(joined) = running.join_next().await {
        if let Ok(result) = joined {
            count(&mut done, metrics, result);
        }
    }
    done
}

fn count(done: &mut Round, metrics: &Metrics, result: RevalidationResult) {
    let local = metrics.local();
    match result {
        RevalidationResult::Ok => {
            done.valid += 1;
            local.revalidations_ok.fetch_add(1, Ordering::Relaxed);
        }
        RevalidationResult::Refused => {
            done.refused += 1;
            local.revalidations_refused.fetch_add(1, Ordering::Relaxed);
        }
        RevalidationResult::Unreachable => {
            done.unreachable += 1;
            local
                .revalidations_unreachable
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Asks about one user and applies the answer.
async fn revalidate(store: &Store, signin: &SignIn, due: &DueRevalidation) -> RevalidationResult {
    let username = due.username.as_str();
    let outcome = match signin.open_refresh_token(&due.sealed_refresh_token) {
        Some(token) => signin.refresh_identity(&token).await,
        None => Refreshed::Unreachable(
            "the kept refresh token was sealed under a token key that is no longer configured"
                .into(),
        ),
    };
    let applied = match outcome {
        Refreshed::Valid {
            claims,
            refresh_token,
        } => valid(store, signin, username, claims, refresh_token).await,
        Refreshed::Refused(reason) => refused(store, username, &reason).await,
        Refreshed::Unreachable(reason) => {
            tracing::info!(user = %username, reason = %reason, "re-validation: the provider could not be asked");
            store
                .record_revalidation(
                    username,
                    RevalidationResult::Unreachable,
                    Some(&reason),
                    None,
                )
                .await
                .map(|()| RevalidationResult::Unreachable)
        }
    };
    applied.unwrap_or_else(|e| {
        tracing::warn!(user = %username, error = %e, "re-validation: the database failed");
        RevalidationResult::Unreachable
    })
}

async fn valid(
    store: &Store,
    signin: &SignIn,
    username: &str,
    claims: Option<crate::signin::refresh::IdentityClaims>,
    refresh_token: Option<String>,
) -> Result<RevalidationResult, crate::store::StoreError> {
    if let Some(claims) = claims {
        let issuer = signin
            .oidc()
            .map(|o| o.issuer().to_string())
            .unwrap_or_default();
        let bound = store.sso_subject(&issuer, username).await?;
        if bound.as_deref().is_some_and(|s| s != claims.subject) {
            // Not the person the user is bound to: believe nothing of it.
            let reason = "the provider answered for another subject";
            tracing::warn!(user = %username, "re-validation: {reason}");
            store
                .record_revalidation(
                    username,
                    RevalidationResult::Unreachable,
                    Some(reason),
                    None,
                )
                .await?;
            return Ok(RevalidationResult::Unreachable);
        }
        if !signin.roles_pushed_by_scim(store, username).await? {
            signin
                .apply_roles(
                    store,
                    username,
                    &claims.roles,
                    FROM_REVALIDATION,
                    Some(ACTOR.into()),
                    None,
                )
                .await?;
        }
        if claims.email.is_some() {
            let user = store.user(username).await?;
            if user.is_some_and(|u| u.email != claims.email) {
                store.set_email(username, claims.email.as_deref()).await?;
            }
        }
    }
    let sealed = refresh_token.map(|t| signin.seal_refresh_token(&t));
    store
        .record_revalidation(
            username,
            RevalidationResult::Ok,
            None,
            sealed.as_deref().map(Some),
        )
        .await?;
    Ok(RevalidationResult::Ok)
}

async fn refused(
    store: &Store,
    username: &str,
    reason: &str,
) -> Result<RevalidationResult, crate::store::StoreError> {
    store
        .record_revalidation(
            username,
            RevalidationResult::Refused,
            Some(reason),
            Some(None),
        )
        .await?;
    if store.set_sso_suspended(username, true).await? {
        store.delete_user_sessions(username).await?;
        tracing::info!(user = %username, reason = %reason, "re-validation refused: the user's tokens are suspended until they sign in through SSO again");
        store
            .audit_or_log(AuditEvent {
                actor: Some(ACTOR.into()),
                action: "user.suspended",
                username: Some(username.to_string()),
                detail: Some(serde_json::json!({"source": "revalidation", "reason": reason})),
                ..AuditEvent::default()
            })
            .await;
    }
    Ok(RevalidationResult::Refused)
}
