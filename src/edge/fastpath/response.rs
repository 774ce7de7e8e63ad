//! Deploy's response head as the fast path forwards it: hop-by-hop headers, cookies and
//! URL session ids dropped, the framing read, and the head written back to the client.

use http::StatusCode;

use super::body::Framing;
use crate::edge::headers::{self, is_hop_by_hop};

/// Deploy's response head, as far as forwarding it needs.
pub(super) struct ResponseHead {
    pub(super) len: usize,
    pub(super) status: StatusCode,
    /// The status line and the header lines to pass on, already filtered.
    pub(super) lines: Vec<u8>,
    pub(super) content_length: Option<u64>,
    pub(super) chunked: bool,
    /// Some other transfer coding last: the body runs until the connection closes.
    pub(super) other_coding: bool,
    /// Deploy keeps the connection open after this answer.
    pub(super) keep_alive: bool,
}

impl ResponseHead {
    pub(super) fn read(
        parsed: &httparse::Response<'_, '_>,
        len: usize,
    ) -> Result<ResponseHead, &'static str> {
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
    pub(super) fn framing(&self, head_request: bool) -> Framing {
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

/// Writes the head of Deploy's answer for the client: its lines, the request id, the
/// token's expiry lines (`token_lines`), and `Connection: close` when closing.
pub(super) fn write_response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    close: bool,
    id: &str,
    token_lines: &[u8],
) {
    out.clear();
    out.extend_from_slice(&head.lines);
    append_header(out, b"x-request-id", id.as_bytes());
    out.extend_from_slice(token_lines);
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

pub(super) fn status_line(out: &mut Vec<u8>, status: StatusCode, reason: &str) {
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

pub(super) fn append_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `lines` without the header lines called `name`.
pub(super) fn strip_line(lines: &[u8], name: &[u8]) -> Vec<u8> {
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
pub(super) fn lowercase<'a>(name: &str, buf: &'a mut [u8; 64]) -> Option<&'a mut [u8]> {
    let out = buf.get_mut(..name.len())?;
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

pub(super) fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::fastpath::body::Framing;
    use crate::edge::limits::MAX_HEADERS;

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
