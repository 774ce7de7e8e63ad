//! Reading a request head the fast path takes, and rewriting it into the head Deploy
//! receives, by the header rules both paths share.

use std::net::IpAddr;

use super::conn::Scratch;
use super::response::{append_header, lowercase, parse_length};
use super::{Client, Forwarder, MAX_BODY};
use crate::edge::admission;
use crate::edge::headers::{self, Fate};
use crate::edge::live::Live;
use crate::tokens::credentials::Credential;
use crate::tokens::rules::Attempt;

impl Forwarder {
    /// Reads a parsed request head: what the fast path needs to answer it, with the
    /// upstream head begun in `scratch.head`; `None` if the general path must take it.
    pub(super) fn read_request(
        &self,
        parsed: &httparse::Request<'_, '_>,
        head_len: usize,
        live: &Live,
        client: Client,
        scratch: &mut Scratch,
    ) -> Option<Request> {
        if parsed.version != Some(1) {
            return None;
        }
        let method = parsed.method?;
        let target = parsed.path?;
        let path = target.split('?').next().unwrap_or(target);
        if !target.starts_with('/') || admission::is_reserved(path) {
            return None;
        }
        if admission::is_refused_method(method.as_bytes()) {
            return None;
        }
        let credential =
            admission::credential(|| parsed.headers.iter().map(|h| (h.name.as_bytes(), h.value)));
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
            access: live
                .access_log
                .then(|| (method.to_string(), path.to_string())),
        };
        let mut seen_length = false;
        let mut seen_host = false;
        let mut lower = [0u8; 64];
        for header in parsed.headers.iter() {
            // A longer name is rare enough to leave to the general path.
            let name = lowercase(header.name, &mut lower)?;
            let underscored = name.contains(&b'_');
            if underscored {
                for b in name.iter_mut().filter(|b| **b == b'_') {
                    *b = b'-';
                }
            } else {
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
                            } else if !option.is_empty()
                                && !option.eq_ignore_ascii_case(b"keep-alive")
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
                    _ => {}
                }
            }
            // The rest is the header rules both paths share; X-Forwarded-For is set
            // below from the trusted proxies.
            match live.rules.fate(name, underscored, &live.identity, true) {
                Fate::Keep => append_header(head, header.name.as_bytes(), header.value),
                Fate::Drop => {}
                Fate::Identity => request.stripped_identity = true,
                Fate::Refuse => return None,
            }
        }
        // HTTP/1.1 without Host: the general path's 400.
        if !seen_host {
            return None;
        }
        let resolved = live.rules.client(
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
}

/// What the fast path keeps of a request head.
pub(super) struct Request {
    pub(super) head_len: usize,
    pub(super) token: Vec<u8>,
    pub(super) claimed_user: Option<Vec<u8>>,
    pub(super) content_length: u64,
    /// The client asked to close after this request.
    pub(super) close: bool,
    /// A HEAD request: the answer has no body whatever its headers say.
    pub(super) head: bool,
    pub(super) idempotent: bool,
    /// The client: the peer, or behind a trusted proxy the address it forwarded.
    pub(super) client: IpAddr,
    /// `X-Forwarded-For` entries kept ahead of the peer's (trusted proxies only).
    pub(super) forwarded_chain: String,
    pub(super) stripped_identity: bool,
    /// Method and path, kept only when the access log is on.
    pub(super) access: Option<(String, String)>,
}

/// Method and path of the upstream head begun in `read_request` (its first line is
/// the client's method and target), for the token's rules; no copy.
pub(super) fn attempt(head: &[u8]) -> Attempt<'_> {
    let mut parts = head.splitn(3, |&b| b == b' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    Attempt { method, path }
}
