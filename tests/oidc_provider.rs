//! The test OpenID provider behaves as the gateway's sign-in relies on: code flow with PKCE,
//! the user's name, email and groups in the ID token, codes bound to their verifier and
//! good once, unknown users refused, and a second provider with a different issuer.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::oidc::{self, Account, Provider, ProviderOptions};
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "patgate";
const CLIENT_SECRET: &str = "client secret with spaces & symbols";
const REDIRECT: &str = "http://127.0.0.1:9/oidc/callback";

fn options() -> ProviderOptions {
    ProviderOptions {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec![REDIRECT.into()],
        accounts: vec![
            Account::new(
                "u-1",
                "alice",
                "alice@example.test",
                &["deployers", "admins"],
            ),
            Account::new("u-2", "bob", "bob@example.test", &[]),
        ],
        ..ProviderOptions::default()
    }
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = format!("verifier-{}-{}", common::random_suffix(), "x".repeat(40));
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn authorize_url(
    discovery: &serde_json::Value,
    state: &str,
    nonce: &str,
    challenge: &str,
) -> String {
    format!(
        "{}?{}",
        discovery["authorization_endpoint"].as_str().unwrap(),
        oidc::form_encode(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile email groups"),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ])
    )
}

/// Logs `user` in; returns (code, verifier).
async fn code_for(discovery: &serde_json::Value, user: &str, nonce: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let state = format!("state-{}", common::random_suffix());
    let result = oidc::login(&authorize_url(discovery, &state, nonce, &challenge), user).await;
    assert!(
        result.callback_url.starts_with(REDIRECT),
        "{}",
        result.callback_url
    );
    assert_eq!(result.state().as_deref(), Some(state.as_str()));
    (result.code().expect("a code in the callback"), verifier)
}

async fn exchange(discovery: &serde_json::Value, code: &str, verifier: &str) -> common::Answer {
    // client_secret_basic: id and secret form-encoded, then base64 (RFC 6749 2.3.1).
    let basic = common::basic(
        &oidc::percent_encode(CLIENT_ID),
        &oidc::percent_encode(CLIENT_SECRET),
    );
    oidc::post_form(
        discovery["token_endpoint"].as_str().unwrap(),
        &[("authorization", &basic)],
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

fn id_token_claims(answer: &common::Answer) -> serde_json::Value {
    let id_token = answer.json()["id_token"].as_str().unwrap().to_string();
    let payload = id_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn code_flow_gives_an_id_token_with_the_users_claims() {
    let provider = Provider::start(options()).await;
    let discovery = provider.discovery().await;
    assert_eq!(discovery["issuer"], provider.issuer.as_str());
    assert!(provider.issuer.starts_with("http://127.0.0.1:"));

    let nonce = format!("nonce-{}", common::random_suffix());
    let (code, verifier) = code_for(&discovery, "alice", &nonce).await;
    let answer = exchange(&discovery, &code, &verifier).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let claims = id_token_claims(&answer);
    assert_eq!(claims["iss"], provider.issuer.as_str());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "u-1");
    assert_eq!(claims["nonce"], nonce.as_str());
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["groups"], serde_json::json!(["deployers", "admins"]));

    // A code is good once.
    let again = exchange(&discovery, &code, &verifier).await;
    assert_eq!(again.status, 400, "{:?}", again.body);
    assert_eq!(again.error_code(), "invalid_grant");

    // A code needs the verifier of its challenge.
    let (code, _) = code_for(&discovery, "bob", "n").await;
    let (other_verifier, _) = pkce();
    let wrong = exchange(&discovery, &code, &other_verifier).await;
    assert_eq!(wrong.status, 400, "{:?}", wrong.body);
    assert_eq!(wrong.error_code(), "invalid_grant");
}

#[tokio::test]
async fn unknown_users_are_refused_and_a_second_issuer_is_distinct() {
    let (first, second) = tokio::join!(
        Provider::start(options()),
        Provider::start(ProviderOptions {
            issuer_path: Some("/realms/other".into()),
            ..options()
        })
    );
    assert!(
        second.issuer.ends_with("/realms/other"),
        "{}",
        second.issuer
    );
    assert_ne!(first.issuer, second.issuer);

    let discovery = first.discovery().await;
    let (_, challenge) = pkce();
    let refused = oidc::try_login(&authorize_url(&discovery, "s", "n", &challenge), "mallory")
        .await
        .expect_err("an unknown user cannot log in");
    assert!(refused.contains("401"), "{refused}");

    // The second provider is a whole provider under its path, and its tokens name it.
    let discovery = second.discovery().await;
    assert_eq!(discovery["issuer"], second.issuer.as_str());
    let endpoint = discovery["token_endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with(&second.issuer), "{endpoint}");
    let (code, verifier) = code_for(&discovery, "alice", "n2").await;
    let answer = exchange(&discovery, &code, &verifier).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(id_token_claims(&answer)["iss"], second.issuer.as_str());
}
