//! The CI token exchange end to end: a real issuer (`tests/deploy-jwt/ci-issuer.mjs`,
//! tokens signed by `jose`) minting tokens shaped like GitHub Actions' and GitLab CI's,
//! an administrator's trust policies, `POST /patgate/api/v1/token-exchange`, and the
//! issued token used through both request paths until it expires.

#[macro_use]
mod common;

use std::time::Duration;

use bytes::Bytes;
use common::api::as_user;
use common::node::NodeProcess;
use common::oidc::request;
use common::scripted::{exchange as wire, status, PATHS};
use common::*;
use serde_json::json;

const POLICIES: &str = "/patgate/api/v1/trust-policies";
const EXCHANGE: &str = "/patgate/api/v1/token-exchange";
const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

struct Issuer {
    url: String,
    _process: NodeProcess,
}

impl Issuer {
    async fn start() -> Issuer {
        let mut command = tokio::process::Command::new("node");
        command.arg(format!(
            "{}/tests/deploy-jwt/ci-issuer.mjs",
            env!("CARGO_MANIFEST_DIR")
        ));
        let (process, url) =
            NodeProcess::start(command, "the CI issuer", "scripts/node-setup.sh").await;
        Issuer {
            url,
            _process: process,
        }
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Answer {
        request(
            "POST",
            &format!("{}{path}", self.url),
            &[("content-type", "application/json")],
            Bytes::from(body.to_string()),
        )
        .await
    }

    /// A token signed as `sign` says (`key`, `other-key`, `none`, `hs256-public`).
    async fn mint(&self, claims: serde_json::Value, sign: &str) -> String {
        let answer = self
            .post("/mint", json!({"claims": claims, "sign": sign}))
            .await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        String::from_utf8(answer.body.to_vec()).unwrap()
    }

    async fn jwks_fetches(&self) -> u64 {
        let answer = request("GET", &format!("{}/stats", self.url), &[], Bytes::new()).await;
        answer.json()["jwks_fetches"].as_u64().unwrap()
    }
}

/// Claims as GitHub Actions issues them for a push to main of octo-org/deploy-app.
fn github_claims(aud: &str) -> serde_json::Value {
    json!({
        "aud": aud,
        "sub": "repo:octo-org/deploy-app:ref:refs/heads/main",
        "repository": "octo-org/deploy-app",
        "repository_owner": "octo-org",
        "ref": "refs/heads/main",
        "workflow_ref": "octo-org/deploy-app/.github/workflows/deploy.yml@refs/heads/main",
        "event_name": "push",
    })
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in fields {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

async fn exchange_token(gw: &Gateway, token: &str) -> Answer {
    post_form(
        gw,
        &form(&[
            ("grant_type", GRANT),
            ("subject_token", token),
            ("subject_token_type", JWT_TYPE),
        ]),
    )
    .await
}

async fn post_form(gw: &Gateway, body: &str) -> Answer {
    request(
        "POST",
        &gw.url(EXCHANGE),
        &[("content-type", "application/x-www-form-urlencoded")],
        Bytes::from(body.to_string()),
    )
    .await
}

async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<serde_json::Value>) -> Answer {
    as_user(method, &gw.url(path), "admin", "admin-pw", body.as_ref()).await
}

async fn setup(db: &TestDb, extra: &[(&str, &str)]) -> (Upstream, Gateway, Issuer) {
    let issuer = Issuer::start().await;
    let upstream = Upstream::start().await;
    let mut env = vec![("PATGATE_EXCHANGE__JWKS_MIN_REFRESH", "0s")];
    env.extend_from_slice(extra);
    let gw = Gateway::start(config(db, &upstream.url(), &env)).await;
    let created = admin(
        &gw,
        "POST",
        POLICIES,
        Some(json!({
            "name": "deploy-app",
            "issuer": issuer.url,
            "audience": "https://deploy.example.com",
            "claims": {"repository": "octo-org/deploy-app", "ref": "refs/heads/*"},
            "user": "ci-deploy-app",
            "scope": "full",
            "lifetime": "2m",
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    (upstream, gw, issuer)
}

fn raw_request(token: &str) -> String {
    format!("GET /deployit/repository/ci/Applications HTTP/1.1\r\nHost: deploy.example\r\nx-deploy-personal-token: {token}\r\nConnection: close\r\n\r\n")
}

async fn a_matching_token_exchanges_and_works_on_both_paths_until_it_expires(db: TestDb) {
    let (upstream, gw, issuer) = setup(&db, &[]).await;
    let identity = issuer
        .mint(github_claims("https://deploy.example.com"), "key")
        .await;
    let answer = exchange_token(&gw, &identity).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.headers["cache-control"], "no-store");
    let body = answer.json();
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "N_A");
    assert_eq!(body["expires_in"], 120);
    assert_eq!(body["policy"], "deploy-app");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("dpat_"));

    for (path, before) in PATHS {
        let answer = wire(gw.addr, before, &raw_request(&token)).await;
        assert_eq!(status(&answer), "200", "{path}: {answer}");
        let seen = upstream.last();
        assert_eq!(seen.headers["x-deploy-user"], "ci-deploy-app", "{path}");
        assert!(
            answer.to_lowercase().contains("x-deploy-token-expiration:"),
            "{path}"
        );
    }

    // It is listed and audited with the policy and the claims that matched.
    let tokens = admin(
        &gw,
        "GET",
        "/patgate/api/v1/users/ci-deploy-app/tokens",
        None,
    )
    .await;
    let listed = tokens.json();
    assert!(
        listed[0]["name"]
            .as_str()
            .unwrap()
            .starts_with("deploy-app exchange "),
        "{listed}"
    );
    let audit = admin(
        &gw,
        "GET",
        "/patgate/api/v1/audit?action=token.exchanged",
        None,
    )
    .await;
    let entry = &audit.json()["entries"][0];
    assert_eq!(entry["detail"]["policy"], "deploy-app", "{entry}");
    assert_eq!(
        entry["detail"]["claims"]["repository"],
        "octo-org/deploy-app"
    );
    assert!(!audit
        .body
        .windows(token.len())
        .any(|w| w == token.as_bytes()));
    // Counted, with the last use.
    let policy = admin(&gw, "GET", &format!("{POLICIES}/deploy-app"), None).await;
    assert_eq!(policy.json()["exchanges"], 1);
    assert!(policy.json()["last_used_at"].is_string());
    let metrics = get(&gw.url("/patgate/metrics"), &[]).await;
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(
        text.contains("patgate_token_exchanges_total{result=\"issued\"} 1"),
        "{text}"
    );

    // An exchanged token cannot be rotated (nor sent an expiry e-mail: it is not due).
    let id = body["token_id"].as_str().unwrap().to_string();
    let rotated = patgate::cli::run_admin(
        &gw.config,
        patgate::cli::Admin::Token(patgate::cli::TokenCommand::Rotate {
            id,
            grace: "0s".into(),
            json: false,
        }),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(rotated.contains("token exchange"), "{rotated}");
    gw.shutdown().await;
}

async fn the_issued_token_stops_at_its_expiry(db: TestDb) {
    let (_upstream, gw, issuer) = setup(&db, &[]).await;
    let changed = admin(
        &gw,
        "PUT",
        &format!("{POLICIES}/deploy-app"),
        Some(json!({
            "issuer": issuer.url,
            "audience": "https://deploy.example.com",
            "claims": {"repository": "octo-org/deploy-app"},
            "user": "ci-deploy-app",
            "lifetime": "1m",
        })),
    )
    .await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    let identity = issuer
        .mint(github_claims("https://deploy.example.com"), "key")
        .await;
    let token = exchange_token(&gw, &identity).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let id_of = |answer: &Answer| answer.json();
    let listed = admin(
        &gw,
        "GET",
        "/patgate/api/v1/users/ci-deploy-app/tokens",
        None,
    )
    .await;
    let expires: jiff::Timestamp = id_of(&listed)[0]["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let created: jiff::Timestamp = id_of(&listed)[0]["created_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((expires - created).get_seconds(), 60);
    assert_eq!(
        status(&wire(gw.addr, "", &raw_request(&token)).await),
        "200"
    );
    // The expiry instant is what any token's is: checked on every request. Wait it out.
    let left = expires.as_second() - jiff::Timestamp::now().as_second();
    tokio::time::sleep(Duration::from_secs((left + 1).max(0) as u64)).await;
    for (path, before) in PATHS {
        let answer = wire(gw.addr, before, &raw_request(&token)).await;
        assert_eq!(status(&answer), "401", "{path}: {answer}");
        assert!(answer.contains("token_expired"), "{path}: {answer}");
    }
    gw.shutdown().await;
}

async fn every_bad_identity_token_is_refused_and_nothing_is_issued(db: TestDb) {
    let (_upstream, gw, issuer) = setup(&db, &[]).await;
    let aud = "https://deploy.example.com";
    let now = jiff::Timestamp::now().as_second();
    let mut other_claims = github_claims(aud);
    other_claims["ref"] = json!("dev");
    let cases: Vec<(&str, serde_json::Value, &str, &str)> = vec![
        (
            "wrong audience",
            github_claims("https://elsewhere"),
            "key",
            "aud",
        ),
        (
            "wrong issuer",
            {
                let mut c = github_claims(aud);
                c["iss"] = json!("https://token.actions.githubusercontent.com");
                c
            },
            "key",
            "no trust policy accepts tokens of issuer",
        ),
        (
            "expired",
            {
                let mut c = github_claims(aud);
                c["exp"] = json!(now - 600);
                c["iat"] = json!(now - 900);
                c["nbf"] = json!(now - 900);
                c
            },
            "key",
            "expired",
        ),
        (
            "not yet valid",
            {
                let mut c = github_claims(aud);
                c["nbf"] = json!(now + 600);
                c
            },
            "key",
            "not valid yet",
        ),
        (
            "another key",
            github_claims(aud),
            "other-key",
            "signature does not verify",
        ),
        ("alg none", github_claims(aud), "none", "accepted: RS256"),
        (
            "HMAC with the public key",
            github_claims(aud),
            "hs256-public",
            "accepted: RS256",
        ),
        (
            "one claim off",
            {
                let mut c = github_claims(aud);
                c["repository"] = json!("octo-org/other-app");
                c
            },
            "key",
            "claim repository is \"octo-org/other-app\"",
        ),
        (
            "a claim missing",
            {
                let mut c = github_claims(aud);
                c["ref"] = serde_json::Value::Null;
                c
            },
            "key",
            "claim ref is missing",
        ),
        (
            "no jti",
            {
                let mut c = github_claims(aud);
                c["jti"] = serde_json::Value::Null;
                c
            },
            "key",
            "no jti",
        ),
    ];
    for (what, claims, sign, says) in cases {
        let identity = issuer.mint(claims, sign).await;
        let answer = exchange_token(&gw, &identity).await;
        assert_eq!(answer.status, 400, "{what}: {:?}", answer.body);
        let body = answer.json();
        assert_eq!(body["error"], "invalid_grant", "{what}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{what}: {description}");
        assert!(body.get("access_token").is_none());
    }

    // Each identity token once.
    let identity = issuer.mint(github_claims(aud), "key").await;
    assert_eq!(exchange_token(&gw, &identity).await.status, 200);
    let again = exchange_token(&gw, &identity).await;
    assert_eq!(again.status, 400);
    assert!(again.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("exchanged already"));

    // Bad input: missing fields, JSON, a wrong grant, an oversized token, an unknown
    // target policy.
    let answer = post_form(
        &gw,
        &form(&[("grant_type", GRANT), ("subject_token_type", JWT_TYPE)]),
    )
    .await;
    assert_eq!(answer.json()["error"], "invalid_request");
    assert!(answer.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("subject_token"));
    let json_body = request(
        "POST",
        &gw.url(EXCHANGE),
        &[("content-type", "application/json")],
        Bytes::from(json!({"grant_type": GRANT, "subject_token": identity}).to_string()),
    )
    .await;
    assert_eq!(json_body.status, 400);
    assert_eq!(json_body.json()["error"], "invalid_request");
    let wrong_grant = post_form(
        &gw,
        &form(&[
            ("grant_type", "client_credentials"),
            ("subject_token", "x"),
            ("subject_token_type", JWT_TYPE),
        ]),
    )
    .await;
    assert_eq!(wrong_grant.json()["error"], "unsupported_grant_type");
    let huge = "a".repeat(20_000);
    let oversized = exchange_token(&gw, &huge).await;
    assert_eq!(oversized.status, 400);
    assert!(oversized.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("longer than 16 KiB"));
    let fresh = issuer.mint(github_claims(aud), "key").await;
    let target = post_form(
        &gw,
        &form(&[
            ("grant_type", GRANT),
            ("subject_token", &fresh),
            ("subject_token_type", JWT_TYPE),
            ("audience", "nope"),
        ]),
    )
    .await;
    assert_eq!(target.json()["error"], "invalid_target");

    // Nothing was issued but the one good exchange; every refusal is counted and audited.
    let tokens = admin(
        &gw,
        "GET",
        "/patgate/api/v1/users/ci-deploy-app/tokens",
        None,
    )
    .await;
    assert_eq!(
        tokens.json().as_array().unwrap().len(),
        1,
        "{:?}",
        tokens.body
    );
    let metrics =
        String::from_utf8_lossy(&get(&gw.url("/patgate/metrics"), &[]).await.body).to_string();
    assert!(
        metrics.contains("patgate_token_exchanges_total{result=\"refused\"} 16"),
        "{metrics}"
    );
    let audit = admin(
        &gw,
        "GET",
        "/patgate/api/v1/audit?action=token.exchange_refused",
        None,
    )
    .await;
    assert!(
        audit.json()["total"].as_u64().unwrap() >= 10,
        "{:?}",
        audit.body
    );
    gw.shutdown().await;
}

async fn keys_are_refetched_when_rotated_and_a_down_issuer_refuses_with_503(db: TestDb) {
    let (_upstream, gw, issuer) = setup(&db, &[]).await;
    let aud = "https://deploy.example.com";
    let first = issuer.mint(github_claims(aud), "key").await;
    assert_eq!(exchange_token(&gw, &first).await.status, 200);
    let fetched = issuer.jwks_fetches().await;
    // Cached: no fetch for the next one.
    let second = issuer.mint(github_claims(aud), "key").await;
    assert_eq!(exchange_token(&gw, &second).await.status, 200);
    assert_eq!(issuer.jwks_fetches().await, fetched);
    // A new key at the issuer: its kid is unknown, so the set is fetched and accepted.
    assert_eq!(issuer.post("/rotate", json!({})).await.status, 200);
    let rotated = issuer.mint(github_claims(aud), "key").await;
    let answer = exchange_token(&gw, &rotated).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(issuer.jwks_fetches().await, fetched + 1);

    // An issuer whose keys were never fetched and cannot be: 503, nothing issued.
    let down = Issuer::start().await;
    assert_eq!(down.post("/down", json!({"down": true})).await.status, 200);
    let created = admin(
        &gw,
        "POST",
        POLICIES,
        Some(json!({
            "name": "gitlab-job",
            "issuer": down.url,
            "audience": aud,
            "claims": {"project_path": "group/app", "ref_protected": "true"},
            "user": "ci-gitlab",
        })),
    )
    .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let identity = down
        .mint(
            json!({"aud": aud, "project_path": "group/app", "ref_protected": "true", "sub": "project_path:group/app:ref_type:branch:ref:main"}),
            "key",
        )
        .await;
    let refused = exchange_token(&gw, &identity).await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.json()["error"], "temporarily_unavailable");
    assert_eq!(down.post("/down", json!({"down": false})).await.status, 200);
    let identity = down
        .mint(
            json!({"aud": aud, "project_path": "group/app", "ref_protected": "true"}),
            "key",
        )
        .await;
    assert_eq!(exchange_token(&gw, &identity).await.status, 200);
    gw.shutdown().await;
}

async fn policies_are_checked_on_save_and_kept_to_administrators(db: TestDb) {
    let (_upstream, gw, issuer) = setup(&db, &[]).await;
    let good = json!({
        "name": "p",
        "issuer": issuer.url,
        "audience": "a",
        "claims": {"repository": "o/r"},
        "user": "ci",
    });
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "claims",
            json!({"claims": {"repository": "o/[rs]"}}),
            "claims.repository",
        ),
        ("claims", json!({"claims": {}}), "at least one condition"),
        (
            "claims",
            json!({"claims": {"repository": "*"}}),
            "not only wildcards",
        ),
        ("claims", json!({"claims": {"aud": "x"}}), "claims.aud"),
        ("lifetime", json!({"lifetime": "2h"}), "lifetime"),
        ("lifetime", json!({"lifetime": "soon"}), "lifetime"),
        (
            "issuer",
            json!({"issuer": "http://ci.example.com"}),
            "https",
        ),
        (
            "preset",
            json!({"issuer": null, "preset": "bitbucket"}),
            "preset",
        ),
        ("scope", json!({"scope": "admin"}), "scope"),
        (
            "allowed_addresses",
            json!({"allowed_addresses": ["10.0.0.0/33"]}),
            "allowed_addresses",
        ),
    ];
    for (field, change, says) in cases {
        let mut body = good.clone();
        for (k, v) in change.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let answer = admin(&gw, "POST", POLICIES, Some(body)).await;
        assert_eq!(answer.status, 422, "{field}: {:?}", answer.body);
        assert_eq!(answer.json()["error"], "invalid_trust_policy");
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(says), "{field}: {message}");
    }
    // On a public CI service anyone can run jobs: a policy must pin an owner.
    for claims in [
        json!({"ref": "refs/heads/main"}),
        json!({"repository": "octo-org*"}),
        json!({"sub": "repo:*"}),
    ] {
        let answer = admin(
            &gw,
            "POST",
            POLICIES,
            Some(json!({"name": "open", "preset": "github", "audience": "a", "claims": claims, "user": "ci"})),
        )
        .await;
        assert_eq!(answer.status, 422, "{claims}: {:?}", answer.body);
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains("pin the owner"), "{message}");
    }
    // A preset fills in the issuer.
    let mut preset = good.clone();
    preset.as_object_mut().unwrap().remove("issuer");
    preset["preset"] = json!("github");
    preset["name"] = json!("gh");
    let answer = admin(&gw, "POST", POLICIES, Some(preset)).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(
        answer.json()["issuer"],
        "https://token.actions.githubusercontent.com"
    );
    assert_eq!(answer.json()["lifetime"], "15m");
    // Duplicates conflict; ordinary users may not look.
    let dup = admin(&gw, "POST", POLICIES, Some(json!({"name": "gh", "preset": "github", "audience": "a", "claims": {"repository": "o/r"}, "user": "ci"}))).await;
    assert_eq!(dup.status, 409);
    let alice = as_user("GET", &gw.url(POLICIES), "alice", "alice-pw", None).await;
    assert_eq!(alice.status, 403);
    // The command line makes the same policies, with the same checks.
    let cli = |command| {
        let config = gw.config.clone();
        async move { patgate::cli::run_admin(&config, patgate::cli::Admin::TrustPolicy(command)).await }
    };
    let args = |claims: Vec<&str>| patgate::cli::TrustPolicyArgs {
        name: "gl".into(),
        issuer: None,
        preset: Some("gitlab".into()),
        audience: "https://deploy.example.com".into(),
        claims: claims.into_iter().map(String::from).collect(),
        user: "ci-gitlab".into(),
        scope: "read".into(),
        allow_from: Vec::new(),
        lifetime: "30m".into(),
    };
    let refused = cli(patgate::cli::TrustPolicyCommand::Create(args(vec![
        "project_path",
    ])))
    .await
    .unwrap_err()
    .to_string();
    assert!(refused.contains("CLAIM=VALUE"), "{refused}");
    let made = cli(patgate::cli::TrustPolicyCommand::Create(args(vec![
        "project_path=group/*",
    ])))
    .await
    .unwrap();
    assert!(made.contains("created trust policy gl"), "{made}");
    let listed = admin(&gw, "GET", &format!("{POLICIES}/gl"), None).await;
    assert_eq!(listed.json()["issuer"], "https://gitlab.com");
    assert_eq!(listed.json()["scope"], "read");
    assert_eq!(listed.json()["lifetime"], "30m");
    let table = cli(patgate::cli::TrustPolicyCommand::List { json: false })
        .await
        .unwrap();
    assert!(table.contains("gl  issuer https://gitlab.com"), "{table}");
    let deleted = admin(&gw, "DELETE", &format!("{POLICIES}/gh"), None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        admin(&gw, "GET", &format!("{POLICIES}/gh"), None)
            .await
            .status,
        404
    );
    gw.shutdown().await;
}

async fn keys_older_than_their_bound_are_never_used(db: TestDb) {
    let (_upstream, gw, issuer) = setup(
        &db,
        &[
            ("PATGATE_EXCHANGE__JWKS_MAX_AGE", "2s"),
            ("PATGATE_EXCHANGE__JWKS_REFRESH", "1s"),
        ],
    )
    .await;
    let aud = "https://deploy.example.com";
    let first = issuer.mint(github_claims(aud), "key").await;
    assert_eq!(exchange_token(&gw, &first).await.status, 200);
    assert_eq!(
        issuer.post("/down", json!({"down": true})).await.status,
        200
    );
    // Within the bound, the keys fetched before still serve while the issuer is down.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let second = issuer.mint(github_claims(aud), "key").await;
    let answer = exchange_token(&gw, &second).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // Past it, they are not used: 503 until the issuer answers again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let third = issuer.mint(github_claims(aud), "key").await;
    let refused = exchange_token(&gw, &third).await;
    assert_eq!(refused.status, 503, "{:?}", refused.body);
    assert_eq!(refused.json()["error"], "temporarily_unavailable");
    assert_eq!(
        issuer.post("/down", json!({"down": false})).await.status,
        200
    );
    assert_eq!(exchange_token(&gw, &third).await.status, 200);
    gw.shutdown().await;
}

async fn a_rotation_seen_within_the_refetch_pause_is_retryable(db: TestDb) {
    let (_upstream, gw, issuer) = setup(&db, &[("PATGATE_EXCHANGE__JWKS_MIN_REFRESH", "1h")]).await;
    let aud = "https://deploy.example.com";
    let first = issuer.mint(github_claims(aud), "key").await;
    assert_eq!(exchange_token(&gw, &first).await.status, 200);
    // The issuer rotates; the gateway may not fetch again yet: a retryable 503, not a
    // refusal of a good token.
    assert_eq!(issuer.post("/rotate", json!({})).await.status, 200);
    let rotated = issuer.mint(github_claims(aud), "key").await;
    let answer = exchange_token(&gw, &rotated).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert_eq!(answer.json()["error"], "temporarily_unavailable");
    assert!(answer.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("try again in"));
    gw.shutdown().await;
}

on_both_backends!(
    a_rotation_seen_within_the_refetch_pause_is_retryable,
    keys_older_than_their_bound_are_never_used,
    a_matching_token_exchanges_and_works_on_both_paths_until_it_expires,
    the_issued_token_stops_at_its_expiry,
    every_bad_identity_token_is_refused_and_nothing_is_issued,
    keys_are_refetched_when_rotated_and_a_down_issuer_refuses_with_503,
    policies_are_checked_on_save_and_kept_to_administrators,
);
