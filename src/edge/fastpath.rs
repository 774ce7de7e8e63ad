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

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config;
use crate::core::response::Body;
use crate::edge::gateway::{self, Gateway};
use crate::edge::headers::{self, is_hop_by_hop, Underscored, MAX_HEADERS};
use crate::edge::proxy;
use crate::edge::{access, endpoints, malformed};
use crate::metrics::Metrics;
use crate::tokens::credentials::{self, Credential};
use crate::tokens::rules::Attempt;

/// Largest request or response head, as on the general path.
const MAX_HEAD: usize = 64 * 1024;
/// Free space a read into a head buffer gets at least.
const READ_ROOM: usize = 4 * 1024;
/// Largest request body the fast path takes (read whole before it is sent on); larger
/// uploads stream through the general path.
const MAX_BODY: u64 = 64 * 1024;
/// How long a closing connection may take to send its last bytes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Buffers larger than this are given back after a request.
const KEPT_BUFFER: usize = 16 * 1024;
/// Chunk of a body copied at a time.
const COPY_CHUNK: usize = 64 * 1024;
/// Largest trailer section of a chunked response.
const MAX_TRAILERS: usize = 16 * 1024;
/// Most chunk-extension bytes in one chunked response, as the general path allows.
const MAX_EXTENSIONS: usize = 16 * 1024;
/// Attempts per request when a reused connection turns out closed.
const ATTEMPTS: usize = 3;
/// A connection idle for longer is not reused: a firewall may have dropped it silently.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One worker's raw connections to a plain-http Deploy.
pub struct Forwarder {
    idle: Mutex<Vec<(TcpStream, Instant)>>,
    max_idle: usize,
    address: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    metrics: Arc<Metrics>,
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
    /// The fast path for this upstream, or `None` when Deploy speaks https (those
    /// connections are the general path's).
    pub fn new(settings: &config::Upstream, metrics: Arc<Metrics>) -> Option<Forwarder> {
        let (address, https) = crate::edge::upstream::address(settings);
        if https {
            return None;
        }
        Some(Forwarder {
            idle: Mutex::new(Vec::new()),
            max_idle: settings.max_idle_per_host,
            address,
            connect_timeout: settings.connect_timeout,
            read_timeout: settings.read_timeout,
            metrics,
        })
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
        let mut conn = Conn {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            body_pending: 0,
            stop: stop.clone(),
            scratch: Scratch {
                client_ip: client.ip.to_string(),
                ..Scratch::default()
            },
            head_deadline: Deadline::new(crate::edge::server::HEAD_TIMEOUT),
            answer_deadline: Deadline::new(self.read_timeout),
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
                Next::HandOff => {
                    return Outcome::HandOff(Rewind {
                        prefix: conn.buf,
                        inner: conn.io,
                    })
                }
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
        conn.head_deadline.set(crate::edge::server::HEAD_TIMEOUT);
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
                        match self.read_request(&parsed, len, gateway, client, &mut conn.scratch) {
                            Some(request) => {
                                parsed_head = Some(request);
                                continue;
                            }
                            None => return Next::HandOff,
                        }
                    }
                    Ok(httparse::Status::Partial) if conn.buf.len() < MAX_HEAD => {}
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
        let Some((method, path)) = &request.access else {
            return self.answer(conn, &request, client, gateway, &id).await;
        };
        let started = std::time::Instant::now();
        conn.scratch.user.clear();
        conn.scratch.status = 0;
        let next = self.answer(conn, &request, client, gateway, &id).await;
        let note = access::Note {
            user: (!conn.scratch.user.is_empty()).then(|| conn.scratch.user.clone()),
            kind: access::Kind::Token,
        };
        access::record(method, path, conn.scratch.status, &note, started, &id);
        next
    }

    /// Reads a parsed request head: what the fast path needs to answer it, with the
    /// upstream head begun in `scratch.head`; `None` if the general path must take it.
    fn read_request(
        &self,
        parsed: &httparse::Request<'_, '_>,
        head_len: usize,
        gateway: &Gateway,
        client: Client,
        scratch: &mut Scratch,
    ) -> Option<Request> {
        if parsed.version != Some(1) {
            return None;
        }
        let method = parsed.method?;
        let target = parsed.path?;
        let path = target.split('?').next().unwrap_or(target);
        if !target.starts_with('/') || endpoints::is_reserved(path) {
            return None;
        }
        if matches!(method, "CONNECT" | "TRACE") || method.eq_ignore_ascii_case("TRACK") {
            return None;
        }
        let credential = credentials::extract_from(
            parsed
                .headers
                .iter()
                .filter(|h| headers::is_token_header(h.name.as_bytes()))
                .map(|h| h.value),
            parsed
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("authorization"))
                .map(|h| h.value),
        );
        let Credential::Token {
            token,
            claimed_user,
        } = credential
        else {
            return None;
        };
        // Refused on the general path: a token must not become a URL-tracked session.
        if headers::has_session_id(target.as_bytes()) {
            return None;
        }

        let head = &mut scratch.head;
        head.clear();
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let mut request = Request {
            head_len,
            token,
            claimed_user,
            content_length: 0,
            close: false,
            head: method == "HEAD",
            idempotent: matches!(method, "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE"),
            client: client.ip,
            forwarded_chain: String::new(),
            stripped_identity: false,
            access: gateway
                .access_log
                .then(|| (method.to_string(), path.to_string())),
        };
        let mut seen_length = false;
        let mut seen_host = false;
        let mut lower = [0u8; 64];
        for header in parsed.headers.iter() {
            // A longer name is rare enough to leave to the general path.
            let name = lowercase(header.name, &mut lower)?;
            if name.contains(&b'_') {
                for b in name.iter_mut().filter(|b| **b == b'_') {
                    *b = b'-';
                }
                match gateway.rules.underscored(name, &gateway.identity) {
                    Underscored::Refuse => return None,
                    Underscored::Identity => request.stripped_identity = true,
                    Underscored::Drop => {}
                    Underscored::Keep => append_header(head, header.name.as_bytes(), header.value),
                }
                continue;
            }
            match &*name {
                b"content-length" => {
                    // One, and small: the general path judges repeated lengths and
                    // streams large uploads.
                    if seen_length {
                        return None;
                    }
                    seen_length = true;
                    request.content_length = parse_length(header.value)?;
                    if request.content_length > MAX_BODY {
                        return None;
                    }
                }
                b"connection" => {
                    // Only keep-alive and close; a header named here is the general
                    // path's to remove (or, for Host, to refuse).
                    for option in header.value.split(|&b| b == b',') {
                        let option = option.trim_ascii();
                        if option.eq_ignore_ascii_case(b"close") {
                            request.close = true;
                        } else if !option.is_empty() && !option.eq_ignore_ascii_case(b"keep-alive")
                        {
                            return None;
                        }
                    }
                    continue;
                }
                b"transfer-encoding" | b"upgrade" | b"expect" => return None,
                b"host" => {
                    // Exactly one, and a plausible one: the general path refuses others.
                    if seen_host || !headers::valid_host(header.value) {
                        return None;
                    }
                    seen_host = true;
                    append_header(head, b"x-forwarded-host", header.value);
                }
                // Set by the gateway alone (X-Forwarded-For from the trusted proxies
                // below).
                name if headers::GATEWAY_SET.iter().any(|g| g.as_bytes() == name) => continue,
                // The token is the identity: neither it nor a session rides along.
                b"authorization" | b"x-deploy-personal-token" | b"cookie" => continue,
                name if is_hop_by_hop(name) => continue,
                name if headers::CLIENT_FORWARDING
                    .iter()
                    .any(|f| f.as_bytes() == name) =>
                {
                    continue
                }
                name if gateway.identity.is_identity_header(name) => {
                    request.stripped_identity = true;
                    continue;
                }
                _ => {}
            }
            append_header(head, header.name.as_bytes(), header.value);
        }
        // HTTP/1.1 without Host: the general path's 400.
        if !seen_host {
            return None;
        }
        let resolved = gateway.rules.client(
            client.ip,
            parsed
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
                .map(|h| h.value),
        );
        request.client = resolved.ip;
        request.forwarded_chain = resolved.chain;
        Some(request)
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
                let response = gateway.refuse(refusal, id).await;
                return conn.write_own(response, request, id).await;
            }
        };
        let scratch = &mut conn.scratch;
        scratch.extra.clear();
        let written = match gateway
            .identity
            .write_lines(&mut scratch.head, &principal.username)
        {
            Ok(true) => Ok(()),
            Ok(false) => {
                let applied = gateway
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
            conn.scratch.user.clear();
            conn.scratch.user.push_str(&principal.username);
        }
        gateway
            .metrics
            .local()
            .authenticated
            .fetch_add(1, Ordering::Relaxed);
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
                        proxy::unreachable()
                    }
                    Failure::TimedOut => {
                        self.metrics
                            .local()
                            .upstream_timeouts
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(request_id = id, timeout = ?self.read_timeout, "upstream did not answer in time");
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

    /// Sends the request on a pooled (or new) connection and streams the answer back.
    async fn exchange<S>(
        &self,
        conn: &mut Conn<S>,
        request: &Request,
        id: &str,
    ) -> Result<Next, Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut attempt = 1;
        let (mut upstream, head) = loop {
            let (mut upstream, reused) = match self.checkout() {
                Some(stream) => (stream, true),
                None => (self.connect().await?, false),
            };
            // Only on a reused connection that broke before any answer (one Deploy had
            // just closed), and only requests that are harmless to repeat: Deploy may
            // have acted on the head of an upload before the write failed.
            let retry =
                reused && attempt < ATTEMPTS && (request.idempotent || request.content_length == 0);
            conn.answer_deadline.set(self.read_timeout);
            match self.send(conn, &mut upstream).await {
                Ok(()) => {}
                Err(Failure::Unreachable(_)) if retry => {
                    attempt += 1;
                    continue;
                }
                Err(failure) => return Err(failure),
            }
            match self
                .response_head(&mut upstream, &mut conn.scratch, &mut conn.answer_deadline)
                .await
            {
                Ok(head) => break (upstream, head),
                Err(Failure::Unreachable(_))
                    if retry && request.idempotent && conn.scratch.upstream.is_empty() =>
                {
                    attempt += 1;
                }
                Err(failure) => return Err(failure),
            }
        };
        // The request has been taken; the buffer holds what the client sent next.
        conn.buf.advance(std::mem::take(&mut conn.body_pending));
        if conn.buf.is_empty() && conn.buf.capacity() > KEPT_BUFFER {
            conn.buf = BytesMut::with_capacity(8 * 1024);
        }
        let framing = head.framing(request.head);
        let close = request.close || framing == Framing::UntilClose || *conn.stop.borrow();
        let scratch = &mut conn.scratch;
        scratch.upstream.advance(head.len);
        let mut out = std::mem::take(&mut scratch.head);
        write_response_head(&mut out, &head, close, id);
        // The start of the body is in the buffer already; small answers go in one write.
        let mut body = Tracker::new(framing);
        let taken = body
            .take(&scratch.upstream)
            .map_err(|e| Failure::Unreachable(e.to_string()))?;
        out.extend_from_slice(&scratch.upstream[..taken.forward]);
        out.extend_from_slice(body.ending());
        scratch.upstream.advance(taken.used);
        let written = conn.io.write_all(&out).await;
        conn.scratch.head = out;
        written.map_err(|_| Failure::Client)?;
        let clean = self.copy_body(&mut upstream, conn, &mut body).await?;
        // TLS may still hold the end of the answer.
        conn.io.flush().await.map_err(|_| Failure::Client)?;
        if clean && head.keep_alive && conn.scratch.upstream.is_empty() {
            self.checkin(upstream);
        }
        conn.scratch.release();
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// Writes the request, head and body, to Deploy in one write, within the read
    /// timeout (Deploy not reading is as bad as Deploy not answering).
    async fn send<S>(&self, conn: &mut Conn<S>, upstream: &mut TcpStream) -> Result<(), Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let head_len = conn.scratch.head.len();
        conn.scratch
            .head
            .extend_from_slice(&conn.buf[..conn.body_pending]);
        let sent = tokio::select! {
            biased;
            sent = upstream.write_all(&conn.scratch.head) => sent,
            _ = conn.answer_deadline.expired() => Err(std::io::ErrorKind::TimedOut.into()),
        };
        conn.scratch.head.truncate(head_len);
        match sent {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Err(Failure::TimedOut),
            Err(e) => Err(Failure::Unreachable(format!("sending the request: {e}"))),
        }
    }

    /// Reads Deploy's response head (after any interim 1xx answers) by `deadline`.
    async fn response_head(
        &self,
        upstream: &mut TcpStream,
        scratch: &mut Scratch,
        deadline: &mut Deadline,
    ) -> Result<ResponseHead, Failure> {
        let buf = &mut scratch.upstream;
        buf.clear();
        loop {
            if !buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut parsed = httparse::Response::new(&mut headers);
                match parsed.parse(buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let code = parsed.code.unwrap_or(0);
                        if code == 101 {
                            return Err(Failure::Unreachable(
                                "Deploy switched protocols without being asked".into(),
                            ));
                        }
                        if (100..200).contains(&code) {
                            // Interim answers are not passed on, as on the general path.
                            buf.advance(len);
                            continue;
                        }
                        scratch.status = code;
                        return ResponseHead::read(&parsed, len)
                            .map_err(|e| Failure::Unreachable(e.into()));
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                    Ok(httparse::Status::Partial) => {
                        return Err(Failure::Unreachable("response head too long".into()))
                    }
                    Err(e) => return Err(Failure::Unreachable(format!("bad response: {e}"))),
                }
            }
            make_room(buf);
            let read = tokio::select! {
                biased;
                read = upstream.read_buf(buf) => read,
                _ = deadline.expired() => return Err(Failure::TimedOut),
            };
            match read {
                Ok(0) => {
                    return Err(Failure::Unreachable(
                        "connection closed before the answer".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(Failure::Unreachable(format!("reading the answer: {e}"))),
            }
        }
    }

    /// Copies the rest of the response body; true if it ended where its framing said.
    async fn copy_body<S>(
        &self,
        upstream: &mut TcpStream,
        conn: &mut Conn<S>,
        body: &mut Tracker,
    ) -> Result<bool, Failure>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if body.done() {
            return Ok(true);
        }
        let chunk = conn.scratch.chunk();
        loop {
            chunk.clear();
            let n = match upstream.read_buf(chunk).await {
                Ok(0) if body.framing() == Framing::UntilClose => return Ok(false),
                // Deploy broke off mid-answer; the client sees a cut-off body.
                Ok(0) | Err(_) => return Err(Failure::Client),
                Ok(n) => n,
            };
            let taken = body.take(&chunk[..n]).map_err(|_| Failure::Client)?;
            conn.io
                .write_all(&chunk[..taken.forward])
                .await
                .map_err(|_| Failure::Client)?;
            if body.done() {
                conn.io
                    .write_all(body.ending())
                    .await
                    .map_err(|_| Failure::Client)?;
                // Bytes after the end of the answer: the connection is not reusable.
                return Ok(taken.used == n);
            }
        }
    }

    /// An idle connection that is still open, if any.
    fn checkout(&self) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((stream, since)) = idle.pop() {
            if since.elapsed() < IDLE_TIMEOUT && still_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    fn checkin(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push((stream, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<TcpStream, Failure> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                Failure::Unreachable(format!("connecting to {}: timed out", self.address))
            })?
            .map_err(|e| Failure::Unreachable(format!("connecting to {}: {e}", self.address)))?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// Room for a whole read: `read_buf` on a full buffer would read 64 bytes at a time.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_ROOM {
        // Reclaims the space of what was consumed when it can, else grows.
        buf.reserve(2 * READ_ROOM);
    }
}

/// Whether an idle connection is still usable: nothing has arrived on it (Deploy
/// closing it, or stray bytes). Costs a system call only when the event loop has seen
/// it become readable.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
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

struct Conn<S> {
    io: S,
    /// Bytes read from the client and not yet used.
    buf: BytesMut,
    /// Bytes at the start of `buf` that are the current request's body.
    body_pending: usize,
    /// True once the gateway is stopping.
    stop: watch::Receiver<bool>,
    scratch: Scratch,
    /// For the next request head.
    head_deadline: Deadline,
    /// For Deploy's answer.
    answer_deadline: Deadline,
}

/// A deadline that moves forward with every request but whose timer rarely fires:
/// moving it is a store, and the timer is re-armed only when it goes off early.
struct Deadline {
    at: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(after: Duration) -> Deadline {
        let at = tokio::time::Instant::now() + after;
        Deadline {
            at,
            timer: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    fn set(&mut self, after: Duration) {
        self.at = tokio::time::Instant::now() + after;
        if self.at < self.timer.deadline() {
            self.timer.as_mut().reset(self.at);
        }
    }

    /// Completes once the deadline has passed.
    async fn expired(&mut self) {
        loop {
            self.timer.as_mut().await;
            if tokio::time::Instant::now() >= self.at {
                return;
            }
            self.timer.as_mut().reset(self.at);
        }
    }
}

/// Buffers reused from request to request on one client connection.
#[derive(Default)]
struct Scratch {
    /// The client's address as `X-Forwarded-For` gives it.
    client_ip: String,
    /// The head being written (upstream request, then client response).
    head: Vec<u8>,
    /// Identity headers for the upstream request (jwt mode).
    extra: HeaderMap,
    /// Bytes read from Deploy.
    upstream: BytesMut,
    /// For answers that do not fit in one read.
    copy: BytesMut,
    /// The status of the answer last written to the client (for the access log).
    status: u16,
    /// The authenticated user, kept only when the access log is on.
    user: String,
}

impl Scratch {
    /// Gives back what one large request or answer made these buffers grow to.
    fn release(&mut self) {
        self.copy = BytesMut::new();
        self.upstream.clear();
        if self.upstream.capacity() > KEPT_BUFFER {
            self.upstream = BytesMut::new();
        }
        if self.head.capacity() > KEPT_BUFFER {
            self.head = Vec::new();
        }
    }

    /// The copy buffer, empty, with room for a whole chunk.
    fn chunk(&mut self) -> &mut BytesMut {
        self.copy.clear();
        self.copy.reserve(COPY_CHUNK);
        &mut self.copy
    }
}

/// What the fast path keeps of a request head.
struct Request {
    head_len: usize,
    token: Vec<u8>,
    claimed_user: Option<Vec<u8>>,
    content_length: u64,
    /// The client asked to close after this request.
    close: bool,
    /// A HEAD request: the answer has no body whatever its headers say.
    head: bool,
    idempotent: bool,
    /// The client: the peer, or behind a trusted proxy the address it forwarded.
    client: IpAddr,
    /// `X-Forwarded-For` entries kept ahead of the peer's (trusted proxies only).
    forwarded_chain: String,
    stripped_identity: bool,
    /// Method and path, kept only when the access log is on.
    access: Option<(String, String)>,
}

/// Method and path of the upstream head begun in `read_request` (its first line is
/// the client's method and target), for the token's rules; no copy.
fn attempt(head: &[u8]) -> Attempt<'_> {
    let mut parts = head.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    Attempt { method, path }
}

/// Answers a head the parser refuses and closes: the rest of the connection cannot be
/// framed.
async fn refuse_head<S>(conn: &mut Conn<S>, gateway: &Gateway, problem: malformed::Problem) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = gateway.start_request();
    gateway
        .metrics
        .local()
        .malformed_heads
        .fetch_add(1, Ordering::Relaxed);
    let answer = malformed::answer(problem, &conn.buf, &id);
    let _ = conn.io.write_all(&answer).await;
    let _ = conn.io.flush().await;
    Next::Close
}

impl<S> Conn<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Writes a response the gateway made itself (refusal, 502, 504). A request body
    /// not yet read closes the connection after it, as does a `Connection: close` the
    /// response carries.
    async fn write_own(&mut self, response: Response<Body>, request: &Request, id: &str) -> Next {
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.scratch.status = parts.status.as_u16();
        // The request body, read whole before answering, is not Deploy's any more.
        self.buf.advance(std::mem::take(&mut self.body_pending));
        // When stopping, the client learns that requests it sent after this one were
        // not served.
        let close = request.close
            || *self.stop.borrow()
            || parts
                .headers
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        let out = &mut self.scratch.head;
        out.clear();
        status_line(out, parts.status, "");
        for (name, value) in parts.headers.iter() {
            if name != http::header::CONNECTION {
                append_header(out, name.as_str().as_bytes(), value.as_bytes());
            }
        }
        append_header(out, b"content-length", body.len().to_string().as_bytes());
        append_header(
            out,
            b"date",
            httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes(),
        );
        append_header(out, b"x-request-id", id.as_bytes());
        if close {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !request.head {
            out.extend_from_slice(&body);
        }
        tracing::debug!(request_id = id, status = parts.status.as_u16(), "response");
        let written = self.io.write_all(out).await;
        self.scratch.release();
        match written {
            Ok(()) if !close && self.io.flush().await.is_ok() => Next::KeepAlive,
            _ => Next::Close,
        }
    }
}

/// Deploy's response head, as far as forwarding it needs.
struct ResponseHead {
    len: usize,
    status: StatusCode,
    /// The status line and the header lines to pass on, already filtered.
    lines: Vec<u8>,
    content_length: Option<u64>,
    chunked: bool,
    /// Some other transfer coding last: the body runs until the connection closes.
    other_coding: bool,
    /// Deploy keeps the connection open after this answer.
    keep_alive: bool,
}

impl ResponseHead {
    fn read(parsed: &httparse::Response<'_, '_>, len: usize) -> Result<ResponseHead, &'static str> {
        let status = parsed
            .code
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or("bad status code")?;
        let mut lines = Vec::with_capacity(512);
        status_line(&mut lines, status, parsed.reason.unwrap_or(""));
        let mut head = ResponseHead {
            len,
            status,
            lines,
            content_length: None,
            chunked: false,
            other_coding: false,
            keep_alive: parsed.version == Some(1),
        };
        // Headers the Connection header names are hop-by-hop too.
        let mut named: Vec<&[u8]> = Vec::new();
        for header in parsed.headers.iter() {
            if header.name.eq_ignore_ascii_case("connection") {
                for option in header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    if option.eq_ignore_ascii_case(b"close") {
                        head.keep_alive = false;
                    }
                    named.push(option);
                }
            }
        }
        let mut lower = [0u8; 64];
        for header in parsed.headers.iter() {
            if named
                .iter()
                .any(|n| n.eq_ignore_ascii_case(header.name.as_bytes()))
            {
                continue;
            }
            match lowercase(header.name, &mut lower).as_deref() {
                Some(b"content-length") => {
                    let length = parse_length(header.value).ok_or("bad content-length")?;
                    if head.content_length.is_some_and(|l| l != length) {
                        return Err("conflicting content-length");
                    }
                    head.content_length = Some(length);
                }
                Some(b"transfer-encoding") => {
                    let last = header.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
                    head.chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
                    head.other_coding = !head.chunked;
                }
                // Hop-by-hop; and no Deploy session for a token-authenticated request,
                // and the gateway's own request id.
                Some(b"upgrade" | b"set-cookie" | b"x-request-id") => continue,
                // Nor a session id in a URL it is sent to.
                Some(b"location") => {
                    let lines = &mut head.lines;
                    lines.extend_from_slice(header.name.as_bytes());
                    lines.extend_from_slice(b": ");
                    headers::write_without_session_id(lines, header.value);
                    lines.extend_from_slice(b"\r\n");
                    continue;
                }
                Some(name) if is_hop_by_hop(name) => continue,
                _ => {}
            }
            append_header(&mut head.lines, header.name.as_bytes(), header.value);
        }
        if head.chunked || head.other_coding {
            // Transfer-Encoding wins over Content-Length, and such an answer may have
            // been smuggled: the connection is not reused (RFC 9112 §6.3).
            if head.content_length.take().is_some() {
                head.keep_alive = false;
                head.lines = strip_line(&head.lines, b"content-length");
            }
        }
        Ok(head)
    }

    /// How the body is delimited (RFC 9112 §6.3).
    fn framing(&self, head_request: bool) -> Framing {
        if head_request
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED
        {
            Framing::Length(0)
        } else if self.chunked {
            Framing::Chunked
        } else if self.other_coding {
            Framing::UntilClose
        } else {
            match self.content_length {
                Some(length) => Framing::Length(length),
                None => Framing::UntilClose,
            }
        }
    }
}

fn write_response_head(out: &mut Vec<u8>, head: &ResponseHead, close: bool, id: &str) {
    out.clear();
    out.extend_from_slice(&head.lines);
    append_header(out, b"x-request-id", id.as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn status_line(out: &mut Vec<u8>, status: StatusCode, reason: &str) {
    let reason = if reason.is_empty() {
        status.canonical_reason().unwrap_or("")
    } else {
        reason
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn append_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `lines` without the header lines called `name`.
fn strip_line(lines: &[u8], name: &[u8]) -> Vec<u8> {
    let mut kept = Vec::with_capacity(lines.len());
    for line in lines.split_inclusive(|&b| b == b'\n') {
        let is_named = line
            .split(|&b| b == b':')
            .next()
            .is_some_and(|n| n.eq_ignore_ascii_case(name));
        if !is_named {
            kept.extend_from_slice(line);
        }
    }
    kept
}

/// The header name in lower case, if it fits in `buf`.
fn lowercase<'a>(name: &str, buf: &'a mut [u8; 64]) -> Option<&'a mut [u8]> {
    let out = buf.get_mut(..name.len())?;
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
    UntilClose,
}

/// Tracks a response body as it passes, to know where it ends.
struct Tracker {
    framing: Framing,
    remaining: u64,
    chunks: ChunkScanner,
}

impl Tracker {
    fn new(framing: Framing) -> Tracker {
        Tracker {
            framing,
            remaining: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            chunks: ChunkScanner::default(),
        }
    }

    fn framing(&self) -> Framing {
        self.framing
    }

    fn done(&self) -> bool {
        match self.framing {
            Framing::Length(_) => self.remaining == 0,
            Framing::Chunked => self.chunks.done(),
            Framing::UntilClose => false,
        }
    }

    /// How many of `bytes` belong to the body, and how many of those go on.
    fn take(&mut self, bytes: &[u8]) -> Result<Taken, ChunkError> {
        let all = |n: usize| Taken {
            used: n,
            forward: n,
        };
        match self.framing {
            Framing::Length(_) => {
                let n = self.remaining.min(bytes.len() as u64);
                self.remaining -= n;
                Ok(all(n as usize))
            }
            Framing::Chunked => self.chunks.advance(bytes),
            Framing::UntilClose => Ok(all(bytes.len())),
        }
    }

    /// What ends the body once it is done: a chunked body's trailers are not passed
    /// on (no `Set-Cookie` can ride there), only the empty line that ends them.
    fn ending(&self) -> &'static [u8] {
        if self.framing == Framing::Chunked && self.done() {
            b"\r\n"
        } else {
            b""
        }
    }
}

/// Bytes of a read that belong to the body (`used`), and how many of those, from the
/// start, are passed on (`forward`: all but trailers).
#[derive(Debug, PartialEq, Eq)]
struct Taken {
    used: usize,
    forward: usize,
}

/// Follows chunked framing (RFC 9112 §7.1) without decoding it: the bytes pass through
/// as they are, and the scanner tells where the message ends. It is as strict as the
/// general path's decoder (hyper's): lines end in CRLF, and a size line holds the size,
/// optional spaces or tabs, and extensions after `;`. A proxy behind the gateway must
/// never be handed framing it could read differently.
#[derive(Debug, Default)]
struct ChunkScanner {
    state: ChunkState,
    extension_bytes: usize,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk size: the size so far, its digit count.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size, in spaces or tabs: only `;` or the line's end may follow.
    SizeSpace(u64),
    /// In the size line's extensions.
    Extension(u64),
    /// After the size line's CR.
    SizeLf(u64),
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataCr,
    DataLf,
    /// In the trailer section: length of the current line, whether after its CR.
    Trailer {
        line: usize,
        cr: bool,
    },
    Done,
}

impl Default for ChunkState {
    fn default() -> Self {
        ChunkState::Size { size: 0, digits: 0 }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed chunked body")]
struct ChunkError;

impl ChunkScanner {
    fn done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Consumes bytes up to the end of the message; says how many belong to it and how
    /// many come before the trailer section.
    fn advance(&mut self, input: &[u8]) -> Result<Taken, ChunkError> {
        use ChunkState::*;
        let mut i = 0;
        let mut forward = None;
        while i < input.len() {
            if forward.is_none() && matches!(self.state, Trailer { .. } | Done) {
                forward = Some(i);
            }
            if let Data(left) = self.state {
                let take = left.min((input.len() - i) as u64);
                i += take as usize;
                self.state = if take == left {
                    DataCr
                } else {
                    Data(left - take)
                };
                continue;
            }
            if self.state == Done {
                break;
            }
            let byte = input[i];
            i += 1;
            self.state = match (self.state, byte) {
                (Size { size, digits }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                    if digits >= 15 {
                        return Err(ChunkError);
                    }
                    let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                    Size {
                        size: size * 16 + digit,
                        digits: digits + 1,
                    }
                }
                (Size { size, digits: 1.. }, b' ' | b'\t') | (SizeSpace(size), b' ' | b'\t') => {
                    SizeSpace(size)
                }
                (Size { size, digits: 1.. } | SizeSpace(size), b';') => Extension(size),
                (Size { size, digits: 1.. } | SizeSpace(size) | Extension(size), b'\r') => {
                    SizeLf(size)
                }
                (Extension(size), byte) if byte != b'\n' => {
                    self.extension_bytes += 1;
                    if self.extension_bytes > MAX_EXTENSIONS {
                        return Err(ChunkError);
                    }
                    Extension(size)
                }
                (SizeLf(size), b'\n') => after_size(size),
                (DataCr, b'\r') => DataLf,
                (DataLf, b'\n') => ChunkState::default(),
                (Trailer { line, cr: true }, b'\n') => {
                    if line == 0 {
                        Done
                    } else {
                        Trailer { line: 0, cr: false }
                    }
                }
                (Trailer { line, cr: false }, b'\r') => Trailer { line, cr: true },
                (Trailer { line, cr: false }, byte) if byte != b'\n' => {
                    self.trailer_bytes += 1;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(ChunkError);
                    }
                    Trailer {
                        line: line + 1,
                        cr: false,
                    }
                }
                _ => return Err(ChunkError),
            };
        }
        Ok(Taken {
            used: i,
            forward: forward.unwrap_or(i),
        })
    }
}

fn after_size(size: u64) -> ChunkState {
    if size == 0 {
        ChunkState::Trailer { line: 0, cr: false }
    } else {
        ChunkState::Data(size)
    }
}

/// A connection with bytes already read from it, read again first.
pub struct Rewind<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, with `prefix` (already read from it) to be read first.
    pub fn new(prefix: BytesMut, inner: S) -> Rewind<S> {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_pieces(input: &[u8], piece: usize) -> Result<(usize, bool), ChunkError> {
        let mut scanner = ChunkScanner::default();
        let mut used = 0;
        for part in input.chunks(piece) {
            used += scanner.advance(part)?.used;
            if scanner.done() {
                break;
            }
        }
        Ok((used, scanner.done()))
    }

    #[test]
    fn chunked_message_ends_where_it_says_in_any_split() {
        let message = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\n";
        let mut with_next = message.to_vec();
        with_next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for piece in 1..=with_next.len() {
            assert_eq!(
                scan_in_pieces(&with_next, piece).unwrap(),
                (message.len(), true),
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn trailers_are_consumed_but_not_passed_on() {
        let body = b"3\r\nabc\r\n0\r\n";
        let trailers = b"set-cookie: s=1\r\nx-t: 2\r\n\r\n";
        let message = [&body[..], &trailers[..]].concat();
        for split in 1..message.len() {
            let mut tracker = Tracker::new(Framing::Chunked);
            let mut passed = Vec::new();
            for part in [&message[..split], &message[split..]] {
                let taken = tracker.take(part).unwrap();
                assert_eq!(taken.used, part.len());
                passed.extend_from_slice(&part[..taken.forward]);
            }
            assert!(tracker.done());
            passed.extend_from_slice(tracker.ending());
            assert_eq!(passed, b"3\r\nabc\r\n0\r\n\r\n", "split at {split}");
        }
    }

    #[test]
    fn unfinished_chunked_message_is_not_done() {
        assert_eq!(scan_in_pieces(b"5\r\nhel", 100).unwrap(), (6, false));
        assert_eq!(scan_in_pieces(b"0\r\n", 100).unwrap(), (3, false));
    }

    #[test]
    fn malformed_chunk_sizes_are_errors() {
        // Bare line feeds, digits after a space, a space before any digit.
        for bad in [
            &b"2\nok\r\n0\r\n\r\n"[..],
            b"2 5\r\nok\r\n0\r\n\r\n",
            b" 2\r\nok\r\n0\r\n\r\n",
            b"2;x\nok\r\n0\r\n\r\n",
            b"2\r\nok\n0\r\n\r\n",
            b"2\r\nok\r\n0\r\nx-t: 1\n\r\n",
            b"2\r\nok\r\n0\r\n\n",
        ] {
            for piece in 1..=bad.len() {
                assert!(
                    scan_in_pieces(bad, piece).is_err(),
                    "{:?} split every {piece}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
        assert!(scan_in_pieces(b"2 \t;x=\"y z\"\r\nok\r\n0\r\n\r\n", 100).is_ok());
        assert!(scan_in_pieces(b"zz\r\n", 100).is_err());
        assert!(scan_in_pieces(b"\r\n", 100).is_err());
        assert!(scan_in_pieces(b"5\r\nhelloXX", 100).is_err());
        assert!(scan_in_pieces(b"1000000000000000\r\n", 100).is_err());
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let parse = |raw: &[u8]| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            let len = match parsed.parse(raw).unwrap() {
                httparse::Status::Complete(len) => len,
                httparse::Status::Partial => panic!("partial"),
            };
            ResponseHead::read(&parsed, len)
        };
        let head = parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n").unwrap();
        assert_eq!(head.framing(false), Framing::Length(5));
        assert_eq!(head.framing(true), Framing::Length(0));
        assert!(head.keep_alive);

        let head =
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert_eq!(head.framing(false), Framing::Chunked);
        assert!(!head.keep_alive, "TE with CL is not reused");
        assert!(!String::from_utf8_lossy(&head.lines)
            .to_ascii_lowercase()
            .contains("content-length"));

        let head = parse(b"HTTP/1.1 200 OK\r\nconnection: close, x-hop\r\nx-hop: 1\r\nset-cookie: s=1\r\nx-kept: 1\r\n\r\n").unwrap();
        assert_eq!(head.framing(false), Framing::UntilClose);
        assert!(!head.keep_alive);
        let lines = String::from_utf8_lossy(&head.lines).to_string();
        assert_eq!(lines, "HTTP/1.1 200 OK\r\nx-kept: 1\r\n");

        assert!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n").is_err()
        );
        assert_eq!(
            parse(b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap()
                .framing(false),
            Framing::Length(0)
        );
        assert!(
            !parse(b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }
}
