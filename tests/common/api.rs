//! The API from a client's side: JSON requests, password sign-in against the Deploy
//! stand-in's accounts, and browser-style sessions (cookie + CSRF token).

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use super::oidc::request;
use super::{basic, Answer, TestBody};

/// Accounts the Deploy stand-in accepts: (username, password, admin).
pub const DEPLOY_ACCOUNTS: [(&str, &str, bool); 3] = [
    ("alice", "alice-pw", false),
    ("bob", "bob-pw", false),
    ("admin", "admin-pw", true),
];

/// Deploy's password and admin checks, as the stand-in answers them: `Some` for the two
/// paths the gateway asks, `None` for everything else. Like a Deploy whose users come
/// from LDAP, it takes a username in any case; like a Deploy in header mode, it also
/// takes the user the gateway names in `X-Deploy-User`. `admins` are the users it says
/// are administrators now.
pub fn deploy_check(
    path: &str,
    headers: &HeaderMap,
    admins: &[String],
) -> Option<Response<TestBody>> {
    use http_body_util::BodyExt;
    if path != "/deployit/server/info" && path != "/deployit/security/check/admin" {
        return None;
    }
    let by_password = DEPLOY_ACCOUNTS.iter().find(|(user, password, _)| {
        headers
            .get("authorization")
            .and_then(|v| basic_credentials(v.as_bytes()))
            .is_some_and(|(u, p)| u.eq_ignore_ascii_case(user) && p == *password)
    });
    let user = by_password
        .map(|(user, _, _)| user.to_string())
        .or_else(|| {
            headers
                .get("x-deploy-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
    let body = |text: &str| {
        http_body_util::Full::new(Bytes::from(text.to_string()))
            .map_err(|never| match never {})
            .boxed()
    };
    Some(match user {
        None => Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .body(body("unauthorized"))
            .unwrap(),
        Some(user) if path.ends_with("/admin") => {
            let admin = admins.iter().any(|a| a.eq_ignore_ascii_case(&user));
            Response::builder()
                .header("content-type", "application/xml")
                .body(body(&format!("<boolean>{admin}</boolean>")))
                .unwrap()
        }
        Some(_) => Response::builder()
            .header("content-type", "application/xml")
            .body(body("<server-info><version>24.3</version></server-info>"))
            .unwrap(),
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
