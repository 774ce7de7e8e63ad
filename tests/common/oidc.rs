//! A real OpenID provider (`tests/oidc/provider.mjs`, oidc-provider on Node) on loopback,
//! and a browser-less login through it. `scripts/node-setup.sh` installs its packages.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::node::NodeProcess;
use super::Answer;

/// One user the provider knows; `username` is the login name and `preferred_username`.
#[derive(Debug, Clone)]
pub struct Account {
    pub sub: String,
    pub username: String,
    pub email: String,
    pub groups: Vec<String>,
    /// The name typed at the provider's login form, when it is not `username`.
    pub login: Option<String>,
}

impl Account {
    pub fn new(sub: &str, username: &str, email: &str, groups: &[&str]) -> Account {
        Account {
            sub: sub.into(),
            username: username.into(),
            email: email.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            login: None,
        }
    }

    /// The account signs in at the provider as `login` (its username claim stays).
    pub fn logging_in_as(mut self, login: &str) -> Account {
        self.login = Some(login.into());
        self
    }
}

/// The provider's one static client, its users, and where its issuer lives.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub accounts: Vec<Account>,
    /// Path part of the issuer (e.g. "/realms/other"); the issuer is
    /// `http://127.0.0.1:<port><issuer_path>`.
    pub issuer_path: Option<String>,
    /// The client authenticates with client_secret_post instead of client_secret_basic.
    pub client_secret_post: bool,
}

/// The running provider; killed when dropped (and it exits by itself when its stdin closes).
pub struct Provider {
    /// `http://127.0.0.1:<port>[<issuer_path>]`, without a trailing slash.
    pub issuer: String,
    process: NodeProcess,
}

pub fn provider_script() -> String {
    format!("{}/tests/oidc/provider.mjs", env!("CARGO_MANIFEST_DIR"))
}

impl Provider {
    /// Starts `node tests/oidc/provider.mjs` and waits for its `READY <issuer>` line.
    pub async fn start(opts: ProviderOptions) -> Provider {
        let accounts: Vec<serde_json::Value> = opts
            .accounts
            .iter()
            .map(|a| {
                let mut account = serde_json::json!({
                    "sub": a.sub,
                    "preferred_username": a.username,
                    "email": a.email,
                    "groups": a.groups,
                });
                if let Some(login) = &a.login {
                    account["login"] = login.as_str().into();
                }
                account
            })
            .collect();
        let auth = if opts.client_secret_post {
            "client_secret_post"
        } else {
            "client_secret_basic"
        };
        let mut command = tokio::process::Command::new("node");
        command
            .arg(provider_script())
            .env("OIDC_PORT", "0")
            .env("OIDC_ISSUER_PATH", opts.issuer_path.unwrap_or_default())
            .env("OIDC_CLIENT_ID", &opts.client_id)
            .env("OIDC_CLIENT_SECRET", &opts.client_secret)
            .env(
                "OIDC_REDIRECT_URIS",
                serde_json::to_string(&opts.redirect_uris).unwrap(),
            )
            .env("OIDC_TOKEN_AUTH", auth)
            .env("OIDC_ACCOUNTS", serde_json::to_string(&accounts).unwrap())
            .env_remove("OIDC_ISSUER");
        let (process, issuer) =
            NodeProcess::start(command, "the OpenID provider", "scripts/node-setup.sh").await;
        Provider { issuer, process }
    }

    /// `issuer` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// The provider's discovery document.
    pub async fn discovery(&self) -> serde_json::Value {
        let answer = request(
            "GET",
            &self.url("/.well-known/openid-configuration"),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(answer.status, 200, "discovery: {:?}", answer.body);
        answer.json()
    }

    /// What the provider wrote on stderr so far (warnings, error names; never secrets).
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The provider's process id.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The test-only control routes, at the server's root.
    fn control(&self, path: &str) -> String {
        let rest = self.issuer.strip_prefix("http://").unwrap_or(&self.issuer);
        let host = rest.split('/').next().unwrap_or(rest);
        format!("http://{host}/__control/{path}")
    }

    /// Changes an account's groups; its next ID token (a refresh, a sign-in) says them.
    pub async fn set_groups(&self, sub: &str, groups: &[&str]) {
        let body = serde_json::to_vec(groups).unwrap();
        let answer = request(
            "POST",
            &self.control(&format!("groups?sub={sub}")),
            &[("content-type", "application/json")],
            Bytes::from(body),
        )
        .await;
        assert_eq!(answer.status, 204, "set groups of {sub}");
    }

    /// Revokes every grant of an account: its refresh tokens are refused with
    /// `invalid_grant` from now on; it can still sign in again.
    pub async fn revoke(&self, sub: &str) {
        let answer = request(
            "POST",
            &self.control(&format!("revoke?sub={sub}")),
            &[],
            Bytes::new(),
        )
        .await;
        assert_eq!(answer.status, 204, "revoke grants of {sub}");
    }
}

// ---------------------------------------------------------------- browser-less login

/// Where the provider sends a browser back, and the binding cookie that browser got
/// when it started (`name=value`, for a `Cookie` header).
pub struct Callback {
    pub url: String,
    pub cookie: String,
}

/// `GET /patgate/sso/login` → the provider's login → the callback URL it sends back.
pub async fn login_at_provider(gw: &super::Gateway, user: &str) -> Callback {
    let start = super::get(&gw.url("/patgate/sso/login"), &[]).await;
    assert_eq!(start.status, 303, "{:?}", start.body);
    let location = start.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );
    let cookie = binding_cookie(&start).expect("the start sets the binding cookie");
    Callback {
        url: login(&location, user).await.callback_url,
        cookie,
    }
}

/// The `patgate_sso` cookie an answer sets, as `name=value`.
pub fn binding_cookie(answer: &super::Answer) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("patgate_sso="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .filter(|pair| pair != "patgate_sso=")
}

/// The callback, from the browser that started the sign-in.
pub async fn back(callback: &Callback) -> super::Answer {
    super::get(&callback.url, &[("cookie", &callback.cookie)]).await
}

pub async fn sign_in(gw: &super::Gateway, user: &str) -> super::api::Session {
    let callback = login_at_provider(gw, user).await;
    let answer = back(&callback).await;
    assert_eq!(
        answer.status,
        303,
        "callback: {:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers["location"], "/patgate/");
    super::api::Session::from_answer(&gw.url(""), &answer)
        .with_csrf()
        .await
}

/// Where the provider sent the browser back to: the client's redirect URI with the answer.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub callback_url: String,
}

impl LoginResult {
    pub fn code(&self) -> Option<String> {
        query_param(&self.callback_url, "code")
    }

    pub fn state(&self) -> Option<String> {
        query_param(&self.callback_url, "state")
    }

    /// Any query parameter of the callback (`iss`, `error`, …).
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(&self.callback_url, name)
    }
}

/// Logs `username` in through `authorize_url` (any password) and returns the callback URL;
/// panics when the provider does not get there.
pub async fn login(authorize_url: &str, username: &str) -> LoginResult {
    match try_login(authorize_url, username).await {
        Ok(result) => result,
        Err(e) => panic!("login of {username} failed: {e}"),
    }
}

/// As [`login`], but tells why the flow stopped (e.g. an unknown user gets the form again
/// with 401) instead of panicking.
///
/// Follows `Location` headers by hand with one cookie jar: GET the authorize URL, POST the
/// interaction form, and on until a redirect leaves the provider's origin.
pub async fn try_login(authorize_url: &str, username: &str) -> Result<LoginResult, String> {
    let provider_origin = origin(authorize_url);
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let mut method = "GET";
    let mut url = authorize_url.to_string();
    let mut body = Bytes::new();
    for _ in 0..12 {
        let mut headers = Vec::new();
        let cookie = jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if !cookie.is_empty() {
            headers.push(("cookie", cookie));
        }
        if method == "POST" {
            headers.push((
                "content-type",
                "application/x-www-form-urlencoded".to_string(),
            ));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = request(method, &url, &headers, std::mem::take(&mut body)).await;
        for set in answer.headers.get_all("set-cookie") {
            store_cookie(&mut jar, set.to_str().unwrap_or_default());
        }
        if answer.status.is_redirection() {
            let location = answer
                .headers
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| format!("{} from {url} without a Location", answer.status))?;
            let next = resolve(&url, location);
            if origin(&next) != provider_origin {
                return Ok(LoginResult { callback_url: next });
            }
            (method, url) = ("GET", next);
        } else if answer.status == 200 && method == "GET" && url.contains("/interaction/") {
            method = "POST";
            body = Bytes::from(form_encode(&[("login", username), ("password", "x")]));
        } else {
            return Err(format!(
                "{method} {url} answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body).trim()
            ));
        }
    }
    Err(format!("too many redirects, last at {url}"))
}

fn store_cookie(jar: &mut BTreeMap<String, String>, set_cookie: &str) {
    let mut parts = set_cookie.split(';');
    let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
        return;
    };
    let (name, value) = (name.trim().to_string(), value.trim().to_string());
    let expired = parts.any(|attr| {
        let attr = attr.trim().to_ascii_lowercase();
        attr == "max-age=0" || attr.starts_with("expires=thu, 01 jan 1970")
    });
    if expired || value.is_empty() {
        jar.remove(&name);
    } else {
        jar.insert(name, value);
    }
}

/// `scheme://host[:port]` of an absolute URL.
fn origin(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{}://{}", scheme.to_ascii_lowercase(), authority)
}

/// A `Location` value made absolute against the URL it came from.
fn resolve(base: &str, location: &str) -> String {
    if location.contains("://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{}{location}", origin(base))
    } else {
        let path_end = base.find(['?', '#']).unwrap_or(base.len());
        let dir_end = base[..path_end].rfind('/').map_or(path_end, |i| i + 1);
        format!("{}{location}", &base[..dir_end])
    }
}

// ---------------------------------------------------------------- HTTP and encoding

/// Sends one request on a fresh connection (plain http) and reads the whole answer.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)], body: Bytes) -> Answer {
    let uri: http::Uri = url.parse().unwrap();
    assert_eq!(uri.scheme_str(), Some("http"), "only http URLs: {url}");
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((uri.host().unwrap(), port))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header("host", uri.authority().unwrap().as_str());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let response = sender
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// POSTs `application/x-www-form-urlencoded` fields.
pub async fn post_form(url: &str, headers: &[(&str, &str)], fields: &[(&str, &str)]) -> Answer {
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    request("POST", url, &all, Bytes::from(form_encode(fields))).await
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` and `+` of a query or form value.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push((hi * 16 + lo) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k=v&k=v`, both sides percent-encoded.
pub fn form_encode(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The first value of query parameter `name` of `url`, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}
