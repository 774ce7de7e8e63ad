//! `/patgate/api/v1/trust-policies` (administrators) and
//! `/patgate/api/v1/token-exchange` (RFC 8693, for CI pipelines): a pipeline's own
//! identity token, matched against a trust policy, buys a gateway token that lives
//! minutes. The exchange needs no other credential: the identity token is it.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiRef, JsonBody};
use crate::api::caller::Caller;
use crate::core::client::ClientInfo;
use crate::core::error::ApiError;
use crate::core::scope::Scope;
use crate::core::time::rfc3339;
use crate::exchange::{self, Refusal};
use crate::store::{AuditEvent, TrustPolicyRecord};

/// A trust policy as administrators see and write it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrustPolicyView {
    pub name: String,
    /// The CI system's token issuer (`iss`), e.g. `https://token.actions.githubusercontent.com`.
    pub issuer: String,
    /// The `aud` the pipeline asks its CI system for.
    pub audience: String,
    /// Claim name → exact value or glob (`*` any characters, `?` one); all must match.
    pub claims: BTreeMap<String, String>,
    /// The Deploy user (or service account) the issued tokens act as.
    pub user: String,
    #[schema(value_type = String, example = "full")]
    pub scope: String,
    pub allowed_addresses: Vec<String>,
    /// How long an issued token lives, `1m` to `1h`.
    #[schema(example = "15m")]
    pub lifetime: String,
    /// Exchanges made under this policy.
    pub exchanges: i64,
    pub last_used_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&TrustPolicyRecord> for TrustPolicyView {
    fn from(p: &TrustPolicyRecord) -> Self {
        TrustPolicyView {
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            audience: p.audience.clone(),
            claims: p.claims.clone(),
            user: p.username.clone(),
            scope: p.scope.as_str().to_string(),
            allowed_addresses: p.allowed_addresses.clone(),
            lifetime: lifetime_text(p.lifetime_seconds),
            exchanges: p.exchanges,
            last_used_at: p.last_used_at.map(rfc3339),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

fn lifetime_text(secs: i64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs.max(0) as u64)).to_string()
}

/// A new policy, or the whole of one (`PUT`). What `GET` answers is accepted back: its
/// read-only fields are ignored.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustPolicyBody {
    /// Required on create; on `PUT`, the same as the path's or left out.
    pub name: Option<String>,
    /// `github` or `gitlab`: fills in `issuer` for GitHub Actions or GitLab.com.
    pub preset: Option<String>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    pub user: Option<String>,
    /// `full` (default), `read` or `webhook`.
    pub scope: Option<String>,
    #[serde(default)]
    pub allowed_addresses: Vec<String>,
    /// `15m` unless given; at most `1h`.
    pub lifetime: Option<String>,
    #[schema(read_only)]
    pub exchanges: Option<i64>,
    #[schema(read_only)]
    pub last_used_at: Option<String>,
    #[schema(read_only)]
    pub created_at: Option<String>,
    #[schema(read_only)]
    pub updated_at: Option<String>,
}

/// A body that follows the schema but not the rules of a policy (422, as the document
/// says): a missing field, a glob, an issuer, a lifetime out of range.
fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_trust_policy",
        message,
    )
}

const RULES: &str = "`invalid_trust_policy`: a field breaks the rules of a policy (the message names it): \
    name, audience and user required on create; issuer https (or http on loopback) or a preset; \
    at least one claim condition that names a value, globs of `*` and `?` only, no iss/aud/exp/nbf/iat/jti; \
    lifetime 1m to 1h";

/// The record a body describes, checked; `name` from the path on `PUT`.
pub fn policy_of(
    body: TrustPolicyBody,
    name: String,
    created_at: i64,
) -> Result<TrustPolicyRecord, ApiError> {
    let issuer = match (body.issuer, body.preset.as_deref()) {
        (Some(issuer), _) => issuer,
        (None, Some(preset)) => exchange::preset_issuer(preset)
            .ok_or_else(|| invalid(format!("preset {preset:?}: choose github or gitlab")))?
            .to_string(),
        (None, None) => return Err(invalid("issuer is required (or a preset: github, gitlab)")),
    };
    if let Some(preset) = body.preset.as_deref() {
        if exchange::preset_issuer(preset).is_none() {
            return Err(invalid(format!(
                "preset {preset:?}: choose github or gitlab"
            )));
        }
    }
    let scope: Scope = match body.scope.as_deref() {
        None => Scope::Full,
        Some(text) => text
            .parse()
            .map_err(|_| invalid(format!("scope {text:?}: choose full, read or webhook")))?,
    };
    let lifetime_seconds = match body.lifetime.as_deref() {
        None => exchange::DEFAULT_LIFETIME_SECS,
        Some(text) => exchange::parse_lifetime(text).map_err(invalid)?,
    };
    let now = crate::core::time::now();
    let policy = TrustPolicyRecord {
        name,
        issuer,
        audience: body
            .audience
            .ok_or_else(|| invalid("audience is required: the aud the pipeline asks for"))?,
        claims: body.claims,
        username: body
            .user
            .ok_or_else(|| invalid("user is required: the Deploy user the tokens act as"))?,
        scope,
        allowed_addresses: body.allowed_addresses,
        lifetime_seconds,
        exchanges: 0,
        last_used_at: None,
        created_at,
        updated_at: now,
    };
    exchange::check_policy(&policy).map_err(invalid)?;
    Ok(policy)
}

/// Every trust policy, by name.
#[utoipa::path(get, path = "/patgate/api/v1/trust-policies", tag = "admin",
    operation_id = "trust_policies_list", security(("password" = []), ("session" = [])),
    responses((status = 200, body = [TrustPolicyView])))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
) -> Result<Json<Vec<TrustPolicyView>>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let policies = api.store.trust_policies().await?;
    Ok(Json(policies.iter().map(TrustPolicyView::from).collect()))
}

/// Creates a trust policy.
#[utoipa::path(post, path = "/patgate/api/v1/trust-policies", tag = "admin",
    operation_id = "trust_policies_create", security(("password" = []), ("session" = [])),
    request_body = TrustPolicyBody,
    responses((status = 201, body = TrustPolicyView),
        (status = 409, description = "`name_taken`: a policy of that name exists"),
        (status = 422, description = RULES)))]
pub async fn create(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(mut body): JsonBody<TrustPolicyBody>,
) -> Result<(StatusCode, Json<TrustPolicyView>), ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let name = body
        .name
        .take()
        .ok_or_else(|| invalid("name is required"))?;
    let policy = policy_of(body, name, crate::core::time::now())?;
    api.store.create_trust_policy(&policy).await?;
    api.audit_change(
        &caller,
        "trust_policy.created",
        serde_json::json!({"name": policy.name, "issuer": policy.issuer, "user": policy.username}),
    )
    .await;
    Ok((StatusCode::CREATED, Json((&policy).into())))
}

#[utoipa::path(get, path = "/patgate/api/v1/trust-policies/{name}", tag = "admin",
    operation_id = "trust_policies_get", security(("password" = []), ("session" = [])),
    params(("name" = String, Path, description = "the policy's name")),
    responses((status = 200, body = TrustPolicyView), (status = 404, description = "no such policy")))]
pub async fn one(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<TrustPolicyView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    Ok(Json((&api.store.trust_policy(&name).await?).into()))
}

/// Replaces a trust policy (its counts are kept).
#[utoipa::path(put, path = "/patgate/api/v1/trust-policies/{name}", tag = "admin",
    operation_id = "trust_policies_replace", security(("password" = []), ("session" = [])),
    params(("name" = String, Path, description = "the policy's name")), request_body = TrustPolicyBody,
    responses((status = 200, body = TrustPolicyView),
        (status = 404, description = "no such policy"),
        (status = 422, description = RULES)))]
pub async fn replace(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TrustPolicyBody>,
) -> Result<Json<TrustPolicyView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(invalid(
            "name cannot be changed; create a new policy instead",
        ));
    }
    let old = api.store.trust_policy(&name).await?;
    let mut policy = policy_of(body, name, old.created_at)?;
    api.store.update_trust_policy(&policy).await?;
    policy.exchanges = old.exchanges;
    policy.last_used_at = old.last_used_at;
    api.audit_change(
        &caller,
        "trust_policy.changed",
        serde_json::json!({"name": policy.name, "issuer": policy.issuer, "user": policy.username}),
    )
    .await;
    Ok(Json((&policy).into()))
}

#[utoipa::path(delete, path = "/patgate/api/v1/trust-policies/{name}", tag = "admin",
    operation_id = "trust_policies_delete", security(("password" = []), ("session" = [])),
    params(("name" = String, Path, description = "the policy's name")),
    responses((status = 204, description = "deleted; tokens it issued live out their few minutes"),
        (status = 404, description = "no such policy")))]
pub async fn remove(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    api.store.delete_trust_policy(&name).await?;
    api.audit_change(
        &caller,
        "trust_policy.deleted",
        serde_json::json!({"name": name}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// RFC 8693's request, as a form.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "read by form_fields; this is its description")]
pub struct ExchangeForm {
    #[schema(pattern = "^urn:ietf:params:oauth:grant-type:token-exchange$")]
    grant_type: String,
    /// The CI system's identity token (a JWS in compact form, at most 16 KiB).
    #[schema(
        pattern = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]*$",
        max_length = 16384
    )]
    subject_token: String,
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:(jwt|id_token)$")]
    subject_token_type: String,
    /// Only `urn:ietf:params:oauth:token-type:access_token` is issued.
    #[schema(pattern = "^urn:ietf:params:oauth:token-type:access_token$")]
    requested_token_type: Option<String>,
    /// The name of the trust policy to use; without it, the first that matches.
    audience: Option<String>,
}

/// RFC 8693's successful answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExchangeAnswer {
    /// The gateway token (`dpat_…`); send it as `-u :TOKEN` or `x-deploy-personal-token`.
    pub access_token: String,
    #[schema(example = "urn:ietf:params:oauth:token-type:access_token")]
    pub issued_token_type: &'static str,
    /// `N_A`: not an OAuth bearer token (RFC 8693 §2.2.1).
    pub token_type: &'static str,
    /// Seconds it lives.
    pub expires_in: i64,
    /// Its id, to revoke it early (`DELETE /patgate/api/v1/tokens/{id}` with the token).
    pub token_id: String,
    /// The trust policy that matched.
    pub policy: String,
}

/// An RFC 6749 error answer (`error`, `error_description`), with the gateway's
/// `message` beside it.
fn refused(refusal: Refusal) -> Response {
    let body = serde_json::json!({
        "error": refusal.error,
        "error_description": refusal.description,
        "message": refusal.description,
    });
    let mut response = (refusal.status, Json(body)).into_response();
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

/// Exchanges a CI identity token (RFC 8693 form fields) for a short-lived gateway token.
#[utoipa::path(post, path = "/patgate/api/v1/token-exchange", tag = "exchange",
    operation_id = "token_exchange", security(()),
    request_body(content = ExchangeForm, content_type = "application/x-www-form-urlencoded",
        description = "RFC 8693's fields as a form"),
    responses((status = 200, body = ExchangeAnswer),
        (status = 400, description = "invalid_request, unsupported_grant_type, invalid_grant (the message names what did not match) or invalid_target"),
        (status = 503, description = "temporarily_unavailable: the issuer's keys or the database cannot be reached")))]
pub async fn token_exchange(
    State(api): State<ApiRef>,
    axum::Extension(client): axum::Extension<ClientInfo>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let api = match api.get() {
        Ok(api) => api,
        Err(e) => return e.into_response(),
    };
    let metrics = api.notifier.metrics();
    let counted = |refusal: Refusal| {
        let local = metrics.local();
        let counter = if refusal.error == "temporarily_unavailable" {
            &local.exchanges_unavailable
        } else {
            &local.exchanges_refused
        };
        counter.fetch_add(1, Ordering::Relaxed);
        refused(refusal)
    };
    let fields = match form_fields(&headers, &body) {
        Ok(fields) => fields,
        Err(refusal) => return counted(refusal),
    };
    let field = |name: &str| fields.get(name).map(String::as_str);
    match field("grant_type") {
        Some(exchange::GRANT_TYPE) => {}
        Some(other) => {
            return counted(Refusal::new(
                "unsupported_grant_type",
                format!(
                    "grant_type {other:?}: only {} is accepted",
                    exchange::GRANT_TYPE
                ),
            ))
        }
        None => return counted(Refusal::new("invalid_request", "grant_type is missing")),
    }
    let Some(subject_token) = field("subject_token").filter(|t| !t.is_empty()) else {
        return counted(Refusal::new(
            "invalid_request",
            "subject_token is missing: send the CI system's identity token",
        ));
    };
    match field("subject_token_type") {
        Some(exchange::JWT_TOKEN_TYPE) | Some("urn:ietf:params:oauth:token-type:id_token") => {}
        Some(other) => {
            return counted(Refusal::new(
                "invalid_request",
                format!(
                    "subject_token_type {other:?}: send {}",
                    exchange::JWT_TOKEN_TYPE
                ),
            ))
        }
        None => {
            return counted(Refusal::new(
                "invalid_request",
                format!(
                    "subject_token_type is missing: send {}",
                    exchange::JWT_TOKEN_TYPE
                ),
            ))
        }
    }
    if let Some(kind) = field("requested_token_type") {
        if kind != exchange::ISSUED_TOKEN_TYPE {
            return counted(Refusal::new(
                "invalid_request",
                format!(
                    "requested_token_type {kind:?}: only {} is issued",
                    exchange::ISSUED_TOKEN_TYPE
                ),
            ));
        }
    }
    let wanted = field("audience").filter(|a| !a.is_empty());
    match api
        .exchanger
        .exchange(subject_token, wanted, Some(client.ip.to_string()))
        .await
    {
        Ok(done) => {
            metrics
                .local()
                .exchanges_issued
                .fetch_add(1, Ordering::Relaxed);
            let answer = ExchangeAnswer {
                access_token: done.token.expose().to_string(),
                issued_token_type: exchange::ISSUED_TOKEN_TYPE,
                token_type: "N_A",
                expires_in: done.lifetime_seconds,
                token_id: done.record.id.clone(),
                policy: done.policy,
            };
            let mut response = Json(answer).into_response();
            response.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            response
        }
        Err(refusal) => {
            tracing::info!(error = refusal.error, reason = ?refusal.description, "token exchange refused");
            api.audit(AuditEvent {
                actor: None,
                action: "token.exchange_refused",
                ip: Some(client.ip.to_string()),
                detail: Some(serde_json::json!({
                    "error": refusal.error,
                    "reason": refusal.description,
                })),
                ..AuditEvent::default()
            })
            .await;
            counted(refusal)
        }
    }
}

/// The form's fields; each at most once. JSON or anything else is refused.
fn form_fields(headers: &HeaderMap, body: &[u8]) -> Result<BTreeMap<String, String>, Refusal> {
    let form = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(Refusal::new(
            "invalid_request",
            "send the fields as a form: Content-Type: application/x-www-form-urlencoded (RFC 8693)",
        ));
    }
    let mut fields = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(body) {
        if fields.insert(name.to_string(), value.to_string()).is_some() {
            return Err(Refusal::new(
                "invalid_request",
                format!("{name} is given more than once"),
            ));
        }
    }
    Ok(fields)
}
