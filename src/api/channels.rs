//! `/patgate/api/v1/notification-channels`: where reminders, unused-token warnings
//! and revocations go besides e-mail. Administrators' channels (no owner) hear about
//! every token; any signed-in user may add channels of their own, which hear only
//! about their tokens, and sees and deletes only those. A webhook's secret is
//! write-only: sealed before it is stored, never answered or logged. A user's channel
//! may not post to an internal address ([`crate::notify::address`]); an
//! administrator's may.

use axum::extract::{Path, State};
use axum::Json;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiRef, JsonBody};
use crate::api::caller::Caller;
use crate::core::error::ApiError;
use crate::core::pattern::notify as rules;
use crate::core::time::rfc3339;
use crate::notify::secret::Password;
use crate::store::{ChannelRecord, NewChannel, CHANNEL_KINDS};

/// A channel as its owner (or an administrator) sees it; never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelView {
    pub id: String,
    /// `webhook`, `slack` or `teams`.
    pub kind: String,
    pub url: String,
    /// The user whose tokens it hears about; `null`: an administrators' channel, for
    /// every token.
    pub owner: Option<String>,
    /// Whether a signing secret is set (webhooks).
    pub secret_set: bool,
    pub created_by: String,
    pub created_at: String,
    /// `delivered` or `failed`; `null` before the first delivery.
    pub last_status: Option<String>,
    pub last_delivery_at: Option<String>,
    pub last_error: Option<String>,
    /// Since when every delivery failed; `null` while deliveries succeed.
    pub failing_since: Option<String>,
}

impl From<&ChannelRecord> for ChannelView {
    fn from(c: &ChannelRecord) -> ChannelView {
        ChannelView {
            id: c.id.clone(),
            kind: c.kind.clone(),
            url: c.url.clone(),
            owner: c.owner.clone(),
            secret_set: c.secret.is_some(),
            created_by: c.created_by.clone(),
            created_at: rfc3339(c.created_at),
            last_status: c.last_status.clone(),
            last_delivery_at: c.last_at.map(rfc3339),
            last_error: c.last_error.clone(),
            failing_since: c.failing_since.map(rfc3339),
        }
    }
}

/// A new channel. No `Debug`: it holds the secret.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannelBody {
    /// `webhook` (a JSON POST signed with `X-Patgate-Signature`), `slack` (an incoming
    /// webhook) or `teams` (an incoming webhook, MessageCard).
    #[schema(example = "webhook")]
    pub kind: String,
    /// http or https, at most 2048 characters.
    #[schema(example = "https://hooks.example.com/patgate")]
    pub url: String,
    /// The HMAC-SHA256 key a `webhook`'s deliveries are signed with, 16 to 256
    /// characters; required for `webhook`, refused for the others. Write-only.
    #[schema(value_type = Option<String>, write_only)]
    pub secret: Option<String>,
    /// Administrators only: `true` for a channel of their own (their tokens only)
    /// instead of an administrators' channel for every token. Others always get
    /// their own.
    pub personal: Option<bool>,
}

fn invalid(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_channel", message)
}

/// The channels the caller may see: every one for an administrator, their own for
/// anyone else.
#[utoipa::path(get, path = "/patgate/api/v1/notification-channels", tag = "notification-channels",
    operation_id = "notification_channels_list",
    security(("password" = []), ("session" = [])),
    responses((status = 200, body = Vec<ChannelView>)))]
pub async fn list(
    State(api): State<ApiRef>,
    caller: Caller,
) -> Result<Json<Vec<ChannelView>>, ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    let owner = (!caller.acts_as_admin()).then_some(caller.username.as_str());
    let channels = api.store.channels(owner).await?;
    Ok(Json(channels.iter().map(ChannelView::from).collect()))
}

/// Creates a channel: an administrators' one (every token) when an administrator
/// creates it, the caller's own (their tokens) otherwise.
#[utoipa::path(post, path = "/patgate/api/v1/notification-channels", tag = "notification-channels",
    operation_id = "notification_channels_create", request_body = NewChannelBody,
    security(("password" = []), ("session" = [])),
    responses((status = 201, body = ChannelView),
        (status = 422, description = "`invalid_channel`: unknown kind, a URL that is not http(s), a host outside `notify.channel_hosts`, a user's URL naming an internal address (loopback, link-local, private, unspecified, multicast, broadcast, `localhost`) whose host is not listed in `notify.channel_hosts`, or a missing or misfit secret")))]
pub async fn create(
    State(api): State<ApiRef>,
    caller: Caller,
    JsonBody(body): JsonBody<NewChannelBody>,
) -> Result<(StatusCode, Json<ChannelView>), ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    let kind = body.kind.trim();
    if !CHANNEL_KINDS.contains(&kind) {
        return Err(invalid(format!(
            "kind {kind:?}: use webhook, slack or teams"
        )));
    }
    let url = body.url.trim();
    if let Some(problem) = rules::channel_url_problem(url) {
        return Err(invalid(format!("url: {problem}")));
    }
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_default();
    let settings = api.notifier.settings();
    if !settings.channel_host_allowed(&host) {
        return Err(invalid(crate::notify::channel_host_refused(&host)));
    }
    let made_by_admin = caller.acts_as_admin();
    if !made_by_admin && !settings.channel_host_listed(&host) {
        if let Some(refused) = crate::notify::address::literal_refusal(&host) {
            return Err(invalid(refused));
        }
    }
    let secret = match (kind, body.secret) {
        ("webhook", None) => {
            return Err(invalid(
                "secret: a webhook needs one (16 to 256 characters), to sign its deliveries".into(),
            ))
        }
        ("webhook", Some(secret)) => {
            let chars = secret.chars().count();
            if !(rules::CHANNEL_SECRET_MIN..=rules::CHANNEL_SECRET_MAX).contains(&chars) {
                return Err(invalid(format!(
                    "secret: {chars} characters; use 16 to 256"
                )));
            }
            Some(Password::new(secret))
        }
        (_, Some(_)) => {
            return Err(invalid(format!(
                "secret: {kind} channels are not signed; leave it out (the URL is the secret)"
            )))
        }
        (_, None) => None,
    };
    let personal = !caller.acts_as_admin() || body.personal.unwrap_or(false);
    let id = format!("ch_{}", crate::core::text::random_text(12));
    let sealed = secret
        .as_ref()
        .map(|s| api.notifier.sealer.seal_channel_secret(&id, s));
    let channel = api
        .store
        .create_channel(&NewChannel {
            id: &id,
            owner: personal.then_some(caller.username.as_str()),
            kind,
            url,
            secret: sealed.as_ref(),
            created_by: &caller.username,
            made_by_admin,
            now: crate::core::time::now(),
        })
        .await?;
    api.audit_change(
        &caller,
        "notification_channel.created",
        serde_json::json!({"id": id, "kind": kind, "owner": channel.owner}),
    )
    .await;
    Ok((StatusCode::CREATED, Json(ChannelView::from(&channel))))
}

/// Deletes a channel: any for an administrator, their own for anyone else (another's
/// is 404, as if it did not exist).
#[utoipa::path(delete, path = "/patgate/api/v1/notification-channels/{id}", tag = "notification-channels",
    operation_id = "notification_channels_delete",
    security(("password" = []), ("session" = [])),
    params(("id" = String, Path, description = "the channel's id")),
    responses((status = 204, description = "deleted"), (status = 404, description = "no such channel of the caller's")))]
pub async fn remove(
    State(api): State<ApiRef>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let api = api.get()?;
    caller.require_signed_in()?;
    let missing = || ApiError::not_found(format!("no notification channel {id:?}"));
    let channel = api.store.channel(&id).await?.ok_or_else(missing)?;
    if !caller.acts_as_admin() && channel.owner.as_deref() != Some(caller.username.as_str()) {
        return Err(missing());
    }
    if !api.store.delete_channel(&id).await? {
        return Err(missing());
    }
    api.audit_change(
        &caller,
        "notification_channel.deleted",
        serde_json::json!({"id": id, "kind": channel.kind, "owner": channel.owner}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
