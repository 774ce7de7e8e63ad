//! The change feed that keeps every process's token cache honest.
//!
//! SQLite: triggers append to the `invalidations` table; every process sharing the file
//! (the gateway, the CLI) polls it, so a `patgate token revoke` in another process
//! reaches the running gateway within one poll interval.
//!
//! PostgreSQL: triggers NOTIFY `patgate_invalidate` on commit and every replica LISTENs.
//! Notifications sent while a replica's listener is disconnected are lost, so on every
//! (re)connect the replica evicts its whole cache.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;

use crate::auth::TokenCheck;
use crate::store::{Backend, Invalidation, Store};

/// Channel the PostgreSQL triggers notify on.
pub const CHANNEL: &str = "patgate_invalidate";
/// Invalidation rows older than this are pruned (SQLite).
const KEEP_ROWS_SECS: i64 = 3600;

/// Runs until `stop` changes. Returns once the initial subscription is in place, so
/// that no change committed after start-up is missed.
pub async fn start(
    store: Store,
    check: Arc<TokenCheck>,
    poll_interval: Duration,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    match store.backend() {
        Backend::Sqlite => {
            let last = store.latest_invalidation().await?;
            Ok(tokio::spawn(poll_sqlite(
                store,
                check,
                poll_interval,
                last,
                stop,
            )))
        }
        Backend::Postgres => {
            let mut listener = PgListener::connect(store.url()).await?;
            listener.listen(CHANNEL).await?;
            Ok(tokio::spawn(listen_postgres(
                listener,
                store.url().to_string(),
                check,
                stop,
            )))
        }
    }
}

async fn poll_sqlite(
    store: Store,
    check: Arc<TokenCheck>,
    every: Duration,
    mut last: i64,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        match store.invalidations_since(last).await {
            Ok(changes) => {
                for (id, change) in changes {
                    check.invalidate(&change).await;
                    last = id;
                }
            }
            Err(e) => tracing::warn!(error = %e, "polling for revocations failed; retrying"),
        }
        rounds += 1;
        if rounds % 14_400 == 0 {
            if let Err(e) = store.prune_invalidations(KEEP_ROWS_SECS).await {
                tracing::warn!(error = %e, "pruning old invalidations failed");
            }
        }
    }
}

async fn listen_postgres(
    mut listener: PgListener,
    url: String,
    check: Arc<TokenCheck>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            r = listener.try_recv() => r,
            _ = stop.changed() => return,
        };
        match received {
            Ok(Some(notification)) => {
                let payload = notification.payload();
                match payload
                    .split_once(':')
                    .and_then(|(kind, key)| Invalidation::parse(kind, key))
                {
                    Some(change) => check.invalidate(&change).await,
                    None => tracing::warn!("ignoring an unrecognised invalidation notice"),
                }
            }
            Ok(None) | Err(_) => {
                // Until the feed is back, every check reads the store directly.
                tracing::warn!("lost the PostgreSQL change feed; checking tokens against the database until it is back");
                check.set_feed_healthy(false);
                let Some(fresh) = reconnect(&url, &mut stop).await else {
                    return;
                };
                listener = fresh;
                check.set_feed_healthy(true);
                tracing::info!("PostgreSQL change feed restored");
            }
        }
    }
}

/// Opens a new listener, retrying with backoff; `None` if asked to stop meanwhile.
async fn reconnect(url: &str, stop: &mut watch::Receiver<bool>) -> Option<PgListener> {
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            let mut listener = PgListener::connect(url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        match attempt.await {
            Ok(listener) => return Some(listener),
            Err(e) => tracing::warn!(error = %e, "reconnecting the PostgreSQL change feed failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return None,
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
