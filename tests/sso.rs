//! SSO sign-in through a real OpenID provider (oidc-provider on Node, see tests/oidc):
//! an SSO user signs in, creates a token and uses it through the proxy; the
//! administrator's switch for SSO users' tokens; a tampered state, a replayed code,
//! a provider's error and a wrong issuer are refused with readable pages; a callback
//! link only works in the browser that started the sign-in; an SSO identity never
//! becomes an internal user or another SSO user of the same name unless linked; and
//! floods of failures or starts cost the database a row, not a row each.

#[macro_use]
mod common;

use common::api::{call, Session};
use common::oidc::{
    self, back, binding_cookie, login_at_provider, sign_in, Account, Provider, ProviderOptions,
};
use common::*;
use patgate::cli;
use serde_json::json;

const CLIENT_ID: &str = "patgate";
const CLIENT_SECRET: &str = "client-secret-for-tests";

on_both_backends!(
    an_sso_user_signs_in_makes_a_token_and_the_switch_governs_it,
    tampered_state_replayed_code_and_provider_errors_are_refused,
    a_callback_link_opened_in_another_browser_signs_nobody_in,
    an_sso_identity_becomes_an_internal_user_only_once_an_administrator_links_them,
    a_flood_of_provider_errors_and_starts_costs_one_audit_row,
);

struct Sso {
    provider: Provider,
    upstream: Upstream,
    gw: Gateway,
}

async fn start(db: &TestDb, issuer_override: Option<&str>) -> Sso {
    start_with(db, issuer_override, &[]).await
}

async fn start_with(db: &TestDb, issuer_override: Option<&str>, extra: &[(&str, &str)]) -> Sso {
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
            // People who chose a name that is taken: the internal administrator's, and
            // an SSO user's.
            Account::new("u-mallory", "admin", "m@example.com", &[]).logging_in_as("mallory"),
            Account::new("u-sam-2", "sam", "sam2@example.com", &[]).logging_in_as("sam-2"),
        ],
        ..ProviderOptions::default()
    })
    .await;
    let upstream = Upstream::start().await;
    let issuer = issuer_override.map_or(provider.issuer.clone(), str::to_string);
    let listen = format!("127.0.0.1:{port}");
    let redirect = format!("http://127.0.0.1:{port}/patgate/sso/callback");
    let mut settings = vec![
        ("PATGATE_LISTEN", listen.as_str()),
        ("PATGATE_SSO__ISSUER", issuer.as_str()),
        ("PATGATE_SSO__CLIENT_ID", CLIENT_ID),
        ("PATGATE_SSO__CLIENT_SECRET", CLIENT_SECRET),
        ("PATGATE_SSO__SCOPES", "openid,profile,email,groups"),
        ("PATGATE_SSO__ADMIN_ROLES", "patgate-admins"),
        ("PATGATE_SSO__REDIRECT_URL", redirect.as_str()),
    ];
    settings.extend_from_slice(extra);
    let gw = Gateway::start(config(db, &upstream.url(), &settings)).await;
    Sso {
        provider,
        upstream,
        gw,
    }
}

/// A callback that must be refused: its page, which sets no session.
async fn refused(answer: Answer, status: u16) -> String {
    let page = String::from_utf8_lossy(&answer.body).to_string();
    assert_eq!(answer.status, status, "{page}");
    assert!(common::api::session_cookie(&answer).is_none(), "{page}");
    page
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
    let state = oidc::query_param(&callback.url, "state").unwrap();
    let tampered = callback.url.replace(
        &format!("state={}", oidc::percent_encode(&state)),
        "state=forged",
    );
    assert_ne!(tampered, callback.url);
    let answer = get(&tampered, &[("cookie", &callback.cookie)]).await;
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("state does not match"));
    assert!(common::api::session_cookie(&answer).is_none());

    // The genuine callback works once; replaying it (same state) is refused.
    let first = back(&callback).await;
    assert_eq!(first.status, 303);
    let replay = back(&callback).await;
    assert_eq!(
        replay.status,
        400,
        "{:?}",
        String::from_utf8_lossy(&replay.body)
    );
    assert!(common::api::session_cookie(&replay).is_none());

    // A used code with a fresh, valid state: the provider refuses it.
    let fresh = login_at_provider(gw, "sam").await;
    let code = oidc::query_param(&callback.url, "code").unwrap();
    let fresh_code = oidc::query_param(&fresh.url, "code").unwrap();
    let reused = fresh.url.replace(
        &oidc::percent_encode(&fresh_code),
        &oidc::percent_encode(&code),
    );
    let answer = get(&reused, &[("cookie", &fresh.cookie)]).await;
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
    // The page carries the pages' own protections.
    assert!(error.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    assert_eq!(error.headers["x-frame-options"], "DENY");
    assert_eq!(error.headers["x-content-type-options"], "nosniff");

    // The audit log has the failures (counted at the next round), without codes or
    // secrets.
    patgate::app::housekeeping::round(&gw.api().unwrap()).await;
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

async fn a_callback_link_opened_in_another_browser_signs_nobody_in(db: TestDb) {
    let sso = start(&db, None).await;
    let gw = &sso.gw;
    // The binding cookie: short-lived, for the SSO routes only, out of scripts' reach.
    let start = get(&gw.url("/patgate/sso/login"), &[]).await;
    let set = start.headers["set-cookie"].to_str().unwrap().to_string();
    for attribute in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/patgate/sso/",
        "Max-Age=600",
    ] {
        assert!(set.contains(attribute), "{attribute} missing: {set}");
    }

    // An attacker signs in at the provider as themselves and stops before the callback;
    // the victim, signed in as nia, opens the link: without the attacker's cookie, and
    // with one from a sign-in of their own.
    let nia = sign_in(gw, "nia").await;
    let own_start = login_at_provider(gw, "nia").await;
    for cookie in [
        format!("patgate_session={}", nia.cookie),
        format!("patgate_session={}; {}", nia.cookie, own_start.cookie),
    ] {
        let attackers = login_at_provider(gw, "sam").await;
        let answer = get(&attackers.url, &[("cookie", &cookie)]).await;
        let page = refused(answer, 400).await;
        assert!(page.contains("not started in this browser"), "{page}");
        // The attacker's sign-in is spent.
        refused(back(&attackers).await, 400).await;
    }
    let me = nia.send("GET", "/patgate/api/v1/me", None).await.json();
    assert_eq!(me["username"], "nia");
    // The sign-in of the browser that started it goes through, and clears the cookie.
    let done = back(&own_start).await;
    assert_eq!(
        done.status,
        303,
        "{:?}",
        String::from_utf8_lossy(&done.body)
    );
    assert!(done
        .headers
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("patgate_sso=;")));
}

async fn an_sso_identity_becomes_an_internal_user_only_once_an_administrator_links_them(
    db: TestDb,
) {
    let sso = start(&db, None).await;
    let gw = &sso.gw;
    // The internal administrator exists (signed in with Deploy's password).
    let admin = Session::password(&gw.url(""), "admin", "admin-pw")
        .await
        .with_csrf()
        .await;
    // Mallory chose "admin" as her username at the provider.
    let mallory = login_at_provider(gw, "mallory").await;
    let page = refused(back(&mallory).await, 403).await;
    assert!(
        page.contains("internal user") && page.contains("u-mallory"),
        "{page}"
    );
    let user = admin
        .send("GET", "/patgate/api/v1/users/admin", None)
        .await
        .json();
    assert_eq!(
        user["source"], "internal",
        "the user's source is never rewritten"
    );
    assert_eq!(
        admin
            .send("GET", "/patgate/api/v1/users/admin/tokens", None)
            .await
            .json(),
        json!([])
    );

    // A second person claiming an SSO user's name is refused too.
    let sam = sign_in(gw, "sam").await;
    let sams_token = sam
        .send(
            "POST",
            "/patgate/api/v1/tokens",
            Some(&json!({"name": "laptop", "expiration": "7d"})),
        )
        .await;
    assert_eq!(sams_token.status, 201);
    let other = login_at_provider(gw, "sam-2").await;
    let page = refused(back(&other).await, 403).await;
    assert!(page.contains("another SSO identity"), "{page}");
    assert_eq!(
        sam.send("GET", "/patgate/api/v1/me", None).await.json()["email"],
        "sam@example.com",
        "the imposter's claims changed nothing"
    );

    // An administrator links the internal user to that subject: the sign-in becomes
    // the internal user, who stays internal.
    let linked = admin
        .send(
            "PUT",
            "/patgate/api/v1/users/admin/sso-link",
            Some(&json!({"subject": "u-mallory"})),
        )
        .await;
    assert_eq!(linked.status, 200, "{:?}", linked.body);
    assert_eq!(linked.json()["subject"], "u-mallory");
    let again = admin
        .send(
            "PUT",
            "/patgate/api/v1/users/nia/sso-link",
            Some(&json!({"subject": "u-mallory"})),
        )
        .await;
    assert!(
        again.status == 404 || again.status == 409,
        "{:?}",
        again.body
    );
    let as_admin = sign_in(gw, "mallory").await;
    let me = as_admin
        .send("GET", "/patgate/api/v1/me", None)
        .await
        .json();
    assert_eq!(me["username"], "admin");
    assert_eq!(me["source"], "internal");

    // The command line unlinks: the next such sign-in is refused again.
    cli::run_admin(
        &gw.config,
        cli::Admin::User(cli::UserCommand::UnlinkSso {
            username: "ADMIN".into(),
        }),
    )
    .await
    .unwrap();
    refused(back(&login_at_provider(gw, "mallory").await).await, 403).await;
    cli::run_admin(
        &gw.config,
        cli::Admin::User(cli::UserCommand::LinkSso {
            username: "admin".into(),
            subject: "u-mallory".into(),
        }),
    )
    .await
    .unwrap();
    sign_in(gw, "mallory").await;
    let audit = admin
        .send("GET", "/patgate/api/v1/audit?action=user.sso_linked", None)
        .await
        .json();
    assert_eq!(audit["total"], 2, "{audit}");
}

async fn a_flood_of_provider_errors_and_starts_costs_one_audit_row(db: TestDb) {
    let sso = start_with(&db, None, &[("PATGATE_SSO__STARTS_PER_MINUTE", "5")]).await;
    let gw = &sso.gw;
    let api = gw.api().unwrap();
    let text = format!("{}signin.succeeded for admin", "A".repeat(60_000));
    let url = gw.url(&format!(
        "/patgate/sso/callback?error=x&error_description={}",
        oidc::percent_encode(&text)
    ));
    for _ in 0..300 {
        let answer = get(&url, &[]).await;
        assert_eq!(answer.status, 401);
        assert!(answer.body.len() < 2_000, "the page repeats the whole text");
    }
    patgate::app::housekeeping::round(&api).await;
    let audit = common::api::as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit?action=signin.failed"),
        "admin",
        "admin-pw",
        None,
    )
    .await
    .json();
    assert_eq!(audit["total"], 1, "{audit}");
    let entry = &audit["entries"][0];
    assert_eq!(entry["detail"]["count"], 300);
    assert_eq!(entry["detail"]["reason"], "provider_refused");
    assert!(!audit.to_string().contains("AAAA"), "{audit}");

    // Starting sign-ins is limited per address; each start is a row that expires.
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/patgate/sso/login"), &[]).await.status, 303);
    }
    let limited = get(&gw.url("/patgate/sso/login"), &[]).await;
    assert_eq!(limited.status, 429);
    assert!(binding_cookie(&limited).is_none());
}
