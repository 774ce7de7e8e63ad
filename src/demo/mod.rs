//! `patgate demo-deploy`: a small stand-in for Digital.ai Deploy, for trying the gateway
//! without one. It is **not** Deploy and says so in every answer.
//!
//! It listens where the gateway expects Deploy (`upstream.url`), checks the passwords
//! of a few demo users (one of them an administrator), answers Deploy's admin check,
//! takes the identity the gateway asserts (the configured header, with the shared
//! secret when one is set; the service account in basic mode; the JWT's subject in jwt
//! mode, whose signature it does not check), and echoes every request as JSON, so that
//! whoever tries the gateway sees which user it asserted and what reached "Deploy".
//! Credentials and the shared secret are never echoed.
//!
//! May import: `core`, `config`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::{Config, Identity, IdentityMode};
use crate::core::text::same_secret;

/// Deploy's address when no configuration says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:14516";
/// Deploy's admin check, as `signin.deploy_admin_path` names it by default.
const ADMIN_CHECK: &str = "/deployit/security/check/admin";
/// Named in every answer, so that nobody takes the stand-in for Deploy.
const STAND_IN: &str =
    "patgate demo-deploy, a stand-in for trying the gateway; not Digital.ai Deploy";

/// One demo user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoUser {
    pub name: String,
    pub password: String,
    pub admin: bool,
}

impl DemoUser {
    /// `NAME:PASSWORD`, as the flags and the users file write it.
    pub fn parse(text: &str, admin: bool) -> Result<DemoUser, String> {
        match text.split_once(':') {
            Some((name, password)) if !name.is_empty() && !password.is_empty() => Ok(DemoUser {
                name: name.to_string(),
                password: password.to_string(),
                admin,
            }),
            _ => Err(format!(
                "{text:?}: write a demo user as NAME:PASSWORD (both non-empty)"
            )),
        }
    }
}

/// The users of `--users-file`: one `NAME:PASSWORD` or `NAME:PASSWORD:admin` per line;
/// blank lines and `#` comments are skipped.
pub fn read_users(path: &Path) -> Result<Vec<DemoUser>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--users-file {}: {e}", path.display()))?;
    let mut users = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (entry, admin) = match line.strip_suffix(":admin") {
            Some(entry) => (entry, true),
            None => (line, false),
        };
        let user = DemoUser::parse(entry, admin)
            .map_err(|e| format!("--users-file {} line {}: {e}", path.display(), number + 1))?;
        users.push(user);
    }
    if users.is_empty() {
        return Err(format!("--users-file {}: names no user", path.display()));
    }
    Ok(users)
}

/// The users when none are given: one ordinary user and one administrator, each with
/// their name as password.
pub fn default_users() -> Vec<DemoUser> {
    vec![
        DemoUser {
            name: "alice".into(),
            password: "alice".into(),
            admin: false,
        },
        DemoUser {
            name: "admin".into(),
            password: "admin".into(),
            admin: true,
        },
    ]
}

/// Where the stand-in listens by default: the configured `upstream.url`, when it is
/// plain http on this machine's loopback; otherwise [`DEFAULT_LISTEN`].
pub fn default_listen(config: Option<&Config>) -> SocketAddr {
    let fallback = DEFAULT_LISTEN.parse().expect("a socket address");
    let Some(config) = config else {
        return fallback;
    };
    let url = &config.upstream.url;
    if url.scheme_str() != Some("http") {
        return fallback;
    }
    let host = url.host().unwrap_or("").trim_matches(['[', ']']);
    let port = url.port_u16().unwrap_or(80);
    let ip = match host {
        "localhost" => Some(std::net::IpAddr::from([127, 0, 0, 1])),
        other => other.parse().ok(),
    };
    match ip {
        Some(ip) if ip.is_loopback() => SocketAddr::new(ip, port),
        _ => fallback,
    }
}

/// Who a request came as, and how the stand-in knows.
struct Caller {
    name: String,
    admin: bool,
    how: String,
}

struct DemoDeploy {
    users: Vec<DemoUser>,
    identity: Identity,
}

impl DemoDeploy {
    fn user(&self, name: &str) -> Option<&DemoUser> {
        self.users.iter().find(|u| u.name == name)
    }

    fn is_admin(&self, name: &str) -> bool {
        self.user(name).is_some_and(|u| u.admin)
    }

    /// The caller: the identity the gateway asserts, or a demo user's password.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, String> {
        let asserted = headers
            .get(&self.identity.header)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty());
        let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let secret_ok = match &self.identity.shared_secret {
            Some((name, value)) => headers
                .get(name)
                .is_some_and(|v| same_secret(v.as_bytes(), value.as_bytes())),
            None => true,
        };
        if let Some(name) = asserted {
            if !secret_ok {
                return Err(format!(
                    "{} came without the gateway's shared secret: not believed",
                    self.identity.header
                ));
            }
            let header = self.identity.header.as_str();
            let how = match (self.identity.mode, authorization) {
                (IdentityMode::Header, _) => {
                    format!("asserted by the gateway in {header}")
                }
                (IdentityMode::Basic, Some(value)) => {
                    let account = self.identity.basic.as_ref();
                    match (basic_pair(value), account) {
                        (Some((u, p)), Some(a))
                            if u == a.username && same_secret(p.as_bytes(), a.password.as_bytes()) =>
                        {
                            format!(
                                "asserted by the gateway in {header}, signed in as service account {u}"
                            )
                        }
                        _ => return Err("wrong service-account password".into()),
                    }
                }
                (IdentityMode::Jwt, Some(value)) => match jwt_subject(value) {
                    Some(subject) if subject == name => format!(
                        "asserted by the gateway in a JWT (subject {subject}); its signature is not checked by this stand-in"
                    ),
                    _ => return Err("no JWT for the asserted user".into()),
                },
                (_, None) => return Err("the gateway's credentials are missing".into()),
            };
            return Ok(Caller {
                name: name.to_string(),
                admin: self.is_admin(name),
                how,
            });
        }
        if let Some((name, password)) = authorization.and_then(basic_pair) {
            return match self.user(&name) {
                Some(user) if same_secret(password.as_bytes(), user.password.as_bytes()) => {
                    Ok(Caller {
                        name: user.name.clone(),
                        admin: user.admin,
                        how: "password of a demo user".into(),
                    })
                }
                _ => Err(format!("wrong name or password for {name:?}")),
            };
        }
        if headers.contains_key("x-deploy-personal-token") || authorization.is_some() {
            return Err("this stand-in knows demo passwords only, no Deploy tokens".into());
        }
        Err("no credentials: send a demo user's password, or a token through the gateway".into())
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        let caller = match self.caller(request.headers()) {
            Ok(caller) => caller,
            Err(why) => {
                eprintln!("demo-deploy: {} {path}: 401, {why}", request.method());
                let body = serde_json::json!({ "stand_in": STAND_IN, "error": why });
                return json(StatusCode::UNAUTHORIZED, &body);
            }
        };
        eprintln!(
            "demo-deploy: {} {path}: 200 as {} ({})",
            request.method(),
            caller.name,
            caller.how
        );
        if path == ADMIN_CHECK {
            let mut response = Response::new(Full::new(Bytes::from(format!(
                "<boolean>{}</boolean>",
                caller.admin
            ))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static("application/xml"),
            );
            return response;
        }
        let body = serde_json::json!({
            "stand_in": STAND_IN,
            "user": caller.name,
            "admin": caller.admin,
            "authenticated_by": caller.how,
            "method": request.method().as_str(),
            "path": path,
            "query": request.uri().query(),
            "headers": self.shown_headers(request.headers()),
        });
        json(StatusCode::OK, &body)
    }

    /// The request's headers as received, credentials and the shared secret hidden.
    fn shown_headers(&self, headers: &HeaderMap) -> serde_json::Value {
        let secret = self.identity.shared_secret.as_ref().map(|(name, _)| name);
        let mut shown = serde_json::Map::new();
        for (name, value) in headers {
            let hidden = name == AUTHORIZATION
                || name == COOKIE
                || name.as_str() == "x-deploy-personal-token"
                || Some(name) == secret;
            let text = if hidden {
                "(hidden)".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            shown.insert(name.as_str().to_string(), text.into());
        }
        serde_json::Value::Object(shown)
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// `Basic base64(name:password)`.
fn basic_pair(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (name, password) = text.split_once(':')?;
    Some((name.to_string(), password.to_string()))
}

/// The `sub` claim of `Bearer <JWT>`, read without checking the signature.
fn jwt_subject(value: &str) -> Option<String> {
    let token = value.strip_prefix("Bearer ")?;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("sub")?.as_str().map(str::to_string)
}

/// Serves until the process is stopped. `identity` is the gateway's, so that the
/// stand-in believes exactly what the gateway asserts.
pub async fn run(
    listen: SocketAddr,
    users: Vec<DemoUser>,
    identity: Identity,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("demo-deploy: listen {listen}: {e}"))?;
    let bound = listener.local_addr()?;
    eprintln!("demo-deploy: {STAND_IN}");
    for user in &users {
        eprintln!(
            "demo-deploy: user {} with password {}{}",
            user.name,
            user.password,
            if user.admin { " (administrator)" } else { "" }
        );
    }
    eprintln!("demo-deploy: listening on http://{bound} (the gateway's upstream.url must name it)");
    let demo = Arc::new(DemoDeploy { users, identity });
    loop {
        let (stream, _) = listener.accept().await?;
        let demo = demo.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let demo = demo.clone();
                async move { Ok::<_, Infallible>(demo.answer(&request)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_users_are_read_from_flags_and_files() {
        assert_eq!(
            DemoUser::parse("bob:s3:cret", false).unwrap(),
            DemoUser {
                name: "bob".into(),
                password: "s3:cret".into(),
                admin: false
            }
        );
        assert!(DemoUser::parse("bob", false).is_err());
        assert!(DemoUser::parse(":pw", false).is_err());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        std::fs::write(&file, "# demo\ncarol:pw:admin\n\ndave:pw\n").unwrap();
        let users = read_users(&file).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users[0].admin && users[0].name == "carol");
        assert!(!users[1].admin && users[1].password == "pw");
        std::fs::write(&file, "oops\n").unwrap();
        let err = read_users(&file).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }
}
