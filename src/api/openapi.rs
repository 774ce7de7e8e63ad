//! The OpenAPI 3.1 description of `/patgate/api/v1`, generated from the handlers' own
//! types and annotations so that it cannot drift from them. Each handler names its own
//! answers; [`finish`] adds the ones every route shares because of how the API is
//! served (the caller's credentials, the body, the path), writes the JSON error shape
//! into every error answer, and keeps NUL characters out of request text.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{
    audit, channels, inventory, leaked, me, notifications, service_accounts, session, settings,
    smtp_servers, token_usage, tokens, trust, users,
};
use crate::core::pattern;

const DESCRIPTION: &str = "\
Personal access tokens for Digital.ai Deploy: self-service and administration.

Authenticate with HTTP Basic (Deploy username and password), a session cookie from \
`POST /patgate/api/v1/session` (state changes also need `X-CSRF-Token`, from `GET /me`), \
or your own personal access token (listing your tokens and their usage, and deleting them, only). Every error \
answer is `{\"error\": code, \"message\": text}`. A status 400 means the request does not \
follow this document; a request that does is refused only for the reasons each \
operation lists (403, 404, 409, 422, and 401, 429 and 503 as every route may answer).

Other routes of the gateway (the SSO and forward-auth ones are described here as paths \
too):

- SCIM 2.0 provisioning at `/patgate/scim/v2` (`/Users`, `/ServiceProviderConfig`, \
`/ResourceTypes`, `/Schemas`), as RFC 7643 and RFC 7644 specify; the server describes \
itself at its discovery endpoints. Off (404) unless `scim.secret` is set; every request \
sends `Authorization: Bearer <scim.secret>`.
- SSO sign-in with OpenID Connect: `GET /patgate/sso/login` redirects (303) to the \
provider, which sends the browser back to `GET /patgate/sso/callback` (authorization code \
flow with PKCE); that sets the session cookie and redirects to the pages. A failure is an \
HTML page with the reason.
- Forward authentication for nginx `auth_request`, Traefik ForwardAuth and Envoy \
`ext_authz` at `/patgate/auth` (any method, and paths below it for Envoy), for callers in \
`trusted_proxies`: 200 with the identity headers for Deploy and `{\"user\": name}`; 401, \
403, 429, 503 and 400 `missing_original_uri` with the JSON error.
- `GET /patgate/healthz`, `/patgate/readyz`, `/patgate/metrics` and, in `jwt` mode, \
`/patgate/.well-known/jwks.json`.

The project's docs/api-contract.md tells how this document is checked against the API.";

#[derive(OpenApi)]
#[openapi(
    info(title = "patgate API", description = DESCRIPTION),
    paths(
        me::get_me, me::put_me,
        session::options, session::sign_in, session::sign_out,
        tokens::list, tokens::create, tokens::rotate, tokens::remove, tokens::deploy_list,
        token_usage::usage,
        leaked::report,
        settings::get_settings, settings::put_settings,
        users::list, users::one, users::tokens, users::revoke_all, users::disable, users::enable,
        users::link, users::unlink,
        audit::list,
        inventory::list, inventory::revoke,
        smtp_servers::list, smtp_servers::create, smtp_servers::one, smtp_servers::update,
        smtp_servers::remove, smtp_servers::send_test,
        notifications::status,
        channels::list, channels::create, channels::remove,
        trust::list, trust::create, trust::one, trust::replace, trust::remove,
        trust::token_exchange,
        service_accounts::list, service_accounts::create, service_accounts::one,
        service_accounts::replace, service_accounts::remove, service_accounts::tokens,
        service_accounts::create_token,
        openapi_document,
        super::sso::login, super::sso::callback,
        forward_auth,
    ),
    components(schemas(ErrorBody, notifications::OutcomeStatus)),
    modifiers(&Schemes),
    tags(
        (name = "me", description = "the signed-in user"),
        (name = "session", description = "browser sign-in"),
        (name = "tokens", description = "your personal access tokens"),
        (name = "admin", description = "administrators only"),
        (name = "service-accounts", description = "service accounts: Deploy users that automation's tokens act as, looked after by owners"),
        (name = "notification-channels", description = "where token reminders go besides e-mail: administrators' channels for every token, users' own for theirs"),
        (name = "leaked", description = "reports of leaked tokens, signed with leaked.secret"),
        (name = "document", description = "this description"),
        (name = "exchange", description = "the CI token exchange (RFC 8693): a pipeline's identity token for a short-lived token"),
        (name = "sso", description = "sign-in with OpenID Connect, for browsers"),
        (name = "forward-auth", description = "for a proxy in front of Deploy: nginx auth_request, Traefik ForwardAuth, Envoy ext_authz"),
    )
)]
pub struct ApiDoc;

/// Every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code, such as `invalid_body` or `name_taken`.
    pub error: String,
    /// What is wrong and what to do, for people.
    pub message: String,
}

/// The ways to authenticate.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let cookie = crate::signin::session::COOKIE;
        components.add_security_scheme(
            "password",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("Deploy username and password, checked by Deploy"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                cookie,
                "the session cookie (`__Secure-patgate_session` over https); state changes \
                 also send the session's CSRF token as `X-CSRF-Token`",
            ))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-deploy-personal-token",
                "your own personal access token (also as the Basic password of an empty \
                 username); lists and deletes your tokens only",
            ))),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/patgate/api/v1/openapi.json", tag = "document",
    operation_id = "openapi_document", security(()),
    responses((status = 200, description = "this OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_document() -> Json<Value> {
    Json(DOCUMENT.clone())
}

/// The forward-auth answer's body.
#[derive(Serialize, ToSchema)]
pub struct ForwardAuthUser {
    /// The token's owner, as Deploy is told in the identity headers.
    pub user: String,
}

/// Forward authentication ([`crate::edge::forward_auth`], answered on the gateway's
/// own port before the API): the proxy passes on the client's credential and says what
/// the client asked for; the answer is the gateway's own decision. Any method is
/// answered, and paths below `/patgate/auth` too (Envoy appends the original path).
/// Only callers in `trusted_proxies` are answered.
#[utoipa::path(get, path = "/patgate/auth", tag = "forward-auth", operation_id = "forward_auth_check",
    security(("password" = []), ("token" = [])),
    params(
        ("X-Original-URI" = Option<String>, Header, description = "nginx: what the client asked for"),
        ("X-Original-Method" = Option<String>, Header, description = "nginx: the client's method"),
        ("X-Forwarded-Uri" = Option<String>, Header, description = "Traefik: what the client asked for"),
        ("X-Forwarded-Method" = Option<String>, Header, description = "Traefik: the client's method"),
        ("X-Forwarded-For" = Option<String>, Header, description = "the client's address, as on the gateway's own port")),
    responses(
        (status = 200, body = ForwardAuthUser,
            description = "the token is good: the identity headers for Deploy (`X-Deploy-User`, the shared secret header, and `Authorization` in jwt or basic mode) are in the answer"),
        (status = 400, description = "`missing_original_uri`: the proxy did not say what the client asked for"),
        (status = 401, description = "anything about the credential: `missing_credentials`, `malformed_credentials`, `malformed_token`, `invalid_token`, `token_expired`, `user_disabled`, `sso_tokens_disabled`, `sso_suspended`, `deploy_token_not_checked`"),
        (status = 403, description = "anything about the request: `untrusted_caller` (not in trusted_proxies), `method_not_allowed`, `session_id_in_url`, a token's scope or address allowlist"),
        (status = 429, description = "too many failed token uses from the client's address"),
        (status = 500, description = "the identity for Deploy could not be made (see the gateway's log)"),
        (status = 503, description = "the token could not be checked: the database could not be reached")))]
#[expect(
    dead_code,
    reason = "edge::forward_auth answers; this is only its description"
)]
fn forward_auth() {}

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serialises");
    finish(&mut doc);
    doc
});

/// The document as served.
pub fn document() -> Value {
    DOCUMENT.clone()
}

/// Answers every route of the API may give because of how it is served.
const READ_FAILED: &str = "`body_too_large`, `unreadable_body`: the body could not be read \
    (64 KiB at most); `invalid_request`: the path or query holds a NUL character (`%00`)";
const UNAVAILABLE: &str = "`shutting_down`: the gateway is stopping; \
    `database_unavailable`: the database could not be reached";
const BAD_CREDENTIALS: &str = "`malformed_credentials`, `invalid_credentials`: the \
    credentials cannot be read";
const UNAUTHENTICATED: &str = "`unauthenticated`: sign in; or the token was refused \
    (`invalid_token`, `token_expired`, `user_disabled`, …)";
const FORBIDDEN: &str = "`forbidden`: the caller may not do this (an administrator's \
    route, a token asking for more than listing and deleting its owner's tokens, a token's \
    scope or address allowlist, a disabled user)";
const CSRF: &str = "`forbidden`: the session's `X-CSRF-Token` is missing or wrong";
const CROSS_SITE: &str = "`forbidden`: the request came from another site (`Origin`, \
    `Sec-Fetch-Site`)";
const LIMITED: &str = "`too_many_sign_in_failures`, `too_many_failures`: too many failed \
    sign-ins or token uses from this address; `Retry-After` says when to try again";
const DEPLOY_DOWN: &str = "`deploy_unavailable`: Deploy could not be asked about the password";
const BAD_BODY: &str = "`invalid_body`: the body does not follow its schema (the message \
    names the field)";
const NOT_JSON: &str = "`unsupported_media_type`: send the body as JSON with \
    `Content-Type: application/json`";
const BAD_QUERY: &str = "`invalid_query`: a query parameter does not follow its schema";
const NOT_FOUND: &str = "`not_found`: nothing here has that name";

/// Adds what every operation shares, and makes the error answers and request text
/// exact: the JSON error shape, no NUL in request text, and the dots of addresses.
pub fn finish(doc: &mut Value) {
    let mut request_refs = BTreeSet::new();
    if let Some(paths) = doc["paths"].as_object_mut() {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                // Forward-auth is answered before the API: its answers are its own.
                if op["operationId"] != "forward_auth_check" {
                    shared_answers(method, op);
                }
                json_errors(op);
                if let Some(body) = op.get_mut("requestBody") {
                    collect_refs(body, &mut request_refs);
                    keep_nul_out(body);
                }
                if let Some(params) = op.get_mut("parameters") {
                    collect_refs(params, &mut request_refs);
                    keep_nul_out(params);
                }
            }
        }
    }
    // Schemas that requests use, and the schemas those use.
    let mut seen = BTreeSet::new();
    while let Some(name) = request_refs.iter().find(|n| !seen.contains(*n)).cloned() {
        seen.insert(name.clone());
        if let Some(schema) = doc["components"]["schemas"].get(&name) {
            collect_refs(schema, &mut request_refs);
        }
    }
    for name in &seen {
        if let Some(schema) = doc["components"]["schemas"].get_mut(name) {
            keep_nul_out(schema);
        }
    }
    mark_dots(doc);
}

fn shared_answers(method: &str, op: &mut Value) {
    let secured = op["security"].as_array().is_some_and(|alternatives| {
        alternatives
            .iter()
            .any(|a| a.as_object().is_some_and(|a| !a.is_empty()))
    });
    let by_session = op["security"]
        .as_array()
        .is_some_and(|alternatives| alternatives.iter().any(|a| a.get("session").is_some()));
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    let in_path = params.iter().any(|p| p["in"] == "path");
    let in_query = params.iter().any(|p| p["in"] == "query");
    let has_body = op.get("requestBody").is_some();
    let changes = method != "get";
    let mut shared: Vec<(&str, &str)> = vec![("400", READ_FAILED), ("503", UNAVAILABLE)];
    if secured {
        shared.extend([
            ("400", BAD_CREDENTIALS),
            ("401", UNAUTHENTICATED),
            ("403", FORBIDDEN),
            ("429", LIMITED),
            ("503", DEPLOY_DOWN),
        ]);
        if by_session && changes {
            shared.push(("403", CSRF));
        }
    }
    if changes {
        shared.push(("403", CROSS_SITE));
    }
    if has_body {
        shared.extend([("400", BAD_BODY), ("415", NOT_JSON)]);
    }
    if in_query {
        shared.push(("400", BAD_QUERY));
    }
    if in_path {
        shared.push(("404", NOT_FOUND));
    }
    let responses = op["responses"]
        .as_object_mut()
        .expect("every operation has responses");
    for (status, text) in shared {
        let answer = responses
            .entry(status)
            .or_insert_with(|| json!({"description": ""}));
        let description = answer["description"].as_str().unwrap_or_default();
        if !description.contains(text) {
            let joined = if description.is_empty() {
                text.to_string()
            } else {
                format!("{description}; {text}")
            };
            answer["description"] = Value::String(joined);
        }
    }
}

/// Gives every error answer without a body of its own the JSON error; a 400 has it
/// always, since a body that cannot be read is refused before any route.
fn json_errors(op: &mut Value) {
    let Some(responses) = op["responses"].as_object_mut() else {
        return;
    };
    for (status, answer) in responses.iter_mut() {
        if status.as_str() >= "400" && (answer.get("content").is_none() || status == "400") {
            answer["content"]["application/json"] =
                json!({"schema": {"$ref": "#/components/schemas/ErrorBody"}});
        }
    }
}

fn collect_refs(node: &Value, refs: &mut BTreeSet<String>) {
    match node {
        Value::Object(fields) => {
            if let Some(name) = fields
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                refs.insert(name.to_string());
            }
            fields.values().for_each(|v| collect_refs(v, refs));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// Gives every request string that has no pattern, format or fixed values of its own
/// the pattern that keeps NUL out: the API refuses NUL, which no database keeps.
fn keep_nul_out(node: &mut Value) {
    match node {
        Value::Object(fields) => {
            let is_string = match fields.get("type") {
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                _ => false,
            };
            let constrained = ["pattern", "format", "enum", "const"]
                .iter()
                .any(|k| fields.contains_key(*k));
            if is_string && !constrained {
                fields.insert("pattern".into(), Value::String(pattern::NO_NUL.into()));
            }
            for (key, value) in fields.iter_mut() {
                // A `not` says what is refused; examples are not schemas.
                if !matches!(key.as_str(), "not" | "example" | "examples" | "default") {
                    keep_nul_out(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(keep_nul_out),
        _ => {}
    }
}

/// Replaces the mark of [`pattern::DOTS_MARK`] by the `not` it stands for.
fn mark_dots(node: &mut Value) {
    match node {
        Value::Object(fields) => {
            if fields.remove(pattern::DOTS_MARK).is_some() {
                fields.insert("not".into(), pattern::dots_in_place());
            }
            fields.values_mut().for_each(mark_dots);
        }
        Value::Array(items) => items.iter_mut().for_each(mark_dots),
        _ => {}
    }
}
