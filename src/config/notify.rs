//! The `notify:` section: when the expiry notifier runs, in which time zone, where the
//! link in its e-mails points, and how long and how widely it may wait on SMTP.

use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, number, ListOrText};
use super::ConfigError;

/// The expiry notifier's process-level settings. What is sent, and through which SMTP
/// server, is administrators' business (`/patgate/api/v1/settings`), kept in the store.
#[derive(Debug, Clone)]
pub struct Notify {
    /// Local time of the daily pass; `None` (`off`) leaves passes to
    /// `patgate notify run-once` (cron) and other replicas.
    pub daily_at: Option<jiff::civil::Time>,
    /// The zone `daily_at` is read in, and expiry instants are shown in.
    pub time_zone: jiff::tz::TimeZone,
    /// What operators wrote for the zone (`""`: the server's local zone).
    pub time_zone_name: String,
    /// Where users reach the gateway (`https://deploy.example.com`), for the link to the
    /// access tokens page; empty: e-mails carry no link.
    pub public_url: String,
    /// Longest time one e-mail may take, connection included.
    pub send_timeout: Duration,
    /// E-mails sent at the same time.
    pub concurrency: usize,
    /// How long a claimed notification stays claimed before another pass may retry it
    /// (a replica that crashed between claim and send).
    pub claim_lease: Duration,
    /// The SMTP hosts items may name (lower case; `*.example.com` for a domain's
    /// hosts); empty: any host.
    pub smtp_hosts: Vec<String>,
    /// The hosts notification channels may post to, written as `smtp_hosts`; empty:
    /// any host. A host listed here may be posted to even when it is internal (a
    /// user's channel may otherwise not reach loopback, link-local or private
    /// addresses, [`crate::notify::address`]).
    pub channel_hosts: Vec<String>,
}

impl Notify {
    /// Whether an SMTP server item may name `host`.
    pub fn smtp_host_allowed(&self, host: &str) -> bool {
        host_allowed(&self.smtp_hosts, host)
    }

    /// Whether a notification channel may post to `host`.
    pub fn channel_host_allowed(&self, host: &str) -> bool {
        host_allowed(&self.channel_hosts, host)
    }

    /// Whether the operator listed `host` in `notify.channel_hosts` (an empty list
    /// lists none): a user's channel may then post to it even at an internal address.
    pub fn channel_host_listed(&self, host: &str) -> bool {
        !self.channel_hosts.is_empty() && host_allowed(&self.channel_hosts, host)
    }
}

/// Whether `host` is one of `allowed` (empty: any), `*.example.com` naming a domain's
/// hosts.
fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    allowed.is_empty()
        || allowed
            .iter()
            .any(|allowed| match allowed.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => *allowed == host,
            })
}

/// Host names or addresses, or `*.example.com`, checked and in lower case.
fn hosts(key: &str, list: ListOrText) -> Result<Vec<String>, ConfigError> {
    let mut hosts = Vec::new();
    for host in list.into_vec() {
        let bare = host.strip_prefix("*.").unwrap_or(&host);
        let valid = !bare.is_empty()
            && bare.len() <= 253
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !valid {
            return Err(ConfigError::key(
                key,
                &host,
                "write host names or addresses (smtp.example.com, 10.0.0.25), or *.example.com for a domain's hosts",
            ));
        }
        hosts.push(host.to_ascii_lowercase());
    }
    Ok(hosts)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawNotify {
    daily_at: String,
    time_zone: String,
    public_url: String,
    send_timeout: String,
    #[serde(deserialize_with = "number")]
    concurrency: usize,
    claim_lease: String,
    smtp_hosts: ListOrText,
    channel_hosts: ListOrText,
}

impl Default for RawNotify {
    fn default() -> Self {
        RawNotify {
            daily_at: "01:00".into(),
            time_zone: String::new(),
            public_url: String::new(),
            send_timeout: "30s".into(),
            concurrency: 4,
            claim_lease: "15m".into(),
            smtp_hosts: ListOrText::Empty,
            channel_hosts: ListOrText::Empty,
        }
    }
}

impl RawNotify {
    pub(super) fn validate(self) -> Result<Notify, ConfigError> {
        let daily_at = match self.daily_at.trim() {
            "off" => None,
            text => Some(parse_daily_at(text).ok_or_else(|| {
                ConfigError::key(
                    "notify.daily_at",
                    text,
                    "write a time of day as HH:MM (24-hour), like 01:00, or off",
                )
            })?),
        };
        let name = self.time_zone.trim().to_string();
        let time_zone = if name.is_empty() {
            jiff::tz::TimeZone::try_system().map_err(|e| {
                ConfigError::key(
                    "notify.time_zone",
                    "",
                    format!(
                        "the server's local zone cannot be read ({e}); name one, like Europe/Paris"
                    ),
                )
            })?
        } else {
            jiff::tz::TimeZone::get(&name).map_err(|_| {
                ConfigError::key(
                    "notify.time_zone",
                    &name,
                    "unknown time zone; write an IANA name like Europe/Paris or UTC",
                )
            })?
        };
        let public_url = match self.public_url.trim().trim_end_matches('/') {
            "" => String::new(),
            url => {
                let uri: http::Uri = url.parse().map_err(|_| {
                    ConfigError::key(
                        "notify.public_url",
                        url,
                        "not a URL; write https://HOST[:PORT]",
                    )
                })?;
                if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                    return Err(ConfigError::key(
                        "notify.public_url",
                        url,
                        "write an http:// or https:// URL with a host",
                    ));
                }
                url.to_string()
            }
        };
        let send_timeout = duration("notify.send_timeout", &self.send_timeout)?;
        if send_timeout < Duration::from_secs(1) || send_timeout > Duration::from_secs(600) {
            return Err(ConfigError::key(
                "notify.send_timeout",
                &self.send_timeout,
                "must be between 1s and 10m",
            ));
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(ConfigError::key(
                "notify.concurrency",
                &self.concurrency.to_string(),
                "must be between 1 and 64",
            ));
        }
        let claim_lease = duration("notify.claim_lease", &self.claim_lease)?;
        if claim_lease < send_timeout * 2 {
            return Err(ConfigError::key(
                "notify.claim_lease",
                &self.claim_lease,
                "must be at least twice notify.send_timeout, or a slow send could be repeated",
            ));
        }
        let smtp_hosts = hosts("notify.smtp_hosts", self.smtp_hosts)?;
        let channel_hosts = hosts("notify.channel_hosts", self.channel_hosts)?;
        Ok(Notify {
            daily_at,
            time_zone,
            time_zone_name: name,
            public_url,
            send_timeout,
            concurrency: self.concurrency,
            claim_lease,
            smtp_hosts,
            channel_hosts,
        })
    }
}

/// `HH:MM` on a 24-hour clock.
fn parse_daily_at(text: &str) -> Option<jiff::civil::Time> {
    let (h, m) = text.split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let hour: i8 = h.parse().ok()?;
    let minute: i8 = m.parse().ok()?;
    jiff::civil::Time::new(hour, minute, 0, 0).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_hosts_allow_names_and_domains() {
        let mut notify = RawNotify {
            time_zone: "UTC".into(),
            smtp_hosts: ListOrText::Text("smtp.example.com, *.corp.example".into()),
            ..RawNotify::default()
        }
        .validate()
        .unwrap();
        assert!(notify.smtp_host_allowed("SMTP.example.com"));
        assert!(notify.smtp_host_allowed("relay.eu.corp.example"));
        assert!(!notify.smtp_host_allowed("corp.example"));
        assert!(!notify.smtp_host_allowed("evilcorp.example"));
        assert!(!notify.smtp_host_allowed("127.0.0.1"));
        notify.smtp_hosts.clear();
        assert!(notify.smtp_host_allowed("anything.example"));
        let err = RawNotify {
            time_zone: "UTC".into(),
            smtp_hosts: ListOrText::Text("smtp example".into()),
            ..RawNotify::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("notify.smtp_hosts"), "{err}");
    }

    #[test]
    fn daily_at_reads_hours_and_minutes() {
        assert_eq!(parse_daily_at("01:00"), Some(jiff::civil::time(1, 0, 0, 0)));
        assert_eq!(
            parse_daily_at("23:59"),
            Some(jiff::civil::time(23, 59, 0, 0))
        );
        for bad in ["24:00", "1", "01:60", "1:5", "", "aa:bb"] {
            assert_eq!(parse_daily_at(bad), None, "{bad}");
        }
    }
}
