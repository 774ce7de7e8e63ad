//! The hot path: token-authenticated HTTP/1.1 requests forwarded to a plain-http Deploy
//! without the general HTTP stack.
//!
//! A client connection starts here. Each request head is parsed in place; a request the
//! fast path takes (HTTP/1.1, a token credential, an origin-form target outside
//! `/patgate/`, no upgrade, no `Expect`, no chunked body) is checked, its head rewritten
//! byte for byte into the upstream request and sent on one of this worker's raw
//! keep-alive connections to Deploy; the answer's head is rewritten the same way and
//! the bodies are copied through with their own framing (length, chunked or
//! close-delimited). Any other request hands the connection, with the bytes read so
//! far, to the general hyper-based path ([`crate::edge::gateway`]) for the rest of its life.
//!
//! The rewriting rules are the general path's, from [`crate::edge::headers`]: hop-by-hop
//! headers, client copies of identity and forwarding headers and their `_` look-alikes
//! are dropped, the token, `Authorization` and `Cookie` never reach Deploy,
//! `Set-Cookie` and URL session ids never reach the client, `X-Forwarded-*` and
//! `x-request-id` are set, and Deploy's silence becomes 502/504. A request one of those
//! rules refuses (a second `Host`, a session id in the URL, …) goes to the general
//! path, which says so.

mod body;
mod conn;
mod exchange;
mod pool;
mod request;
mod response;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use self::conn::{make_room, refuse_head, Conn, Deadline, Scratch};
use self::request::{attempt, Request};
use self::response::append_header;
use crate::config;
use crate::edge::gateway::{self, Gateway};
use crate::edge::limits::{HEAD_TIMEOUT, MAX_HEADERS, MAX_HEAD_BYTES};
use crate::edge::live::Live;
use crate::edge::rewind::Rewind;
use crate::edge::{access, expiry, malformed, proxy};
use crate::metrics::{Metrics, Route};

/// Largest request body the fast path takes (read whole before it is sent on); larger
/// uploads stream through the general path.
const MAX_BODY: u64 = 64 * 1024;

/// How long a closing connection may take to send its last bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One worker's raw connections to a plain-http Deploy.
pub struct Forwarder {
    pool: Mutex<Pool>,
    metrics: Arc<Metrics>,
}

/// The idle connections to Deploy, for one generation of the settings: a reload that
/// moves Deploy starts a new pool, and connections to the old address are not reused.
struct Pool {
    generation: u64,
    /// `None` while Deploy speaks https (the general path's).
    target: Option<Arc<Target>>,
    idle: Vec<(TcpStream, Instant)>,
}

/// Where Deploy is, and how long to wait for it.
pub(super) struct Target {
    pub(super) generation: u64,
    max_idle: usize,
    address: String,
    connect_timeout: Duration,
    pub(super) read_timeout: Duration,
    /// Deploy's address for the 502 answer, as `upstream.url` names it.
    shown: Arc<str>,
}

impl Target {
    fn new(generation: u64, settings: &config::Upstream) -> Option<Arc<Target>> {
        let (address, https) = crate::edge::upstream::address(settings);
        (!https).then(|| {
            Arc::new(Target {
                generation,
                max_idle: settings.max_idle_per_host,
                address,
                connect_timeout: settings.connect_timeout,
                read_timeout: settings.read_timeout,
                shown: settings.address().into(),
            })
        })
    }
}

/// How a connection ended on the fast path.
pub enum Outcome<S> {
    /// Closed, or to be closed.
    Done,
    /// A request the fast path does not take: serve the connection on the general path,
    /// starting with these bytes already read.
    HandOff(Rewind<S>),
}

impl Forwarder {
    /// One worker's fast path, for the settings in `live` and those of later reloads.
    pub fn new(live: &Live, metrics: Arc<Metrics>) -> Forwarder {
        Forwarder {
            pool: Mutex::new(Pool {
                generation: live.generation,
                target: Target::new(live.generation, &live.upstream),
                idle: Vec::new(),
            }),
            metrics,
        }
    }

    /// Where Deploy is under `live`; `None` while it speaks https (the connection is
    /// the general path's then).
    pub(super) fn target(&self, live: &Live) -> Option<Arc<Target>> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.generation != live.generation {
            // A reload: connections to the old address are closed as they come back.
            let dropped = pool.idle.len() as i64;
            pool.idle.clear();
            self.metrics
                .local()
                .upstream_pooled
                .fetch_sub(dropped, Ordering::Relaxed);
            pool.generation = live.generation;
            pool.target = Target::new(live.generation, &live.upstream);
        }
        pool.target.clone()
    }

    /// Serves a client connection until it closes, fails, or needs the general path.
    pub async fn serve<S>(
        &self,
        io: S,
        client: Client,
        gateway: &Gateway,
        stop: &mut watch::Receiver<bool>,
    ) -> Outcome<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let live = gateway.live.current();
        let Some(target) = self.target(&live) else {
            return Outcome::HandOff(Rewind::new(BytesMut::new(), io));
        };
        let mut conn = Conn {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            body_pending: 0,
            stop: stop.clone(),
            scratch: Scratch {
                client_ip: client.ip.to_string(),
                ..Scratch::default()
            },
            head_deadline: Deadline::new(HEAD_TIMEOUT),
            answer_deadline: Deadline::new(target.read_timeout),
            live,
            target,
        };
        // One registration for the life of the connection, not one per request.
        let mut watcher = stop.clone();
        let mut stopping = std::pin::pin!(watcher.changed());
        loop {
            let next = self
                .one_request(&mut conn, client, gateway, stopping.as_mut())
                .await;
            match next {
                Next::KeepAlive if !*stop.borrow() => {}
                Next::KeepAlive | Next::Close => {
                    // Sends what TLS still holds, and a close_notify, to a client that
                    // still reads.
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, conn.io.shutdown()).await;
                    return Outcome::Done;
                }
                Next::HandOff => return Outcome::HandOff(Rewind::new(conn.buf, conn.io)),
            }
        }
    }

    async fn one_request<S>(
        &self,
        conn: &mut Conn<S>,
        client: Client,
        gateway: &Gateway,
        mut stopping: Pin<&mut impl Future<Output = Result<(), watch::error::RecvError>>>,
    ) -> Next
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // The whole head within HEAD_TIMEOUT of starting to wait for it, idle
        // keep-alive time included.
        conn.head_deadline.set(HEAD_TIMEOUT);
        // The head, once parsed, while its body (at most MAX_BODY) is read whole.
        let mut parsed_head: Option<Request> = None;
        let request = loop {
            if let Some(request) = parsed_head.take() {
                if conn.buf.len() - request.head_len >= request.content_length as usize {
                    break request;
                }
                parsed_head = Some(request);
            } else if !conn.buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Request::new(&mut headers);
                match parsed.parse(&conn.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        // A request that arrives after a reload is served with the new
                        // settings; one that moved Deploy to https hands the connection
                        // to the general path.
                        gateway.live.refresh(&mut conn.live);
                        if conn.target.generation != conn.live.generation {
                            match self.target(&conn.live) {
                                Some(target) => conn.target = target,
                                None => return Next::HandOff,
                            }
                        }
                        match self.read_request(&parsed, len, &conn.live, client, &mut conn.scratch)
                        {
                            Some(request) => {
                                parsed_head = Some(request);
                                continue;
                            }
                            None => return Next::HandOff,
                        }
                    }
                    Ok(httparse::Status::Partial) if conn.buf.len() < MAX_HEAD_BYTES => {}
                    Ok(httparse::Status::Partial) => {
                        return refuse_head(conn, gateway, malformed::Problem::TooLarge).await
                    }
                    Err(e) => {
                        return refuse_head(conn, gateway, malformed::Problem::Invalid(e)).await
                    }
                }
            }
            let idle = conn.buf.is_empty();
            make_room(&mut conn.buf);
            let read = tokio::select! {
                biased;
                read = conn.io.read_buf(&mut conn.buf) => read,
                _ = conn.head_deadline.expired() => return Next::Close,
                // Stopping closes idle connections; a request under way is finished.
                _ = stopping.as_mut(), if idle => return Next::Close,
            };
            match read {
                Ok(0) | Err(_) => return Next::Close,
                Ok(_) => {}
            }
        };
        conn.buf.advance(request.head_len);
        conn.body_pending = request.content_length as usize;
        let id = gateway.start_request();
        let started = Instant::now();
        conn.scratch.status = 0;
        if request.access.is_some() {
            conn.scratch.note = access::Note {
                kind: access::Kind::Token,
                route: Route::Token,
                client: Some(request.client),
                ..access::Note::default()
            };
        }
        let next = self.answer(conn, &request, client, gateway, &id).await;
        gateway
            .metrics
            .request_done(Route::Token, conn.scratch.status, started.elapsed());
        if let Some((method, path)) = &request.access {
            access::record(
                method,
                path,
                conn.scratch.status,
                &conn.scratch.note,
                started,
                &id,
            );
        }
        next
    }

    /// Checks the token and forwards the request; answers the client in every case.
    async fn answer<S>(
        &self,
        conn: &mut Conn<S>,
        request: &Request,
        client: Client,
        gateway: &Gateway,
        id: &str,
    ) -> Next
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if request.stripped_identity {
            tracing::info!(request_id = id, "removed client-supplied identity headers");
        }
        conn.scratch.token_lines.clear();
        let principal = match gateway
            .tokens
            .check(
                &request.token,
                request.claimed_user.as_deref(),
                request.client,
                attempt(&conn.scratch.head),
            )
            .await
        {
            Ok(principal) => principal,
            Err(refusal) => {
                if request.access.is_some() {
                    conn.scratch.note.refusal = Some(refusal.code());
                }
                let response = gateway.refuse(refusal, id).await;
                return conn.write_own(response, request, id).await;
            }
        };
        let live = &conn.live;
        let scratch = &mut conn.scratch;
        if principal.expires_at().is_some() {
            expiry::write_lines(
                &mut scratch.token_lines,
                principal.expires_at(),
                crate::core::time::now(),
                gateway.tokens.expiry_warning_secs(),
            );
        }
        scratch.extra.clear();
        let written = match live
            .identity
            .write_lines(&mut scratch.head, &principal.username)
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                let applied = live
                    .identity
                    .apply(&mut scratch.extra, &principal.username, &principal.roles)
                    .await;
                for (name, value) in scratch.extra.iter() {
                    append_header(
                        &mut scratch.head,
                        name.as_str().as_bytes(),
                        value.as_bytes(),
                    );
                }
                applied
            }
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            let response = gateway::identity_failed(id, &e);
            return conn.write_own(response, request, id).await;
        }
        tracing::debug!(request_id = id, user = %principal.username, "authenticated");
        if request.access.is_some() {
            let note = &mut conn.scratch.note;
            note.user = Some(principal.username.to_string());
            note.token_id = Some(principal.token_id.to_string());
            note.scope = Some(principal.scope.as_str());
        }
        let counters = gateway.metrics.local();
        counters.authenticated.fetch_add(1, Ordering::Relaxed);
        counters.fast_path.fetch_add(1, Ordering::Relaxed);
        self.finish_head(&mut conn.scratch, request, client, id);
        match self.exchange(conn, request, id).await {
            Ok(next) => next,
            Err(failure) => {
                let response = match failure {
                    Failure::Unreachable(e) => {
                        self.metrics
                            .local()
                            .upstream_unreachable
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(request_id = id, error = %e, "upstream request failed");
                        proxy::unreachable(&conn.target.shown)
                    }
                    Failure::TimedOut => {
                        self.metrics
                            .local()
                            .upstream_timeouts
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(request_id = id, timeout = ?conn.target.read_timeout, "upstream did not answer in time");
                        proxy::timed_out()
                    }
                    // Nothing more can be said to this client.
                    Failure::Client => return Next::Close,
                };
                conn.write_own(response, request, id).await
            }
        }
    }

    /// Ends the upstream head: forwarding headers, request id (`X-Forwarded-Host` went
    /// with `Host`).
    fn finish_head(&self, scratch: &mut Scratch, request: &Request, client: Client, id: &str) {
        let head = &mut scratch.head;
        head.extend_from_slice(b"x-forwarded-for: ");
        if !request.forwarded_chain.is_empty() {
            head.extend_from_slice(request.forwarded_chain.as_bytes());
            head.extend_from_slice(b", ");
        }
        head.extend_from_slice(scratch.client_ip.as_bytes());
        head.extend_from_slice(if client.tls {
            b"\r\nx-forwarded-proto: https\r\n"
        } else {
            b"\r\nx-forwarded-proto: http\r\n"
        });
        append_header(head, b"x-request-id", id.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
}

/// The client connection's address and transport.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub ip: IpAddr,
    pub tls: bool,
}

enum Next {
    KeepAlive,
    Close,
    HandOff,
}

enum Failure {
    /// Deploy could not be reached, broke the exchange or answered nonsense (502).
    Unreachable(String),
    /// Deploy did not answer within the read timeout (504).
    TimedOut,
    /// The client went away or broke its request: nothing more to say to it.
    Client,
}
