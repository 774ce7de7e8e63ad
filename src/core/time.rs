//! Instants: seconds since the Unix epoch as stored, RFC 3339 as shown.

use crate::core::error::ApiError;

/// Seconds since the Unix epoch, UTC.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// RFC 3339 in UTC (`2026-11-30T15:17:46Z`).
pub fn rfc3339(secs: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Parses an RFC 3339 instant given in a query; names the parameter in the error.
pub fn parse_instant(name: &str, value: &str) -> Result<i64, ApiError> {
    humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs() as i64)
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} {value:?}: write an RFC 3339 instant like 2026-01-31T00:00:00Z"),
            )
        })
}
