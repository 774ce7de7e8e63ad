//! SCIM Groups as Okta and Entra ID push them, on SQLite and PostgreSQL, with the
//! gateway telling Deploy who a token's user is by JWT: each membership change (create,
//! Okta and Entra PATCHes, PUT, DELETE) reaches the `groups` claim within a second, on
//! one gateway and on two replicas; PATCHes of one group sent at once all take effect;
//! membership of an `sso.admin_roles` group makes an administrator; bad input gets a
//! SCIM error and changes nothing.

#[macro_use]
mod common;

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use common::api::as_user;
use common::oidc::{percent_encode, request};
use common::scim::{okta_user, scim, scim_as, PATCH_SCHEMA, SECRET};
use common::*;
use serde_json::{json, Value};

on_both_backends!(
    membership_patches_reach_the_jwt_within_a_second,
    patches_of_one_group_at_once_all_take_effect,
    bad_group_input_gets_a_scim_error_and_changes_nothing,
);

const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The group `sso.admin_roles` names in these tests.
const ADMINS: &str = "patgate-admins";

/// JWT identity mode and the SCIM secret, as environment overrides.
fn jwt_env(db: &TestDb) -> Vec<(&'static str, String)> {
    let key_file = db.dir.path().join("jwt.key");
    vec![
        ("PATGATE_SCIM__SECRET", SECRET.to_string()),
        ("PATGATE_UPSTREAM__IDENTITY__MODE", "jwt".into()),
        (
            "PATGATE_UPSTREAM__IDENTITY__JWT__KEY_FILE",
            key_file.to_str().unwrap().to_string(),
        ),
        (
            "PATGATE_UPSTREAM__IDENTITY__JWT__AUDIENCE",
            "deploy-test".into(),
        ),
        ("PATGATE_UPSTREAM__IDENTITY__JWT__ALGORITHM", "EdDSA".into()),
    ]
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The gateway in JWT mode with SCIM on; `admin_roles` also configures SSO (with a
/// provider that is never asked: SCIM users sign in nowhere here) so that
/// `sso.admin_roles` applies.
async fn start(db: &TestDb, admin_roles: bool) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let mut env = jwt_env(db);
    if admin_roles {
        env.extend([
            ("PATGATE_SSO__ISSUER", "http://127.0.0.1:9".to_string()),
            ("PATGATE_SSO__CLIENT_ID", "patgate".into()),
            ("PATGATE_SSO__CLIENT_SECRET", "client-secret".into()),
            (
                "PATGATE_SSO__REDIRECT_URL",
                "http://127.0.0.1:9/patgate/sso/callback".into(),
            ),
            ("PATGATE_SSO__REVALIDATE_EVERY", "off".into()),
            ("PATGATE_SSO__ADMIN_ROLES", ADMINS.into()),
        ]);
    }
    let gw = Gateway::start(config(db, &upstream.url(), &borrowed(&env))).await;
    (upstream, gw)
}

/// A token for `user` made with the command line, on the gateway's database.
async fn token_for(db: &TestDb, upstream: &Upstream, user: &str) -> String {
    let file = config_file(db, &upstream.url(), "127.0.0.1:0");
    cli_token(&file, user, "ci", "30d").await
}

/// Provisions a user as Okta does; returns their SCIM id.
async fn provision(base: &str, username: &str) -> String {
    let created = scim(base, "POST", "/Users", Some(&okta_user(username))).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    created.json()["id"].as_str().unwrap().to_string()
}

/// A Group with these members (by User id), as Okta pushes it.
fn group(name: &str, members: &[&str]) -> Value {
    let members: Vec<Value> = members.iter().map(|id| json!({"value": id})).collect();
    json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members})
}

/// Creates a group; returns its id.
async fn create_group(base: &str, name: &str, members: &[&str]) -> String {
    let created = scim(base, "POST", "/Groups", Some(&group(name, members))).await;
    assert_eq!(created.status, 201, "{name}: {:?}", created.body);
    let body = created.json();
    assert_eq!(body["displayName"], name);
    let ids: Vec<&str> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(ids, members, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn patch_body(operations: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": operations})
}

/// Sends a PATCH that must succeed; returns the group's answer.
async fn patch_group(base: &str, id: &str, operations: Value) -> Value {
    let answer = scim(
        base,
        "PATCH",
        &format!("/Groups/{id}"),
        Some(&patch_body(operations.clone())),
    )
    .await;
    assert_eq!(answer.status, 200, "{operations}: {:?}", answer.body);
    answer.json()
}

/// Okta adds a member: `add` with path `members` and a value list.
fn okta_add(user_id: &str) -> Value {
    json!([{"op": "add", "path": "members", "value": [{"value": user_id, "display": "alice"}]}])
}

/// Okta removes a member by a filter in the path.
fn okta_remove(user_id: &str) -> Value {
    json!([{"op": "remove", "path": format!("members[value eq \"{user_id}\"]")}])
}

/// Entra ID adds a member: as Okta does, with its own spelling of the op.
fn entra_add(user_id: &str) -> Value {
    json!([{"op": "Add", "path": "members", "value": [{"value": user_id}]}])
}

/// Entra ID removes a member by naming it in the value.
fn entra_remove(user_id: &str) -> Value {
    json!([{"op": "Remove", "path": "members", "value": [{"value": user_id}]}])
}

/// The JWT Deploy received for one token request through the gateway at `base`;
/// `None` when the request did not reach Deploy with one.
async fn jwt_for(upstream: &Upstream, base: &str, token: &str) -> Option<String> {
    let before = upstream.count();
    let answer = get(
        &format!("{base}/deployit/repository/ci/x"),
        &[("authorization", &basic("", token))],
    )
    .await;
    if answer.status != 200 || upstream.count() == before {
        return None;
    }
    let seen = upstream.last();
    let bearer = seen.headers.get("authorization")?.to_str().ok()?;
    bearer.strip_prefix("Bearer ").map(str::to_string)
}

/// The `groups` claim of a JWT.
fn groups_in(jwt: &str) -> Value {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let payload = URL_SAFE_NO_PAD
        .decode(jwt.split('.').nth(1).expect("a JWT has a payload"))
        .unwrap();
    let claims: Value = serde_json::from_slice(&payload).unwrap();
    claims["groups"].clone()
}

/// Waits up to a second for the JWT Deploy receives through `base` to carry exactly
/// `roles`; the JWT that did, or what the last one carried.
async fn jwt_carries(
    upstream: &Upstream,
    base: &str,
    token: &str,
    roles: &[&str],
) -> Result<String, String> {
    let wanted = json!(roles);
    let last: Mutex<Option<String>> = Mutex::new(None);
    let took = within(Duration::from_secs(1), || async {
        let jwt = jwt_for(upstream, base, token).await;
        let carries = jwt.as_deref().is_some_and(|j| groups_in(j) == wanted);
        *last.lock().unwrap() = jwt;
        carries
    })
    .await;
    let last = last.into_inner().unwrap();
    match (took, last) {
        (Some(_), Some(jwt)) => Ok(jwt),
        (_, last) => Err(format!(
            "after 1 s Deploy's JWT carried {:?}, not {wanted}",
            last.as_deref().map(groups_in)
        )),
    }
}

async fn admin_get(gw: &Gateway, path: &str) -> Value {
    let answer = as_user("GET", &gw.url(path), "admin", "admin-pw", None).await;
    assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    answer.json()
}

/// alice's `user.roles_changed` entries in the audit log.
async fn roles_changes(gw: &Gateway) -> Vec<Value> {
    let audit = admin_get(
        gw,
        "/patgate/api/v1/audit?action=user.roles_changed&user=alice",
    )
    .await;
    audit["entries"].as_array().unwrap().clone()
}

async fn membership_patches_reach_the_jwt_within_a_second(db: TestDb) {
    let (upstream, gw) = start(&db, true).await;
    let base = gw.url("");
    let alice = provision(&base, "alice").await;
    let token = token_for(&db, &upstream, "alice").await;
    let ungrouped = jwt_carries(&upstream, &base, &token, &[]).await.unwrap();

    // Okta pushes a group with alice in it.
    let deployers = create_group(&base, "deployers", &[&alice]).await;
    let first = jwt_carries(&upstream, &base, &token, &["deployers"])
        .await
        .unwrap();
    assert_ne!(first, ungrouped);
    // Unchanged roles: the same JWT again (so a new one below is the change's doing).
    assert_eq!(
        jwt_for(&upstream, &base, &token).await.as_deref(),
        Some(first.as_str())
    );

    // A second group, and alice added to it by an Okta PATCH.
    let managers = create_group(&base, "release-managers", &[]).await;
    let patched = patch_group(&base, &managers, okta_add(&alice)).await;
    assert_eq!(patched["members"][0]["value"], alice.as_str(), "{patched}");
    let both = jwt_carries(&upstream, &base, &token, &["deployers", "release-managers"])
        .await
        .unwrap();
    assert_ne!(both, first, "a JWT minted for the old roles was reused");

    // The User resource shows her groups.
    let user = scim(&base, "GET", &format!("/Users/{alice}"), None)
        .await
        .json();
    let groups: Vec<(&str, &str)> = user["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups: {user}"))
        .iter()
        .map(|g| (g["value"].as_str().unwrap(), g["display"].as_str().unwrap()))
        .collect();
    assert_eq!(
        groups,
        [
            (deployers.as_str(), "deployers"),
            (managers.as_str(), "release-managers")
        ]
    );

    // Okta removes her by a filter in the path.
    let patched = patch_group(&base, &managers, okta_remove(&alice)).await;
    assert_eq!(patched["members"], json!([]));
    let removed = jwt_carries(&upstream, &base, &token, &["deployers"])
        .await
        .unwrap();
    assert_ne!(removed, both, "a JWT minted for the old roles was reused");

    // Entra ID adds her, and removes her by naming her in the value.
    patch_group(&base, &managers, entra_add(&alice)).await;
    jwt_carries(&upstream, &base, &token, &["deployers", "release-managers"])
        .await
        .unwrap();
    let patched = patch_group(&base, &managers, entra_remove(&alice)).await;
    assert_eq!(patched["members"], json!([]));
    jwt_carries(&upstream, &base, &token, &["deployers"])
        .await
        .unwrap();

    // A replace without a path puts her back; a PUT with no members takes her out.
    patch_group(
        &base,
        &managers,
        json!([{"op": "replace", "value": {
            "id": managers, "displayName": "release-managers", "members": [{"value": alice}]}}]),
    )
    .await;
    jwt_carries(&upstream, &base, &token, &["deployers", "release-managers"])
        .await
        .unwrap();
    let replaced = scim(
        &base,
        "PUT",
        &format!("/Groups/{managers}"),
        Some(&group("release-managers", &[])),
    )
    .await;
    assert_eq!(replaced.status, 200, "{:?}", replaced.body);
    assert_eq!(replaced.json()["members"], json!([]));
    jwt_carries(&upstream, &base, &token, &["deployers"])
        .await
        .unwrap();

    // The group sso.admin_roles names makes her an administrator, and only while she
    // is in it.
    let user = admin_get(&gw, "/patgate/api/v1/users/alice").await;
    assert_eq!(user["admin"], false, "{user}");
    let admins = create_group(&base, ADMINS, &[&alice]).await;
    let user = admin_get(&gw, "/patgate/api/v1/users/alice").await;
    assert_eq!(user["admin"], true, "{user}");
    assert_eq!(user["sso"]["roles"], json!(["deployers", ADMINS]), "{user}");
    jwt_carries(&upstream, &base, &token, &["deployers", ADMINS])
        .await
        .unwrap();
    patch_group(&base, &admins, okta_remove(&alice)).await;
    let user = admin_get(&gw, "/patgate/api/v1/users/alice").await;
    assert_eq!(user["admin"], false, "{user}");
    jwt_carries(&upstream, &base, &token, &["deployers"])
        .await
        .unwrap();

    // A deleted group's role is gone.
    let deleted = scim(&base, "DELETE", &format!("/Groups/{deployers}"), None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let none = jwt_carries(&upstream, &base, &token, &[]).await.unwrap();
    assert_ne!(none, removed);
    assert_eq!(
        scim(&base, "GET", &format!("/Groups/{deployers}"), None)
            .await
            .status,
        404
    );
    let user = scim(&base, "GET", &format!("/Users/{alice}"), None)
        .await
        .json();
    assert!(user.get("groups").is_none(), "{user}");
    let user = admin_get(&gw, "/patgate/api/v1/users/alice").await;
    assert_eq!(user["sso"]["roles"], json!([]), "{user}");

    // Every change is audited as SCIM's, with what it was and what it became.
    let entries = roles_changes(&gw).await;
    assert!(
        entries.iter().all(|e| e["detail"]["source"] == "scim"),
        "{entries:#?}"
    );
    for (from, to, admin) in [
        (json!([]), json!(["deployers"]), false),
        (
            json!(["deployers"]),
            json!(["deployers", "release-managers"]),
            false,
        ),
        (
            json!(["deployers", "release-managers"]),
            json!(["deployers"]),
            false,
        ),
        (json!(["deployers"]), json!(["deployers", ADMINS]), true),
        (json!(["deployers", ADMINS]), json!(["deployers"]), false),
        (json!(["deployers"]), json!([]), false),
    ] {
        assert!(
            entries.iter().any(|e| e["detail"]["from"] == from
                && e["detail"]["to"] == to
                && e["detail"]["admin"] == admin),
            "no user.roles_changed from {from} to {to} (admin {admin}): {entries:#?}"
        );
    }
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_postgres_carry_membership_changes_within_a_second() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let upstream = Upstream::start().await;
    let file = config_file(&db, &upstream.url(), "127.0.0.1:0");
    let env = jwt_env(&db);
    let one = Process::start_with_env(&file, &borrowed(&env)).await;
    let two = Process::start_with_env(&file, &borrowed(&env)).await;
    let alice = provision(&one.url(""), "alice").await;
    let token = cli_token(&file, "alice", "ci", "30d").await;
    let both_carry = |roles: &'static [&'static str]| {
        let (upstream, token) = (&upstream, &token);
        let replicas = [&one, &two];
        async move {
            for replica in replicas {
                if let Err(e) = jwt_carries(upstream, &replica.url(""), token, roles).await {
                    return Err(format!("replica {}: {e}", replica.addr));
                }
            }
            Ok(())
        }
    };

    let deployers = create_group(&one.url(""), "deployers", &[&alice]).await;
    both_carry(&["deployers"]).await.unwrap();
    // Added through one replica, removed through the other, each seen by both.
    let managers = create_group(&two.url(""), "release-managers", &[]).await;
    patch_group(&two.url(""), &managers, okta_add(&alice)).await;
    both_carry(&["deployers", "release-managers"])
        .await
        .unwrap();
    patch_group(&one.url(""), &managers, okta_remove(&alice)).await;
    both_carry(&["deployers"]).await.unwrap();
    patch_group(&two.url(""), &deployers, entra_remove(&alice)).await;
    both_carry(&[]).await.unwrap();
    one.terminate().await;
    two.terminate().await;
}

/// Sends these PATCHes of one group all at once; their statuses.
async fn at_once(base: &str, id: &str, operations: Vec<Value>) -> Vec<u16> {
    let sent: Vec<_> = operations
        .into_iter()
        .map(|operations| {
            let (base, path) = (base.to_string(), format!("/Groups/{id}"));
            tokio::spawn(async move {
                scim(&base, "PATCH", &path, Some(&patch_body(operations)))
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for answer in sent {
        statuses.push(answer.await.unwrap());
    }
    statuses
}

async fn patches_of_one_group_at_once_all_take_effect(db: TestDb) {
    let (_upstream, gw) = start(&db, false).await;
    let base = gw.url("");
    let names: Vec<String> = (1..=8).map(|i| format!("user{i}")).collect();
    let mut ids = Vec::new();
    for name in &names {
        ids.push(provision(&base, name).await);
    }
    let team = create_group(&base, "team", &[]).await;
    let roles_of_all = || async {
        let mut all = Vec::new();
        for name in &names {
            let user = admin_get(&gw, &format!("/patgate/api/v1/users/{name}")).await;
            all.push(user["sso"]["roles"].clone());
        }
        all
    };

    // As Okta pushes a group: one PATCH per member, sent together.
    let statuses = at_once(&base, &team, ids.iter().map(|id| okta_add(id)).collect()).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let group = scim(&base, "GET", &format!("/Groups/{team}"), None)
        .await
        .json();
    assert_eq!(
        group["members"].as_array().unwrap().len(),
        ids.len(),
        "a member was lost: {group}"
    );
    assert_eq!(roles_of_all().await, vec![json!(["team"]); names.len()]);

    let statuses = at_once(
        &base,
        &team,
        ids.iter().map(|id| entra_remove(id)).collect(),
    )
    .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let group = scim(&base, "GET", &format!("/Groups/{team}"), None)
        .await
        .json();
    assert_eq!(group["members"], json!([]), "a removal was lost");
    assert_eq!(roles_of_all().await, vec![json!([]); names.len()]);

    // A delete while members are added: whoever was in the group loses its role.
    let statuses = at_once(&base, &team, ids.iter().map(|id| okta_add(id)).collect()).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let deleted = scim(&base, "DELETE", &format!("/Groups/{team}"), None).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    assert_eq!(roles_of_all().await, vec![json!([]); names.len()]);
    gw.shutdown().await;
}

/// Asserts a SCIM error answer: its status, in the body as a string too, and its
/// `scimType` (`None`: the answer has none, as for 401 and 404).
fn refused(answer: Answer, status: u16, scim_type: Option<&str>, what: &str) {
    assert_eq!(answer.status, status, "{what}: {:?}", answer.body);
    assert_eq!(
        answer.headers["content-type"], "application/scim+json",
        "{what}"
    );
    let body = answer.json();
    assert_eq!(body["schemas"], json!([ERROR_SCHEMA]), "{what}: {body}");
    assert_eq!(body["status"], status.to_string(), "{what}: {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {body}"
    );
    match scim_type {
        Some(scim_type) => assert_eq!(body["scimType"], scim_type, "{what}: {body}"),
        None => assert!(body.get("scimType").is_none(), "{what}: {body}"),
    }
}

/// A request with raw bytes as its body and the SCIM secret.
async fn raw_scim(base: &str, method: &str, path: &str, body: &'static [u8]) -> Answer {
    request(
        method,
        &format!("{base}/patgate/scim/v2{path}"),
        &[
            ("authorization", &format!("Bearer {SECRET}")),
            ("content-type", "application/scim+json"),
        ],
        Bytes::from_static(body),
    )
    .await
}

async fn bad_group_input_gets_a_scim_error_and_changes_nothing(db: TestDb) {
    let (upstream, gw) = start(&db, false).await;
    let base = gw.url("");
    let alice = provision(&base, "alice").await;
    let token = token_for(&db, &upstream, "alice").await;
    let deployers = create_group(&base, "deployers", &[&alice]).await;
    let ops = create_group(&base, "ops", &[]).await;
    jwt_carries(&upstream, &base, &token, &["deployers"])
        .await
        .unwrap();
    let at = format!("/Groups/{deployers}");
    let snapshot = |path: String| {
        let base = &base;
        async move { scim(base, "GET", &path, None).await.json() }
    };
    let deployers_before = snapshot(at.clone()).await;
    let ops_before = snapshot(format!("/Groups/{ops}")).await;
    let list_before = snapshot("/Groups".into()).await;
    let user_before = snapshot(format!("/Users/{alice}")).await;
    assert_eq!(list_before["totalResults"], 2, "{list_before}");
    let audited_before = roles_changes(&gw).await.len();

    // No secret, a wrong one, an administrator's password: 401 on every route.
    let wrong = format!("Bearer {}", SECRET.replace('0', "1"));
    let admin = basic("admin", "admin-pw");
    let remove_alice = patch_body(okta_remove(&alice));
    for authorization in [None, Some(wrong.as_str()), Some(admin.as_str())] {
        for (method, path, body) in [
            ("GET", "/Groups".to_string(), None),
            ("GET", at.clone(), None),
            ("PATCH", at.clone(), Some(&remove_alice)),
            ("PUT", at.clone(), Some(&group("deployers", &[]))),
            ("DELETE", at.clone(), None),
            ("POST", "/Groups".to_string(), Some(&group("new", &[]))),
        ] {
            let answer = scim_as(authorization, &base, method, &path, body).await;
            assert_eq!(
                answer.headers["www-authenticate"],
                "Bearer realm=\"patgate SCIM\""
            );
            refused(
                answer,
                401,
                None,
                &format!("{method} {path} with {authorization:?}"),
            );
        }
    }

    // Members that are no User of this server, on create, PUT and PATCH; in a PATCH
    // after a valid operation, which is not applied either.
    refused(
        scim(
            &base,
            "POST",
            "/Groups",
            Some(&group("new", &[&alice, "no-such-user"])),
        )
        .await,
        400,
        Some("invalidValue"),
        "create with an unknown member",
    );
    refused(
        scim(
            &base,
            "PUT",
            &at,
            Some(&group("deployers", &["no-such-user"])),
        )
        .await,
        400,
        Some("invalidValue"),
        "PUT with an unknown member",
    );
    for operations in [
        okta_add("no-such-user"),
        json!([{"op": "replace", "path": "members", "value": [{"value": "no-such-user"}]}]),
        json!([
            {"op": "remove", "path": format!("members[value eq \"{alice}\"]")},
            {"op": "add", "path": "members", "value": [{"value": "no-such-user"}]},
        ]),
        json!([{"op": "add", "value": {"members": [{"value": "no-such-user"}]}}]),
    ] {
        refused(
            scim(&base, "PATCH", &at, Some(&patch_body(operations.clone()))).await,
            400,
            Some("invalidValue"),
            &format!("PATCH {operations}"),
        );
    }

    // Paths this server does not take, alone or after a valid operation.
    for path in [
        "members[value eq".to_string(),
        format!("members[value eq \"{alice}\""),
        format!("members[value eq \"{alice}\"].display"),
        "members[display eq \"alice\"]".to_string(),
        format!("members[value co \"{alice}\"]"),
        "members.foo".to_string(),
        "nonsense".to_string(),
        "id".to_string(),
        String::new(),
    ] {
        for operations in [
            json!([{"op": "remove", "path": path}]),
            json!([
                {"op": "remove", "path": format!("members[value eq \"{alice}\"]")},
                {"op": "remove", "path": path},
            ]),
            json!([{"op": "add", "path": path, "value": [{"value": alice}]}]),
        ] {
            refused(
                scim(&base, "PATCH", &at, Some(&patch_body(operations.clone()))).await,
                400,
                Some("invalidPath"),
                &format!("PATCH {operations}"),
            );
        }
    }
    // A member filter names whom to remove, not whom to add.
    refused(
        scim(
            &base,
            "PATCH",
            &format!("/Groups/{ops}"),
            Some(&patch_body(json!([{"op": "add",
                "path": format!("members[value eq \"{alice}\"]"), "value": [{"value": alice}]}]))),
        )
        .await,
        400,
        Some("invalidPath"),
        "add with a member filter",
    );
    for (operations, scim_type) in [
        (json!([{"op": "remove"}]), "noTarget"),
        (
            json!([{"op": "remove", "path": "displayName"}]),
            "mutability",
        ),
        (
            json!([{"op": "delete", "path": "members", "value": [{"value": alice}]}]),
            "invalidSyntax",
        ),
        (json!([{"op": "add", "path": "members"}]), "invalidValue"),
        (
            json!([{"op": "replace", "path": "members", "value": "alice"}]),
            "invalidValue",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": " deployers"}]),
            "invalidValue",
        ),
        (
            json!([{"op": "replace", "path": "displayName", "value": 7}]),
            "invalidValue",
        ),
    ] {
        refused(
            scim(&base, "PATCH", &at, Some(&patch_body(operations.clone()))).await,
            400,
            Some(scim_type),
            &format!("PATCH {operations}"),
        );
    }

    // Filters other than displayName eq "…".
    for filter in [
        "displayName co \"x\"".to_string(),
        "displayName sw \"dep\"".to_string(),
        format!("id eq \"{deployers}\""),
        "externalId eq \"x\"".to_string(),
        "members.value eq \"x\"".to_string(),
        "displayName eq deployers".to_string(),
        "displayName eq \"deployers\" or displayName eq \"ops\"".to_string(),
        "displayName pr".to_string(),
    ] {
        refused(
            scim(
                &base,
                "GET",
                &format!("/Groups?filter={}", percent_encode(&filter)),
                None,
            )
            .await,
            400,
            Some("invalidFilter"),
            &format!("filter {filter}"),
        );
    }

    // Names taken, in any case: on create, by PUT, by PATCH.
    for name in ["deployers", "DEPLOYERS", "Ops"] {
        refused(
            scim(&base, "POST", "/Groups", Some(&group(name, &[]))).await,
            409,
            Some("uniqueness"),
            &format!("create {name}"),
        );
    }
    refused(
        scim(&base, "PUT", &at, Some(&group("ops", &[]))).await,
        409,
        Some("uniqueness"),
        "rename onto ops by PUT",
    );
    refused(
        scim(
            &base,
            "PATCH",
            &at,
            Some(&patch_body(json!([
                {"op": "remove", "path": format!("members[value eq \"{alice}\"]")},
                {"op": "replace", "path": "displayName", "value": "OPS"},
            ]))),
        )
        .await,
        409,
        Some("uniqueness"),
        "rename onto ops by PATCH",
    );

    // Bodies that are no Group or no PatchOp.
    for (method, path, body) in [
        (
            "POST",
            "/Groups".to_string(),
            b"{\"displayName\": ".as_slice(),
        ),
        ("POST", "/Groups".to_string(), b"[]"),
        ("PUT", at.clone(), b"not json"),
        (
            "PATCH",
            at.clone(),
            b"{\"Operations\": [{\"op\": \"remove\"",
        ),
        ("PATCH", at.clone(), b"\"remove\""),
    ] {
        refused(
            raw_scim(&base, method, &path, body).await,
            400,
            Some("invalidSyntax"),
            &format!("{method} {path} {}", String::from_utf8_lossy(body)),
        );
    }
    for (method, body, scim_type) in [
        ("POST", json!({"schemas": [GROUP_SCHEMA]}), "invalidValue"),
        (
            "POST",
            json!({"schemas": [GROUP_SCHEMA], "displayName": ""}),
            "invalidValue",
        ),
        (
            "POST",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "new", "members": "alice"}),
            "invalidValue",
        ),
        (
            "POST",
            json!({"schemas": [GROUP_SCHEMA], "displayName": "new", "members": [{"display": "alice"}]}),
            "invalidValue",
        ),
        (
            "PUT",
            json!({"schemas": [GROUP_SCHEMA], "members": []}),
            "invalidValue",
        ),
        (
            "PATCH",
            json!({"schemas": [GROUP_SCHEMA], "Operations": okta_remove(&alice)}),
            "invalidSyntax",
        ),
        (
            "PATCH",
            json!({"schemas": [PATCH_SCHEMA], "Operations": {"op": "remove", "path": "members"}}),
            "invalidSyntax",
        ),
        ("PATCH", json!({"schemas": [PATCH_SCHEMA]}), "invalidSyntax"),
    ] {
        let path = if method == "POST" { "/Groups" } else { &at };
        refused(
            scim(&base, method, path, Some(&body)).await,
            400,
            Some(scim_type),
            &format!("{method} {body}"),
        );
    }
    let as_text = request(
        "POST",
        &format!("{base}/patgate/scim/v2/Groups"),
        &[
            ("authorization", &format!("Bearer {SECRET}")),
            ("content-type", "text/plain"),
        ],
        Bytes::from(group("new", &[]).to_string()),
    )
    .await;
    refused(as_text, 400, Some("invalidSyntax"), "a body as text/plain");

    // A group that is not there.
    for (method, body) in [
        ("GET", None),
        ("PUT", Some(group("ghosts", &[&alice]))),
        ("PATCH", Some(patch_body(okta_add(&alice)))),
        ("DELETE", None),
    ] {
        refused(
            scim(&base, method, "/Groups/no-such-group", body.as_ref()).await,
            404,
            None,
            &format!("{method} of an unknown group"),
        );
    }

    // A NUL character, which no id or name holds (and PostgreSQL takes in no text):
    // refused like any other bad value, on both databases.
    refused(
        scim(
            &base,
            "GET",
            &format!(
                "/Groups?filter={}",
                percent_encode("displayName eq \"dep\\u0000loyers\"")
            ),
            None,
        )
        .await,
        400,
        Some("invalidFilter"),
        "a filter value with a NUL",
    );
    for (method, path, body) in [
        ("POST", "/Groups", group("new", &[&alice, "a\u{0}b"])),
        ("PUT", at.as_str(), group("deployers", &["a\u{0}b"])),
        ("PATCH", at.as_str(), patch_body(okta_add("a\u{0}b"))),
        ("PATCH", at.as_str(), patch_body(entra_remove("a\u{0}b"))),
    ] {
        refused(
            scim(&base, method, path, Some(&body)).await,
            400,
            Some("invalidValue"),
            &format!("{method} {body}"),
        );
    }

    // Nothing changed: the groups, the list, alice's groups, her audit trail, and the
    // JWT Deploy receives for her.
    assert_eq!(snapshot(at.clone()).await, deployers_before);
    assert_eq!(snapshot(format!("/Groups/{ops}")).await, ops_before);
    assert_eq!(snapshot("/Groups".into()).await, list_before);
    assert_eq!(snapshot(format!("/Users/{alice}")).await, user_before);
    assert_eq!(roles_changes(&gw).await.len(), audited_before);
    let jwt = jwt_for(&upstream, &base, &token).await.unwrap();
    assert_eq!(groups_in(&jwt), json!(["deployers"]));
    // One valid change after them all: once it shows, any earlier one would have too.
    patch_group(&base, &ops, okta_add(&alice)).await;
    jwt_carries(&upstream, &base, &token, &["deployers", "ops"])
        .await
        .unwrap();
    gw.shutdown().await;
}
