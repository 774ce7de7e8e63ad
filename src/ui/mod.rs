//! The web pages at `/patgate/`: sign-in, Access tokens, and the administrators' pages
//! (System settings, SMTP servers, Users, Audit log), as static HTML, CSS and JavaScript
//! embedded in the binary (`assets/`), so `cargo build` alone makes them.
//!
//! The pages hold no logic of their own beyond presentation: everything they show or do
//! goes through the JSON API under `/patgate/api/v1/`, with the session cookie and
//! `X-CSRF-Token`. This module must never read the database, see a session or a
//! secret, or put user data into markup: it serves fixed bytes, and the script renders
//! every user-supplied string as text. Nothing here is on the token hot path.
//!
//! May import: every floor below it (`core` in use).

use std::sync::LazyLock;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use sha2::Digest;

use crate::core::response::{full, json_error, security_headers, Body};

/// Where the pages live; `/patgate` without the slash redirects here.
pub const HOME: &str = "/patgate/";
/// The paths that answer with a page (the script picks the view from the path).
const PAGES: [&str; 9] = [
    HOME,
    SIGN_IN,
    "/patgate/admin/settings",
    "/patgate/admin/smtp-servers",
    "/patgate/admin/users",
    "/patgate/admin/audit",
    "/patgate/admin/tokens",
    "/patgate/admin/trust-policies",
    "/patgate/service-accounts",
];
const ASSETS: &str = "/patgate/assets/";

/// One embedded file with its content hash, which versions its URL.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
    hash: String,
}

impl Asset {
    fn new(name: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Asset {
        let digest = sha2::Sha256::digest(bytes);
        let hash = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Asset {
            name,
            content_type,
            bytes,
            hash,
        }
    }

    fn url(&self) -> String {
        format!("{ASSETS}{}?v={}", self.name, self.hash)
    }
}

/// The embedded files, and the page shell with their versioned URLs filled in.
struct Assets {
    files: Vec<Asset>,
    shell: String,
}

static EMBEDDED: LazyLock<Assets> = LazyLock::new(|| {
    let files = vec![
        Asset::new(
            "app.css",
            "text/css; charset=utf-8",
            include_bytes!("assets/app.css"),
        ),
        Asset::new(
            "app.js",
            "text/javascript; charset=utf-8",
            include_bytes!("assets/app.js"),
        ),
        Asset::new(
            "icon.svg",
            "image/svg+xml",
            include_bytes!("assets/icon.svg"),
        ),
    ];
    let mut shell = include_str!("assets/index.html").to_string();
    for file in &files {
        shell = shell.replace(&format!("{{{{{}}}}}", file.name), &file.url());
    }
    Assets { files, shell }
});

/// Whether `path` is one of the pages or their assets.
pub fn serves(path: &str) -> bool {
    path == "/patgate" || PAGES.contains(&path) || path.starts_with(ASSETS)
}

/// Answers a page or an asset; GET and HEAD only.
pub fn handle<B>(req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{path} answers GET only"),
        );
    }
    if path == "/patgate" {
        let mut response = Response::new(full(""));
        *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
        response
            .headers_mut()
            .insert(LOCATION, HeaderValue::from_static(HOME));
        return response;
    }
    let assets: &'static Assets = &EMBEDDED;
    if let Some(name) = path.strip_prefix(ASSETS) {
        return match assets.files.iter().find(|f| f.name == name) {
            Some(file) => asset(file, req.uri().query(), req.headers()),
            None => json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("{path} is not a patgate endpoint"),
            ),
        };
    }
    if path != SIGN_IN && !has_session_cookie(req.headers()) {
        return to_sign_in(req.uri());
    }
    page(assets.shell.as_bytes())
}

/// The sign-in page, where a browser without a session is sent.
const SIGN_IN: &str = "/patgate/signin";

/// Whether the request carries a session cookie at all (its value is the API's to
/// judge; the script still sends a stale one to sign-in).
fn has_session_cookie(headers: &HeaderMap) -> bool {
    use crate::core::cookie;
    [false, true]
        .iter()
        .any(|&https| cookie::read(headers, &cookie::name(cookie::SESSION, https)).is_some())
}

/// `303 See Other` to the sign-in page, which comes back to `uri` afterwards: answered
/// by the server, so that a client without JavaScript (curl -L, a headless check) gets
/// there too.
fn to_sign_in(uri: &http::Uri) -> Response<Body> {
    let back = uri.path_and_query().map_or(HOME, |p| p.as_str());
    let mut location = format!("{SIGN_IN}?next=");
    for byte in back.bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            location.push(byte as char);
        } else {
            location.push_str(&format!("%{byte:02X}"));
        }
    }
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(
        LOCATION,
        HeaderValue::from_str(&location).expect("percent-encoded ASCII"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(headers);
    response
}

/// Every page is the same shell; it may show a token once, so it is never stored.
fn page(shell: &'static [u8]) -> Response<Body> {
    let mut response = Response::new(full(shell));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    security_headers(headers);
    response
}

/// An asset: kept for a year under its versioned URL, revalidated by ETag otherwise.
fn asset(file: &Asset, query: Option<&str>, request: &HeaderMap) -> Response<Body> {
    let etag = format!("\"{}\"", file.hash);
    let fresh = request
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        let mut r = Response::new(full(""));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(full(file.bytes))
    };
    let versioned = query == Some(&format!("v={}", file.hash));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static(if versioned {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    headers.insert(ETAG, HeaderValue::from_str(&etag).expect("hex digits"));
    security_headers(headers);
    response
}
