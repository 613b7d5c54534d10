//! The dashboard in a real browser: headless Chromium, driven through ChromeDriver, against
//! the built binary on the embedded store and on PostgreSQL, and the same flow in headless
//! Firefox through geckodriver. What a person does — sign in
//! with the printed one-time login, choose a password, create a key and copy it from the
//! show-once panel, rotate it, revoke it — checked against what the API then answers.
//! Each page is saved as a screenshot at 1440 and 390 px under `target/screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::process::Command;

use keyward_store_pg::testing::TestDatabase;
use serde_json::{Value, json};

mod common;

use common::{
    BIN, Server, account_with_owner,
    webdriver::{Browser, Engine},
};

const PASSWORD: &str = "a password of my own choosing";

/// Who signs in, and the account key the test verifies keys with.
struct Login {
    email: String,
    one_time_password: String,
    account_key: String,
}

/// The value after `label` on the line that has it.
fn printed(output: &str, label: &str) -> String {
    let line = output.lines().find_map(|l| l.split_once(label).map(|(_, rest)| rest.trim().to_owned()));
    line.unwrap_or_else(|| panic!("{label:?} is not in: {output}"))
}

fn verify(server: &Server, account_key: &str, key: &str) -> Value {
    server.call("POST", "/v1/keys/verify", account_key, Some(json!({"key": key}))).1["code"].clone()
}

/// What `keyward serve` on the embedded store prints for its first owner.
fn printed_login(server: &Server) -> Login {
    let output = server.output_with("Dashboard:");
    let dashboard = printed(&output, "Dashboard:");
    assert_eq!(dashboard, format!("{}/dashboard", server.base), "serve prints where the dashboard is");
    let (email, one_time_password) = printed(&output, "Owner login, shown once:")
        .split_once(" / ")
        .map(|(e, p)| (e.to_owned(), p.to_owned()))
        .unwrap();
    Login { email, one_time_password, account_key: printed(&output, "Account key, shown once:") }
}

#[test]
fn the_dashboard_on_the_embedded_store() {
    let server = Server::start(&[]);
    person_manages_keys(&server, &printed_login(&server), "memory", Engine::Chromium);
}

/// The same flow in Firefox (Debian's `firefox-esr` through geckodriver), on the embedded
/// store: the pages use nothing one engine has and the other lacks.
#[test]
fn the_dashboard_in_firefox() {
    let server = Server::start(&[]);
    person_manages_keys(&server, &printed_login(&server), "memory", Engine::Firefox);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_on_postgres() {
    let db = TestDatabase::new().await;
    let email = "owner@acme.io";
    let created = Command::new(BIN)
        .args(["account", "create", "--name", "Acme", "--plan", "pro", "--owner-email", email])
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let stdout = String::from_utf8_lossy(&created.stdout).into_owned();
    let login = Login {
        email: email.to_owned(),
        one_time_password: printed(&stdout, "One-time password, shown once:"),
        account_key: printed(&stdout, "Account key, shown once:"),
    };
    let server = Server::start(&[("DATABASE_URL", db.url())]);
    person_manages_keys(&server, &login, "postgres", Engine::Chromium);
}

/// Signing in without a mouse, and what the login throttle says.
#[test]
fn signing_in_by_keyboard_and_the_login_throttle() {
    const TAB: &str = "\u{E004}";
    const ENTER: &str = "\u{E007}";
    let server = Server::start(&[]);
    let output = server.output_with("Dashboard:");
    let email = printed(&output, "Owner login, shown once:").split_once(" / ").map(|(e, _)| e.to_owned()).unwrap();
    let browser = Browser::start();
    browser.go(&format!("{}/dashboard/sign-in", server.base));
    browser.find("#email");
    assert_eq!(browser.focused(), "email", "the first field has the focus");
    browser.keys(&format!("{email}{TAB}"));
    assert_eq!(browser.focused(), "password", "Tab moves to the password");
    let outline = browser.script("return getComputedStyle(document.activeElement).outlineStyle;");
    assert_ne!(outline, "none", "the focus is visible");
    browser.keys(&format!("a wrong password{ENTER}"));
    assert_eq!(browser.wait_for_text("form [data-error]"), "Wrong email or password.");
    // Five failures for one address, then the throttle's answer, saying how long to wait.
    let message = browser.wait("the login throttle", || {
        browser.script("document.querySelector('form [data-error]').textContent = '';");
        browser.click("#password");
        browser.keys(ENTER);
        let shown = browser.wait_for_text("form [data-error]");
        shown.starts_with("Too many sign-in attempts").then_some(shown)
    });
    assert!(message.contains("Try again in"), "{message}");
    browser.screenshots("throttled");
}

fn person_manages_keys(server: &Server, login: &Login, store: &str, engine: Engine) {
    let browser = Browser::start_engine(engine);
    let base = &server.base;
    let shot = |name: &str| browser.screenshots(&format!("{store}-{name}"));

    // Signed out, every page leads to signing in.
    browser.go(&format!("{base}/"));
    browser.wait_for_path("/dashboard/sign-in");
    shot("sign-in");

    // A wrong password says so, beside the form.
    browser.fill("#email", &login.email);
    browser.fill("#password", "not the password at all");
    browser.click("form[data-api] button[type=submit]");
    assert_eq!(browser.wait_for_text("form [data-error]"), "Wrong email or password.");

    // The one-time password signs in once, to choose a password.
    browser.fill("#password", &login.one_time_password);
    browser.click("form[data-api] button[type=submit]");
    browser.wait_for_path("/dashboard/password");
    shot("password");
    browser.fill("#current_password", &login.one_time_password);
    browser.fill("#new_password", PASSWORD);
    browser.fill("#repeat_password", "something else entirely");
    browser.click("form[data-api] button[type=submit]");
    assert_eq!(browser.wait_for_text("[data-error-for=new_password]"), "the two passwords differ");
    browser.fill("#repeat_password", PASSWORD);
    browser.click("form[data-api] button[type=submit]");
    browser.wait_for_path("/dashboard");

    // Create a key: a field the API refuses is named beside it, and nothing is created.
    browser.go(&format!("{base}/dashboard/keys/new"));
    browser.fill("#name", "Checkout service");
    browser.fill("#scopes", "orders:read, orders:write");
    browser.script("document.getElementById('expires_at').value = '2001-01-01T00:00';");
    browser.click("#create-key button[type=submit]");
    assert_eq!(browser.wait_for_text("[data-error-for=expires_at]"), "must be in the future");
    assert_eq!(server.call("GET", "/v1/keys", &login.account_key, None).1["total"], 0);
    browser.script("document.getElementById('expires_at').value = '';");
    shot("create-key");
    browser.click("#create-key button[type=submit]");

    // The show-once panel holds the key; the API verifies it.
    let plaintext = browser.wait_for_text("#plaintext");
    assert!(plaintext.starts_with("kw_"), "{plaintext}");
    assert!(browser.text("#show-once").contains("It will not be shown again."));
    shot("show-once");
    assert_eq!(verify(server, &login.account_key, &plaintext), "VALID");

    // Leaving the panel forgets the key: not in the next page, the URL or storage.
    browser.click("[data-done]");
    browser.wait("the key's page", || browser.exists("h1 .badge").then_some(()));
    let key_path = browser.url().split_once("/dashboard").map(|(_, p)| format!("/dashboard{p}")).unwrap();
    assert!(key_path.starts_with("/dashboard/keys/key_"), "{key_path}");
    assert!(!browser.url().contains(&plaintext));
    assert!(!browser.source().contains(&plaintext), "the key's page does not hold the plaintext");
    let stored = browser.script("return JSON.stringify([localStorage, sessionStorage, history.length]);");
    assert!(!stored.to_string().contains(&plaintext));
    assert_eq!(browser.text("h1 .badge"), "active");
    shot("key");

    // Edit: limits, quota, allowlist, expiry and metadata, as the API then reports them.
    browser.click("a[href$='/edit']");
    browser.wait_for_path(&format!("{key_path}/edit"));
    browser.fill("#name", "Checkout service EU");
    browser.fill("[id='rate_limits.0.limit']", "100");
    browser.fill("[id='rate_limits.0.period_seconds']", "60");
    browser.fill("[id='quota.remaining']", "1000");
    browser.fill("[id='quota.refill.amount']", "1000");
    browser.select("[id='quota.refill.interval']", "month");
    browser.fill("#ip_allowlist", "127.0.0.1, 10.0.0.0/8");
    browser.script("document.getElementById('expires_at').value = '2030-01-01T00:00';");
    browser.fill("#metadata", r#"{"team": "payments"}"#);
    shot("edit-key");
    browser.click("#edit-key button[type=submit]");
    browser.wait_for_path(&key_path);
    let attributes = browser.text("dl.attributes");
    for shown in ["100 per 60 s", "1000 uses left", "10.0.0.0/8", "2030-01-01 00:00 UTC", "payments"] {
        assert!(attributes.contains(shown), "{shown:?} is not in:\n{attributes}");
    }
    let key_id = key_path.rsplit('/').next().unwrap();
    let (_, stored) = server.call("GET", &format!("/v1/keys/{key_id}"), &login.account_key, None);
    assert_eq!(stored["name"], "Checkout service EU");
    assert_eq!(stored["quota"], json!({"remaining": 1000, "refill": {"amount": 1000, "interval": "month"}}));
    assert_eq!(stored["ip_allowlist"], json!(["127.0.0.1/32", "10.0.0.0/8"]));
    // Emptied on purpose, a field clears its attribute.
    browser.click("a[href$='/edit']");
    browser.fill("#ip_allowlist", "");
    browser.fill("[id='quota.remaining']", "");
    browser.script("document.getElementById('expires_at').value = '';");
    browser.click("#edit-key button[type=submit]");
    browser.wait_for_path(&key_path);
    let (_, stored) = server.call("GET", &format!("/v1/keys/{key_id}"), &login.account_key, None);
    assert_eq!(
        (&stored["ip_allowlist"], &stored["quota"], &stored["expires_at"]),
        (&json!([]), &json!(null), &json!(null))
    );
    assert_eq!(stored["rate_limits"], json!([{"name": "window_1", "limit": 100, "period_seconds": 60}]), "kept");

    // Rotate with a grace period: the new key once, the old one's expiry shown.
    browser.click("details.rotate summary");
    browser.fill("#grace_period_seconds", "3600");
    browser.click("details.rotate button[type=submit]");
    let rotated = browser.wait_for_text("#plaintext");
    assert_ne!(rotated, plaintext);
    let old_key = browser.wait_for_text("[data-old-key]");
    assert!(old_key.starts_with("The old key keeps working until "), "{old_key}");
    shot("rotated");
    assert_eq!(verify(server, &login.account_key, &rotated), "VALID");
    assert_eq!(verify(server, &login.account_key, &plaintext), "VALID", "the old key works through its grace");
    browser.click("[data-done]");
    browser.wait("the new key's page", || (browser.url() != format!("{base}{key_path}")).then_some(()));

    // Revoke the new key: the confirmation names it, and the API answers REVOKED at once.
    browser.click("button.danger");
    let question = browser.accept_prompt();
    assert!(question.contains("Checkout service"), "{question}");
    browser.wait("the revoked badge", || (browser.text("h1 .badge") == "revoked").then_some(()));
    assert_eq!(verify(server, &login.account_key, &rotated), "REVOKED");

    // The list, filtered by status, shows it.
    browser.go(&format!("{base}/dashboard/keys?status=revoked"));
    assert_eq!(browser.text("#key-total"), "1 key");
    assert!(browser.text("table.keys").contains("Checkout service"));
    browser.go(&format!("{base}/dashboard/keys"));
    shot("keys");

    // A key reported found in public: its page says when and by whom, as text, and the
    // keyspaces page what a keyspace does with such keys.
    let body = json!({"name": "Pasted in a ticket"});
    let (status, leaked) = server.call("POST", "/v1/keys", &login.account_key, Some(body));
    assert_eq!(status, 201, "{leaked}");
    let report = json!({"keys": [leaked["key"]]});
    assert_eq!(server.try_request("POST", "/v1/leaks/revoke", &[], Some(report)).unwrap().0, 202);
    browser.go(&format!("{base}/dashboard/keys/{}", leaked["id"].as_str().unwrap()));
    assert_eq!(browser.text("h1 .badge"), "revoked");
    let found = browser.text("#leaked");
    assert!(found.ends_with(", public"), "{found}");
    browser.go(&format!("{base}/dashboard/keyspaces"));
    assert_eq!(browser.text("td.leak-policy"), "revoke live, notify test");

    // The overview's numbers are the API's, once the four verifications above are metered
    // (usage is written a second at a time). The total, not today's count: a run that
    // crosses midnight UTC meters some of them on the day before.
    let stats = browser.wait("the four verifications to be metered", || {
        let (_, stats) = server.call("GET", "/v1/stats", &login.account_key, None);
        (stats["verifications_total"] == 4).then_some(stats)
    });
    browser.go(&format!("{base}/dashboard"));
    assert_eq!(browser.text("#active-keys"), stats["active_keys"].to_string());
    assert_eq!(browser.text("#revoked-keys"), stats["revoked_keys"].to_string());
    assert_eq!(browser.text("#verifications-today"), stats["verifications_today"].to_string());
    let listed =
        browser.script("return [...document.querySelectorAll('ol.top-keys a')].map(a => a.href.split('/').pop());");
    let top: Vec<&Value> = stats["top_keys"].as_array().unwrap().iter().map(|k| &k["key_id"]).collect();
    assert!(!top.is_empty(), "the verified keys are the most used: {stats}");
    assert_eq!(listed.as_array().unwrap().iter().collect::<Vec<_>>(), top, "the most used keys, in the API's order");
    shot("overview");

    // The first key's page charts its two verifications in its last columns: today's, or
    // yesterday's and today's for a run that crossed midnight UTC.
    browser.go(&format!("{base}{key_path}"));
    let days =
        browser.script("return [...document.querySelectorAll('figure.days g.row')].map(g => Number(g.dataset.count));");
    let days: Vec<u64> = serde_json::from_value(days).unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days[28] + days[29], 2, "{days:?}");
    assert_eq!(browser.text("#requests-today"), days[29].to_string());
    shot("key-usage");

    // Nothing the pages did broke the Content-Security-Policy or threw (the API's refusals
    // the test provoked are logged as failed loads, and are not the page's fault).
    let console = browser.console();
    let provoked = |line: &&String| line.contains("/v1/") && line.contains("the server responded with a status of 4");
    assert!(
        !console
            .iter()
            .filter(|line| !provoked(line))
            .any(|line| line.starts_with("SEVERE") || line.contains("Content Security Policy")),
        "{console:#?}"
    );

    // Mint an account key: the step-up prompt asks for the password again (a wrong one is
    // refused in the prompt), then the minting resumes and shows the key once.
    browser.go(&format!("{base}/dashboard/account-keys"));
    shot("account-keys");
    browser.fill("#name", "ci-deploys");
    browser.click("#scope-keys-read");
    browser.click("#create-account-key button[type=submit]");
    browser.find("dialog#step-up[open]");
    shot("step-up");
    // Cancelled, the form says why nothing happened; tried again, the prompt returns.
    browser.click("#step-up [data-cancel]");
    assert_eq!(browser.wait_for_text("#create-account-key [data-error]"), "Your password is needed for this.");
    browser.click("#create-account-key button[type=submit]");
    browser.find("dialog#step-up[open]");
    browser.fill("#step-up-password", "not my password at all");
    browser.click("#step-up button[type=submit]");
    assert_eq!(browser.wait_for_text("#step-up [data-error]"), "Wrong email or password.");
    browser.fill("#step-up-password", PASSWORD);
    browser.click("#step-up button[type=submit]");
    let account_key = browser.wait_for_text("#plaintext");
    assert!(account_key.starts_with("kw_acct_"), "{account_key}");
    assert!(!browser.exists("dialog#step-up[open]"), "the prompt closed");
    let (status, listed) = server.call("GET", "/v1/keys", &account_key, None);
    assert_eq!(status, 200, "the new account key works: {listed}");
    browser.click("[data-done]");
    browser.wait_for_path("/dashboard/account-keys");
    assert!(browser.text("table.account-keys").contains("ci-deploys"));
    assert!(!browser.source().contains(&account_key));

    // Keyspaces: create, edit, delete (it holds no key).
    browser.go(&format!("{base}/dashboard/keyspaces"));
    browser.fill("#name", "Payments");
    browser.fill("#prefix", "pay");
    browser.fill("#default_scopes", "payments:read");
    browser.click("#create-keyspace button[type=submit]");
    browser.wait("the new keyspace", || browser.text("table.keyspaces").contains("Payments").then_some(()));
    shot("keyspaces");
    browser
        .script("[...document.querySelectorAll('table.keyspaces a')].find(a => a.textContent === 'Payments').click();");
    let payments = browser.wait("the Payments page", || {
        let title = browser.text("h1");
        title.starts_with("Payments").then_some(browser.url())
    });
    browser.fill("#name", "Payments EU");
    browser.click("#edit-keyspace button[type=submit]");
    browser.wait("the new name", || browser.text("h1").starts_with("Payments EU").then_some(()));
    // Its gateway routes: a bad pattern is refused, naming it; then a table is saved.
    let routes_path = format!("/v1/keyspaces/{}/routes", payments.rsplit('/').next().unwrap());
    browser.fill("#rules", "GET /v1/**/x");
    browser.click("#edit-routes button[type=submit]");
    browser
        .wait("the refused rule", || browser.text("#edit-routes").contains("[0].path: ** may only end").then_some(()));
    browser.fill("#rules", "GET,HEAD /v1/payments/** payments:read\n* /v1/status");
    browser.select("#route_default", "deny");
    browser.click("#edit-routes button[type=submit]");
    let saved = browser.wait("the saved routes", || {
        let (_, table) = server.call("GET", &routes_path, &login.account_key, None);
        (table["rules"].as_array().is_some_and(|r| r.len() == 2)).then_some(table)
    });
    assert_eq!(saved["default"], "deny");
    assert_eq!(
        saved["rules"][0],
        serde_json::json!({"methods": ["GET", "HEAD"], "path": "/v1/payments/**", "scopes": ["payments:read"]})
    );
    assert_eq!(saved["rules"][1], serde_json::json!({"methods": [], "path": "/v1/status", "scopes": []}));
    browser.wait("the page shows them", || {
        let shown = browser.script("return document.querySelector('#rules').value;");
        shown.as_str().is_some_and(|rules| rules.contains("/v1/payments/**")).then_some(())
    });
    shot("keyspace");
    browser.click("button.danger");
    assert!(browser.accept_prompt().contains("Payments EU"));
    browser.wait_for_path("/dashboard/keyspaces");
    assert!(!browser.text("table.keyspaces").contains("Payments"));
    let (status, _) = server.call(
        "GET",
        &format!("/v1/keyspaces/{}", payments.rsplit('/').next().unwrap()),
        &login.account_key,
        None,
    );
    assert_eq!(status, 404, "the keyspace is gone from the API too");

    // People: an invitation's link is shown once (no mailer here); it waits in its own
    // table until accepted or withdrawn; roles change; removal.
    browser.go(&format!("{base}/dashboard/people"));
    let invite_grace = |role: &str| {
        browser.fill("#email", "grace@acme.test");
        browser.select("#role", role);
        browser.click("#add-person button[type=submit]");
        let link = browser.wait_for_text("#plaintext");
        assert!(link.starts_with(&format!("{base}/invitations/")), "{link}");
        browser.click("[data-done]");
        browser.wait_for_path("/dashboard/people");
        link
    };
    let first_link = invite_grace("viewer");
    let waiting = "table.sent-invitations tr[data-email='grace@acme.test']";
    assert!(browser.text(waiting).contains("viewer"), "{}", browser.text(waiting));
    let (_, sent) = server.call("GET", "/v1/account/invitations", &login.account_key, None);
    assert_eq!(sent["data"][0]["email"], "grace@acme.test", "{sent}");
    shot("people-invited");
    browser.click(&format!("{waiting} button.danger"));
    assert!(browser.accept_prompt().contains("Withdraw the invitation of grace@acme.test"));
    browser.wait("the withdrawal", || (!browser.exists("table.sent-invitations")).then_some(()));
    let (_, sent) = server.call("GET", "/v1/account/invitations", &login.account_key, None);
    assert_eq!(sent["data"], json!([]), "withdrawn in the API too");
    let withdrawn = first_link.rsplit('/').next().unwrap();
    let (status, _, _) = server.try_request("GET", &format!("/v1/invitations/{withdrawn}"), &[], None).unwrap();
    assert_eq!(status, 404, "a withdrawn link is dead");
    // Invited again, Grace accepts in her own browser (the API here); she is a member then.
    let link = invite_grace("viewer");
    let token = link.rsplit('/').next().unwrap();
    let (status, _, accepted) = server
        .try_request("POST", &format!("/v1/invitations/{token}/accept"), &[], Some(json!({"password": PASSWORD})))
        .unwrap();
    assert_eq!(status, 200, "{accepted}");
    browser.go(&format!("{base}/dashboard/people"));
    let row = "tr[data-email='grace@acme.test']";
    assert!(browser.text(row).contains("grace@acme.test"));
    browser.select(&format!("{row} select"), "member");
    browser.click(&format!("{row} form button[type=submit]"));
    browser.wait("the new role, in the API", || {
        let (_, members) = server.call("GET", "/v1/account/users", &login.account_key, None);
        let grace = members["data"].as_array()?.iter().find(|m| m["email"] == "grace@acme.test")?.clone();
        (grace["role"] == "member").then_some(())
    });
    shot("people");
    browser.click(&format!("{row} button.danger"));
    assert!(browser.accept_prompt().contains("grace@acme.test"));
    browser.wait("the removal", || (!browser.exists(row)).then_some(()));

    // The audit log has what happened, newest first, and filters by action.
    browser.go(&format!("{base}/dashboard/audit"));
    let log = browser.text("table.audit");
    for action in
        ["auth.login", "key.create", "key.rotate", "key.revoke", "account_key.create", "user.invitation_withdraw"]
    {
        assert!(log.contains(action), "{action} is not in the audit page:\n{log}");
    }
    shot("audit");
    browser.go(&format!("{base}/dashboard/audit?action=account_key.create"));
    // The two tries refused for the step-up, and the one that succeeded after it.
    let rows = browser.script(
        "return [...document.querySelectorAll('table.audit tbody tr')].map(r => [r.dataset.action, r.dataset.result]);",
    );
    assert_eq!(
        rows,
        json!([["account_key.create", "success"], ["account_key.create", "denied"], ["account_key.create", "denied"]])
    );

    // The keys the panel showed are in no log line.
    let logs = server.output();
    for secret in [&plaintext, &rotated, &account_key] {
        assert!(!logs.contains(secret.as_str()), "a plaintext key was logged");
    }

    // Signing out ends the session: the pages lead to signing in again.
    browser.click("[data-sign-out]");
    browser.wait_for_path("/dashboard/sign-in");
    browser.go(&format!("{base}/dashboard/keys"));
    browser.wait_for_path("/dashboard/sign-in");
}

/// The page an invitation's link opens: a person with a login signs in on it and accepts,
/// and from then on chooses which account to enter when signing in; a new address chooses
/// its password there and is in.
#[tokio::test(flavor = "multi_thread")]
async fn an_invitations_link_is_accepted_on_its_page() {
    let db = TestDatabase::new().await;
    account_with_owner(db.url(), "Acme", "ada@acme.io", PASSWORD);
    account_with_owner(db.url(), "Umbrella", "boss@umbrella.io", PASSWORD);
    let server = Server::start(&[("DATABASE_URL", db.url())]);
    // Umbrella's owner invites Ada, who has a login already, and Bob, who has none.
    let login = json!({"email": "boss@umbrella.io", "password": PASSWORD});
    let (_, cookie, _) = server.try_request("POST", "/v1/auth/login", &[], Some(login)).unwrap();
    let cookie = cookie.unwrap().split(';').next().unwrap().to_owned();
    let as_boss = [("cookie", cookie.as_str())];
    let step_up = json!({"password": PASSWORD});
    assert_eq!(server.try_request("POST", "/v1/account/verify-password", &as_boss, Some(step_up)).unwrap().0, 200);
    let invite = |email: &str| {
        let body = json!({"email": email, "role": "member"});
        let (status, _, invited) = server.try_request("POST", "/v1/account/users", &as_boss, Some(body)).unwrap();
        assert_eq!(status, 202, "{invited}");
        invited["accept_url"].as_str().unwrap().to_owned()
    };
    let ada_link = invite("ada@acme.io");
    let bob_link = invite("bob@umbrella.io");

    // Ada opens her link: it says who invited her to what, and asks her to sign in.
    let browser = Browser::start();
    let base = &server.base;
    browser.go(&ada_link);
    browser.wait("the invitation page", || browser.text("h1").starts_with("Join Umbrella").then_some(()));
    let page = browser.text("#invitation");
    assert!(page.contains("boss@umbrella.io invited ada@acme.io to Umbrella as member"), "{page}");
    browser.screenshots("postgres-invitation-sign-in");
    browser.fill("#sign-in #password", "not her password");
    browser.click("#sign-in button[type=submit]");
    assert!(browser.wait_for_text("#sign-in [data-error]").contains("Wrong email or password"));
    browser.fill("#sign-in #password", PASSWORD);
    browser.click("#sign-in button[type=submit]");
    browser.wait("the accept button", || browser.exists("#invitation button[data-api$='/accept']").then_some(()));
    browser.screenshots("postgres-invitation-accept");
    browser.click("#invitation button[data-api$='/accept']");
    browser.wait_for_path("/dashboard");
    assert!(browser.text(".who").contains("Umbrella · member"), "{}", browser.text(".who"));
    // Used: the link now opens the page that says so.
    browser.go(&ada_link);
    browser.wait("the dead link", || browser.text("h1").contains("does not work").then_some(()));

    // In two accounts now: signing in asks which, and enters the one chosen.
    browser.go(&format!("{base}/dashboard"));
    browser.click("[data-sign-out]");
    browser.wait_for_path("/dashboard/sign-in");
    browser.fill("#email", "ada@acme.io");
    browser.fill("#password", PASSWORD);
    browser.click("form[data-api] button[type=submit]");
    browser.find("#accounts");
    let choices = browser.text("#accounts");
    assert!(choices.contains("Acme (owner)") && choices.contains("Umbrella (member)"), "{choices}");
    browser.screenshots("postgres-choose-account");
    browser.script(
        "[...document.querySelectorAll('#accounts label')].find(l => l.textContent.startsWith('Umbrella')).click();",
    );
    browser.click("form[data-api] button[type=submit]");
    browser.wait_for_path("/dashboard");
    assert!(browser.text(".who").contains("Umbrella · member"), "{}", browser.text(".who"));

    // Bob has no login: his link asks for a password, which creates it and lets him in.
    browser.click("[data-sign-out]");
    browser.wait_for_path("/dashboard/sign-in");
    browser.go(&bob_link);
    browser.wait("the invitation page", || browser.exists("#accept").then_some(()));
    browser.screenshots("postgres-invitation-new-login");
    browser.fill("#password", PASSWORD);
    browser.fill("#repeat_password", "not the same password");
    browser.click("#accept button[type=submit]");
    assert!(browser.wait_for_text("#password-error").contains("differ"));
    browser.fill("#password", PASSWORD);
    browser.fill("#repeat_password", PASSWORD);
    browser.click("#accept button[type=submit]");
    browser.wait_for_path("/dashboard");
    assert!(browser.text(".who").contains("Umbrella · member"), "{}", browser.text(".who"));
    let logs = server.output();
    for link in [&ada_link, &bob_link] {
        let token = link.rsplit('/').next().unwrap();
        assert!(!logs.contains(token), "a link's token was logged");
    }
}
