//! Service accounts end to end, on SQLite and PostgreSQL: an administrator makes one
//! with owners; an owner creates, rotates and deletes its tokens, which act as the
//! account at Deploy; when an owner is deprovisioned the account and its tokens keep
//! working; when no active owner is left the account is flagged and audited; people
//! who are not owners see nothing; bad input changes nothing; the command line agrees.

#[macro_use]
mod common;

use common::api::{as_user, Session};
use common::*;
use patgate::cli::{self, Admin, ServiceAccountCommand};
use patgate::core::token::Expiration;
use serde_json::{json, Value};

on_both_backends!(
    owners_run_the_accounts_tokens_and_survive_deprovisioning,
    only_owners_and_administrators_see_an_account,
    bad_input_gets_a_clear_error_and_changes_nothing,
    the_command_line_makes_and_lists_accounts,
);

const ACCOUNTS: &str = "/patgate/api/v1/service-accounts";

async fn start(db: &TestDb) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(db, &upstream.url(), &[])).await;
    // alice and bob become known to the gateway by signing in once.
    for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        Session::password(&gw.url(""), user, password).await;
    }
    (upstream, gw)
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<&Value>) -> Answer {
    as_user(method, &gw.url(path), "admin", "admin-pw", body).await
}

async fn proxied(gw: &Gateway, token: &str) -> u16 {
    get(
        &gw.url("/deployit/repository"),
        &[("x-deploy-personal-token", token)],
    )
    .await
    .status
    .as_u16()
}

async fn audit_actions(gw: &Gateway) -> Vec<String> {
    let answer = admin(gw, "GET", "/patgate/api/v1/audit?per_page=200", None).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn owners_run_the_accounts_tokens_and_survive_deprovisioning(db: TestDb) {
    let (upstream, gw) = start(&db).await;
    let made = admin(
        &gw,
        "POST",
        ACCOUNTS,
        Some(&json!({"name": "ci-bot", "description": "release pipeline", "owners": ["alice", "Bob"]})),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let account = made.json();
    assert_eq!(account["name"], "ci-bot");
    assert_eq!(account["active_owners"], 2);
    assert_eq!(account["no_active_owner"], false);
    let owners: Vec<&str> = account["owners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["username"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["alice", "bob"], "owners are stored by their names");

    // An owner creates a token; it acts as the account at Deploy.
    let tokens = format!("{ACCOUNTS}/ci-bot/tokens");
    let created = as_user(
        "POST",
        &gw.url(&tokens),
        "alice",
        "alice-pw",
        Some(&json!({"name": "deploy", "expiration": "30d", "scope": "read"})),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let first = created.json();
    let token = first["token"].as_str().unwrap().to_string();
    assert_eq!(first["scope"], "read");
    assert_eq!(proxied(&gw, &token).await, 200);
    assert_eq!(upstream.last().headers["x-deploy-user"], "ci-bot");
    // It is the account's, not alice's.
    let alices = as_user(
        "GET",
        &gw.url("/patgate/api/v1/tokens"),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(alices.json().as_array().unwrap().len(), 0);
    let listed = as_user("GET", &gw.url(&tokens), "bob", "bob-pw", None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()[0]["name"], "deploy");

    // The other owner rotates it: the successor works, as the account.
    let rotated = as_user(
        "POST",
        &gw.url(&format!(
            "/patgate/api/v1/tokens/{}/rotate",
            first["id"].as_str().unwrap()
        )),
        "bob",
        "bob-pw",
        Some(&json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(rotated.status, 201, "{:?}", rotated.body);
    let successor = rotated.json()["token"].as_str().unwrap().to_string();
    assert_eq!(proxied(&gw, &successor).await, 200);
    assert_eq!(upstream.last().headers["x-deploy-user"], "ci-bot");

    // alice is deprovisioned (disabled, her tokens deleted, as SCIM does): the account's
    // tokens keep working and bob still looks after it.
    gw.set_disabled("alice", true).await;
    assert_eq!(proxied(&gw, &successor).await, 200);
    let seen = admin(&gw, "GET", &format!("{ACCOUNTS}/ci-bot"), None)
        .await
        .json();
    assert_eq!(seen["active_owners"], 1);
    assert_eq!(seen["no_active_owner"], false);
    assert_eq!(seen["owners"][0]["active"], false);

    // bob goes too: the account is flagged and audited once, its token still works.
    gw.set_disabled("bob", true).await;
    assert_eq!(proxied(&gw, &successor).await, 200);
    let seen = admin(&gw, "GET", ACCOUNTS, None).await.json();
    assert_eq!(seen[0]["no_active_owner"], true, "{seen:?}");
    assert!(seen[0]["no_active_owner_since"].is_string());
    let orphaned = |actions: &[String]| {
        actions
            .iter()
            .filter(|a| *a == "service_account.orphaned")
            .count()
    };
    assert_eq!(orphaned(&audit_actions(&gw).await), 1);
    // Another check (the housekeeping's) does not audit it again.
    patgate::accounts::service::check_owners(&gw.api().unwrap().store)
        .await
        .unwrap();
    assert_eq!(orphaned(&audit_actions(&gw).await), 1);

    // A new owner clears the flag.
    let replaced = admin(
        &gw,
        "PUT",
        &format!("{ACCOUNTS}/ci-bot"),
        Some(&json!({"description": "release pipeline", "owners": ["admin"]})),
    )
    .await;
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    assert_eq!(replaced.json()["no_active_owner"], false);
    assert!(audit_actions(&gw)
        .await
        .contains(&"service_account.owner_restored".to_string()));

    // Deleting the account revokes its tokens, everywhere within a second.
    let gone = admin(&gw, "DELETE", &format!("{ACCOUNTS}/ci-bot"), None).await;
    assert_eq!(gone.status, 204);
    assert!(
        within(std::time::Duration::from_secs(1), || async {
            proxied(&gw, &successor).await == 401
        })
        .await
        .is_some(),
        "a deleted account's token is refused"
    );
    assert_eq!(
        admin(&gw, "GET", &format!("{ACCOUNTS}/ci-bot"), None)
            .await
            .status,
        404
    );
    gw.shutdown().await;
}

async fn only_owners_and_administrators_see_an_account(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let made = admin(
        &gw,
        "POST",
        ACCOUNTS,
        Some(&json!({"name": "nightly", "owners": ["alice"]})),
    )
    .await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let tokens = format!("{ACCOUNTS}/nightly/tokens");
    let created = as_user(
        "POST",
        &gw.url(&tokens),
        "alice",
        "alice-pw",
        Some(&json!({"name": "n", "expiration": "7d"})),
    )
    .await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_str().unwrap().to_string();

    // bob is not an owner: the account does not exist for him, nor its token.
    let bob = |method: &'static str, path: String, body: Option<Value>| {
        let url = gw.url(&path);
        async move {
            as_user(method, &url, "bob", "bob-pw", body.as_ref())
                .await
                .status
                .as_u16()
        }
    };
    assert_eq!(bob("GET", format!("{ACCOUNTS}/nightly"), None).await, 404);
    assert_eq!(bob("GET", tokens.clone(), None).await, 404);
    assert_eq!(
        bob(
            "POST",
            tokens.clone(),
            Some(json!({"name": "x", "expiration": "7d"}))
        )
        .await,
        404
    );
    assert_eq!(
        bob("DELETE", format!("/patgate/api/v1/tokens/{id}"), None).await,
        404
    );
    assert_eq!(
        bob("POST", format!("/patgate/api/v1/tokens/{id}/rotate"), None).await,
        404
    );
    let list = as_user("GET", &gw.url(ACCOUNTS), "bob", "bob-pw", None).await;
    assert_eq!(list.json(), json!([]));
    // Owners cannot change the account; only administrators can.
    let put = as_user(
        "PUT",
        &gw.url(&format!("{ACCOUNTS}/nightly")),
        "alice",
        "alice-pw",
        Some(&json!({"owners": ["alice", "bob"]})),
    )
    .await;
    assert_eq!(put.status, 403);
    // alice sees hers and deletes its token.
    let list = as_user("GET", &gw.url(ACCOUNTS), "alice", "alice-pw", None).await;
    assert_eq!(list.json()[0]["name"], "nightly");
    assert_eq!(list.json()[0]["live_tokens"], 1);
    let deleted = as_user(
        "DELETE",
        &gw.url(&format!("/patgate/api/v1/tokens/{id}")),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(deleted.status, 204);
    gw.shutdown().await;
}

async fn bad_input_gets_a_clear_error_and_changes_nothing(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    for (body, code) in [
        (
            json!({"name": "x", "owners": []}),
            "invalid_service_account",
        ),
        (
            json!({"name": "x", "owners": ["nobody-known"]}),
            "invalid_service_account",
        ),
        (
            json!({"name": "x", "owners": ["x"]}),
            "invalid_service_account",
        ),
        (json!({"owners": ["alice"]}), "invalid_service_account"),
        (
            json!({"name": "a:b", "owners": ["alice"]}),
            "invalid_service_account",
        ),
        (
            json!({"name": "x", "owners": ["alice"], "description": "a\u{7}b"}),
            "invalid_service_account",
        ),
        (
            json!({"name": "x", "owners": ["alice"], "description": "d".repeat(501)}),
            "invalid_service_account",
        ),
        (
            json!({"name": "x", "owners": ["alice"], "extra": 1}),
            "invalid_body",
        ),
        // A person cannot become a service account.
        (
            json!({"name": "alice", "owners": ["bob"]}),
            "not_service_account",
        ),
    ] {
        let answer = admin(&gw, "POST", ACCOUNTS, Some(&body)).await;
        assert!(answer.status.as_u16() >= 400, "{body}: {:?}", answer.body);
        assert_eq!(answer.json()["error"], code, "{body}: {:?}", answer.body);
    }
    let made = admin(
        &gw,
        "POST",
        ACCOUNTS,
        Some(&json!({"name": "svc", "owners": ["alice"]})),
    )
    .await;
    assert_eq!(made.status, 201);
    let again = admin(
        &gw,
        "POST",
        ACCOUNTS,
        Some(&json!({"name": "SVC", "owners": ["bob"]})),
    )
    .await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    // A service account cannot own one.
    let nested = admin(
        &gw,
        "POST",
        ACCOUNTS,
        Some(&json!({"name": "svc2", "owners": ["svc"]})),
    )
    .await;
    assert_eq!(nested.json()["error"], "invalid_service_account");
    let rename = admin(
        &gw,
        "PUT",
        &format!("{ACCOUNTS}/svc"),
        Some(&json!({"name": "other", "owners": ["bob"]})),
    )
    .await;
    assert_eq!(rename.status, 422);
    // Not an administrator: refused.
    let by_alice = as_user(
        "POST",
        &gw.url(ACCOUNTS),
        "alice",
        "alice-pw",
        Some(&json!({"name": "y", "owners": ["alice"]})),
    )
    .await;
    assert_eq!(by_alice.status, 403);
    // Nothing changed: one account, alice its only owner, no stray account made.
    let all = admin(&gw, "GET", ACCOUNTS, None).await.json();
    assert_eq!(all.as_array().unwrap().len(), 1, "{all:?}");
    assert_eq!(
        all[0]["owners"],
        json!([{"username": "alice", "active": true}])
    );
    // A token through the account's route with a token as the credential is refused.
    let (_, alice_token) = gw.create_token("alice", "mine", Expiration::Days7).await;
    let with_token = post_with_token(&gw, &format!("{ACCOUNTS}/svc/tokens"), &alice_token).await;
    assert_eq!(with_token, 403);
    gw.shutdown().await;
}

async fn post_with_token(gw: &Gateway, path: &str, token: &str) -> u16 {
    common::api::call(
        "POST",
        &gw.url(path),
        &[("x-deploy-personal-token", token)],
        Some(&json!({"name": "t", "expiration": "7d"})),
    )
    .await
    .status
    .as_u16()
}

async fn the_command_line_makes_and_lists_accounts(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let run = |command| cli::run_admin(&gw.config, Admin::ServiceAccount(command));
    let made = run(ServiceAccountCommand::Create {
        name: "etl".into(),
        owners: vec!["alice".into()],
        description: "nightly loads".into(),
    })
    .await
    .unwrap();
    assert!(made.contains("etl  owners alice"), "{made}");
    let refused = run(ServiceAccountCommand::Create {
        name: "etl2".into(),
        owners: vec!["nobody-known".into()],
        description: String::new(),
    })
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("does not know this user"),
        "{refused}"
    );
    // A token made as the user, the usual way, belongs to the account.
    let (_, token) = gw.create_token("etl", "load", Expiration::Days7).await;
    assert_eq!(proxied(&gw, &token).await, 200);
    gw.set_disabled("alice", true).await;
    let listed = run(ServiceAccountCommand::List { json: false })
        .await
        .unwrap();
    assert!(listed.contains("alice (inactive)"), "{listed}");
    assert!(listed.contains("NO ACTIVE OWNER"), "{listed}");
    assert!(listed.contains("live tokens 1"), "{listed}");
    let api_view = admin(&gw, "GET", ACCOUNTS, None).await.json();
    assert_eq!(api_view[0]["description"], "nightly loads");
    let deleted = run(ServiceAccountCommand::Delete { name: "etl".into() })
        .await
        .unwrap();
    assert!(deleted.contains("1 tokens revoked"), "{deleted}");
    assert!(within(std::time::Duration::from_secs(1), || async {
        proxied(&gw, &token).await == 401
    })
    .await
    .is_some());
    gw.shutdown().await;
}
