//! Forwarding to Deploy: one pooled hyper client, bodies streamed both ways, hop-by-hop
//! headers handled per RFC 9110 §7.6.1, `X-Forwarded-*` set, upgrades (WebSocket)
//! tunnelled, and Deploy's silence turned into 502/504 with a JSON error.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::config;
use crate::core::response::{json_error, Body};
use crate::edge::headers::{connection_tokens, HOP_BY_HOP};
use crate::edge::upstream::Pool;
use crate::metrics::Metrics;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the proxy knows about the client connection and the request.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    /// The connection's peer.
    pub ip: IpAddr,
    /// The client, as [`crate::edge::forwarded`] resolves it: the peer, or behind a
    /// trusted proxy the address it forwarded. Limits and audit go by this one.
    pub client: IpAddr,
    pub tls: bool,
    /// For log lines.
    pub request_id: &'a str,
}

/// How long Deploy took to send the response head, carried on the response for the
/// access line.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamWait(pub std::time::Duration);

/// The upstream client.
pub struct Proxy {
    pool: Pool,
    authority: Authority,
    read_timeout: Duration,
    /// Deploy's address for the 502 answer, as `upstream.url` names it.
    shown: Arc<str>,
    metrics: Arc<Metrics>,
}

impl Proxy {
    pub fn new(settings: &config::Upstream, metrics: Arc<Metrics>) -> anyhow::Result<Proxy> {
        Ok(Proxy {
            pool: Pool::new(settings, Some(metrics.clone()))?,
            authority: settings
                .url
                .authority()
                .cloned()
                .expect("validated upstream.url has a host"),
            read_timeout: settings.read_timeout,
            shown: settings.address().into(),
            metrics,
        })
    }

    /// Sends the request to Deploy and streams back its answer. The request has been
    /// through [`prepare`]; `upgrade` is what it returned. A tunnel opened by an upgrade
    /// is closed as soon as `still_valid` (asked four times a second) says the credentials
    /// that opened it no longer hold.
    pub async fn forward(
        &self,
        mut req: Request<Incoming>,
        peer: Peer<'_>,
        upgrade: Option<HeaderValue>,
        still_valid: Option<StillValid>,
    ) -> Response<Body> {
        // Authority form (`GET deploy.test`) is CONNECT's alone (RFC 9112 §3.2.3), and
        // CONNECT is refused: read as an absolute form it would replace the Host.
        if req.uri().scheme().is_none() && req.uri().authority().is_some() {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request target is not a valid path",
            );
        }
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        // For an absolute-form target (`GET http://host/path`) its authority is the host
        // (RFC 9112 §3.2.2), whatever the Host header says.
        if let Some(authority) = req.uri().authority() {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                req.headers_mut().insert(header::HOST, host);
            }
        }
        let original_host = req.headers().get(header::HOST).cloned();
        // A body of unknown length came chunked. The client's Transfer-Encoding is
        // hop-by-hop and gone, and without one hyper sends a GET, HEAD or CONNECT with
        // no body at all: Deploy would read a request the client did not send.
        let chunked = !req.body().is_end_stream() && req.body().size_hint().exact().is_none();
        let headers = req.headers_mut();
        if chunked {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        if let Some(protocol) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol.clone());
        }
        set_forwarded(headers, peer, original_host);

        // Origin-form (path and query) on the wire: Deploy must go by the Host header.
        if !headers.contains_key(header::HOST) {
            if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
                headers.insert(header::HOST, host);
            }
        }
        let mut uri = http::uri::Parts::default();
        uri.path_and_query = Some(
            req.uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        let Ok(uri) = Uri::from_parts(uri) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request target is not a valid path",
            );
        };
        *req.uri_mut() = uri;
        *req.version_mut() = Version::HTTP_11;

        // The read timeout runs from when the request body has been sent whole, so a
        // slow upload is not cut off; only Deploy's silence after it is.
        let sent_at = std::time::Instant::now();
        let answered = if req.body().is_end_stream() {
            let req = req.map(|body| SentBody {
                inner: body,
                sent: None,
            });
            tokio::time::timeout(self.read_timeout, self.pool.send(req))
                .await
                .ok()
        } else {
            let (sent, body_sent) = oneshot::channel();
            let req = req.map(|body| SentBody::new(body, sent));
            tokio::select! {
                response = self.pool.send(req) => Some(response),
                _ = async {
                    let _ = body_sent.await;
                    tokio::time::sleep(self.read_timeout).await;
                } => None,
            }
        };
        let waited = sent_at.elapsed();
        self.metrics.local().upstream_wait.observe(waited);
        let mut response = match answered {
            Some(Ok(mut response)) => {
                response.extensions_mut().insert(UpstreamWait(waited));
                response
            }
            Some(Err(e)) => {
                self.metrics
                    .local()
                    .upstream_unreachable
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(request_id = peer.request_id, error = %error_chain(&e), "upstream request failed");
                return unreachable(&self.shown);
            }
            None => {
                self.metrics
                    .local()
                    .upstream_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(request_id = peer.request_id, timeout = ?self.read_timeout, "upstream did not answer in time");
                return timed_out();
            }
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // Only the protocol the client asked for, and only if it asked.
            let agreed = upgrade
                .as_ref()
                .zip(response.headers().get(header::UPGRADE))
                .is_some_and(|(asked, answered)| {
                    asked.as_bytes().eq_ignore_ascii_case(answered.as_bytes())
                });
            let (Some(protocol), Some(client_upgrade), true) = (upgrade, client_upgrade, agreed)
            else {
                tracing::warn!(
                    request_id = peer.request_id,
                    "Deploy switched protocols without being asked"
                );
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_protocol",
                    "Deploy answered with an unexpected protocol switch",
                );
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            remove_hop_by_hop(response.headers_mut());
            let headers = response.headers_mut();
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade, still_valid));
        } else {
            remove_hop_by_hop(response.headers_mut());
        }
        // Our connection to the client has its own version.
        *response.version_mut() = Version::HTTP_11;
        response.map(|body| body.boxed())
    }
}

/// 502: Deploy could not be reached or broke off the exchange. The answer names the
/// address tried and the key that sets it: the operator's setting, not a secret, and
/// the first thing to check when every request fails this way.
pub fn unreachable(address: &str) -> Response<Body> {
    json_error(
        StatusCode::BAD_GATEWAY,
        "upstream_unreachable",
        &format!(
            "Deploy could not be reached at {address} (upstream.url); try again shortly, or check that Deploy runs there"
        ),
    )
}

/// 504: Deploy did not answer within `upstream.read_timeout`.
pub fn timed_out() -> Response<Body> {
    json_error(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_timeout",
        "Deploy did not answer in time; try again shortly",
    )
}

/// Re-checks the credentials of an open tunnel.
pub type StillValid = Box<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync,
>;

/// Copies bytes both ways once both sides have switched protocols, until either side
/// closes or the credentials stop holding.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    still_valid: Option<StillValid>,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    let revoked = async {
        let Some(still_valid) = still_valid else {
            return std::future::pending().await;
        };
        let mut every = tokio::time::interval(Duration::from_millis(250));
        loop {
            every.tick().await;
            if !still_valid().await {
                return;
            }
        }
    };
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match copied {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
        },
        _ = revoked => tracing::info!("closed an upgraded connection: its token is no longer valid"),
    }
}

/// The request body, reporting when it has been sent whole.
pub struct SentBody {
    inner: Incoming,
    sent: Option<oneshot::Sender<()>>,
}

impl SentBody {
    fn new(inner: Incoming, sent: oneshot::Sender<()>) -> SentBody {
        let mut body = SentBody {
            inner,
            sent: Some(sent),
        };
        if body.inner.is_end_stream() {
            body.finished();
        }
        body
    }

    fn finished(&mut self) {
        if let Some(sent) = self.sent.take() {
            let _ = sent.send(());
        }
    }
}

impl hyper::body::Body for SentBody {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None | Some(Err(_))) => self.finished(),
            std::task::Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finished(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Cleans a client's request head before anything else looks at it: removes the
/// hop-by-hop headers, including every header `Connection` names (the fast path hands
/// such requests here; the rest of the header rules are [`crate::edge::headers::Rules::fate`]).
/// Returns the protocol to upgrade to: WebSocket only, and only when asked properly
/// (`Connection: upgrade`).
pub fn prepare(headers: &mut HeaderMap) -> Option<HeaderValue> {
    let upgrade = upgrade_protocol(headers);
    remove_hop_by_hop(headers);
    upgrade
}

/// The protocol a request asks to upgrade to, if it properly asks (Connection: upgrade).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    let protocol = headers.get(header::UPGRADE)?;
    // Other protocols (h2c above all) would open a channel Deploy reads without the
    // gateway's header checks.
    (asks && protocol.as_bytes().eq_ignore_ascii_case(b"websocket")).then(|| protocol.clone())
}

/// Removes the fixed hop-by-hop headers, `Upgrade`, and every header the
/// `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of these: one pass over the names decides, instead of
    // a hash lookup per listed header.
    let present = headers
        .keys()
        .any(|name| name == header::UPGRADE || HOP_BY_HOP.contains(name));
    if !present {
        return;
    }
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// `X-Forwarded-Proto` and `X-Forwarded-Host`; `X-Forwarded-For` was set with the
/// client's address ([`crate::edge::headers::Rules::forwarded_for`]).
fn set_forwarded(headers: &mut HeaderMap, peer: Peer<'_>, original_host: Option<HeaderValue>) {
    let proto = if peer.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    match original_host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST, host);
        }
        None => {
            headers.remove(X_FORWARDED_HOST);
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h);
        assert!(h.get("x-secret-hop").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h["x-kept"], "1");
    }

    #[test]
    fn forwarded_proto_and_host_describe_the_client_connection() {
        let mut h = HeaderMap::new();
        let peer = Peer {
            ip: "127.0.0.1".parse().unwrap(),
            client: "127.0.0.1".parse().unwrap(),
            tls: true,
            request_id: "test",
        };
        set_forwarded(
            &mut h,
            peer,
            Some(HeaderValue::from_static("deploy.example")),
        );
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "deploy.example");
    }
}
