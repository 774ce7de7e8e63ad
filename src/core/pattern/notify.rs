//! The rules of the notification settings and channels, beside the schemas built
//! from them: reminder days, the unused-token choices, a channel's URL and secret.

use utoipa::openapi::schema::{Array, ArrayBuilder, Object, ObjectBuilder, SchemaType, Type};

use super::{integer_schema, DAYS_BEFORE_MAX, DAYS_BEFORE_MIN};

/// Most reminders per token.
pub const MAX_REMINDER_DAYS: usize = 10;
/// The choices of `unused_token_revoke_days` (besides `null`, off).
pub const UNUSED_REVOKE_DAYS: [i64; 5] = [30, 60, 90, 180, 365];
/// Longest channel URL.
pub const CHANNEL_URL_MAX: usize = 2048;
/// Shortest and longest webhook signing secret.
pub const CHANNEL_SECRET_MIN: usize = 16;
pub const CHANNEL_SECRET_MAX: usize = 256;

/// Why a reminder list is refused, or `None`.
pub fn reminder_days_problem(days: &[i64]) -> Option<String> {
    if days.is_empty() {
        return Some("give at least one day".into());
    }
    if days.len() > MAX_REMINDER_DAYS {
        return Some(format!("{} days: at most {MAX_REMINDER_DAYS}", days.len()));
    }
    if let Some(day) = days
        .iter()
        .find(|d| !(DAYS_BEFORE_MIN..=DAYS_BEFORE_MAX).contains(*d))
    {
        return Some(format!("{day}: each day is between 1 and 365"));
    }
    let mut seen = days.to_vec();
    seen.sort_unstable();
    if let Some(twice) = seen.windows(2).find(|w| w[0] == w[1]) {
        return Some(format!("{} appears twice: give each day once", twice[0]));
    }
    None
}

/// Why an `unused_token_revoke_days` is refused, or `None`.
pub fn unused_revoke_days_problem(days: i64) -> Option<String> {
    (!UNUSED_REVOKE_DAYS.contains(&days))
        .then(|| format!("{days}: use 30, 60, 90, 180 or 365, or null for never"))
}

/// Why a channel URL is refused, or `None`.
pub fn channel_url_problem(url: &str) -> Option<String> {
    if url.len() > CHANNEL_URL_MAX {
        return Some(format!("longer than {CHANNEL_URL_MAX} characters"));
    }
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Some("not a URL".into());
    };
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Some("use an http or https URL with a host".into());
    }
    None
}

pub fn reminder_days_schema() -> Array {
    ArrayBuilder::new()
        .items(integer_schema(
            DAYS_BEFORE_MIN,
            DAYS_BEFORE_MAX,
            false,
            "A day before expiry.",
        ))
        .min_items(Some(1))
        .max_items(Some(MAX_REMINDER_DAYS))
        .unique_items(true)
        .description(Some(
            "Days before expiry a reminder goes out, each once per token: 1 to 365, at most \
             10, no day twice (400 `invalid_settings` otherwise). Wins over `days_before` \
             when both are given.",
        ))
        .examples([serde_json::json!([30, 7, 1])])
        .build()
}

pub fn unused_revoke_days_schema() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .enum_values(Some(
            UNUSED_REVOKE_DAYS
                .iter()
                .map(|d| serde_json::json!(d))
                .chain([serde_json::Value::Null]),
        ))
        .description(Some(
            "Tokens unused (since their last use, or creation) for this many days are \
             revoked, after one warning 7 days before; `null`: never (the default).",
        ))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminder_lists_are_checked() {
        assert_eq!(reminder_days_problem(&[30, 7, 1]), None);
        assert!(reminder_days_problem(&[]).is_some());
        assert!(reminder_days_problem(&[0])
            .unwrap()
            .contains("between 1 and 365"));
        assert!(reminder_days_problem(&[366]).is_some());
        assert!(reminder_days_problem(&[7, 7]).unwrap().contains("twice"));
        assert!(reminder_days_problem(&(1..=11).collect::<Vec<_>>())
            .unwrap()
            .contains("at most 10"));
        assert_eq!(unused_revoke_days_problem(90), None);
        assert!(unused_revoke_days_problem(45).is_some());
        assert_eq!(channel_url_problem("https://hooks.example.com/x"), None);
        assert!(channel_url_problem("ftp://x/").is_some());
    }
}
