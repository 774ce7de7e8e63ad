//! Forwarding to Deploy: one pooled hyper client, bodies streamed both ways, hop-by-hop
//! headers handled per RFC 9110 §7.6.1, `X-Forwarded-*` set, upgrades (WebSocket)
//! tunnelled, and Deploy's silence turned into 502/504 with a JSON error.

use std::io::BufReader;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::config;
use crate::metrics::Metrics;
use crate::response::{json_error, Body};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus the
/// obsolete `Proxy-Connection` and `Keep-Alive` that clients still send.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// What the proxy knows about the client connection and the request.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    pub ip: IpAddr,
    pub tls: bool,
    /// For log lines.
    pub request_id: &'a str,
}

/// The upstream client.
pub struct Proxy {
    client: Client<HttpsConnector<HttpConnector>, Incoming>,
    scheme: Scheme,
    authority: Authority,
    read_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Proxy {
    pub fn new(settings: &config::Upstream, metrics: Arc<Metrics>) -> anyhow::Result<Proxy> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let tls = tls_client_config(settings.ca_file.as_deref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(settings.max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Proxy {
            client,
            scheme: settings.url.scheme().cloned().unwrap_or(Scheme::HTTP),
            authority: settings
                .url
                .authority()
                .cloned()
                .expect("validated upstream.url has a host"),
            read_timeout: settings.read_timeout,
            metrics,
        })
    }

    /// Sends the request to Deploy and streams back its answer.
    pub async fn forward(&self, mut req: Request<Incoming>, peer: Peer<'_>) -> Response<Body> {
        let upgrade = upgrade_protocol(req.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));

        let original_host = req.headers().get(header::HOST).cloned();
        let headers = req.headers_mut();
        remove_hop_by_hop(headers);
        if let Some(protocol) = &upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, protocol.clone());
        }
        set_forwarded(headers, peer, original_host);

        let mut uri = http::uri::Parts::default();
        uri.scheme = Some(self.scheme.clone());
        uri.authority = Some(self.authority.clone());
        uri.path_and_query = req.uri().path_and_query().cloned();
        *req.uri_mut() = Uri::from_parts(uri).expect("scheme, authority and path make a URI");
        *req.version_mut() = Version::HTTP_11;

        let mut response = match tokio::time::timeout(self.read_timeout, self.client.request(req))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                self.metrics
                    .upstream_unreachable
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(request_id = peer.request_id, error = %error_chain(&e), "upstream request failed");
                return json_error(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    "Deploy could not be reached; try again shortly",
                );
            }
            Err(_) => {
                self.metrics
                    .upstream_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(request_id = peer.request_id, timeout = ?self.read_timeout, "upstream did not answer in time");
                return json_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "Deploy did not answer in time; try again shortly",
                );
            }
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let protocol = response.headers().get(header::UPGRADE).cloned();
            remove_hop_by_hop(response.headers_mut());
            if let Some(protocol) = protocol {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                response.headers_mut().insert(header::UPGRADE, protocol);
            }
            if let Some(client_upgrade) = client_upgrade {
                tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
            }
        } else {
            remove_hop_by_hop(response.headers_mut());
        }
        // Our connection to the client has its own version.
        *response.version_mut() = Version::HTTP_11;
        response.map(|body| body.boxed())
    }
}

/// Copies bytes both ways once both sides have switched protocols.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
        Err(e) => tracing::debug!(error = %e, "upgraded connection ended with an error"),
    }
}

/// The protocol a request asks to upgrade to, if it properly asks (Connection: upgrade).
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let asks = connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    asks.then(|| headers.get(header::UPGRADE).cloned())
        .flatten()
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
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

fn set_forwarded(headers: &mut HeaderMap, peer: Peer<'_>, original_host: Option<HeaderValue>) {
    let ip = peer.ip.to_string();
    let forwarded_for = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {ip}"),
        None => ip,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR, value);
    }
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

fn tls_client_config(ca_file: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let file = std::fs::File::open(path)
            .map_err(|e| anyhow::anyhow!("upstream.ca_file {}: {e}", path.display()))?;
        let certs = rustls_pemfile::certs(&mut BufReader::new(file))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow::anyhow!(
                    "upstream.ca_file {}: not PEM certificates: {e}",
                    path.display()
                )
            })?;
        if certs.is_empty() {
            anyhow::bail!(
                "upstream.ca_file {}: no certificates found; give a PEM bundle",
                path.display()
            );
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("upstream.ca_file {}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
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
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        let peer = Peer {
            ip: "127.0.0.1".parse().unwrap(),
            tls: true,
            request_id: "test",
        };
        set_forwarded(
            &mut h,
            peer,
            Some(HeaderValue::from_static("deploy.example")),
        );
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, 127.0.0.1");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "deploy.example");
    }
}
