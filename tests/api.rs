//! The self-service and admin API end to end, on SQLite and PostgreSQL: password
//! sign-in checked by the Deploy stand-in, sessions and CSRF, tokens created, listed and
//! deleted, the seed's policies, the audit log, bad input, and the OpenAPI description.

#[macro_use]
mod common;

use std::time::Duration;

use common::api::{as_user, call, Security, Session, Wording};
use common::*;
use patgate::core::token::Expiration;
use serde_json::{json, Value};

on_both_backends!(
    password_sign_in_is_checked_by_deploy,
    deploys_admin_check_counts_in_xml_or_json,
    a_token_made_through_the_api_works_through_the_proxy_until_deleted,
    expiration_choices_last_exactly_their_length,
    maximum_expiration_limits_every_choice,
    the_command_line_follows_the_same_rules,
    sso_switch_stops_sso_tokens_at_the_proxy_and_back,
    bad_input_gets_clear_errors_and_changes_nothing,
    sessions_need_csrf_and_end_everywhere_on_sign_out,
    admins_manage_users_and_read_the_audit_log,
    every_documented_route_answers_as_described,
    a_deletion_through_one_replica_is_refused_by_another_within_a_second,
    tokens_typed_into_the_sign_in_never_reach_deploy_and_unknown_names_are_not_audited,
    administrator_rights_end_soon_after_deploy_withdraws_them,
    a_name_in_another_case_or_form_is_the_same_user,
    password_callers_are_governed_by_their_stored_source,
    names_that_clashed_before_the_upgrade_stay_reachable_by_their_exact_name,
    what_the_document_forbids_is_refused_and_what_it_allows_is_taken,
);

const ME: &str = "/patgate/api/v1/me";
const TOKENS: &str = "/patgate/api/v1/tokens";
const SETTINGS: &str = "/patgate/api/v1/settings";

async fn start(db: &TestDb, extra: &[(&str, &str)]) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(db, &upstream.url(), extra)).await;
    (upstream, gw)
}

async fn create(gw: &Gateway, user: &str, password: &str, name: &str, expiration: &str) -> Answer {
    as_user(
        "POST",
        &gw.url(TOKENS),
        user,
        password,
        Some(&json!({"name": name, "expiration": expiration})),
    )
    .await
}

async fn password_sign_in_is_checked_by_deploy(db: TestDb) {
    let (_upstream, gw) = start(
        &db,
        &[
            ("PATGATE_SIGNIN__FAILURE_BURST", "3"),
            ("PATGATE_SIGNIN__FAILURES_PER_MINUTE", "1"),
        ],
    )
    .await;
    // Before signing in, a browser asks how it may: a password, and no SSO without
    // an OpenID provider configured.
    let options = get(&gw.url("/patgate/api/v1/session"), &[]).await;
    assert_eq!(options.status, 200, "{:?}", options.body);
    assert_eq!(
        options.json(),
        json!({"password": true, "sso": false, "sso_login_url": null})
    );
    let me = as_user("GET", &gw.url(ME), "alice", "alice-pw", None).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.json()["username"], "alice");
    assert_eq!(me.json()["admin"], false);
    let admin = as_user("GET", &gw.url(ME), "admin", "admin-pw", None).await;
    assert_eq!(admin.json()["admin"], true);

    let wrong = as_user("GET", &gw.url(ME), "bob", "not-bobs", None).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error_code(), "invalid_credentials");
    assert!(!String::from_utf8_lossy(&wrong.body).contains("not-bobs"));
    // Three failures for bob are allowed; the fourth is limited, even with the right
    // password, until the bucket refills.
    for _ in 0..2 {
        let again = as_user("GET", &gw.url(ME), "bob", "not-bobs", None).await;
        assert_eq!(again.status, 401);
    }
    let limited = as_user("GET", &gw.url(ME), "bob", "bob-pw", None).await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert_eq!(limited.error_code(), "too_many_sign_in_failures");
    assert!(limited.headers.contains_key("retry-after"));

    // Deploy down: a clear 503, never "wrong password".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = Gateway::start(config(&db, &dead, &[])).await;
    let answer = as_user("GET", &down.url(ME), "alice", "alice-pw", None).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.error_code(), "deploy_unavailable");
    assert!(answer.json()["message"].to_string().contains(&dead));

    // Something answers at the upstream address, but not as Deploy would: said so, with
    // the status and the path asked, not "unreachable".
    let (code, wrong) = answering_404().await;
    let odd = Gateway::start(config(&db, &wrong, &[])).await;
    let answer = as_user("GET", &odd.url(ME), "alice", "alice-pw", None).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.error_code(), "deploy_unexpected_answer");
    let message = answer.json()["message"].to_string();
    assert!(
        message.contains("status 404 at /deployit/server/info"),
        "{message}"
    );
    assert!(!message.contains("alice-pw"));
    code.abort();
}

/// A server that answers every request with 404, as a web server in Deploy's place would.
async fn answering_404() -> (tokio::task::JoinHandle<()>, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (task, url)
}

async fn deploys_admin_check_counts_in_xml_or_json(db: TestDb) {
    // Every sign-in asks Deploy again.
    let (upstream, gw) = start(&db, &[("PATGATE_SIGNIN__CACHE_TTL", "0s")]).await;
    for wording in [Wording::Xml, Wording::XmlIndented, Wording::Json] {
        upstream.set_security(Security {
            wording,
            ..Security::default()
        });
        let admin = as_user("GET", &gw.url(ME), "admin", "admin-pw", None).await;
        assert_eq!(admin.status, 200, "{wording:?}: {:?}", admin.body);
        assert_eq!(admin.json()["admin"], true, "{wording:?}");
        let asked = upstream.last();
        assert_eq!(asked.path, "/deployit/security/check/admin");
        assert_eq!(asked.headers["accept"], "application/xml", "{wording:?}");
        // Signed in as an administrator: the admin API answers.
        let users = as_user(
            "GET",
            &gw.url("/patgate/api/v1/users"),
            "admin",
            "admin-pw",
            None,
        )
        .await;
        assert_eq!(users.status, 200, "{wording:?}: {:?}", users.body);

        let alice = as_user("GET", &gw.url(ME), "alice", "alice-pw", None).await;
        assert_eq!(alice.json()["admin"], false, "{wording:?}");
        let users = as_user(
            "GET",
            &gw.url("/patgate/api/v1/users"),
            "alice",
            "alice-pw",
            None,
        )
        .await;
        assert_eq!(users.status, 403, "{wording:?}: {:?}", users.body);
    }
}

async fn a_token_made_through_the_api_works_through_the_proxy_until_deleted(db: TestDb) {
    let (upstream, gw) = start(&db, &[]).await;
    let made = create(&gw, "alice", "alice-pw", "ci pipeline", "30d").await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let made = made.json();
    let token = made["token"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("dpat_"));
    assert_eq!(made["expires_in"]["label"], "30 days");

    let proxied = get(
        &gw.url("/api/v1/deployit"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    assert_eq!(proxied.status, 200);
    assert_eq!(upstream.last().headers["x-deploy-user"], "alice");

    // The listing never shows the value; the seed's own route answers the same list.
    for listing in [
        as_user("GET", &gw.url(TOKENS), "alice", "alice-pw", None).await,
        get(
            &gw.url("/deployit/tokens/users"),
            &[("x-deploy-personal-token", &token)],
        )
        .await,
    ] {
        assert_eq!(listing.status, 200, "{:?}", listing.body);
        assert!(!String::from_utf8_lossy(&listing.body).contains(&token));
        let rows = listing.json();
        assert_eq!(rows.as_array().unwrap().len(), 1);
        assert_eq!(rows[0]["name"], "ci pipeline");
        assert_eq!(rows[0]["expires_in"]["state"], "days");
    }

    // A token cannot mint another, nor read /me; it can list and delete its owner's.
    let minted = call(
        "POST",
        &gw.url(TOKENS),
        &[
            ("x-deploy-personal-token", &token),
            ("content-type", "application/json"),
        ],
        Some(&json!({"name": "more", "expiration": "7d"})),
    )
    .await;
    assert_eq!(minted.status, 403, "{:?}", minted.body);
    let bobs = create(&gw, "bob", "bob-pw", "bobs", "7d").await.json();
    let bobs_id = bobs["id"].as_str().unwrap();
    let foreign = call(
        "DELETE",
        &gw.url(&format!("{TOKENS}/{bobs_id}")),
        &[("x-deploy-personal-token", &token)],
        None,
    )
    .await;
    assert_eq!(foreign.status, 404, "another user's token looks like none");
    let missing = as_user(
        "DELETE",
        &gw.url(&format!("{TOKENS}/nosuchid")),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.error_code(), foreign.error_code());

    let deleted = call(
        "DELETE",
        &gw.url(&format!("{TOKENS}/{id}")),
        &[("x-deploy-personal-token", &token)],
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let refused = within(Duration::from_secs(1), || async {
        get(
            &gw.url("/api/v1/deployit"),
            &[("authorization", &basic("", &token))],
        )
        .await
        .status
            == 401
    })
    .await;
    assert!(
        refused.is_some(),
        "the deleted token still worked after 1 s"
    );
    let listing = as_user("GET", &gw.url(TOKENS), "alice", "alice-pw", None).await;
    assert_eq!(listing.json(), json!([]), "deleted tokens are not listed");
}

async fn expiration_choices_last_exactly_their_length(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    for (choice, days) in [
        ("7d", 7),
        ("30d", 30),
        ("45d", 45),
        ("60d", 60),
        ("1y", 365),
    ] {
        let made = create(&gw, "alice", "alice-pw", choice, choice)
            .await
            .json();
        let listed = as_user("GET", &gw.url(TOKENS), "alice", "alice-pw", None)
            .await
            .json();
        let row = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == made["id"])
            .unwrap()
            .clone();
        let created = instant(&row["created_at"]);
        let expires = instant(&row["expires_at"]);
        assert_eq!(expires - created, days * 86_400, "{choice}");
        assert_eq!(row["expires_in"]["days"], days, "{choice}");
    }
    let never = create(&gw, "alice", "alice-pw", "forever", "never")
        .await
        .json();
    assert_eq!(never["expires_at"], Value::Null);
    assert_eq!(never["expires_in"]["state"], "never");
    assert_eq!(never["expires_in"]["label"], "No expiration");
}

fn instant(value: &Value) -> i64 {
    humantime::parse_rfc3339(value.as_str().unwrap())
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn maximum_expiration_limits_every_choice(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let all = ["7d", "30d", "45d", "60d", "1y", "never"];
    for (m, max) in all.iter().enumerate() {
        let put = as_user(
            "PUT",
            &gw.url(SETTINGS),
            "admin",
            "admin-pw",
            Some(&json!({"max_token_expiration": max})),
        )
        .await;
        assert_eq!(put.status, 200, "{:?}", put.body);
        let me = as_user("GET", &gw.url(ME), "alice", "alice-pw", None)
            .await
            .json();
        assert_eq!(me["expiration_choices"], json!(all[..=m]), "max {max}");
        for (c, choice) in all.iter().enumerate() {
            let answer = create(&gw, "alice", "alice-pw", &format!("{max}-{choice}"), choice).await;
            if c <= m {
                assert_eq!(
                    answer.status, 201,
                    "{choice} under max {max}: {:?}",
                    answer.body
                );
            } else {
                // The request is well formed; the policy forbids it.
                assert_eq!(answer.status, 403, "{choice} over max {max}");
                assert_eq!(answer.error_code(), "over_maximum_expiration");
                let message = answer.json()["message"].as_str().unwrap().to_string();
                assert!(message.contains(&format!("({max})")), "{message}");
            }
        }
    }
}

async fn the_command_line_follows_the_same_rules(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let put = as_user(
        "PUT",
        &gw.url(SETTINGS),
        "admin",
        "admin-pw",
        Some(&json!({"max_token_expiration": "30d"})),
    )
    .await;
    assert_eq!(put.status, 200);
    let run = |name: &str, expires: Expiration| {
        let args = patgate::cli::CreateArgs {
            user: "carol".into(),
            name: name.into(),
            expires,
            source: patgate::store::UserSource::Internal,
            email: None,
            scope: Default::default(),
            allow_from: Vec::new(),
            json: false,
        };
        let config = gw.config.clone();
        async move {
            patgate::cli::run_admin(
                &config,
                patgate::cli::Admin::Token(patgate::cli::TokenCommand::Create(args)),
            )
            .await
        }
    };
    let over = run("too long", Expiration::Year1)
        .await
        .unwrap_err()
        .to_string();
    assert!(over.contains("maximum") && over.contains("30d"), "{over}");
    let html = run("<i>x</i>", Expiration::Days7)
        .await
        .unwrap_err()
        .to_string();
    assert!(html.contains("--name"), "{html}");
    assert!(run("fine", Expiration::Days30).await.is_ok());
}

async fn sso_switch_stops_sso_tokens_at_the_proxy_and_back(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let (_, sso_token) = create_token_for(&gw, "sam", "sso").await;
    let (_, internal_token) = create_token_for(&gw, "ivy", "internal").await;
    let works = |token: String| {
        let url = gw.url("/api/v1/deployit");
        async move { get(&url, &[("authorization", &basic("", &token))]).await }
    };
    assert_eq!(works(sso_token.clone()).await.status, 200);

    let off = as_user(
        "PUT",
        &gw.url(SETTINGS),
        "admin",
        "admin-pw",
        Some(&json!({"sso_pat_creation_enabled": false})),
    )
    .await;
    assert_eq!(off.status, 200, "{:?}", off.body);
    let refused = within(Duration::from_secs(1), || async {
        works(sso_token.clone()).await.error_code() == "sso_tokens_disabled"
    })
    .await;
    assert!(
        refused.is_some(),
        "the SSO user's token still worked 1 s after the switch"
    );
    assert_eq!(works(sso_token.clone()).await.status, 401);
    assert_eq!(
        works(internal_token.clone()).await.status,
        200,
        "internal users are unaffected"
    );

    let on = as_user(
        "PUT",
        &gw.url(SETTINGS),
        "admin",
        "admin-pw",
        Some(&json!({"sso_pat_creation_enabled": true})),
    )
    .await;
    assert_eq!(on.status, 200);
    let back = within(Duration::from_secs(1), || async {
        works(sso_token.clone()).await.status == 200
    })
    .await;
    assert!(
        back.is_some(),
        "the token did not work again after the switch was turned back on"
    );
}

async fn create_token_for(gw: &Gateway, user: &str, source: &str) -> (String, String) {
    let args = patgate::cli::CreateArgs {
        user: user.into(),
        name: "t".into(),
        expires: Expiration::Days30,
        source: source.parse().unwrap(),
        email: None,
        scope: Default::default(),
        allow_from: Vec::new(),
        json: true,
    };
    let out = patgate::cli::run_admin(
        &gw.config,
        patgate::cli::Admin::Token(patgate::cli::TokenCommand::Create(args)),
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    (
        v["id"].as_str().unwrap().into(),
        v["token"].as_str().unwrap().into(),
    )
}

async fn bad_input_gets_clear_errors_and_changes_nothing(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let long = "n".repeat(101);
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"name": "x", "expiration": "7d", "scope": "all"}),
            "invalid_body",
            "scope",
        ),
        (
            json!({"name": 7, "expiration": "7d"}),
            "invalid_body",
            "name",
        ),
        (
            json!({"name": "x", "expiration": "90d"}),
            "invalid_body",
            "expiration",
        ),
        (json!({"name": "x"}), "invalid_body", "expiration"),
        (
            json!({"name": "", "expiration": "7d"}),
            "invalid_name",
            "empty",
        ),
        (
            json!({"name": "   ", "expiration": "7d"}),
            "invalid_name",
            "empty",
        ),
        (
            json!({"name": long, "expiration": "7d"}),
            "invalid_name",
            "100",
        ),
        (
            json!({"name": "<b>x</b>", "expiration": "7d"}),
            "invalid_name",
            "<",
        ),
        (
            json!({"name": "a\u{7}b", "expiration": "7d"}),
            "invalid_name",
            "control",
        ),
        (
            json!({"name": "a\nb", "expiration": "7d"}),
            "invalid_name",
            "control",
        ),
        (
            json!({"name": "ci\u{202e}gpj.exe", "expiration": "7d"}),
            "invalid_name",
            "invisible",
        ),
        (
            json!({"name": "ci\u{200b}", "expiration": "7d"}),
            "invalid_name",
            "invisible",
        ),
        (json!(["not", "an", "object"]), "invalid_body", "invalid"),
    ];
    for (body, code, mentions) in &cases {
        let answer = as_user("POST", &gw.url(TOKENS), "alice", "alice-pw", Some(body)).await;
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
        assert_eq!(answer.error_code(), *code, "{body}");
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(mentions), "{body}: {message}");
    }
    let auth = basic("alice", "alice-pw");
    let not_json = common::oidc::request(
        "POST",
        &gw.url(TOKENS),
        &[("authorization", &auth), ("content-type", "text/plain")],
        bytes::Bytes::from("name=x"),
    )
    .await;
    assert_eq!(not_json.status, 415);
    // A body that is optional must still be JSON when there is one.
    let kept = create(&gw, "alice", "alice-pw", "kept", "7d").await.json();
    let rotate = gw.url(&format!("{TOKENS}/{}/rotate", kept["id"].as_str().unwrap()));
    let form = common::oidc::request(
        "POST",
        &rotate,
        &[("authorization", &auth), ("content-type", "text/plain")],
        bytes::Bytes::from(r#"{"grace": "1h"}"#),
    )
    .await;
    assert_eq!(form.status, 415, "{:?}", form.body);
    assert_eq!(form.error_code(), "unsupported_media_type");
    let huge = common::oidc::request(
        "POST",
        &gw.url(TOKENS),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        bytes::Bytes::from(vec![b' '; 70 * 1024]),
    )
    .await;
    assert_eq!(huge.status, 400);
    assert_eq!(huge.error_code(), "body_too_large");
    let duplicate = create(&gw, "alice", "alice-pw", "same", "7d").await;
    assert_eq!(duplicate.status, 201);
    let again = create(&gw, "alice", "alice-pw", "same", "7d").await;
    assert_eq!(again.status, 409);
    assert_eq!(again.error_code(), "name_taken");

    // Settings: unknown fields and wrong types name the field; nothing changes.
    for body in [
        json!({"max_token_expiration": "2d"}),
        json!({"sso_pat_creation_enabled": "no"}),
        json!({"maximum": "7d"}),
    ] {
        let answer = as_user("PUT", &gw.url(SETTINGS), "admin", "admin-pw", Some(&body)).await;
        assert_eq!(answer.status, 400, "{body}: {:?}", answer.body);
    }
    let settings = as_user("GET", &gw.url(SETTINGS), "admin", "admin-pw", None)
        .await
        .json();
    assert_eq!(settings["max_token_expiration"], "never");
    assert_eq!(settings["sso_pat_creation_enabled"], true);
    // Expiry notifications have their own checks in tests/notify.rs; here: untouched.
    assert_eq!(settings["notifications"]["enabled"], false);
    let bad_email = as_user(
        "PUT",
        &gw.url(ME),
        "alice",
        "alice-pw",
        Some(&json!({"email": "not an address"})),
    )
    .await;
    assert_eq!(bad_email.status, 400);
    assert_eq!(bad_email.error_code(), "invalid_email");
    let bad_query = as_user(
        "GET",
        &gw.url("/patgate/api/v1/users?per_page=1000"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(bad_query.status, 400);
    assert!(bad_query.json()["message"]
        .as_str()
        .unwrap()
        .contains("per_page"));
    let non_admin = as_user("GET", &gw.url(SETTINGS), "alice", "alice-pw", None).await;
    assert_eq!(non_admin.status, 403);

    let listing = as_user("GET", &gw.url(TOKENS), "alice", "alice-pw", None)
        .await
        .json();
    assert_eq!(
        listing.as_array().unwrap().len(),
        2,
        "only the good tokens exist: {listing}"
    );
}

async fn sessions_need_csrf_and_end_everywhere_on_sign_out(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let base = gw.url("");
    let signed_in = call(
        "POST",
        &gw.url("/patgate/api/v1/session"),
        &[],
        Some(&json!({"username": "alice", "password": "alice-pw"})),
    )
    .await;
    assert_eq!(signed_in.status, 200);
    let set_cookie = signed_in.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    assert!(
        !set_cookie.contains("Secure"),
        "no Secure flag over plain http"
    );
    let session = Session::from_answer(&base, &signed_in).with_csrf().await;
    assert!(!session.csrf.is_empty());

    let body = json!({"name": "from the browser", "expiration": "7d"});
    let without = Session {
        csrf: String::new(),
        cookie: session.cookie.clone(),
        base: base.clone(),
    };
    let refused = without.send("POST", TOKENS, Some(&body)).await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.error_code(), "csrf_failed");
    let cookie = format!("patgate_session={}", session.cookie);
    let cross = call(
        "POST",
        &gw.url(TOKENS),
        &[
            ("cookie", &cookie),
            ("x-csrf-token", &session.csrf),
            ("origin", "https://evil.example"),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(cross.status, 403, "a request from another origin");
    let made = session.send("POST", TOKENS, Some(&body)).await;
    assert_eq!(made.status, 201, "{:?}", made.body);

    let out = session
        .send("DELETE", "/patgate/api/v1/session", None)
        .await;
    assert_eq!(out.status, 204);
    let after = session.send("GET", ME, None).await;
    assert_eq!(after.status, 401, "the session ended");
    // And on another replica sharing the database.
    let other = Gateway::start(gw.config.clone()).await;
    let elsewhere = call("GET", &other.url(ME), &[("cookie", &cookie)], None).await;
    assert_eq!(elsewhere.status, 401);
}

async fn admins_manage_users_and_read_the_audit_log(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let made = create(&gw, "alice", "alice-pw", "ci", "7d").await.json();
    let token = made["token"].as_str().unwrap().to_string();
    // First use from an address is logged once the last-use writer flushes (every 5 s).
    get(&gw.url("/x"), &[("x-deploy-personal-token", &token)]).await;
    let first_use = within(Duration::from_secs(8), || async {
        as_user(
            "GET",
            &gw.url("/patgate/api/v1/audit?action=token.used_from_new_address"),
            "admin",
            "admin-pw",
            None,
        )
        .await
        .json()["entries"][0]["ip"]
            == "127.0.0.1"
    })
    .await;
    assert!(
        first_use.is_some(),
        "no audit entry for the first use from 127.0.0.1"
    );
    let _ = as_user("GET", &gw.url(ME), "bob", "wrong", None).await;
    get(
        &gw.url("/x"),
        &[("authorization", &basic("", "dpat_invented"))],
    )
    .await;

    let users = as_user(
        "GET",
        &gw.url("/patgate/api/v1/users?search=ALI"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(users.status, 200, "{:?}", users.body);
    let users = users.json();
    assert_eq!(users["total"], 1);
    assert_eq!(users["users"][0]["username"], "alice");
    assert_eq!(users["users"][0]["tokens"], 1);
    let theirs = as_user(
        "GET",
        &gw.url("/patgate/api/v1/users/alice/tokens"),
        "admin",
        "admin-pw",
        None,
    )
    .await
    .json();
    assert_eq!(theirs[0]["name"], "ci");
    assert!(!theirs.to_string().contains(&token));

    let disabled = as_user(
        "POST",
        &gw.url("/patgate/api/v1/users/alice/disable"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(disabled.status, 200);
    assert_eq!(disabled.json()["disabled"], true);
    let refused = within(Duration::from_secs(1), || async {
        get(&gw.url("/x"), &[("x-deploy-personal-token", &token)])
            .await
            .error_code()
            == "user_disabled"
    })
    .await;
    assert!(refused.is_some());
    let enabled = as_user(
        "POST",
        &gw.url("/patgate/api/v1/users/alice/enable"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(enabled.json()["disabled"], false);
    let admin_delete = as_user(
        "DELETE",
        &gw.url(&format!("{TOKENS}/{}", made["id"].as_str().unwrap())),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(
        admin_delete.status, 204,
        "administrators delete anyone's token"
    );

    // A token that expired is logged once, however many rounds run.
    let api = gw_api(&gw);
    api.store
        .ensure_user("bob", patgate::store::UserSource::Internal, None)
        .await
        .unwrap();
    let lapsed = patgate::core::token::PlainToken::generate();
    api.store
        .create_token(
            "bob",
            "lapsed",
            &api.hasher.hash(lapsed.expose().as_bytes()),
            Some(patgate::core::time::now() - 10),
        )
        .await
        .unwrap();
    // Refused tokens are aggregated at the next housekeeping round; run it now, twice.
    patgate::app::housekeeping::round(&api).await;
    patgate::app::housekeeping::round(&api).await;
    let expired = as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit?action=token.expired"),
        "admin",
        "admin-pw",
        None,
    )
    .await
    .json();
    assert_eq!(expired["total"], 1, "{expired}");
    assert_eq!(expired["entries"][0]["user"], "bob");
    let audit = as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit?per_page=200"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(audit.status, 200, "{:?}", audit.body);
    let audit = audit.json();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "token.created",
        "signin.failed",
        "signin.succeeded",
        "user.disabled",
        "user.enabled",
        "token.deleted",
        "token.refused",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    assert!(
        !audit.to_string().contains(&token),
        "no secret in the audit log"
    );
    assert!(
        !audit.to_string().contains("alice-pw") && !audit.to_string().contains("dpat_invented")
    );
    let only = as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit?action=user.disabled&user=alice"),
        "admin",
        "admin-pw",
        None,
    )
    .await
    .json();
    assert_eq!(only["total"], 1);
    assert_eq!(only["entries"][0]["actor"], "admin");
    let future = as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit?since=2999-01-01T00:00:00Z"),
        "admin",
        "admin-pw",
        None,
    )
    .await
    .json();
    assert_eq!(future["total"], 0);
    let forbidden = as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit"),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(forbidden.status, 403);
}

fn gw_api(gw: &Gateway) -> std::sync::Arc<patgate::api::Api> {
    gw.api().expect("the gateway runs in this process")
}

async fn every_documented_route_answers_as_described(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    let made = create(&gw, "alice", "alice-pw", "doc", "7d").await.json();
    let doc = get(&gw.url("/patgate/api/v1/openapi.json"), &[]).await;
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let session = Session::password(&gw.url(""), "admin", "admin-pw")
        .await
        .with_csrf()
        .await;
    let smtp_item = json!({"name": "doc", "host": "127.0.0.1", "port": 25,
        "from_address": "deploy@example.com"});
    let smtp = session
        .send("POST", "/patgate/api/v1/smtp-servers", Some(&smtp_item))
        .await;
    assert_eq!(smtp.status, 201, "{:?}", smtp.body);
    let smtp_id = smtp.json()["id"].as_str().unwrap().replace('/', "%2F");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = if path.contains("/smtp-servers/") {
                smtp_id.as_str()
            } else {
                made["id"].as_str().unwrap()
            };
            let concrete = path.replace("{id}", id).replace("{username}", "alice");
            let body = match (method.as_str(), path.as_str()) {
                ("post", "/patgate/api/v1/tokens") => {
                    Some(json!({"name": format!("doc-{checked}"), "expiration": "7d"}))
                }
                ("put", "/patgate/api/v1/settings") => Some(json!({})),
                ("post", "/patgate/api/v1/smtp-servers") => Some(json!({"name": "doc-created",
                    "host": "127.0.0.1", "port": 25, "from_address": "deploy@example.com"})),
                ("put", "/patgate/api/v1/smtp-servers/{id}") => Some(json!({"port": 2525})),
                ("put", "/patgate/api/v1/me") => Some(json!({"email": "admin@example.com"})),
                ("put", "/patgate/api/v1/users/{username}/sso-link") => {
                    Some(json!({"subject": "u-alice"}))
                }
                ("post", "/patgate/api/v1/session") => {
                    Some(json!({"username": "admin", "password": "admin-pw"}))
                }
                _ => None,
            };
            let answer = if path.ends_with("/session") && method == "delete" {
                // Signing out would end the session the rest of the loop uses.
                Session::password(&gw.url(""), "admin", "admin-pw")
                    .await
                    .with_csrf()
                    .await
                    .send("DELETE", &concrete, None)
                    .await
            } else {
                session
                    .send(&method.to_uppercase(), &concrete, body.as_ref())
                    .await
            };
            let documented: Vec<u16> = operation["responses"]
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.parse().unwrap())
                .collect();
            assert!(
                documented.contains(&answer.status.as_u16()),
                "{method} {path} answered {} ({:?}); documented {documented:?}",
                answer.status,
                answer.body
            );
            if answer.status.is_success() && answer.status != 204 {
                assert!(answer.headers["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"));
            }
            checked += 1;
        }
    }
    assert!(checked >= 23, "only {checked} operations documented");
}

async fn a_deletion_through_one_replica_is_refused_by_another_within_a_second(db: TestDb) {
    let (_upstream, one) = start(&db, &[]).await;
    let two = Gateway::start(one.config.clone()).await;
    let made = create(&one, "alice", "alice-pw", "shared", "30d")
        .await
        .json();
    let token = made["token"].as_str().unwrap().to_string();
    // Cached on the second replica first.
    for _ in 0..3 {
        let answer = get(&two.url("/x"), &[("x-deploy-personal-token", &token)]).await;
        assert_eq!(answer.status, 200);
    }
    let deleted = as_user(
        "DELETE",
        &one.url(&format!("{TOKENS}/{}", made["id"].as_str().unwrap())),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    let refused = within(Duration::from_secs(1), || async {
        get(&two.url("/x"), &[("x-deploy-personal-token", &token)])
            .await
            .status
            == 401
    })
    .await;
    assert!(
        refused.is_some(),
        "the other replica still accepted the deleted token after 1 s"
    );
}

/// A gateway that believes `X-Forwarded-For` from loopback, so that a test can speak
/// from several client addresses.
async fn behind_loopback_proxy(db: &TestDb, extra: &[(&str, &str)]) -> (Upstream, Gateway) {
    let mut all = vec![("PATGATE_TRUSTED_PROXIES", "127.0.0.1")];
    all.extend_from_slice(extra);
    start(db, &all).await
}

/// Signs in with a password from `client` (an address the loopback proxy forwards).
async fn sign_in_from(gw: &Gateway, client: &str, user: &str, password: &str) -> Answer {
    call(
        "POST",
        &gw.url("/patgate/api/v1/session"),
        &[("x-forwarded-for", client)],
        Some(&json!({"username": user, "password": password})),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_locks_out_another_user_by_guessing_wrong() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (_upstream, gw) = behind_loopback_proxy(&db, &[]).await;
    // Someone at 192.0.2.66 guesses the administrator's password until refused.
    let mut limited = false;
    for _ in 0..15 {
        let guess = sign_in_from(&gw, "192.0.2.66", "admin", "guess").await;
        if guess.status == 429 {
            limited = true;
            break;
        }
        assert_eq!(guess.status, 401);
    }
    assert!(limited, "guessing from one address is limited");
    let basic_guess = call(
        "GET",
        &gw.url(ME),
        &[
            ("x-forwarded-for", "192.0.2.66"),
            ("authorization", &basic("admin", "admin-pw")),
        ],
        None,
    )
    .await;
    assert_eq!(basic_guess.status, 429, "that address stays limited");

    // The administrator, elsewhere, signs in with the right password at once, in the
    // browser and with Basic, and so does anyone else.
    let started = std::time::Instant::now();
    let admin = sign_in_from(&gw, "198.51.100.7", "admin", "admin-pw").await;
    assert_eq!(admin.status, 200, "{:?}", admin.body);
    assert_eq!(admin.json()["admin"], true);
    let basic_admin = call(
        "GET",
        &gw.url(ME),
        &[
            ("x-forwarded-for", "198.51.100.8"),
            ("authorization", &basic("admin", "admin-pw")),
        ],
        None,
    )
    .await;
    assert_eq!(basic_admin.status, 200, "{:?}", basic_admin.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    let alice = sign_in_from(&gw, "192.0.2.66", "alice", "alice-pw").await;
    assert_eq!(
        alice.status, 429,
        "the guessing address is limited for every name"
    );
    let alice = sign_in_from(&gw, "198.51.100.9", "alice", "alice-pw").await;
    assert_eq!(alice.status, 200);
}

async fn tokens_typed_into_the_sign_in_never_reach_deploy_and_unknown_names_are_not_audited(
    db: TestDb,
) {
    let (upstream, gw) = start(&db, &[]).await;
    let token = create(&gw, "alice", "alice-pw", "ci", "7d").await.json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let asked = |upstream: &Upstream| {
        upstream
            .seen()
            .iter()
            .filter(|s| s.path == "/deployit/server/info")
            .count()
    };
    let before = asked(&upstream);
    for (username, password) in [("alice", token.as_str()), (token.as_str(), "x")] {
        let answer = call(
            "POST",
            &gw.url("/patgate/api/v1/session"),
            &[],
            Some(&json!({"username": username, "password": password})),
        )
        .await;
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(answer.error_code(), "token_not_password");
        assert!(!String::from_utf8_lossy(&answer.body).contains(&token));
    }
    let as_name = call(
        "GET",
        &gw.url(ME),
        &[("authorization", &basic(&token, "x"))],
        None,
    )
    .await;
    assert_eq!(as_name.status, 400, "{:?}", as_name.body);
    assert_eq!(
        asked(&upstream),
        before,
        "Deploy was never asked with a token"
    );

    // A name nobody has (a password typed into the wrong field) is never written down.
    let typo = call(
        "POST",
        &gw.url("/patgate/api/v1/session"),
        &[],
        Some(&json!({"username": "Winter2025!secret", "password": "x"})),
    )
    .await;
    assert_eq!(typo.status, 401);
    let wrong = as_user("GET", &gw.url(ME), "bob", "not-bobs", None).await;
    assert_eq!(wrong.status, 401);
    patgate::app::housekeeping::round(&gw_api(&gw)).await;
    let audit = as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit?action=signin.failed"),
        "admin",
        "admin-pw",
        None,
    )
    .await
    .json();
    let text = audit.to_string();
    assert!(
        !text.contains("Winter2025") && !text.contains(&token),
        "{text}"
    );
    assert_eq!(audit["total"], 1, "one row for the address: {audit}");
    assert_eq!(audit["entries"][0]["detail"]["count"], 2);
    assert!(audit["entries"][0]["user"].is_null());
}

async fn administrator_rights_end_soon_after_deploy_withdraws_them(db: TestDb) {
    let (upstream, gw) = start(&db, &[("PATGATE_SIGNIN__ADMIN_RECHECK", "1s")]).await;
    let admin = Session::password(&gw.url(""), "admin", "admin-pw")
        .await
        .with_csrf()
        .await;
    assert_eq!(admin.send("GET", SETTINGS, None).await.status, 200);
    // Deploy stops counting admin as an administrator.
    upstream.set_deploy_admin("admin", false);
    // A new session asks Deploy, not the password check remembered a moment ago.
    let fresh = Session::password(&gw.url(""), "admin", "admin-pw").await;
    let me = fresh.send("GET", ME, None).await.json();
    assert_eq!(me["admin"], false, "{me}");
    // The old session loses the rights once they are older than signin.admin_recheck.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let settings = admin.send("GET", SETTINGS, None).await;
    assert_eq!(settings.status, 403, "{:?}", settings.body);
    assert_eq!(admin.send("GET", ME, None).await.json()["admin"], false);
    // And when Deploy gives them back, a new sign-in has them.
    upstream.set_deploy_admin("admin", true);
    let back = Session::password(&gw.url(""), "admin", "admin-pw").await;
    assert_eq!(back.send("GET", ME, None).await.json()["admin"], true);

    // In basic mode the gateway cannot ask Deploy for a user without the password: the
    // rights lapse, with a message that says to sign in again.
    let basic_mode = Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_SIGNIN__ADMIN_RECHECK", "1s"),
            ("PATGATE_UPSTREAM__IDENTITY__MODE", "basic"),
            ("PATGATE_UPSTREAM__IDENTITY__BASIC__USERNAME", "svc"),
            ("PATGATE_UPSTREAM__IDENTITY__BASIC__PASSWORD", "svc-pw"),
        ],
    ))
    .await;
    let session = Session::password(&basic_mode.url(""), "admin", "admin-pw").await;
    assert_eq!(session.send("GET", SETTINGS, None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let lapsed = session.send("GET", SETTINGS, None).await;
    assert_eq!(lapsed.status, 403);
    assert!(lapsed.json()["message"]
        .as_str()
        .unwrap()
        .contains("sign in again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_from_another_site_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let (_upstream, gw) = start(&db, &[]).await;
    let body = json!({"username": "alice", "password": "alice-pw"});
    let own = format!("http://{}", gw.addr);
    for headers in [
        vec![
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![("origin", "http://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
    ] {
        let answer = call(
            "POST",
            &gw.url("/patgate/api/v1/session"),
            &headers,
            Some(&body),
        )
        .await;
        assert_eq!(answer.status, 403, "{headers:?}: {:?}", answer.body);
        assert!(answer.headers.get("set-cookie").is_none(), "{headers:?}");
    }
    let same = call(
        "POST",
        &gw.url("/patgate/api/v1/session"),
        &[("origin", &own), ("sec-fetch-site", "same-origin")],
        Some(&body),
    )
    .await;
    assert_eq!(same.status, 200, "{:?}", same.body);
    // Every answer carries the pages' protections, JSON included.
    assert_eq!(same.headers["x-content-type-options"], "nosniff");
    assert_eq!(same.headers["x-frame-options"], "DENY");
    assert!(same.headers.contains_key("content-security-policy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_tls_proxy_the_session_is_https_only() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let body = json!({"username": "alice", "password": "alice-pw"});
    let proxied: [(&str, &str); 3] = [
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "deploy.example.com"),
        ("origin", "https://deploy.example.com"),
    ];
    // Without trusted proxies the forwarded scheme and host are anyone's to write:
    // ignored, so the browser's https origin is not this gateway's.
    let (_upstream, direct) = start(&db, &[]).await;
    let refused = call(
        "POST",
        &direct.url("/patgate/api/v1/session"),
        &proxied,
        Some(&body),
    )
    .await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    let plain = call(
        "POST",
        &direct.url("/patgate/api/v1/session"),
        &[],
        Some(&body),
    )
    .await;
    let cookie = plain.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("patgate_session="), "{cookie}");
    assert!(
        cookie.contains("Path=/patgate/") && !cookie.contains("Secure"),
        "{cookie}"
    );

    // Behind one that terminates TLS: the cookie is Secure, with the __Secure- prefix.
    let (_upstream, gw) = behind_loopback_proxy(&db, &[]).await;
    let signed_in = call(
        "POST",
        &gw.url("/patgate/api/v1/session"),
        &proxied,
        Some(&body),
    )
    .await;
    assert_eq!(signed_in.status, 200, "{:?}", signed_in.body);
    let set = signed_in.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(set.starts_with("__Secure-patgate_session="), "{set}");
    for attribute in ["Path=/patgate/", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(attribute), "{attribute}: {set}");
    }
    let pair = set.split(';').next().unwrap().to_string();
    let csrf = signed_in.json()["csrf_token"].as_str().unwrap().to_string();
    let with_session = |origin: &'static str| {
        let pair = pair.clone();
        let csrf = csrf.clone();
        let url = gw.url(TOKENS);
        async move {
            call(
                "POST",
                &url,
                &[
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "deploy.example.com"),
                    ("origin", origin),
                    ("cookie", &pair),
                    ("x-csrf-token", &csrf),
                ],
                Some(&json!({"name": "via the proxy", "expiration": "7d"})),
            )
            .await
        }
    };
    assert_eq!(with_session("https://deploy.example.com").await.status, 201);
    assert_eq!(
        with_session("http://deploy.example.com").await.status,
        403,
        "over https an http origin is another site"
    );
    // The unprefixed name, which a non-secure page could set, does not count over https.
    let unprefixed = call(
        "GET",
        &gw.url(ME),
        &[
            ("x-forwarded-proto", "https"),
            ("cookie", &pair.replace("__Secure-", "")),
        ],
        None,
    )
    .await;
    assert_eq!(unprefixed.status, 401);
}

async fn a_name_in_another_case_or_form_is_the_same_user(db: TestDb) {
    let (upstream, gw) = start(&db, &[]).await;
    // Deploy (like an LDAP bind) takes the name in any case.
    let made = create(&gw, "alice", "alice-pw", "ci", "7d").await.json();
    let token = made["token"].as_str().unwrap().to_string();
    let disabled = as_user(
        "POST",
        &gw.url("/patgate/api/v1/users/ALICE/disable"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(disabled.status, 200, "{:?}", disabled.body);
    assert_eq!(disabled.json()["username"], "alice");
    for variant in ["Alice", "ALICE", "aLiCe"] {
        let signed_in = call(
            "POST",
            &gw.url("/patgate/api/v1/session"),
            &[],
            Some(&json!({"username": variant, "password": "alice-pw"})),
        )
        .await;
        assert_eq!(signed_in.status, 403, "{variant}: {:?}", signed_in.body);
        let basic = as_user(
            "POST",
            &gw.url(TOKENS),
            variant,
            "alice-pw",
            Some(&json!({"name": variant, "expiration": "7d"})),
        )
        .await;
        assert_eq!(basic.status, 403, "{variant}: {:?}", basic.body);
    }
    gw.set_disabled("Alice", false).await;
    let session = Session::password(&gw.url(""), "ALICE", "alice-pw").await;
    let me = session.send("GET", ME, None).await.json();
    assert_eq!(me["username"], "alice", "{me}");
    assert_eq!(me["token_count"], 1);
    let second = as_user(
        "POST",
        &gw.url(TOKENS),
        "Alice",
        "alice-pw",
        Some(&json!({"name": "laptop", "expiration": "7d"})),
    )
    .await
    .json();
    let laptop = second["token"].as_str().unwrap().to_string();
    for t in [&token, &laptop] {
        let proxied = get(&gw.url("/x"), &[("x-deploy-personal-token", t)]).await;
        assert_eq!(proxied.status, 200);
        assert_eq!(upstream.last().headers["x-deploy-user"], "alice");
    }
    let users = as_user(
        "GET",
        &gw.url("/patgate/api/v1/users?search=lice"),
        "admin",
        "admin-pw",
        None,
    )
    .await
    .json();
    assert_eq!(users["total"], 1, "one person, one user: {users}");
    // The command line finds her under any spelling, and makes no second user.
    let (_, cli_token) = gw.create_token("ALICE", "cli", Expiration::Days7).await;
    get(&gw.url("/x"), &[("x-deploy-personal-token", &cli_token)]).await;
    assert_eq!(upstream.last().headers["x-deploy-user"], "alice");
    gw.set_disabled("ALICE", true).await;
    let refused = within(Duration::from_secs(1), || async {
        get(&gw.url("/x"), &[("x-deploy-personal-token", &laptop)])
            .await
            .error_code()
            == "user_disabled"
    })
    .await;
    assert!(refused.is_some());
}

async fn password_callers_are_governed_by_their_stored_source(db: TestDb) {
    let (_upstream, gw) = start(&db, &[]).await;
    // bob is an SSO user (provisioned so) who also has a Deploy password.
    gw_api(&gw)
        .store
        .ensure_user("bob", patgate::store::UserSource::Sso, None)
        .await
        .unwrap();
    let off = as_user(
        "PUT",
        &gw.url(SETTINGS),
        "admin",
        "admin-pw",
        Some(&json!({"sso_pat_creation_enabled": false})),
    )
    .await;
    assert_eq!(off.status, 200);
    let refused = create(&gw, "bob", "bob-pw", "sneaky", "7d").await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "sso_creation_disabled");
    let me = as_user("GET", &gw.url(ME), "bob", "bob-pw", None)
        .await
        .json();
    assert_eq!(me["source"], "sso");
    assert_eq!(me["token_creation_allowed"], false);
    assert_eq!(
        create(&gw, "alice", "alice-pw", "fine", "7d").await.status,
        201
    );
}

async fn names_that_clashed_before_the_upgrade_stay_reachable_by_their_exact_name(db: TestDb) {
    use patgate::store::{Store, UserSource};
    let store = Store::connect(&db.url, 2).await.unwrap();
    store.close().await;
    // Two rows from before names had keys, differing only in case.
    let raw = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await
        .unwrap();
    for (name, created) in [("alice", 1_i64), ("Alice", 2)] {
        sqlx::query(
            "INSERT INTO users (username, source, disabled, created_at) VALUES ($1, 'internal', FALSE, $2)",
        )
        .bind(name)
        .bind(created)
        .execute(&raw)
        .await
        .unwrap();
    }
    raw.close().await;

    // Opening the database gives them keys: the older keeps the name.
    let store = Store::connect(&db.url, 2).await.unwrap();
    assert_eq!(
        store.user("ALICE").await.unwrap().unwrap().username,
        "alice"
    );
    assert_eq!(
        store.user("Alice").await.unwrap().unwrap().username,
        "Alice"
    );
    store.set_user_disabled("Alice", true).await.unwrap();
    assert!(store.user("Alice").await.unwrap().unwrap().disabled);
    assert!(!store.user("alice").await.unwrap().unwrap().disabled);
    // No third one can be made.
    assert_eq!(
        store
            .ensure_user("ALICE", UserSource::Internal, None)
            .await
            .unwrap(),
        "alice"
    );
    let (_, total) = store.users(Some("alice"), 0, 10).await.unwrap();
    assert_eq!(total, 2);
    store.close().await;
}

/// Rules the OpenAPI document states, held on both backends: NUL is a clear 400
/// (PostgreSQL keeps no NUL in text), a leap second is not an instant, `25.0` is the
/// integer 25, names and addresses are exact (no spaces around them, ASCII addresses),
/// a grace is a number and one unit, and JSON bodies must say they are JSON.
async fn what_the_document_forbids_is_refused_and_what_it_allows_is_taken(db: TestDb) {
    let (_upstream, gw) = start(&db, &[("PATGATE_LEAKED__SECRET", &"k".repeat(40))]).await;
    let admin = |method: &'static str, path: &str, body: Option<Value>| {
        let url = gw.url(&format!("/patgate/api/v1{path}"));
        async move { as_user(method, &url, "admin", "admin-pw", body.as_ref()).await }
    };
    let alice = |method: &'static str, path: &str, body: Option<Value>| {
        let url = gw.url(&format!("/patgate/api/v1{path}"));
        async move { as_user(method, &url, "alice", "alice-pw", body.as_ref()).await }
    };
    assert_eq!(alice("GET", "/me", None).await.status, 200);

    // NUL anywhere in text: in a body, a path, a query.
    let nul = admin(
        "PUT",
        "/settings",
        Some(json!({"notifications": {"subject": "a\u{0}b"}})),
    )
    .await;
    assert_eq!(nul.status, 400, "{:?}", nul.body);
    assert_eq!(nul.error_code(), "invalid_body");
    assert!(nul.json()["message"]
        .as_str()
        .unwrap()
        .contains("notifications.subject"));
    for path in ["/users/al%00ice", "/users?search=a%00", "/audit?user=%00"] {
        let answer = admin("GET", path, None).await;
        assert_eq!(answer.status, 400, "{path}: {:?}", answer.body);
        assert_eq!(answer.error_code(), "invalid_request", "{path}");
    }
    let subject = admin("GET", "/settings", None).await.json()["notifications"]["subject"].clone();
    assert!(!subject.as_str().unwrap().contains('\0'));

    // Instants: RFC 3339 with seconds up to 59, real dates.
    for bad in [
        "2026-12-31T23:59:60Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01%2000:00:00Z",
    ] {
        let answer = admin("GET", &format!("/audit?since={bad}"), None).await;
        assert_eq!(answer.status, 400, "{bad}");
    }
    let before_epoch = admin("GET", "/audit?since=1969-12-31T23:00:00-01:00", None).await;
    assert_eq!(before_epoch.status, 200, "{:?}", before_epoch.body);

    // 25.0 is an integer.
    let whole = admin(
        "PUT",
        "/settings",
        Some(json!({"notifications": {"days_before": 9.0}})),
    )
    .await;
    assert_eq!(whole.status, 200, "{:?}", whole.body);
    assert_eq!(whole.json()["notifications"]["days_before"], 9);
    let fraction = admin(
        "PUT",
        "/settings",
        Some(json!({"notifications": {"days_before": 9.5}})),
    )
    .await;
    assert_eq!(fraction.status, 400);

    // Token names: no spaces at either end.
    for name in [" ci", "ci ", "\u{a0}ci"] {
        let answer = create(&gw, "alice", "alice-pw", name, "7d").await;
        assert_eq!(answer.status, 400, "{name:?}");
        assert_eq!(answer.error_code(), "invalid_name");
    }
    let made = create(&gw, "alice", "alice-pw", "ci build", "7d").await;
    assert_eq!(made.status, 201);
    let id = made.json()["id"].as_str().unwrap().to_string();

    // A grace is a whole number and one unit.
    for grace in ["1h 30m", "90 m", "1.5h", "2d", "01m"] {
        let answer = alice(
            "POST",
            &format!("/tokens/{id}/rotate"),
            Some(json!({"grace": grace})),
        )
        .await;
        assert_eq!(answer.status, 400, "{grace}");
        assert_eq!(answer.error_code(), "invalid_grace");
    }
    let rotated = alice(
        "POST",
        &format!("/tokens/{id}/rotate"),
        Some(json!({"grace": "90m"})),
    )
    .await;
    assert_eq!(rotated.status, 201, "{:?}", rotated.body);
    let id = rotated.json()["id"].as_str().unwrap().to_string();

    // Addresses: ASCII, nothing around them.
    for email in [
        "jos\u{e9}@example.com",
        " alice@example.com",
        "alice@example",
    ] {
        let answer = alice("PUT", "/me", Some(json!({"email": email}))).await;
        assert_eq!(answer.status, 400, "{email:?}");
        assert_eq!(answer.error_code(), "invalid_email");
    }
    let email = alice(
        "PUT",
        "/me",
        Some(json!({"email": "alice.l+pat@example.com"})),
    )
    .await;
    assert_eq!(email.json()["email"], "alice.l+pat@example.com");

    // Every body that is there must be sent as JSON, the optional ones too.
    let auth = basic("alice", "alice-pw");
    let rotate_url = gw.url(&format!("/patgate/api/v1/tokens/{id}/rotate"));
    let leaked_url = gw.url("/patgate/api/v1/leaked");
    for url in [&rotate_url, &leaked_url] {
        let answer = common::oidc::request(
            "POST",
            url,
            &[("authorization", &auth), ("content-type", "text/plain")],
            bytes::Bytes::from(r#"{"grace": "0s"}"#),
        )
        .await;
        assert_eq!(answer.status, 415, "{url}: {:?}", answer.body);
        assert_eq!(answer.error_code(), "unsupported_media_type");
    }
}
