//! The `audit:` section: how long the audit log keeps its entries.

use std::time::Duration;

use serde::Deserialize;

use super::values::duration;
use super::ConfigError;

/// Shortest retention accepted: the housekeeping prunes by the minute, and a log that
/// forgets within hours is no log.
const MIN_RETENTION: Duration = Duration::from_secs(86_400);

/// The audit log's settings.
#[derive(Debug, Clone)]
pub struct Audit {
    /// Entries older than this are pruned by the housekeeping (refusal and sign-in
    /// failure counts included).
    pub retention: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawAudit {
    retention: String,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            retention: "365d".into(),
        }
    }
}

impl RawAudit {
    pub(super) fn validate(self) -> Result<Audit, ConfigError> {
        let text = self.retention.trim();
        if text == "off" {
            return Err(ConfigError::key(
                "audit.retention",
                text,
                "entries are always pruned past the retention; write a long one, like 3650d, to keep them for years",
            ));
        }
        let retention = duration("audit.retention", text)?;
        if retention < MIN_RETENTION {
            return Err(ConfigError::key(
                "audit.retention",
                text,
                "must be at least 1d; write a duration like 365d",
            ));
        }
        Ok(Audit { retention })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, MINIMAL};
    use crate::config::Config;

    fn retention(value: &str) -> Result<std::time::Duration, String> {
        Config::from_yaml(MINIMAL, &env(&[("PATGATE_AUDIT__RETENTION", value)]))
            .map(|cfg| cfg.audit.retention)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn retention_is_a_year_unless_set_and_at_least_a_day() {
        let cfg = Config::from_yaml(MINIMAL, &env(&[])).unwrap();
        assert_eq!(cfg.audit.retention.as_secs(), 365 * 86_400);
        assert_eq!(retention("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(retention("1d").unwrap().as_secs(), 86_400);
        for bad in ["0", "0s", "23h", "off", "a year", ""] {
            let err = retention(bad).unwrap_err();
            assert!(err.contains("audit.retention"), "{bad}: {err}");
        }
        assert!(retention("23h").unwrap_err().contains("at least 1d"));
    }
}
