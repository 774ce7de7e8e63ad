//! Answers to request heads that are not valid HTTP/1.1 (a control character in a
//! header value, a head over 64 KiB, too many headers): JSON with a hint and a request
//! id, like every other refusal, instead of an empty 400.
//!
//! The commonest cause is a token read from a file with its line ending
//! (`open(f).read()` in Python, a file with CRLF endings): the `\r` or `\n` lands in
//! the header value, and the hint says so.

use bytes::BytesMut;
use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::edge::gateway::Gateway;
use crate::edge::rewind::Rewind;

/// Why a head was refused.
#[derive(Debug, Clone, Copy)]
pub enum Problem {
    /// The parser's error.
    Invalid(httparse::Error),
    /// Longer than the largest head accepted.
    TooLarge,
}

/// Status, error code and message for a refused head; `head` is what was read of it.
pub fn explain(problem: Problem, head: &[u8]) -> (StatusCode, &'static str, String) {
    match problem {
        Problem::TooLarge => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request_head_too_large",
            format!(
                "the request head is larger than {} KiB; send fewer or shorter headers",
                crate::edge::limits::MAX_HEAD_BYTES / 1024
            ),
        ),
        Problem::Invalid(httparse::Error::TooManyHeaders) => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too_many_headers",
            format!(
                "the request has more than {} headers",
                crate::edge::limits::MAX_HEADERS
            ),
        ),
        Problem::Invalid(e) => {
            let mut message = format!("the request head is not valid HTTP/1.1 ({e})");
            if stray_line_break(head) {
                message.push_str(
                    "; a header value holds a line break or control character: a token read from a file often keeps its trailing newline or carriage return (CRLF); strip whitespace from the token before sending it (Python: .strip(); shell: tr -d '\\r\\n')",
                );
            }
            (StatusCode::BAD_REQUEST, "malformed_request", message)
        }
    }
}

/// A `\r` not followed by `\n`, a `\n` not preceded by `\r` inside the head, or a NUL.
fn stray_line_break(head: &[u8]) -> bool {
    head.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => head.get(i + 1).is_some_and(|&n| n != b'\n'),
        b'\n' => i > 0 && head[i - 1] != b'\r',
        0 => true,
        _ => false,
    })
}

/// The whole answer as bytes: status line, JSON body, request id, and `Connection:
/// close` (the rest of the connection cannot be read reliably).
pub fn answer(problem: Problem, head: &[u8], request_id: &str) -> Vec<u8> {
    let (status, code, message) = explain(problem, head);
    tracing::info!(
        request_id,
        reason = code,
        "refused a malformed request head"
    );
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes()
}

/// Reads a connection's first request head before the HTTP library takes the
/// connection (where the fast path does not read it: an `https` Deploy). A head the
/// parser refuses is answered here, with JSON; a good one is handed on with the bytes
/// read. `None`: the connection is done (answered, closed, or silent too long).
pub async fn first_head<S>(mut io: S, gateway: &Gateway) -> Option<Rewind<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let max = crate::edge::limits::MAX_HEAD_BYTES;
    let mut buf = BytesMut::with_capacity(4 * 1024);
    let deadline = tokio::time::sleep(crate::edge::limits::HEAD_TIMEOUT);
    tokio::pin!(deadline);
    loop {
        if !buf.is_empty() {
            let mut headers = [httparse::EMPTY_HEADER; crate::edge::limits::MAX_HEADERS];
            let problem = match httparse::Request::new(&mut headers).parse(&buf) {
                Ok(httparse::Status::Complete(_)) => return Some(Rewind::new(buf, io)),
                Ok(httparse::Status::Partial) if buf.len() < max => None,
                Ok(httparse::Status::Partial) => Some(Problem::TooLarge),
                Err(e) => Some(Problem::Invalid(e)),
            };
            if let Some(problem) = problem {
                let id = gateway.start_request();
                gateway
                    .metrics
                    .local()
                    .malformed_heads
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let _ = io.write_all(&answer(problem, &buf, &id)).await;
                let _ = io.shutdown().await;
                return None;
            }
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(8 * 1024);
        }
        tokio::select! {
            read = io.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            },
            _ = &mut deadline => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_carriage_return_in_a_header_gets_the_whitespace_hint() {
        let head = b"GET / HTTP/1.1\r\nx-deploy-personal-token: abc\r\r\n\r\n";
        let (status, code, message) = explain(Problem::Invalid(httparse::Error::HeaderValue), head);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(code, "malformed_request");
        assert!(message.contains("trailing newline"), "{message}");
        let plain = b"GET / HTTP/1.1\r\nx y: z\r\n\r\n";
        let (_, _, message) = explain(Problem::Invalid(httparse::Error::HeaderName), plain);
        assert!(!message.contains("newline"), "{message}");
    }
}
