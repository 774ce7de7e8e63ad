//! Parsers for the values every section has, written in YAML or as an override's text.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// A number written as a YAML number or as text (environment overrides are text).
pub(super) fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + serde::Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumberOrText<T> {
        Number(T),
        Text(String),
    }
    match NumberOrText::<T>::deserialize(deserializer)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(text) => text
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom(format!("{text:?} is not a number"))),
    }
}

/// `true` or `false`, as YAML or as text.
pub(super) fn flag<'de, D>(deserializer: D) -> Result<bool, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum FlagOrText {
        Flag(bool),
        Text(String),
    }
    match FlagOrText::deserialize(deserializer)? {
        FlagOrText::Flag(flag) => Ok(flag),
        FlagOrText::Text(text) => match text.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(serde::de::Error::custom(format!(
                "{text:?} is not true or false"
            ))),
        },
    }
}

/// A list, as a YAML sequence or as text separated by commas or spaces (an
/// environment override).
pub(super) fn list<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    // Another enum than the `ListOrText` below (which splits on commas only); its name
    // shows in serde's errors, so it stays.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<String>),
        Text(String),
    }
    Ok(match ListOrText::deserialize(deserializer)? {
        ListOrText::List(items) => items,
        ListOrText::Text(text) => text
            .split([',', ' '])
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// A list written as a YAML list or as comma-separated text (environment overrides).
#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub(crate) enum ListOrText {
    #[default]
    Empty,
    List(Vec<String>),
    Text(String),
}

impl ListOrText {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            ListOrText::Empty => Vec::new(),
            ListOrText::List(items) => items,
            ListOrText::Text(text) => text.split(',').map(str::to_string).collect(),
        }
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
    }
}

/// A duration like `30s` or `5m`, named by its key when it does not parse.
pub(super) fn duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value)
        .map_err(|e| ConfigError::key(key, value, format!("{e}; write a duration like 30s or 5m")))
}

/// A path, or `None` when the value is blank.
pub(super) fn optional_path(value: &str) -> Option<PathBuf> {
    (!value.trim().is_empty()).then(|| PathBuf::from(value))
}
