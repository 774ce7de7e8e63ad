//! SSO users' tokens follow the identity provider (a real one: oidc-provider on Node,
//! tests/oidc), on SQLite and PostgreSQL. The gateway keeps the refresh token of each
//! SSO sign-in and asks the provider again every `sso.revalidate_every` (2 s here):
//! a change of groups at the provider reaches the JWT Deploy receives within one period
//! and a second; a revoked grant suspends the user's tokens within the same bound until
//! they sign in through SSO again; a provider that is down suspends nobody.

#[macro_use]
mod common;

use std::time::Duration;

use common::api::as_user;
use common::oidc::{sign_in, Account, Provider, ProviderOptions};
use common::*;
use serde_json::{json, Value};

on_both_backends!(
    roles_and_status_follow_the_provider_within_one_period,
    a_provider_that_is_down_suspends_nobody,
);

const CLIENT_ID: &str = "patgate";
const CLIENT_SECRET: &str = "client-secret-for-tests";
/// `sso.revalidate_every` in these tests.
const PERIOD: Duration = Duration::from_secs(2);
/// The bound the settings promise (one period and a second), and half a second for a
/// two-core machine that runs other tests at the same time.
const BOUND: Duration = Duration::from_millis(3_500);

struct Sso {
    /// `None` once the test has stopped it.
    provider: Option<Provider>,
    upstream: Upstream,
    gw: Gateway,
}

async fn start(db: &TestDb) -> Sso {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/patgate/sso/callback");
    let provider = Provider::start(ProviderOptions {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uris: vec![callback.clone()],
        accounts: vec![Account::new(
            "u-sam",
            "sam",
            "sam@example.com",
            &["deployers"],
        )],
        ..ProviderOptions::default()
    })
    .await;
    let upstream = Upstream::start().await;
    let listen = format!("127.0.0.1:{port}");
    let key_file = db.dir.path().join("jwt.key");
    let gw = Gateway::start(config(
        db,
        &upstream.url(),
        &[
            ("PATGATE_LISTEN", listen.as_str()),
            ("PATGATE_SSO__ISSUER", provider.issuer.as_str()),
            ("PATGATE_SSO__CLIENT_ID", CLIENT_ID),
            ("PATGATE_SSO__CLIENT_SECRET", CLIENT_SECRET),
            ("PATGATE_SSO__SCOPES", "openid,profile,email,groups"),
            ("PATGATE_SSO__REDIRECT_URL", callback.as_str()),
            ("PATGATE_SSO__REVALIDATE_EVERY", "2s"),
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
    Sso {
        provider: Some(provider),
        upstream,
        gw,
    }
}

impl Sso {
    fn provider(&self) -> &Provider {
        self.provider.as_ref().expect("the provider runs")
    }
}

/// The claims of the JWT in the last request Deploy received.
fn last_jwt_claims(upstream: &Upstream) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let seen = upstream.last();
    let bearer = seen.headers["authorization"].to_str().unwrap().to_string();
    let jwt = bearer.strip_prefix("Bearer ").expect("a bearer JWT");
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap()
}

/// A token request; its status and, when it reached Deploy, the JWT's groups.
async fn use_token(sso: &Sso, token: &str) -> (u16, Option<Value>) {
    let answer = get(
        &sso.gw.url("/deployit/repository/ci/x"),
        &[("authorization", &basic("", token))],
    )
    .await;
    let status = answer.status.as_u16();
    if status != 200 {
        return (status, Some(json!(answer.error_code())));
    }
    (
        status,
        Some(last_jwt_claims(&sso.upstream)["groups"].clone()),
    )
}

async fn admin_get(gw: &Gateway, path: &str) -> Value {
    let answer = as_user("GET", &gw.url(path), "admin", "admin-pw", None).await;
    assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    answer.json()
}

/// sam signs in through SSO and makes a token.
async fn signed_in_with_token(db: &TestDb) -> (Sso, common::api::Session, String) {
    let sso = start(db).await;
    let sam = sign_in(&sso.gw, "sam").await;
    let made = sam
        .send(
            "POST",
            "/patgate/api/v1/tokens",
            Some(&json!({"name": "laptop", "expiration": "30d"})),
        )
        .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let token = made.json()["token"].as_str().unwrap().to_string();
    (sso, sam, token)
}

async fn roles_and_status_follow_the_provider_within_one_period(db: TestDb) {
    let (sso, sam, token) = signed_in_with_token(&db).await;
    assert_eq!(
        use_token(&sso, &token).await,
        (200, Some(json!(["deployers"])))
    );

    // The settings say how fresh roles are.
    let settings = admin_get(&sso.gw, "/patgate/api/v1/settings").await;
    let freshness = &settings["sso_roles_freshness"];
    assert_eq!(freshness["mode"], "revalidation", "{freshness}");
    assert_eq!(freshness["revalidate_every"], "2s");
    assert_eq!(freshness["bound_seconds"], 3);
    assert!(
        freshness["summary"]
            .as_str()
            .unwrap()
            .starts_with("re-validated every 2 s"),
        "{freshness}"
    );

    // The provider moves sam into another group: the JWT Deploy gets says so.
    sso.provider()
        .set_groups("u-sam", &["deployers", "release-managers"])
        .await;
    let moved = within(BOUND, || async {
        use_token(&sso, &token).await == (200, Some(json!(["deployers", "release-managers"])))
    })
    .await;
    assert!(
        moved.is_some(),
        "the new group did not reach the JWT within a period and a second: {:?}",
        use_token(&sso, &token).await
    );
    let users = admin_get(&sso.gw, "/patgate/api/v1/users/sam").await;
    assert_eq!(
        users["sso"]["roles"],
        json!(["deployers", "release-managers"])
    );
    assert_eq!(users["sso"]["roles_source"], "revalidation");
    assert_eq!(users["sso"]["revalidation"], "ok");
    assert!(users["sso"]["revalidated_at"].is_string(), "{users}");
    let audit = admin_get(
        &sso.gw,
        "/patgate/api/v1/audit?action=user.roles_changed&user=sam",
    )
    .await;
    let entries = audit["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["detail"]["source"] == "revalidation"
                && e["detail"]["to"] == json!(["deployers", "release-managers"])),
        "{audit}"
    );
    assert!(
        entries.iter().any(|e| e["detail"]["source"] == "signin"),
        "the first sign-in's roles are audited too: {audit}"
    );

    // The provider revokes sam's grant: the token is suspended, with its own code, on
    // both request paths; sam's session ends; nothing is deleted.
    sso.provider().revoke("u-sam").await;
    let suspended = within(BOUND, || async {
        use_token(&sso, &token).await == (401, Some(json!("sso_suspended")))
    })
    .await;
    assert!(
        suspended.is_some(),
        "a revoked user's token still worked after a period and a second: {:?}",
        use_token(&sso, &token).await
    );
    let general = raw_status(
        sso.gw.addr,
        format!("GET /x HTTP/1.0\r\nx-deploy-personal-token: {token}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(general.0, 401, "the general path refuses it too");
    let me = sam.send("GET", "/patgate/api/v1/me", None).await;
    assert_eq!(me.status, 401, "the suspended user's session ended");
    let user = admin_get(&sso.gw, "/patgate/api/v1/users/sam").await;
    assert_eq!(user["tokens"], 1, "nothing is deleted: {user}");
    assert_eq!(user["sso"]["revalidation"], "refused");
    assert!(user["sso"]["suspended_at"].is_string());
    let settings = admin_get(&sso.gw, "/patgate/api/v1/settings").await;
    assert_eq!(settings["sso_roles_freshness"]["suspended"], 1);
    let audit = admin_get(
        &sso.gw,
        "/patgate/api/v1/audit?action=user.suspended&user=sam",
    )
    .await;
    assert_eq!(
        audit["entries"][0]["detail"]["source"], "revalidation",
        "{audit}"
    );
    let metrics = get(&sso.gw.url("/patgate/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains("patgate_token_refusals_total{reason=\"sso_suspended\"}"),
        "{text}"
    );

    // A fresh SSO sign-in lifts the suspension.
    let _again = sign_in(&sso.gw, "sam").await;
    let back = within(Duration::from_secs(1), || async {
        use_token(&sso, &token).await.0 == 200
    })
    .await;
    assert!(
        back.is_some(),
        "the token did not work again after a new SSO sign-in"
    );
    let audit = admin_get(
        &sso.gw,
        "/patgate/api/v1/audit?action=user.reinstated&user=sam",
    )
    .await;
    assert_eq!(audit["entries"][0]["detail"]["source"], "signin", "{audit}");
}

async fn a_provider_that_is_down_suspends_nobody(db: TestDb) {
    let (sso, _sam, token) = signed_in_with_token(&db).await;
    assert_eq!(use_token(&sso, &token).await.0, 200);
    let mut sso = sso;
    drop(sso.provider.take());
    // Two periods and more: each re-validation finds the provider unreachable.
    let counted = within(PERIOD * 3, || async {
        let text = String::from_utf8_lossy(&get(&sso.gw.url("/patgate/metrics"), &[]).await.body)
            .to_string();
        !text.contains("patgate_sso_revalidations_total{result=\"unreachable\"} 0")
    })
    .await;
    assert!(
        counted.is_some(),
        "no unreachable re-validation was counted"
    );
    tokio::time::sleep(PERIOD).await;
    assert_eq!(
        use_token(&sso, &token).await,
        (200, Some(json!(["deployers"]))),
        "an unreachable provider suspended a user"
    );
    let user = admin_get(&sso.gw, "/patgate/api/v1/users/sam").await;
    assert_eq!(user["sso"]["revalidation"], "unreachable", "{user}");
    assert!(user["sso"]["suspended_at"].is_null());
    let settings = admin_get(&sso.gw, "/patgate/api/v1/settings").await;
    let freshness = &settings["sso_roles_freshness"];
    assert_eq!(freshness["suspended"], 0);
    assert_eq!(freshness["unreachable"], 1, "{freshness}");
    assert!(
        freshness["summary"]
            .as_str()
            .unwrap()
            .contains("1 not reached at the last attempt"),
        "{freshness}"
    );
}
