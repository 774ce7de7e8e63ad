//! The change feed that keeps every process's token cache honest.
//!
//! SQLite: triggers append to the `invalidations` table; every process sharing the file
//! (the gateway, the CLI) polls it, so a `patgate token revoke` in another process
//! reaches the running gateway within one poll interval.
//!
//! PostgreSQL: triggers NOTIFY `patgate_invalidate` on commit and every replica LISTENs.
//! Every replica also sends a ping on the same channel a few times a second, so that a
//! listener connection that silently stopped delivering (a half-open TCP connection, a
//! failover) is noticed within a second.
//!
//! Either way the feed reports each proof of life to [`TokenCheck::confirm_feed`]; while
//! it is silent the cache is bypassed, and after a silence it is emptied. So a change is
//! never missed for longer than about a second, whatever happens to the feed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnection, PgListener};
use sqlx::Connection;
use tokio::sync::watch;

use crate::store::{Backend, Invalidation, Store};
use crate::tokens::check::TokenCheck;

/// Channel the PostgreSQL triggers notify on.
pub const CHANNEL: &str = "patgate_invalidate";
/// How often each replica pings the PostgreSQL feed.
const PING_EVERY: Duration = Duration::from_millis(200);
/// A listener that has heard nothing (not even a ping) for this long is replaced.
const LISTENER_SILENCE: Duration = Duration::from_secs(2);
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
            check.confirm_feed();
            Ok(tokio::spawn(poll_sqlite(
                store,
                check,
                poll_interval,
                last,
                stop,
            )))
        }
        Backend::Postgres => {
            let listener = connect_listener(store.url()).await?;
            check.confirm_feed();
            tokio::spawn(ping_postgres(store.url().to_string(), stop.clone()));
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
        // Read until a short batch: only then is everything up to now applied.
        loop {
            match store.invalidations_since(last).await {
                Ok(changes) => {
                    let complete = changes.len() < crate::store::INVALIDATION_BATCH;
                    if let Some((id, _)) = changes.last() {
                        last = *id;
                    }
                    let changes: Vec<_> = changes.into_iter().map(|(_, change)| change).collect();
                    check.invalidate_batch(&changes).await;
                    if complete {
                        check.confirm_feed();
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "polling for revocations failed; retrying");
                    break;
                }
            }
        }
        rounds += 1;
        if rounds % 14_400 == 0 {
            if let Err(e) = store.prune_invalidations(KEEP_ROWS_SECS).await {
                tracing::warn!(error = %e, "pruning old invalidations failed");
            }
        }
    }
}

/// Proves the feed alive end to end: a NOTIFY on a connection of its own (so a busy
/// pool cannot make a healthy feed look dead), heard by the listener.
async fn ping_postgres(url: String, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection: Option<PgConnection> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if connection.is_none() {
            match tokio::time::timeout(PING_EVERY * 5, PgConnection::connect(&url)).await {
                Ok(Ok(c)) => connection = Some(c),
                _ => continue,
            }
        }
        let Some(c) = connection.as_mut() else {
            continue;
        };
        let ping = sqlx::query("SELECT pg_notify($1, 'p:')")
            .bind(CHANNEL)
            .execute(c);
        match tokio::time::timeout(PING_EVERY * 2, ping).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "change feed ping failed; reconnecting");
                connection = None;
            }
            Err(_) => connection = None,
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
            r = tokio::time::timeout(LISTENER_SILENCE, listener.try_recv()) => r,
            _ = stop.changed() => return,
        };
        match received {
            Ok(Ok(Some(notification))) => {
                // With the notices already received behind it, applied as one batch.
                let mut changes = Vec::new();
                let mut next = Some(notification);
                while let Some(notification) = next {
                    match notification.payload().split_once(':') {
                        Some(("p", _)) => check.confirm_feed(),
                        Some((kind, key)) => match Invalidation::parse(kind, key) {
                            Some(change) => changes.push(change),
                            None => tracing::warn!("ignoring an unrecognised invalidation notice"),
                        },
                        None => tracing::warn!("ignoring an unrecognised invalidation notice"),
                    }
                    next = if changes.len() < crate::store::INVALIDATION_BATCH {
                        listener.next_buffered()
                    } else {
                        None
                    };
                }
                check.invalidate_batch(&changes).await;
            }
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                // Changes may have gone by unheard: bypass the cache now; it is emptied
                // when the new listener hears its first ping.
                check.feed_lost();
                tracing::warn!("lost the PostgreSQL change feed; reconnecting");
                let Some(fresh) = reconnect(&url, &mut stop).await else {
                    return;
                };
                listener = fresh;
                tracing::info!("PostgreSQL change feed restored");
            }
        }
    }
}

async fn connect_listener(url: &str) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Opens a new listener, retrying with backoff; `None` if asked to stop meanwhile.
async fn reconnect(url: &str, stop: &mut watch::Receiver<bool>) -> Option<PgListener> {
    let mut delay = Duration::from_millis(100);
    loop {
        match connect_listener(url).await {
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
