//! One request's path: reserved `/patgate/` routes, or credentials → token check →
//! upstream identity → proxy. [`Gateway`] is the application state, built once at
//! start-up and shared by every connection; nothing here takes a lock.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{ALLOW, CONNECTION, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::config::DeployTokens;
use crate::core::client::ClientInfo;
use crate::core::refusal::Refusal;
use crate::core::response::{json_error, Body};
use crate::edge::headers;
use crate::edge::live::{Live, LiveCell};
use crate::edge::proxy::{self, Peer, Proxy, StillValid, UpstreamWait};
use crate::edge::{access, admission, endpoints, expiry, forward_auth, forwarded};
use crate::metrics::{Metrics, Route};
use crate::store::Store;
use crate::tokens::check::TokenCheck;
use crate::tokens::credentials::Credential;
use crate::tokens::rules::Attempt;

/// How long a client over its failure limit waits for its 429.
const TARPIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Request id header, set on the upstream request and on the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const REALM: HeaderValue = HeaderValue::from_static("Basic realm=\"Digital.ai Deploy\"");

/// The answer to a method the gateway refuses ([`admission::is_refused_method`]).
pub fn refuse_method(method: &Method) -> Option<Response<Body>> {
    admission::is_refused_method(method.as_str().as_bytes()).then(|| {
        let mut response = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{method} is not accepted by this gateway"),
        );
        response.headers_mut().insert(
            ALLOW,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
        );
        response
    })
}

/// The routes below `/patgate/` that the request path does not answer itself (the API,
/// SSO, SCIM, the pages): wired once by the composition root, so that the request path
/// needs nothing of the floors above it.
pub trait OwnRoutes: Send + Sync {
    /// Whether `path` is one of them, and which class of route it is then.
    fn serves(&self, path: &str) -> Option<Route>;

    /// Answers one request; never fails (errors are answers).
    fn answer(
        &self,
        req: Request<Incoming>,
        client: ClientInfo,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + '_>>;
}

/// Application state shared by all connections.
pub struct Gateway {
    pub store: Store,
    /// The gateway's own routes that are not the request path's: the API, SSO, SCIM
    /// and the pages.
    pub routes: Arc<dyn OwnRoutes>,
    pub tokens: Arc<TokenCheck>,
    /// The settings a reload may change: identity, header rules and trusted proxies,
    /// access log, Deploy's own tokens, Deploy's address, the certificate.
    pub live: LiveCell,
    pub metrics: Arc<Metrics>,
    /// The main runtime, which owns the database connections; workers send their
    /// queries there.
    pub runtime: tokio::runtime::Handle,
    /// Whether metrics and readiness are served on `admin_listen` instead of here.
    pub admin_elsewhere: bool,
    /// Set at SIGTERM: readiness answers 503 from then on, while requests are still
    /// served (`shutdown_delay`).
    pub draining: std::sync::atomic::AtomicBool,
    /// Distinguishes this process's request ids from other replicas'.
    id_prefix: String,
    next_id: AtomicU64,
}

impl Gateway {
    pub fn new(
        store: Store,
        routes: Arc<dyn OwnRoutes>,
        tokens: Arc<TokenCheck>,
        live: Live,
        metrics: Arc<Metrics>,
    ) -> Gateway {
        let mut seed = [0u8; 4];
        let _ = getrandom::getrandom(&mut seed);
        Gateway {
            store,
            routes,
            tokens,
            live: LiveCell::new(live),
            metrics,
            runtime: tokio::runtime::Handle::current(),
            admin_elsewhere: false,
            draining: std::sync::atomic::AtomicBool::new(false),
            id_prefix: format!("{:08x}", u32::from_le_bytes(seed)),
            next_id: AtomicU64::new(1),
        }
    }

    /// Serves one request through this worker's `proxy`; never fails (errors become
    /// responses).
    pub async fn handle(
        self: Arc<Self>,
        proxy: Arc<Proxy>,
        req: Request<Incoming>,
        remote: SocketAddr,
        tls: bool,
    ) -> Result<Response<Body>, Infallible> {
        let id = self.start_request();
        let id_value = HeaderValue::from_str(&id).expect("hex digits and a dash");
        // A debug span costs nothing per request at the default level; the lines logged
        // at info and above carry the id themselves. Only the path: a query string may
        // carry secrets.
        let span =
            tracing::debug_span!("request", method = %req.method(), path = %req.uri().path());
        let peer = Peer {
            ip: remote.ip(),
            client: remote.ip(),
            tls,
            request_id: &id,
        };
        let started = std::time::Instant::now();
        let live = self.live.current();
        let access = live
            .access_log
            .then(|| (req.method().clone(), req.uri().path().to_string()));
        let mut note = access::Note::default();
        let mut response = self
            .route(&proxy, &live, req, peer, &id_value, &mut note)
            .instrument(span.clone())
            .await;
        response.headers_mut().insert(REQUEST_ID, id_value);
        if let Some(waited) = response.extensions().get::<UpstreamWait>() {
            note.upstream = Some(waited.0);
        }
        span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "response"));
        self.metrics
            .request_done(note.route, response.status().as_u16(), started.elapsed());
        if let Some((method, path)) = access {
            access::record(
                method.as_str(),
                &path,
                response.status().as_u16(),
                &note,
                started,
                &id,
            );
        }
        Ok(response)
    }

    /// Counts a new request and returns its id.
    pub fn start_request(&self) -> String {
        self.metrics
            .local()
            .requests
            .fetch_add(1, Ordering::Relaxed);
        // By hand rather than format!: this runs for every request.
        let mut n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let mut id = String::with_capacity(self.id_prefix.len() + 1 + digits.len() - start);
        id.push_str(&self.id_prefix);
        id.push('-');
        id.extend(digits[start..].iter().map(|&d| d as char));
        id
    }

    async fn route(
        &self,
        proxy: &Proxy,
        live: &Live,
        mut req: Request<Incoming>,
        peer: Peer<'_>,
        id: &HeaderValue,
        note: &mut access::Note,
    ) -> Response<Body> {
        // Before anything reads the body, on every route: its end is in doubt.
        if let Some(bad) = headers::transfer_coding_problem(req.headers()) {
            note.refusal = Some(bad.code());
            return bad.response();
        }
        if admission::is_reserved(req.uri().path()) {
            note.kind = access::Kind::Gateway;
            note.route = Route::Gateway;
            if forward_auth::serves(req.uri().path()) {
                note.route = Route::ForwardAuth;
                return forward_auth::handle(self, req, peer).await;
            }
            if let Some(route) = self.routes.serves(req.uri().path()) {
                note.route = route;
                let forwarded = req
                    .headers()
                    .get_all("x-forwarded-for")
                    .iter()
                    .map(|v| v.as_bytes());
                let (https, host) =
                    forwarded::addressed(req.headers(), live.rules.trusts_proxy(peer.ip), peer.tls);
                let client = ClientInfo {
                    ip: live.rules.client(peer.ip, forwarded).ip,
                    tls: peer.tls,
                    https,
                    host,
                    request_id: peer.request_id.to_string(),
                };
                return self.routes.answer(req, client).await;
            }
            return endpoints::handle(self, &req, endpoints::Listener::Main).await;
        }
        if let Some(refused) = refuse_method(req.method()) {
            return refused;
        }
        let credential = admission::credential_of(req.headers());
        let token_request = matches!(credential, Credential::Token { .. });
        note.kind = match credential {
            Credential::None => access::Kind::None,
            Credential::Token { .. } => access::Kind::Token,
            Credential::Deploy => access::Kind::DeployToken,
            Credential::Unreadable(_) => access::Kind::Unreadable,
        };
        if let Err(bad) = live.rules.check(&req, token_request) {
            self.metrics
                .local()
                .header_refusals
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                request_id = peer.request_id,
                reason = bad.code(),
                "refused request"
            );
            note.refusal = Some(bad.code());
            return bad.response();
        }
        // For the token's rules; both clones share, not copy, for standard methods.
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let headers = req.headers_mut();
        let upgrade = proxy::prepare(headers);
        let resolved = live.rules.client_of(peer.ip, headers);
        if live.rules.apply(headers, &live.identity, token_request) {
            tracing::info!(
                request_id = peer.request_id,
                "removed client-supplied identity headers"
            );
        }
        let peer = Peer {
            client: live.rules.set_forwarded_for(peer.ip, &resolved, headers),
            ..peer
        };
        note.client = Some(peer.client);
        headers.insert(REQUEST_ID, id.clone());
        match credential {
            Credential::None => {
                self.metrics
                    .local()
                    .passed_through
                    .fetch_add(1, Ordering::Relaxed);
                // The gateway's own cookies are for its routes, never Deploy's to see.
                headers::strip_own_cookies(headers);
                proxy.forward(req, peer, upgrade, None).await
            }
            Credential::Deploy if live.deploy_tokens == DeployTokens::Refuse => {
                self.metrics
                    .local()
                    .deploy_token_refusals
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    request_id = peer.request_id,
                    reason = "deploy_token_refused",
                    "refused a personal access token of Deploy's own"
                );
                note.refusal = Some("deploy_token_refused");
                let mut response = json_error(
                    StatusCode::UNAUTHORIZED,
                    "deploy_token_refused",
                    "this gateway accepts only its own personal access tokens (deploy_tokens: refuse), and this one is not in its format: create one on the Access tokens page at /patgate/",
                );
                response.headers_mut().insert(WWW_AUTHENTICATE, REALM);
                response
            }
            Credential::Deploy => {
                self.metrics
                    .local()
                    .deploy_tokens
                    .fetch_add(1, Ordering::Relaxed);
                proxy.forward(req, peer, upgrade, None).await
            }
            Credential::Unreadable(message) => {
                self.metrics
                    .local()
                    .bad_credentials
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    request_id = peer.request_id,
                    reason = message,
                    "refused unreadable credentials"
                );
                note.refusal = Some("malformed_credentials");
                json_error(StatusCode::BAD_REQUEST, "malformed_credentials", message)
            }
            Credential::Token {
                token,
                claimed_user,
            } => {
                note.route = Route::Token;
                let attempt = Attempt {
                    method: method.as_str().as_bytes(),
                    path: uri.path().as_bytes(),
                };
                let principal = match self
                    .tokens
                    .check(&token, claimed_user.as_deref(), peer.client, attempt)
                    .await
                {
                    Ok(principal) => principal,
                    Err(refusal) => {
                        note.refusal = Some(refusal.code());
                        return self.refuse(refusal, peer.request_id).await;
                    }
                };
                // The token, and any cookie riding along (a session Deploy would keep
                // honouring after the token is revoked), went with the header rules.
                if let Err(e) = live
                    .identity
                    .apply(headers, &principal.username, &principal.roles)
                    .await
                {
                    return identity_failed(peer.request_id, &e);
                }
                tracing::debug!(user = %principal.username, "authenticated");
                if live.access_log {
                    note.user = Some(principal.username.to_string());
                    note.token_id = Some(principal.token_id.to_string());
                    note.scope = Some(principal.scope.as_str());
                }
                self.metrics
                    .local()
                    .authenticated
                    .fetch_add(1, Ordering::Relaxed);
                let mut still_valid = None;
                if upgrade.is_some() {
                    let tokens = self.tokens.clone();
                    let ip = peer.client;
                    still_valid = Some(Box::new(move || {
                        let tokens = tokens.clone();
                        let token = token.clone();
                        let claimed_user = claimed_user.clone();
                        let (method, uri) = (method.clone(), uri.clone());
                        Box::pin(async move {
                            let attempt = Attempt {
                                method: method.as_str().as_bytes(),
                                path: uri.path().as_bytes(),
                            };
                            tokens
                                .still_valid(&token, claimed_user.as_deref(), ip, attempt)
                                .await
                        })
                            as std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>>
                    }) as StillValid);
                }
                let mut response = proxy.forward(req, peer, upgrade, still_valid).await;
                // Nor may Deploy hand out a session for a token-authenticated request,
                // by cookie or in a URL.
                response.headers_mut().remove(SET_COOKIE);
                headers::strip_session_id(response.headers_mut());
                expiry::set_headers(
                    response.headers_mut(),
                    principal.expires_at(),
                    crate::core::time::now(),
                    self.tokens.expiry_warning_secs(),
                );
                response
            }
        }
    }

    /// The answer to a refused token (after the tarpit, for a limited address).
    pub async fn refuse(&self, refusal: Refusal, request_id: &str) -> Response<Body> {
        self.metrics.refused(refusal);
        if refusal == Refusal::TooManyFailures {
            // Tarpit: a flooding client waits on its own connection, which costs this
            // event loop nothing, instead of asking again at once. Counted, not logged
            // one by one.
            tokio::time::sleep(TARPIT).await;
        } else {
            tracing::info!(request_id, reason = refusal.code(), "refused token");
        }
        let status = refusal.status();
        let mut response = json_error(status, refusal.code(), &refusal.to_string());
        let headers = response.headers_mut();
        match status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(WWW_AUTHENTICATE, REALM);
            }
            StatusCode::TOO_MANY_REQUESTS => {
                headers.insert(
                    RETRY_AFTER,
                    HeaderValue::from(self.tokens.retry_after_secs()),
                );
                // Make a flooding client pay for a new connection each time.
                headers.insert(CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// The answer when the user's identity cannot be put into the upstream request.
pub fn identity_failed(request_id: &str, error: &anyhow::Error) -> Response<Body> {
    tracing::warn!(
        request_id,
        error = %error,
        "could not assert the user's identity upstream"
    );
    json_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "identity_failed",
        "the gateway could not pass your identity to Deploy",
    )
}
