//! The JWT-validating Deploy stand-in really validates: tokens signed here with ring (RS256
//! and EdDSA against a key set this test serves, HS256 with a shared secret) are accepted
//! with the right user and roles (also on Deploy's role and permission lists, in XML and
//! in JSON), and a token signed by another key, for another audience
//! or issuer, expired, unsigned (`alg: none`), of an algorithm not allowed, or without the
//! user-name claim is refused with jose's error code. A key published after the stand-in
//! started is fetched as soon as a token names it.

mod common;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use common::deploy_jwt::{JwtDeploy, JwtDeployOptions};
use common::Answer;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use tokio::net::TcpListener;

const ISSUER: &str = "https://patgate.example.test";
const AUDIENCE: &str = "deploy";

// ---------------------------------------------------------------- keys and signing

/// A signing key with the `kid` its tokens carry.
enum Signer {
    Rsa(Arc<RsaKeyPair>, String),
    Ed(Arc<Ed25519KeyPair>, String),
    Hmac(ring::hmac::Key),
}

impl Signer {
    fn alg(&self) -> &'static str {
        match self {
            Signer::Rsa(..) => "RS256",
            Signer::Ed(..) => "EdDSA",
            Signer::Hmac(_) => "HS256",
        }
    }

    fn kid(&self) -> Option<&str> {
        match self {
            Signer::Rsa(_, kid) | Signer::Ed(_, kid) => Some(kid),
            Signer::Hmac(_) => None,
        }
    }

    /// The public key as a JWK, for the key set.
    fn jwk(&self) -> Value {
        match self {
            Signer::Rsa(key, kid) => {
                let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
                json!({
                    "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                    "n": URL_SAFE_NO_PAD.encode(&public.n),
                    "e": URL_SAFE_NO_PAD.encode(&public.e),
                })
            }
            Signer::Ed(key, kid) => json!({
                "kty": "OKP", "crv": "Ed25519", "kid": kid, "use": "sig", "alg": "EdDSA",
                "x": URL_SAFE_NO_PAD.encode(key.public_key().as_ref()),
            }),
            Signer::Hmac(_) => panic!("a shared secret is not published"),
        }
    }

    /// A compact JWS of `claims` with this key's `alg` and `kid`.
    fn sign(&self, claims: &Value) -> String {
        let mut header = json!({"alg": self.alg(), "typ": "JWT"});
        if let Some(kid) = self.kid() {
            header["kid"] = json!(kid);
        }
        let input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let signature = match self {
            Signer::Rsa(key, _) => {
                let mut sig = vec![0u8; key.public().modulus_len()];
                key.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            Signer::Ed(key, _) => key.sign(input.as_bytes()).as_ref().to_vec(),
            Signer::Hmac(key) => ring::hmac::sign(key, input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// An unsigned token: `alg: none` and an empty signature.
fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64_json(&json!({"alg": "none", "typ": "JWT"})),
        b64_json(claims)
    )
}

/// A fresh 2048-bit RSA private key in DER, made by openssl (ring cannot generate RSA keys).
/// OpenSSL 3.0 writes PKCS#1 here, other versions PKCS#8; ring reads either.
fn openssl_rsa_der() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.der");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .args(["-outform", "DER", "-out"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl genpkey failed");
    std::fs::read(&path).unwrap()
}

/// Two RSA keys, made once for the whole test binary.
fn rsa_keys() -> &'static [Arc<RsaKeyPair>; 2] {
    static KEYS: OnceLock<[Arc<RsaKeyPair>; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || {
            let der = openssl_rsa_der();
            let key = RsaKeyPair::from_pkcs8(&der).or_else(|_| RsaKeyPair::from_der(&der));
            Arc::new(key.expect("openssl made an RSA key ring can read"))
        };
        [make(), make()]
    })
}

fn rsa(index: usize, kid: &str) -> Signer {
    Signer::Rsa(rsa_keys()[index].clone(), kid.into())
}

fn ed25519(kid: &str) -> Signer {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    Signer::Ed(
        Arc::new(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()),
        kid.into(),
    )
}

fn hs256(secret: &str) -> Signer {
    Signer::Hmac(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        secret.as_bytes(),
    ))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims the stand-ins below accept, for `user` with `groups`, good for five minutes.
fn claims(user: &str, groups: &[&str]) -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": format!("sub-{user}"),
        "preferred_username": user,
        "groups": groups,
        "iat": now(),
        "exp": now() + 300,
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

// ---------------------------------------------------------------- the key set

/// A JWKS endpoint on loopback whose key set can be changed, counting its fetches.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Jwks {
    async fn serve(keys: Vec<Value>) -> Jwks {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let keys = Arc::new(Mutex::new(keys));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (set, count) = (keys.clone(), fetches.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (set, count) = (set.clone(), count.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req| {
                        count.fetch_add(1, Ordering::SeqCst);
                        let body = json!({"keys": *set.lock().unwrap()}).to_string();
                        async move {
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Jwks { url, keys, fetches }
    }

    fn publish(&self, jwk: Value) {
        self.keys.lock().unwrap().push(jwk);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn options(algorithms: &[&str]) -> JwtDeployOptions {
    JwtDeployOptions {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        algorithms: algorithms.iter().map(|a| a.to_string()).collect(),
        admin_role: Some("admins".into()),
        role_permissions: Some(json!({
            "deployers": {"": ["login"], "Applications/App1": ["read", "deploy#initial"]},
            "admins": {"": ["admin", "login"]},
        })),
        ..JwtDeployOptions::default()
    }
}

// ---------------------------------------------------------------- checks

#[track_caller]
fn assert_accepted(answer: &Answer, user: &str, roles: &[&str]) {
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let body = answer.json();
    assert_eq!(body["user"], user, "{body}");
    assert_eq!(body["roles"], json!(roles), "{body}");
}

#[track_caller]
fn assert_refused(answer: &Answer, code: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.error_code(), code, "{}", answer.json());
}

fn body_text(answer: &Answer) -> String {
    String::from_utf8_lossy(&answer.body).into_owned()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn rs256_and_eddsa_tokens_are_checked_against_the_key_set() {
    let (rsa_key, other_rsa, ed_key, other_ed) = (
        rsa(0, "rsa-1"),
        rsa(1, "rsa-1"),
        ed25519("ed-1"),
        ed25519("ed-1"),
    );
    let jwks = Jwks::serve(vec![rsa_key.jwk(), ed_key.jwk()]).await;
    let rs_only = JwtDeployOptions {
        jwks_url: Some(jwks.url.clone()),
        ..options(&["RS256"])
    };
    let ed_only = JwtDeployOptions {
        jwks_url: Some(jwks.url.clone()),
        ..options(&["EdDSA"])
    };
    let (deploy, ed_deploy) = tokio::join!(JwtDeploy::start(rs_only), JwtDeploy::start(ed_only));

    // Valid tokens, with the Deploy endpoints the gateway calls.
    let alice = rsa_key.sign(&claims("alice", &["deployers", "admins"]));
    let answer = deploy.get("/deployit/repository/ci/x", Some(&alice)).await;
    assert_accepted(&answer, "alice", &["deployers", "admins"]);
    assert_eq!(answer.json()["path"], "/deployit/repository/ci/x");
    assert_eq!(answer.json()["method"], "GET");
    assert_eq!(answer.json()["claims"]["sub"], "sub-alice");
    let admin = deploy
        .get("/deployit/security/check/admin", Some(&alice))
        .await;
    assert_eq!(admin.status, 200);
    assert_eq!(admin.headers["content-type"], "application/xml");
    assert_eq!(body_text(&admin), "<boolean>true</boolean>");
    let bob = rsa_key.sign(&claims("bob", &["deployers"]));
    let admin = deploy
        .get("/deployit/security/check/admin", Some(&bob))
        .await;
    assert_eq!(body_text(&admin), "<boolean>false</boolean>");
    let info = deploy.get("/deployit/server/info", Some(&bob)).await;
    assert_eq!(info.status, 200);
    assert!(body_text(&info).starts_with("<server-info>"), "{info:?}");
    // The roles and permissions of the token's user: XML by default, JSON when asked.
    let json = [("accept", "application/json")];
    let roles = deploy
        .get("/deployit/security/role/roles", Some(&alice))
        .await;
    assert_eq!(roles.headers["content-type"], "application/xml");
    assert_eq!(
        body_text(&roles),
        "<list><string>deployers</string><string>admins</string></list>"
    );
    let roles = deploy
        .get_with("/deployit/security/role/roles", Some(&bob), &json)
        .await;
    assert_eq!(roles.json(), json!(["deployers"]));
    let granted = deploy
        .get("/deployit/security/granted-permissions", Some(&bob))
        .await;
    assert_eq!(
        body_text(&granted),
        "<map><entry key=\"\"><list><string>login</string></list></entry><entry key=\"Applications/App1\"><list><string>read</string><string>deploy#initial</string></list></entry></map>"
    );
    let granted = deploy
        .get_with(
            "/deployit/security/granted-permissions",
            Some(&alice),
            &json,
        )
        .await;
    assert_eq!(
        granted.json(),
        json!({"": ["login", "admin"], "Applications/App1": ["read", "deploy#initial"]})
    );
    let refused = deploy.get("/deployit/security/role/roles", None).await;
    assert_refused(&refused, "ERR_MISSING_BEARER");
    let carol = ed_key.sign(&claims("carol", &[]));
    assert_accepted(&ed_deploy.get("/", Some(&carol)).await, "carol", &[]);
    // Expired 2 s ago: within the 5 s clock tolerance.
    let late = rsa_key.sign(&with(claims("alice", &[]), "exp", json!(now() - 2)));
    assert_accepted(&deploy.get("/", Some(&late)).await, "alice", &[]);

    // Refused.
    let cases = [
        (
            "another key under the same kid",
            other_rsa.sign(&claims("alice", &[])),
            "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
        ),
        (
            "another audience",
            rsa_key.sign(&with(claims("alice", &[]), "aud", json!("other"))),
            "ERR_JWT_CLAIM_VALIDATION_FAILED aud",
        ),
        (
            "another issuer",
            rsa_key.sign(&with(claims("alice", &[]), "iss", json!("https://evil"))),
            "ERR_JWT_CLAIM_VALIDATION_FAILED iss",
        ),
        (
            "expired a minute ago",
            rsa_key.sign(&with(claims("alice", &[]), "exp", json!(now() - 60))),
            "ERR_JWT_EXPIRED",
        ),
        (
            "alg none",
            unsigned(&claims("alice", &["admins"])),
            "ERR_JOSE_ALG_NOT_ALLOWED",
        ),
        (
            "EdDSA, a key of the set but not an allowed algorithm",
            ed_key.sign(&claims("alice", &[])),
            "ERR_JOSE_ALG_NOT_ALLOWED",
        ),
        (
            "HS256 signed with the RSA modulus as the secret",
            hs256(rsa_key.jwk()["n"].as_str().unwrap()).sign(&claims("alice", &[])),
            "ERR_JOSE_ALG_NOT_ALLOWED",
        ),
        (
            "no user-name claim",
            rsa_key.sign(&{
                let mut c = claims("alice", &[]);
                c.as_object_mut().unwrap().remove("preferred_username");
                c
            }),
            "ERR_JWT_CLAIM_VALIDATION_FAILED preferred_username",
        ),
        (
            "no exp",
            rsa_key.sign(&{
                let mut c = claims("alice", &[]);
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            "ERR_JWT_CLAIM_VALIDATION_FAILED exp",
        ),
        (
            "an unknown kid",
            rsa(0, "rsa-unknown").sign(&claims("alice", &[])),
            "ERR_JWKS_NO_MATCHING_KEY",
        ),
    ];
    for (what, token, expected) in &cases {
        let answer = deploy.get("/", Some(token)).await;
        assert_eq!(answer.status, 401, "{what}: {}", body_text(&answer));
        // "CODE" or "CODE claim": the claim jose names as the one that failed.
        let (code, claim) = expected.split_once(' ').unwrap_or((expected, ""));
        assert_eq!(answer.error_code(), code, "{what}: {}", answer.json());
        if !claim.is_empty() {
            assert_eq!(answer.json()["claim"], claim, "{what}: {}", answer.json());
        }
    }
    assert_refused(&deploy.get("/", None).await, "ERR_MISSING_BEARER");
    let other_ed_answer = ed_deploy
        .get("/", Some(&other_ed.sign(&claims("carol", &[]))))
        .await;
    assert_refused(&other_ed_answer, "ERR_JWS_SIGNATURE_VERIFICATION_FAILED");
    let rs_at_ed = ed_deploy.get("/", Some(&alice)).await;
    assert_refused(&rs_at_ed, "ERR_JOSE_ALG_NOT_ALLOWED");

    let stats = deploy.stats().await;
    assert_eq!(stats["accepted"], 9, "{stats}");
    assert_eq!(stats["refused"], cases.len() + 2, "{stats}");
    assert!(
        stats["last_refusal"]
            .as_str()
            .unwrap()
            .starts_with("ERR_MISSING_BEARER"),
        "{stats}"
    );
    deploy.reset_stats().await;
    let stats = deploy.stats().await;
    assert_eq!(
        (stats["accepted"].clone(), stats["refused"].clone()),
        (json!(0), json!(0))
    );
}

#[tokio::test]
async fn hs256_tokens_are_checked_with_the_secret_and_the_configured_claims() {
    let secret = "a shared secret of thirty-two bytes or more!";
    let deploy = JwtDeploy::start(JwtDeployOptions {
        hs256_secret: Some(secret.into()),
        username_claim: Some("sub".into()),
        roles_claim: Some("roles".into()),
        ..options(&["HS256"])
    })
    .await;
    let key = hs256(secret);
    let token = key.sign(&with(claims("dave", &[]), "roles", json!("admins")));
    // The user comes from `sub` here, and one role may come as a plain string.
    assert_accepted(
        &deploy.get("/", Some(&token)).await,
        "sub-dave",
        &["admins"],
    );
    let admin = deploy
        .get("/deployit/security/check/admin", Some(&token))
        .await;
    assert_eq!(body_text(&admin), "<boolean>true</boolean>");

    let wrong_secret = hs256("another secret, also long enough!!").sign(&claims("dave", &[]));
    assert_refused(
        &deploy.get("/", Some(&wrong_secret)).await,
        "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
    );
    let wrong_audience = key.sign(&with(claims("dave", &[]), "aud", json!(["other"])));
    assert_refused(
        &deploy.get("/", Some(&wrong_audience)).await,
        "ERR_JWT_CLAIM_VALIDATION_FAILED",
    );
    let rs256 = rsa(0, "rsa-1").sign(&claims("dave", &[]));
    assert_refused(
        &deploy.get("/", Some(&rs256)).await,
        "ERR_JOSE_ALG_NOT_ALLOWED",
    );
    let none = unsigned(&claims("dave", &[]));
    assert_refused(
        &deploy.get("/", Some(&none)).await,
        "ERR_JOSE_ALG_NOT_ALLOWED",
    );
    let no_sub = key.sign(&{
        let mut c = claims("dave", &[]);
        c.as_object_mut().unwrap().remove("sub");
        c
    });
    assert_refused(
        &deploy.get("/", Some(&no_sub)).await,
        "ERR_JWT_CLAIM_VALIDATION_FAILED",
    );
    let stats = deploy.stats().await;
    assert_eq!(
        (stats["accepted"].clone(), stats["refused"].clone()),
        (json!(2), json!(5))
    );
}

#[tokio::test]
async fn a_key_published_later_is_fetched_when_a_token_names_it() {
    let (first, second) = (ed25519("2026-01"), ed25519("2026-02"));
    let jwks = Jwks::serve(vec![first.jwk()]).await;
    let deploy = JwtDeploy::start(JwtDeployOptions {
        jwks_url: Some(jwks.url.clone()),
        ..options(&["EdDSA"])
    })
    .await;
    assert_accepted(
        &deploy
            .get("/", Some(&first.sign(&claims("erin", &[]))))
            .await,
        "erin",
        &[],
    );
    let fetched = jwks.fetches();
    assert_eq!(fetched, 1);
    // Cached: a known kid does not fetch again.
    assert_accepted(
        &deploy
            .get("/", Some(&first.sign(&claims("erin", &[]))))
            .await,
        "erin",
        &[],
    );
    assert_eq!(jwks.fetches(), 1);

    let rotated = second.sign(&claims("erin", &["deployers"]));
    assert_refused(
        &deploy.get("/", Some(&rotated)).await,
        "ERR_JWKS_NO_MATCHING_KEY",
    );
    jwks.publish(second.jwk());
    // Straight away: no cool-down between fetches for an unknown kid.
    assert_accepted(
        &deploy.get("/", Some(&rotated)).await,
        "erin",
        &["deployers"],
    );
    assert_eq!(jwks.fetches(), 3, "one fetch per token with an unknown kid");
}
