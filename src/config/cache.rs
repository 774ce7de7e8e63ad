//! The `cache:` and `limits:` sections: how long token checks are kept, how many may fail.

use std::time::Duration;

use serde::Deserialize;

use super::values::{duration, number};
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct Cache {
    pub max_tokens: u64,
    /// Upper bound on how long a valid token stays cached (revocations evict at once).
    pub ttl: Duration,
    /// How long an unknown token hash is remembered as unknown.
    pub negative_ttl: Duration,
    /// How often the store is polled for revocations made by other processes.
    pub poll_interval: Duration,
    /// While the database cannot be reached, how long after the change feed last
    /// confirmed itself cached tokens keep their answer; zero: not at all.
    pub serve_stale_for: Duration,
}

/// Per-address limit on failed token checks (see `limiter`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub failures_per_second: f64,
    pub failure_burst: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    #[serde(default = "default_max_tokens", deserialize_with = "number")]
    max_tokens: u64,
    #[serde(default = "default_cache_ttl")]
    ttl: String,
    #[serde(default = "default_negative_ttl")]
    negative_ttl: String,
    #[serde(default = "default_poll")]
    poll_interval: String,
    #[serde(default = "default_serve_stale_for")]
    serve_stale_for: String,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            max_tokens: default_max_tokens(),
            ttl: default_cache_ttl(),
            negative_ttl: default_negative_ttl(),
            poll_interval: default_poll(),
            serve_stale_for: default_serve_stale_for(),
        }
    }
}

fn default_max_tokens() -> u64 {
    200_000
}
fn default_cache_ttl() -> String {
    "10m".into()
}
fn default_negative_ttl() -> String {
    "30s".into()
}
fn default_poll() -> String {
    "250ms".into()
}
fn default_serve_stale_for() -> String {
    "0s".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    #[serde(default = "default_failures_per_second", deserialize_with = "number")]
    failures_per_second: f64,
    #[serde(default = "default_failure_burst", deserialize_with = "number")]
    failure_burst: u32,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            failures_per_second: default_failures_per_second(),
            failure_burst: default_failure_burst(),
        }
    }
}

fn default_failures_per_second() -> f64 {
    10.0
}
fn default_failure_burst() -> u32 {
    100
}

impl RawCache {
    pub(super) fn validate(self) -> Result<Cache, ConfigError> {
        let poll = duration("cache.poll_interval", &self.poll_interval)?;
        if poll < Duration::from_millis(10) || poll > Duration::from_millis(500) {
            return Err(ConfigError::key(
                "cache.poll_interval",
                &self.poll_interval,
                "must be between 10ms and 500ms, so that revocations apply within a second",
            ));
        }
        if self.max_tokens == 0 {
            return Err(ConfigError::key(
                "cache.max_tokens",
                "0",
                "must be at least 1",
            ));
        }
        Ok(Cache {
            max_tokens: self.max_tokens,
            ttl: duration("cache.ttl", &self.ttl)?,
            negative_ttl: duration("cache.negative_ttl", &self.negative_ttl)?,
            poll_interval: poll,
            serve_stale_for: duration("cache.serve_stale_for", &self.serve_stale_for)?,
        })
    }
}

impl RawLimits {
    pub(super) fn validate(self) -> Result<Limits, ConfigError> {
        if !(self.failures_per_second > 0.0 && self.failures_per_second.is_finite()) {
            return Err(ConfigError::key(
                "limits.failures_per_second",
                &self.failures_per_second.to_string(),
                "must be a positive number",
            ));
        }
        if self.failure_burst == 0 {
            return Err(ConfigError::key(
                "limits.failure_burst",
                "0",
                "must be at least 1",
            ));
        }
        Ok(Limits {
            failures_per_second: self.failures_per_second,
            failure_burst: self.failure_burst,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, MINIMAL};
    use crate::config::Config;

    #[test]
    fn serve_stale_for_is_off_unless_set_and_a_duration() {
        let stale = |pairs: &[(&str, &str)]| {
            Config::from_yaml(MINIMAL, &env(pairs)).map(|cfg| cfg.cache.serve_stale_for)
        };
        assert!(stale(&[]).unwrap().is_zero());
        let set = |value| stale(&[("PATGATE_CACHE__SERVE_STALE_FOR", value)]);
        assert!(set("0s").unwrap().is_zero());
        assert_eq!(set("5m").unwrap().as_secs(), 300);
        let err = set("a while").unwrap_err().to_string();
        assert!(err.contains("cache.serve_stale_for"), "{err}");
    }
}
