//! Header rules both request paths apply, the fast path to raw header lines and the
//! general path to a `HeaderMap`: the names only the gateway may write and their `_`
//! look-alikes, the most header lines a message may have, what makes a `Host`
//! acceptable, the URL session ids a token request may not carry, and the gateway's
//! own cookies, which Deploy never sees.
//!
//! Everything here works on bytes in place; nothing allocates for an ordinary request.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};

use crate::config::{Config, UnderscoreHeaders};
use crate::core::response::{json_error, Body};
use crate::edge::forwarded::{Resolved, TrustedProxies};
use crate::identity::UpstreamIdentity;
use crate::tokens::credentials::TOKEN_HEADER;

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1), plus the
/// obsolete `Proxy-Connection` and `Keep-Alive` that clients still send.
pub const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Forwarding headers a client could use to pose as someone else to Deploy: removed.
pub const CLIENT_FORWARDING: [&str; 5] = [
    "forwarded",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
];

/// Headers the gateway sets on every forwarded request: a client's copy is dropped.
pub const GATEWAY_SET: [&str; 4] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// One of the hop-by-hop headers (`name` in lower case).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| h.as_str().as_bytes() == name)
}

/// The options a request's `Connection` headers list.
pub fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Whether header `name` reads as `canonical` (lower case, with `-`) to a downstream
/// that ignores case and takes `_` for `-`, as CGI- and WSGI-style environments and
/// some header-authentication filters do.
pub fn reads_as(name: &[u8], canonical: &[u8]) -> bool {
    name.len() == canonical.len()
        && name.iter().zip(canonical).all(|(&n, &c)| {
            let n = n.to_ascii_lowercase();
            n == c || (n == b'_' && c == b'-')
        })
}

/// Whether `name` is the token header or one of its `_` look-alikes: either way what it
/// carries is checked as a token, never forwarded.
pub fn is_token_header(name: &[u8]) -> bool {
    reads_as(name, TOKEN_HEADER.as_str().as_bytes())
}

/// Names with `-` that the gateway itself reads, sets or removes (lower case). A
/// look-alike with `_` is never forwarded: downstream it could stand in for the real one.
fn handled(name: &[u8]) -> bool {
    is_hop_by_hop(name)
        || CLIENT_FORWARDING
            .iter()
            .chain(&GATEWAY_SET)
            .any(|h| h.as_bytes() == name)
        || name == b"content-length"
        || name == TOKEN_HEADER.as_str().as_bytes()
}

/// What becomes of one request header on its way to Deploy: the rule both paths apply
/// to every header, by its name alone ([`Rules::fate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Passed on as it is.
    Keep,
    /// Removed: hop-by-hop, a client's forwarding claim, one the gateway sets itself, a
    /// `_` look-alike of a header the gateway handles (or any, with
    /// `underscore_headers: drop`), or on a token request the credential and cookies.
    Drop,
    /// Removed, and worth a log line: a client's copy of an identity header, or its `_`
    /// look-alike.
    Identity,
    /// The whole request is refused (`underscore_headers: refuse`).
    Refuse,
}

/// Why a request is refused before anything else looks at it (400; 501 for a
/// transfer coding other than chunked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRequest {
    DuplicateHost,
    MissingHost,
    InvalidHost,
    HostInConnection,
    UnderscoreHeader,
    SessionIdInUrl,
    ChunkedTwice,
    UnsupportedCoding,
}

impl BadRequest {
    /// Stable machine-readable code for the JSON error body.
    pub fn code(self) -> &'static str {
        match self {
            BadRequest::DuplicateHost => "duplicate_host",
            BadRequest::MissingHost => "missing_host",
            BadRequest::InvalidHost | BadRequest::HostInConnection => "invalid_host",
            BadRequest::UnderscoreHeader => "underscore_header",
            BadRequest::SessionIdInUrl => "session_id_in_url",
            BadRequest::ChunkedTwice => "chunked_twice",
            BadRequest::UnsupportedCoding => "unsupported_transfer_coding",
        }
    }

    fn message(self) -> &'static str {
        match self {
            BadRequest::DuplicateHost => "the request has more than one Host header; send one",
            BadRequest::MissingHost => "an HTTP/1.1 request needs a Host header",
            BadRequest::InvalidHost => "the Host header is not a host name or address with an optional port",
            BadRequest::HostInConnection => "Connection may not name Host: every hop needs it",
            BadRequest::UnderscoreHeader => {
                "header names with \"_\" are not accepted by this gateway; write \"-\""
            }
            BadRequest::SessionIdInUrl => {
                "a request with a personal access token may not carry a jsessionid in its URL; remove the ;jsessionid=… part"
            }
            BadRequest::ChunkedTwice => {
                "Transfer-Encoding names chunked more than once; chunked is applied once, last"
            }
            BadRequest::UnsupportedCoding => {
                "the only transfer coding taken is chunked; send other codings as Content-Encoding"
            }
        }
    }

    /// The JSON answer. After a body whose framing is in doubt the connection is
    /// closed: nothing read after it could be trusted to be a request of its own.
    pub fn response(self) -> Response<Body> {
        let status = match self {
            // RFC 9112 §6.1: a transfer coding the server does not understand.
            BadRequest::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        };
        let mut response = json_error(status, self.code(), self.message());
        if matches!(
            self,
            BadRequest::ChunkedTwice | BadRequest::UnsupportedCoding
        ) {
            response
                .headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        response
    }
}

/// Why a request's `Transfer-Encoding` is refused, if it is: a coding other than
/// chunked (the gateway re-frames every body, so Deploy would get a gzip-coded body
/// told as plain), or chunked named more than once, in one line or several (RFC 9112
/// §6.1 forbids it, and readers disagree on such a body: hyper decodes once, a strict
/// reader refuses or decodes twice). Empty list elements are ignored (RFC 9110 §5.6.1).
pub fn transfer_coding_problem(headers: &HeaderMap) -> Option<BadRequest> {
    let mut chunked = 0;
    let codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty());
    for coding in codings {
        if !coding.eq_ignore_ascii_case(b"chunked") {
            return Some(BadRequest::UnsupportedCoding);
        }
        chunked += 1;
    }
    (chunked > 1).then_some(BadRequest::ChunkedTwice)
}

/// Whether `value` can be a `Host`: a host name or address (IPv6 in brackets) with an
/// optional port, in the characters of an authority and without user information.
pub fn valid_host(value: &[u8]) -> bool {
    !value.is_empty()
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b))
}

/// Whether the path of `target` (before `?` or `#`) has a path parameter named
/// `jsessionid`, in any case: the way servlet containers track sessions in URLs.
pub fn has_session_id(target: &[u8]) -> bool {
    let path = &target[..path_end(target)];
    (0..path.len()).any(|i| session_param(path, i).is_some())
}

/// Writes `value` (a `Location`) without the `;jsessionid=…` parameters in its path.
pub fn write_without_session_id(out: &mut Vec<u8>, value: &[u8]) {
    let path = &value[..path_end(value)];
    let mut copied = 0;
    let mut i = 0;
    while i < path.len() {
        match session_param(path, i) {
            Some(end) => {
                out.extend_from_slice(&value[copied..i]);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    out.extend_from_slice(&value[copied..]);
}

fn path_end(target: &[u8]) -> usize {
    target
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(target.len())
}

/// If a `jsessionid` parameter starts at `path[at]` (its `;`), where it ends.
fn session_param(path: &[u8], at: usize) -> Option<usize> {
    if path[at] != b';' {
        return None;
    }
    let rest = &path[at + 1..];
    let name_len = rest
        .iter()
        .position(|&b| matches!(b, b'=' | b';' | b'/'))
        .unwrap_or(rest.len());
    if !rest[..name_len].eq_ignore_ascii_case(b"jsessionid") {
        return None;
    }
    let len = rest
        .iter()
        .position(|&b| matches!(b, b';' | b'/'))
        .unwrap_or(rest.len());
    Some(at + 1 + len)
}

/// The settings behind these rules, built once at start.
#[derive(Debug)]
pub struct Rules {
    underscores: UnderscoreHeaders,
    trusted_proxies: TrustedProxies,
}

impl Rules {
    pub fn new(config: &Config) -> Rules {
        Rules {
            underscores: config.underscore_headers,
            trusted_proxies: TrustedProxies::new(&config.trusted_proxies),
        }
    }

    /// The fate of a request header. `name` is in lower case, with `_` read as `-`
    /// where `underscored` says it was written with `_`; `token`: the request carries a
    /// personal access token, which is its identity, so that neither the credential
    /// nor a cookie may reach Deploy.
    #[inline]
    pub fn fate(
        &self,
        name: &[u8],
        underscored: bool,
        identity: &UpstreamIdentity,
        token: bool,
    ) -> Fate {
        if underscored {
            return if self.underscores == UnderscoreHeaders::Refuse {
                Fate::Refuse
            } else if identity.is_identity_header(name) {
                Fate::Identity
            } else if handled(name) || self.underscores == UnderscoreHeaders::Drop {
                Fate::Drop
            } else {
                Fate::Keep
            };
        }
        if is_hop_by_hop(name)
            || CLIENT_FORWARDING.iter().any(|f| f.as_bytes() == name)
            || GATEWAY_SET.iter().any(|g| g.as_bytes() == name)
        {
            return Fate::Drop;
        }
        if token
            && (name == b"authorization"
                || name == TOKEN_HEADER.as_str().as_bytes()
                || name == b"cookie")
        {
            return Fate::Drop;
        }
        if identity.is_identity_header(name) {
            return Fate::Identity;
        }
        Fate::Keep
    }

    /// The client of a request from `peer` with these `X-Forwarded-For` values.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a [u8]>,
    ) -> Resolved {
        self.trusted_proxies.resolve(peer, forwarded_for)
    }

    /// Whether `peer` is one of `trusted_proxies`.
    pub fn trusts_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.trusts(peer)
    }

    /// General path: the refusals that come before anything else looks at a request.
    pub fn check<B>(&self, req: &Request<B>, token_request: bool) -> Result<(), BadRequest> {
        let headers = req.headers();
        let mut hosts = headers.get_all(header::HOST).iter();
        match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => return Err(BadRequest::DuplicateHost),
            (Some(host), None) if !valid_host(host.as_bytes()) => {
                return Err(BadRequest::InvalidHost)
            }
            (None, _) if req.version() == Version::HTTP_11 => return Err(BadRequest::MissingHost),
            _ => {}
        }
        if connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("host")) {
            return Err(BadRequest::HostInConnection);
        }
        if self.underscores == UnderscoreHeaders::Refuse
            && headers.keys().any(|name| name.as_str().contains('_'))
        {
            return Err(BadRequest::UnderscoreHeader);
        }
        if token_request && has_session_id(req.uri().path().as_bytes()) {
            return Err(BadRequest::SessionIdInUrl);
        }
        Ok(())
    }

    /// General path: removes every request header whose [`fate`](Self::fate) is not
    /// to be kept (a request refused for its `_` headers was answered before); true if
    /// a client's identity header was among them.
    pub fn apply(&self, headers: &mut HeaderMap, identity: &UpstreamIdentity, token: bool) -> bool {
        let mut dropped: Vec<HeaderName> = Vec::new();
        let mut identity_seen = false;
        for name in headers.keys() {
            let written = name.as_str();
            let fate = if written.contains('_') {
                self.fate(written.replace('_', "-").as_bytes(), true, identity, token)
            } else {
                self.fate(written.as_bytes(), false, identity, token)
            };
            match fate {
                Fate::Keep => continue,
                Fate::Identity => identity_seen = true,
                Fate::Drop | Fate::Refuse => {}
            }
            dropped.push(name.clone());
        }
        for name in dropped {
            headers.remove(name);
        }
        identity_seen
    }

    /// General path: the client of a request from `peer`, by the `X-Forwarded-For` it
    /// carries (read before [`Self::apply`] drops it).
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> Resolved {
        self.client(
            peer,
            headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(HeaderValue::as_bytes),
        )
    }

    /// General path: sets `X-Forwarded-For` for Deploy from `resolved`; returns the
    /// client's address.
    pub fn set_forwarded_for(
        &self,
        peer: IpAddr,
        resolved: &Resolved,
        headers: &mut HeaderMap,
    ) -> IpAddr {
        let value = if resolved.chain.is_empty() {
            HeaderValue::try_from(peer.to_string())
        } else {
            let mut value = Vec::with_capacity(resolved.chain.len() + 48);
            resolved.write(&mut value, peer.to_string().as_bytes());
            HeaderValue::try_from(value)
        };
        match value {
            Ok(value) => headers.insert(X_FORWARDED_FOR, value),
            Err(_) => headers.remove(X_FORWARDED_FOR),
        };
        resolved.ip
    }
}

/// General path: removes `;jsessionid=…` from the `Location` of an answer to a token
/// request, so that no link Deploy hands out turns the token into a session.
pub fn strip_session_id(headers: &mut HeaderMap) {
    let Some(location) = headers.get(header::LOCATION) else {
        return;
    };
    if !has_session_id(location.as_bytes()) {
        return;
    }
    let mut stripped = Vec::with_capacity(location.len());
    write_without_session_id(&mut stripped, location.as_bytes());
    match HeaderValue::from_bytes(&stripped) {
        Ok(value) => headers.insert(header::LOCATION, value),
        Err(_) => headers.remove(header::LOCATION),
    };
}

/// General path: removes the gateway's own cookies ([`crate::core::cookie::is_own`])
/// from a request's `Cookie` headers, keeping every other cookie as it was; a header
/// left with nothing goes. A request without them is not touched.
pub fn strip_own_cookies(headers: &mut HeaderMap) {
    let pairs = |value: &HeaderValue| -> Vec<Vec<u8>> {
        value
            .as_bytes()
            .split(|&b| b == b';')
            .map(<[u8]>::trim_ascii)
            .filter(|pair| !pair.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let own = |pair: &[u8]| {
        let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
        crate::core::cookie::is_own(name.trim_ascii())
    };
    let carries_own = headers
        .get_all(header::COOKIE)
        .iter()
        .any(|value| pairs(value).iter().any(|pair| own(pair)));
    if !carries_own {
        return;
    }
    let values: Vec<HeaderValue> = headers.get_all(header::COOKIE).iter().cloned().collect();
    headers.remove(header::COOKIE);
    for value in values {
        let kept: Vec<Vec<u8>> = pairs(&value).into_iter().filter(|p| !own(p)).collect();
        if kept.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_bytes(&kept.join(&b"; "[..])) {
            headers.append(header::COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateways_cookies_are_taken_out() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("SESSION_XLD=abc; patgate_session=s3cret;lang=en"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("__Secure-patgate_sso=b1nd"),
        );
        strip_own_cookies(&mut headers);
        let left: Vec<&str> = headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(left, vec!["SESSION_XLD=abc; lang=en"]);

        let mut untouched = HeaderMap::new();
        untouched.insert(header::COOKIE, HeaderValue::from_static("a=1;b=2"));
        strip_own_cookies(&mut untouched);
        assert_eq!(untouched[header::COOKIE], "a=1;b=2");
    }

    #[test]
    fn look_alikes_read_as_the_real_name() {
        for name in [
            "X_Deploy_User",
            "x_deploy_user",
            "X-Deploy_User",
            "X-DEPLOY-USER",
        ] {
            assert!(reads_as(name.as_bytes(), b"x-deploy-user"), "{name}");
        }
        assert!(!reads_as(b"x-deploy-users", b"x-deploy-user"));
        assert!(!reads_as(b"x.deploy.user", b"x-deploy-user"));
        assert!(is_token_header(b"X_Deploy_Personal_Token"));
    }

    /// The one header rule of both paths (the wire tests check each path's bytes).
    #[test]
    fn every_header_has_one_fate_by_name() {
        let rules_with = |underscores: &str| {
            let yaml = format!(
                "listen: 127.0.0.1:4516\nunderscore_headers: {underscores}\nupstream:\n  url: http://127.0.0.1:14516\n  identity:\n    shared_secret_header: X-Gateway-Secret\n    shared_secret: s3cret-s3cret-s3cret\ndatabase:\n  url: sqlite://x.db\n"
            );
            let config = Config::from_yaml(&yaml, &Default::default()).unwrap();
            let identity = UpstreamIdentity::new(&config.upstream.identity, None).unwrap();
            (Rules::new(&config), identity)
        };
        let (rules, identity) = rules_with("forward");
        let fate = |name: &str, token: bool| rules.fate(name.as_bytes(), false, &identity, token);
        for kept in ["accept", "user-agent", "content-type", "x-custom"] {
            assert_eq!(fate(kept, true), Fate::Keep, "{kept}");
        }
        for dropped in [
            "connection",
            "te",
            "proxy-authorization",
            "forwarded",
            "x-real-ip",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-request-id",
        ] {
            assert_eq!(fate(dropped, false), Fate::Drop, "{dropped}");
        }
        for credential in ["authorization", "x-deploy-personal-token", "cookie"] {
            assert_eq!(
                fate(credential, true),
                Fate::Drop,
                "{credential} with a token"
            );
            assert_eq!(
                fate(credential, false),
                Fate::Keep,
                "{credential} without one"
            );
        }
        assert_eq!(fate("x-deploy-user", false), Fate::Identity);
        assert_eq!(fate("x-gateway-secret", true), Fate::Identity);

        let under = |rules: &Rules, name: &str| rules.fate(name.as_bytes(), true, &identity, true);
        assert_eq!(under(&rules, "x-deploy-user"), Fate::Identity);
        assert_eq!(under(&rules, "x-forwarded-for"), Fate::Drop);
        assert_eq!(under(&rules, "x-custom"), Fate::Keep);
        let (dropping, _) = rules_with("drop");
        assert_eq!(under(&dropping, "x-custom"), Fate::Drop);
        let (refusing, _) = rules_with("refuse");
        assert_eq!(under(&refusing, "x-custom"), Fate::Refuse);
    }

    #[test]
    fn session_ids_are_found_in_the_path_only() {
        assert!(has_session_id(b"/deployit/login;jsessionid=ATTACKER"));
        assert!(has_session_id(b"/a;JSESSIONID=x/b?q=1"));
        assert!(has_session_id(b"/a;v=1;jsessionid"));
        assert!(!has_session_id(b"/a?x=;jsessionid=1"));
        assert!(!has_session_id(b"/a;jsessionidx=1"));
        assert!(!has_session_id(b"/jsessionid=1"));
    }

    #[test]
    fn locations_lose_their_session_ids_and_nothing_else() {
        let strip = |value: &str| {
            let mut out = Vec::new();
            write_without_session_id(&mut out, value.as_bytes());
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            strip("http://gw.example/deployit/app;jsessionid=NEW?x=1"),
            "http://gw.example/deployit/app?x=1"
        );
        assert_eq!(strip("/a;v=1;JSessionId=N;w=2/b"), "/a;v=1;w=2/b");
        assert_eq!(strip("/a;jsessionid=N"), "/a");
        assert_eq!(strip("/a?next=/b;jsessionid=N"), "/a?next=/b;jsessionid=N");
        assert_eq!(strip("/plain"), "/plain");
    }

    #[test]
    fn hosts_are_authorities() {
        for ok in [
            "gw.example",
            "gw.example:4516",
            "[2001:db8::1]:443",
            "10.0.0.1",
            "my_host",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "user@gw.example",
            "gw.example/x",
            "gw example",
            "gw\u{e9}.example",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }
}
