//! The composition root: [`start`] builds the application state in one place (store,
//! token check, change feed, usage writer, identity, API, expiry notifier,
//! housekeeping), wires the gateway's own routes into the request path, starts the
//! workers and serves until [`Running::shutdown`]: then it stops accepting, lets
//! in-flight requests finish within `shutdown_grace`, and flushes pending last-used
//! writes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::housekeeping;
use super::reload::Reloader;
use super::store::open_store;
use crate::api::{self, Api};
use crate::config::{Config, IdentityMode};
use crate::core::client::ClientInfo;
use crate::core::response::Body;
use crate::edge::gateway::{Gateway, OwnRoutes};
use crate::edge::live::Live;
use crate::edge::{endpoints, server};
use crate::identity::jwt::JwtMinter;
use crate::identity::UpstreamIdentity;
use crate::metrics::{Metrics, Route};
use crate::notify::{schedule, Notifier};
use crate::tokens::check::TokenCheck;
use crate::tokens::invalidation;
use crate::tokens::limiter::FailureLimiter;
use crate::tokens::rules::AccessRules;
use crate::tokens::usage::UsageRecorder;
use crate::ui;

/// A started gateway.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The admin listener's address, when `admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    /// The API, for embedding programs and tests.
    pub api: Arc<Api>,
    /// Applies a new configuration to the running gateway (`SIGHUP`).
    pub reloader: Reloader,
    stop: watch::Sender<bool>,
    /// For turning readiness to 503 before the listeners close.
    gateway: Arc<Gateway>,
    shutdown_delay: std::time::Duration,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Graceful stop: readiness answers 503 for `shutdown_delay` while requests are
    /// still served, then the listeners close; returns when in-flight work is finished
    /// or the grace ran out.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.gateway
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if !self.shutdown_delay.is_zero() {
            tracing::info!(
                delay = ?self.shutdown_delay,
                "readiness now answers 503; serving on until shutdown_delay has passed"
            );
            tokio::time::sleep(self.shutdown_delay).await;
        }
        let _ = self.stop.send(true);
        self.done.await?
    }

    /// Waits until the gateway stops on its own (it does not, unless it fails).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.done).await?
    }
}

/// Builds everything and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let (store, hasher) = open_store(&config).await?;
    let metrics = Arc::new(Metrics::new(config.workers));
    let (stop_tx, stop_rx) = watch::channel(false);
    // The writer outlives the listener so that requests finishing late are recorded.
    let (usage_stop, usage_stop_rx) = watch::channel(false);
    let (usage, usage_writer) = UsageRecorder::start(store.clone(), usage_stop_rx);
    let hasher_for_api = hasher.clone();
    let sealer = Arc::new(crate::core::sealed::Sealer::new(hasher.raw_keys()));
    let tokens = Arc::new(
        TokenCheck::new(
            hasher,
            store.clone(),
            &config.cache,
            FailureLimiter::new(&config.limits),
            usage,
            metrics.clone(),
        )
        .with_rules(AccessRules::new(&config.webhooks.paths)),
    );
    if let Ok(settings) = store.notify_settings().await {
        tokens.set_expiry_warning_days(settings.days_before());
    }
    let feed = invalidation::start(
        store.clone(),
        tokens.clone(),
        config.cache.poll_interval,
        stop_rx.clone(),
    )
    .await?;

    let jwt = match config.upstream.identity.mode {
        IdentityMode::Jwt => Some(
            JwtMinter::start(&config.upstream.identity.jwt, store.clone(), sealer.clone()).await?,
        ),
        _ => None,
    };
    let identity = UpstreamIdentity::new(&config.upstream.identity, jwt.clone())?;
    // The API asserts users to Deploy too (asking again whether an administrator is
    // one); it shares the signing keys.
    let api_identity = UpstreamIdentity::new(&config.upstream.identity, jwt.clone())?;
    if config.upstream.identity.mode == IdentityMode::Header
        && config.upstream.identity.shared_secret.is_none()
    {
        tracing::warn!(
            "header mode without upstream.identity.shared_secret \
             (allow_header_without_secret): anything that reaches Deploy without the gateway \
             can claim to be any user; set a shared secret before real use"
        );
    }
    let tls = config.tls.as_ref().map(server::tls_acceptor).transpose()?;
    let tls_on = tls.is_some();

    let listeners = server::bind(config.listen, config.workers, config.share_port)?;
    let local_addr = listeners[0].local_addr()?;
    tracing::info!(
        %local_addr,
        tls = tls_on,
        upstream = %config.upstream.url,
        identity = ?config.upstream.identity.mode,
        database = ?store.backend(),
        workers = config.workers,
        "patgate listening"
    );

    let notifier = Arc::new(Notifier::new(&config, store.clone(), metrics.clone())?);
    let api = Api::new(
        &config,
        store.clone(),
        tokens.clone(),
        hasher_for_api,
        notifier.clone(),
        Some(api_identity),
    )?;
    let housekeeping = tokio::spawn(housekeeping::run(api.clone(), stop_rx.clone()));
    let revalidation = tokio::spawn(crate::accounts::revalidation::run(
        store.clone(),
        api.signin.clone(),
        metrics.clone(),
        stop_rx.clone(),
    ));
    let notify_task = Some(tokio::spawn(schedule::run(
        notifier.clone(),
        stop_rx.clone(),
    )));
    let routes = Arc::new(Routes { api: api.clone() });
    let mut gateway = Gateway::new(
        store.clone(),
        routes,
        tokens,
        Live::new(&config, identity, tls),
        metrics.clone(),
    );
    gateway.admin_elsewhere = config.admin_listen.is_some();
    let gateway = Arc::new(gateway);
    let draining = gateway.clone();
    let admin_addr = match config.admin_listen {
        Some(address) => {
            let listener = TcpListener::bind(address).await.map_err(|e| {
                anyhow::anyhow!("admin_listen {address}: {e}; is another process on that port?")
            })?;
            let bound = listener.local_addr()?;
            tracing::info!(%bound, "admin listener (metrics, readiness) listening");
            tokio::spawn(endpoints::serve_admin(
                listener,
                gateway.clone(),
                stop_rx.clone(),
            ));
            Some(bound)
        }
        None => None,
    };
    let reloader = Reloader::new(
        config.clone(),
        gateway.clone(),
        api.clone(),
        jwt,
        store.clone(),
        sealer.clone(),
        metrics.clone(),
    );
    let threads =
        server::spawn_workers(listeners, gateway, metrics, stop_rx, config.shutdown_grace)?;
    let done = tokio::spawn(async move {
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("a worker panicked")))
                })
                .collect::<Vec<_>>()
        })
        .await?;
        let _ = usage_stop.send(true);
        if usage_writer.await.is_err() {
            tracing::warn!("the last-used writer failed");
        }
        let _ = feed.await;
        let _ = housekeeping.await;
        let _ = revalidation.await;
        if let Some(task) = notify_task {
            let _ = task.await;
        }
        store.close().await;
        tracing::info!("patgate stopped");
        joined.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        Ok(())
    });
    Ok(Running {
        local_addr,
        admin_addr,
        api,
        reloader,
        stop: stop_tx,
        gateway: draining,
        shutdown_delay: config.shutdown_delay,
        done,
    })
}

/// The routes below `/patgate/` that the request path hands on: the API (with SSO and
/// SCIM) and the pages.
struct Routes {
    api: Arc<Api>,
}

impl OwnRoutes for Routes {
    fn serves(&self, path: &str) -> Option<Route> {
        if api::serves(path) {
            Some(Route::Api)
        } else if ui::serves(path) {
            Some(Route::Ui)
        } else {
            None
        }
    }

    fn answer(
        &self,
        req: Request<Incoming>,
        client: ClientInfo,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>> {
        Box::pin(async move {
            if api::serves(req.uri().path()) {
                self.api.handle(req, client).await
            } else {
                ui::handle(&req)
            }
        })
    }
}

/// What to do next, said once when `patgate serve` has started: where the pages are,
/// how to make a token, and whether Deploy answers at the upstream address (one
/// request, not a loop: a Deploy that comes up later is simply used).
pub async fn first_steps(config: Config, local: SocketAddr) {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = if local.ip().is_unspecified() {
        format!("localhost:{}", local.port())
    } else {
        local.to_string()
    };
    tracing::info!("sign in to the token pages at {scheme}://{host}/patgate/");
    let named = match &config.source {
        Some(path) => format!(" --config {}", path.display()),
        None => String::new(),
    };
    tracing::info!(
        "or create a token from a shell: patgate{named} token create --user NAME --name NAME --expires 30d"
    );
    match super::preflight::reach_deploy(&config).await {
        Ok(answer) => tracing::info!("{answer}"),
        Err(e) => tracing::warn!(
            "{e:#}; requests for Deploy get 502 until it answers there. Set upstream.url to \
             Deploy's address, or start a stand-in to try the gateway: patgate demo-deploy"
        ),
    }
}
