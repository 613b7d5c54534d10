//! People: login, sessions, step-up, account keys, temporary keys, roles, CSRF, throttling.
//! The flows of the Glassmkr quickstart and GloriaMundo's session-only key management.

use actix_web::{cookie::Cookie, http::Method, test::TestRequest};
use keyward_domain::{audit::AuditResult, people::Role};
use serde_json::json;
use time::Duration;

use crate::helpers::*;

both_stores! {
    async fn quickstart_step_up_then_automation(app) {
        app.add_person("ops@acme.io", Role::Owner).await;
        let session = app.login_as("ops@acme.io").await;

        // Without step-up, the cookie alone cannot mint a long-lived key.
        let body = json!({"name": "ansible-prod", "scopes": ["keys:read", "keys:write"]});
        app.with_session(Method::POST, "/v1/account/keys", &session, Some(body.clone())).await.assert_error(403, "step_up_required");

        let wrong = app.with_session(Method::POST, "/v1/account/verify-password", &session, Some(json!({"password": "nope nope nope"}))).await;
        wrong.assert_error(401, "invalid_credentials");
        let stepped = app.with_session(Method::POST, "/v1/account/verify-password", &session, Some(json!({"password": PASSWORD}))).await;
        assert_eq!(stepped.status.as_u16(), 200, "{:#}", stepped.body);
        assert!(stepped.body["step_up_expires_at"].is_string());

        let created = app.with_session(Method::POST, "/v1/account/keys", &session, Some(body.clone())).await;
        assert_eq!(created.status.as_u16(), 201, "{:#}", created.body);
        let account_key = created.str("key");
        assert!(account_key.starts_with("kw_acct_live_"));
        assert_eq!(created.body["kind"], "account");
        assert!(created.body["created_by"].as_str().unwrap().starts_with("usr_"));

        // Automation provisions 50 service keys with it.
        for i in 0..50 {
            let reply = app.call(Method::POST, "/v1/keys", &account_key, Some(json!({"name": format!("web-{i}")}))).await;
            assert_eq!(reply.status.as_u16(), 201, "{:#}", reply.body);
        }
        assert_eq!(app.call(Method::GET, "/v1/keys", &account_key, None).await.body["total"], 50);

        // An account key cannot manage account keys: session only.
        app.call(Method::POST, "/v1/account/keys", &account_key, Some(body.clone())).await.assert_error(403, "session_required");
        app.call(Method::GET, "/v1/account/keys", &account_key, None).await.assert_error(403, "session_required");

        // The plaintext is never shown again.
        let listed = app.with_session(Method::GET, "/v1/account/keys", &session, None).await;
        assert!(!listed.body.to_string().contains(&account_key));
        assert!(listed.body["data"].as_array().unwrap().iter().any(|k| k["name"] == "ansible-prod"));

        // Five minutes later the window is closed again.
        app.clock.advance(Duration::minutes(5));
        app.with_session(Method::POST, "/v1/account/keys", &session, Some(body.clone())).await.assert_error(403, "step_up_required");
        let id = created.str("id");
        app.with_session(Method::POST, &format!("/v1/account/keys/{id}/rotate"), &session, Some(json!({}))).await.assert_error(403, "step_up_required");

        // Another session of the same user does not inherit a window.
        app.with_session(Method::POST, "/v1/account/verify-password", &session, Some(json!({"password": PASSWORD}))).await;
        let other_session = app.login_as("ops@acme.io").await;
        app.with_session(Method::POST, "/v1/account/keys", &other_session, Some(body)).await.assert_error(403, "step_up_required");

        // Revoking works without step-up (it only removes power) and takes effect at once.
        let revoked = app.with_session(Method::DELETE, &format!("/v1/account/keys/{id}"), &session, None).await;
        assert_eq!(revoked.status.as_u16(), 200, "{:#}", revoked.body);
        app.call(Method::GET, "/v1/keys", &account_key, None).await.assert_error(401, "unauthorized");

        let actions = app.audit_actions().await;
        for expected in [("auth.login", AuditResult::Success), ("auth.verify_password", AuditResult::Failure),
            ("auth.verify_password", AuditResult::Success), ("account_key.create", AuditResult::Denied),
            ("account_key.create", AuditResult::Success), ("account_key.revoke", AuditResult::Success)] {
            assert!(actions.contains(&(expected.0.to_owned(), expected.1)), "{expected:?} missing from {actions:?}");
        }
    }

    async fn temporary_keys_slide_and_die_at_logout(app) {
        app.add_person("dev@acme.io", Role::Member).await;
        let (cookie, reply) = app.login(json!({"email": "dev@acme.io", "password": PASSWORD, "temporary_key": true})).await;
        assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
        let temporary = reply.body["temporary_key"]["key"].as_str().unwrap().to_owned();
        assert!(temporary.starts_with("kw_tmp_live_"));
        assert_eq!(reply.body["role"], "member");
        assert_eq!(reply.body["temporary_key"]["kind"], "temporary");

        // It carries the member's role: keys yes, keyspaces no.
        assert_eq!(app.call(Method::GET, "/v1/keys", &temporary, None).await.status.as_u16(), 200);
        app.call(Method::POST, "/v1/keyspaces", &temporary, Some(json!({"name": "x"}))).await.assert_error(403, "insufficient_scope");

        // Sliding idle timeout: used at 5 h, still alive at 10 h; idle 6 h + 1 s, dead.
        app.clock.advance(Duration::hours(5));
        assert_eq!(app.call(Method::GET, "/v1/keys", &temporary, None).await.status.as_u16(), 200);
        app.clock.advance(Duration::hours(5));
        assert_eq!(app.call(Method::GET, "/v1/keys", &temporary, None).await.status.as_u16(), 200);
        app.clock.advance(Duration::hours(6) + Duration::seconds(1));
        app.call(Method::GET, "/v1/keys", &temporary, None).await.assert_error(401, "unauthorized");

        // Logout revokes the temporary key of that login.
        let (cookie2, reply) = app.login(json!({"email": "dev@acme.io", "password": PASSWORD, "temporary_key": true})).await;
        let second = reply.body["temporary_key"]["key"].as_str().unwrap().to_owned();
        let out = app.with_session(Method::POST, "/v1/auth/logout", &cookie2.unwrap(), None).await;
        assert_eq!(out.status.as_u16(), 204, "{:#}", out.body);
        app.call(Method::GET, "/v1/keys", &second, None).await.assert_error(401, "unauthorized");
        let _ = cookie;
    }

    async fn unknown_email_and_wrong_password_look_alike_and_are_throttled(app) {
        app.add_person("ada@acme.io", Role::Admin).await;
        let (_, unknown) = app.login(json!({"email": "nobody@acme.io", "password": PASSWORD})).await;
        let (_, wrong) = app.login(json!({"email": "ada@acme.io", "password": "wrong password!"})).await;
        unknown.assert_error(401, "invalid_credentials");
        wrong.assert_error(401, "invalid_credentials");
        assert_eq!(unknown.str("message"), wrong.str("message"));
        assert!(unknown.headers.get("set-cookie").is_none());

        for _ in 0..4 {
            app.login(json!({"email": "ada@acme.io", "password": "wrong password!"})).await.1.assert_error(401, "invalid_credentials");
        }
        // The sixth attempt is refused even with the right password, for 15 minutes.
        let (_, locked) = app.login(json!({"email": "ada@acme.io", "password": PASSWORD})).await;
        locked.assert_error(429, "rate_limited");
        assert_eq!(locked.body["tier"], "login");
        let retry: u64 = locked.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
        assert_eq!(locked.body["retry_after_seconds"], retry);
        assert!(retry > 0 && retry <= 900);
        // A lockout looks the same for an email that does not exist.
        for _ in 0..5 {
            app.login(json!({"email": "ghost@acme.io", "password": "wrong password!"})).await;
        }
        let (_, ghost) = app.login(json!({"email": "ghost@acme.io", "password": PASSWORD})).await;
        ghost.assert_error(429, "rate_limited");
        app.clock.advance(Duration::minutes(15));
        let (cookie, ok) = app.login(json!({"email": "ada@acme.io", "password": PASSWORD})).await;
        assert_eq!(ok.status.as_u16(), 200, "{:#}", ok.body);
        assert!(cookie.is_some());
        assert!(app.audit_actions().await.contains(&("auth.login_failed".to_owned(), AuditResult::Denied)));
    }

    async fn roles_are_enforced(app) {
        app.add_person("owner@acme.io", Role::Owner).await;
        app.add_person("admin@acme.io", Role::Admin).await;
        app.add_person("member@acme.io", Role::Member).await;
        app.add_person("viewer@acme.io", Role::Viewer).await;
        let step_up = |session: String| {
            let app = &app;
            async move {
                let r = app.with_session(Method::POST, "/v1/account/verify-password", &session, Some(json!({"password": PASSWORD}))).await;
                assert_eq!(r.status.as_u16(), 200, "{:#}", r.body);
                session
            }
        };
        let viewer = step_up(app.login_as("viewer@acme.io").await).await;
        let member = step_up(app.login_as("member@acme.io").await).await;
        let admin = step_up(app.login_as("admin@acme.io").await).await;
        let owner = step_up(app.login_as("owner@acme.io").await).await;

        // Viewer: read-only.
        assert_eq!(app.with_session(Method::GET, "/v1/keys", &viewer, None).await.status.as_u16(), 200);
        app.with_session(Method::POST, "/v1/keys", &viewer, Some(json!({"name": "x"}))).await.assert_error(403, "insufficient_scope");
        // Member: keys yes; users and account keys no.
        assert_eq!(app.with_session(Method::POST, "/v1/keys", &member, Some(json!({"name": "x"}))).await.status.as_u16(), 201);
        app.with_session(Method::POST, "/v1/account/users", &member, Some(json!({"email": "new@acme.io", "role": "viewer"}))).await.assert_error(403, "forbidden");
        app.with_session(Method::POST, "/v1/account/keys", &member, Some(json!({"name": "k", "scopes": ["keys:read"]}))).await.assert_error(403, "forbidden");
        // Account-key scopes are bounded by the creator's role... (admin holds all, so probe with a scope no role has)
        app.with_session(Method::POST, "/v1/account/keys", &admin, Some(json!({"name": "k", "scopes": ["billing:write"]}))).await.assert_error(400, "validation_failed");

        // Admin invites people, but not owners.
        let added = app.with_session(Method::POST, "/v1/account/users", &admin, Some(json!({"email": "New@Acme.io", "role": "member"}))).await;
        assert_eq!(added.status.as_u16(), 202, "{:#}", added.body);
        assert_eq!(added.body["invitation"]["email"], "new@acme.io");
        let link = added.str("accept_url");
        let token = link.rsplit('/').next().unwrap();
        let accepted = app.send(actix_web::test::TestRequest::post().uri(&format!("/v1/invitations/{token}/accept")).set_json(json!({"password": PASSWORD}))).await;
        assert_eq!(accepted.status.as_u16(), 200, "{:#}", accepted.body);
        let (_, first_login) = app.login(json!({"email": "new@acme.io", "password": PASSWORD})).await;
        assert_eq!(first_login.status.as_u16(), 200);
        // Adding them again conflicts with what exists: 409, the field named, nothing changed.
        let again = app.with_session(Method::POST, "/v1/account/users", &admin, Some(json!({"email": "new@acme.io", "role": "admin"}))).await;
        again.assert_error(409, "already_member");
        assert_eq!(again.body["details"][0]["field"], "email", "{:#}", again.body);
        app.with_session(Method::POST, "/v1/account/users", &admin, Some(json!({"email": "boss@acme.io", "role": "owner"}))).await.assert_error(403, "forbidden");

        let users = app.with_session(Method::GET, "/v1/account/users", &viewer, None).await;
        let id_of = |email: &str| users.body["data"].as_array().unwrap().iter().find(|u| u["email"] == email).unwrap()["id"].as_str().unwrap().to_owned();
        let owner_id = id_of("owner@acme.io");
        let admin_id = id_of("admin@acme.io");

        // Only an owner changes an owner; the last owner stays.
        app.with_session(Method::PATCH, &format!("/v1/account/users/{owner_id}"), &admin, Some(json!({"role": "viewer"}))).await.assert_error(403, "forbidden");
        app.with_session(Method::PATCH, &format!("/v1/account/users/{owner_id}"), &owner, Some(json!({"role": "admin"}))).await.assert_error(403, "forbidden");
        app.with_session(Method::DELETE, &format!("/v1/account/users/{owner_id}"), &owner, None).await.assert_error(403, "forbidden");
        let promoted = app.with_session(Method::PATCH, &format!("/v1/account/users/{admin_id}"), &owner, Some(json!({"role": "owner"}))).await;
        assert_eq!(promoted.status.as_u16(), 200, "{:#}", promoted.body);
        assert_eq!(promoted.body["role"], "owner");
        // With a second owner, the first may step down.
        let demoted = app.with_session(Method::PATCH, &format!("/v1/account/users/{owner_id}"), &owner, Some(json!({"role": "admin"}))).await;
        assert_eq!(demoted.status.as_u16(), 200, "{:#}", demoted.body);

        // Removing a member ends their sessions.
        let member_id = id_of("member@acme.io");
        let removed = app.with_session(Method::DELETE, &format!("/v1/account/users/{member_id}"), &admin, None).await;
        assert_eq!(removed.status.as_u16(), 204, "{:#}", removed.body);
        app.with_session(Method::GET, "/v1/keys", &member, None).await.assert_error(401, "unauthorized");

        // User writes need step-up too.
        let fresh_admin = app.login_as("admin@acme.io").await;
        app.with_session(Method::POST, "/v1/account/users", &fresh_admin, Some(json!({"email": "z@acme.io", "role": "viewer"}))).await.assert_error(403, "step_up_required");
    }

    async fn csrf_defences(app) {
        app.add_person("ops@acme.io", Role::Owner).await;
        let session = app.login_as("ops@acme.io").await;
        let cookie = || Cookie::new("keyward_session", session.clone());
        let foreign = TestRequest::post().uri("/v1/keys").cookie(cookie()).insert_header(("origin", "https://evil.example")).set_json(json!({"name": "x"}));
        app.send(foreign).await.assert_error(403, "csrf_rejected");
        let cross_site = TestRequest::post().uri("/v1/keys").cookie(cookie()).insert_header(("sec-fetch-site", "cross-site")).set_json(json!({"name": "x"}));
        app.send(cross_site).await.assert_error(403, "csrf_rejected");
        let form = TestRequest::post().uri("/v1/keys").cookie(cookie()).insert_header(("content-type", "text/plain")).set_payload(r#"{"name": "x"}"#);
        app.send(form).await.assert_error(403, "csrf_rejected");
        let bodyless = TestRequest::post().uri("/v1/auth/logout").cookie(cookie());
        app.send(bodyless).await.assert_error(403, "csrf_rejected");
        // Verification skips the management middlewares; its own check refuses the same,
        // before reading the body (which here is not even JSON).
        let verify = TestRequest::post().uri("/v1/keys/verify").cookie(cookie()).insert_header(("origin", "https://evil.example")).insert_header(("content-type", "application/json")).set_payload("not json");
        app.send(verify).await.assert_error(403, "csrf_rejected");
        let verify_form = TestRequest::post().uri("/v1/keys/verify").cookie(cookie()).insert_header(("content-type", "text/plain")).set_payload(r#"{"key": "x"}"#);
        app.send(verify_form).await.assert_error(403, "csrf_rejected");
        let verify_same = TestRequest::post().uri("/v1/keys/verify").cookie(cookie()).insert_header(("origin", "http://keyward.test")).set_json(json!({"key": "kw_live_nope"}));
        let answer = app.send(verify_same).await;
        assert_eq!(answer.status.as_u16(), 200, "{:#}", answer.body);
        // Same origin, or no Origin at all (curl), with JSON: fine.
        let same = TestRequest::post().uri("/v1/keys").cookie(cookie()).insert_header(("origin", "http://keyward.test")).set_json(json!({"name": "x"}));
        assert_eq!(app.send(same).await.status.as_u16(), 201);
        let curl = TestRequest::post().uri("/v1/keys").cookie(cookie()).set_json(json!({"name": "y"}));
        assert_eq!(app.send(curl).await.status.as_u16(), 201);
        // An API key request is not at risk and is not checked.
        let keyed = TestRequest::post().uri("/v1/keys").insert_header(("authorization", format!("Bearer {}", app.root_key))).insert_header(("origin", "https://evil.example")).set_json(json!({"name": "z"}));
        assert_eq!(app.send(keyed).await.status.as_u16(), 201);
        // Cookie and key together are ambiguous.
        let both = TestRequest::get().uri("/v1/keys").cookie(cookie()).insert_header(("authorization", format!("Bearer {}", app.root_key)));
        app.send(both).await.assert_error(400, "ambiguous_credentials");

        let current = app.with_session(Method::GET, "/v1/auth/session", &session, None).await;
        assert_eq!(current.status.as_u16(), 200, "{:#}", current.body);
        assert_eq!(current.body["user"]["email"], "ops@acme.io");
        assert_eq!(current.body["step_up_expires_at"], serde_json::Value::Null);
    }

    async fn session_cookie_attributes_and_timeouts(app) {
        app.add_person("ops@acme.io", Role::Owner).await;
        let (_, reply) = app.login(json!({"email": "ops@acme.io", "password": PASSWORD})).await;
        let set_cookie = reply.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
            assert!(set_cookie.contains(attribute), "{attribute} missing: {set_cookie}");
        }
        let session = app.login_as("ops@acme.io").await;
        // Idle timeout: an hour without use ends it.
        app.clock.advance(Duration::minutes(59));
        assert_eq!(app.with_session(Method::GET, "/v1/auth/session", &session, None).await.status.as_u16(), 200);
        app.clock.advance(Duration::minutes(59));
        assert_eq!(app.with_session(Method::GET, "/v1/auth/session", &session, None).await.status.as_u16(), 200);
        app.clock.advance(Duration::minutes(61));
        app.with_session(Method::GET, "/v1/auth/session", &session, None).await.assert_error(401, "unauthorized");
    }

    async fn plans_gate_account_keys(app) {
        let free = TestApp::with_plan(app.service.store().clone(), keyward_domain::Plan::Free).await;
        free.add_person("solo@tiny.io", Role::Owner).await;
        let session = free.login_as("solo@tiny.io").await;
        free.with_session(Method::POST, "/v1/account/verify-password", &session, Some(json!({"password": PASSWORD}))).await;
        free.with_session(Method::POST, "/v1/account/keys", &session, Some(json!({"name": "k", "scopes": ["keys:read"]}))).await.assert_error(403, "plan_required");
    }
}

#[actix_web::test]
async fn without_a_public_url_the_origin_is_the_host_the_request_was_sent_to() {
    let settings = keyward_http::CookieSettings::for_any_host();
    assert_eq!(settings.name, "keyward_session");
    let to = |host: &str| TestRequest::post().uri("/v1/keys").insert_header(("host", host)).to_http_request();
    assert!(settings.admits("http://localhost:8080", &to("localhost:8080")));
    assert!(settings.admits("http://127.0.0.1:8080", &to("127.0.0.1:8080")));
    assert!(settings.admits("https://keys.internal", &to("keys.internal")), "behind a proxy that terminates TLS");
    assert!(!settings.admits("https://evil.example", &to("localhost:8080")));
    assert!(!settings.admits("http://localhost:8081", &to("localhost:8080")), "another port is another origin");
    assert!(!settings.admits("http://localhost:8080.evil.example", &to("localhost:8080")));
    assert!(!settings.admits("null", &to("localhost:8080")), "an opaque origin is nobody's");
    assert!(!settings.admits("http://", &TestRequest::post().to_http_request()), "no Host, no match");
}

#[actix_web::test]
async fn a_secure_public_url_uses_the_host_prefix() {
    let settings = keyward_http::CookieSettings::for_public_url("https://keys.example.com/base");
    assert_eq!(settings.name, "__Host-keyward_session");
    assert!(settings.secure);
    assert_eq!(settings.origin.as_deref(), Some("https://keys.example.com"));
    let cookie = settings.session_cookie(&keyward_domain::people_service::SessionToken::new("t".into())).to_string();
    assert!(
        cookie.starts_with("__Host-keyward_session=t") && cookie.contains("Secure") && cookie.contains("Path=/"),
        "{cookie}"
    );
}

both_stores! {
    async fn old_hashes_are_upgraded_at_login(app) {
        use keyward_domain::{password::{HashParams, Password}, people::{Email, Membership, User}};
        let weak = HashParams { memory_kib: 8_192, iterations: 1, parallelism: 1 };
        let now = app.service.now();
        let user = User {
            id: keyward_domain::UserId::generate(now, &keyward_domain::OsRandom),
            email: Email::new("legacy@acme.io").unwrap(),
            password_hash: weak.hash(&Password::new(PASSWORD.into()).unwrap(), &keyward_domain::OsRandom).unwrap(),
            password_change_required: false,
            created_at: now,
            updated_at: now,
        };
        let membership = Membership { user_id: user.id, account_id: app.account_id.parse().unwrap(), role: Role::Viewer, created_at: now };
        app.service.store().create_user(&user, Some(&membership)).await.unwrap();
        assert!(user.password_hash.as_phc().starts_with("$argon2id$v=19$m=8192,t=1,p=1$"));
        app.login_as("legacy@acme.io").await;
        let stored = app.service.store().find_user_by_email(&user.email).await.unwrap().unwrap();
        assert!(stored.password_hash.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "rehashed at the current parameters");
        app.login_as("legacy@acme.io").await;
    }
}
