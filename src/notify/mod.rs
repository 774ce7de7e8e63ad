//! The expiry notifier: e-mails users before their tokens expire, through the SMTP
//! server item administrators chose, once per token. It runs as a side task of
//! `patgate serve` ([`schedule`]) or from `patgate notify run-once`; it never runs on
//! the request path, and a slow or dead SMTP server only ever delays its own pass.
//!
//! [`pass`] finds and claims due tokens and sends, [`smtp`] speaks to the server
//! (JavaMail properties, errors), [`templates`] renders the e-mail, [`secret`] keeps
//! SMTP passwords sealed at rest.
//!
//! May import: the floors up to `signin` (`core`, `config`, `metrics`, `store`,
//! `tokens` in use).

use std::sync::Arc;

use crate::config::{Config, Notify};
use crate::metrics::Metrics;
use crate::store::{SmtpServerRecord, Store, StoreError};

pub mod address;
pub mod channels;
pub mod leaked;
pub mod pass;
pub mod recipients;
mod retry;
pub mod schedule;
pub mod secret;
pub mod smtp;
pub mod templates;
pub mod unused;

pub use pass::PassReport;

/// What started a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The daily instant.
    Schedule,
    /// The gateway started after a missed daily instant.
    CatchUp,
    /// `patgate notify run-once`, or a test.
    Command,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Schedule => "schedule",
            Cause::CatchUp => "catch-up",
            Cause::Command => "run-once",
        }
    }
}

/// `notify.*` as they are now, shared with the channel deliveries; a reload replaces
/// the inner value.
pub type SharedSettings = Arc<std::sync::RwLock<Arc<Notify>>>;

/// The notifier's state, built once at start-up.
pub struct Notifier {
    pub store: Store,
    /// `notify.*`; replaced by a reload.
    config: SharedSettings,
    /// Wakes the daily schedule when a reload changed the settings.
    changed: tokio::sync::Notify,
    pub sealer: secret::Sealer,
    /// Delivers messages to notification channels, off the pass.
    pub channels: Arc<channels::Deliverer>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn new(config: &Config, store: Store, metrics: Arc<Metrics>) -> anyhow::Result<Notifier> {
        let mut keys = vec![crate::tokens::keys::token_key(&config.secrets)?];
        keys.extend(crate::tokens::keys::previous_token_keys(&config.secrets)?);
        let http = crate::signin::http_client::HttpClient::new(None, config.notify.send_timeout)?;
        let settings: SharedSettings =
            Arc::new(std::sync::RwLock::new(Arc::new(config.notify.clone())));
        Ok(Notifier {
            channels: Arc::new(channels::Deliverer::new(
                store.clone(),
                http,
                secret::Sealer::new(&keys),
                settings.clone(),
            )),
            store,
            config: settings,
            changed: tokio::sync::Notify::new(),
            sealer: secret::Sealer::new(&keys),
            metrics,
        })
    }

    /// `notify.*` as they are now.
    pub fn settings(&self) -> Arc<Notify> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes new `notify.*` settings (a reload): the next pass and the next wait for
    /// the daily one use them.
    pub fn set_settings(&self, settings: Notify) {
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(settings);
        self.changed.notify_waiters();
    }

    /// Resolves when a reload has changed the settings.
    pub async fn settings_changed(&self) {
        self.changed.notified().await
    }

    /// The daily schedule; `None` when `notify.daily_at` is `off`.
    pub fn schedule(&self) -> Option<schedule::Schedule> {
        let settings = self.settings();
        settings.daily_at.map(|at| schedule::Schedule {
            at,
            zone: settings.time_zone.clone(),
        })
    }

    /// The counters it reports to (shared with the rest of the gateway).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The zone's name as shown to people.
    pub fn zone_name(&self) -> String {
        let settings = self.settings();
        settings
            .time_zone
            .iana_name()
            .map(str::to_string)
            .unwrap_or_else(|| match settings.time_zone_name.as_str() {
                "" => "server local time".into(),
                name => name.to_string(),
            })
    }

    /// A transport for an item, with its password opened; refused for a host outside
    /// `notify.smtp_hosts`.
    pub fn mailer(&self, item: &SmtpServerRecord) -> Result<smtp::Mailer, smtp::SendFailure> {
        let settings = self.settings();
        if !settings.smtp_host_allowed(&item.host) {
            return Err(smtp::SendFailure {
                kind: smtp::FailureKind::Configuration,
                message: smtp_host_refused(&item.host),
            });
        }
        let password = item
            .password
            .as_ref()
            .map(|sealed| self.sealer.open(&item.id, sealed))
            .transpose()
            .map_err(|e| smtp::SendFailure {
                kind: smtp::FailureKind::Configuration,
                message: e.to_string(),
            })?;
        smtp::Mailer::new(item, password.as_ref(), settings.send_timeout)
    }

    /// Whether an item may name `host` (`notify.smtp_hosts`).
    pub fn smtp_host_allowed(&self, host: &str) -> bool {
        self.settings().smtp_host_allowed(host)
    }

    /// Why nothing would be sent now, or `None` when notifications are on and an SMTP
    /// server is chosen.
    pub async fn idle_reason(&self) -> Result<Option<String>, StoreError> {
        let settings = self.store.notify_settings().await?;
        Ok(pass::idle_reason(&settings).map(|(_, reason)| reason.to_string()))
    }
}

/// Why a channel may not post to `host`.
pub fn channel_host_refused(host: &str) -> String {
    format!(
        "url: host {host:?} is not one of notify.channel_hosts, the hosts this gateway's operator allows channels to post to; use one of them, or ask the operator to add it"
    )
}

/// Why an item may not name `host`.
pub fn smtp_host_refused(host: &str) -> String {
    format!(
        "SMTP host {host:?} is not one of notify.smtp_hosts, the hosts this gateway's operator allows; use one of them, or ask the operator to add it"
    )
}
