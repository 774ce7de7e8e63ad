//! The `database:` section: which SQLite file or PostgreSQL server holds the tokens.

use std::path::PathBuf;

use serde::Deserialize;

use super::values::number;
use super::ConfigError;

#[derive(Debug, Clone)]
pub struct Database {
    pub url: String,
    pub max_connections: u32,
}

impl Database {
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }

    /// The SQLite database file, when the database is SQLite.
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let rest = self
            .url
            .strip_prefix("sqlite://")
            .or_else(|| self.url.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    url: String,
    /// 0: 4 for SQLite (one writer; lookups are single index seeks), 8 for PostgreSQL.
    #[serde(default, deserialize_with = "number")]
    max_connections: u32,
}

impl RawDatabase {
    pub(super) fn validate(self) -> Result<Database, ConfigError> {
        let url_text = self.url.trim().to_string();
        if !(url_text.starts_with("sqlite:")
            || url_text.starts_with("postgres://")
            || url_text.starts_with("postgresql://"))
        {
            return Err(ConfigError::key(
                "database.url",
                &redact_url(&url_text),
                "unsupported database; use sqlite://PATH or postgres://USER@HOST/DB",
            ));
        }
        let max_connections = match self.max_connections {
            0 if url_text.starts_with("sqlite:") => 4,
            0 => 8,
            n => n,
        };
        Ok(Database {
            url: url_text,
            max_connections,
        })
    }
}

/// Hides a password in a database URL (user info or `password=` parameter) before it
/// goes into a message.
pub fn redact_url(url: &str) -> String {
    let redacted = redact_userinfo(url);
    match redacted.split_once('?') {
        Some((base, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_string(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
        None => redacted,
    }
}

fn redact_userinfo(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{env, MINIMAL};
    use crate::config::Config;

    #[test]
    fn database_password_is_redacted_in_errors() {
        let err = Config::from_yaml(
            MINIMAL,
            &env(&[("PATGATE_DATABASE__URL", "mysql://u:hunter2@h/x")]),
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("database.url"), "{err}");
    }

    #[test]
    fn password_parameters_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:pw@h/db?sslmode=require&password=x"),
            "postgres://u:***@h/db?sslmode=require&password=***"
        );
    }
}
