//! `/patgate/api/v1/smtp-servers` (administrators): the seed's
//! `notification.PatSmtpServer` items, and Send Test Mail. The password is write-only:
//! answers say only whether one is set, and it is sealed before it is stored; it must
//! be given again when the host, port or transport security changes, so that nobody
//! can redirect a stored password to a server of their choice. Hosts may be limited to
//! `notify.smtp_hosts`.
//!
//! Items are addressed by their full id, URL-encoded (`Configuration%2FSMTPSERVERTEST`),
//! or by its last segment (`SMTPSERVERTEST`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use super::{ApiRef, JsonBody, OptionalJsonBody};
use crate::api::caller::Caller;
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::core::time::rfc3339;
use crate::notify::secret::Password;
use crate::notify::smtp::{FailureKind, Mail, Properties, TRANSPORT_PROPERTIES};
use crate::store::SmtpServerRecord;

/// The seed's type name; the only one there is.
pub const TYPE: &str = "notification.PatSmtpServer";
/// Where items live, as in Deploy's library.
const PARENT: &str = "Configuration/";

/// An SMTP server item as administrators see it. No password, only whether one is set.
#[derive(Debug, Serialize, ToSchema)]
pub struct SmtpServerView {
    /// Full path, generated at creation, e.g. `Configuration/SMTPSERVERTEST`.
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    #[schema(example = "notification.PatSmtpServer")]
    pub kind: String,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password_set: bool,
    pub from_address: String,
    pub test_address: Option<String>,
    /// JavaMail properties, as written.
    pub smtp_properties: BTreeMap<String, String>,
    /// The properties the gateway does not act on (kept, not dropped).
    pub ignored_properties: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&SmtpServerRecord> for SmtpServerView {
    fn from(r: &SmtpServerRecord) -> SmtpServerView {
        let ignored = Properties::parse(&r.properties)
            .map(|(_, ignored)| ignored)
            .unwrap_or_default();
        SmtpServerView {
            id: r.id.clone(),
            name: r.name.clone(),
            kind: TYPE.to_string(),
            host: r.host.clone(),
            port: r.port,
            username: r.username.clone(),
            password_set: r.password.is_some(),
            from_address: r.from_address.clone(),
            test_address: r.test_address.clone(),
            smtp_properties: r.properties.clone(),
            ignored_properties: ignored,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// A new item, or changes to one (fields left out keep their value). What `GET`
/// answers is accepted back unchanged: its read-only fields are ignored. No `Debug`:
/// it holds the password in clear.
#[derive(Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpServerBody {
    #[schema(schema_with = name_or_null)]
    pub name: Option<String>,
    /// Must be `notification.PatSmtpServer` when given.
    #[serde(rename = "type")]
    #[schema(value_type = Option<SmtpServerType>)]
    pub kind: Option<String>,
    #[schema(schema_with = host_or_null)]
    pub host: Option<String>,
    #[schema(schema_with = pattern::port_schema)]
    pub port: Option<i64>,
    /// `null` or empty removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    /// Write-only. Left out: unchanged; `null` or empty: removed.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    #[schema(schema_with = pattern::mailbox_or_null_schema)]
    pub from_address: Option<String>,
    /// Where Send Test Mail writes by default; `null` or `""` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = pattern::mailbox_or_nothing_schema)]
    pub test_address: Option<Option<String>>,
    #[schema(schema_with = pattern::properties_schema)]
    pub smtp_properties: Option<BTreeMap<String, serde_json::Value>>,
    // Read-only fields of the GET answer, accepted and ignored.
    #[serde(default)]
    #[schema(ignore)]
    pub id: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub password_set: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub ignored_properties: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub created_at: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(ignore)]
    pub updated_at: Option<serde_json::Value>,
}

/// A new item: what [`SmtpServerBody`] holds, with the fields an item cannot do without.
/// (The document's name for the body of `POST /smtp-servers`.)
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[expect(
    dead_code,
    reason = "only the document names it; the body is read as SmtpServerBody"
)]
pub struct NewSmtpServer {
    #[schema(schema_with = pattern::smtp_name_schema_required)]
    name: String,
    /// Must be `notification.PatSmtpServer` when given.
    #[serde(rename = "type")]
    #[schema(value_type = Option<SmtpServerType>)]
    kind: Option<String>,
    #[schema(schema_with = pattern::host_schema_required)]
    host: String,
    #[schema(schema_with = pattern::port_schema_required)]
    port: i64,
    #[schema(value_type = Option<String>)]
    username: Option<String>,
    /// Write-only; `null` or empty: none.
    #[schema(value_type = Option<String>)]
    password: Option<String>,
    #[schema(schema_with = pattern::mailbox_schema)]
    from_address: String,
    /// Where Send Test Mail writes by default; `null` or `""`: none.
    #[schema(schema_with = pattern::mailbox_or_nothing_schema)]
    test_address: Option<String>,
    #[schema(schema_with = pattern::properties_schema)]
    smtp_properties: Option<BTreeMap<String, serde_json::Value>>,
}

/// The one type of SMTP server item.
#[derive(ToSchema)]
pub enum SmtpServerType {
    #[schema(rename = "notification.PatSmtpServer")]
    PatSmtpServer,
}

fn name_or_null() -> utoipa::openapi::schema::Object {
    pattern::smtp_name_schema(true)
}

fn host_or_null() -> utoipa::openapi::schema::Object {
    pattern::host_schema(true)
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The full id from a path segment.
fn resolve_id(raw: &str) -> String {
    if raw.contains('/') {
        raw.to_string()
    } else {
        format!("{PARENT}{raw}")
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_smtp_server", message)
}

fn check_name(name: &str) -> Result<String, ApiError> {
    if !pattern::is_smtp_name(name) {
        return Err(invalid(format!(
            "name {name:?}: 1 to 100 characters, no '/' or control characters, no spaces at \
             either end; it becomes the last part of the id"
        )));
    }
    Ok(name.to_string())
}

fn check_host(host: &str) -> Result<String, ApiError> {
    if !pattern::is_host(host) {
        return Err(invalid(format!(
            "host {host:?}: write a host name or IP address, like smtp.example.com"
        )));
    }
    Ok(host.to_string())
}

fn check_port(port: i64) -> Result<u16, ApiError> {
    u16::try_from(port).ok().filter(|p| *p > 0).ok_or_else(|| {
        invalid(format!(
            "port {port}: between 1 and 65535 (25 plain, 465 implicit TLS, 587 STARTTLS)"
        ))
    })
}

/// An address, optionally with a display name: `Deploy <deploy@example.com>`
/// ([`pattern::is_mailbox`]).
fn check_address(field: &str, value: &str) -> Result<String, ApiError> {
    if !pattern::is_mailbox(value) || value.parse::<lettre::message::Mailbox>().is_err() {
        return Err(invalid(format!(
            "{field} {value:?}: not an e-mail address like deploy@example.com"
        )));
    }
    Ok(value.to_string())
}

fn properties(
    raw: BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let mut out = BTreeMap::new();
    for (key, value) in raw {
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => {
                return Err(invalid(format!(
                    "smtp_properties {key}: write the value as text, like \"true\""
                )))
            }
        };
        if !pattern::is_property_key(&key)
            || text.chars().count() > pattern::PROPERTY_VALUE_MAX_CHARS
        {
            return Err(invalid(format!(
                "smtp_properties {key:?}: key or value too long"
            )));
        }
        out.insert(key.trim().to_string(), text);
    }
    Properties::parse(&out).map_err(|m| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_smtp_properties",
            m,
        )
    })?;
    Ok(out)
}

fn optional(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Applies a body to an item (a new one starts empty); checks every field.
fn apply(
    api: &super::Api,
    mut item: SmtpServerRecord,
    body: SmtpServerBody,
) -> Result<SmtpServerRecord, ApiError> {
    if let Some(kind) = &body.kind {
        if kind != TYPE {
            return Err(invalid(format!("type {kind:?}: the only type is {TYPE}")));
        }
    }
    if let Some(name) = &body.name {
        item.name = check_name(name)?;
    }
    if let Some(host) = &body.host {
        item.host = check_host(host)?;
        if !api.notifier.smtp_host_allowed(&item.host) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "smtp_host_not_allowed",
                crate::notify::smtp_host_refused(&item.host),
            ));
        }
    }
    if let Some(port) = body.port {
        item.port = check_port(port)?;
    }
    if let Some(username) = body.username {
        item.username = optional(username);
    }
    if let Some(from) = &body.from_address {
        item.from_address = check_address("from_address", from)?;
    }
    if let Some(test) = body.test_address {
        item.test_address = test
            .filter(|t| !t.is_empty())
            .map(|t| check_address("test_address", &t))
            .transpose()?;
    }
    if let Some(raw) = body.smtp_properties {
        item.properties = properties(raw)?;
    }
    if let Some(password) = body.password {
        item.password =
            optional(password).map(|p| api.notifier.sealer.seal(&item.id, &Password::new(p)));
    }
    if item.name.is_empty() {
        return Err(invalid("name is required"));
    }
    if item.host.is_empty() {
        return Err(invalid("host is required, like smtp.example.com"));
    }
    if item.port == 0 {
        return Err(invalid(
            "port is required: 25 plain, 465 implicit TLS, 587 STARTTLS",
        ));
    }
    if item.from_address.is_empty() {
        return Err(invalid("from_address is required, like deploy@example.com"));
    }
    Ok(item)
}

/// Every SMTP server item, by name.
#[utoipa::path(get, path = "/patgate/api/v1/smtp-servers", tag = "admin", operation_id = "smtp_servers_list",
    security(("password" = []), ("session" = [])),
    responses((status = 200, body = [SmtpServerView])))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
) -> Result<Json<Vec<SmtpServerView>>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let items = api.store.smtp_servers().await?;
    Ok(Json(items.iter().map(SmtpServerView::from).collect()))
}

/// Creates an item; its id is generated from the name.
#[utoipa::path(post, path = "/patgate/api/v1/smtp-servers", tag = "admin", operation_id = "smtp_servers_create",
    request_body = NewSmtpServer, security(("password" = []), ("session" = [])),
    responses((status = 201, body = SmtpServerView),
        (status = 403, description = "`smtp_host_not_allowed`: the host is not among `notify.smtp_hosts`"),
        (status = 409, description = "`name_taken`: another item has this name"),
        (status = 422, description = "`invalid_smtp_properties`: a property the gateway acts on has a value it cannot use")))]
pub async fn create(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<SmtpServerBody>,
) -> Result<(StatusCode, Json<SmtpServerView>), ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let name = check_name(body.name.as_deref().unwrap_or_default())?;
    // Ids outlive renames: a new item may need a suffix.
    let mut id = format!("{PARENT}{name}");
    let mut n = 2;
    while api.store.smtp_server_exists(&id).await? {
        id = format!("{PARENT}{name}-{n}");
        n += 1;
    }
    let now = crate::core::time::now();
    let empty = SmtpServerRecord {
        id,
        name: String::new(),
        host: String::new(),
        port: 0,
        username: None,
        password: None,
        from_address: String::new(),
        test_address: None,
        properties: BTreeMap::new(),
        created_at: now,
        updated_at: now,
    };
    let item = apply(&api, empty, body)?;
    api.store.create_smtp_server(&item).await?;
    api.audit_change(
        &caller,
        "smtp_server.created",
        serde_json::json!({"id": item.id, "name": item.name}),
    )
    .await;
    Ok((StatusCode::CREATED, Json((&item).into())))
}

/// One item.
#[utoipa::path(get, path = "/patgate/api/v1/smtp-servers/{id}", tag = "admin", operation_id = "smtp_servers_get",
    security(("password" = []), ("session" = [])),
    params(("id" = String, Path, description = "the full id URL-encoded, or its last segment")),
    responses((status = 200, body = SmtpServerView), (status = 404, description = "no such item")))]
pub async fn one(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SmtpServerView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let item = api.store.smtp_server(&resolve_id(&id)).await?;
    Ok(Json((&item).into()))
}

/// Changes an item; fields left out keep their value, the password included.
#[utoipa::path(put, path = "/patgate/api/v1/smtp-servers/{id}", tag = "admin", operation_id = "smtp_servers_update",
    request_body = SmtpServerBody, security(("password" = []), ("session" = [])),
    params(("id" = String, Path, description = "the full id URL-encoded, or its last segment")),
    responses((status = 200, body = SmtpServerView),
        (status = 403, description = "`smtp_host_not_allowed`: the host is not among `notify.smtp_hosts`"),
        (status = 404, description = "no such item"),
        (status = 409, description = "`name_taken`: another item has this name; `password_required`: \
            the host, port or transport security changed and the stored password was not given again"),
        (status = 422, description = "`invalid_smtp_properties`: a property the gateway acts on has a value it cannot use")))]
pub async fn update(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<SmtpServerBody>,
) -> Result<Json<SmtpServerView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let before = api.store.smtp_server(&resolve_id(&id)).await?;
    let password_changed = body.password.is_some();
    let after = apply(&api, before.clone(), body)?;
    if before.password.is_some() && !password_changed && moves_password(&before, &after) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "password_required",
            "the host, port or transport security changed: send the password again (or null to \
             remove it), so that a stored password never goes to a server it was not given for",
        ));
    }
    api.store.update_smtp_server(&after).await?;
    let after = api.store.smtp_server(&after.id).await?;
    api.audit_change(
        &caller,
        "smtp_server.changed",
        serde_json::json!({
            "id": after.id,
            "before": SmtpServerView::from(&before),
            "after": SmtpServerView::from(&after),
            "password_changed": password_changed,
        }),
    )
    .await;
    Ok(Json((&after).into()))
}

/// Whether a change sends the stored password somewhere else, or less protected.
fn moves_password(before: &SmtpServerRecord, after: &SmtpServerRecord) -> bool {
    let transport = |item: &SmtpServerRecord| -> Vec<Option<String>> {
        TRANSPORT_PROPERTIES
            .iter()
            .map(|key| {
                item.properties
                    .get(*key)
                    .map(|v| v.trim().to_ascii_lowercase())
            })
            .collect()
    };
    !before.host.eq_ignore_ascii_case(&after.host)
        || before.port != after.port
        || transport(before) != transport(after)
}

/// Deletes an item, unless notifications are sent through it.
#[utoipa::path(delete, path = "/patgate/api/v1/smtp-servers/{id}", tag = "admin", operation_id = "smtp_servers_delete",
    security(("password" = []), ("session" = [])),
    params(("id" = String, Path, description = "the full id URL-encoded, or its last segment")),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such item"),
        (status = 409, description = "`smtp_server_in_use`: notifications are sent through it")))]
pub async fn remove(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let id = resolve_id(&id);
    api.store.delete_smtp_server(&id).await?;
    api.audit_change(
        &caller,
        "smtp_server.deleted",
        serde_json::json!({"id": id}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `{"to": …}`, optional: the item's test address otherwise.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestMailBody {
    /// The recipient; `null`, `""` or absent: the item's `test_address`.
    #[schema(schema_with = pattern::mailbox_or_nothing_schema)]
    pub to: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TestMailSent {
    pub sent_to: String,
    /// `host:port`.
    pub server: String,
}

/// Send Test Mail: sends a short e-mail through the item, now. Failures carry the SMTP
/// conversation's own reason (authentication, TLS, refused connection, timeout).
#[utoipa::path(post, path = "/patgate/api/v1/smtp-servers/{id}/test", tag = "admin", operation_id = "smtp_servers_send_test",
    security(("password" = []), ("session" = [])),
    request_body(content = Option<TestMailBody>, description = "optional; the item's test_address by default"),
    params(("id" = String, Path, description = "the full id URL-encoded, or its last segment")),
    responses((status = 200, body = TestMailSent),
        (status = 404, description = "no such item"),
        (status = 409, description = "`no_test_address`: no recipient given and the item has no \
            test_address; or the item cannot be used as it is configured"),
        (status = 502, description = "the SMTP server failed: smtp_authentication_failed, smtp_tls_failed, smtp_connection_refused, smtp_rejected, smtp_failed"),
        (status = 504, description = "smtp_timeout: the SMTP server did not answer in time")))]
pub async fn send_test(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(id): Path<String>,
    OptionalJsonBody(body): OptionalJsonBody<TestMailBody>,
) -> Result<Json<TestMailSent>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let item = api.store.smtp_server(&resolve_id(&id)).await?;
    let to = match body
        .to
        .filter(|to| !to.is_empty())
        .or_else(|| item.test_address.clone())
    {
        Some(to) => check_address("to", &to)?,
        None => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_test_address",
                "the item has no test_address; set one, or send {\"to\": \"you@example.com\"}",
            ))
        }
    };
    let failed = |e: crate::notify::smtp::SendFailure| {
        let status = match e.kind {
            FailureKind::Configuration => StatusCode::CONFLICT,
            FailureKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, e.kind.code(), e.message)
    };
    let mailer = api.notifier.mailer(&item).map_err(failed)?;
    let text = format!(
        "This is a test message from the Deploy personal access token gateway, sent through the SMTP server item {} ({}:{}) at the request of {}.\n\nIf you can read it, expiry notifications can be sent through this server.\n",
        item.id, item.host, item.port, caller.username
    );
    let html = format!(
        "<p>{}</p>",
        minijinja::HtmlEscape(&text)
            .to_string()
            .replace("\n\n", "</p><p>")
    );
    let sent = mailer
        .send(&Mail {
            to: to.clone(),
            subject: format!("Test mail from patgate ({})", item.name),
            html,
            text,
        })
        .await;
    api.audit_change(
        &caller,
        "smtp_server.test_mail",
        serde_json::json!({"id": item.id, "to": to, "error": sent.as_ref().err().map(|e| &e.message)}),
    )
    .await;
    sent.map_err(failed)?;
    Ok(Json(TestMailSent {
        sent_to: to,
        server: format!("{}:{}", item.host, item.port),
    }))
}
