//! SCIM 2.0 provisioning at `/patgate/scim/v2` (RFC 7643, RFC 7644): the part of
//! `/Users` that Okta and Azure AD use to create, find, change, deactivate and delete
//! users, `/Groups`, whose memberships become users' roles, and the discovery
//! documents that describe both.
//!
//! What an identity provider changes here reaches the request path through the store:
//! `active: false` or a delete disables the user by the admin API's own path
//! ([`crate::accounts::access::change_access`]), so their tokens stop on every replica within
//! a second and their browser sessions end. This module never touches a token's secret,
//! never renames a user (tokens and Deploy's audit trail hang on the name), and answers
//! nothing while `scim.secret` is unset.

use axum::extract::FromRequestParts;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::api::ApiRef;
use crate::core::client::ClientInfo;

mod discovery;
mod filter;
mod groups;
mod users;

/// Where SCIM is served.
pub const BASE: &str = "/patgate/scim/v2";
/// The media type of every SCIM message.
pub const MEDIA_TYPE: &str = "application/scim+json";
/// Largest page a list answers.
pub const MAX_RESULTS: i64 = 200;

const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// The routes under [`BASE`]; nested into the API's router.
pub fn router() -> Router<ApiRef> {
    Router::new()
        .route("/Users", get(users::list).post(users::create))
        .route(
            "/Users/{id}",
            get(users::one)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/Groups", get(groups::list).post(groups::create))
        .route(
            "/Groups/{id}",
            get(groups::one)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route(
            "/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/ResourceTypes", get(discovery::resource_types))
        .route("/ResourceTypes/{name}", get(discovery::resource_type))
        .route("/Schemas", get(discovery::schemas))
        .route("/Schemas/{urn}", get(discovery::schema))
        .route("/.search", axum::routing::post(discovery::search_all))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found(uri: http::Uri) -> ScimError {
    ScimError::new(
        StatusCode::NOT_FOUND,
        None,
        format!("{} is not a SCIM endpoint of this server", uri.path()),
    )
}

async fn method_not_allowed(method: http::Method, uri: http::Uri) -> ScimError {
    ScimError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        None,
        format!("{} does not answer {method}", uri.path()),
    )
}

/// A SCIM error answer (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ScimError {
    pub status: StatusCode,
    /// `invalidFilter`, `invalidValue`, `uniqueness`, `mutability`, `invalidSyntax`, …
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    pub fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub fn no_user(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            format!("no User with id {id:?}"),
        )
    }
}

impl From<crate::store::StoreError> for ScimError {
    fn from(e: crate::store::StoreError) -> Self {
        ScimError::from(crate::core::error::ApiError::from(e))
    }
}

impl From<crate::core::error::ApiError> for ScimError {
    fn from(e: crate::core::error::ApiError) -> Self {
        ScimError::new(e.status, None, e.message)
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> axum::response::Response {
        let mut body = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = scim_type.into();
        }
        let mut response = scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"patgate SCIM\""),
            );
        }
        response
    }
}

const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The operations of a PATCH body (RFC 7644 §3.5.2): its `schemas`, when given, must
/// name the PatchOp message; `Operations` (any case) must be a list.
pub(super) fn patch_operations(
    body: &serde_json::Map<String, serde_json::Value>,
) -> Result<&Vec<serde_json::Value>, ScimError> {
    let declared = body.get("schemas").and_then(serde_json::Value::as_array);
    if declared.is_some_and(|s| !s.iter().any(|v| v == PATCH_SCHEMA)) {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("a PATCH body's schemas must name {PATCH_SCHEMA}"),
        ));
    }
    body.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("operations"))
        .and_then(|(_, v)| v.as_array())
        .ok_or_else(|| ScimError::bad("invalidSyntax", "a PATCH body needs an Operations list"))
}

/// A SCIM answer: JSON as `application/scim+json`.
pub fn scim_json(status: StatusCode, body: &serde_json::Value) -> axum::response::Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    response
}

/// A SCIM client that presented `scim.secret`; every SCIM handler takes one, so no
/// route answers without it (or at all while SCIM is off).
pub struct Provisioner {
    pub api: std::sync::Arc<crate::api::Api>,
    /// The client's address, for the audit log.
    pub ip: String,
    /// `http(s)://host` as the client reached the gateway, for `meta.location`.
    pub origin: String,
}

impl FromRequestParts<ApiRef> for Provisioner {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiRef) -> Result<Self, ScimError> {
        let api = state.get()?;
        let scim = api.scim.read().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(settings) = scim else {
            return Err(ScimError::new(
                StatusCode::NOT_FOUND,
                None,
                "SCIM is off on this gateway: its operator has not set scim.secret",
            ));
        };
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        let client = parts.extensions.get::<ClientInfo>().cloned();
        let ip = client
            .as_ref()
            .map(|c| c.ip.to_string())
            .unwrap_or_default();
        match presented {
            Some(secret) if same_secret(secret, &settings.secret) => {}
            presented => {
                tracing::info!(
                    client = %ip,
                    reason = if presented.is_some() { "wrong secret" } else { "no bearer token" },
                    "refused SCIM request"
                );
                return Err(ScimError::new(
                    StatusCode::UNAUTHORIZED,
                    None,
                    "send Authorization: Bearer with the SCIM secret configured on the gateway (scim.secret)",
                ));
            }
        }
        // As the provider addressed the gateway (behind a trusted proxy, its forwarded
        // scheme and host).
        let (https, host) = client.map_or((false, None), |c| (c.https, c.host));
        let host = host
            .filter(|h| crate::edge::headers::valid_host(h.as_bytes()))
            .unwrap_or_else(|| "localhost".to_string());
        let origin = format!("{}://{host}", if https { "https" } else { "http" });
        Ok(Provisioner { origin, api, ip })
    }
}

/// Compares two secrets in constant time (their hashes, so lengths do not show either).
fn same_secret(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// A SCIM request body: JSON (`application/scim+json` or `application/json`), an object.
pub struct ScimBody(pub serde_json::Map<String, serde_json::Value>);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ScimBody {
    type Rejection = ScimError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ScimError> {
        let media = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        if media
            .as_deref()
            .is_some_and(|m| m != MEDIA_TYPE && m != "application/json")
        {
            return Err(ScimError::bad(
                "invalidSyntax",
                "send the body as JSON with Content-Type: application/scim+json",
            ));
        }
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|_| ScimError::bad("invalidSyntax", "the request body could not be read"))?;
        match serde_json::from_slice(&bytes) {
            Ok(serde_json::Value::Object(map)) => Ok(ScimBody(map)),
            Ok(_) => Err(ScimError::bad(
                "invalidSyntax",
                "the body must be a JSON object",
            )),
            Err(e) => Err(ScimError::bad(
                "invalidSyntax",
                format!("invalid JSON: {e}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_equal_only_when_equal() {
        let secret = "0123456789abcdef0123456789abcdef";
        assert!(same_secret(secret, secret));
        assert!(!same_secret("0123456789abcdef0123456789abcdeF", secret));
        assert!(!same_secret("", secret));
    }
}
