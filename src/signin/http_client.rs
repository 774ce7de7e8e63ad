//! A small HTTP/1.1 client for sign-in: Deploy's password check and the OpenID
//! provider's discovery, keys and token endpoints. One connection per request: these
//! calls are rare (a sign-in, a cache miss), and never on the token path.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest answer read.
const MAX_ANSWER: usize = 1024 * 1024;

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}: invalid URL")]
    Url(String),
    #[error("connecting to {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    #[error("TLS with {0}: {1}")]
    Tls(String, std::io::Error),
    #[error("HTTP exchange with {0}: {1}")]
    Http(String, String),
}

/// Sends requests, plain or over rustls.
#[derive(Clone)]
pub struct HttpClient {
    tls: TlsConnector,
    timeout: Duration,
}

impl HttpClient {
    pub fn new(ca_file: Option<&std::path::Path>, timeout: Duration) -> anyhow::Result<HttpClient> {
        let config = crate::core::tls::tls_client_config(ca_file)?;
        Ok(HttpClient {
            tls: TlsConnector::from(Arc::new(config)),
            timeout,
        })
    }

    /// Sends `req` (absolute URI) and reads the whole answer, all within the timeout.
    pub async fn send(&self, req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, HttpError> {
        self.send_via(req, None).await
    }

    /// [`send`](Self::send), connecting to `address` (the URI's host resolved and
    /// checked by the caller) rather than resolving the host again; the URI's host is
    /// still what `Host` and TLS name.
    pub async fn send_to(
        &self,
        req: Request<Vec<u8>>,
        address: std::net::SocketAddr,
    ) -> Result<Response<Vec<u8>>, HttpError> {
        self.send_via(req, Some(address)).await
    }

    async fn send_via(
        &self,
        req: Request<Vec<u8>>,
        to: Option<std::net::SocketAddr>,
    ) -> Result<Response<Vec<u8>>, HttpError> {
        // Host and port only: a URL's user information may be a secret.
        let where_ = match (req.uri().host(), req.uri().port_u16()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_string(),
            (None, _) => String::new(),
        };
        tokio::time::timeout(self.timeout, self.exchange(req, to))
            .await
            .map_err(|_| HttpError::Timeout(where_, self.timeout))?
    }

    async fn exchange(
        &self,
        req: Request<Vec<u8>>,
        to: Option<std::net::SocketAddr>,
    ) -> Result<Response<Vec<u8>>, HttpError> {
        let uri = req.uri().clone();
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| HttpError::Url(uri.to_string()))?
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let address = format!("{host}:{port}");
        let tcp = match to {
            Some(to) => TcpStream::connect(to).await,
            None => TcpStream::connect(&address).await,
        }
        .map_err(|e| HttpError::Connect(address.clone(), e))?;
        let (parts, body) = req.into_parts();
        let mut out = Request::from_parts(parts, Full::new(Bytes::from(body)));
        *out.uri_mut() = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|_| HttpError::Url(uri.to_string()))?;
        let authority = uri.authority().map(|a| a.as_str()).unwrap_or(&host);
        out.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(authority).map_err(|_| HttpError::Url(uri.to_string()))?,
        );
        if https {
            let name = ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|_| HttpError::Url(uri.to_string()))?;
            let tls = self
                .tls
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Tls(address.clone(), e))?;
            roundtrip(TokioIo::new(tls), out, &address).await
        } else {
            roundtrip(TokioIo::new(tcp), out, &address).await
        }
    }
}

async fn roundtrip<I>(
    io: I,
    req: Request<Full<Bytes>>,
    address: &str,
) -> Result<Response<Vec<u8>>, HttpError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let failed = |e: &dyn std::fmt::Display| HttpError::Http(address.to_string(), e.to_string());
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| failed(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(req).await.map_err(|e| failed(&e))?;
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| failed(&e))?
        .to_bytes();
    Ok(Response::from_parts(parts, body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_name_no_user_information() {
        // Accepts, and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let client = HttpClient::new(None, Duration::from_millis(300)).unwrap();
        let request = Request::post(format!("http://hook:s3cret@127.0.0.1:{port}/x"))
            .body(Vec::new())
            .unwrap();
        let error = client.send(request).await.unwrap_err().to_string();
        assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        held.abort();
    }
}
