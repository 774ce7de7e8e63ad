//! What the gateway answers itself, under the reserved prefix `/patgate/`:
//! health, readiness, metrics and the JWT verification keys; and the admin listener
//! (`admin_listen`), which takes metrics and readiness off Deploy's port.

use http::{Method, Request, StatusCode};

use crate::core::response::{json, json_error, text, Body};
use crate::edge::gateway::Gateway;
use crate::metrics::Sampled;
use crate::store::Backend;

/// Routes that move to `admin_listen` when it is set (`healthz` stays on the main port
/// for load balancers).
const ADMIN_ROUTES: [&str; 2] = ["/patgate/metrics", "/patgate/readyz"];

/// The listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `listen`: Deploy's port.
    Main,
    /// `admin_listen`.
    Admin,
}

/// Answers a gateway route; `listener` says which listener the request came in on.
pub async fn handle<B>(
    gateway: &Gateway,
    req: &Request<B>,
    listener: Listener,
) -> http::Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{path} answers GET only"),
        );
    }
    let admin_route = ADMIN_ROUTES.contains(&path);
    match listener {
        Listener::Main if admin_route && gateway.admin_elsewhere => {
            return json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("{path} is served on admin_listen, not on this port"),
            )
        }
        Listener::Admin if !admin_route && path != "/patgate/healthz" => {
            return json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("{path} is not served on admin_listen; it answers /patgate/metrics, /patgate/readyz and /patgate/healthz"),
            )
        }
        _ => {}
    }
    match path {
        "/patgate/healthz" => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
        "/patgate/readyz" if gateway.draining.load(std::sync::atomic::Ordering::Relaxed) => {
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "shutting down: the listeners close after shutdown_delay",
            )
        }
        "/patgate/readyz" => match ready(gateway).await {
            Ok(()) => json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
            Err(e) => {
                tracing::warn!(error = %e, "not ready");
                json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not_ready",
                    "the token database is unreachable or not migrated",
                )
            }
        },
        "/patgate/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            gateway.metrics.render(&Sampled {
                cached_tokens: gateway.tokens.cached_tokens(),
                feed_lag_secs: gateway.tokens.feed_lag_secs(),
                backend: match gateway.store.backend() {
                    Backend::Sqlite => "sqlite",
                    Backend::Postgres => "postgres",
                },
            }),
        ),
        "/patgate/.well-known/jwks.json" => match gateway.live.current().identity.jwks() {
            Some(jwks) => json(StatusCode::OK, &jwks),
            None => json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no signing keys: upstream.identity.mode is not jwt",
            ),
        },
        _ => json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("{path} is not a patgate endpoint"),
        ),
    }
}

/// Readiness, checked on the runtime that owns the database connections.
async fn ready(gateway: &Gateway) -> anyhow::Result<()> {
    let store = gateway.store.clone();
    let check = gateway.runtime.spawn(async move { store.ready().await });
    match tokio::time::timeout(std::time::Duration::from_secs(2), check).await {
        Ok(Ok(result)) => Ok(result?),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => anyhow::bail!("the database did not answer within 2 s"),
    }
}

/// Serves `/patgate/metrics`, `/patgate/readyz` and `/patgate/healthz` on the admin
/// listener until `stop`.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    gateway: std::sync::Arc<Gateway>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(crate::edge::limits::HEAD_TIMEOUT);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin listener: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let gateway = gateway.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let gateway = gateway.clone();
                async move {
                    let id = gateway.start_request();
                    let mut response = handle(&gateway, &req, Listener::Admin).await;
                    if let Ok(value) = http::HeaderValue::from_str(&id) {
                        response
                            .headers_mut()
                            .insert(crate::edge::gateway::REQUEST_ID, value);
                    }
                    Ok::<_, std::convert::Infallible>(response)
                }
            });
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
