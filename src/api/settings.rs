//! `/patgate/api/v1/settings` (administrators): the maximum token expiration, the
//! switch for SSO users' tokens, and expiry e-mail notifications. What `GET` returns,
//! `PUT` accepts back; fields left out keep their value.

use axum::extract::State;
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiRef, JsonBody};
use crate::api::caller::Caller;
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::core::token::Expiration;
use crate::notify::templates::{Templates, DEFAULT_BODY, DEFAULT_SUBJECT};
use crate::store::{AuditEvent, NotifySettings, Settings, StoreError};

/// The administrators' policies.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    /// The longest expiration users may choose; `never` means no maximum. Tokens made
    /// before a lower maximum keep their expiry.
    #[schema(example = "60d")]
    pub max_token_expiration: Option<Expiration>,
    /// Whether SSO users may create tokens, and whether their existing tokens work.
    pub sso_pat_creation_enabled: Option<bool>,
    /// Token expiry e-mails.
    pub notifications: Option<NotificationsBody>,
    /// Days without use after which a token is revoked (30, 60, 90, 180 or 365), its
    /// owner warned 7 days before and told when it is; `null`: never, the default.
    /// Run by the daily notification pass. Anything else is 400 `invalid_settings`.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = pattern::notify::unused_revoke_days_schema)]
    pub unused_token_revoke_days: Option<Option<i64>>,
    /// At most this many active tokens per user, 1 to 10000; `null`: no limit (the
    /// default). Creating one more is 409 `token_limit_reached`; rotation and token
    /// exchanges are not limited. Anything else is 400 `invalid_settings`.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = pattern::inventory::max_tokens_schema)]
    pub max_tokens_per_user: Option<Option<i64>>,
    /// How fresh SSO users' roles and status are: `mode` (`scim`, `revalidation`,
    /// `sign-in`), `summary`, `bound_seconds`, `revalidate_every`, `last_run_at`,
    /// `sso_users`, `scim_groups`, `roles_by_source`, `suspended`,
    /// `without_refresh_token`, `unreachable`. Read-only: any value sent is ignored, so
    /// that what `GET` answers can be sent back.
    #[schema(value_type = Value)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sso_roles_freshness: Option<serde_json::Value>,
}

/// Token expiry reminders: one per expiring token and reminder day, sent by the daily
/// pass by e-mail and to the notification channels.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationsBody {
    pub enabled: Option<bool>,
    /// The one-reminder form of `reminder_days`, kept for older clients: sending it
    /// alone sets `reminder_days` to `[days_before]`; answers carry the largest
    /// reminder day. `reminder_days` wins when both are given.
    #[schema(schema_with = pattern::days_before_schema)]
    pub days_before: Option<i64>,
    #[schema(schema_with = pattern::notify::reminder_days_schema)]
    pub reminder_days: Option<Vec<i64>>,
    /// The SMTP server item to send through (its id, as `GET /smtp-servers` lists it);
    /// `null` or `""` for none. An id that names no item is 422 `unknown_smtp_server`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "Configuration/SMTPSERVERTEST")]
    pub smtp_server_id: Option<Option<String>>,
    /// Subject template (plain text, minijinja). Variables: user, email, token_name,
    /// token_id, expires_at_utc, expires_at_local, time_zone, days_left, tokens_url. One
    /// that does not render is 422 `invalid_template`, with its line and the reason.
    pub subject: Option<String>,
    /// Body template (HTML, minijinja; every inserted value is escaped), same variables;
    /// 422 `invalid_template` as for the subject. Each template is at most 16 KiB and
    /// must render within bounded work (422 `invalid_template` otherwise).
    pub body: Option<String>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl From<&NotifySettings> for NotificationsBody {
    fn from(n: &NotifySettings) -> NotificationsBody {
        NotificationsBody {
            enabled: Some(n.enabled),
            days_before: Some(n.days_before()),
            reminder_days: Some(n.reminder_days.clone()),
            smtp_server_id: Some(n.smtp_server_id.clone()),
            subject: Some(n.subject.clone().unwrap_or_else(|| DEFAULT_SUBJECT.into())),
            body: Some(n.body.clone().unwrap_or_else(|| DEFAULT_BODY.into())),
        }
    }
}

impl SettingsBody {
    fn new(s: &Settings, n: &NotifySettings) -> SettingsBody {
        SettingsBody {
            max_token_expiration: Some(s.max_token_expiration),
            sso_pat_creation_enabled: Some(s.sso_pat_creation_enabled),
            notifications: Some(n.into()),
            unused_token_revoke_days: Some(n.unused_token_revoke_days),
            max_tokens_per_user: Some(s.max_tokens_per_user),
            sso_roles_freshness: None,
        }
    }
}

/// The notification settings a body asks for, checked: days in range, an existing
/// SMTP server, templates that render. A template equal to the built-in one is kept
/// as "the built-in one", so that improvements to it reach this gateway.
async fn notify_settings(
    api: &super::Api,
    before: &NotifySettings,
    body: Option<NotificationsBody>,
    unused: Option<Option<i64>>,
) -> Result<NotifySettings, ApiError> {
    let mut after = before.clone();
    if let Some(days) = unused {
        if let Some(problem) = days.and_then(pattern::notify::unused_revoke_days_problem) {
            return Err(ApiError::bad_request(
                "invalid_settings",
                format!("unused_token_revoke_days {problem}"),
            ));
        }
        after.unused_token_revoke_days = days;
    }
    let Some(body) = body else {
        return Ok(after);
    };
    if let Some(enabled) = body.enabled {
        after.enabled = enabled;
    }
    if let Some(days) = body.days_before {
        if !(pattern::DAYS_BEFORE_MIN..=pattern::DAYS_BEFORE_MAX).contains(&days) {
            return Err(ApiError::bad_request(
                "invalid_settings",
                format!("notifications.days_before {days}: between 1 and 365"),
            ));
        }
        after.reminder_days = vec![days];
    }
    if let Some(mut days) = body.reminder_days {
        if let Some(problem) = pattern::notify::reminder_days_problem(&days) {
            return Err(ApiError::bad_request(
                "invalid_settings",
                format!("notifications.reminder_days {days:?}: {problem}"),
            ));
        }
        days.sort_unstable_by(|a, b| b.cmp(a));
        after.reminder_days = days;
    }
    if let Some(id) = body.smtp_server_id {
        after.smtp_server_id = id.map(|i| i.trim().to_string()).filter(|i| !i.is_empty());
        if let Some(id) = &after.smtp_server_id {
            match api.store.smtp_server(id).await {
                Ok(_) => {}
                Err(StoreError::NoSuchSmtpServer(_)) => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "unknown_smtp_server",
                        format!(
                            "notifications.smtp_server_id {id:?}: no such SMTP server; list them with GET /patgate/api/v1/smtp-servers"
                        ),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    let template = |text: String, default: &str| (text != default).then_some(text);
    if let Some(subject) = body.subject {
        after.subject = template(subject, DEFAULT_SUBJECT);
    }
    if let Some(text) = body.body {
        after.body = template(text, DEFAULT_BODY);
    }
    Templates::prepare(after.subject.clone(), after.body.clone())
        .await
        .map_err(|reason| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_template",
                format!("notifications.{reason}"),
            )
        })?;
    Ok(after)
}

/// The current policies.
#[utoipa::path(get, path = "/patgate/api/v1/settings", tag = "admin", operation_id = "settings_get",
    security(("password" = []), ("session" = [])),
    responses((status = 200, body = SettingsBody)))]
pub async fn get_settings(
    State(api): State<ApiRef>,
    caller: Caller,
) -> Result<Json<SettingsBody>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let settings = api.store.settings().await?;
    let notify = api.store.notify_settings().await?;
    let mut body = SettingsBody::new(&settings, &notify);
    body.sso_roles_freshness =
        serde_json::to_value(super::freshness::roles_freshness(&api).await?).ok();
    Ok(Json(body))
}

/// Changes the policies; every replica applies them within a second. A template that
/// does not render is refused with its line and the reason.
#[utoipa::path(put, path = "/patgate/api/v1/settings", tag = "admin", operation_id = "settings_update",
    request_body = SettingsBody, security(("password" = []), ("session" = [])),
    responses((status = 200, body = SettingsBody),
        (status = 422, description = "`unknown_smtp_server`: no SMTP server item has that id; \
            `invalid_template`: a template does not render")))]
pub async fn put_settings(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<SettingsBody>,
) -> Result<Json<SettingsBody>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let before = api.store.settings().await?;
    let max_tokens_per_user = match body.max_tokens_per_user {
        None => before.max_tokens_per_user,
        Some(max) => {
            if let Some(problem) = max.and_then(pattern::inventory::max_tokens_problem) {
                return Err(ApiError::bad_request(
                    "invalid_settings",
                    format!("max_tokens_per_user {problem}"),
                ));
            }
            max
        }
    };
    let after = Settings {
        max_tokens_per_user,
        max_token_expiration: body
            .max_token_expiration
            .unwrap_or(before.max_token_expiration),
        sso_pat_creation_enabled: body
            .sso_pat_creation_enabled
            .unwrap_or(before.sso_pat_creation_enabled),
    };
    let notify_before = api.store.notify_settings().await?;
    let notify_after = notify_settings(
        &api,
        &notify_before,
        body.notifications,
        body.unused_token_revoke_days,
    )
    .await?;
    if after != before {
        api.store.save_settings(&after, &caller.username).await?;
    }
    if notify_after != notify_before {
        api.store
            .save_notify_settings(&notify_after, &caller.username)
            .await?;
        api.tokens
            .set_expiry_warning_days(notify_after.days_before());
    }
    if after != before || notify_after != notify_before {
        api.audit(AuditEvent {
            actor: Some(caller.username.clone()),
            action: "settings.changed",
            ip: Some(caller.ip.to_string()),
            detail: Some(serde_json::json!({
                "before": SettingsBody::new(&before, &notify_before),
                "after": SettingsBody::new(&after, &notify_after),
            })),
            ..AuditEvent::default()
        })
        .await;
    }
    let mut body = SettingsBody::new(&after, &notify_after);
    body.sso_roles_freshness =
        serde_json::to_value(super::freshness::roles_freshness(&api).await?).ok();
    Ok(Json(body))
}
