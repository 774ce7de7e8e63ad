//! The administrators' token inventory end to end, on SQLite and PostgreSQL: every
//! token of users and service accounts, filtered by owner, source, scope, state, expiry,
//! disuse and how it was made, sorted and paged; the CSV export, safe to open in a
//! spreadsheet; revocation of a selection and of every token, which every replica
//! refuses within a second; and the limit of active tokens per user, which holds
//! under concurrent creations and does not block rotation.

#[macro_use]
mod common;

use std::time::Duration;

use common::api::{as_user, Session};
use common::*;
use patgate::core::scope::Scope;
use patgate::core::time::now;
use patgate::store::NewToken;
use serde_json::{json, Value};

on_both_backends!(
    the_inventory_filters_sorts_and_pages_every_token,
    the_csv_export_holds_every_match_and_no_formula,
    selected_and_all_tokens_are_revoked_on_every_replica,
    the_limit_of_tokens_per_user_holds_and_rotation_passes,
);

const INVENTORY: &str = "/patgate/api/v1/token-inventory";
const TOKENS: &str = "/patgate/api/v1/tokens";
const DAY: i64 = 86_400;

async fn start(db: &TestDb) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(db, &upstream.url(), &[])).await;
    for (user, password) in [("alice", "alice-pw"), ("bob", "bob-pw")] {
        Session::password(&gw.url(""), user, password).await;
    }
    (upstream, gw)
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<&Value>) -> Answer {
    as_user(method, &gw.url(path), "admin", "admin-pw", body).await
}

/// Creates a token through the API with a password; returns the answer's JSON.
async fn made(gw: &Gateway, user: &str, body: Value) -> Value {
    let answer = as_user(
        "POST",
        &gw.url(TOKENS),
        user,
        &format!("{user}-pw"),
        Some(&body),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    answer.json()
}

/// The inventory under `query`: (sorted names, total).
async fn names(gw: &Gateway, query: &str) -> (Vec<String>, i64) {
    let (mut names, total) = listed(gw, query).await;
    names.sort();
    (names, total)
}

/// The inventory under `query`: (names in the order answered, total).
async fn listed(gw: &Gateway, query: &str) -> (Vec<String>, i64) {
    let answer = admin(gw, "GET", &format!("{INVENTORY}?{query}"), None).await;
    assert_eq!(answer.status, 200, "{query}: {:?}", answer.body);
    let body = answer.json();
    let names = body["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    (names, body["total"].as_i64().unwrap())
}

fn strings(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
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

/// Tokens of every kind: alice's through the API (read scope) and the pages, bob's
/// from the command line, a service account's, an exchanged one, an old expired one
/// and a revoked one.
async fn every_kind(gw: &Gateway) {
    made(
        gw,
        "alice",
        json!({"name": "api-read", "expiration": "7d", "scope": "read"}),
    )
    .await;
    let session = Session::password(&gw.url(""), "alice", "alice-pw")
        .await
        .with_csrf()
        .await;
    let paged = session
        .send(
            "POST",
            TOKENS,
            Some(&json!({"name": "from-page", "expiration": "30d"})),
        )
        .await;
    assert_eq!(paged.status, 201, "{:?}", paged.body);
    gw.create_token("bob", "from-cli", patgate::core::token::Expiration::Never)
        .await;
    let account = admin(
        gw,
        "POST",
        "/patgate/api/v1/service-accounts",
        Some(&json!({"name": "ci-bot", "owners": ["alice"]})),
    )
    .await;
    assert_eq!(account.status, 201, "{:?}", account.body);
    let robot = as_user(
        "POST",
        &gw.url("/patgate/api/v1/service-accounts/ci-bot/tokens"),
        "alice",
        "alice-pw",
        Some(&json!({"name": "robot", "expiration": "60d", "scope": "webhook"})),
    )
    .await;
    assert_eq!(robot.status, 201, "{:?}", robot.body);
    let api = gw.api().unwrap();
    patgate::tokens::issue::issue_exchanged(
        &api.store,
        &api.hasher,
        "bob",
        "pipeline",
        now(),
        600,
        Scope::Read,
        &[],
    )
    .await
    .unwrap();
    // Made 40 days ago with a 30-day expiry, never used.
    let old = now() - 40 * DAY;
    api.store
        .create_token_with(
            &NewToken {
                username: "bob",
                name: "old",
                created_at: old,
                expires_at: Some(old + 30 * DAY),
                ..NewToken::default()
            },
            &api.hasher.hash(b"dpat_old_for_the_inventory"),
        )
        .await
        .unwrap();
    let (gone, _) = gw
        .create_token("alice", "gone", patgate::core::token::Expiration::Days30)
        .await;
    gw.revoke(&gone).await;
}

async fn the_inventory_filters_sorts_and_pages_every_token(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    every_kind(&gw).await;

    let (all, total) = names(&gw, "").await;
    assert_eq!(total, 7, "{all:?}");
    assert!(
        all.iter().any(|n| n.starts_with("pipeline exchange")),
        "{all:?}"
    );

    assert_eq!(
        names(&gw, "owner=alice").await.0,
        strings(&["api-read", "from-page", "gone"])
    );
    assert_eq!(names(&gw, "source=service_account").await.0, ["robot"]);
    assert_eq!(names(&gw, "source=internal").await.1, 6, "persons only");
    assert_eq!(names(&gw, "scope=webhook").await.0, ["robot"]);
    assert_eq!(names(&gw, "state=revoked").await.0, ["gone"]);
    assert_eq!(names(&gw, "state=expired").await.0, ["old"]);
    assert_eq!(names(&gw, "state=active").await.1, 5);
    // Expiring within 10 days: the 7-day token and the 10-minute exchanged one.
    let (expiring, _) = names(&gw, "state=expiring&expires_within_days=10").await;
    assert_eq!(expiring.len(), 2, "{expiring:?}");
    assert!(expiring.contains(&"api-read".to_string()));
    assert_eq!(
        names(&gw, "expires_within_days=45").await.1,
        3,
        "7 days, 30 days and the exchanged one; not the expired or the revoked one"
    );
    // Unused for 30 days: only the old one (a token never used counts from creation).
    assert_eq!(names(&gw, "unused_for_days=30").await.0, ["old"]);
    assert_eq!(names(&gw, "made_by=page").await.0, ["from-page"]);
    assert_eq!(
        names(&gw, "made_by=cli").await.0,
        strings(&["from-cli", "gone"])
    );
    assert_eq!(
        names(&gw, "made_by=api").await.0,
        strings(&["api-read", "old", "robot"])
    );
    assert_eq!(names(&gw, "made_by=exchange").await.1, 1);
    assert_eq!(
        names(&gw, "owner=bob&state=active&made_by=cli").await.0,
        ["from-cli"]
    );

    // Sorted and paged: by name, two per page, the total of all pages.
    let (first, total) = listed(&gw, "sort=name&per_page=2&page=1").await;
    assert_eq!(total, 7);
    assert_eq!(first, ["api-read", "from-cli"]);
    let (second, _) = listed(&gw, "sort=name&per_page=2&page=2").await;
    assert_eq!(second, ["from-page", "gone"]);
    let (last, _) = listed(&gw, "sort=-name&per_page=1").await;
    assert_eq!(last, ["robot"]);
    let (soonest, _) = listed(&gw, "state=active&sort=expires_at").await;
    assert!(soonest[0].starts_with("pipeline exchange"), "{soonest:?}");
    assert_eq!(
        soonest.last().unwrap(),
        "from-cli",
        "never expiring sorts last"
    );

    // One row says what an administrator needs, and never the token.
    let answer = admin(&gw, "GET", &format!("{INVENTORY}?owner=ci-bot"), None).await;
    let row = &answer.json()["tokens"][0];
    assert_eq!(row["owner"], "ci-bot");
    assert_eq!(row["owner_source"], "service_account");
    assert_eq!(row["state"], "active");
    assert_eq!(row["scope"], "webhook");
    assert_eq!(row["made_by"], "api");
    assert_eq!(row["expires_in"]["label"], "60 days");
    assert!(row.get("token").is_none() && !String::from_utf8_lossy(&answer.body).contains("dpat_"));

    // Bad input: a clear error, nothing listed.
    for (query, says) in [
        ("state=asleep", "state \"asleep\""),
        ("source=robots", "service_account"),
        ("scope=all", "unknown scope"),
        ("made_by=fax", "unknown made_by"),
        ("sort=colour", "sort \"colour\""),
        ("unused_for_days=-1", "between 0 and 3650"),
        ("per_page=0", "per_page"),
        ("format=xml", "format"),
        ("colour=blue", "colour"),
    ] {
        let answer = admin(&gw, "GET", &format!("{INVENTORY}?{query}"), None).await;
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(answer.error_code(), "invalid_query", "{query}");
        assert!(
            answer.json()["message"].as_str().unwrap().contains(says),
            "{query}: {:?}",
            answer.body
        );
    }
    // Only administrators, and not with a token.
    let refused = as_user("GET", &gw.url(INVENTORY), "alice", "alice-pw", None).await;
    assert_eq!(refused.status, 403);
    let token = made(
        &gw,
        "admin",
        json!({"name": "admin-token", "expiration": "7d"}),
    )
    .await;
    let with_token = get(
        &gw.url(INVENTORY),
        &[("x-deploy-personal-token", token["token"].as_str().unwrap())],
    )
    .await;
    assert_eq!(with_token.status, 403);
}

async fn the_csv_export_holds_every_match_and_no_formula(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    every_kind(&gw).await;
    made(
        &gw,
        "bob",
        json!({"name": "=HYPERLINK(\"http://evil.example\",\"x\")", "expiration": "30d"}),
    )
    .await;
    made(
        &gw,
        "bob",
        json!({"name": "+1, -1 and @sum", "expiration": "30d"}),
    )
    .await;

    let answer = admin(
        &gw,
        "GET",
        &format!("{INVENTORY}?format=csv&owner=bob"),
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.headers["content-type"], "text/csv; charset=utf-8");
    assert!(answer.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("patgate-tokens.csv"));
    let text = String::from_utf8(answer.body.to_vec()).unwrap();
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("id,name,owner,owner_source,state,scope,made_by,created_at"));
    // bob: the command-line one, the exchanged one, the old one and these two.
    assert_eq!(lines.len(), 1 + 5, "{text}");
    assert!(
        text.contains(
            ",\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\",bob,internal,active,full,api,"
        ),
        "a formula is written as text: {text}"
    );
    assert!(text.contains(",\"'+1, -1 and @sum\",bob,"), "{text}");
    assert!(!text.contains("dpat_"), "never a token in the export");
    // The filters apply to the export as to the list, paging does not.
    let active = admin(
        &gw,
        "GET",
        &format!("{INVENTORY}?format=csv&state=active&per_page=1"),
        None,
    )
    .await;
    let rows = String::from_utf8_lossy(&active.body)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .count();
    assert_eq!(rows, 1 + names(&gw, "state=active").await.1 as usize);
}

async fn selected_and_all_tokens_are_revoked_on_every_replica(db: TestDb) {
    let (_upstream, one) = start(&db).await;
    let two = Gateway::start(one.config.clone()).await;
    let a = made(&one, "alice", json!({"name": "a", "expiration": "30d"})).await;
    let b = made(&one, "bob", json!({"name": "b", "expiration": "30d"})).await;
    let c = made(&one, "bob", json!({"name": "c", "expiration": "never"})).await;
    let secret = |t: &Value| t["token"].as_str().unwrap().to_string();
    let id = |t: &Value| t["id"].as_str().unwrap().to_string();
    // Cached on the second replica first.
    for t in [&a, &b, &c] {
        assert_eq!(proxied(&two, &secret(t)).await, 200);
    }

    // A selection: a and b, one twice, one that does not exist.
    let revoked = admin(
        &one,
        "POST",
        &format!("{INVENTORY}/revoke"),
        Some(&json!({"ids": [id(&a), id(&b), id(&a), "nosuchtoken"]})),
    )
    .await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    assert_eq!(revoked.json()["revoked"], 2);
    assert_eq!(revoked.json()["unknown"], json!(["nosuchtoken"]));
    for t in [&a, &b] {
        let refused = within(Duration::from_secs(1), || async {
            proxied(&two, &secret(t)).await == 401
        })
        .await;
        assert!(
            refused.is_some(),
            "the other replica still accepted a revoked token after 1 s"
        );
    }
    assert_eq!(proxied(&two, &secret(&c)).await, 200, "c was not selected");
    let again = admin(
        &one,
        "POST",
        &format!("{INVENTORY}/revoke"),
        Some(&json!({"ids": [id(&a)]})),
    )
    .await;
    assert_eq!(again.json()["revoked"], 0);
    assert_eq!(again.json()["already_revoked"], json!([id(&a)]));

    // Every token: refused without the typed confirmation, and nothing is lost.
    for (body, status, code) in [
        (json!({"all": true}), 422, "confirmation_required"),
        (
            json!({"all": true, "confirm": "yes"}),
            422,
            "confirmation_required",
        ),
        (
            json!({"all": true, "confirm": "revoke every token", "ids": [id(&c)]}),
            400,
            "invalid_selection",
        ),
        (json!({}), 400, "invalid_selection"),
        (json!({"ids": []}), 400, "invalid_selection"),
    ] {
        let answer = admin(&one, "POST", &format!("{INVENTORY}/revoke"), Some(&body)).await;
        assert_eq!(answer.status, status, "{body}");
        assert_eq!(answer.error_code(), code, "{body}");
    }
    assert_eq!(
        proxied(&two, &secret(&c)).await,
        200,
        "a refused request revokes nothing"
    );
    let bystander = as_user(
        "POST",
        &one.url(&format!("{INVENTORY}/revoke")),
        "alice",
        "alice-pw",
        Some(&json!({"all": true, "confirm": "revoke every token"})),
    )
    .await;
    assert_eq!(bystander.status, 403);

    let d = made(&one, "alice", json!({"name": "d", "expiration": "7d"})).await;
    assert_eq!(proxied(&two, &secret(&d)).await, 200);
    let everything = admin(
        &one,
        "POST",
        &format!("{INVENTORY}/revoke"),
        Some(&json!({"all": true, "confirm": "revoke every token"})),
    )
    .await;
    assert_eq!(everything.status, 200, "{:?}", everything.body);
    assert_eq!(everything.json()["revoked"], 2, "c and d were still active");
    for t in [&c, &d] {
        let refused = within(Duration::from_secs(1), || async {
            proxied(&two, &secret(t)).await == 401 && proxied(&one, &secret(t)).await == 401
        })
        .await;
        assert!(
            refused.is_some(),
            "a replica still accepted a token after revoke-all"
        );
    }
    assert_eq!(names(&one, "state=active").await.1, 0);
    // A token made afterwards works.
    let after = made(&one, "bob", json!({"name": "after", "expiration": "7d"})).await;
    assert_eq!(proxied(&two, &secret(&after)).await, 200);

    // Audited: each selected token, and the emergency once with its count.
    let audit = admin(&one, "GET", "/patgate/api/v1/audit?per_page=200", None).await;
    let entries = audit.json()["entries"].as_array().unwrap().clone();
    let deleted: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "token.deleted" && e["detail"]["via"] == "inventory")
        .collect();
    assert_eq!(deleted.len(), 2);
    let all: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == "token.revoked_all")
        .collect();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["actor"], "admin");
    assert_eq!(all[0]["detail"]["revoked"], 2);
    two.shutdown().await;
}

async fn the_limit_of_tokens_per_user_holds_and_rotation_passes(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    for wrong in [json!(0), json!(10_001), json!("3")] {
        let answer = admin(
            &gw,
            "PUT",
            "/patgate/api/v1/settings",
            Some(&json!({"max_tokens_per_user": wrong})),
        )
        .await;
        assert_eq!(answer.status, 400, "{wrong}: {:?}", answer.body);
    }
    let settings = admin(&gw, "GET", "/patgate/api/v1/settings", None).await;
    assert_eq!(
        settings.json()["max_tokens_per_user"],
        Value::Null,
        "nothing changed"
    );
    let set = admin(
        &gw,
        "PUT",
        "/patgate/api/v1/settings",
        Some(&json!({"max_tokens_per_user": 2})),
    )
    .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(set.json()["max_tokens_per_user"], 2);

    let first = made(&gw, "alice", json!({"name": "one", "expiration": "30d"})).await;
    made(&gw, "alice", json!({"name": "two", "expiration": "30d"})).await;
    let third = as_user(
        "POST",
        &gw.url(TOKENS),
        "alice",
        "alice-pw",
        Some(&json!({"name": "three", "expiration": "30d"})),
    )
    .await;
    assert_eq!(third.status, 409, "{:?}", third.body);
    assert_eq!(third.error_code(), "token_limit_reached");
    assert!(third.json()["message"]
        .as_str()
        .unwrap()
        .contains("2 active tokens, the most an administrator allows"));
    let (listed, _) = names(&gw, "owner=alice").await;
    assert_eq!(
        listed,
        strings(&["one", "two"]),
        "the refused token was not made"
    );
    // Rotation replaces a token: not blocked.
    let rotated = as_user(
        "POST",
        &gw.url(&format!(
            "{TOKENS}/{}/rotate",
            first["id"].as_str().unwrap()
        )),
        "alice",
        "alice-pw",
        Some(&json!({"grace": "1h"})),
    )
    .await;
    assert_eq!(rotated.status, 201, "{:?}", rotated.body);
    // The command line keeps the same limit.
    let cli = patgate::cli::run_admin(
        &gw.config,
        patgate::cli::Admin::Token(patgate::cli::TokenCommand::Create(
            patgate::cli::CreateArgs {
                user: "alice".into(),
                name: "from-cli".into(),
                expires: patgate::core::token::Expiration::Days7,
                source: patgate::store::UserSource::Internal,
                email: None,
                scope: Default::default(),
                allow_from: Vec::new(),
                json: true,
            },
        )),
    )
    .await;
    assert!(
        cli.unwrap_err().to_string().contains("max_tokens_per_user"),
        "the command line is refused too"
    );

    // Side by side: of five creations for bob at once, exactly two pass.
    let mut tries = tokio::task::JoinSet::new();
    for i in 0..5 {
        let url = gw.url(TOKENS);
        tries.spawn(async move {
            as_user(
                "POST",
                &url,
                "bob",
                "bob-pw",
                Some(&json!({"name": format!("race-{i}"), "expiration": "7d"})),
            )
            .await
            .status
            .as_u16()
        });
    }
    let statuses = tries.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        3,
        "{statuses:?}"
    );

    // Lifted: creation works again.
    let lifted = admin(
        &gw,
        "PUT",
        "/patgate/api/v1/settings",
        Some(&json!({"max_tokens_per_user": null})),
    )
    .await;
    assert_eq!(lifted.json()["max_tokens_per_user"], Value::Null);
    made(&gw, "alice", json!({"name": "three", "expiration": "30d"})).await;
}
