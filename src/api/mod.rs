//! The self-service and admin API under `/patgate/api/v1/`, and the SSO routes under
//! `/patgate/sso/`: JSON in and out, routed with axum. SCIM (`/patgate/scim/v2`,
//! [`crate::api::scim`]) is nested in the same router and shares its handling.
//!
//! The gateway's router hands these paths here ([`Api::handle`]): the body is read
//! (at most [`MAX_BODY`]) on the worker, then the request runs on the main runtime,
//! which owns the database connections. Who is calling is decided in `signin`; each
//! resource has its own file. Nothing here is on the token hot path.
//!
//! May import: every floor up to `edge` (it uses `edge::admission` for the credential
//! rule both paths share).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::FromRequest;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use tower::ServiceExt;

use crate::config::Config;
use crate::core::client::ClientInfo;
use crate::core::error::ApiError;
use crate::core::response::{full, json_error, security_headers, Body};
use crate::core::token::TokenHasher;
use crate::edge::admission::DEPLOY_TOKENS_ROUTE;
use crate::identity::UpstreamIdentity;
use crate::notify::Notifier;
use crate::signin::SignIn;
use crate::store::{AuditEvent, Store};
use crate::tokens::check::TokenCheck;

pub mod audit;
pub mod caller;
pub mod channels;
pub mod freshness;
pub mod inventory;
pub mod leaked;
pub mod me;
pub mod notifications;
pub mod openapi;
pub mod scim;
pub mod service_accounts;
pub mod session;
pub mod settings;
pub mod smtp_servers;
pub mod sso;
pub mod token_usage;
pub mod tokens;
pub mod trust;
pub mod users;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;
/// Path prefixes this module answers (SCIM, [`crate::api::scim`], is nested in its router).
const PREFIXES: [&str; 3] = ["/patgate/api/", "/patgate/sso/", "/patgate/scim/"];

/// Whether `path` is answered by the API.
pub fn serves(path: &str) -> bool {
    path == DEPLOY_TOKENS_ROUTE || PREFIXES.iter().any(|p| path.starts_with(p))
}

/// The API's shared state.
pub struct Api {
    pub store: Store,
    pub tokens: Arc<TokenCheck>,
    pub hasher: TokenHasher,
    pub signin: Arc<SignIn>,
    /// The expiry notifier: SMTP items' passwords, test mails, passes.
    pub notifier: Arc<Notifier>,
    /// `leaked.secret`: the key reports of leaked tokens are signed with.
    pub leaked_secret: Option<String>,
    /// SCIM provisioning's secret; `None` while SCIM is off. Replaced by a reload.
    pub scim: std::sync::RwLock<Option<crate::config::Scim>>,
    /// The CI token exchange and the issuers' keys.
    pub exchanger: crate::exchange::Exchanger,
    /// `audit.retention` in seconds, for the housekeeping; replaced by a reload.
    audit_retention: AtomicU64,
    /// The main runtime, where the database connections live.
    runtime: tokio::runtime::Handle,
    router: Router,
}

impl Api {
    pub fn new(
        config: &Config,
        store: Store,
        tokens: Arc<TokenCheck>,
        hasher: TokenHasher,
        notifier: Arc<Notifier>,
        identity: Option<UpstreamIdentity>,
    ) -> anyhow::Result<Arc<Api>> {
        let signin = Arc::new(SignIn::new(
            config,
            store.clone(),
            hasher.clone(),
            identity,
        )?);
        let exchanger =
            crate::exchange::Exchanger::new(&config.exchange, store.clone(), hasher.clone())?;
        Ok(Arc::new_cyclic(|me: &std::sync::Weak<Api>| Api {
            store,
            tokens,
            hasher,
            signin,
            notifier,
            leaked_secret: config.leaked.secret.clone(),
            scim: std::sync::RwLock::new(config.scim.clone()),
            exchanger,
            audit_retention: AtomicU64::new(config.audit.retention.as_secs()),
            runtime: tokio::runtime::Handle::current(),
            router: router(me.clone()),
        }))
    }

    /// How long audit entries are kept (`audit.retention`).
    pub fn audit_retention(&self) -> Duration {
        Duration::from_secs(self.audit_retention.load(Ordering::Relaxed))
    }

    /// Keeps audit entries `retention` long from the next housekeeping round on.
    pub fn set_audit_retention(&self, retention: Duration) {
        self.audit_retention
            .store(retention.as_secs(), Ordering::Relaxed);
    }

    /// Serves one request under the API's paths; never fails (errors are answers). A
    /// state change from another site is refused before any route sees it.
    pub async fn handle(&self, req: Request<Incoming>, client: ClientInfo) -> Response<Body> {
        let mut response = self.answer(req, client).await;
        security_headers(response.headers_mut());
        response
    }

    async fn answer(&self, req: Request<Incoming>, client: ClientInfo) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "body_too_large",
                    &format!("the request body is larger than {} KiB", MAX_BODY / 1024),
                )
            }
            Err(_) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    "the request body could not be read",
                )
            }
        };
        if has_nul(&parts.uri) {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the path or query holds a NUL character (%00), which no text here may hold",
            );
        }
        let cross_site = caller::check_origin(&parts.method, &parts.headers, &client).err();
        let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
        req.extensions_mut().insert(client);
        let router = self.router.clone();
        let answered = self
            .runtime
            .spawn(async move {
                let response = match cross_site {
                    Some(refused) => refused.into_response(),
                    None => router.oneshot(req).await.into_response(),
                };
                let (parts, body) = response.into_parts();
                axum::body::to_bytes(body, usize::MAX)
                    .await
                    .map(|bytes| (parts, bytes))
            })
            .await;
        match answered {
            Ok(Ok((mut parts, bytes))) => {
                // Answers carry tokens, CSRF tokens and personal data: never stored.
                parts
                    .headers
                    .entry(http::header::CACHE_CONTROL)
                    .or_insert(http::HeaderValue::from_static("no-store"));
                Response::from_parts(parts, full(bytes))
            }
            _ => json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the request could not be completed; see the gateway's log",
            ),
        }
    }

    /// Writes an audit entry; a failure is logged, never shown to the caller.
    pub async fn audit(&self, event: AuditEvent) {
        self.store.audit_or_log(event).await
    }

    /// Audits what a caller did to something that is not a user or a token (an SMTP
    /// server item, a trust policy), with its facts in `detail`.
    pub async fn audit_change(
        &self,
        caller: &caller::Caller,
        action: &'static str,
        detail: serde_json::Value,
    ) {
        self.audit(AuditEvent {
            actor: Some(caller.username.clone()),
            action,
            ip: Some(caller.ip.to_string()),
            detail: Some(detail),
            ..AuditEvent::default()
        })
        .await
    }
}

/// The API's state as handlers see it: the router holds a weak reference (the API owns
/// the router), upgraded per request.
#[derive(Clone)]
pub struct ApiRef(std::sync::Weak<Api>);

impl ApiRef {
    pub fn get(&self) -> Result<Arc<Api>, ApiError> {
        self.0.upgrade().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the gateway is stopping",
            )
        })
    }
}

fn router(api: std::sync::Weak<Api>) -> Router {
    Router::new()
        .route("/patgate/api/v1/me", get(me::get_me).put(me::put_me))
        .route(
            "/patgate/api/v1/session",
            get(session::options)
                .post(session::sign_in)
                .delete(session::sign_out),
        )
        .route(
            "/patgate/api/v1/tokens",
            get(tokens::list).post(tokens::create),
        )
        .route("/patgate/api/v1/tokens/{id}", delete(tokens::remove))
        .route("/patgate/api/v1/tokens/{id}/rotate", post(tokens::rotate))
        .route("/patgate/api/v1/tokens/{id}/usage", get(token_usage::usage))
        .route("/patgate/api/v1/leaked", post(leaked::report))
        .route(
            "/patgate/api/v1/service-accounts",
            get(service_accounts::list).post(service_accounts::create),
        )
        .route(
            "/patgate/api/v1/service-accounts/{name}",
            get(service_accounts::one)
                .put(service_accounts::replace)
                .delete(service_accounts::remove),
        )
        .route(
            "/patgate/api/v1/service-accounts/{name}/tokens",
            get(service_accounts::tokens).post(service_accounts::create_token),
        )
        .route(
            "/patgate/api/v1/settings",
            get(settings::get_settings).put(settings::put_settings),
        )
        .route("/patgate/api/v1/users", get(users::list))
        .route("/patgate/api/v1/users/{username}", get(users::one))
        .route(
            "/patgate/api/v1/users/{username}/tokens",
            get(users::tokens).delete(users::revoke_all),
        )
        .route(
            "/patgate/api/v1/users/{username}/disable",
            post(users::disable),
        )
        .route(
            "/patgate/api/v1/users/{username}/enable",
            post(users::enable),
        )
        .route(
            "/patgate/api/v1/users/{username}/sso-link",
            axum::routing::put(users::link).delete(users::unlink),
        )
        .route("/patgate/api/v1/audit", get(audit::list))
        .route("/patgate/api/v1/token-inventory", get(inventory::list))
        .route(
            "/patgate/api/v1/token-inventory/revoke",
            post(inventory::revoke),
        )
        .route(
            "/patgate/api/v1/smtp-servers",
            get(smtp_servers::list).post(smtp_servers::create),
        )
        .route(
            "/patgate/api/v1/smtp-servers/{id}",
            get(smtp_servers::one)
                .put(smtp_servers::update)
                .delete(smtp_servers::remove),
        )
        .route(
            "/patgate/api/v1/smtp-servers/{id}/test",
            post(smtp_servers::send_test),
        )
        .route("/patgate/api/v1/notifications", get(notifications::status))
        .route(
            "/patgate/api/v1/notification-channels",
            get(channels::list).post(channels::create),
        )
        .route(
            "/patgate/api/v1/notification-channels/{id}",
            delete(channels::remove),
        )
        .route(
            "/patgate/api/v1/trust-policies",
            get(trust::list).post(trust::create),
        )
        .route(
            "/patgate/api/v1/trust-policies/{name}",
            get(trust::one).put(trust::replace).delete(trust::remove),
        )
        .route(
            "/patgate/api/v1/token-exchange",
            post(trust::token_exchange),
        )
        .route(
            "/patgate/api/v1/openapi.json",
            get(openapi::openapi_document),
        )
        .route("/patgate/sso/login", get(sso::login))
        .route("/patgate/sso/callback", get(sso::callback))
        .route(DEPLOY_TOKENS_ROUTE, get(tokens::deploy_list))
        .nest(crate::api::scim::BASE, crate::api::scim::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(ApiRef(api))
}

async fn not_found(uri: http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{} is not a patgate endpoint", uri.path()),
    )
}

async fn method_not_allowed(method: http::Method, uri: http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {method}", uri.path()),
    )
}

/// A JSON request body, parsed strictly: unknown fields and wrong types are refused
/// with a message that names the field.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(not_json());
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("unreadable_body", "could not read the body"))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// An optional JSON request body: an empty one, or JSON `null`, stands for
/// `T::default()`; anything else must say `Content-Type: application/json` and parse as
/// [`JsonBody`] does.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_json = is_json(req.headers());
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::bad_request("unreadable_body", "could not read the body"))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !is_json {
            return Err(not_json());
        }
        if parse_json_value(&bytes)?.is_null() {
            return Ok(OptionalJsonBody(T::default()));
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

/// Whether the path or query holds an encoded NUL, which no database keeps in text.
fn has_nul(uri: &http::Uri) -> bool {
    let nul = |text: &str| {
        text.as_bytes()
            .windows(3)
            .any(|w| w[0] == b'%' && w[1] == b'0' && w[2] == b'0')
    };
    nul(uri.path()) || uri.query().is_some_and(nul)
}

pub(crate) fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

pub(crate) fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as JSON with Content-Type: application/json",
    )
}

/// A JSON body as a value: text without NUL characters (no database keeps them), and
/// numbers with nothing after the point (`25.0`) as the integers JSON Schema takes
/// them for.
pub fn parse_json_value(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}")))?;
    if let Some(path) = settle(&mut value, "") {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("{path}: text may not hold a NUL character (\\u0000)"),
        ));
    }
    Ok(value)
}

/// Turns whole floats into integers in place; returns where a NUL was found, if one was.
fn settle(value: &mut serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    let here = || {
        if at.is_empty() {
            ".".to_string()
        } else {
            at.to_string()
        }
    };
    match value {
        Value::String(s) if s.contains('\0') => Some(here()),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    *value = Value::from(f as i64);
                }
            }
            None
        }
        Value::Array(items) => items
            .iter_mut()
            .enumerate()
            .find_map(|(i, item)| settle(item, &format!("{at}[{i}]"))),
        Value::Object(fields) => fields.iter_mut().find_map(|(key, item)| {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            if key.contains('\0') {
                return Some(format!("{path} (the key)"));
            }
            settle(item, &path)
        }),
        _ => None,
    }
}

/// Parses a JSON body, which must be an object, naming the offending field in errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = parse_json_value(bytes)?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalid_body",
            "invalid JSON body: expected an object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if path == "." || path.is_empty() {
            format!("invalid JSON body: {inner}")
        } else {
            format!("field {path}: {inner}")
        };
        ApiError::bad_request("invalid_body", message)
    })
}

/// A query string, with errors in the API's shape.
pub fn query<T>(parsed: Result<axum::extract::Query<T>, QueryRejection>) -> Result<T, ApiError> {
    parsed
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
}

/// Page and page size from a query, with their limits.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

impl Page {
    pub const MAX_PER_PAGE: i64 = crate::core::pattern::PER_PAGE_MAX;

    pub fn new(page: Option<i64>, per_page: Option<i64>) -> Result<Page, ApiError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(crate::core::pattern::PER_PAGE_DEFAULT);
        if page < 1 {
            return Err(ApiError::bad_request(
                "invalid_query",
                "page: pages start at 1",
            ));
        }
        if !(1..=Self::MAX_PER_PAGE).contains(&per_page) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("per_page: between 1 and {}", Self::MAX_PER_PAGE),
            ));
        }
        Ok(Page { page, per_page })
    }

    pub fn offset(self) -> i64 {
        (self.page - 1).saturating_mul(self.per_page)
    }
}
