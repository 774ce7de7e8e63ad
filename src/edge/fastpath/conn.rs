//! One client connection on the fast path: its buffers, deadlines, and the answers
//! the gateway writes itself (refusals, 502, 504, refused heads).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use super::request::Request;
use super::response::{append_header, status_line};
use super::Next;
use crate::core::response::Body;
use crate::edge::gateway::Gateway;
use crate::edge::live::Live;
use crate::edge::{access, malformed};

/// Free space a read into a head buffer gets at least.
pub(super) const READ_ROOM: usize = 4 * 1024;

/// Buffers larger than this are given back after a request.
pub(super) const KEPT_BUFFER: usize = 16 * 1024;

/// Chunk of a body copied at a time.
pub(super) const COPY_CHUNK: usize = 64 * 1024;

/// Room for a whole read: `read_buf` on a full buffer would read 64 bytes at a time.
pub(super) fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_ROOM {
        // Reclaims the space of what was consumed when it can, else grows.
        buf.reserve(2 * READ_ROOM);
    }
}

pub(super) struct Conn<S> {
    pub(super) io: S,
    /// Bytes read from the client and not yet used.
    pub(super) buf: BytesMut,
    /// Bytes at the start of `buf` that are the current request's body.
    pub(super) body_pending: usize,
    /// True once the gateway is stopping.
    pub(super) stop: watch::Receiver<bool>,
    pub(super) scratch: Scratch,
    /// For the next request head.
    pub(super) head_deadline: Deadline,
    /// For Deploy's answer.
    pub(super) answer_deadline: Deadline,
    /// The settings this connection's next request is served with.
    pub(super) live: Arc<Live>,
    /// Where Deploy is under them.
    pub(super) target: Arc<super::Target>,
}

/// A deadline that moves forward with every request but whose timer rarely fires:
/// moving it is a store, and the timer is re-armed only when it goes off early.
pub(super) struct Deadline {
    pub(super) at: tokio::time::Instant,
    pub(super) timer: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    pub(super) fn new(after: Duration) -> Deadline {
        let at = tokio::time::Instant::now() + after;
        Deadline {
            at,
            timer: Box::pin(tokio::time::sleep_until(at)),
        }
    }

    pub(super) fn set(&mut self, after: Duration) {
        self.at = tokio::time::Instant::now() + after;
        if self.at < self.timer.deadline() {
            self.timer.as_mut().reset(self.at);
        }
    }

    /// Completes once the deadline has passed.
    pub(super) async fn expired(&mut self) {
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
pub(super) struct Scratch {
    /// The client's address as `X-Forwarded-For` gives it.
    pub(super) client_ip: String,
    /// The head being written (upstream request, then client response).
    pub(super) head: Vec<u8>,
    /// Identity headers for the upstream request (jwt mode).
    pub(super) extra: HeaderMap,
    /// Bytes read from Deploy.
    pub(super) upstream: BytesMut,
    /// For answers that do not fit in one read.
    pub(super) copy: BytesMut,
    /// The status of the answer last written to the client (for the access log).
    pub(super) status: u16,
    /// What the access line tells of this request, kept only when the log is on.
    pub(super) note: access::Note,
    /// The header lines every answer to this request's token carries (its expiry);
    /// empty until the token is found valid.
    pub(super) token_lines: Vec<u8>,
}

impl Scratch {
    /// Gives back what one large request or answer made these buffers grow to.
    pub(super) fn release(&mut self) {
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
    pub(super) fn chunk(&mut self) -> &mut BytesMut {
        self.copy.clear();
        self.copy.reserve(COPY_CHUNK);
        &mut self.copy
    }
}

/// Answers a head the parser refuses and closes: the rest of the connection cannot be
/// framed.
pub(super) async fn refuse_head<S>(
    conn: &mut Conn<S>,
    gateway: &Gateway,
    problem: malformed::Problem,
) -> Next
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
    pub(super) async fn write_own(
        &mut self,
        response: Response<Body>,
        request: &Request,
        id: &str,
    ) -> Next {
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
        out.extend_from_slice(&self.scratch.token_lines);
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
