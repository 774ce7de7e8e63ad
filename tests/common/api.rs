//! The API from a client's side: JSON requests, password sign-in against the Deploy
//! stand-in's accounts, and browser-style sessions (cookie + CSRF token).

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use super::oidc::request;
use super::{basic, Answer, TestBody};

/// Accounts the Deploy stand-in accepts: (username, password, admin).
pub const DEPLOY_ACCOUNTS: [(&str, &str, bool); 4] = [
    ("alice", "alice-pw", false),
    ("bob", "bob-pw", false),
    ("admin", "admin-pw", true),
    // What an operator would give the gateway in basic mode.
    ("svc-patgate", "svc-pw", false),
];

/// The Deploy roles of the stand-in's accounts.
pub fn deploy_roles(user: &str) -> &'static [&'static str] {
    match user {
        "admin" => &["administrators"],
        "svc-patgate" => &["deployers", "ci"],
        _ => &["deployers"],
    }
}

/// What each role grants, by scope (`""` global).
fn granted(role: &str) -> &'static [(&'static str, &'static [&'static str])] {
    match role {
        "administrators" => &[("", &["admin", "login"])],
        "deployers" => &[
            ("", &["login"]),
            ("Applications/App1", &["read", "deploy#initial"]),
        ],
        "ci" => &[("Applications/App1", &["deploy#upgrade"])],
        _ => &[],
    }
}

/// How the stand-in words its security answers. Deploy documents a boolean in
/// `application/xml` for its admin check and shows no example body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Wording {
    /// `<boolean>true</boolean>`, `<list><string>deployers</string></list>`.
    #[default]
    Xml,
    /// The same after an XML declaration, with whitespace around each value.
    XmlIndented,
    /// `true`, `["deployers"]`, `{"": ["login"]}`.
    Json,
}

/// What the stand-in answers about security, whatever the request's `Accept` says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Security {
    pub wording: Wording,
    /// Answer 404 for the role and permission lists, as a Deploy without them would.
    pub without_lists: bool,
}

/// Deploy's password and admin checks and the caller's role and permission lists, as
/// the stand-in answers them to its accounts: `Some` for the paths the gateway asks,
/// `None` for everything else. Like a Deploy whose users come from LDAP, it takes a
/// username in any case; like a Deploy in header mode, it also takes the user the
/// gateway names in `X-Deploy-User`. `admins` are the users it says are administrators
/// now.
pub fn deploy_check(
    path: &str,
    headers: &HeaderMap,
    security: Security,
    admins: &[String],
) -> Option<Response<TestBody>> {
    use http_body_util::BodyExt;
    const PATHS: [&str; 4] = [
        "/deployit/server/info",
        "/deployit/security/check/admin",
        "/deployit/security/role/roles",
        "/deployit/security/granted-permissions",
    ];
    if !PATHS.contains(&path) {
        return None;
    }
    let by_password = DEPLOY_ACCOUNTS.iter().find(|(user, password, _)| {
        headers
            .get("authorization")
            .and_then(|v| basic_credentials(v.as_bytes()))
            .is_some_and(|(u, p)| u.eq_ignore_ascii_case(user) && p == *password)
    });
    // The asserted user counts only when no credentials were sent, as in header mode:
    // a wrong password is refused whatever else the request names.
    let account = by_password
        .map(|(user, _, _)| user.to_string())
        .or_else(|| {
            headers
                .get("x-deploy-user")
                .filter(|_| !headers.contains_key("authorization"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    let answer = |status: StatusCode, kind: &str, text: &str| {
        Response::builder()
            .status(status)
            .header("content-type", kind)
            .body(
                http_body_util::Full::new(Bytes::from(text.to_string()))
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap()
    };
    let Some(user) = account else {
        return Some(answer(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "unauthorized",
        ));
    };
    let lists = path.starts_with("/deployit/security/role")
        || path.starts_with("/deployit/security/granted");
    if lists && security.without_lists {
        return Some(answer(StatusCode::NOT_FOUND, "text/plain", "Not Found"));
    }
    let admin = admins.iter().any(|a| a.eq_ignore_ascii_case(&user));
    let roles = deploy_roles(&user.to_ascii_lowercase());
    let mut permissions: Vec<(&str, Vec<&str>)> = Vec::new();
    for (scope, names) in roles.iter().flat_map(|r| granted(r)) {
        match permissions.iter_mut().find(|(s, _)| s == scope) {
            Some((_, merged)) => {
                for name in names.iter() {
                    if !merged.contains(name) {
                        merged.push(name);
                    }
                }
            }
            None => permissions.push((scope, names.to_vec())),
        }
    }
    let indented = security.wording == Wording::XmlIndented;
    let value = |v: &str| match indented {
        true => format!("\n    {v}\n  "),
        false => v.to_string(),
    };
    let strings = |names: &[&str]| -> String {
        names
            .iter()
            .map(|n| format!("<string>{}</string>", value(n)))
            .collect()
    };
    let xml = |body: String| match indented {
        true => format!("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n{body}\n"),
        false => body,
    };
    let json = security.wording == Wording::Json;
    Some(match path {
        "/deployit/server/info" => answer(
            StatusCode::OK,
            "application/xml",
            "<server-info><version>24.3</version></server-info>",
        ),
        "/deployit/security/check/admin" if json => {
            answer(StatusCode::OK, "application/json", &admin.to_string())
        }
        "/deployit/security/check/admin" => answer(
            StatusCode::OK,
            "application/xml",
            &xml(format!("<boolean>{}</boolean>", value(&admin.to_string()))),
        ),
        "/deployit/security/role/roles" if json => answer(
            StatusCode::OK,
            "application/json",
            &serde_json::json!(roles).to_string(),
        ),
        "/deployit/security/role/roles" => answer(
            StatusCode::OK,
            "application/xml",
            &xml(format!("<list>{}</list>", strings(roles))),
        ),
        _ if json => {
            let map: serde_json::Map<String, serde_json::Value> = permissions
                .iter()
                .map(|(scope, names)| (scope.to_string(), serde_json::json!(names)))
                .collect();
            answer(
                StatusCode::OK,
                "application/json",
                &serde_json::Value::Object(map).to_string(),
            )
        }
        _ => {
            let entries: String = permissions
                .iter()
                .map(|(scope, names)| {
                    format!(
                        "<entry key=\"{scope}\"><list>{}</list></entry>",
                        strings(names)
                    )
                })
                .collect();
            answer(
                StatusCode::OK,
                "application/xml",
                &xml(format!("<map>{entries}</map>")),
            )
        }
    })
}

/// The administrators of [`DEPLOY_ACCOUNTS`].
pub fn deploy_admins() -> Vec<String> {
    DEPLOY_ACCOUNTS
        .iter()
        .filter(|(_, _, admin)| *admin)
        .map(|(user, _, _)| user.to_string())
        .collect()
}

/// `(user, password)` of a `Basic` value.
fn basic_credentials(value: &[u8]) -> Option<(String, String)> {
    use base64::Engine;
    let encoded = value.strip_prefix(b"Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Sends a request with an optional JSON body.
pub async fn call(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Answer {
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    let bytes = match body {
        Some(value) => {
            all.push(("content-type", "application/json"));
            Bytes::from(value.to_string())
        }
        None => Bytes::new(),
    };
    request(method, url, &all, bytes).await
}

/// Calls with `Authorization: Basic user:password`.
pub async fn as_user(
    method: &str,
    url: &str,
    user: &str,
    password: &str,
    body: Option<&serde_json::Value>,
) -> Answer {
    let auth = basic(user, password);
    call(method, url, &[("authorization", &auth)], body).await
}

/// A signed-in browser: its session cookie and CSRF token.
pub struct Session {
    pub base: String,
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    /// Signs in with a password through `POST /patgate/api/v1/session`.
    pub async fn password(base: &str, user: &str, password: &str) -> Session {
        let answer = call(
            "POST",
            &format!("{base}/patgate/api/v1/session"),
            &[],
            Some(&serde_json::json!({"username": user, "password": password})),
        )
        .await;
        assert_eq!(answer.status, 200, "sign-in: {:?}", answer.body);
        Session::from_answer(base, &answer)
    }

    /// The session an answer's `Set-Cookie` started.
    pub fn from_answer(base: &str, answer: &Answer) -> Session {
        let cookie = session_cookie(answer).expect("a session cookie");
        Session {
            base: base.to_string(),
            cookie,
            csrf: String::new(),
        }
    }

    /// Reads the CSRF token from `/me`.
    pub async fn with_csrf(mut self) -> Session {
        let me = self.send("GET", "/patgate/api/v1/me", None).await;
        assert_eq!(me.status, 200, "{:?}", me.body);
        self.csrf = me.json()["csrf_token"].as_str().unwrap().to_string();
        self
    }

    /// Sends with the cookie and, for state changes, the CSRF token.
    pub async fn send(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> Answer {
        let cookie = format!("patgate_session={}", self.cookie);
        let mut headers = vec![("cookie", cookie.as_str())];
        if !self.csrf.is_empty() {
            headers.push(("x-csrf-token", self.csrf.as_str()));
        }
        call(method, &format!("{}{path}", self.base), &headers, body).await
    }
}

/// The `patgate_session` value an answer sets.
pub fn session_cookie(answer: &Answer) -> Option<String> {
    answer
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("patgate_session="))
        .map(|v| v.split(';').next().unwrap_or_default().to_string())
        .filter(|v| !v.is_empty())
}
