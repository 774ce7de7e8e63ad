//! The proxy as Deploy's clients and Deploy see it: identity modes, header hygiene,
//! pass-through credentials, upgrades, upstream failures and bad input.

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use patgate::core::token::Expiration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn sqlite() -> TestDb {
    TestDb::new(Backend::Sqlite).await.unwrap()
}

#[tokio::test]
async fn spoofed_identity_headers_are_stripped_for_everyone() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", "s3cret")]).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;

    // Anonymous: both identity headers removed, nothing added.
    get(
        &gw.url("/x"),
        &[("X-Deploy-User", "admin"), ("X-Patgate-Secret", "guess")],
    )
    .await;
    let seen = upstream.last();
    assert!(seen.headers.get("x-deploy-user").is_none());
    assert!(seen.headers.get("x-patgate-secret").is_none());

    // Authenticated: the client's claim is replaced by the token's owner.
    get(
        &gw.url("/x"),
        &[
            ("X-Deploy-User", "admin"),
            ("x-deploy-personal-token", &token),
        ],
    )
    .await;
    let seen = upstream.last();
    assert_eq!(seen.headers.get_all("x-deploy-user").iter().count(), 1);
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    assert_eq!(seen.headers["x-patgate-secret"], "s3cret");
    gw.shutdown().await;
}

#[tokio::test]
async fn credentials_that_are_not_tokens_pass_through_untouched() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let password = basic("admin", "admin-password");
    let cases: [(&str, &str); 3] = [
        ("authorization", &password),
        ("authorization", "Bearer some.oidc.token"),
        ("cookie", "JSESSIONID=abc123; XSRF-TOKEN=q"),
    ];
    for (name, value) in cases {
        let answer = get(&gw.url("/deployit/login"), &[(name, value)]).await;
        assert_eq!(answer.status, 200);
        let seen = upstream.last();
        assert_eq!(seen.headers[name], value, "{name} changed on the way");
        assert!(seen.headers.get("x-deploy-user").is_none());
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn forwarded_headers_describe_the_client() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let answer = get(
        &gw.url("/api/v1/deployit?x=1"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ],
    )
    .await;
    assert_eq!(answer.headers["x-upstream"], "deploy");
    assert!(answer.headers.get("x-request-id").is_some());
    let seen = upstream.last();
    assert_eq!(
        seen.target, "/api/v1/deployit?x=1",
        "origin-form on the wire"
    );
    // No trusted proxy in front: the client's own X-Forwarded-For is not believed.
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-forwarded-host"], gw.addr.to_string());
    assert_eq!(seen.headers["x-request-id"], answer.headers["x-request-id"]);
    assert!(
        seen.headers.get("x-hop").is_none(),
        "hop-by-hop header forwarded"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn jwt_mode_sends_a_short_lived_jwt_verifiable_with_the_published_keys() {
    let db = sqlite().await;
    let upstream = Upstream::start().await;
    let key_file = db.dir.path().join("jwt.key");
    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt"),
            (
                "PATGATE_UPSTREAM__IDENTITY__JWT__KEY_FILE",
                key_file.to_str().unwrap(),
            ),
            ("PATGATE_UPSTREAM__IDENTITY__JWT__AUDIENCE", "deploy-test"),
            ("PATGATE_UPSTREAM__IDENTITY__JWT__ALGORITHM", "EdDSA"),
        ],
    ))
    .await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    get(
        &gw.url("/api/v1/x"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    let seen = upstream.last();
    let bearer = seen.headers["authorization"].to_str().unwrap().to_string();
    let jwt = bearer.strip_prefix("Bearer ").expect("a bearer token");
    assert!(!jwt.contains(&token));

    let jwks = get(&gw.url("/patgate/.well-known/jwks.json"), &[])
        .await
        .json();
    let x = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["x"].as_str().unwrap())
        .unwrap();
    let (input, signature) = jwt.rsplit_once('.').unwrap();
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, x)
        .verify(
            input.as_bytes(),
            &URL_SAFE_NO_PAD.decode(signature).unwrap(),
        )
        .expect("signature verifies with the JWKS key");
    let header: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    let claims: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(input.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "deploy-test");
    assert_eq!(claims["iss"], "patgate");
    let lifetime = claims["exp"].as_i64().unwrap() - patgate::core::time::now();
    assert!((1..=300).contains(&lifetime), "exp {lifetime}s ahead");
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    gw.shutdown().await;
}

#[tokio::test]
async fn basic_mode_sends_the_service_account_and_the_user_for_audit() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[
        ("PATGATE_UPSTREAM__IDENTITY__MODE", "basic"),
        ("PATGATE_UPSTREAM__IDENTITY__BASIC__USERNAME", "svc-gateway"),
        ("PATGATE_UPSTREAM__IDENTITY__BASIC__PASSWORD", "svc-pw"),
    ])
    .await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    get(&gw.url("/api/v1/x"), &[("x-deploy-personal-token", &token)]).await;
    let seen = upstream.last();
    assert_eq!(
        seen.headers["authorization"],
        basic("svc-gateway", "svc-pw")
    );
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    // Without a token the service account is never used.
    get(&gw.url("/api/v1/x"), &[]).await;
    assert!(upstream.last().headers.get("authorization").is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrade_passes_through_with_the_same_authentication() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;

    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: deploy\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nx-deploy-personal-token: {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    stream.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    assert!(seen.headers.get("x-deploy-personal-token").is_none());

    // The same upgrade with a bad token is refused before Deploy sees it.
    let before = upstream.count();
    let answer = get(
        &gw.url("/ws"),
        &[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("x-deploy-personal-token", "dpat_nope"),
        ],
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(upstream.count(), before);
    gw.shutdown().await;
}

#[tokio::test]
async fn upstream_down_gives_502_and_slow_upstream_gives_504() {
    let db = sqlite().await;
    // A port nobody listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let gw = Gateway::start(config(&db, &dead, &[])).await;
    let answer = get(&gw.url("/x"), &[]).await;
    assert_eq!(answer.status, 502);
    assert_eq!(answer.error_code(), "upstream_unreachable");
    // The answer names where the gateway looked and the key that says so.
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains(&dead) && message.contains("upstream.url"),
        "{message}"
    );
    assert_eq!(
        get(&gw.url("/patgate/healthz"), &[]).await.status,
        200,
        "gateway stays up"
    );
    gw.shutdown().await;

    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let answer = get(&gw.url("/slow"), &[]).await; // read_timeout is 2 s, /slow takes 3 s
    assert_eq!(answer.status, 504);
    assert_eq!(answer.error_code(), "upstream_timeout");
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_never_reaches_deploy() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;

    let malformed_base64 = get(&gw.url("/x"), &[("authorization", "Basic %%%not-base64")]).await;
    assert_eq!(malformed_base64.status, 400);
    assert_eq!(malformed_base64.error_code(), "malformed_credentials");

    let two_tokens = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nx-deploy-personal-token: {token}\r\nx-deploy-personal-token: {token}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw_status(gw.addr, two_tokens.as_bytes()).await.0, 400);

    // Non-UTF-8 bytes in the token header and inside Basic credentials.
    let mut non_utf8 = b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-deploy-personal-token: dpat_\xff\xfe\r\n\r\n".to_vec();
    let (status, text) = raw_status(gw.addr, &non_utf8).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("malformed_token"), "{text}");
    use base64::engine::general_purpose::STANDARD;
    let encoded = STANDARD.encode(b":dpat_\xff\x00\x01");
    non_utf8 = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: Basic {encoded}\r\n\r\n"
    )
    .into_bytes();
    assert_eq!(raw_status(gw.addr, &non_utf8).await.0, 401);

    // A NUL byte in a header line is rejected by the HTTP parser.
    let nul = b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-deploy-personal-token: dpat_\x00abc\r\n\r\n";
    let (status, _) = raw_status(gw.addr, nul).await;
    assert!((400..500).contains(&status), "NUL byte got {status}");

    // A very long header.
    let long = format!(
        "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-deploy-personal-token: dpat_{}\r\n\r\n",
        "a".repeat(100_000)
    );
    let (status, _) = raw_status(gw.addr, long.as_bytes()).await;
    assert!(
        (400..500).contains(&status),
        "very long header got {status}"
    );
    let long_token = format!("dpat_{}", "a".repeat(3000));
    let answer = get(&gw.url("/x"), &[("x-deploy-personal-token", &long_token)]).await;
    assert_eq!(answer.error_code(), "malformed_token");

    assert_eq!(upstream.count(), 0, "bad input reached Deploy");
    // And the gateway is still healthy.
    assert_eq!(get(&gw.url("/patgate/healthz"), &[]).await.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let Stack {
        db: _db,
        upstream: _upstream,
        gw,
    } = stack(&[("PATGATE_UPSTREAM__READ_TIMEOUT", "10s")]).await;
    let url = gw.url("/slow");
    let in_flight = tokio::spawn(async move { get(&url, &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let addr = gw.addr;
    gw.shutdown().await;
    let answer = in_flight.await.unwrap();
    assert_eq!(answer.status, 200, "in-flight request was cut off");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn unknown_reserved_paths_are_answered_by_the_gateway() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let answer = get(&gw.url("/patgate/nothing-here"), &[]).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.error_code(), "not_found");
    let jwks = get(&gw.url("/patgate/.well-known/jwks.json"), &[]).await;
    assert_eq!(jwks.status, 404, "no keys outside jwt mode");
    let metrics = get(&gw.url("/patgate/metrics"), &[]).await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("patgate_requests_total"));
    assert_eq!(upstream.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn token_requests_neither_carry_nor_receive_deploy_sessions() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let answer = get(
        &gw.url("/api/v1/x"),
        &[
            ("x-deploy-personal-token", &token),
            ("cookie", "SESSION_XLD=someone-elses"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.headers.get("set-cookie").is_none(),
        "a session was handed to a token client"
    );
    assert!(
        upstream.last().headers.get("cookie").is_none(),
        "a cookie rode along with a token"
    );
    // Browsers and password logins keep their sessions.
    let answer = get(&gw.url("/login"), &[("cookie", "SESSION_XLD=mine")]).await;
    assert!(answer.headers.get("set-cookie").is_some());
    assert_eq!(upstream.last().headers["cookie"], "SESSION_XLD=mine");
    gw.shutdown().await;
}

#[tokio::test]
async fn the_gateways_own_cookies_never_reach_deploy() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    // A browser signed in to the gateway sends its cookies to Deploy's pages too when
    // they were set for `/` (before the upgrade) or by a look-alike page.
    let answer = get(
        &gw.url("/deployit/index.html"),
        &[
            (
                "cookie",
                "patgate_session=s3cret; SESSION_XLD=mine; __Secure-patgate_session=other",
            ),
            ("cookie", "patgate_sso=b1nding"),
        ],
    )
    .await;
    assert_eq!(answer.status, 200);
    let seen: Vec<String> = upstream
        .last()
        .headers
        .get_all("cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(seen, vec!["SESSION_XLD=mine"]);
    // Only the gateway's own: nothing else is touched.
    get(&gw.url("/x"), &[("cookie", "SESSION_XLD=mine;lang=en")]).await;
    assert_eq!(
        upstream.last().headers["cookie"],
        "SESSION_XLD=mine;lang=en"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn connect_and_trace_are_refused() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let trace = format!("TRACE /x HTTP/1.1\r\nHost: a\r\nx-deploy-personal-token: {token}\r\nConnection: close\r\n\r\n");
    assert_eq!(raw_status(gw.addr, trace.as_bytes()).await.0, 405);
    let connect = b"CONNECT deploy:80 HTTP/1.1\r\nHost: deploy:80\r\nConnection: close\r\n\r\n";
    let (status, text) = raw_status(gw.addr, connect).await;
    assert_eq!(status, 405, "{text}");
    assert_eq!(upstream.count(), 0);
    assert_eq!(get(&gw.url("/patgate/healthz"), &[]).await.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn connection_header_cannot_remove_the_gateways_headers() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[("PATGATE_UPSTREAM__IDENTITY__SHARED_SECRET", "s3cret")]).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    get(
        &gw.url("/x"),
        &[
            ("x-deploy-personal-token", &token),
            (
                "connection",
                "keep-alive, X-Deploy-User, X-Patgate-Secret, X-Forwarded-For",
            ),
            ("forwarded", "for=203.0.113.1;proto=https"),
            ("x-real-ip", "203.0.113.1"),
        ],
    )
    .await;
    let seen = upstream.last();
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    assert_eq!(seen.headers["x-patgate-secret"], "s3cret");
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert!(seen.headers.get("forwarded").is_none());
    assert!(seen.headers.get("x-real-ip").is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn only_websocket_upgrades_are_tunnelled() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let answer = get(
        &gw.url("/ws"),
        &[
            ("connection", "Upgrade, HTTP2-Settings"),
            ("upgrade", "h2c"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
        ],
    )
    .await;
    // Forwarded as an ordinary request, without the upgrade: Deploy must not switch.
    assert_ne!(answer.status, 101);
    let seen = upstream.last();
    assert!(seen.headers.get("upgrade").is_none(), "{:?}", seen.headers);
    assert!(seen.headers.get("http2-settings").is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn a_token_sent_as_bearer_is_checked_not_forwarded() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let answer = get(
        &gw.url("/x"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await;
    assert_eq!(answer.status, 200);
    assert_eq!(upstream.last().headers["x-deploy-user"], "alice");
    assert!(upstream.last().headers.get("authorization").is_none());
    let unknown = patgate::core::token::PlainToken::generate();
    let answer = get(
        &gw.url("/x"),
        &[("authorization", &format!("Bearer {}", unknown.expose()))],
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(upstream.count(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_websocket_closes_when_its_token_is_revoked() {
    let Stack {
        db: _db,
        upstream: _upstream,
        gw,
    } = stack(&[]).await;
    let (id, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: deploy\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-deploy-personal-token: {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    gw.revoke(&id).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the tunnel stayed open after its token was revoked"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn a_websocket_stays_open_while_its_token_is_valid() {
    let Stack {
        db: _db,
        upstream: _upstream,
        gw,
    } = stack(&[]).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: deploy\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-deploy-personal-token: {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    // The token is re-checked four times a second; several checks pass meanwhile.
    tokio::time::sleep(Duration::from_millis(800)).await;
    stream.write_all(b"still open").await.unwrap();
    let mut echoed = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
        .await
        .expect("an answer through the tunnel")
        .expect("the tunnel of a valid token stayed open");
    assert_eq!(&echoed, b"still open");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_slow_upload_is_not_cut_off_by_the_read_timeout() {
    let db = sqlite().await;
    let upstream = Upstream::start().await;
    // read_timeout is 2 s in the test config; the upload takes 3 s.
    let gw = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: deploy\r\nContent-Length: 30\r\nx-deploy-personal-token: {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..3 {
        stream.write_all(b"0123456789").await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("30"), "{response}");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_absolute_form_target_reaches_deploy_in_origin_form_with_its_host() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[]).await;
    let request = b"GET http://deploy.example:4516/api/v1/x?y=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(gw.addr, request).await.0, 200);
    let seen = upstream.last();
    assert_eq!(seen.target, "/api/v1/x?y=1");
    assert_eq!(seen.headers["host"], "deploy.example:4516");
    // An HTTP/1.0 client without Host still gives Deploy one.
    assert_eq!(
        raw_status(gw.addr, b"GET /old HTTP/1.0\r\n\r\n").await.0,
        200
    );
    assert!(upstream.last().headers.get("host").is_some());
    gw.shutdown().await;
}

#[tokio::test]
async fn connections_deploy_closes_are_not_reused() {
    let Stack {
        db: _db,
        upstream,
        gw,
    } = stack(&[("PATGATE_WORKERS", "1")]).await;
    for _ in 0..10 {
        let answer = get(&gw.url("/close"), &[]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body, "closing");
        let answer = get(&gw.url("/x"), &[]).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert_eq!(upstream.count(), 20);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_port_another_program_holds_is_an_error_at_start() {
    let db = sqlite().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let config = config(&db, "http://127.0.0.1:9", &[("PATGATE_LISTEN", &address)]);
    let Err(error) = patgate::app::start(config).await else {
        panic!("started on a port another program holds");
    };
    let message = error.to_string();
    assert!(message.contains(&address), "{message}");
    assert!(message.contains("another process"), "{message}");
}
