//! SSO sign-in through a real OpenID provider (oidc-provider on Node, see tests/oidc):
//! an SSO user signs in, creates a token and uses it through the proxy; the
//! administrator's switch for SSO users' tokens; and a tampered state, a replayed code,
//! a provider's error and a wrong issuer are refused with readable pages.

#[macro_use]
mod common;

use common::api::{call, Session};
use common::oidc::{self, Account, Provider, ProviderOptions};
use common::*;
use serde_json::json;

const CLIENT_ID: &str = "patgate";
const CLIENT_SECRET: &str = "client-secret-for-tests";

on_both_backends!(
    an_sso_user_signs_in_makes_a_token_and_the_switch_governs_it,
    tampered_state_replayed_code_and_provider_errors_are_refused,
);

/// A free loopback port for the gateway, so that its callback can be registered with
/// the provider before either starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Sso {
    provider: Provider,
    upstream: Upstream,
    gw: Gateway,
}

async fn start(db: &TestDb, issuer_override: Option<&str>) -> Sso {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/patgate/sso/callback");
    let provider = Provider::start(ProviderOptions {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec![callback],
        accounts: vec![
            Account::new("u-sam", "sam", "sam@example.com", &["deployers"]),
            Account::new("u-nia", "nia", "nia@example.com", &["deployers"]),
            Account::new("u-ada", "ada", "ada@example.com", &["patgate-admins"]),
        ],
        ..ProviderOptions::default()
    })
    .await;
    let upstream = Upstream::start().await;
    let issuer = issuer_override.map_or(provider.issuer.clone(), str::to_string);
    let listen = format!("127.0.0.1:{port}");
    let gw = Gateway::start(config(
        db,
        &upstream.url(),
        &[
            ("PATGATE_LISTEN", &listen),
            ("PATGATE_SSO__ISSUER", &issuer),
            ("PATGATE_SSO__CLIENT_ID", CLIENT_ID),
            ("PATGATE_SSO__CLIENT_SECRET", CLIENT_SECRET),
            ("PATGATE_SSO__SCOPES", "openid,profile,email,groups"),
            ("PATGATE_SSO__ADMIN_ROLES", "patgate-admins"),
        ],
    ))
    .await;
    Sso {
        provider,
        upstream,
        gw,
    }
}

/// `GET /patgate/sso/login` → the provider's login → the callback URL it sends back.
async fn login_at_provider(gw: &Gateway, user: &str) -> String {
    let start = get(&gw.url("/patgate/sso/login"), &[]).await;
    assert_eq!(start.status, 303, "{:?}", start.body);
    let location = start.headers["location"].to_str().unwrap().to_string();
    assert!(
        location.contains("code_challenge_method=S256"),
        "{location}"
    );
    oidc::login(&location, user).await.callback_url
}

async fn sign_in(gw: &Gateway, user: &str) -> Session {
    let callback = login_at_provider(gw, user).await;
    let answer = get(&callback, &[]).await;
    assert_eq!(
        answer.status,
        303,
        "callback: {:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.headers["location"], "/patgate/");
    Session::from_answer(&gw.url(""), &answer).with_csrf().await
}

async fn an_sso_user_signs_in_makes_a_token_and_the_switch_governs_it(db: TestDb) {
    let sso = start(&db, None).await;
    let gw = &sso.gw;
    let options = get(&gw.url("/patgate/api/v1/session"), &[]).await.json();
    assert_eq!(options["sso"], true, "the sign-in page offers SSO");
    assert_eq!(options["sso_login_url"], "/patgate/sso/login");
    let sam = sign_in(gw, "sam").await;
    let me = sam.send("GET", "/patgate/api/v1/me", None).await.json();
    assert_eq!(me["username"], "sam");
    assert_eq!(me["source"], "sso");
    assert_eq!(me["email"], "sam@example.com");
    assert_eq!(me["admin"], false);
    assert_eq!(me["token_creation_allowed"], true);

    let made = sam
        .send(
            "POST",
            "/patgate/api/v1/tokens",
            Some(&json!({"name": "laptop", "expiration": "30d"})),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let token = made.json()["token"].as_str().unwrap().to_string();
    let proxied = get(
        &gw.url("/deployit/repository/ci/x"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    assert_eq!(proxied.status, 200);
    assert_eq!(sso.upstream.last().headers["x-deploy-user"], "sam");

    // ada is an administrator through her group; she switches SSO users' tokens off.
    let ada = sign_in(gw, "ada").await;
    let settings = ada.send("GET", "/patgate/api/v1/settings", None).await;
    assert_eq!(settings.status, 200, "{:?}", settings.body);
    let mut body = settings.json();
    body["sso_pat_creation_enabled"] = json!(false);
    let put = ada
        .send("PUT", "/patgate/api/v1/settings", Some(&body))
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);

    let refused = sam
        .send(
            "POST",
            "/patgate/api/v1/tokens",
            Some(&json!({"name": "another", "expiration": "7d"})),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.error_code(), "sso_creation_disabled");
    let me = sam.send("GET", "/patgate/api/v1/me", None).await.json();
    assert_eq!(me["token_creation_allowed"], false);
    assert_eq!(
        me["token_list_visible"], true,
        "a user with tokens still sees them"
    );
    assert!(me["token_creation_message"]
        .as_str()
        .unwrap()
        .contains("disabled"));
    let listed = sam.send("GET", "/patgate/api/v1/tokens", None).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let stopped = within(std::time::Duration::from_secs(1), || async {
        get(&gw.url("/x"), &[("authorization", &basic("", &token))])
            .await
            .error_code()
            == "sso_tokens_disabled"
    })
    .await;
    assert!(
        stopped.is_some(),
        "the SSO user's token still worked after the switch"
    );

    // nia has no tokens: only the informational message.
    let nia = sign_in(gw, "nia").await;
    let me = nia.send("GET", "/patgate/api/v1/me", None).await.json();
    assert_eq!(me["token_list_visible"], false);
    assert_eq!(me["token_creation_allowed"], false);
    assert!(me["token_creation_message"].as_str().is_some());

    body["sso_pat_creation_enabled"] = json!(true);
    let put = ada
        .send("PUT", "/patgate/api/v1/settings", Some(&body))
        .await;
    assert_eq!(put.status, 200);
    let back = within(std::time::Duration::from_secs(1), || async {
        get(&gw.url("/x"), &[("authorization", &basic("", &token))])
            .await
            .status
            == 200
    })
    .await;
    assert!(
        back.is_some(),
        "the token did not work again once the switch was back on"
    );
    drop(sso.provider);
}

async fn tampered_state_replayed_code_and_provider_errors_are_refused(db: TestDb) {
    let sso = start(&db, None).await;
    let gw = &sso.gw;

    // A tampered state: the code is never exchanged.
    let callback = login_at_provider(gw, "sam").await;
    let state = oidc::query_param(&callback, "state").unwrap();
    let tampered = callback.replace(
        &format!("state={}", oidc::percent_encode(&state)),
        "state=forged",
    );
    assert_ne!(tampered, callback);
    let answer = get(&tampered, &[]).await;
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("state does not match"));
    assert!(common::api::session_cookie(&answer).is_none());

    // The genuine callback works once; replaying it (same state) is refused.
    let first = get(&callback, &[]).await;
    assert_eq!(first.status, 303);
    let replay = get(&callback, &[]).await;
    assert_eq!(
        replay.status,
        400,
        "{:?}",
        String::from_utf8_lossy(&replay.body)
    );
    assert!(common::api::session_cookie(&replay).is_none());

    // A used code with a fresh, valid state: the provider refuses it.
    let fresh = login_at_provider(gw, "sam").await;
    let code = oidc::query_param(&callback, "code").unwrap();
    let fresh_code = oidc::query_param(&fresh, "code").unwrap();
    let reused = fresh.replace(
        &oidc::percent_encode(&fresh_code),
        &oidc::percent_encode(&code),
    );
    let answer = get(&reused, &[]).await;
    assert_eq!(
        answer.status,
        401,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(String::from_utf8_lossy(&answer.body).contains("did not accept the sign-in code"));

    // An error from the provider is a readable page, with its text escaped.
    let error = get(
        &gw.url("/patgate/sso/callback?error=access_denied&error_description=%3Cscript%3Ex%3C%2Fscript%3E"),
        &[],
    )
    .await;
    assert_eq!(error.status, 401);
    assert!(error.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = String::from_utf8_lossy(&error.body);
    assert!(
        page.contains("access_denied") && page.contains("&lt;script&gt;"),
        "{page}"
    );
    assert!(!page.contains("<script>"));

    // The audit log has the failures, without codes or secrets.
    let audit = common::api::as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit?action=signin.failed"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(audit.status, 200, "{:?}", audit.body);
    assert!(audit.json()["total"].as_i64().unwrap() >= 3);
    assert!(!audit.json().to_string().contains(CLIENT_SECRET));
    let _ = call("GET", &gw.url("/patgate/healthz"), &[], None).await;
}

#[tokio::test]
async fn a_provider_with_another_issuer_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    // The same provider reached under another name: its discovery document names
    // 127.0.0.1, the gateway expects localhost.
    let port_probe = Provider::start(ProviderOptions {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec!["http://127.0.0.1:9/patgate/sso/callback".into()],
        accounts: vec![Account::new("u-sam", "sam", "sam@example.com", &[])],
        ..ProviderOptions::default()
    })
    .await;
    let wrong = port_probe.issuer.replace("127.0.0.1", "localhost");
    let sso = start(&db, Some(&wrong)).await;
    // `start` made its own provider; point the gateway at the probe under a wrong name.
    drop(sso.provider);
    let answer = get(&sso.gw.url("/patgate/sso/login"), &[]).await;
    assert_eq!(
        answer.status,
        502,
        "{:?}",
        String::from_utf8_lossy(&answer.body)
    );
    let page = String::from_utf8_lossy(&answer.body);
    assert!(page.contains("unexpected issuer"), "{page}");
    drop(port_probe);
}
