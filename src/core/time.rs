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

/// Parses an RFC 3339 instant given in a query ([`crate::core::pattern::parse_instant`]);
/// names the parameter in the error.
pub fn parse_instant(name: &str, value: &str) -> Result<i64, ApiError> {
    crate::core::pattern::parse_instant(value).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_query",
            format!("{name} {value:?}: write an RFC 3339 instant like 2026-01-31T00:00:00Z"),
        )
    })
}

/// Writes `secs` as RFC 3339 in UTC (`2027-01-01T05:55:00Z`) onto `out`, allocating
/// nothing beyond `out`'s growth: for the request path.
pub fn write_rfc3339(out: &mut Vec<u8>, secs: i64) {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut two = |n: i64| out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    two(year / 100);
    two(year % 100);
    let fields = [
        (b'-', month),
        (b'-', day),
        (b'T', of_day / 3_600),
        (b':', of_day / 60 % 60),
        (b':', of_day % 60),
    ];
    for (separator, value) in fields {
        out.push(separator);
        out.extend_from_slice(&[b'0' + (value / 10) as u8, b'0' + (value % 10) as u8]);
    }
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_instants_match_the_formatter_the_api_uses() {
        let mut out = Vec::new();
        // Leap days, century rules, the epoch, the end of a day, far ahead.
        for secs in [
            0,
            59,
            86_399,
            951_782_400,
            1_798_782_900,
            4_107_542_399,
            4_102_444_800 + 59 * 86_400,
            253_402_300_799,
        ] {
            out.clear();
            write_rfc3339(&mut out, secs);
            assert_eq!(std::str::from_utf8(&out).unwrap(), rfc3339(secs), "{secs}");
        }
        out.clear();
        write_rfc3339(&mut out, 1_798_782_900);
        assert_eq!(out, b"2027-01-01T05:55:00Z");
    }
}
