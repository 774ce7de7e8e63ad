//! The gateway's own cookies: their names, how a name is read from a request, and the
//! attributes they are set with. Over https a name carries the `__Secure-` prefix, so
//! that a browser accepts it only from a secure origin; `__Host-` would need `Path=/`,
//! and these cookies are scoped to the gateway's paths so that Deploy never sees them.

use http::HeaderMap;

/// The browser session, for every route under `/patgate/`.
pub const SESSION: &str = "patgate_session";
/// Ties an SSO sign-in under way to the browser that started it (`/patgate/sso/`).
pub const SSO_BINDING: &str = "patgate_sso";
/// Every cookie the gateway sets, without prefix.
pub const OWN: [&str; 2] = [SESSION, SSO_BINDING];

const SECURE_PREFIX: &str = "__Secure-";

/// The name a cookie has on this request's side: prefixed over https.
pub fn name(base: &str, https: bool) -> String {
    if https {
        format!("{SECURE_PREFIX}{base}")
    } else {
        base.to_string()
    }
}

/// Whether a cookie named `name` is one of the gateway's own, with or without a prefix.
pub fn is_own(name: &[u8]) -> bool {
    let bare = name
        .strip_prefix(SECURE_PREFIX.as_bytes())
        .or_else(|| name.strip_prefix(b"__Host-"))
        .unwrap_or(name);
    OWN.iter().any(|own| own.as_bytes() == bare)
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, `Secure` over https, for `path`;
/// `max_age` 0 removes it.
pub fn set(base: &str, value: &str, path: &str, max_age: i64, https: bool) -> String {
    format!(
        "{}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        name(base, https),
        if https { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cookies_are_known_with_any_prefix() {
        assert!(is_own(b"patgate_session"));
        assert!(is_own(b"__Secure-patgate_session"));
        assert!(is_own(b"__Host-patgate_sso"));
        assert!(!is_own(b"SESSION_XLD"));
        assert!(!is_own(b"patgate_sessions"));
    }

    #[test]
    fn names_carry_the_secure_prefix_over_https() {
        assert_eq!(name(SESSION, false), "patgate_session");
        assert_eq!(name(SESSION, true), "__Secure-patgate_session");
        let cookie = set(SESSION, "v", "/patgate/", 60, true);
        assert_eq!(
            cookie,
            "__Secure-patgate_session=v; Path=/patgate/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
    }
}
