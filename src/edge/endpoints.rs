//! What the gateway answers itself, under the reserved prefix `/patgate/`:
//! health, readiness, metrics and the JWT verification keys.

use http::{Method, Request, StatusCode};

use crate::edge::gateway::Gateway;
use crate::edge::response::{json, json_error, text, Body};

/// The reserved prefix; every other path belongs to Deploy.
pub const PREFIX: &str = "/patgate/";

/// Whether the gateway answers `path` itself: its own prefix, and the seed's token
/// listing route (which Deploy does not have behind the gateway).
pub fn is_reserved(path: &str) -> bool {
    path.starts_with(PREFIX) || path == "/patgate" || path == crate::api::DEPLOY_TOKENS_ROUTE
}

pub async fn handle<B>(gateway: &Gateway, req: &Request<B>) -> http::Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{path} answers GET only"),
        );
    }
    match path {
        "/patgate/healthz" => json(StatusCode::OK, &serde_json::json!({"status": "ok"})),
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
            gateway.metrics.render(gateway.tokens.cached_tokens()),
        ),
        "/patgate/.well-known/jwks.json" => match gateway.identity.jwks() {
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
