//! `POST /patgate/api/v1/leaked`: tokens found where they should not be (by a secret
//! scanning service or an incident responder) are revoked at once. The report is
//! authenticated by an HMAC-SHA256 signature of its raw body under `leaked.secret`;
//! the answer says what became of each token and never whose it was.

use axum::extract::State;
use axum::Json;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiRef;
use crate::accounts::leaked;
use crate::core::client::ClientInfo;
use crate::core::error::ApiError;

/// The signature header: `sha256=<hex HMAC-SHA256 of the raw body>`.
pub use crate::core::signature::SIGNATURE_HEADER;
/// Most tokens in one report.
pub const MAX_REPORTED: usize = 1_000;

/// One reported token: a string, or an object as secret-scanning partner programs send
/// (`token`, and optionally `type`, `url`, `source`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Reported {
    Token(String),
    Found {
        token: String,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        /// Where it was found (for the audit log).
        #[serde(default)]
        url: Option<String>,
        /// Who found it (for the audit log).
        #[serde(default)]
        source: Option<String>,
    },
}

/// A report: at most [`MAX_REPORTED`] tokens.
pub struct ReportBody;

impl utoipa::PartialSchema for ReportBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("Reported"))
            .max_items(Some(MAX_REPORTED))
            .into()
    }
}

impl ToSchema for ReportBody {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            "Reported".into(),
            <Reported as utoipa::PartialSchema>::schema(),
        ));
    }
}

/// What became of one reported token, in the order reported.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeakResult {
    /// Position in the report, from 0.
    pub index: usize,
    /// `revoked`, `already_revoked`, `unknown` or `malformed`.
    pub result: &'static str,
}

/// The answer to a report.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeakReport {
    pub results: Vec<LeakResult>,
}

/// Revokes every reported token that exists; needs `X-Patgate-Signature`.
#[utoipa::path(post, path = "/patgate/api/v1/leaked", tag = "leaked", operation_id = "leaked_report",
    security(()),
    params(("X-Patgate-Signature" = String, Header, pattern = "^sha256=[0-9a-f]{64}$",
        description = "`sha256=` and the hex HMAC-SHA256 of the raw body under `leaked.secret`")),
    request_body(content = ReportBody, description = "a JSON array of token strings or of objects with `token`"),
    responses((status = 200, body = LeakReport),
        (status = 400, description = "not a JSON array of at most 1000 tokens"),
        (status = 401, description = "`invalid_signature`: missing or wrong signature"),
        (status = 404, description = "`leaked_reports_off`: leaked.secret is not configured")))]
pub async fn report(
    State(api): State<ApiRef>,
    headers: HeaderMap,
    axum::Extension(client): axum::Extension<ClientInfo>,
    body: Bytes,
) -> Result<Json<LeakReport>, ApiError> {
    let api = api.get()?;
    let Some(secret) = api.leaked_secret.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "leaked_reports_off",
            "reports of leaked tokens are not accepted here: leaked.secret is not configured",
        ));
    };
    if !super::is_json(&headers) {
        return Err(super::not_json());
    }
    verify_signature(secret, &headers, &body)?;
    let reported: Vec<Reported> = super::parse_json_value(&body).and_then(|value| {
        serde_json::from_value(value).map_err(|e| {
            ApiError::bad_request(
                "invalid_body",
                format!("expected a JSON array of token strings or of objects with \"token\": {e}"),
            )
        })
    })?;
    if reported.len() > MAX_REPORTED {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("at most {MAX_REPORTED} tokens per report; send the rest in another"),
        ));
    }
    let mut results = Vec::with_capacity(reported.len());
    for (index, item) in reported.iter().enumerate() {
        let (token, source) = match item {
            Reported::Token(token) => (token.as_str(), serde_json::Value::Null),
            Reported::Found {
                token,
                kind,
                url,
                source,
            } => (
                token.as_str(),
                serde_json::json!({"type": kind, "url": url, "source": source}),
            ),
        };
        let detail = serde_json::json!({"via": "api", "report": source});
        let (result, revoked) = leaked::revoke(
            &api.store,
            &api.hasher,
            token,
            Some(&client.ip.to_string()),
            detail,
        )
        .await
        .map_err(ApiError::from)?;
        if let Some(record) = revoked {
            leaked::tell_owner(&api.notifier, record);
        }
        results.push(LeakResult { index, result });
    }
    Ok(Json(LeakReport { results }))
}

/// Checks `X-Patgate-Signature` against the raw body, in constant time.
fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let unsigned = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "sign the raw body with HMAC-SHA256 under leaked.secret and send it as \
             X-Patgate-Signature: sha256=<hex>",
        )
    };
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(unsigned());
    };
    let value = value.to_str().map_err(|_| unsigned())?;
    if crate::core::signature::verify(secret.as_bytes(), value, body) {
        Ok(())
    } else {
        Err(unsigned())
    }
}
