//! `/patgate/auth`: forward authentication for a proxy an operator already runs in
//! front of Deploy (nginx `auth_request`, Traefik ForwardAuth, Envoy HTTP `ext_authz`).
//!
//! The proxy asks with the client's headers and tells what the client asked for (its
//! method, URI and address); the answer is the general path's own decision: the same
//! credential reading, the same refusals, the same token check. 200 carries the
//! identity headers the gateway would have sent Deploy, for the proxy to pass on;
//! anything else is the JSON error. Nothing is forwarded from here, and only callers
//! listed in `trusted_proxies` are answered: the identity headers include the shared
//! secret Deploy trusts.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use http::header::{CACHE_CONTROL, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use crate::core::response::{json, json_error, Body};
use crate::edge::admission;
use crate::edge::gateway::{self, Gateway};
use crate::edge::headers;
use crate::edge::proxy::Peer;
use crate::tokens::credentials::Credential;
use crate::tokens::rules::Attempt;

/// Where the endpoint is served; Envoy's `path_prefix` mode appends the original path.
pub const PATH: &str = "/patgate/auth";

/// Whether `path` is the forward-auth endpoint (or below it, as Envoy asks).
pub fn serves(path: &str) -> bool {
    path.strip_prefix(PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What the client asked the proxy for, as the proxy reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    pub method: Method,
    /// The path, without the query.
    pub path: String,
    /// The client's address: from the proxy's `X-Forwarded-For` or `X-Real-IP`.
    pub client: IpAddr,
}

/// Headers that carry the original method, first match wins: nginx's convention,
/// then Traefik's.
const METHOD_HEADERS: [&str; 2] = ["x-original-method", "x-forwarded-method"];
/// Headers that carry the original URI: nginx, Traefik, then Envoy's record of a path
/// its route rewrote.
const URI_HEADERS: [&str; 3] = ["x-original-uri", "x-forwarded-uri", "x-envoy-original-path"];

fn header<'a>(headers: &'a HeaderMap, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Why the proxy's description of the original request cannot be used: the proxy is
/// misconfigured (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadOriginal {
    MissingUri,
    InvalidUri,
    InvalidMethod,
}

impl BadOriginal {
    pub fn response(self) -> Response<Body> {
        let (code, message) = match self {
            BadOriginal::MissingUri => ("missing_original_uri", "the proxy did not say what the client asked for: send X-Original-URI (nginx) or X-Forwarded-Uri (Traefik), or append the path to /patgate/auth (Envoy path_prefix)"),
            BadOriginal::InvalidUri => ("invalid_original_uri", "the original URI must be a path starting with /"),
            BadOriginal::InvalidMethod => ("invalid_original_method", "the original method the proxy sent is not an HTTP method"),
        };
        json_error(StatusCode::BAD_REQUEST, code, message)
    }
}

/// Reads the original request from the proxy's headers (or, from Envoy, from the
/// request itself: its method, and the path after [`PATH`]).
pub fn original<B>(
    gateway: &Gateway,
    req: &Request<B>,
    peer: IpAddr,
) -> Result<OriginalRequest, BadOriginal> {
    let headers = req.headers();
    let uri = match header(headers, &URI_HEADERS) {
        Some(uri) => uri.to_string(),
        None => {
            let rest = &req.uri().path()[PATH.len()..];
            if rest.is_empty() {
                return Err(BadOriginal::MissingUri);
            }
            match req.uri().query() {
                Some(query) => format!("{rest}?{query}"),
                None => rest.to_string(),
            }
        }
    };
    let path = uri.split(['?', '#']).next().unwrap_or_default().to_string();
    if !path.starts_with('/') {
        return Err(BadOriginal::InvalidUri);
    }
    let method = match header(headers, &METHOD_HEADERS) {
        Some(name) => {
            Method::from_bytes(name.as_bytes()).map_err(|_| BadOriginal::InvalidMethod)?
        }
        None => req.method().clone(),
    };
    Ok(OriginalRequest {
        method,
        path,
        client: client(gateway, headers, peer),
    })
}

/// The client: the right-most untrusted `X-Forwarded-For` entry, as on the general
/// path, else a `X-Real-IP` the proxy set, else the proxy itself.
fn client(gateway: &Gateway, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
    let forwarded = headers.get_all("x-forwarded-for");
    if forwarded.iter().next().is_some() {
        return gateway
            .live
            .current()
            .rules
            .client(peer, forwarded.iter().map(HeaderValue::as_bytes))
            .ip;
    }
    header(headers, &["x-real-ip"])
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .map_or(peer, |ip| ip.to_canonical())
}

/// A refusal about the request rather than the credential: 403 with the general path's
/// error code (nginx passes on only 401 and 403).
fn forbidden(from: Response<Body>) -> Response<Body> {
    let mut response = from;
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().remove(http::header::ALLOW);
    response
}

fn unauthorized(code: &str, message: &str) -> Response<Body> {
    let mut response = json_error(StatusCode::UNAUTHORIZED, code, message);
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"Digital.ai Deploy\""),
    );
    response
}

/// Answers one forward-auth request from `peer`.
pub async fn handle<B>(gateway: &Gateway, req: Request<B>, peer: Peer<'_>) -> Response<Body> {
    let live = gateway.live.current();
    if !live.rules.trusts_proxy(peer.ip) {
        tracing::info!(request_id = peer.request_id, caller = %peer.ip, "refused forward-auth from an untrusted caller");
        return json_error(
            StatusCode::FORBIDDEN,
            "untrusted_caller",
            "/patgate/auth answers only proxies listed in trusted_proxies; add your proxy's address there",
        );
    }
    let original = match original(gateway, &req, peer.ip) {
        Ok(original) => original,
        Err(bad) => return bad.response(),
    };
    if let Some(refused) = gateway::refuse_method(&original.method) {
        return forbidden(refused);
    }
    let (token, claimed_user) = match admission::credential_of(req.headers()) {
        Credential::Token {
            token,
            claimed_user,
        } => (token, claimed_user),
        Credential::None => return unauthorized(
            "missing_credentials",
            "send a personal access token: Basic base64(\":\" + token) or x-deploy-personal-token",
        ),
        // The proxy asking cannot be told to pass a credential on that only Deploy
        // can judge.
        Credential::Deploy => return unauthorized(
            "deploy_token_not_checked",
            "forward-auth checks the gateway's own personal access tokens (dpat_…); a token of Deploy's own must go to Deploy without forward-auth",
        ),
        Credential::Unreadable(message) => {
            gateway
                .metrics
                .local()
                .bad_credentials
                .fetch_add(1, Ordering::Relaxed);
            return unauthorized("malformed_credentials", message);
        }
    };
    if headers::has_session_id(original.path.as_bytes()) {
        return forbidden(headers::BadRequest::SessionIdInUrl.response());
    }
    let principal = match gateway
        .tokens
        .check(
            &token,
            claimed_user.as_deref(),
            original.client,
            // Scope and address allowlist judge the request the proxy asks about.
            Attempt {
                method: original.method.as_str().as_bytes(),
                path: original.path.as_bytes(),
            },
        )
        .await
    {
        Ok(principal) => principal,
        Err(refusal) => return gateway.refuse(refusal, peer.request_id).await,
    };
    let mut identity = HeaderMap::new();
    if let Err(e) = live
        .identity
        .apply(&mut identity, &principal.username, &principal.roles)
        .await
    {
        return gateway::identity_failed(peer.request_id, &e);
    }
    gateway
        .metrics
        .local()
        .authenticated
        .fetch_add(1, Ordering::Relaxed);
    let mut response = json(
        StatusCode::OK,
        &serde_json::json!({ "user": &*principal.username }),
    );
    response.headers_mut().extend(identity);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_endpoint_and_envoy_style_paths_below_it() {
        assert!(serves("/patgate/auth"));
        assert!(serves("/patgate/auth/api/v1/deployit"));
        assert!(!serves("/patgate/authx"));
        assert!(!serves("/patgate/api/v1/me"));
    }
}
