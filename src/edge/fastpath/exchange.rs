//! The exchange with Deploy: the request sent in one write, the answer's head read
//! and rewritten, its body copied through with its own framing.

use std::time::Instant;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::{Framing, Tracker};
use super::conn::{make_room, Conn, Deadline, Scratch, KEPT_BUFFER};
use super::request::Request;
use super::response::{write_response_head, ResponseHead};
use super::{Failure, Forwarder, Next};
use crate::edge::limits::{MAX_HEADERS, MAX_HEAD_BYTES};

/// Attempts per request when a reused connection turns out closed.
pub(super) const ATTEMPTS: usize = 3;

impl Forwarder {
    /// Sends the request on a pooled (or new) connection and streams the answer back.
    pub(super) async fn exchange<S>(
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
            let target = conn.target.clone();
            let (mut upstream, reused) = match self.checkout(&target) {
                Some(stream) => (stream, true),
                None => (self.connect(&target).await?, false),
            };
            // Only on a reused connection that broke before any answer (one Deploy had
            // just closed), and only requests that are harmless to repeat: Deploy may
            // have acted on the head of an upload before the write failed.
            let retry =
                reused && attempt < ATTEMPTS && (request.idempotent || request.content_length == 0);
            conn.answer_deadline.set(target.read_timeout);
            let sent_at = Instant::now();
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
                Ok(head) => {
                    let waited = sent_at.elapsed();
                    self.metrics.local().upstream_wait.observe(waited);
                    conn.scratch.note.upstream = Some(waited);
                    break (upstream, head);
                }
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
        write_response_head(&mut out, &head, close, id, &scratch.token_lines);
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
            self.checkin(upstream, &conn.target);
        }
        conn.scratch.release();
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    /// Writes the request, head and body, to Deploy in one write, within the read
    /// timeout (Deploy not reading is as bad as Deploy not answering).
    pub(super) async fn send<S>(
        &self,
        conn: &mut Conn<S>,
        upstream: &mut TcpStream,
    ) -> Result<(), Failure>
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
    pub(super) async fn response_head(
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
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
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
    pub(super) async fn copy_body<S>(
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
}
