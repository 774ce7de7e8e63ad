//! Start-up, the accept loop and shutdown.
//!
//! [`start`] builds the application state in one place (store, token check, change
//! feed, usage writer, identity, proxy, expiry notifier), binds the listener and serves until
//! [`Running::shutdown`]: then it stops accepting, lets in-flight requests finish
//! within `shutdown_grace`, and flushes pending last-used writes.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::api::Api;
use crate::config::{Config, ConfigError, IdentityMode, TlsFiles};
use crate::core::token::TokenHasher;
use crate::edge::fastpath::{Client, Forwarder, Outcome};
use crate::edge::gateway::Gateway;
use crate::edge::headers::{self, Rules};
use crate::edge::proxy::Proxy;
use crate::identity::jwt::JwtMinter;
use crate::identity::UpstreamIdentity;
use crate::metrics::Metrics;
use crate::notify::{schedule, Notifier};
use crate::store::Store;
use crate::tokens::check::TokenCheck;
use crate::tokens::limiter::FailureLimiter;
use crate::tokens::rules::AccessRules;
use crate::tokens::usage::UsageRecorder;
use crate::tokens::{invalidation, keys};

/// Largest request head accepted; longer headers get 431.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A client must finish sending its request head within this time.
pub const HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A started gateway.
pub struct Running {
    /// The address actually bound (useful with port 0).
    pub local_addr: SocketAddr,
    /// The admin listener's address, when `admin_listen` is set.
    pub admin_addr: Option<SocketAddr>,
    /// The API, for embedding programs and tests.
    pub api: Arc<Api>,
    stop: watch::Sender<bool>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Graceful stop; returns when in-flight work is finished or the grace ran out.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.done.await?
    }

    /// Waits until the gateway stops on its own (it does not, unless it fails).
    pub async fn wait(&mut self) -> anyhow::Result<()> {
        (&mut self.done).await?
    }
}

/// Opens the store with the configured token key for the server: a missing key file
/// and SQLite database are created.
pub async fn open_store(config: &Config) -> anyhow::Result<(Store, TokenHasher)> {
    let key = keys::token_key(&config.secrets).map_err(as_config_error)?;
    open_with(config, key, true).await
}

/// Opens the store for the command line: the database and key must exist already, so
/// that a command run with the wrong configuration (or from another folder) stops
/// instead of acting on a new, empty database no gateway reads.
pub async fn open_existing_store(config: &Config) -> anyhow::Result<(Store, TokenHasher)> {
    let source = config.source_text();
    let Some(key) = keys::existing_token_key(&config.secrets).map_err(as_config_error)? else {
        return Err(ConfigError::new(format!(
            "no token key at {} (secrets.token_key_file of {source}); the gateway creates it at its first start: start it once with this configuration, or pass the configuration it runs with (--config)",
            config.secrets.token_key_file.display()
        ))
        .into());
    };
    if let Some(file) = config.database.sqlite_file().filter(|f| !f.exists()) {
        return Err(ConfigError::new(format!(
            "no database at {} (database.url of {source}); the gateway creates it at its first start: start it once with this configuration, or pass the configuration it runs with (--config)",
            file.display()
        ))
        .into());
    }
    open_with(config, key, false).await
}

fn as_config_error(e: anyhow::Error) -> anyhow::Error {
    ConfigError::new(format!("{e:#}")).into()
}

async fn open_with(
    config: &Config,
    key: Vec<u8>,
    create: bool,
) -> anyhow::Result<(Store, TokenHasher)> {
    let previous = keys::previous_token_keys(&config.secrets).map_err(as_config_error)?;
    let url = &config.database.url;
    let store = if create {
        Store::connect(url, config.database.max_connections).await
    } else {
        Store::connect_existing(url, config.database.max_connections).await
    }
    .map_err(|e| anyhow::anyhow!("database.url {}: {e}", crate::config::redact_url(url)))?;
    let hasher = TokenHasher::with_previous(&key, &previous);
    // Hashes from before key ids were recorded were made with the only key there was.
    if !hasher.rotating() {
        store.stamp_key_id(hasher.key_id()).await?;
    }
    Ok((store, hasher))
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
    let identity = UpstreamIdentity::new(&config.upstream.identity, jwt)?;
    if config.upstream.identity.mode == IdentityMode::Header
        && config.upstream.identity.shared_secret.is_none()
    {
        tracing::warn!(
            "header mode without upstream.identity.shared_secret \
             (allow_header_without_secret): anything that reaches Deploy without the gateway \
             can claim to be any user; set a shared secret before real use"
        );
    }
    let tls = config.tls.as_ref().map(tls_acceptor).transpose()?;

    let listeners = bind(config.listen, config.workers, config.share_port)?;
    let local_addr = listeners[0].local_addr()?;
    tracing::info!(
        %local_addr,
        tls = tls.is_some(),
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
    )?;
    let housekeeping = tokio::spawn(crate::api::housekeeping::run(api.clone(), stop_rx.clone()));
    let notify_task = notifier
        .schedule()
        .map(|schedule| tokio::spawn(schedule::run(notifier, schedule, stop_rx.clone())));
    let mut gateway = Gateway::new(
        store.clone(),
        api.clone(),
        tokens,
        identity,
        Rules::new(&config),
        metrics.clone(),
    );
    gateway.access_log = config.log.access;
    gateway.admin_elsewhere = config.admin_listen.is_some();
    let gateway = Arc::new(gateway);
    let admin_addr = match config.admin_listen {
        Some(address) => {
            let listener = TcpListener::bind(address).await.map_err(|e| {
                anyhow::anyhow!("admin_listen {address}: {e}; is another process on that port?")
            })?;
            let bound = listener.local_addr()?;
            tracing::info!(%bound, "admin listener (metrics, readiness) listening");
            tokio::spawn(crate::edge::endpoints::serve_admin(
                listener,
                gateway.clone(),
                stop_rx.clone(),
            ));
            Some(bound)
        }
        None => None,
    };
    let grace = config.shutdown_grace;
    let mut threads = Vec::with_capacity(config.workers);
    for (worker, socket) in listeners.into_iter().enumerate() {
        let gateway = gateway.clone();
        let tls = tls.clone();
        let stop = stop_rx.clone();
        let upstream = config.upstream.clone();
        let metrics = metrics.clone();
        let thread = std::thread::Builder::new()
            .name(format!("patgate-worker-{worker}"))
            .spawn(move || -> anyhow::Result<()> {
                metrics.register_worker(worker);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(socket)?;
                    let forwarder = Forwarder::new(&upstream, metrics.clone()).map(Arc::new);
                    let proxy = Arc::new(Proxy::new(&upstream, metrics)?);
                    serve(listener, tls, gateway, proxy, forwarder, stop, grace).await;
                    Ok(())
                })
            })?;
        threads.push(thread);
    }
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
        stop: stop_tx,
        done,
    })
}

/// Pending connections each worker's listener holds.
const BACKLOG: i32 = 1024;

/// One listening socket per worker on the same address (`SO_REUSEPORT`): the kernel
/// spreads new connections evenly over the workers, where one shared socket would let
/// whichever worker wakes first take them all.
///
/// Unless `share` is set, a port some other process already serves is refused: the
/// kernel would otherwise spread connections over both processes (`SO_REUSEPORT`),
/// and a second patgate started by mistake would take half the requests.
fn bind(
    address: SocketAddr,
    workers: usize,
    share: bool,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let fail = |e: std::io::Error| {
        anyhow::anyhow!("listen {address}: {e}; is another process on that port?")
    };
    let new_socket = || -> anyhow::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(fail)?;
        if address.is_ipv6() && address.ip().is_unspecified() {
            // `[::]` serves IPv4 too, whatever the system's default.
            socket.set_only_v6(false).map_err(fail)?;
        }
        socket.set_reuse_address(true).map_err(fail)?;
        Ok(socket)
    };
    if !share && address.port() != 0 {
        // A socket without SO_REUSEPORT cannot join a port others listen on.
        let probe = new_socket()?;
        if let Err(e) = probe.bind(&address.into()) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                anyhow::bail!(
                    "listen {address}: another process already serves this port (perhaps another patgate); stop it first, or set share_port: true to overlap on purpose during a zero-downtime restart"
                );
            }
            return Err(fail(e));
        }
    }
    let mut listeners: Vec<std::net::TcpListener> = Vec::with_capacity(workers);
    for _ in 0..workers.max(1) {
        let socket = new_socket()?;
        socket.set_reuse_port(true).map_err(fail)?;
        socket.set_nonblocking(true).map_err(fail)?;
        // With port 0, the first socket picks the port and the others join it.
        let bound = match listeners.first() {
            Some(first) => first.local_addr().map_err(fail)?,
            None => address,
        };
        socket.bind(&bound.into()).map_err(fail)?;
        socket.listen(BACKLOG).map_err(fail)?;
        listeners.push(socket.into());
    }
    Ok(listeners)
}

/// One worker's accept loop: its own event loop (a current-thread runtime) and its own
/// upstream connection pool, so a request never hops between threads.
async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    gateway: Arc<Gateway>,
    proxy: Arc<Proxy>,
    forwarder: Option<Arc<Forwarder>>,
    mut stop: watch::Receiver<bool>,
    grace: std::time::Duration,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(headers::MAX_HEADERS)
        .keep_alive(true);
    // Every connection task holds a sender; when all are dropped, all are done.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let proxy = proxy.clone();
        let tls = tls.clone();
        let http = http.clone();
        let stop = stop.clone();
        let alive = alive.clone();
        let forwarder = forwarder.clone();
        tokio::spawn(async move {
            let client = Client {
                ip: remote.ip(),
                tls: tls.is_some(),
            };
            let handlers = Handlers {
                gateway,
                proxy,
                forwarder,
                http,
                remote,
            };
            match tls {
                None => handlers.serve(stream, client, stop).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEAD_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => handlers.serve(stream, client, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
            drop(alive);
        });
    }
    drop(listener);
    drop(alive);
    tracing::info!("stopped accepting; finishing in-flight requests");
    if tokio::time::timeout(grace, all_done.recv()).await.is_err() {
        tracing::warn!(
            ?grace,
            "in-flight requests did not finish within shutdown_grace; closing them"
        );
    }
}

/// What serves a client connection: the fast path first where Deploy is plain http,
/// the general path for everything it hands over.
struct Handlers {
    gateway: Arc<Gateway>,
    proxy: Arc<Proxy>,
    forwarder: Option<Arc<Forwarder>>,
    http: http1::Builder,
    remote: SocketAddr,
}

impl Handlers {
    async fn serve<S>(self, io: S, client: Client, mut stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Handlers {
            gateway,
            proxy,
            forwarder,
            http,
            remote,
        } = self;
        let general = gateway.clone();
        let service = service_fn(move |req| {
            general
                .clone()
                .handle(proxy.clone(), req, remote, client.tls)
        });
        match forwarder {
            Some(forwarder) => match forwarder.serve(io, client, &gateway, &mut stop).await {
                Outcome::Done => {}
                Outcome::HandOff(io) => {
                    serve_connection(&http, TokioIo::new(io), service, stop).await
                }
            },
            None => {
                if let Some(io) = crate::edge::malformed::first_head(io, &gateway).await {
                    serve_connection(&http, TokioIo::new(io), service, stop).await
                }
            }
        }
    }
}

/// Serves one connection; on stop, finishes the request in flight and closes.
async fn serve_connection<I, S>(
    http: &http1::Builder,
    io: I,
    service: S,
    mut stop: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = crate::core::response::Body>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        // The connection first: a request the fast path handed over is already in its
        // buffer, and is answered before a stop is seen.
        biased;
        result = conn.as_mut() => result,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        if e.is_parse() || e.is_parse_too_large() {
            // Answered by the HTTP library itself, with an empty body.
            tracing::info!(error = %e, "refused a malformed request head");
        } else {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

pub fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    use std::io::BufReader;
    let open = |path: &std::path::Path, key: &str| {
        std::fs::File::open(path)
            .map(BufReader::new)
            .map_err(|e| anyhow::anyhow!("{key} {}: {e}", path.display()))
    };
    let certs = rustls_pemfile::certs(&mut open(&files.cert_file, "tls.cert_file")?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("tls.cert_file {}: {e}", files.cert_file.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "tls.cert_file {}: no PEM certificate found",
            files.cert_file.display()
        );
    }
    let key = rustls_pemfile::private_key(&mut open(&files.key_file, "tls.key_file")?)
        .map_err(|e| anyhow::anyhow!("tls.key_file {}: {e}", files.key_file.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "tls.key_file {}: no PEM private key found",
                files.key_file.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("tls.cert_file / tls.key_file: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
