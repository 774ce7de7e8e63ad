//! What every answer to a token-authenticated request says about the token's expiry,
//! on both paths, as GitHub's `GitHub-Authentication-Token-Expiration` does: a CI log
//! then warns before a pipeline breaks.
//!
//! - `X-Deploy-Token-Expiration: 2027-01-01T05:55:00Z` (RFC 3339, UTC), omitted for a
//!   token that never expires;
//! - `X-Deploy-Token-Expiration-Warning: this token expires in 3 days; create a new
//!   one before then` once the expiry is within the notification window (the
//!   administrators' `notifications.days_before`).

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::core::time::write_rfc3339;

pub const EXPIRATION: HeaderName = HeaderName::from_static("x-deploy-token-expiration");
pub const WARNING: HeaderName = HeaderName::from_static("x-deploy-token-expiration-warning");

const DAY: i64 = 86_400;

/// Writes the expiry header lines (`name: value\r\n`) of a token that expires at
/// `expires_at` onto a raw head, warning when that is at most `warn_within` seconds
/// after `now`. Allocates nothing beyond `out`'s growth.
pub fn write_lines(out: &mut Vec<u8>, expires_at: Option<i64>, now: i64, warn_within: i64) {
    let Some(at) = expires_at else {
        return;
    };
    out.extend_from_slice(EXPIRATION.as_str().as_bytes());
    out.extend_from_slice(b": ");
    write_rfc3339(out, at);
    out.extend_from_slice(b"\r\n");
    let left = at - now;
    if left > warn_within {
        return;
    }
    out.extend_from_slice(WARNING.as_str().as_bytes());
    out.extend_from_slice(b": ");
    write_warning(out, left);
    out.extend_from_slice(b"\r\n");
}

/// Sets the same headers on a response of the general path.
pub fn set_headers(headers: &mut HeaderMap, expires_at: Option<i64>, now: i64, warn_within: i64) {
    let Some(at) = expires_at else {
        return;
    };
    let mut value = Vec::with_capacity(20);
    write_rfc3339(&mut value, at);
    if let Ok(value) = HeaderValue::from_bytes(&value) {
        headers.insert(EXPIRATION, value);
    }
    let left = at - now;
    if left <= warn_within {
        let mut value = Vec::with_capacity(64);
        write_warning(&mut value, left);
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(WARNING, value);
        }
    }
}

/// The warning's text for `left` seconds, in the words of the token list's pills.
fn write_warning(out: &mut Vec<u8>, left: i64) {
    if left < DAY {
        out.extend_from_slice(b"this token expires in less than 24 hours; create a new one now");
        return;
    }
    let days = left / DAY;
    out.extend_from_slice(b"this token expires in ");
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = days;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
    out.extend_from_slice(if days == 1 { b" day" } else { b" days" });
    out.extend_from_slice(b"; create a new one before then");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(expires_at: Option<i64>, now: i64) -> String {
        let mut out = Vec::new();
        write_lines(&mut out, expires_at, now, 7 * DAY);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_expiry_is_announced_and_warned_of_within_the_window() {
        let at = 1_798_782_900;
        assert_eq!(lines(None, 0), "");
        assert_eq!(
            lines(Some(at), at - 30 * DAY),
            "x-deploy-token-expiration: 2027-01-01T05:55:00Z\r\n"
        );
        assert!(lines(Some(at), at - 3 * DAY - 5)
            .ends_with("x-deploy-token-expiration-warning: this token expires in 3 days; create a new one before then\r\n"));
        assert!(lines(Some(at), at - DAY).contains("expires in 1 day;"));
        assert!(lines(Some(at), at - 7 * DAY).contains("expires in 7 days;"));
        assert!(!lines(Some(at), at - 7 * DAY - 1).contains("warning"));
        assert!(lines(Some(at), at - 60).contains("less than 24 hours"));

        let mut headers = HeaderMap::new();
        set_headers(&mut headers, Some(at), at - 2 * DAY, 7 * DAY);
        assert_eq!(headers[EXPIRATION], "2027-01-01T05:55:00Z");
        assert_eq!(
            headers[WARNING],
            "this token expires in 2 days; create a new one before then"
        );
    }
}
