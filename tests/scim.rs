//! SCIM 2.0 provisioning as an identity provider drives it, on SQLite and PostgreSQL:
//! a real compliance checker (scim2-cli, installed by scripts/scim-setup.sh), users
//! deactivated and deleted through SCIM losing their tokens on both request paths and
//! their sessions within a second, on one gateway and on two replicas, and bad input.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::api::{as_user, Session};
use common::oidc::request;
use common::scim::{okta_user, scim, scim_as, PATCH_SCHEMA, SECRET, USER_SCHEMA};
use common::*;
use patgate::core::token::Expiration;
use serde_json::json;

on_both_backends!(
    a_scim_compliance_checker_finds_the_user_and_group_endpoints_conforming,
    deactivation_and_deletion_stop_tokens_and_sessions_within_a_second,
    bad_input_gets_a_scim_error_and_changes_nothing,
);

async fn start(db: &TestDb) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let gw = Gateway::start(config(
        db,
        &upstream.url(),
        &[("PATGATE_SCIM__SECRET", SECRET)],
    ))
    .await;
    (upstream, gw)
}

/// The status a token request gets on the fast path and on the general path
/// (HTTP/1.0 takes the general one).
async fn both_paths(gw: &Gateway, token: &str) -> (u16, u16) {
    let fast = get(&gw.url("/x"), &[("x-deploy-personal-token", token)])
        .await
        .status
        .as_u16();
    let general = raw_status(
        gw.addr,
        format!("GET /x HTTP/1.0\r\nx-deploy-personal-token: {token}\r\n\r\n").as_bytes(),
    )
    .await
    .0;
    (fast, general)
}

async fn both_paths_become(gw: &Gateway, token: &str, status: u16) -> bool {
    within(Duration::from_secs(1), || async {
        both_paths(gw, token).await == (status, status)
    })
    .await
    .is_some()
}

async fn a_scim_compliance_checker_finds_the_user_and_group_endpoints_conforming(db: TestDb) {
    let (_upstream, gw) = start(&db).await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let scim2 = root.join("tests/scim/.venv/bin/scim2");
    if !scim2.exists() {
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/scim-setup.sh"))
            .status()
            .expect("bash runs scripts/scim-setup.sh");
        assert!(status.success(), "scripts/scim-setup.sh failed");
    }
    // The secret goes in the environment, not on a command line others can read.
    let out = tokio::process::Command::new(&scim2)
        .args(["--url", &gw.url("/patgate/scim/v2"), "test"])
        .env(
            "SCIM_CLI_HEADERS",
            format!("Authorization: Bearer {SECRET}"),
        )
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("the checker runs");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Each check is a line "STATUS check_name" followed by its reason.
    let lines: Vec<&str> = report.lines().collect();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let reason = lines.get(i + 1).copied().unwrap_or_default().trim();
        match line.split_once(' ') {
            Some(("SUCCESS", check)) => passed.push(check.to_string()),
            Some(("ERROR", check)) => failed.push(format!("{check}: {reason}")),
            _ => {}
        }
    }
    for check in [
        "service_provider_config_endpoint",
        "query_all_resource_types",
        "query_all_schemas",
        "object_creation",
        "object_query",
        "object_query_without_id",
        "object_list_with_attributes",
        "object_replacement",
        "object_deletion",
        "check_add_attribute",
        "check_replace_attribute",
        "check_remove_attribute",
    ] {
        assert!(
            passed.iter().any(|p| p == check),
            "{check} did not pass:\n{report}"
        );
    }
    // Groups are checked as Users are: made, found, replaced, patched and deleted.
    for done in [
        "created Group object",
        "replaced Group object",
        "deleted Group object",
    ] {
        assert!(report.contains(done), "no check {done}:\n{report}");
    }
    // The one refusal is deliberate: `active` cannot be removed, only set true or false.
    failed.retain(|f| !f.contains("Failed to remove attribute 'active'"));
    assert!(failed.is_empty(), "failed checks: {failed:#?}\n{report}");
    assert!(
        passed.len() >= 30,
        "only {} checks passed:\n{report}",
        passed.len()
    );
}

async fn deactivation_and_deletion_stop_tokens_and_sessions_within_a_second(db: TestDb) {
    let (upstream, gw) = start(&db).await;
    let base = gw.url("");

    let created = scim(&base, "POST", "/Users", Some(&okta_user("alice"))).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(
        created.headers["content-type"], "application/scim+json",
        "SCIM answers in its media type"
    );
    let user = created.json();
    let id = user["id"].as_str().unwrap().to_string();
    assert_eq!(user["userName"], "alice");
    assert_eq!(user["active"], true);
    assert_eq!(user["externalId"], "00u-alice");
    assert_eq!(user["emails"], json!([{"value": "alice@example.com"}]));
    assert_eq!(
        user["meta"]["location"],
        format!("{base}/patgate/scim/v2/Users/{id}")
    );
    assert_eq!(
        created.headers["location"],
        user["meta"]["location"].as_str().unwrap()
    );

    // Okta first looks the user up by name.
    let found = scim(
        &base,
        "GET",
        "/Users?filter=userName%20eq%20%22alice%22",
        None,
    )
    .await;
    assert_eq!(found.status, 200, "{:?}", found.body);
    assert_eq!(found.json()["totalResults"], 1);
    assert_eq!(found.json()["Resources"][0]["id"], id.as_str());

    let (_, token) = gw.create_token("alice", "ci", Expiration::Days30).await;
    assert_eq!(both_paths(&gw, &token).await, (200, 200));
    let session = Session::password(&base, "alice", "alice-pw").await;
    assert_eq!(
        session.send("GET", "/patgate/api/v1/me", None).await.status,
        200
    );

    // Okta deactivates: PATCH without a path.
    let deactivated = scim(
        &base,
        "PATCH",
        &format!("/Users/{id}"),
        Some(&json!({"schemas": [PATCH_SCHEMA],
                     "Operations": [{"op": "replace", "value": {"active": false}}]})),
    )
    .await;
    assert_eq!(deactivated.status, 200, "{:?}", deactivated.body);
    assert_eq!(deactivated.json()["active"], false);
    assert!(
        both_paths_become(&gw, &token, 401).await,
        "a deactivated user's token still worked after 1 s"
    );
    let seen_before = upstream.count();
    let refused = get(&gw.url("/x"), &[("x-deploy-personal-token", &token)]).await;
    assert_eq!(refused.error_code(), "user_disabled");
    assert_eq!(
        session.send("GET", "/patgate/api/v1/me", None).await.status,
        401,
        "the browser session ended"
    );
    assert_eq!(upstream.count(), seen_before, "nothing reached Deploy");
    let audit = as_user(
        "GET",
        &gw.url("/patgate/api/v1/audit?action=user.disabled&user=alice"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(audit.status, 200, "{:?}", audit.body);
    let entries = audit.json();
    assert!(
        entries.to_string().contains("scim"),
        "the audit log says SCIM disabled alice: {entries}"
    );

    // Azure AD reactivates: a path, and the boolean as a string.
    let reactivated = scim(
        &base,
        "PATCH",
        &format!("/Users/{id}"),
        Some(&json!({"schemas": [PATCH_SCHEMA],
                     "Operations": [{"op": "Replace", "path": "active", "value": "True"}]})),
    )
    .await;
    assert_eq!(reactivated.status, 200, "{:?}", reactivated.body);
    assert_eq!(reactivated.json()["active"], true);
    assert!(
        both_paths_become(&gw, &token, 200).await,
        "a reactivated user's token was still refused after 1 s"
    );

    // Deletion: the token stops, the resource is gone, and a new alice starts afresh.
    let deleted = scim(&base, "DELETE", &format!("/Users/{id}"), None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert!(
        both_paths_become(&gw, &token, 401).await,
        "a deleted user's token still worked after 1 s"
    );
    assert_eq!(
        scim(&base, "GET", &format!("/Users/{id}"), None)
            .await
            .status,
        404
    );
    let gone = scim(
        &base,
        "GET",
        "/Users?filter=userName%20eq%20%22alice%22",
        None,
    )
    .await;
    assert_eq!(gone.json()["totalResults"], 0);
    let again = scim(&base, "POST", "/Users", Some(&okta_user("alice"))).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert_ne!(again.json()["id"], id.as_str(), "a new resource");
    assert_eq!(again.json()["active"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        both_paths(&gw, &token).await,
        (401, 401),
        "the old token does not come back with the name"
    );
    gw.shutdown().await;
}

async fn bad_input_gets_a_scim_error_and_changes_nothing(db: TestDb) {
    // Without scim.secret, SCIM is not there at all.
    let upstream = Upstream::start().await;
    let off = Gateway::start(config(&db, &upstream.url(), &[])).await;
    let answer = scim(&off.url(""), "GET", "/Users", None).await;
    assert_eq!(answer.status, 404, "{:?}", answer.body);
    assert!(String::from_utf8_lossy(&answer.body).contains("scim.secret"));
    off.shutdown().await;

    let gw = Gateway::start(config(
        &db,
        &upstream.url(),
        &[("PATGATE_SCIM__SECRET", SECRET)],
    ))
    .await;
    let base = gw.url("");
    let user = scim(&base, "POST", "/Users", Some(&okta_user("alice")))
        .await
        .json();
    let id = user["id"].as_str().unwrap().to_string();
    let (_, token) = gw.create_token("alice", "ci", Expiration::Days30).await;
    let at = format!("/Users/{id}");
    let deactivate = json!({"schemas": [PATCH_SCHEMA],
                            "Operations": [{"op": "replace", "path": "active", "value": false}]});

    // No secret, a wrong one, an administrator's password: 401, as SCIM errors.
    let wrong = format!("Bearer {}", SECRET.replace('0', "1"));
    let admin = basic("admin", "admin-pw");
    for authorization in [None, Some(wrong.as_str()), Some(admin.as_str())] {
        let answer = scim_as(authorization, &base, "PATCH", &at, Some(&deactivate)).await;
        assert_eq!(answer.status, 401, "{authorization:?}: {:?}", answer.body);
        assert_eq!(
            answer.headers["www-authenticate"],
            "Bearer realm=\"patgate SCIM\""
        );
        assert_eq!(
            answer.json()["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert!(!String::from_utf8_lossy(&answer.body).contains(SECRET));
    }

    let expect = |answer: Answer, status: u16, scim_type: Option<&str>| {
        assert_eq!(answer.status, status, "{:?}", answer.body);
        let body = answer.json();
        assert_eq!(body["status"], status.to_string(), "{body}");
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{body}"
        );
        if let Some(scim_type) = scim_type {
            assert_eq!(body["scimType"], scim_type, "{body}");
        }
    };
    for filter in [
        "userName%20sw%20%22al%22",
        "emails%20eq%20%22alice%40example.com%22",
        "userName%20eq%20alice",
        "userName%20eq%20%22alice%22%20or%20userName%20eq%20%22bob%22",
    ] {
        let answer = scim(&base, "GET", &format!("/Users?filter={filter}"), None).await;
        expect(answer, 400, Some("invalidFilter"));
    }
    for method in ["GET", "PUT", "PATCH", "DELETE"] {
        let body = (method == "PUT" || method == "PATCH").then(|| match method {
            "PUT" => okta_user("nobody"),
            _ => deactivate.clone(),
        });
        let answer = scim(&base, method, "/Users/no-such-id", body.as_ref()).await;
        expect(answer, 404, None);
    }
    let bad_patches = [
        (
            json!({"Operations": [{"op": "replace", "path": "active", "value": "maybe"}]}),
            "invalidValue",
        ),
        // Valid at first, then a rename: nothing of it may be applied.
        (
            json!({"Operations": [
            {"op": "replace", "path": "active", "value": false},
            {"op": "replace", "path": "userName", "value": "mallory"}]}),
            "mutability",
        ),
        (
            json!({"Operations": [{"op": "remove", "path": "active"}]}),
            "mutability",
        ),
        (
            json!({"Operations": [{"op": "delete", "path": "active"}]}),
            "invalidSyntax",
        ),
        (
            json!({"Operations": [{"op": "replace", "path": "emails", "value": [{"value": "not an address"}]}]}),
            "invalidValue",
        ),
        (
            json!({"schemas": [USER_SCHEMA], "active": false}),
            "invalidSyntax",
        ),
    ];
    for (body, scim_type) in bad_patches {
        let answer = scim(&base, "PATCH", &at, Some(&body)).await;
        expect(answer, 400, Some(scim_type));
    }
    let mut renamed = okta_user("mallory");
    renamed["active"] = false.into();
    expect(
        scim(&base, "PUT", &at, Some(&renamed)).await,
        400,
        Some("mutability"),
    );
    expect(
        scim(&base, "POST", "/Users", Some(&okta_user("alice"))).await,
        409,
        Some("uniqueness"),
    );
    // One person is one user: a name that differs only in case or Unicode form is
    // the same name, found by a filter and refused as a new User.
    for variant in ["ALICE", "Alice", "\u{ff41}lice"] {
        let answer = scim(&base, "POST", "/Users", Some(&okta_user(variant))).await;
        let detail = answer.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(detail.contains("\"alice\""), "{variant}: {detail}");
        expect(answer, 409, Some("uniqueness"));
        let found = scim(
            &base,
            "GET",
            &format!(
                "/Users?filter=userName%20eq%20%22{}%22",
                common::oidc::percent_encode(variant)
            ),
            None,
        )
        .await
        .json();
        assert_eq!(found["totalResults"], 1, "{variant}: {found}");
        assert_eq!(found["Resources"][0]["userName"], "alice");
    }
    // Invisible formatting characters make one name read as another: refused.
    for sneaky in ["ad\u{200b}min", "bob\u{202e}"] {
        expect(
            scim(&base, "POST", "/Users", Some(&okta_user(sneaky))).await,
            400,
            Some("invalidValue"),
        );
    }
    let mut nameless = okta_user("x");
    nameless.as_object_mut().unwrap().remove("userName");
    expect(
        scim(&base, "POST", "/Users", Some(&nameless)).await,
        400,
        Some("invalidValue"),
    );
    let not_json = request(
        "POST",
        &format!("{base}/patgate/scim/v2/Users"),
        &[
            ("authorization", &format!("Bearer {SECRET}")),
            ("content-type", "application/scim+json"),
        ],
        Bytes::from_static(b"{\"userName\": "),
    )
    .await;
    expect(not_json, 400, Some("invalidSyntax"));

    // Nothing changed: alice is as provisioned and her token works on both paths.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(both_paths(&gw, &token).await, (200, 200));
    let now = scim(&base, "GET", &at, None).await.json();
    assert_eq!(now, user, "the user changed");
    let listed = scim(&base, "GET", "/Users", None).await.json();
    assert_eq!(listed["totalResults"], 1, "{listed}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_stop_a_deprovisioned_users_tokens_within_a_second() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let env = [("PATGATE_SCIM__SECRET", SECRET)];
    let one = Process::start_with_env(&file, &env).await;
    let two = Process::start_with_env(&file, &env).await;
    let created = scim(&one.url(""), "POST", "/Users", Some(&okta_user("alice"))).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let token = cli_token(&file, "alice", "ci", "30d").await;
    let header = [("x-deploy-personal-token", token.as_str())];
    let all_answer = |status: u16| {
        let header = &header;
        let replicas = [&one, &two];
        async move {
            for replica in replicas {
                let took = within(Duration::from_secs(1), || async {
                    get(&replica.url("/x"), header).await.status == status
                })
                .await;
                if took.is_none() {
                    return false;
                }
            }
            true
        }
    };
    assert!(all_answer(200).await);
    let patch = |active: bool| {
        json!({"schemas": [PATCH_SCHEMA],
               "Operations": [{"op": "replace", "value": {"active": active}}]})
    };
    // Deactivated through one replica: both refuse within a second.
    let answer = scim(
        &two.url(""),
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(false)),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(
        all_answer(401).await,
        "a replica accepted a deactivated user's token after 1 s"
    );
    let answer = scim(
        &one.url(""),
        "PATCH",
        &format!("/Users/{id}"),
        Some(&patch(true)),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(
        all_answer(200).await,
        "a replica refused a reactivated user's token after 1 s"
    );
    let answer = scim(&two.url(""), "DELETE", &format!("/Users/{id}"), None).await;
    assert_eq!(answer.status, 204);
    assert!(
        all_answer(401).await,
        "a replica accepted a deleted user's token after 1 s"
    );
    one.terminate().await;
    two.terminate().await;
}
