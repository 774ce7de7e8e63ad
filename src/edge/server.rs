//! The listener: binding one socket per worker, the workers' accept loops, TLS, and
//! the graceful stop of each worker. What the workers serve is built by the
//! composition root (`crate::app`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;
use crate::edge::fastpath::{Client, Forwarder, Outcome};
use crate::edge::gateway::Gateway;
use crate::edge::limits::{HEAD_TIMEOUT, MAX_HEADERS, MAX_HEAD_BYTES};
use crate::edge::live::Live;
use crate::edge::proxy::Proxy;
use crate::metrics::Metrics;

/// Starts one worker thread per listening socket, each with its own event loop and
/// upstream connections, serving until `stop` changes; the threads end when their
/// in-flight requests have finished or `grace` ran out.
pub fn spawn_workers(
    listeners: Vec<std::net::TcpListener>,
    gateway: Arc<Gateway>,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    grace: std::time::Duration,
) -> anyhow::Result<Vec<std::thread::JoinHandle<anyhow::Result<()>>>> {
    let mut threads = Vec::with_capacity(listeners.len());
    for (worker, socket) in listeners.into_iter().enumerate() {
        let gateway = gateway.clone();
        let stop = stop.clone();
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
                    let live = gateway.live.current();
                    let pools = Arc::new(Pools::new(&live, &metrics)?);
                    serve(listener, gateway, live, pools, stop, grace).await;
                    Ok(())
                })
            })?;
        threads.push(thread);
    }
    Ok(threads)
}

/// A worker's connections to Deploy: the fast path's (plain-http Deploy), which
/// follows reloads itself, and the general path's, built again for each generation of
/// the settings.
struct Pools {
    forwarder: Arc<Forwarder>,
    proxy: Mutex<(u64, Arc<Proxy>)>,
    metrics: Arc<Metrics>,
}

impl Pools {
    fn new(live: &Live, metrics: &Arc<Metrics>) -> anyhow::Result<Pools> {
        Ok(Pools {
            forwarder: Arc::new(Forwarder::new(live, metrics.clone())),
            proxy: Mutex::new((
                live.generation,
                Arc::new(Proxy::new(&live.upstream, metrics.clone())?),
            )),
            metrics: metrics.clone(),
        })
    }

    /// The general path's connections under the current settings.
    fn proxy(&self, gateway: &Gateway) -> Arc<Proxy> {
        let mut current = self.proxy.lock().unwrap_or_else(|e| e.into_inner());
        if current.0 != gateway.live.generation() {
            let live = gateway.live.current();
            match Proxy::new(&live.upstream, self.metrics.clone()) {
                Ok(proxy) => *current = (live.generation, Arc::new(proxy)),
                Err(e) => {
                    tracing::warn!(error = %e, "the reloaded upstream settings could not be used; keeping the previous ones");
                    current.0 = live.generation;
                }
            }
        }
        current.1.clone()
    }
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
pub fn bind(
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
                // Whoever holds the port shares it (SO_REUSEPORT, as a gateway does) only
                // if a second socket with the option can join; only then can share_port
                // help, so only then is it suggested.
                let sharer = new_socket()?;
                let shares =
                    sharer.set_reuse_port(true).is_ok() && sharer.bind(&address.into()).is_ok();
                drop(sharer);
                if shares {
                    anyhow::bail!(
                        "listen {address}: another gateway already serves this port; stop it first, or set share_port: true to overlap on purpose during a zero-downtime restart"
                    );
                }
                anyhow::bail!(
                    "listen {address}: another process holds this port (not a patgate: it does not share it); stop it, or set listen to another address"
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
    gateway: Arc<Gateway>,
    mut live: Arc<Live>,
    pools: Arc<Pools>,
    mut stop: watch::Receiver<bool>,
    grace: std::time::Duration,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
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
        // After a reload, new connections get the new certificate; open ones keep
        // theirs. Requests on either go to Deploy where the settings say now.
        gateway.live.refresh(&mut live);
        let gateway = gateway.clone();
        let pools = pools.clone();
        let tls = live.tls.clone();
        let fast = !crate::edge::upstream::address(&live.upstream).1;
        let http = http.clone();
        let stop = stop.clone();
        let alive = alive.clone();
        // Counted and uncounted on this worker's thread, into its own set.
        let metrics = gateway.metrics.clone();
        metrics
            .local()
            .client_connections
            .fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let client = Client {
                ip: remote.ip(),
                tls: tls.is_some(),
            };
            let handlers = Handlers {
                gateway,
                pools,
                fast,
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
            metrics
                .local()
                .client_connections
                .fetch_sub(1, Ordering::Relaxed);
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
    pools: Arc<Pools>,
    /// Whether Deploy is plain http, so that the fast path serves first.
    fast: bool,
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
            pools,
            fast,
            http,
            remote,
        } = self;
        let general = gateway.clone();
        let forwarder = pools.forwarder.clone();
        let service = service_fn(move |req| {
            let proxy = pools.proxy(&general);
            general.clone().handle(proxy, req, remote, client.tls)
        });
        match fast {
            true => match forwarder.serve(io, client, &gateway, &mut stop).await {
                Outcome::Done => {}
                Outcome::HandOff(io) => {
                    serve_connection(&http, TokioIo::new(io), service, stop).await
                }
            },
            false => {
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
