//! Delivering a token's messages to notification channels besides e-mail: a signed
//! JSON POST (`webhook`, signed the way leaked-token reports are,
//! [`crate::core::signature`]), a Slack incoming-webhook message, or a Microsoft
//! Teams MessageCard. Each delivery runs off the pass on its own task, retried with
//! back-off, every attempt recorded on the channel. A user's channel posts to no
//! internal address ([`super::address`]); redirects are never followed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use super::address::{bare_host, resolved_refusal};
use super::secret::Sealer;
use crate::signin::http_client::HttpClient;
use crate::store::{ChannelRecord, Reminder, Store};

/// Attempts per delivery: the first and three retries.
pub const ATTEMPTS: i64 = 4;
/// The wait before the first retry; each further one waits twice as long.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);

/// One message about one token, the same for every channel.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// `token.expiring`, `token.unused_warning` or `token.revoked_unused`.
    pub event: &'static str,
    pub token_id: String,
    pub token_name: String,
    pub username: String,
    /// RFC 3339; `None` for a token that never expires.
    pub expires_at: Option<String>,
    /// Whole days until expiry (`token.expiring`) or revocation (`token.unused_warning`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// One sentence for people, as chat channels show it.
    pub text: String,
}

impl Message {
    /// The body a channel of `kind` is sent.
    pub fn payload(&self, kind: &str) -> Value {
        match kind {
            "slack" => json!({
                "text": self.text,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": self.text}}],
            }),
            "teams" => json!({
                "@type": "MessageCard",
                "@context": "http://schema.org/extensions",
                "summary": self.title(),
                "themeColor": "0076D7",
                "title": self.title(),
                "text": self.text,
                "sections": [{"facts": [
                    {"name": "Token", "value": self.token_name},
                    {"name": "Owner", "value": self.username},
                    {"name": "Expires", "value": self.expires_at.as_deref().unwrap_or("never")},
                ]}],
            }),
            _ => serde_json::to_value(self).unwrap_or(Value::Null),
        }
    }

    fn title(&self) -> &'static str {
        match self.event {
            "token.expiring" => "Personal access token expiring",
            "token.unused_warning" => "Unused personal access token to be revoked",
            _ => "Unused personal access token revoked",
        }
    }
}

/// Which reminder of which pass a delivery is for, so that each channel claims it.
pub struct Once {
    pub which: Reminder,
    pub pass_id: String,
    /// The pass's "now", and before when a claim is stale (`notify.claim_lease`).
    pub now: i64,
    pub stale_before: i64,
}

/// What deliveries need, shared by their tasks.
pub struct Deliverer {
    /// The notifier's `notify.*` (a reload replaces them), for `channel_hosts`.
    settings: super::SharedSettings,
    store: Store,
    http: HttpClient,
    sealer: Sealer,
    /// Deliveries under way, so that tests and shutdown can wait for them.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Deliverer {
    pub fn new(
        store: Store,
        http: HttpClient,
        sealer: Sealer,
        settings: super::SharedSettings,
    ) -> Deliverer {
        Deliverer {
            settings,
            store,
            http,
            sealer,
            tasks: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Sends `message` to each channel on its own task: retried with back-off up to
    /// [`ATTEMPTS`] times, each attempt recorded. Returns at once; the pass waits for
    /// no channel.
    pub fn deliver(self: &Arc<Self>, channels: &[ChannelRecord], message: &Message) {
        self.spawn(channels, message, None);
    }

    /// [`deliver`](Self::deliver) a token's reminder or warning: each channel claims
    /// its delivery first, so that a channel is told once however often the reminder
    /// is retried (its e-mail failed), and a channel whose delivery failed is retried
    /// when it is, alone.
    pub fn deliver_once(
        self: &Arc<Self>,
        channels: &[ChannelRecord],
        message: &Message,
        once: Once,
    ) {
        self.spawn(channels, message, Some(Arc::new(once)));
    }

    fn spawn(
        self: &Arc<Self>,
        channels: &[ChannelRecord],
        message: &Message,
        once: Option<Arc<Once>>,
    ) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|t| !t.is_finished());
        for channel in channels {
            let deliverer = self.clone();
            let channel = channel.clone();
            let message = message.clone();
            let once = once.clone();
            tasks.push(tokio::spawn(async move {
                match once {
                    None => {
                        deliverer.deliver_one(&channel, &message).await;
                    }
                    Some(once) => deliverer.deliver_claimed(&channel, &message, &once).await,
                }
            }));
        }
    }

    async fn deliver_claimed(&self, channel: &ChannelRecord, message: &Message, once: &Once) {
        let claimed = self
            .store
            .claim_channel_send(
                &channel.id,
                &message.token_id,
                once.which,
                &once.pass_id,
                once.now,
                once.stale_before,
            )
            .await;
        match claimed {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(channel = %channel.id, error = %e, "could not claim a channel delivery; the next pass retries");
                return;
            }
        }
        let delivered = self.deliver_one(channel, message).await;
        if let Err(e) = self
            .store
            .finish_channel_send(
                &channel.id,
                &message.token_id,
                once.which,
                &once.pass_id,
                delivered,
            )
            .await
        {
            tracing::warn!(channel = %channel.id, error = %e, "could not record a channel delivery's outcome");
        }
    }

    /// Waits for the deliveries under way.
    pub async fn settled(&self) {
        let tasks: Vec<_> =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Delivers, retrying; whether it was delivered in the end.
    async fn deliver_one(&self, channel: &ChannelRecord, message: &Message) -> bool {
        let uri = channel.url.parse::<http::Uri>().ok();
        let host = uri
            .as_ref()
            .and_then(|u| u.host().map(str::to_string))
            .unwrap_or_default();
        let port = uri.as_ref().and_then(|u| u.port_u16()).unwrap_or(
            match uri.as_ref().and_then(|u| u.scheme_str()) {
                Some("https") => 443,
                _ => 80,
            },
        );
        let settings = self
            .settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if !settings.channel_host_allowed(&host) {
            let refused = super::channel_host_refused(&host);
            record(&self.store, channel, message, 1, Some(&refused)).await;
            return false;
        }
        // A user's channel reaches no internal address, unless the operator listed it.
        let guarded = !channel.made_by_admin && !settings.channel_host_listed(&host);
        let body = serde_json::to_vec(&message.payload(&channel.kind)).unwrap_or_default();
        let secret = match channel.secret.as_ref() {
            None => None,
            Some(sealed) => match self.sealer.open_channel_secret(&channel.id, sealed) {
                Ok(secret) => Some(secret),
                Err(e) => {
                    record(&self.store, channel, message, 1, Some(&e.to_string())).await;
                    return false;
                }
            },
        };
        let mut wait = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            let address = match target(&host, port, guarded, settings.send_timeout).await {
                Ok(address) => address,
                Err(Unreachable::Refused(refused)) => {
                    tracing::warn!(channel = %channel.id, event = message.event, error = refused, "notification channel delivery refused");
                    record(&self.store, channel, message, attempt, Some(&refused)).await;
                    return false;
                }
                Err(Unreachable::Unresolved(error)) => {
                    record(&self.store, channel, message, attempt, Some(&error)).await;
                    if attempt == ATTEMPTS {
                        return false;
                    }
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    continue;
                }
            };
            let mut request = http::Request::post(&channel.url)
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::USER_AGENT, "patgate");
            if let Some(secret) = &secret {
                request = request.header(
                    crate::core::signature::SIGNATURE_HEADER,
                    crate::core::signature::sign(secret.expose().as_bytes(), &body),
                );
            }
            let error = match request.body(body.clone()) {
                // The URL itself may be the secret (Slack, Teams): never in a message.
                Err(_) => Some("the channel's URL is not a valid request target".to_string()),
                // Redirects are not followed: one could lead anywhere.
                Ok(request) => match self.http.send_to(request, address).await {
                    Ok(answer) if answer.status().is_success() => None,
                    Ok(answer) => Some(format!("answered HTTP {}", answer.status().as_u16())),
                    Err(e) => Some(e.to_string()),
                },
            };
            record(&self.store, channel, message, attempt, error.as_deref()).await;
            let Some(error) = error else { return true };
            if attempt == ATTEMPTS {
                tracing::warn!(channel = %channel.id, event = message.event, error, "notification channel delivery failed after every attempt");
                return false;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        false
    }
}

/// Why a channel's host cannot be posted to.
enum Unreachable {
    /// Not now: the name did not resolve (retried).
    Unresolved(String),
    /// Never: an internal address for a guarded channel (not retried).
    Refused(String),
}

/// The address to post to: `host` resolved, and when `guarded`, none of its addresses
/// internal ([`super::address`]). The request goes to this address, not to a second
/// resolution that could answer otherwise.
async fn target(
    host: &str,
    port: u16,
    guarded: bool,
    timeout: Duration,
) -> Result<SocketAddr, Unreachable> {
    let lookup = tokio::net::lookup_host((bare_host(host), port));
    let addresses: Vec<SocketAddr> = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| {
            Unreachable::Unresolved(format!("host {host:?} did not resolve within {timeout:?}"))
        })?
        .map_err(|e| Unreachable::Unresolved(format!("could not resolve host {host:?}: {e}")))?
        .collect();
    if guarded {
        if let Some(refused) = addresses.iter().find_map(|a| resolved_refusal(host, *a)) {
            return Err(Unreachable::Refused(refused));
        }
    }
    addresses
        .first()
        .copied()
        .ok_or_else(|| Unreachable::Unresolved(format!("host {host:?} resolves to no address")))
}

async fn record(
    store: &Store,
    channel: &ChannelRecord,
    message: &Message,
    attempt: i64,
    error: Option<&str>,
) {
    if let Err(e) = store
        .record_delivery(
            &channel.id,
            message.event,
            Some(&message.token_id),
            attempt,
            error,
            crate::core::time::now(),
        )
        .await
    {
        tracing::warn!(channel = %channel.id, error = %e, "could not record a channel delivery");
    }
}
