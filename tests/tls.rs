//! TLS on both sides: clients reach the gateway over https, and the gateway reaches an
//! https Deploy that it trusts through `upstream.ca_file`.

mod common;

use common::tls::{acceptor, connector, self_signed};
use common::*;
use patgate::core::token::Expiration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn https_clients_and_an_https_deploy() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (up_cert, up_key) = self_signed(db.dir.path(), "deploy");
    let upstream = Upstream::start_with(Some(acceptor(&up_cert, &up_key))).await;
    let (gw_cert, gw_key) = self_signed(db.dir.path(), "gateway");
    let gw = Gateway::start(config(
        &db,
        &upstream.url().replace("127.0.0.1", "localhost"),
        &[
            ("PATGATE_TLS__CERT_FILE", gw_cert.to_str().unwrap()),
            ("PATGATE_TLS__KEY_FILE", gw_key.to_str().unwrap()),
            ("PATGATE_UPSTREAM__CA_FILE", up_cert.to_str().unwrap()),
        ],
    ))
    .await;
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days7).await;

    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let server_name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector(&gw_cert)
        .connect(server_name, tcp)
        .await
        .expect("TLS handshake with the gateway");
    let request = format!(
        "GET /api/v1/deployit HTTP/1.1\r\nHost: localhost\r\nx-deploy-personal-token: {token}\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("deploy"), "{response}");
    let seen = upstream.last();
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    assert_eq!(seen.headers["x-forwarded-proto"], "https");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_untrusted_https_deploy_is_refused_with_502() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (up_cert, up_key) = self_signed(db.dir.path(), "deploy");
    let upstream = Upstream::start_with(Some(acceptor(&up_cert, &up_key))).await;
    // No ca_file: the self-signed certificate is not trusted.
    let gw = Gateway::start(config(
        &db,
        &upstream.url().replace("127.0.0.1", "localhost"),
        &[],
    ))
    .await;
    let answer = get(&gw.url("/x"), &[]).await;
    assert_eq!(answer.status, 502);
    assert_eq!(upstream.count(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_malformed_head_toward_an_https_deploy_gets_json_too() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (up_cert, up_key) = self_signed(db.dir.path(), "deploy");
    let upstream = Upstream::start_with(Some(acceptor(&up_cert, &up_key))).await;
    let gw = Gateway::start(config(
        &db,
        &upstream.url().replace("127.0.0.1", "localhost"),
        &[("PATGATE_UPSTREAM__CA_FILE", up_cert.to_str().unwrap())],
    ))
    .await;
    let (_, token) = gw.create_token("alice", "crlf", Expiration::Days7).await;
    // The fast path does not read these connections: the HTTP library would answer an
    // empty 400 of its own.
    let crlf = format!(
        "GET /api/v1/deployit HTTP/1.1\r\nhost: localhost\r\nx-deploy-personal-token: {token}\r\r\n\r\n"
    );
    let (status, answer) = raw_status(gw.addr, crlf.as_bytes()).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("x-request-id: "), "{answer}");
    assert!(answer.contains("\"malformed_request\""), "{answer}");
    assert!(answer.contains("trailing newline"), "{answer}");

    // A good request on such a connection is served as before.
    let good = get(
        &gw.url("/api/v1/deployit"),
        &[("x-deploy-personal-token", &token)],
    )
    .await;
    assert_eq!(good.status, 200);
    assert_eq!(upstream.count(), 1, "only the good request reached Deploy");
    gw.shutdown().await;
}
