//! Connections to Deploy: each worker keeps its own small pool of HTTP/1.1 connections
//! (plain or rustls), so a request never waits on another thread's connection and the
//! pool needs no cross-thread coordination.
//!
//! A connection goes back into the pool as soon as its response head has arrived; one
//! still streaming a body is simply skipped at checkout until it is ready again, and a
//! closed one is dropped. A request that a connection closed before it was written (a
//! keep-alive connection Deploy had just timed out) is retried on another one.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config;
use crate::core::tls::tls_client_config;
use crate::edge::proxy::SentBody;
use crate::metrics::Metrics;

/// Why Deploy could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("connecting to {0}: timed out")]
    ConnectTimeout(String),
    #[error("TLS handshake with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP/1.1 handshake with {0}: {1}")]
    Handshake(String, hyper::Error),
    #[error("exchange with Deploy: {0}")]
    Request(#[from] hyper::Error),
}

/// One worker's pool.
pub struct Pool {
    /// Connections with when they were last handed back; busy ones (still streaming a
    /// response body) included.
    idle: Mutex<VecDeque<(SendRequest<SentBody>, Instant)>>,
    max_idle: usize,
    /// `host:port` for connecting and for messages.
    address: String,
    connect_timeout: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// For the pool gauge; `None` where nothing is served (preflight).
    metrics: Option<Arc<Metrics>>,
}

/// Attempts per request when connections turn out closed before the request is written.
const ATTEMPTS: usize = 3;
/// A connection idle for longer is not reused: a firewall may have dropped it silently.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Pool {
    pub fn new(settings: &config::Upstream, metrics: Option<Arc<Metrics>>) -> anyhow::Result<Pool> {
        let (address, https) = address(settings);
        let host = settings
            .url
            .host()
            .expect("validated upstream.url has a host");
        let tls = if https {
            let name =
                ServerName::try_from(host.trim_matches(['[', ']']).to_string()).map_err(|_| {
                    anyhow::anyhow!("upstream.url: {host:?} is not a valid TLS server name")
                })?;
            let config = tls_client_config(settings.ca_file.as_deref())?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Pool {
            idle: Mutex::new(VecDeque::new()),
            max_idle: settings.max_idle_per_host,
            address,
            connect_timeout: settings.connect_timeout,
            tls,
            metrics,
        })
    }

    /// Sends a request on a pooled (or new) connection; returns the response head with
    /// its body still streaming.
    pub async fn send(
        &self,
        mut req: Request<SentBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut attempt = 1;
        loop {
            let mut sender = match self.checkout() {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    self.checkin(sender);
                    return Ok(response);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if attempt < ATTEMPTS => {
                        req = unsent;
                        attempt += 1;
                    }
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    /// A connection ready for a request, if one is idle. Busy ones (still streaming a
    /// body) stay; closed and long-idle ones go.
    fn checkout(&self) -> Option<SendRequest<SentBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let before = idle.len();
        let mut found = None;
        for _ in 0..idle.len() {
            let Some((sender, since)) = idle.pop_front() else {
                break;
            };
            if sender.is_ready() {
                if since.elapsed() < IDLE_TIMEOUT {
                    found = Some(sender);
                    break;
                }
                continue;
            }
            if !sender.is_closed() {
                idle.push_back((sender, since));
            }
        }
        self.count(before, idle.len());
        found
    }

    /// Moves the pool gauge by the change from `before` to `after` connections held.
    fn count(&self, before: usize, after: usize) {
        if let Some(metrics) = &self.metrics {
            metrics
                .local()
                .upstream_pooled
                .fetch_add(after as i64 - before as i64, Ordering::Relaxed);
        }
    }

    /// Hands a connection back right after its response head. At most `max_idle`
    /// connections are kept beyond those still busy, so a burst of slow downloads does
    /// not turn every further request into a new connection.
    fn checkin(&self, sender: SendRequest<SentBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let before = idle.len();
        idle.push_back((sender, Instant::now()));
        if idle.len() > self.max_idle {
            idle.retain(|(s, _)| !s.is_closed());
            let mut ready = idle.iter().filter(|(s, _)| s.is_ready()).count();
            while ready > self.max_idle {
                match idle.iter().position(|(s, _)| s.is_ready()) {
                    Some(i) => {
                        idle.remove(i);
                        ready -= 1;
                    }
                    None => break,
                }
            }
        }
        self.count(before, idle.len());
    }

    async fn connect(&self) -> Result<SendRequest<SentBody>, UpstreamError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(self.address.clone()))?
            .map_err(|e| UpstreamError::Connect(self.address.clone(), e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.handshake(TokioIo::new(tcp)).await,
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| UpstreamError::ConnectTimeout(self.address.clone()))?
                .map_err(|e| UpstreamError::Tls(self.address.clone(), e))?;
                self.handshake(TokioIo::new(tls)).await
            }
        }
    }

    async fn handshake<I>(&self, io: I) -> Result<SendRequest<SentBody>, UpstreamError>
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::Builder::new()
            .max_headers(crate::edge::limits::MAX_HEADERS)
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Handshake(self.address.clone(), e))?;
        // Driven on this worker's event loop; upgrades (WebSocket) hand the socket on.
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Deploy's `host:port` for connecting, and whether it speaks https.
pub fn address(settings: &config::Upstream) -> (String, bool) {
    let host = settings
        .url
        .host()
        .expect("validated upstream.url has a host");
    let https = settings.url.scheme_str() == Some("https");
    let port = settings
        .url
        .port_u16()
        .unwrap_or(if https { 443 } else { 80 });
    // An IPv6 literal keeps its brackets in the URI's host.
    (format!("{host}:{port}"), https)
}
