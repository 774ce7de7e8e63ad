//! The web pages in a real browser (headless Chromium, see tests/common/browser.rs)
//! against the gateway and the Deploy stand-in: sign in, generate a token and use it
//! through the gateway, the "Expires in" pills in a non-UTC time zone, delete with
//! confirmation, the administrators' maximum, the SSO banner and message, the SMTP form
//! with Send Test Mail, users and the audit log. Screenshots of each page land in
//! `target/screenshots/`. SSO users sign in through a real OpenID provider
//! (tests/oidc). The pages only call the API, whose suites run on both database
//! backends; here SQLite is enough.

#[macro_use]
mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::api::Session;
use common::browser::{Browser, Driver};
use common::oidc::{Account, Provider, ProviderOptions};
use common::smtp::{self, SmtpServer};
use common::*;
use patgate::core::token::PlainToken;
use patgate::store::{SignInMethod, UserSource};

const DAY: i64 = 86_400;

/// A token stored with an exact expiry instant, as if made at another time.
async fn seed_token(gw: &Gateway, user: &str, name: &str, expires_at: Option<i64>) -> String {
    let api = gw.api().unwrap();
    api.store
        .ensure_user(user, UserSource::Internal, None)
        .await
        .unwrap();
    let plain = PlainToken::generate();
    let hash = api.hasher.hash(plain.expose().as_bytes());
    api.store
        .create_token(user, name, &hash, expires_at)
        .await
        .unwrap()
        .id
}

fn now() -> i64 {
    patgate::core::time::now()
}

/// A browser that is signed in through a session made on the server (for users the
/// Deploy stand-in does not know, such as SSO users).
async fn with_session(browser: &Browser, gw: &Gateway, user: &str, method: SignInMethod) {
    let api = gw.api().unwrap();
    let (cookie, _) = api
        .signin
        .sessions
        .create(user, method, false, IpAddr::V4(Ipv4Addr::LOCALHOST), false)
        .await
        .unwrap();
    let value = cookie.to_str().unwrap();
    let id = value
        .strip_prefix("patgate_session=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // A cookie can only be set on the site's own origin.
    browser.goto(&gw.url("/patgate/healthz")).await;
    browser
        .eval(&format!("document.cookie = 'patgate_session={id}; path=/'"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_their_security_headers_and_deploy_keeps_its_own() {
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    for path in [
        "/patgate/",
        "/patgate/signin",
        "/patgate/admin/settings",
        "/patgate/admin/smtp-servers",
        "/patgate/admin/users",
        "/patgate/admin/audit",
        "/patgate/admin/trust-policies",
    ] {
        // Without a session the server itself sends the browser to sign in, and back
        // afterwards, so that a client without JavaScript gets there too.
        if path != "/patgate/signin" {
            let away = get(&gw.url(&format!("{path}?view=a&b=1")), &[]).await;
            assert_eq!(away.status, 303, "{path}");
            let back = format!("/patgate/signin?next={}%3Fview%3Da%26b%3D1", path);
            assert_eq!(away.headers["location"], back.as_str(), "{path}");
            assert!(away.headers.contains_key("content-security-policy"));
        }
        let page = get(&gw.url(path), &[("cookie", "patgate_session=anything")]).await;
        assert_eq!(page.status, 200, "{path}");
        assert_eq!(page.headers["cache-control"], "no-store", "{path}");
        assert!(page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let csp = page.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        let html = String::from_utf8_lossy(&page.body).to_string();
        assert!(!html.contains("<script>"), "no inline script in {path}");
        assert!(!html.contains(" style="), "no inline style in {path}");
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "nothing loaded from another site: {path}"
        );
    }
    assert_eq!(stack.upstream.count(), 0, "the pages never reach Deploy");
    // What the pages read from the API is never stored either.
    let me = get(
        &gw.url("/patgate/api/v1/me"),
        &[("authorization", &basic("alice", "alice-pw"))],
    )
    .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.headers["cache-control"], "no-store");

    // Assets: versioned URLs are kept for a year, revalidated by ETag otherwise.
    let html =
        String::from_utf8_lossy(&get(&gw.url("/patgate/signin"), &[]).await.body).to_string();
    let script = html
        .split('"')
        .find(|s| s.starts_with("/patgate/assets/app.js?v="))
        .unwrap()
        .to_string();
    let js = get(&gw.url(&script), &[]).await;
    assert_eq!(js.status, 200);
    assert!(js.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let etag = js.headers["etag"].to_str().unwrap().to_string();
    let again = get(
        &gw.url("/patgate/assets/app.js"),
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(again.status, 304);
    assert_eq!(
        get(&gw.url("/patgate/assets/other.js"), &[]).await.status,
        404
    );
    let post = send("POST", &gw.url("/patgate/"), &[]).await;
    assert_eq!(post.status, 405);

    // Deploy's own UI is not the gateway's: it passes through untouched.
    for path in ["/", "/deployit/index.html", "/patgate-elsewhere", "/signin"] {
        let answer = get(&gw.url(path), &[]).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.body.as_ref(), b"deploy", "{path}");
        assert_eq!(stack.upstream.last().path, path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_scope_allowlist_rotation_and_usage() {
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    let base = gw.url("");
    let driver = Driver::start(None).await;
    let browser = driver.browser(1280, 900).await;
    browser.sign_in(&base, "alice", "alice-pw").await;
    browser
        .wait_text("main", "You have no personal access tokens yet.")
        .await;

    // A read-only token usable from loopback and one network only.
    browser.click("#generate-open").await;
    browser.fill("#token-name", "reader").await;
    browser.select("#token-scope", "read").await;
    browser
        .fill("#token-allowlist", "127.0.0.1, 10.0.0.0/8")
        .await;
    assert!(browser.unlabelled_fields().await.is_empty());
    browser.click("#generate").await;
    let token = browser
        .find("#new-token-value")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    browser.wait_text("#tokens td.rules", "Read only").await;
    let rules = browser.wait_text("#tokens td.rules", "10.0.0.0/8").await;
    assert!(rules.contains("127.0.0.1"), "{rules}");

    // Three requests through the gateway and one the scope refuses.
    for _ in 0..3 {
        let answer = get(&gw.url("/x"), &[("x-deploy-personal-token", &token)]).await;
        assert_eq!(answer.status, 200);
    }
    let refused = send(
        "POST",
        &gw.url("/x"),
        &[("x-deploy-personal-token", &token)],
    )
    .await;
    assert_eq!(refused.error_code(), "scope_denied");
    let id = browser
        .find("#tokens tr[data-token-id]")
        .await
        .attr("data-token-id")
        .await
        .unwrap()
        .unwrap();
    let usage_url = gw.url(&format!("/patgate/api/v1/tokens/{id}/usage"));
    let written = within(Duration::from_secs(8), || async {
        let usage = common::api::as_user("GET", &usage_url, "alice", "alice-pw", None)
            .await
            .json();
        usage["days"][29]["requests"] == 3 && !usage["last_refusal"].is_null()
    })
    .await;
    assert!(written.is_some(), "the usage writer did not flush");

    // The chart, the address and the refusal, by visible text.
    browser
        .click("#tokens td.actions-cell button[aria-label='Usage of token reader']")
        .await;
    browser
        .wait_text("#tokens .usage", "3 requests in the last 30 days, 3 today")
        .await;
    assert_eq!(
        browser.find_all("#tokens .usage-chart .bar").await.len(),
        30
    );
    browser.wait_text("#tokens .usage", "127.0.0.1").await;
    browser
        .wait_text("#tokens .usage", "Last refused: scope_denied")
        .await;
    browser.screenshot("tokens-usage-1280").await;

    // A rotation with a grace, from the page: the new token is shown once, and the old
    // one shows until when it works.
    browser
        .click("#tokens td.actions-cell button[aria-label='Rotate token reader']")
        .await;
    browser.wait_text("dialog", "Rotate token?").await;
    browser.select("dialog #rotate-grace", "1h").await;
    browser.click("dialog #confirm").await;
    browser.wait_gone("dialog").await;
    let new_token = browser
        .find("#new-token-value")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(new_token, token);
    browser.wait_text("#tokens", "Rotated: works until").await;
    browser.wait_text("#tokens", "Made by rotation").await;
    let answer = get(&gw.url("/x"), &[("x-deploy-personal-token", &token)]).await;
    assert_eq!(answer.status, 200, "the old token works during its grace");
    browser.goto(&gw.url("/patgate/")).await;
    browser.ready().await;
    browser.wait_text("#tokens", "Rotated: works until").await;
    browser.wait_text("#tokens", "Made by rotation").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_generate_use_and_delete_a_token() {
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    let base = gw.url("");
    let driver = Driver::start(None).await;
    let browser = driver.browser(1280, 900).await;

    // Not signed in: the pages send the browser to the sign-in page, without SSO.
    browser.goto(&gw.url("/patgate/")).await;
    browser.find("input[name='username']").await;
    assert_eq!(browser.path().await, "/patgate/signin");
    assert!(browser.find_all("#sign-in-sso").await.is_empty());
    assert!(browser.unlabelled_fields().await.is_empty());
    browser.screenshot("signin-1280").await;
    browser.resize(390, 844).await;
    browser.screenshot("signin-390").await;
    browser.resize(1280, 900).await;

    // A wrong password: Deploy's refusal beside the button, and still on the page.
    browser.fill("input[name='username']", "alice").await;
    browser.fill("input[name='password']", "wrong").await;
    browser.click("#sign-in").await;
    let refusal = browser.wait_text("form [role='alert']", "password").await;
    assert!(!refusal.contains("wrong"), "{refusal}");
    assert_eq!(browser.path().await, "/patgate/signin");

    browser.sign_in(&base, "alice", "alice-pw").await;
    assert_eq!(browser.path().await, "/patgate/");
    assert_eq!(browser.text("#user-menu-button .who").await, "alice");
    browser
        .wait_text("main", "You have no personal access tokens yet.")
        .await;
    // Administrators' pages are not in an ordinary user's menu.
    assert!(browser
        .find_all("nav a[href='/patgate/admin/settings']")
        .await
        .is_empty());

    // Generate: the panel, a name that would be markup if it were not escaped.
    browser.click("#generate-open").await;
    let name = "O'Brien & \"deploys\" {{ x }} ${x}";
    browser.fill("#token-name", name).await;
    browser.select("#token-expiration", "7d").await;
    browser.click("#generate").await;
    let shown = browser.find("#new-token-value").await;
    let token = shown.prop("value").await.unwrap().unwrap();
    assert!(token.starts_with("dpat_") && token.len() == 54, "{token}");
    browser
        .wait_text("#new-token", "it will not be shown again")
        .await;
    browser.find("#copy-token").await;
    browser.wait_text("#tokens td.name", name).await;
    assert_eq!(browser.text("#tokens td.expires-in").await, "7 days");
    browser.screenshot("tokens-new-token-1280").await;

    // The token works in a real request through the gateway, as Deploy's clients send it.
    let answer = get(
        &gw.url("/api/v1/deployit"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let seen = stack.upstream.last();
    assert_eq!(seen.path, "/api/v1/deployit");
    assert_eq!(seen.headers["x-deploy-user"], "alice");
    assert!(!seen.headers.contains_key("authorization"));

    // Leaving the page loses the token: the page is not cached, and it is not shown again.
    browser.goto(&gw.url("/patgate/")).await;
    browser.ready().await;
    browser.wait_text("#tokens td.name", name).await;
    let source = browser.client.source().await.unwrap();
    assert!(!source.contains(&token), "the token is shown once only");
    assert!(browser.find_all("#new-token-value").await.is_empty());

    // Delete asks first; Cancel keeps the token.
    browser.click("#tokens td.actions-cell button").await;
    browser.wait_text("dialog", "Delete token?").await;
    browser.screenshot("tokens-delete-dialog-1280").await;
    browser.click("dialog #cancel").await;
    browser.wait_gone("dialog").await;
    assert_eq!(
        browser
            .find_all("#tokens tbody tr[data-token-id]")
            .await
            .len(),
        1
    );
    let still = get(
        &gw.url("/api/v1/deployit"),
        &[("authorization", &basic("", &token))],
    )
    .await;
    assert_eq!(still.status, 200);

    browser.click("#tokens td.actions-cell button").await;
    let confirm = browser.find("dialog #confirm").await;
    assert_eq!(confirm.text().await.unwrap(), "Delete token");
    confirm.click().await.unwrap();
    browser
        .wait_text("main", "You have no personal access tokens yet.")
        .await;
    let refused = within(Duration::from_secs(2), || async {
        get(
            &gw.url("/api/v1/deployit"),
            &[("authorization", &basic("", &token))],
        )
        .await
        .status
            == 401
    })
    .await;
    assert!(refused.is_some(), "the deleted token is refused");

    // A name taken: the API's message beside the Generate button.
    browser.click("#generate-open").await;
    browser.fill("#token-name", "twice").await;
    browser.click("#generate").await;
    browser.find("#new-token-value").await;
    browser.click("#generate-open").await;
    browser.fill("#token-name", "twice").await;
    browser.click("#generate").await;
    browser
        .wait_text(
            "#generate-panel [role='alert']",
            "already have a token named",
        )
        .await;

    // Everything works from the keyboard: Generate opens the panel with the focus in
    // its name field, Enter generates, Escape closes the delete dialog.
    browser
        .eval("document.getElementById('generate-open').focus()")
        .await;
    browser.press("\u{e007}").await;
    assert_eq!(browser.focused().await, "token-name");
    browser.press("from the keyboard\u{e007}").await;
    browser.wait_text("#new-token", "from the keyboard").await;
    browser
        .eval("document.querySelector('#tokens td.actions-cell button').focus()")
        .await;
    browser.press("\u{e007}").await;
    browser.find("dialog[open]").await;
    assert_eq!(
        browser.focused().await,
        "cancel",
        "the safe choice has the focus"
    );
    browser.press("\u{e00c}").await;
    browser.wait_gone("dialog").await;
    assert!(
        browser.unlabelled_fields().await.is_empty(),
        "{:?}",
        browser.unlabelled_fields().await
    );

    // A state change without the session's CSRF token is refused, even from the page.
    let forged = browser
        .eval_async(
            "const done = arguments[arguments.length - 1];
             fetch('/patgate/api/v1/tokens', {method: 'POST', headers: {'Content-Type': 'application/json'},
               body: JSON.stringify({name: 'forged', expiration: '7d'})})
               .then((r) => r.json().then((j) => done([r.status, j.error])));",
        )
        .await;
    assert_eq!(forged, serde_json::json!([403, "csrf_failed"]));

    // The address for expiry reminders: a bad one is refused beside the button.
    browser.fill("#email", "not an address").await;
    browser.click("#email-save").await;
    browser
        .wait_text("#email-result", "is not an e-mail address")
        .await;
    browser.fill("#email", "alice@example.com").await;
    browser.click("#email-save").await;
    browser
        .wait_text("#email-current", "sent to alice@example.com")
        .await;
    let me = common::api::as_user(
        "GET",
        &gw.url("/patgate/api/v1/me"),
        "alice",
        "alice-pw",
        None,
    )
    .await;
    assert_eq!(me.json()["email"], "alice@example.com");

    // Signing out ends the session; the pages go back to the sign-in page.
    browser.click("#user-menu-button").await;
    browser.click("#sign-out").await;
    browser.find("input[name='username']").await;
    browser.goto(&gw.url("/patgate/")).await;
    browser.find("input[name='username']").await;
    assert_eq!(browser.path().await, "/patgate/signin");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pills_and_local_times_in_tokyo() {
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    let now = now();
    // A fixed instant: 03:00 UTC is noon in Tokyo (UTC+9, no daylight saving).
    let fixed = 1_926_385_200; // 2031-01-17T03:00:00Z
    let fixed_id = seed_token(gw, "alice", "fixed instant", Some(fixed)).await;
    seed_token(gw, "alice", "expired", Some(now - DAY)).await;
    seed_token(gw, "alice", "hours left", Some(now + 2 * 3600)).await;
    seed_token(gw, "alice", "three days", Some(now + 3 * DAY - 60)).await;
    seed_token(gw, "alice", "five days", Some(now + 5 * DAY - 60)).await;
    seed_token(gw, "alice", "twenty days", Some(now + 20 * DAY - 60)).await;
    seed_token(gw, "alice", "never", None).await;

    let driver = Driver::start(Some("Asia/Tokyo")).await;
    let browser = driver.browser(1280, 900).await;
    browser.sign_in(&gw.url(""), "alice", "alice-pw").await;
    assert_eq!(
        browser
            .eval("return new Date().getTimezoneOffset()")
            .await
            .as_i64(),
        Some(-540),
        "the browser runs in Tokyo time"
    );
    browser.wait_text("#tokens", "fixed instant").await;

    let mut pills = std::collections::BTreeMap::new();
    for row in browser.find_all("#tokens tbody tr[data-token-id]").await {
        let name = row
            .find(fantoccini::Locator::Css("td.name"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let pill = row.find(fantoccini::Locator::Css(".pill")).await.unwrap();
        let class = pill.attr("class").await.unwrap().unwrap();
        let text = pill.text().await.unwrap();
        pills.insert(name, (text, class));
    }
    let expect = |name: &str, text: &str, colour: &str| {
        let (shown, class) = &pills[name];
        assert_eq!(shown, text, "{name}");
        assert!(class.contains(colour), "{name}: {class}");
    };
    expect("never", "Never", "pill-neutral");
    expect("twenty days", "20 days", "pill-neutral");
    expect("five days", "5 days", "pill-warning");
    expect("three days", "3 days", "pill-warning");
    expect("hours left", "Less than 24 hours", "pill-warning");
    expect("expired", "Expired", "pill-expired");

    // Expiry dates in the browser's own zone; the exact UTC instant alongside.
    let fixed_row = format!("#tokens tr[data-token-id='{fixed_id}']");
    let expires = browser.text(&format!("{fixed_row} td.expires")).await;
    assert!(
        expires.contains("Jan 17, 2031") && expires.contains("12:00") && expires.contains("GMT+9"),
        "shown in Tokyo time: {expires}"
    );
    let exact = browser
        .find(&format!("{fixed_row} td.expires time"))
        .await
        .attr("datetime")
        .await
        .unwrap();
    assert_eq!(exact.as_deref(), Some("2031-01-17T03:00:00Z"));
    // The exact time left, counted from the instant whatever the zone.
    let left = browser
        .find("#tokens tbody tr .pill-warning[data-state='warning_hours']")
        .await
        .attr("title")
        .await
        .unwrap()
        .unwrap();
    assert!(
        left.starts_with("1 hour, 59 minutes") || left.starts_with("2 hours"),
        "{left}"
    );
    browser.screenshot("tokens-pills-1280").await;
    browser.resize(390, 844).await;
    browser.screenshot("tokens-pills-390").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_maximum_limits_the_choices() {
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    let base = gw.url("");
    let driver = Driver::start(None).await;

    let admin = driver.browser(1280, 1000).await;
    admin.sign_in(&base, "admin", "admin-pw").await;
    admin.click("nav a[href='/patgate/admin/settings']").await;
    admin.ready().await;
    admin.find("#max-expiration").await;
    admin.wait_text("#notify-status", "Not sending").await;
    assert!(
        admin.unlabelled_fields().await.is_empty(),
        "{:?}",
        admin.unlabelled_fields().await
    );
    admin.select("#max-expiration", "30d").await;
    // A bad value gets its message beside Save, and nothing is saved.
    admin.fill("#reminder-days", "30, 0").await;
    admin.click("#save-settings").await;
    admin.wait_text("#settings-actions", "1 to 365").await;
    admin.fill("#reminder-days", "7, 7").await;
    admin.click("#save-settings").await;
    admin.wait_text("#settings-actions", "different").await;
    // Several reminders, and unused tokens retired after 90 days.
    admin.fill("#reminder-days", "1, 30, 7").await;
    admin.select("#unused-revoke", "90").await;
    admin.click("#save-settings").await;
    admin
        .wait_text("#settings-actions", "Settings saved.")
        .await;
    let saved = common::api::as_user(
        "GET",
        &gw.url("/patgate/api/v1/settings"),
        "admin",
        "admin-pw",
        None,
    )
    .await
    .json();
    assert_eq!(
        saved["notifications"]["reminder_days"],
        serde_json::json!([30, 7, 1])
    );
    assert_eq!(saved["unused_token_revoke_days"], 90);
    // A channel: a bad URL is refused beside its button, a good one is listed.
    admin.wait_text("#channels", "No channels").await;
    admin.select("#channel-kind", "slack").await;
    admin.fill("#channel-url", "ftp://example.com/hook").await;
    admin.click("#channel-add").await;
    admin.wait_text("main", "use an http or https URL").await;
    admin.fill("#channel-url", "http://127.0.0.1:9/hook").await;
    admin.click("#channel-add").await;
    admin.wait_text("#channels", "Every token").await;
    admin.wait_text("#channels", "Nothing sent yet").await;
    // Opened again, the page shows the days as saved, largest first.
    admin.goto(&gw.url("/patgate/admin/settings")).await;
    admin.ready().await;
    admin.wait_text("#channels", "Every token").await;
    assert_eq!(
        admin
            .eval("return document.getElementById('reminder-days').value")
            .await,
        "30, 7, 1"
    );
    admin.resize(1280, 1700).await;
    admin.eval("window.scrollTo(0, 0)").await;
    admin.screenshot("admin-settings-1280").await;
    admin.resize(390, 844).await;
    admin.screenshot("admin-settings-390").await;
    admin.close().await;

    let alice = driver.browser(1280, 900).await;
    alice.sign_in(&base, "alice", "alice-pw").await;
    alice.click("#generate-open").await;
    let mut offered = Vec::new();
    for option in alice.find_all("#token-expiration option").await {
        offered.push(option.text().await.unwrap());
    }
    assert_eq!(offered, ["7 days", "30 days"]);
    alice
        .wait_text("#generate-panel", "allows at most 30 days")
        .await;
    alice.screenshot("tokens-generate-panel-1280").await;
    alice.resize(390, 844).await;
    alice.screenshot("tokens-generate-panel-390").await;
    // Her own channel, for her tokens only; the administrators' one is not hers to see.
    alice.resize(1280, 900).await;
    alice.wait_text("main", "No channels of your own").await;
    alice
        .fill("#channel-url", "https://hooks.example.com/alice")
        .await;
    alice.fill("#channel-secret", "short").await;
    alice.click("#channel-add").await;
    alice.wait_text("main", "16 to 256").await;
    alice
        .fill("#channel-secret", "a-long-enough-signing-secret")
        .await;
    alice.click("#channel-add").await;
    let listed = alice.wait_text("#channels", "alice's tokens").await;
    assert!(!listed.contains("Every token"), "{listed}");
    assert!(!listed.contains("a-long-enough-signing-secret"));
    alice.close().await;
}

/// Signs in through the sign-in page's "Sign in with SSO" and the provider's own form,
/// and waits for the Access tokens page the callback lands on.
async fn sso_sign_in(browser: &Browser, gw: &Gateway, user: &str) {
    browser.goto(&gw.url("/patgate/signin")).await;
    browser.click("#sign-in-sso").await;
    browser.fill("input[name='login']", user).await;
    browser.fill("input[name='password']", "any").await;
    browser.click("form button").await;
    browser.find("#user-menu-button").await;
    browser.ready().await;
    assert_eq!(browser.path().await, "/patgate/");
    assert_eq!(browser.text("#user-menu-button .who").await, user);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sso_users_see_the_message_or_the_banner() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let port = free_port();
    let provider = Provider::start(ProviderOptions {
        client_id: "patgate".into(),
        client_secret: "client-secret-for-tests".into(),
        redirect_uris: vec![format!("http://127.0.0.1:{port}/patgate/sso/callback")],
        accounts: vec![
            Account::new("u-sam", "sam", "sam@example.com", &["deployers"]),
            Account::new("u-nia", "nia", "nia@example.com", &["deployers"]),
        ],
        ..ProviderOptions::default()
    })
    .await;
    let upstream = Upstream::start().await;
    let listen = format!("127.0.0.1:{port}");
    let redirect = format!("http://127.0.0.1:{port}/patgate/sso/callback");
    let gw = &Gateway::start(config(
        &db,
        &upstream.url(),
        &[
            ("PATGATE_LISTEN", &listen),
            ("PATGATE_SSO__REDIRECT_URL", &redirect),
            ("PATGATE_SSO__ISSUER", &provider.issuer),
            ("PATGATE_SSO__CLIENT_ID", "patgate"),
            ("PATGATE_SSO__CLIENT_SECRET", "client-secret-for-tests"),
            ("PATGATE_SSO__SCOPES", "openid,profile,email,groups"),
            ("PATGATE_SSO__REVALIDATE_EVERY", "2s"),
            ("PATGATE_SCIM__SECRET", common::scim::SECRET),
        ],
    ))
    .await;
    let driver = Driver::start(None).await;

    // With PATs allowed, an SSO user signs in through the provider and may generate.
    let browser = driver.browser(1280, 900).await;
    browser.goto(&gw.url("/patgate/signin")).await;
    let sso = browser.find("#sign-in-sso").await;
    assert_eq!(sso.text().await.unwrap(), "Sign in with SSO");
    browser.screenshot("signin-sso-1280").await;
    sso_sign_in(&browser, gw, "nia").await;
    browser.click("#generate-open").await;
    browser.fill("#token-name", "nia's token").await;
    browser.click("#generate").await;
    browser.find("#new-token-value").await;
    browser
        .wait_text("#email-current", "sent to nia@example.com")
        .await;
    browser.close().await;

    let admin = Session::password(&gw.url(""), "admin", "admin-pw")
        .await
        .with_csrf()
        .await;
    let off = admin
        .send(
            "PUT",
            "/patgate/api/v1/settings",
            Some(&serde_json::json!({"sso_pat_creation_enabled": false})),
        )
        .await;
    assert_eq!(off.status, 200, "{:?}", off.body);

    // Without tokens: only the informational message, no list and no Generate.
    let sam = driver.browser(1280, 900).await;
    sso_sign_in(&sam, gw, "sam").await;
    sam.wait_text("#sso-info", "disabled").await;
    assert!(sam.find_all("#tokens").await.is_empty());
    assert!(sam.find_all("#generate-open").await.is_empty());
    sam.screenshot("tokens-sso-message-1280").await;
    sam.close().await;

    // With tokens: the list stays, Generate is disabled, and a banner says why.
    let nia = driver.browser(1280, 900).await;
    sso_sign_in(&nia, gw, "nia").await;
    nia.wait_text("#tokens", "nia's token").await;
    nia.wait_text("#sso-banner", "disabled").await;
    let generate = nia.find("#generate-open").await;
    assert!(!generate.is_enabled().await.unwrap());
    nia.screenshot("tokens-sso-banner-1280").await;
    nia.resize(390, 844).await;
    nia.screenshot("tokens-sso-banner-390").await;
    nia.close().await;

    // The administrator sees how fresh SSO users' roles are. The provider refuses sam
    // from now on: the next re-validation suspends him, and the users page says so.
    provider.revoke("u-sam").await;
    let admin_page = driver.browser(1280, 900).await;
    admin_page.sign_in(&gw.url(""), "admin", "admin-pw").await;
    admin_page.goto(&gw.url("/patgate/admin/settings")).await;
    admin_page.wait_text("#sso-freshness", "Re-validated").await;
    admin_page
        .wait_text("#sso-freshness-summary", "re-validated every 2 s")
        .await;
    admin_page.screenshot("settings-sso-freshness-1280").await;
    // Both are asked again within a period (2 s) of their last sign-in.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let (sam_row, nia_row) = loop {
        admin_page.goto(&gw.url("/patgate/admin/users")).await;
        admin_page.find("#users tr[data-user='sam']").await;
        let sam = admin_page.text("#users tr[data-user='sam']").await;
        let nia = admin_page.text("#users tr[data-user='nia']").await;
        if sam.contains("Suspended") && nia.contains("re-validated") {
            break (sam, nia);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sam not shown suspended or nia not re-validated:\n{sam}\n{nia}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sam_row.contains("refused by the provider"), "{sam_row}");
    assert!(nia_row.contains("deployers"), "{nia_row}");
    assert!(nia_row.contains("Active"), "{nia_row}");
    admin_page.screenshot("users-sso-roles-1280").await;

    // Once SCIM pushes groups, the settings say so; the users page shows the source.
    let base = gw.url("");
    let linked = common::scim::scim(
        &base,
        "POST",
        "/Users",
        Some(&common::scim::okta_user("nia")),
    )
    .await;
    assert_eq!(linked.status, 201, "{:?}", linked.body);
    let nia_id = linked.json()["id"].as_str().unwrap().to_string();
    let group = common::scim::scim(
        &base,
        "POST",
        "/Groups",
        Some(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "release-managers",
            "members": [{"value": nia_id}],
        })),
    )
    .await;
    assert_eq!(group.status, 201, "{:?}", group.body);
    admin_page.goto(&gw.url("/patgate/admin/settings")).await;
    admin_page
        .wait_text("#sso-freshness", "Pushed by SCIM")
        .await;
    admin_page.goto(&gw.url("/patgate/admin/users")).await;
    admin_page
        .wait_text("#users tr[data-user='nia']", "release-managers")
        .await;
    let nia_row = admin_page.text("#users tr[data-user='nia']").await;
    assert!(nia_row.contains("pushed by SCIM"), "{nia_row}");
    admin_page.close().await;
    drop(provider);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_servers_users_and_the_audit_log() {
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    let mail = SmtpServer::start(smtp::Mode::Plain, true).await;
    seed_token(gw, "alice", "alice's token", Some(now() + 30 * DAY)).await;
    let driver = Driver::start(None).await;
    let admin = driver.browser(1280, 1000).await;
    admin.sign_in(&gw.url(""), "admin", "admin-pw").await;

    // Create an SMTP server item with the seed's fields; its name is shown as text.
    admin
        .click("nav a[href='/patgate/admin/smtp-servers']")
        .await;
    admin.ready().await;
    admin.click("#smtp-new").await;
    let name = "Mail <img src=x onerror=alert(1)>";
    admin.fill("#smtp-name", name).await;
    admin.fill("#smtp-host", "127.0.0.1").await;
    admin.fill("#smtp-port", &mail.port.to_string()).await;
    admin.fill("#smtp-username", smtp::USER).await;
    admin.fill("#smtp-password", smtp::PASSWORD).await;
    admin.fill("#smtp-from", "deploy@example.com").await;
    admin.fill("#smtp-test-address", "ops@example.com").await;
    // The test server offers AUTH over plain SMTP; the item says the password may go
    // in clear, as for a relay on a trusted network.
    admin
        .fill(
            "#smtp-properties",
            "mail.smtp.starttls.enable=false\npatgate.smtp.auth.plaintext=true",
        )
        .await;
    admin.screenshot("admin-smtp-form-1280").await;
    assert!(
        admin.unlabelled_fields().await.is_empty(),
        "{:?}",
        admin.unlabelled_fields().await
    );
    admin.click("#smtp-save").await;
    admin.wait_text("#smtp-servers", "password set").await;
    let row = admin.text("#smtp-servers td.name").await;
    assert!(row.contains(name), "shown as typed: {row}");
    assert!(admin.find_all("#smtp-servers img").await.is_empty());
    let source = admin.client.source().await.unwrap();
    assert!(
        !source.contains(smtp::PASSWORD),
        "the password is write-only"
    );

    // Send Test Mail: the result beside the button, and the message at the server.
    admin
        .click("#smtp-servers button[aria-label^='Send test mail']")
        .await;
    admin.click("#test-mail-send").await;
    admin
        .wait_text("#test-mail-result", "Test mail sent to ops@example.com")
        .await;
    let received = within(Duration::from_secs(5), || async {
        !mail.received().is_empty()
    })
    .await;
    assert!(received.is_some(), "the SMTP server received the test mail");
    assert_eq!(mail.received()[0].rcpt_tos, ["ops@example.com"]);
    admin.screenshot("admin-smtp-1280").await;

    // A wrong password: the SMTP server's refusal is shown where it was asked for.
    admin
        .click("#smtp-servers button[aria-label^='Edit']")
        .await;
    admin.fill("#smtp-password", "not-the-password").await;
    admin.click("#smtp-save").await;
    admin.wait_gone("#smtp-form").await;
    admin
        .click("#smtp-servers button[aria-label^='Send test mail']")
        .await;
    admin.click("#test-mail-send").await;
    let refused = admin
        .wait_text("#test-mail-result", "Authentication failed")
        .await;
    assert!(!refused.contains("not-the-password"), "{refused}");
    admin.resize(390, 844).await;
    admin.screenshot("admin-smtp-390").await;
    admin.resize(1280, 1000).await;

    // Users: disable alice (her token stops), enable her, revoke her tokens.
    admin.click("nav a[href='/patgate/admin/users']").await;
    admin.ready().await;
    admin.wait_text("#users", "alice").await;
    admin
        .click("#users tr[data-user='alice'] button[aria-label='Disable alice']")
        .await;
    admin
        .wait_text("#users tr[data-user='alice']", "Disabled")
        .await;
    admin.screenshot("admin-users-1280").await;
    admin.resize(390, 844).await;
    admin.screenshot("admin-users-390").await;
    admin.resize(1280, 1000).await;
    admin
        .click("#users tr[data-user='alice'] button[aria-label='Enable alice']")
        .await;
    admin
        .wait_text("#users tr[data-user='alice']", "Active")
        .await;
    admin
        .click("#users tr[data-user='alice'] button[aria-label^='Revoke']")
        .await;
    admin.wait_text("dialog", "Revoke all tokens?").await;
    admin.click("dialog #confirm").await;
    admin.wait_gone("dialog").await;
    let api = gw.api().unwrap();
    let left = within(Duration::from_secs(5), || async {
        api.store.live_tokens("alice").await.unwrap().is_empty()
    })
    .await;
    assert!(left.is_some(), "alice's tokens are revoked");

    // The audit log shows what was done.
    admin.click("nav a[href='/patgate/admin/audit']").await;
    admin.ready().await;
    admin.wait_text("#audit", "user.disabled").await;
    assert!(admin.unlabelled_fields().await.is_empty());
    admin.select("#audit-action", "smtp_server.test_mail").await;
    admin
        .click("form[role='search'] button[type='submit']")
        .await;
    let filtered = within(Duration::from_secs(5), || async {
        let mut actions = Vec::new();
        for code in admin.find_all("#audit td.name code").await {
            actions.push(code.text().await.unwrap_or_default());
        }
        actions.len() == 2 && actions.iter().all(|a| a == "smtp_server.test_mail")
    })
    .await;
    assert!(filtered.is_some(), "the filter shows the two test mails");
    admin.screenshot("admin-audit-1280").await;
    admin.resize(390, 844).await;
    admin.screenshot("admin-audit-390").await;
    admin.close().await;
    mail.stop().await;
}

/// The page-load measurement behind BENCHMARKS.md ("Web pages"), run by `bench/ui.sh`:
/// the Access tokens page's first load, signed in, with 50 tokens, in a fresh browser
/// profile (nothing cached): bytes transferred (page, assets and API answers) and the
/// time from navigation start until the list is rendered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it with bench/ui.sh"]
async fn measure_first_load_with_50_tokens() {
    let rounds: usize = std::env::var("UI_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(15);
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    for i in 0..50 {
        let expires = (i % 6 != 0).then(|| now() + (i as i64 % 40 + 1) * DAY - 60);
        seed_token(gw, "alice", &format!("pipeline token {i:02}"), expires).await;
    }
    let driver = Driver::start(None).await;
    let mut bytes = Vec::new();
    let mut render = Vec::new();
    let mut requests = 0;
    let mut each = Vec::new();
    for _ in 0..rounds {
        let browser = driver.browser(1280, 900).await;
        with_session(&browser, gw, "alice", SignInMethod::Password).await;
        browser.goto(&gw.url("/patgate/")).await;
        browser.ready().await;
        assert_eq!(
            browser
                .find_all("#tokens tbody tr[data-token-id]")
                .await
                .len(),
            50
        );
        let m = browser
            .eval(
                "const nav = performance.getEntriesByType('navigation')[0];
                 const res = performance.getEntriesByType('resource');
                 return {
                   bytes: nav.transferSize + res.reduce((n, r) => n + r.transferSize, 0),
                   requests: 1 + res.length,
                   ready: performance.getEntriesByName('patgate-ready')[0].startTime,
                   each: [[new URL(nav.name).pathname, nav.transferSize]].concat(
                     res.map((r) => [new URL(r.name).pathname, r.transferSize])),
                 };",
            )
            .await;
        bytes.push(m["bytes"].as_f64().unwrap());
        render.push(m["ready"].as_f64().unwrap());
        requests = m["requests"].as_u64().unwrap();
        each = m["each"].as_array().unwrap().clone();
        browser.close().await;
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        (v[v.len() / 2], v[v.len() - 1])
    };
    let (bytes_median, bytes_max) = stats(&mut bytes);
    let (render_median, render_max) = stats(&mut render);
    println!("\n| measure | median | worst | target |");
    println!("| --- | --- | --- | --- |");
    println!(
        "| bytes transferred ({requests} requests) | {:.1} KB | {:.1} KB | < 100 KB |",
        bytes_median / 1000.0,
        bytes_max / 1000.0
    );
    println!(
        "| navigation start → 50 tokens rendered | {render_median:.0} ms | {render_max:.0} ms | < 300 ms |"
    );
    println!("({rounds} first loads, each in a fresh browser profile)");
    println!("\n| request (last load) | bytes transferred |\n| --- | --- |");
    for entry in each {
        println!("| `{}` | {} |", entry[0].as_str().unwrap(), entry[1]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_write_ci_trust_policies_on_their_page() {
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    let driver = Driver::start(None).await;
    let admin = driver.browser(1280, 1000).await;
    admin.sign_in(&gw.url(""), "admin", "admin-pw").await;
    admin
        .click("nav a[href='/patgate/admin/trust-policies']")
        .await;
    admin.ready().await;
    admin.wait_text("main", "No trust policies yet").await;
    admin.click("#trust-new").await;
    assert!(
        admin.unlabelled_fields().await.is_empty(),
        "{:?}",
        admin.unlabelled_fields().await
    );
    admin.fill("#trust-name", "deploy-app").await;
    admin
        .fill("#trust-audience", "https://deploy.example.com")
        .await;
    admin.fill("#trust-user", "ci-deploy-app").await;
    // A condition that names no value is refused by the API, beside the button.
    admin.fill("#trust-claims", "repository=*").await;
    admin.click("#trust-save").await;
    admin.wait_text("#trust-form", "not only wildcards").await;
    admin
        .fill(
            "#trust-claims",
            "repository=octo-org/deploy-app\nref=refs/heads/main",
        )
        .await;
    admin.select("#trust-scope", "read").await;
    admin.click("#trust-save").await;
    let row = admin.wait_text("#trust-policies", "deploy-app").await;
    assert!(row.contains("token.actions.githubusercontent.com"), "{row}");
    assert!(row.contains("ref = refs/heads/main"), "{row}");
    assert!(row.contains("Never"), "not used yet: {row}");
    admin.screenshot("admin-trust-policies-1280").await;
    let stored = common::api::as_user(
        "GET",
        &gw.url("/patgate/api/v1/trust-policies/deploy-app"),
        "admin",
        "admin-pw",
        None,
    )
    .await;
    assert_eq!(stored.json()["scope"], "read");
    assert_eq!(stored.json()["lifetime"], "15m");

    // Ordinary users neither see the link nor the page.
    let alice = driver.browser(1280, 800).await;
    alice.sign_in(&gw.url(""), "alice", "alice-pw").await;
    assert!(alice
        .find_all("nav a[href='/patgate/admin/trust-policies']")
        .await
        .is_empty());
    alice.goto(&gw.url("/patgate/admin/trust-policies")).await;
    alice.wait_text("main", "for administrators").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_are_made_by_admins_and_run_by_their_owners() {
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    let driver = Driver::start(None).await;
    // alice becomes known to the gateway by signing in.
    let alice = driver.browser(1280, 1000).await;
    alice.sign_in(&gw.url(""), "alice", "alice-pw").await;
    alice.click("nav a[href='/patgate/service-accounts']").await;
    alice.ready().await;
    alice.wait_text("main", "You own no service account").await;
    assert!(alice.find_all("#sa-new").await.is_empty());

    let admin = driver.browser(1280, 1000).await;
    admin.sign_in(&gw.url(""), "admin", "admin-pw").await;
    admin.click("nav a[href='/patgate/service-accounts']").await;
    admin.ready().await;
    admin.wait_text("main", "No service accounts yet").await;
    admin.click("#sa-new").await;
    assert!(
        admin.unlabelled_fields().await.is_empty(),
        "{:?}",
        admin.unlabelled_fields().await
    );
    admin.fill("#sa-name", "ci-bot").await;
    admin.fill("#sa-description", "release pipeline").await;
    // An owner the gateway does not know is refused, beside the button.
    admin.fill("#sa-owners", "alice, nobody-known").await;
    admin.click("#sa-save").await;
    admin.wait_text("#sa-form", "does not know this user").await;
    admin.fill("#sa-owners", "alice").await;
    admin.click("#sa-save").await;
    let row = admin.wait_text("#service-accounts", "ci-bot").await;
    assert!(row.contains("release pipeline"), "{row}");
    assert!(row.contains("Looked after"), "{row}");

    // The owner sees it, generates a token for it, and the token acts as the account.
    alice.goto(&gw.url("/patgate/service-accounts")).await;
    alice.ready().await;
    alice.wait_text("#service-accounts", "ci-bot").await;
    alice
        .click("#service-accounts button[aria-label='Tokens of ci-bot']")
        .await;
    alice.fill("#sa-token-name", "release").await;
    alice.click("#sa-token-create").await;
    alice.wait_text("#sa-tokens", "release").await;
    let token = alice
        .eval("return document.getElementById('new-token-value').value")
        .await;
    let token = token.as_str().unwrap().to_string();
    let proxied = get(
        &gw.url("/deployit/repository"),
        &[("x-deploy-personal-token", &token)],
    )
    .await;
    assert_eq!(proxied.status, 200);
    assert_eq!(stack.upstream.last().headers["x-deploy-user"], "ci-bot");

    // alice is disabled: the administrator's page flags the account, the token still works.
    gw.set_disabled("alice", true).await;
    admin.goto(&gw.url("/patgate/service-accounts")).await;
    admin.ready().await;
    let row = admin
        .wait_text("#service-accounts", "No active owner")
        .await;
    assert!(row.contains("alice (inactive)"), "{row}");
    let proxied = get(
        &gw.url("/deployit/repository"),
        &[("x-deploy-personal-token", &token)],
    )
    .await;
    assert_eq!(proxied.status, 200);
    admin.screenshot("service-accounts-1280").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_inventory_filters_exports_and_revokes() {
    use patgate::core::token::Expiration;
    let stack = stack(&[]).await;
    let gw = &stack.gw;
    let (deploy_id, deploy) = gw
        .create_token("alice", "deploy-ci", Expiration::Days30)
        .await;
    gw.create_token("alice", "laptop", Expiration::Days7).await;
    let (backup_id, backup) = gw.create_token("bob", "backup", Expiration::Never).await;
    let works = |token: String| {
        let url = gw.url("/deployit/repository");
        async move {
            get(&url, &[("x-deploy-personal-token", &token)])
                .await
                .status
                .as_u16()
        }
    };
    let driver = Driver::start(None).await;
    let admin = driver.browser(1280, 1000).await;
    admin.sign_in(&gw.url(""), "admin", "admin-pw").await;
    admin.click("nav a[href='/patgate/admin/tokens']").await;
    admin.ready().await;
    let table = admin.wait_text("#inventory", "deploy-ci").await;
    assert!(
        table.contains("backup") && table.contains("Command line"),
        "{table}"
    );
    assert!(
        admin.unlabelled_fields().await.is_empty(),
        "{:?}",
        admin.unlabelled_fields().await
    );

    // Filtered by owner: bob's token leaves the table, the export follows the filter.
    admin.fill("#inv-owner", "alice").await;
    admin
        .click("form[role='search'] button[type='submit']")
        .await;
    admin
        .wait_gone(&format!("#inventory tr[data-token='{backup_id}']"))
        .await;
    let csv = admin
        .eval_async(
            "const done = arguments[0];
             fetch(document.getElementById('inv-export').href).then((r) => r.text()).then(done);",
        )
        .await;
    let csv = csv.as_str().unwrap();
    assert!(csv.contains("deploy-ci") && csv.contains("laptop"), "{csv}");
    assert!(!csv.contains("backup"), "{csv}");

    // A selection is revoked after a confirmation.
    admin
        .click("#inventory input[aria-label='Select deploy-ci of alice']")
        .await;
    admin
        .wait_text("#inv-revoke-selected", "Revoke 1 selected")
        .await;
    admin.click("#inv-revoke-selected").await;
    admin.click("dialog #confirm").await;
    admin.wait_text("main", "1 token revoked.").await;
    let row = admin
        .wait_text(
            &format!("#inventory tr[data-token='{deploy_id}']"),
            "Revoked",
        )
        .await;
    assert!(row.contains("deploy-ci"), "{row}");
    let refused = within(Duration::from_secs(1), || {
        let answer = works(deploy.clone());
        async move { answer.await == 401 }
    })
    .await
    .is_some();
    assert!(refused, "the revoked token still worked after 1 s");
    assert_eq!(works(backup.clone()).await, 200);

    // Every token: only once the phrase is typed.
    admin.click("#inv-revoke-all").await;
    admin.fill("#revoke-all-phrase", "revoke everything").await;
    admin.click("dialog #confirm").await;
    admin.wait_text("dialog", "exactly to confirm").await;
    assert_eq!(works(backup.clone()).await, 200, "nothing revoked yet");
    admin.fill("#revoke-all-phrase", "revoke every token").await;
    admin.click("dialog #confirm").await;
    admin.wait_text("main", "Every token was revoked (2)").await;
    let refused = within(Duration::from_secs(1), || {
        let answer = works(backup.clone());
        async move { answer.await == 401 }
    })
    .await
    .is_some();
    assert!(
        refused,
        "a token still worked 1 s after every token was revoked"
    );
    admin.screenshot("token-inventory-1280").await;

    // The limit of tokens per user is a system setting.
    admin.click("nav a[href='/patgate/admin/settings']").await;
    admin.ready().await;
    admin.fill("#max-tokens", "0").await;
    admin.click("#save-settings").await;
    admin
        .wait_text("#settings-actions", "from 1 to 10000")
        .await;
    admin.fill("#max-tokens", "3").await;
    admin.click("#save-settings").await;
    admin
        .wait_text("#settings-actions", "Settings saved.")
        .await;
    let api = gw.api().unwrap();
    assert_eq!(
        api.store.settings().await.unwrap().max_tokens_per_user,
        Some(3)
    );
}
