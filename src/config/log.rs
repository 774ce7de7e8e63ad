//! The `log:` section: the level filter, text or JSON lines, and the access log.

use serde::Deserialize;

use super::values::flag;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct Log {
    pub level: String,
    pub json: bool,
    /// One line per request (method, path, status, user, credential kind, duration,
    /// request id) at info level.
    pub access: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default = "default_level")]
    level: String,
    #[serde(default = "default_format")]
    format: String,
    #[serde(default, deserialize_with = "flag")]
    access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: default_level(),
            format: default_format(),
            access: false,
        }
    }
}

fn default_level() -> String {
    "info".into()
}
fn default_format() -> String {
    "text".into()
}

impl RawLog {
    pub(super) fn validate(self) -> Result<Log, ConfigError> {
        let json = match self.format.as_str() {
            "text" => false,
            "json" => true,
            other => {
                return Err(ConfigError::key("log.format", other, "use text or json"));
            }
        };
        check_log_level(&self.level)?;
        Ok(Log {
            level: self.level,
            json,
            access: self.access,
        })
    }
}

/// The levels `log.level` accepts, alone or after `target=`.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A log filter: a level, or comma-separated `level` and `target=level` directives. A
/// bare word that is not a level would be read as a target and silence everything
/// else, so it is refused.
fn check_log_level(text: &str) -> Result<(), ConfigError> {
    let fix = || {
        format!(
            "use one of {}, or per-module filters like info,patgate=debug",
            LOG_LEVELS.join(", ")
        )
    };
    let is_level = |word: &str| {
        LOG_LEVELS
            .iter()
            .any(|l| l.eq_ignore_ascii_case(word.trim()))
    };
    let directives: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(ConfigError::key(
            "log.level",
            text,
            format!("empty; {}", fix()),
        ));
    }
    for directive in directives {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            _ => directive,
        };
        if !is_level(level) {
            return Err(ConfigError::key(
                "log.level",
                text,
                format!("{level:?} is not a level; {}", fix()),
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(drop)
        .map_err(|e| ConfigError::key("log.level", text, format!("{e}; {}", fix())))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{env, MINIMAL};
    use crate::config::Config;

    #[test]
    fn unknown_log_levels_are_refused_with_the_valid_ones() {
        for bad in ["verbose", "info,verbose", "patgate=loud", ""] {
            let err = Config::from_yaml(MINIMAL, &env(&[("PATGATE_LOG__LEVEL", bad)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains("log.level"), "{bad}: {err}");
            assert!(
                err.contains("off, error, warn, info, debug, trace"),
                "{bad}: {err}"
            );
        }
        for good in ["debug", "WARN", "info,patgate=debug", "warn,hyper=off"] {
            assert!(
                Config::from_yaml(MINIMAL, &env(&[("PATGATE_LOG__LEVEL", good)])).is_ok(),
                "{good}"
            );
        }
    }
}
