//! The fast path as clients and Deploy see it on the wire: every way an answer can be
//! framed, keep-alive on both sides, pipelining, interim answers, and connections that
//! move to the general path halfway through.
//!
//! Deploy is played by a scripted server that answers with exact bytes, so framing
//! cases a well-behaved HTTP library would never produce can be tested too.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::scripted::{raw_exchange, Scripted};
use common::*;
use http::StatusCode;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use patgate::core::token::Expiration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The scripts: each path one way of framing an answer.
fn deploy(method: &str, path: &str) -> (Vec<u8>, bool) {
    let answer: &[u8] = match path {
        "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: x-hop\r\nx-hop: 1\r\nKeep-Alive: timeout=5\r\nSet-Cookie: SESSION_XLD=s\r\n\r\n5;note=1\r\nhello\r\n6\r\n world\r\n0\r\nset-cookie: SESSION_XLD=trailer\r\n\r\n",
        "/die" => return (Vec::new(), true),
        "/until-close" => {
            return (
                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nbody until close".to_vec(),
                true,
            )
        }
        "/interim" => b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
        "/both-lengths" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        "/extra-bytes" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokSMUGGLED",
        "/gzip-and-length" => {
            return (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\ncontent-length: 2\r\n\r\nokSMUGGLED"
                    .to_vec(),
                true,
            )
        }
        "/bad-chunks" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnope\r\n",
        "/switch" => b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        "/no-content" => b"HTTP/1.1 204 No Content\r\n\r\n",
        _ if method == "HEAD" => b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n",
        _ => {
            let body = format!("path={path}");
            return (
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
                false,
            );
        }
    };
    (answer.to_vec(), false)
}

struct Setup {
    _db: TestDb,
    deploy: Scripted,
    gw: Gateway,
    token: String,
}

async fn setup() -> Setup {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let deploy = Scripted::start(deploy).await;
    let gw = Gateway::start(config(&db, &deploy.url(), &[("PATGATE_WORKERS", "1")])).await;
    let (_, token) = gw.create_token("alice", "wire", Expiration::Days7).await;
    Setup {
        _db: db,
        deploy,
        gw,
        token,
    }
}

/// One keep-alive client connection.
async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn ask(
    sender: &mut SendRequest<Full<Bytes>>,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Answer {
    let headers: Vec<(&str, &str)> = token
        .map(|t| ("x-deploy-personal-token", t))
        .into_iter()
        .collect();
    send_on(sender, method, path, "deploy.example", &headers).await
}

#[tokio::test]
async fn chunked_answers_pass_through_whole_on_kept_connections() {
    let s = setup().await;
    let mut client = connect(s.gw.addr).await;
    let answer = ask(&mut client, "GET", "/chunked", Some(&s.token)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "hello world");
    for hop in ["x-hop", "keep-alive", "set-cookie", "connection"] {
        assert!(
            answer.headers.get(hop).is_none(),
            "{hop} reached the client"
        );
    }
    assert!(answer.headers.get("x-request-id").is_some());
    // Both connections are kept: the next request goes over the same two.
    let answer = ask(&mut client, "GET", "/next", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/next");
    assert_eq!(s.deploy.connections(), 1);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn an_answer_without_length_ends_with_its_connection() {
    let s = setup().await;
    let mut client = connect(s.gw.addr).await;
    let answer = ask(&mut client, "GET", "/until-close", Some(&s.token)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "body until close");
    assert_eq!(answer.headers["connection"], "close");
    // The gateway closed the client connection; a new one works, on a new upstream one.
    let mut client = connect(s.gw.addr).await;
    let answer = ask(&mut client, "GET", "/after", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/after");
    assert_eq!(s.deploy.connections(), 2);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let s = setup().await;
    let mut client = connect(s.gw.addr).await;
    let answer = ask(&mut client, "GET", "/interim", Some(&s.token)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "final");
    let answer = ask(&mut client, "GET", "/next", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/next");
    assert_eq!(s.deploy.connections(), 1);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn doubtful_framing_is_never_reused() {
    let s = setup().await;
    let mut client = connect(s.gw.addr).await;
    // Transfer-Encoding wins over Content-Length; such a connection is not reused.
    let answer = ask(&mut client, "GET", "/both-lengths", Some(&s.token)).await;
    assert_eq!(answer.body, "abc");
    assert!(answer.headers.get("content-length").is_none());
    // Bytes past the end of an answer are not passed on, nor read as the next answer.
    let answer = ask(&mut client, "GET", "/extra-bytes", Some(&s.token)).await;
    assert_eq!(answer.body, "ok");
    let answer = ask(&mut client, "GET", "/next", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/next");
    assert_eq!(s.deploy.connections(), 3);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn an_answer_in_another_coding_is_read_until_close_not_by_its_length() {
    let s = setup().await;
    // Transfer-Encoding without chunked last: the body lasts until Deploy closes
    // (RFC 9112 §6.3), whatever Content-Length says, and the client's connection ends
    // with it.
    let answer = raw_exchange(
        s.gw.addr,
        format!(
            "GET /gzip-and-length HTTP/1.1\r\nhost: d\r\nx-deploy-personal-token: {}\r\n\r\n",
            s.token
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nokSMUGGLED"), "{answer}");
    assert!(
        !answer.to_ascii_lowercase().contains("content-length"),
        "{answer}"
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn broken_answers_become_502() {
    let s = setup().await;
    let mut client = connect(s.gw.addr).await;
    for path in ["/bad-chunks", "/switch"] {
        let answer = ask(&mut client, "GET", path, Some(&s.token)).await;
        assert_eq!(answer.status, StatusCode::BAD_GATEWAY, "{path}");
        assert_eq!(answer.error_code(), "upstream_unreachable");
        let message = answer.json()["message"].to_string();
        assert!(message.contains("upstream.url"), "{message}");
    }
    let answer = ask(&mut client, "GET", "/next", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/next");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn bodiless_answers_keep_the_connection_in_step() {
    let s = setup().await;
    let mut client = connect(s.gw.addr).await;
    let answer = ask(&mut client, "HEAD", "/file", Some(&s.token)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-length"], "4");
    assert!(answer.body.is_empty());
    let answer = ask(&mut client, "DELETE", "/no-content", Some(&s.token)).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let answer = ask(&mut client, "GET", "/next", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/next");
    assert_eq!(s.deploy.connections(), 1);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let s = setup().await;
    let mut stream = TcpStream::connect(s.gw.addr).await.unwrap();
    let mut requests = String::new();
    for path in ["/one", "/two", "/three"] {
        requests.push_str(&format!(
            "GET {path} HTTP/1.1\r\nhost: d\r\nx-deploy-personal-token: {}\r\n\r\n",
            s.token
        ));
    }
    requests.push_str(
        "GET /last HTTP/1.1\r\nhost: d\r\nconnection: close\r\nx-deploy-personal-token: ",
    );
    requests.push_str(&s.token);
    requests.push_str("\r\n\r\n");
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut answers = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answers))
        .await
        .expect("the gateway closes after the last answer")
        .unwrap();
    let bodies: Vec<&str> = answers
        .match_indices("path=")
        .map(|(i, _)| answers[i..].split(['\r', 'H']).next().unwrap())
        .collect();
    assert_eq!(
        bodies,
        ["path=/one", "path=/two", "path=/three", "path=/last"],
        "{answers}"
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_connection_moves_to_the_general_path_and_keeps_working() {
    let s = setup().await;
    let mut client = connect(s.gw.addr).await;
    let answer = ask(&mut client, "GET", "/first", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/first");
    // The gateway's own route, then an anonymous request: the general path's.
    let answer = ask(&mut client, "GET", "/patgate/healthz", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = ask(&mut client, "GET", "/anonymous", None).await;
    assert_eq!(answer.body, "path=/anonymous");
    assert!(!s.deploy.last_head().contains("x-deploy-user"));
    // Token requests still work on the same connection, with the same rules.
    let answer = ask(&mut client, "GET", "/later", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/later");
    assert!(s.deploy.last_head().contains("x-deploy-user: alice"));
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_refused_request_leaves_the_connection_usable() {
    let s = setup().await;
    let mut client = connect(s.gw.addr).await;
    let last = if s.token.ends_with('A') { "B" } else { "A" };
    let wrong = format!("{}{last}", &s.token[..s.token.len() - 1]);
    let answer = ask(&mut client, "GET", "/x", Some(&wrong)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.error_code(), "malformed_token");
    let answer = ask(&mut client, "GET", "/x", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/x");

    // A refused upload's body is not read as the next request.
    let answers = raw_exchange(
        s.gw.addr,
        format!(
            "POST /upload HTTP/1.1\r\nhost: d\r\ncontent-length: 22\r\nx-deploy-personal-token: {wrong}\r\n\r\nGET /body HTTP/1.1\r\n\r\n\
             GET /after HTTP/1.1\r\nhost: d\r\nconnection: close\r\nx-deploy-personal-token: {}\r\n\r\n",
            s.token
        )
        .as_bytes(),
    )
    .await;
    assert!(answers.starts_with("HTTP/1.1 401"), "{answers}");
    assert!(answers.contains("path=/after"), "{answers}");
    assert!(!answers.contains("path=/body"), "{answers}");
    assert_eq!(s.deploy.connections(), 1);
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_second_content_length_cannot_smuggle_a_request() {
    let s = setup().await;
    let smuggled = "GET /smuggled HTTP/1.1\r\nx-deploy-user: admin\r\nx-ignore: ";
    let answers = raw_exchange(
        s.gw.addr,
        format!(
            "POST /a HTTP/1.1\r\nhost: d\r\ncontent-length: 0\r\ncontent-length: {}\r\nx-deploy-personal-token: {}\r\n\r\n{smuggled}",
            smuggled.len(),
            s.token
        )
        .as_bytes(),
    )
    .await;
    assert!(answers.starts_with("HTTP/1.1 400"), "{answers}");
    // Whatever else happens, Deploy never reads the body as a request of its own.
    let mut client = connect(s.gw.addr).await;
    let answer = ask(&mut client, "GET", "/victim", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/victim");
    let heads = s.deploy.heads.lock().unwrap().clone();
    assert!(heads.iter().all(|h| !h.contains("/smuggled")), "{heads:?}");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn after_a_502_the_next_pipelined_request_is_whole() {
    let s = setup().await;
    let answers = raw_exchange(
        s.gw.addr,
        format!(
            "POST /die HTTP/1.1\r\nhost: d\r\ncontent-length: 10\r\nx-deploy-personal-token: {0}\r\n\r\n0123456789\
             GET /after HTTP/1.1\r\nhost: d\r\nconnection: close\r\nx-deploy-personal-token: {0}\r\n\r\n",
            s.token
        )
        .as_bytes(),
    )
    .await;
    assert!(answers.starts_with("HTTP/1.1 502"), "{answers}");
    assert!(answers.contains("path=/after"), "{answers}");
    s.gw.shutdown().await;
}

#[tokio::test]
async fn chunked_trailers_are_not_passed_on() {
    let s = setup().await;
    let answers = raw_exchange(
        s.gw.addr,
        format!(
            "GET /chunked HTTP/1.1\r\nhost: d\r\nconnection: close\r\nx-deploy-personal-token: {}\r\n\r\n",
            s.token
        )
        .as_bytes(),
    )
    .await;
    assert!(
        answers.ends_with("5;note=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        "{answers:?}"
    );
    assert!(
        !answers.to_ascii_lowercase().contains("set-cookie"),
        "{answers}"
    );
    s.gw.shutdown().await;
}

#[tokio::test]
async fn a_request_body_reaches_deploy_exactly() {
    let s = setup().await;
    let mut stream = TcpStream::connect(s.gw.addr).await.unwrap();
    // The head and the start of the body in one packet, the rest later, then another
    // request right behind it.
    let head = format!(
        "PUT /body HTTP/1.1\r\nhost: d\r\ncontent-length: 10\r\nx-deploy-personal-token: {}\r\n\r\n01234",
        s.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let next = format!(
        "56789GET /after HTTP/1.1\r\nhost: d\r\nconnection: close\r\nx-deploy-personal-token: {}\r\n\r\n",
        s.token
    );
    stream.write_all(next.as_bytes()).await.unwrap();
    let mut answers = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answers))
        .await
        .unwrap()
        .unwrap();
    assert!(answers.contains("path=/body"), "{answers}");
    assert!(answers.contains("path=/after"), "{answers}");
    let heads = s.deploy.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads[0].starts_with("PUT /body HTTP/1.1\r\n"));
    assert!(heads[0].ends_with("\r\n\r\n0123456789"), "{:?}", heads[0]);
    assert!(heads[1].starts_with("GET /after HTTP/1.1\r\n"));
    s.gw.shutdown().await;
}

#[tokio::test]
async fn stopping_finishes_the_request_under_way_and_says_so() {
    let s = setup().await;
    let mut stream = TcpStream::connect(s.gw.addr).await.unwrap();
    let requests = format!(
        "GET /slow HTTP/1.1\r\nhost: d\r\nx-deploy-personal-token: {0}\r\n\r\n\
         GET /next HTTP/1.1\r\nhost: d\r\nx-deploy-personal-token: {0}\r\n\r\n",
        s.token
    );
    stream.write_all(requests.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(s.gw.shutdown());
    let mut answers = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answers))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    assert!(answers.starts_with("HTTP/1.1 200"), "{answers}");
    assert!(answers.contains("path=/slow"), "{answers}");
    assert!(answers.contains("connection: close"), "{answers}");
    assert!(!answers.contains("path=/next"), "{answers}");
    stopping.await.unwrap();
}

#[tokio::test]
async fn an_http_1_0_client_never_gets_a_chunked_answer_it_cannot_read() {
    let s = setup().await;
    let request = format!(
        "GET /chunked HTTP/1.0\r\nHost: deploy.example\r\nx-deploy-personal-token: {}\r\n\r\n",
        s.token
    );
    let mut stream = TcpStream::connect(s.gw.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("an HTTP/1.0 answer ends with its connection")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1."), "{head}");
    assert!(head.contains(" 200 "), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "HTTP/1.0 has no chunked encoding: {head}"
    );
    assert_eq!(body, "hello world");
}

async fn fast_path_count(gw: &Gateway) -> u64 {
    let answer = get(&gw.url("/patgate/metrics"), &[]).await;
    metric(
        &String::from_utf8_lossy(&answer.body),
        "patgate_fast_path_total",
    )
}

#[tokio::test]
async fn a_chunked_token_upload_reaches_deploy_whole_and_what_follows_stays_a_request() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let deploy = Upstream::start().await;
    let gw = Gateway::start(config(&db, &deploy.url(), &[("PATGATE_WORKERS", "1")])).await;
    let (_, token) = gw.create_token("alice", "wire", Expiration::Days7).await;
    // Twenty bytes in three chunks (one with an extension), then a second request that
    // a reader ignoring the chunked framing would take the chunks for.
    let answers = raw_exchange(
        gw.addr,
        format!(
            "PUT /upload HTTP/1.1\r\nhost: d\r\ntransfer-encoding: chunked\r\nx-deploy-personal-token: {token}\r\n\r\n\
             5;part=1\r\nhello\r\n7\r\n world,\r\n8\r\n chunked\r\n0\r\n\r\n\
             GET /after HTTP/1.1\r\nhost: d\r\nconnection: close\r\nx-deploy-personal-token: {token}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(answers.starts_with("HTTP/1.1 200"), "{answers}");
    let seen = deploy.seen();
    let paths: Vec<_> = seen
        .iter()
        .map(|s| (s.method.as_str(), s.path.as_str()))
        .collect();
    assert_eq!(paths, [("PUT", "/upload"), ("GET", "/after")], "{answers}");
    assert_eq!(seen[0].body_len, 20, "Deploy received the whole body, once");
    // The upload took the general path, and its connection stayed there.
    assert_eq!(fast_path_count(&gw).await, 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn token_requests_with_one_plausible_host_take_the_fast_path_and_others_are_handed_over() {
    let s = setup().await;
    let before = fast_path_count(&s.gw).await;
    let mut client = connect(s.gw.addr).await;
    let answer = ask(&mut client, "GET", "/plain", Some(&s.token)).await;
    assert_eq!(answer.body, "path=/plain");
    assert_eq!(fast_path_count(&s.gw).await, before + 1);
    // Two Hosts: the general path's to refuse; the fast path does not count it.
    let answers = raw_exchange(
        s.gw.addr,
        format!(
            "GET /two-hosts HTTP/1.1\r\nhost: d\r\nhost: e\r\nconnection: close\r\nx-deploy-personal-token: {}\r\n\r\n",
            s.token
        )
        .as_bytes(),
    )
    .await;
    assert!(answers.starts_with("HTTP/1.1 400"), "{answers}");
    assert_eq!(fast_path_count(&s.gw).await, before + 1);
    assert!(s
        .deploy
        .heads
        .lock()
        .unwrap()
        .iter()
        .all(|h| !h.contains("/two-hosts")));
    s.gw.shutdown().await;
}

#[tokio::test]
async fn token_requests_take_the_fast_path_with_the_connection_options_and_bodies_it_reads() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let deploy = Upstream::start().await;
    let gw = Gateway::start(config(&db, &deploy.url(), &[("PATGATE_WORKERS", "1")])).await;
    let (_, token) = gw.create_token("alice", "wire", Expiration::Days7).await;
    let request = |method: &str, path: &str, connection: &str, body: usize| {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: d\r\nconnection: {connection}\r\nx-deploy-personal-token: {token}\r\ncontent-length: {body}\r\n\r\n{}",
            "b".repeat(body)
        )
    };
    // Each case: what the client sends, how many requests the fast path forwards, and
    // the bodies Deploy receives (every request reaches Deploy, whichever path).
    let cases: [(String, u64, &[u64]); 4] = [
        // Keep-alive and close are the fast path's to honour.
        (
            request("GET", "/kept", "keep-alive", 0) + &request("GET", "/then", "close", 0),
            2,
            &[0, 0],
        ),
        // A header named in Connection is the general path's to remove.
        (request("GET", "/named", "x-trace, close", 0), 0, &[0]),
        // A body up to 64 KiB is read whole by the fast path; a larger one is streamed
        // by the general path.
        (
            request("PUT", "/upload", "close", 64 * 1024),
            1,
            &[64 * 1024],
        ),
        (
            request("PUT", "/upload", "close", 64 * 1024 + 1),
            0,
            &[64 * 1024 + 1],
        ),
    ];
    for (sent, fast, bodies) in cases {
        let before = fast_path_count(&gw).await;
        let already = deploy.seen().len();
        let answers = raw_exchange(gw.addr, sent.as_bytes()).await;
        assert_eq!(
            answers.matches("HTTP/1.1 200").count(),
            bodies.len(),
            "{answers}"
        );
        let received: Vec<u64> = deploy.seen()[already..]
            .iter()
            .map(|s| s.body_len)
            .collect();
        assert_eq!(received, bodies, "{answers}");
        assert_eq!(fast_path_count(&gw).await - before, fast, "{answers}");
    }
    gw.shutdown().await;
}
