//! Forward-auth at `/patgate/auth`, on SQLite and PostgreSQL: a real nginx with
//! `auth_request`, configured with the README's own blocks, lets through only requests
//! with a valid token and passes on the identity the gateway answers, in each identity
//! mode: the username header, a JWT the jose Deploy stand-in verifies, or the service
//! account's Basic credentials, and never the client's token. The headers Traefik and
//! Envoy send are read the same way; bad input and untrusted callers are refused.

#[macro_use]
mod common;

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use common::deploy_jwt::{JwtDeploy, JwtDeployOptions};
use common::nginx::Nginx;
use common::oidc::request;
use common::*;
use patgate::cli::{Admin, CreateArgs, TokenCommand};
use patgate::core::scope::Scope;
use patgate::core::token::Expiration;

on_both_backends!(
    nginx_auth_request_lets_through_only_valid_tokens_with_their_identity,
    nginx_passes_on_the_gateways_jwt_in_jwt_mode_and_never_the_token,
    nginx_passes_on_the_service_account_in_basic_mode_and_never_the_token,
    traefik_and_envoy_conventions_are_read_and_bad_input_refused,
    only_trusted_proxies_are_answered,
    failure_limits_count_the_client_the_proxy_forwarded,
    scopes_and_allowlists_judge_the_original_request,
);

const SHARED_SECRET: &str = "deploy-trusts-this-0123456789";

/// The README's nginx block for an identity mode: `header`, or `jwt` and `basic` (one
/// block for both), with the gateway's and Deploy's addresses put in.
fn nginx_server(
    mode: &str,
    gateway: std::net::SocketAddr,
    upstream: std::net::SocketAddr,
) -> String {
    let marker = match mode {
        "header" => "In **`header` mode**",
        "jwt" | "basic" => "In **`jwt` and `basic` modes**",
        other => panic!("no nginx block for {other} mode"),
    };
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/forward-auth.md"))
            .unwrap();
    let after = &readme[readme
        .find(marker)
        .expect("the forward-auth page's nginx section")..];
    let block = after
        .split_once("```nginx\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .expect("an nginx block after the marker")
        .0;
    assert_eq!(block.matches("http://127.0.0.1:4516;").count(), 1);
    assert_eq!(block.matches("http://127.0.0.1:14516;").count(), 1);
    block
        .replace("http://127.0.0.1:14516;", &format!("http://{upstream};"))
        .replace("http://127.0.0.1:4516;", &format!("http://{gateway};"))
}

/// Fails when any header line carries `token`, as it is or inside Basic credentials.
#[track_caller]
fn assert_no_token<'a>(lines: impl IntoIterator<Item = (&'a str, &'a str)>, token: &str) {
    for (name, value) in lines {
        assert!(!value.contains(token), "{name} carries the client's token");
        let decoded = value
            .strip_prefix("Basic ")
            .and_then(|b| {
                base64::engine::general_purpose::STANDARD
                    .decode(b.trim())
                    .ok()
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        assert!(
            !decoded.contains(token),
            "{name} carries the client's token"
        );
    }
}

fn header_lines(headers: &http::HeaderMap) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap_or_default()))
        .collect()
}

async fn nginx_auth_request_lets_through_only_valid_tokens_with_their_identity(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_TRUSTED_PROXIES", "127.0.0.1"),
            ("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", SHARED_SECRET),
        ],
    ))
    .await;
    let nginx = Nginx::start(&nginx_server("header", gw.addr, upstream.addr)).await;
    let (id, token) = gw.create_token("alice", "ci", Expiration::Days30).await;

    // A token in Deploy's header, and a client trying to be someone else.
    let answer = get(
        &nginx.url("/deployit/repository/ci/Applications"),
        &[
            ("x-deploy-personal-token", &token),
            ("x-deploy-user", "admin"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, nginx.log());
    assert_eq!(answer.body, "deploy");
    let seen = upstream.last();
    assert_eq!(seen.path, "/deployit/repository/ci/Applications");
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    assert_eq!(seen.headers.get_all("x-deploy-user").iter().count(), 1);
    assert_eq!(seen.headers["x-patgate-secret"], SHARED_SECRET);
    assert!(seen.headers.get("x-deploy-personal-token").is_none());

    // Basic ":pat" on a POST: the body goes to Deploy, the token does not.
    let answer = request(
        "POST",
        &nginx.url("/api/v1/deployit"),
        &[("authorization", &basic("", &token))],
        Bytes::from_static(b"{\"a\": 1}"),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let seen = upstream.last();
    assert_eq!((seen.method.as_str(), seen.body_len), ("POST", 8));
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    assert!(seen.headers.get("authorization").is_none());

    // Refused: nothing reaches Deploy.
    let reached = upstream.count();
    let refusals: [&[(&str, &str)]; 3] = [
        &[],
        &[("x-deploy-personal-token", "dpat_short")],
        &[("x-deploy-user", "admin")],
    ];
    for headers in refusals {
        let answer = get(&nginx.url("/deployit/security/users"), headers).await;
        assert_eq!(answer.status, 401, "{headers:?}");
    }
    assert_eq!(
        upstream.count(),
        reached,
        "a refused request reached Deploy"
    );

    // A revoked token stops within a second.
    gw.revoke(&id).await;
    let refused = within(Duration::from_secs(1), || async {
        get(&nginx.url("/x"), &[("x-deploy-personal-token", &token)])
            .await
            .status
            == 401
    })
    .await;
    assert!(
        refused.is_some(),
        "nginx let a revoked token through after 1 s"
    );
    drop(nginx);
    gw.shutdown().await;
}

async fn nginx_passes_on_the_gateways_jwt_in_jwt_mode_and_never_the_token(db: TestDb) {
    // Deploy (the jose stand-in) verifies the gateway's JWTs with the gateway's JWKS.
    let port = free_port();
    let deploy = JwtDeploy::start(JwtDeployOptions {
        jwks_url: Some(format!(
            "http://127.0.0.1:{port}/patgate/.well-known/jwks.json"
        )),
        issuer: "https://patgate.example".into(),
        audience: "deploy-prod".into(),
        algorithms: vec!["RS256".into()],
        ..JwtDeployOptions::default()
    })
    .await;
    let listen = format!("127.0.0.1:{port}");
    let mut config = config(
        &db,
        &deploy.url,
        &[
            ("PATGATE_LISTEN", &listen),
            ("PATGATE_TRUSTED_PROXIES", "127.0.0.1"),
            ("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", SHARED_SECRET),
            ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
            (
                "PATGATE_UPSTREAM__IDENTITY__JWT__ISSUER",
                "https://patgate.example",
            ),
            ("PATGATE_UPSTREAM__IDENTITY__JWT__AUDIENCE", "deploy-prod"),
            (
                "PATGATE_UPSTREAM__IDENTITY__JWT__DEFAULT_ROLES",
                "deployers",
            ),
        ],
    );
    config.upstream.identity.jwt.key_file = db.dir.path().join("no-such.key");
    let gw = Gateway::start(config).await;
    let deploy_addr = format!("127.0.0.1:{}", deploy.port).parse().unwrap();
    let nginx = Nginx::start(&nginx_server("jwt", gw.addr, deploy_addr)).await;
    let (id, token) = gw.create_token("alice", "ci", Expiration::Days30).await;

    let basic_pat = basic("", &token);
    let spellings: [(&str, &[(&str, &str)]); 2] = [
        ("GET", &[("x-deploy-personal-token", &token)]),
        ("POST", &[("authorization", &basic_pat)]),
    ];
    for (method, headers) in spellings {
        let answer = request(
            method,
            &nginx.url("/deployit/repository/ci/Applications"),
            headers,
            Bytes::new(),
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, nginx.log());
        // Deploy verified the JWT with jose and read alice and her roles from it.
        let seen = answer.json();
        assert_eq!(seen["user"], "alice", "{seen}");
        assert_eq!(seen["roles"], serde_json::json!(["deployers"]), "{seen}");
        assert_eq!(seen["method"], method);
        let lines: Vec<(&str, &str)> = seen["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| (pair[0].as_str().unwrap(), pair[1].as_str().unwrap()))
            .collect();
        let named = |name: &str| -> Vec<&str> {
            lines
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| *v)
                .collect()
        };
        let authorization = named("authorization");
        assert_eq!(authorization.len(), 1, "{lines:?}");
        assert!(authorization[0].starts_with("Bearer ey"), "{lines:?}");
        assert_eq!(named("x-deploy-user"), ["alice"]);
        assert_eq!(named("x-patgate-secret"), [SHARED_SECRET]);
        assert!(named("x-deploy-personal-token").is_empty(), "{lines:?}");
        assert_no_token(lines.iter().copied(), &token);
    }
    let stats = deploy.stats().await;
    assert_eq!(
        (stats["accepted"].as_i64(), stats["refused"].as_i64()),
        (Some(2), Some(0)),
        "{stats}"
    );

    // Refused by the gateway: nginx sends nothing to Deploy.
    for headers in [
        vec![],
        vec![("x-deploy-personal-token", "dpat_short")],
        vec![("authorization", "Bearer forged.by.client")],
    ] {
        let answer = get(&nginx.url("/deployit/server/info"), &headers).await;
        assert_eq!(answer.status, 401, "{headers:?}");
    }
    let stats = deploy.stats().await;
    assert_eq!(
        (stats["accepted"].as_i64(), stats["refused"].as_i64()),
        (Some(2), Some(0)),
        "a refused request reached Deploy: {stats}"
    );
    gw.revoke(&id).await;
    let refused = within(Duration::from_secs(1), || async {
        get(&nginx.url("/x"), &[("x-deploy-personal-token", &token)])
            .await
            .status
            == 401
    })
    .await;
    assert!(
        refused.is_some(),
        "nginx let a revoked token through after 1 s"
    );
    // Until then, every request that reached Deploy carried a JWT it accepted.
    assert_eq!(deploy.stats().await["refused"], 0);
    drop(nginx);
    gw.shutdown().await;
}

async fn nginx_passes_on_the_service_account_in_basic_mode_and_never_the_token(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_TRUSTED_PROXIES", "127.0.0.1"),
            ("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", SHARED_SECRET),
            ("PATGATE_UPSTREAM__IDENTITY__MODE", "basic"),
            ("PATGATE_UPSTREAM__IDENTITY__BASIC__USERNAME", "svc-patgate"),
            ("PATGATE_UPSTREAM__IDENTITY__BASIC__PASSWORD", "svc-pw"),
        ],
    ))
    .await;
    let nginx = Nginx::start(&nginx_server("basic", gw.addr, upstream.addr)).await;
    let (id, token) = gw.create_token("alice", "ci", Expiration::Days30).await;

    // Deploy's own password check accepts what nginx passed on: the service account.
    let answer = get(
        &nginx.url("/deployit/server/info"),
        &[("x-deploy-personal-token", &token)],
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, nginx.log());
    assert!(
        answer.body.starts_with(b"<server-info>"),
        "{:?}",
        answer.body
    );

    let basic_pat = basic("alice", &token);
    let spellings: [(&str, &[(&str, &str)]); 2] = [
        ("GET", &[("x-deploy-personal-token", &token)]),
        ("POST", &[("authorization", &basic_pat)]),
    ];
    for (method, headers) in spellings {
        let answer = request(
            method,
            &nginx.url("/deployit/repository/ci/Applications"),
            headers,
            Bytes::from_static(b"{}"),
        )
        .await;
        assert_eq!(answer.status, 200, "{:?}\n{}", answer.body, nginx.log());
        let seen = upstream.last();
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            (method, "/deployit/repository/ci/Applications")
        );
        let authorization: Vec<_> = seen.headers.get_all("authorization").iter().collect();
        assert_eq!(authorization, [&basic("svc-patgate", "svc-pw")], "{method}");
        assert_eq!(seen.headers["x-deploy-user"], "alice");
        assert_eq!(seen.headers["x-patgate-secret"], SHARED_SECRET);
        assert!(seen.headers.get("x-deploy-personal-token").is_none());
        assert_no_token(header_lines(&seen.headers), &token);
    }

    // Refused: nothing reaches Deploy, and a client's own Basic credentials are not
    // passed on in place of the service account.
    let reached = upstream.count();
    for headers in [
        vec![],
        vec![("x-deploy-personal-token", "dpat_short")],
        vec![("authorization", "Basic c3ZjLXBhdGdhdGU6c3ZjLXB3")],
    ] {
        let answer = get(&nginx.url("/deployit/server/info"), &headers).await;
        assert_eq!(answer.status, 401, "{headers:?}");
    }
    assert_eq!(
        upstream.count(),
        reached,
        "a refused request reached Deploy"
    );
    gw.revoke(&id).await;
    let refused = within(Duration::from_secs(1), || async {
        get(&nginx.url("/x"), &[("x-deploy-personal-token", &token)])
            .await
            .status
            == 401
    })
    .await;
    assert!(
        refused.is_some(),
        "nginx let a revoked token through after 1 s"
    );
    drop(nginx);
    gw.shutdown().await;
}

type Header<'a> = (&'a str, &'a str);

/// A forward-auth question, straight to the gateway.
async fn ask(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(method, &gw.url(path), headers, Bytes::new()).await
}

async fn traefik_and_envoy_conventions_are_read_and_bad_input_refused(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[("PATGATE_TRUSTED_PROXIES", "127.0.0.1")],
    ))
    .await;
    let (id, token) = gw.create_token("alice", "ci", Expiration::Days30).await;
    let (_, bobs) = gw.create_token("bob", "ci", Expiration::Days30).await;

    // Traefik ForwardAuth: X-Forwarded-Method and X-Forwarded-Uri.
    let answer = ask(
        &gw,
        "GET",
        "/patgate/auth",
        &[
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/deployit/tasks/v2?x=1"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-deploy-personal-token", &token),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.headers["x-deploy-user"], "alice");
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.json()["user"], "alice");

    // Envoy ext_authz with path_prefix: the original method and path are the request's.
    let answer = ask(
        &gw,
        "DELETE",
        "/patgate/auth/api/v1/repository/ci/Applications/x",
        &[("authorization", &basic("bob", &bobs))],
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.headers["x-deploy-user"], "bob");

    let uri = ("x-original-uri", "/api/v1/deployit");
    let token_header = [("x-deploy-personal-token", token.as_str())];
    let alice_bob = basic("alice", &bobs);
    let cases: [(Vec<Header>, u16, &str); 5] = [
        (token_header.to_vec(), 400, "missing_original_uri"),
        (vec![uri], 401, "missing_credentials"),
        (
            vec![uri, ("x-deploy-personal-token", "dpat_short")],
            401,
            "malformed_token",
        ),
        (
            vec![
                uri,
                ("x-deploy-personal-token", "a"),
                ("x_deploy_personal_token", "b"),
            ],
            401,
            "malformed_credentials",
        ),
        // Bob's token claimed as Alice's.
        (
            vec![uri, ("authorization", &alice_bob)],
            401,
            "invalid_token",
        ),
    ];
    for (headers, status, code) in cases {
        let answer = ask(&gw, "GET", "/patgate/auth", &headers).await;
        assert_eq!(answer.status, status, "{code}: {:?}", answer.body);
        assert_eq!(answer.error_code(), code);
        assert!(answer.headers.get("x-deploy-user").is_none());
    }
    let mut traced = token_header.to_vec();
    traced.extend_from_slice(&[("x-original-method", "TRACE"), ("x-original-uri", "/x")]);
    let answer = ask(&gw, "GET", "/patgate/auth", &traced).await;
    assert_eq!(
        (answer.status.as_u16(), answer.error_code().as_str()),
        (403, "method_not_allowed")
    );
    let mut session = token_header.to_vec();
    session.push(("x-original-uri", "/deployit/x;jsessionid=ABC"));
    let answer = ask(&gw, "GET", "/patgate/auth", &session).await;
    assert_eq!(
        (answer.status.as_u16(), answer.error_code().as_str()),
        (403, "session_id_in_url")
    );
    assert!(answer.headers.get("x-deploy-user").is_none());

    gw.revoke(&id).await;
    let refused = within(Duration::from_secs(1), || async {
        let headers = [uri, token_header[0]];
        ask(&gw, "GET", "/patgate/auth", &headers)
            .await
            .error_code()
            == "invalid_token"
    })
    .await;
    assert!(refused.is_some(), "a revoked token was accepted after 1 s");
    assert_eq!(upstream.count(), 0, "forward-auth forwarded something");
    gw.shutdown().await;
}

async fn only_trusted_proxies_are_answered(db: TestDb) {
    let upstream = Upstream::start().await;
    // The gateway believes only proxies in 10.0.0.0/8; this test connects from loopback.
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", SHARED_SECRET),
        ],
    ))
    .await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days30).await;
    let answer = ask(
        &gw,
        "GET",
        "/patgate/auth",
        &[
            ("x-original-uri", "/x"),
            ("x-deploy-personal-token", &token),
        ],
    )
    .await;
    assert_eq!(answer.status, 403, "{:?}", answer.body);
    assert_eq!(answer.error_code(), "untrusted_caller");
    assert!(answer.headers.get("x-patgate-secret").is_none());
    assert!(!String::from_utf8_lossy(&answer.body).contains(SHARED_SECRET));
    gw.shutdown().await;
}

async fn failure_limits_count_the_client_the_proxy_forwarded(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_TRUSTED_PROXIES", "127.0.0.1"),
            ("PATGATE_LIMITS__FAILURE_BURST", "2"),
            ("PATGATE_LIMITS__FAILURES_PER_SECOND", "0.01"),
        ],
    ))
    .await;
    assert_eq!(invented_from(&gw, "203.0.113.9").await, "invalid_token");
    assert_eq!(invented_from(&gw, "203.0.113.9").await, "invalid_token");
    assert_eq!(invented_from(&gw, "203.0.113.9").await, "too_many_failures");
    // Another client behind the same proxy is not held back by the first one.
    assert_eq!(invented_from(&gw, "203.0.113.10").await, "invalid_token");
    gw.shutdown().await;
}

/// Asks about a well-formed token nobody issued (a failed check) for `client`, as the
/// proxy forwarded it; returns the error code.
async fn invented_from(gw: &Gateway, client: &str) -> String {
    let token = patgate::core::token::PlainToken::generate();
    let answer = ask(
        gw,
        "GET",
        "/patgate/auth",
        &[
            ("x-original-uri", "/x"),
            ("x-forwarded-for", client),
            ("x-deploy-personal-token", token.expose()),
        ],
    )
    .await;
    answer.error_code()
}

/// A token made with the CLI's scope and allowlist flags.
async fn ruled_token(gw: &Gateway, name: &str, scope: Scope, allow_from: &[&str]) -> String {
    let out = patgate::cli::run_admin(
        &gw.config,
        Admin::Token(TokenCommand::Create(CreateArgs {
            user: "alice".into(),
            name: name.into(),
            expires: Expiration::Days30,
            source: patgate::store::UserSource::Internal,
            email: None,
            scope,
            allow_from: allow_from.iter().map(|a| a.to_string()).collect(),
            json: true,
        })),
    )
    .await
    .unwrap();
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn scopes_and_allowlists_judge_the_original_request(db: TestDb) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[("PATGATE_TRUSTED_PROXIES", "127.0.0.1")],
    ))
    .await;
    let reader = ruled_token(&gw, "reader", Scope::Read, &[]).await;
    let office = ruled_token(&gw, "office", Scope::Full, &["10.1.0.0/16"]).await;
    let question = |method: &'static str, client: &'static str, token: String| {
        let gw = &gw;
        async move {
            ask(
                gw,
                "GET",
                "/patgate/auth",
                &[
                    ("x-original-method", method),
                    ("x-original-uri", "/deployit/repository/ci"),
                    ("x-forwarded-for", client),
                    ("x-deploy-personal-token", &token),
                ],
            )
            .await
        }
    };

    // A read-only token: the original method decides, not the proxy's GET.
    assert_eq!(
        question("GET", "203.0.113.9", reader.clone()).await.status,
        200
    );
    let denied = question("POST", "203.0.113.9", reader.clone()).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.error_code(), "scope_denied");
    assert!(!denied.headers.contains_key("x-deploy-user"));

    // An allowlisted token: the client the proxy forwarded decides, not the proxy.
    assert_eq!(
        question("POST", "10.1.2.3", office.clone()).await.status,
        200
    );
    let elsewhere = question("POST", "203.0.113.9", office.clone()).await;
    assert_eq!(elsewhere.status, 403);
    assert_eq!(elsewhere.error_code(), "address_not_allowed");
    assert_eq!(upstream.count(), 0, "forward-auth never forwards");
    gw.shutdown().await;
}
