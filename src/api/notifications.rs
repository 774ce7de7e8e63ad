//! `GET /patgate/api/v1/notifications` (administrators): whether expiry e-mails are
//! being sent and if not why, the last pass, the next scheduled one, and each token's
//! outcome (sent, or failed with the reason).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{query, ApiRef};
use crate::api::caller::Caller;
use crate::core::error::ApiError;
use crate::core::pattern;
use crate::core::time::rfc3339;
use crate::store::{NotificationRecord, PassRecord, NOTIFICATION_STATUSES};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only outcomes of this status: claimed, sent or failed.
    #[param(value_type = Option<OutcomeStatus>)]
    pub status: Option<String>,
    #[param(schema_with = pattern::outcomes_schema)]
    pub limit: Option<i64>,
}

/// The status of one notification's outcome.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum OutcomeStatus {
    Claimed,
    Sent,
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PassView {
    pub started_at: String,
    pub finished_at: String,
    /// schedule, catch-up or run-once.
    pub cause: String,
    /// completed, disabled, no_smtp_server, smtp_server_unusable or template_error.
    pub outcome: String,
    pub due: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Why nothing was sent, skipped tokens and why, failures and why; unused tokens
    /// warned (`unused_warned`), revoked (`unused_revoked`) and due but kept until
    /// their warning goes out (`unused_held`).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl From<PassRecord> for PassView {
    fn from(p: PassRecord) -> PassView {
        PassView {
            started_at: rfc3339(p.started_at),
            finished_at: rfc3339(p.finished_at),
            cause: p.cause,
            outcome: p.outcome,
            due: p.due,
            sent: p.sent,
            failed: p.failed,
            skipped: p.skipped,
            detail: p.detail,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutcomeView {
    pub token_id: String,
    /// `expiry` (a reminder) or `unused` (the warning before an unused token is
    /// revoked).
    pub kind: String,
    /// For `expiry`, the reminder day (one of `reminder_days`); for `unused`, the last
    /// use warned about (Unix seconds).
    pub reminder: i64,
    pub username: String,
    pub token_name: String,
    pub email: String,
    /// claimed (being sent), sent, or failed (retried on the next pass).
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub claimed_at: String,
    pub sent_at: Option<String>,
}

impl From<NotificationRecord> for OutcomeView {
    fn from(n: NotificationRecord) -> OutcomeView {
        OutcomeView {
            token_id: n.token_id,
            kind: n.kind,
            reminder: n.reminder,
            username: n.username,
            token_name: n.token_name,
            email: n.email,
            status: n.status,
            attempts: n.attempts,
            last_error: n.last_error,
            claimed_at: rfc3339(n.claimed_at),
            sent_at: n.sent_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationsView {
    /// Whether the next pass will send: notifications enabled and an SMTP server chosen.
    pub active: bool,
    /// Why nothing is sent, when `active` is false.
    pub reason: Option<String>,
    pub last_pass: Option<PassView>,
    /// The next daily pass of this gateway; `null` when `notify.daily_at` is `off`.
    pub next_pass_at: Option<String>,
    /// `HH:MM` and zone of the daily pass.
    pub schedule: Option<String>,
    /// Outcome rows per status.
    #[schema(value_type = Object)]
    pub counts: serde_json::Value,
    pub outcomes: Vec<OutcomeView>,
    /// Notification channels whose last delivery failed after every retry, with
    /// since when and the last error.
    pub failing_channels: Vec<super::channels::ChannelView>,
}

/// Notification status and outcomes.
#[utoipa::path(get, path = "/patgate/api/v1/notifications", tag = "admin",
    operation_id = "notifications_status", params(NotificationsQuery),
    security(("password" = []), ("session" = [])),
    responses((status = 200, body = NotificationsView), (status = 400, description = "a query parameter is invalid")))]
pub async fn status(
    State(api): State<ApiRef>,
    caller: Caller,
    params: Result<Query<NotificationsQuery>, QueryRejection>,
) -> Result<Json<NotificationsView>, ApiError> {
    let api = api.get()?;
    caller.require_admin()?;
    let params = query(params)?;
    if let Some(status) = &params.status {
        if !NOTIFICATION_STATUSES.contains(&status.as_str()) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("status {status:?}: use claimed, sent or failed"),
            ));
        }
    }
    let limit = params.limit.unwrap_or(pattern::OUTCOMES_DEFAULT);
    if !(1..=pattern::OUTCOMES_MAX).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "limit: between 1 and 500",
        ));
    }
    let notifier = &api.notifier;
    let reason = notifier.idle_reason().await?;
    let now = crate::core::time::now();
    let schedule = notifier.schedule();
    let counts: serde_json::Map<String, serde_json::Value> = api
        .store
        .notification_counts()
        .await?
        .into_iter()
        .map(|(status, n)| (status, n.into()))
        .collect();
    Ok(Json(NotificationsView {
        active: reason.is_none(),
        reason,
        last_pass: api.store.last_pass().await?.map(PassView::from),
        next_pass_at: schedule.as_ref().map(|s| rfc3339(s.next(now))),
        schedule: schedule.map(|s| {
            format!(
                "daily at {} {}",
                s.at.strftime("%H:%M"),
                notifier.zone_name()
            )
        }),
        counts: counts.into(),
        outcomes: api
            .store
            .notifications(params.status.as_deref(), limit)
            .await?
            .into_iter()
            .map(OutcomeView::from)
            .collect(),
        failing_channels: api
            .store
            .channels(None)
            .await?
            .iter()
            .filter(|c| c.failing_since.is_some())
            .map(super::channels::ChannelView::from)
            .collect(),
    }))
}
