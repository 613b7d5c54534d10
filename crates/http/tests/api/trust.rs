//! The holes of issue #13, each as an attacker would try it: a removed or demoted member, a
//! cookie that widens a key without step-up, a timestamp that panics, a body checked before
//! the credential, a 405 without `Allow`, an endpoint that poisons metering.

use actix_web::{http::Method, test::TestRequest};
use keyward_domain::people::Role;
use serde_json::json;

use crate::helpers::*;

/// The id of a member of the app's account, by email.
async fn user_id<S: keyward_domain::Store>(app: &TestApp<S>, session: &str, email: &str) -> String {
    let users = app.with_session(Method::GET, "/v1/account/users", session, None).await;
    users.body["data"].as_array().unwrap().iter().find(|u| u["email"] == email).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

both_stores! {
    async fn a_removed_member_loses_every_credential_at_once(app) {
        app.add_person("owner@acme.io", Role::Owner).await;
        app.add_person("leaver@acme.io", Role::Admin).await;
        let owner = app.login_as("owner@acme.io").await;
        let (cookie, reply) = app.login(json!({"email": "leaver@acme.io", "password": PASSWORD, "temporary_key": true})).await;
        let (leaver_session, temporary) = (cookie.unwrap(), reply.body["temporary_key"]["key"].as_str().unwrap().to_owned());
        assert_eq!(app.call(Method::POST, "/v1/keys", &temporary, Some(json!({"name": "before"}))).await.status.as_u16(), 201);

        app.step_up(&owner).await;
        let leaver = user_id(&app, &owner, "leaver@acme.io").await;
        let removed = app.with_session(Method::DELETE, &format!("/v1/account/users/{leaver}"), &owner, None).await;
        assert_eq!(removed.status.as_u16(), 204, "{:#}", removed.body);

        // The very next request with either credential is refused.
        app.call(Method::POST, "/v1/keys", &temporary, Some(json!({"name": "after"}))).await.assert_error(401, "unauthorized");
        app.call(Method::GET, "/v1/keys", &temporary, None).await.assert_error(401, "unauthorized");
        app.with_session(Method::GET, "/v1/keys", &leaver_session, None).await.assert_error(401, "unauthorized");

        // Added back later, the old session and temporary key stay dead.
        let again = app.with_session(Method::POST, "/v1/account/users", &owner, Some(json!({"email": "leaver@acme.io", "role": "viewer"}))).await;
        assert!(again.status.is_success() || again.status.as_u16() == 202, "{:#}", again.body);
        app.with_session(Method::GET, "/v1/keys", &leaver_session, None).await.assert_error(401, "unauthorized");
        app.call(Method::GET, "/v1/keys", &temporary, None).await.assert_error(401, "unauthorized");
    }

    async fn a_demoted_member_keeps_only_the_new_roles_power(app) {
        app.add_person("owner@acme.io", Role::Owner).await;
        app.add_person("demoted@acme.io", Role::Admin).await;
        let owner = app.login_as("owner@acme.io").await;
        let (cookie, reply) = app.login(json!({"email": "demoted@acme.io", "password": PASSWORD, "temporary_key": true})).await;
        let (session, temporary) = (cookie.unwrap(), reply.body["temporary_key"]["key"].as_str().unwrap().to_owned());
        assert_eq!(app.call(Method::POST, "/v1/keys", &temporary, Some(json!({"name": "before"}))).await.status.as_u16(), 201);

        app.step_up(&owner).await;
        let id = user_id(&app, &owner, "demoted@acme.io").await;
        let changed = app.with_session(Method::PATCH, &format!("/v1/account/users/{id}"), &owner, Some(json!({"role": "viewer"}))).await;
        assert_eq!(changed.status.as_u16(), 200, "{:#}", changed.body);

        app.call(Method::POST, "/v1/keys", &temporary, Some(json!({"name": "after"}))).await.assert_error(403, "insufficient_scope");
        app.with_session(Method::POST, "/v1/keys", &session, Some(json!({"name": "after"}))).await.assert_error(403, "insufficient_scope");
        // Reading is what a viewer may still do.
        assert_eq!(app.call(Method::GET, "/v1/keys", &temporary, None).await.status.as_u16(), 200);
        let own = app.call(Method::GET, "/v1/keys/self", &temporary, None).await;
        assert!(!own.body["scopes"].as_array().unwrap().iter().any(|s| s == "keys:write"), "{:#}", own.body);
    }

    async fn widening_an_account_key_needs_the_step_up_window(app) {
        app.add_person("owner@acme.io", Role::Owner).await;
        let session = app.login_as("owner@acme.io").await;
        app.step_up(&session).await;
        let created = app.with_session(Method::POST, "/v1/account/keys", &session, Some(json!({
            "name": "ci", "scopes": ["keys:read"], "ip_allowlist": ["203.0.113.0/24"],
            "expires_at": "2026-06-01T00:00:00Z",
        }))).await;
        assert_eq!(created.status.as_u16(), 201, "{:#}", created.body);
        let path = format!("/v1/account/keys/{}", created.str("id"));
        let disabled = app.with_session(Method::PATCH, &path, &session, Some(json!({"is_active": false}))).await;
        assert_eq!(disabled.status.as_u16(), 200, "{:#}", disabled.body);

        app.clock.advance(time::Duration::minutes(6));
        // Widening, with the cookie alone: refused, and nothing changes.
        for widen in [json!({"ip_allowlist": []}), json!({"ip_allowlist": ["203.0.113.0/24", "0.0.0.0/0"]}),
            json!({"expires_at": null}), json!({"expires_at": "2027-01-01T00:00:00Z"}), json!({"is_active": true})] {
            app.with_session(Method::PATCH, &path, &session, Some(widen.clone())).await.assert_error(403, "step_up_required");
        }
        let unchanged = app.with_session(Method::GET, &path, &session, None).await;
        assert_eq!(unchanged.body["ip_allowlist"], json!(["203.0.113.0/24"]), "{:#}", unchanged.body);
        assert_eq!(unchanged.body["is_active"], false);
        assert_eq!(unchanged.body["expires_at"], "2026-06-01T00:00:00Z");

        // Narrowing stays cookie-only.
        for narrow in [json!({"ip_allowlist": ["203.0.113.7"]}), json!({"expires_at": "2026-05-01T00:00:00Z"}),
            json!({"is_active": false}), json!({"name": "ci-renamed"})] {
            let reply = app.with_session(Method::PATCH, &path, &session, Some(narrow)).await;
            assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
        }
        // With the window open again, widening works.
        app.step_up(&session).await;
        let widened = app.with_session(Method::PATCH, &path, &session, Some(json!({"is_active": true, "expires_at": null}))).await;
        assert_eq!(widened.status.as_u16(), 200, "{:#}", widened.body);
    }

    async fn timestamps_beyond_what_storage_holds_are_refused_by_name(app) {
        for (field, value) in [("expires_at", "9999-12-31T23:59:59-23:59"), ("expires_at", "0001-01-01T00:00:00+23:59")] {
            let reply = app.post("/v1/keys", json!({"name": "x", field: value})).await;
            reply.assert_error(400, "validation_failed");
            assert_eq!(reply.body["details"][0]["field"], field, "{:#}", reply.body);
        }
        for (field, query) in [("since", "since=9999-12-31T23:59:59-23:59"), ("until", "until=0001-01-01T00:00:00%2B23:59")] {
            let reply = app.get(&format!("/v1/audit?{query}")).await;
            reply.assert_error(400, "validation_failed");
            assert_eq!(reply.body["details"][0]["field"], field, "{:#}", reply.body);
        }
        let (id, _) = app.create_key(json!({"name": "k"})).await;
        app.patch(&format!("/v1/keys/{id}"), json!({"expires_at": "9999-12-31T23:59:59-23:59"})).await.assert_error(400, "validation_failed");
        app.get(&format!("/v1/keys/{id}/usage?since=9999-12-31T23:59:59-23:59")).await.assert_error(400, "validation_failed");
        // Nothing half-written: still one key, unchanged.
        assert_eq!(app.get("/v1/keys").await.body["total"], 1);
        assert_eq!(app.get(&format!("/v1/keys/{id}")).await.body["expires_at"], serde_json::Value::Null);
        // The last instant both stores hold is accepted, and an offset is normalised to UTC.
        let (far, key) = app.create_key(json!({"name": "far", "expires_at": "9999-12-31T23:59:59Z"})).await;
        assert_eq!(app.get(&format!("/v1/keys/{far}")).await.body["expires_at"], "9999-12-31T23:59:59Z");
        assert_eq!(app.verify(json!({"key": key})).await["code"], "VALID");
        let shifted = app.patch(&format!("/v1/keys/{far}"), json!({"expires_at": "2030-01-01T12:00:00+02:00"})).await;
        assert_eq!(shifted.body["expires_at"], "2030-01-01T10:00:00Z", "{:#}", shifted.body);
    }

    async fn credentials_are_checked_before_the_body(app) {
        let (id, _) = app.create_key(json!({"name": "k"})).await;
        let anonymous = |method: Method, path: String, body: &'static str| {
            TestRequest::default().method(method).uri(&path).insert_header(("content-type", "application/json")).set_payload(body)
        };
        for (method, path, body) in [
            (Method::POST, format!("/v1/keys/{id}/rotate"), "null"),
            (Method::POST, "/v1/keys".to_owned(), "{not json"),
            (Method::PATCH, format!("/v1/keys/{id}"), "{\"unknown\": 1}"),
            (Method::POST, "/v1/keys/verify".to_owned(), "[]"),
            (Method::POST, "/v1/keyspaces".to_owned(), "null"),
            (Method::POST, "/v1/account/keys".to_owned(), "null"),
            (Method::POST, "/v1/account/verify-password".to_owned(), "null"),
            (Method::GET, "/v1/keys?limit=abc".to_owned(), ""),
            (Method::GET, "/v1/audit?since=yesterday".to_owned(), ""),
        ] {
            let reply = app.send(anonymous(method.clone(), path.clone(), body)).await;
            assert_eq!(reply.status.as_u16(), 401, "{method} {path}: {:#}", reply.body);
            reply.assert_error(401, "unauthorized");
            // A wrong key is the same: 401 before the body.
            let wrong = app.send(anonymous(method.clone(), path.clone(), body).insert_header(("authorization", "Bearer kw_live_nope"))).await;
            assert_eq!(wrong.status.as_u16(), 401, "{method} {path}: {:#}", wrong.body);
        }
    }

    async fn every_405_names_the_allowed_methods(app) {
        for (method, path, allow) in [
            (Method::PUT, "/v1/keys", "GET, POST"),
            (Method::DELETE, "/v1/keys/verify", "POST"),
            (Method::POST, "/v1/keys/self", "GET"),
            (Method::PUT, "/v1/keys/key_x", "GET, PATCH, DELETE"),
            (Method::GET, "/v1/auth/login", "POST"),
            (Method::DELETE, "/healthz", "GET"),
        ] {
            let reply = app.call(method.clone(), path, &app.root_key.clone(), None).await;
            reply.assert_error(405, "method_not_allowed");
            assert_eq!(reply.headers.get("allow").map(|v| v.to_str().unwrap()), Some(allow), "{method} {path}");
        }
    }

    async fn an_endpoint_or_method_that_could_poison_metering_is_refused(app) {
        let (_, key) = app.create_key(json!({"name": "k"})).await;
        for (field, value) in [("endpoint", "/a\u{0}b".to_owned()), ("endpoint", "x".repeat(1025)),
            ("method", "GE\nT".to_owned()), ("method", "M".repeat(33)), ("endpoint", "/a\u{7f}".to_owned())] {
            let reply = app.post("/v1/keys/verify", json!({"key": key, field: value})).await;
            reply.assert_error(400, "validation_failed");
            assert_eq!(reply.body["details"][0]["field"], field, "{:#}", reply.body);
        }
        let ok = app.verify(json!({"key": key, "endpoint": "/v1/servers/ünïcode", "method": "PATCH"})).await;
        assert_eq!(ok["code"], "VALID");
    }

    async fn dtos_and_errors_never_print_a_secret(app) {
        let presented = keyward_domain::PlaintextKey::new(app.root_key.clone());
        let principal = app.service.authenticate_management(&presented, None).await.unwrap();
        let new = keyward_domain::key_service::NewKey { name: "x".into(), ..Default::default() };
        let issued = app.service.create_key(&principal, new).await.unwrap();
        let secret = issued.plaintext.expose_secret().to_owned();
        let dto = keyward_http::dto::IssuedKeyResponse::new(&issued, START);
        assert!(!format!("{dto:?}").contains(&secret), "{dto:?}");
        assert!(serde_json::to_string(&dto).unwrap().contains(&secret), "the response still shows it, once");
        let login: keyward_http::people::LoginRequest =
            serde_json::from_value(json!({"email": "a@acme.io", "password": "hunter2 hunter2"})).unwrap();
        assert!(!format!("{login:?}").contains("hunter2"));

        // A key pasted into `scopes` is refused without being echoed.
        let reply = app.post("/v1/keys", json!({"name": "x", "scopes": ["keys:read", secret]})).await;
        reply.assert_error(400, "validation_failed");
        assert!(!String::from_utf8_lossy(&reply.bytes).contains(&secret), "{:#}", reply.body);
        assert!(!String::from_utf8_lossy(&reply.bytes).contains(&secret[8..]), "{:#}", reply.body);
    }

    async fn a_password_someone_else_chose_must_be_changed_first(app) {
        // Only the operator (CLI) still hands out a password: the person must change it.
        let email = keyward_domain::people::Email::new("new@acme.io").unwrap();
        let added = app.people.add_member(app.account_id.parse().unwrap(), email, Role::Member, None).await.unwrap();
        let initial = added.initial_password.expect("a generated password").expose_secret().to_owned();

        let (cookie, login) = app.login(json!({"email": "new@acme.io", "password": initial, "temporary_key": true})).await;
        assert_eq!(login.status.as_u16(), 200, "{:#}", login.body);
        assert_eq!(login.body["password_change_required"], true);
        assert!(login.body["temporary_key"].is_null(), "no key is minted from a password someone else chose");
        let restricted = cookie.unwrap();
        for (method, path, body) in [(Method::GET, "/v1/keys", None), (Method::POST, "/v1/keys", Some(json!({"name": "x"}))),
            (Method::GET, "/v1/auth/session", None), (Method::GET, "/v1/account", None),
            (Method::POST, "/v1/account/verify-password", Some(json!({"password": initial}))),
            (Method::POST, "/v1/keys/verify", Some(json!({"key": "kw_live_x"})))] {
            let reply = app.with_session(method.clone(), path, &restricted, body).await;
            assert_eq!(reply.status.as_u16(), 403, "{method} {path}: {:#}", reply.body);
            reply.assert_error(403, "password_change_required");
        }
        // The refusals are the user's, and audited as denials.
        let denied = app.account_trail().await.iter().filter(|r| r.event.action.as_ref() == "key.create" && r.event.result == keyward_domain::audit::AuditResult::Denied).count();
        assert_eq!(denied, 1, "POST /v1/keys by the restricted session is in the trail");

        let change = |current: &str, new: &str| json!({"current_password": current, "new_password": new});
        app.with_session(Method::POST, "/v1/account/password", &restricted, Some(change("wrong password!", PASSWORD))).await.assert_error(401, "invalid_credentials");
        let short = app.with_session(Method::POST, "/v1/account/password", &restricted, Some(change(&initial, "short"))).await;
        short.assert_error(400, "validation_failed");
        assert_eq!(short.body["details"][0]["field"], "new_password");
        let changed = app.with_session(Method::POST, "/v1/account/password", &restricted, Some(change(&initial, PASSWORD))).await;
        assert_eq!(changed.status.as_u16(), 200, "{:#}", changed.body);
        let fresh = changed.headers.get_all("set-cookie").filter_map(|v| v.to_str().ok()).find_map(|c| {
            c.strip_prefix("keyward_session=").map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        }).expect("a new session cookie");

        app.with_session(Method::GET, "/v1/keys", &restricted, None).await.assert_error(401, "unauthorized");
        assert_eq!(app.with_session(Method::GET, "/v1/keys", &fresh, None).await.status.as_u16(), 200);
        let (_, again) = app.login(json!({"email": "new@acme.io", "password": PASSWORD, "temporary_key": true})).await;
        assert_eq!(again.body["password_change_required"], false, "{:#}", again.body);
        assert!(again.body["temporary_key"]["key"].is_string());
        app.login(json!({"email": "new@acme.io", "password": initial})).await.1.assert_error(401, "invalid_credentials");
    }

    async fn plan_rules_hold_on_every_path_that_makes_a_usable_key(app) {
        let store = app.service.store().clone();
        // Rotation with a grace period makes one more active key: not past max_keys.
        let free = TestApp::with_plan(store.clone(), keyward_domain::Plan::Free).await;
        let keys: Vec<_> = (0..100).map(|i| json!({"hash": format!("sha256:{:064x}", i), "name": format!("k{i}")})).collect();
        let imported = free.post("/v1/keys/import", json!({"keys": keys})).await;
        assert_eq!(imported.status.as_u16(), 201, "{:#}", imported.body);
        let id = imported.body["keys"][0]["id"].as_str().unwrap().to_owned();
        free.post(&format!("/v1/keys/{id}/rotate"), json!({"grace_period_seconds": 60})).await.assert_error(403, "key_limit_reached");
        let swapped = free.post(&format!("/v1/keys/{id}/rotate"), json!({"grace_period_seconds": 0})).await;
        assert_eq!(swapped.status.as_u16(), 201, "a rotation that retires the old key at once adds none: {:#}", swapped.body);

        // Temporary keys and account keys need a plan that has account keys, on every path.
        free.add_person("owner@free.io", Role::Owner).await;
        let (_, refused) = free.login(json!({"email": "owner@free.io", "password": PASSWORD, "temporary_key": true})).await;
        refused.assert_error(403, "plan_required");
        let session = free.login_as("owner@free.io").await;
        free.step_up(&session).await;
        let listed = free.with_session(Method::GET, "/v1/account/keys", &session, None).await;
        let bootstrap = listed.body["data"][0]["id"].as_str().unwrap().to_owned();
        let path = format!("/v1/account/keys/{bootstrap}");
        free.with_session(Method::PATCH, &path, &session, Some(json!({"name": "renamed"}))).await.assert_error(403, "plan_required");
        free.with_session(Method::POST, &format!("{path}/rotate"), &session, Some(json!({}))).await.assert_error(403, "plan_required");
        let revoked = free.with_session(Method::DELETE, &path, &session, None).await;
        assert_eq!(revoked.status.as_u16(), 200, "revoking always works: {:#}", revoked.body);

        // Imports spend a creation budget too, per key, all or nothing.
        let limits = keyward_http::ApiLimits {
            imported_keys: keyward_http::limits::ItemSetting { limit: 5, period_seconds: 3_600 },
            ..Default::default()
        };
        let small = TestApp::with_policies(store, keyward_http::Policies { api: limits, ..Default::default() }).await;
        let batch = |from: u32| -> Vec<_> { (from..from + 3).map(|i| json!({"hash": format!("sha256:{:064x}", 1000 + i), "name": format!("i{i}")})).collect() };
        assert_eq!(small.post("/v1/keys/import", json!({"keys": batch(0)})).await.status.as_u16(), 201);
        let over = small.post("/v1/keys/import", json!({"keys": batch(3)})).await;
        over.assert_error(429, "rate_limited");
        assert_eq!(over.body["tier"], "endpoint");
        assert_eq!(small.get("/v1/keys").await.body["total"], 3);
    }

    async fn anonymous_floods_meet_the_ip_limit_first_and_write_no_audit_rows(app) {
        let store = app.service.store().clone();
        let limits = keyward_http::ApiLimits {
            ip: keyward_http::limits::BucketSetting { burst: 5, per_second: 1 },
            ..Default::default()
        };
        let small = TestApp::with_policies(store, keyward_http::Policies { api: limits, ..Default::default() }).await;
        let before = small.audit_actions().await.len();
        // An anonymous scanner: unknown routes, wrong methods, bad credentials, bad bodies.
        let probes = [
            TestRequest::get().uri("/v1/nope/../../etc/passwd"),
            TestRequest::put().uri("/v1/keys"),
            TestRequest::get().uri("/v1/keys").insert_header(("authorization", "Bearer kw_live_guess")),
            TestRequest::post().uri("/v1/keys").insert_header(("content-type", "application/json")).set_payload("{oops"),
            TestRequest::get().uri("/healthz"),
        ];
        for probe in probes {
            let reply = small.send_from(probe, "198.51.100.7:4000").await;
            assert_ne!(reply.status.as_u16(), 429, "{:#}", reply.body);
        }
        // The sixth request from that address is refused before anything else happens:
        // even a malformed body to a real route, or a route that does not exist.
        let sixth = small.send_from(TestRequest::get().uri(&format!("/v1/{}", "x".repeat(5000))), "198.51.100.7:4001").await;
        sixth.assert_error(429, "rate_limited");
        assert_eq!(sixth.body["tier"], "ip");
        assert_eq!(small.audit_actions().await.len(), before, "anonymous failures are counted, not audited");
        let metrics = small.send(TestRequest::get().uri("/metrics").insert_header(("authorization", format!("Bearer {METRICS_TOKEN}")))).await;
        assert!(String::from_utf8_lossy(&metrics.bytes).contains("keyward_http_anonymous_refusals_total 5"), "{}", String::from_utf8_lossy(&metrics.bytes));

        // Known callers' failures are still audited, with what the client typed cut short.
        let unknown = small.get(&format!("/v1/keys/{}", "y".repeat(5000))).await;
        unknown.assert_error(404, "not_found");
        let trail = small.account_trail().await;
        let last = &trail.last().unwrap().event;
        assert_eq!((last.action.as_ref(), last.result), ("key.read", keyward_domain::audit::AuditResult::Failure));
        assert_eq!(last.metadata["path"], "/v1/keys/{id}");
        assert!(last.resource_id.as_ref().unwrap().chars().count() <= 200, "{:?}", last.resource_id);
    }

    async fn an_ipv6_client_is_one_client_across_its_64(app) {
        let store = app.service.store().clone();
        let limits = keyward_http::ApiLimits {
            ip: keyward_http::limits::BucketSetting { burst: 5, per_second: 1 },
            ..Default::default()
        };
        let small = TestApp::with_policies(store, keyward_http::Policies { api: limits, ..Default::default() }).await;
        for i in 1..=5 {
            let reply = small.send_from(TestRequest::get().uri("/v1/keys"), &format!("[2001:db8:1:2::{i:x}]:443")).await;
            reply.assert_error(401, "unauthorized");
        }
        let rotated = small.send_from(TestRequest::get().uri("/v1/keys"), "[2001:db8:1:2:ffff:ffff:ffff:ffff]:443").await;
        rotated.assert_error(429, "rate_limited");
        // Another /64 is another client.
        let other = small.send_from(TestRequest::get().uri("/v1/keys"), "[2001:db8:1:3::1]:443").await;
        other.assert_error(401, "unauthorized");

        // Login throttling (10 a minute per client) holds across the /64 too.
        app.add_person("ada@acme.io", Role::Admin).await;
        for i in 0..10 {
            let attempt = TestRequest::post().uri("/v1/auth/login").set_json(json!({"email": format!("x{i}@acme.io"), "password": "wrong password!"}));
            app.send_from(attempt, &format!("[2001:db8:9:9::{:x}]:443", i + 1)).await.assert_error(401, "invalid_credentials");
        }
        let attempt = TestRequest::post().uri("/v1/auth/login").set_json(json!({"email": "ada@acme.io", "password": PASSWORD}));
        let throttled = app.send_from(attempt, "[2001:db8:9:9::abcd]:443").await;
        throttled.assert_error(429, "rate_limited");
        assert_eq!(throttled.body["tier"], "login");
    }

    async fn guessing_legacy_keys_online_is_bounded_and_no_oracle(app) {
        let legacy = "col_0123456789_legacy";
        let digest: String = keyward_domain::KeyHash::sha256(legacy).to_bytes()[1..].iter().map(|b| format!("{b:02x}")).collect();
        let imported = app.post("/v1/keys/import", json!({"keys": [{"hash": format!("sha256:{digest}"), "name": "old"}]})).await;
        assert_eq!(imported.status.as_u16(), 201, "{:#}", imported.body);

        // A legacy string is never a management credential: 401 without a lookup, not the
        // 403 that told a guesser "this is a real (service) key".
        app.call(Method::GET, "/v1/keys", legacy, None).await.assert_error(401, "unauthorized");

        // Misses from one client spend its budget (100); then its legacy strings are
        // refused before any lookup, the right one included.
        for i in 0..100 {
            let reply = app.post("/v1/keys/verify", json!({"key": format!("col_guess_{i}"), "ip": "203.0.113.9"})).await;
            assert_eq!(reply.body["code"], "NOT_FOUND", "{:#}", reply.body);
        }
        let refused = app.post("/v1/keys/verify", json!({"key": legacy, "ip": "203.0.113.9"})).await;
        refused.assert_error(429, "rate_limited");
        assert!(refused.headers.get("retry-after").is_some());
        // Other clients, and native keys, are unaffected.
        assert_eq!(app.verify(json!({"key": legacy, "ip": "198.51.100.1"})).await["code"], "VALID");
        let (_, native) = app.create_key(json!({"name": "native"})).await;
        assert_eq!(app.verify(json!({"key": native, "ip": "203.0.113.9"})).await["code"], "VALID");
        // GET /v1/keys/self counts misses per address the same way.
        for i in 0..100 {
            let reply = app.call(Method::GET, "/v1/keys/self", &format!("col_self_{i}"), None).await;
            reply.assert_error(401, "unauthorized");
        }
        app.call(Method::GET, "/v1/keys/self", legacy, None).await.assert_error(401, "unauthorized");
    }

    async fn a_login_flood_holds_no_transaction_slot(app) {
        // PostgreSQL's test pool has 4 connections, 3 of them for units of work; the hasher
        // hashes 2 at a time. Eight logins arrive, then a revocation.
        app.add_person("ada@acme.io", Role::Admin).await;
        let (id, _) = app.create_key(json!({"name": "revoke me"})).await;
        let done = std::cell::Cell::new(0);
        let pending_at_revocation = std::cell::Cell::new(None);
        let logins = (0..8).map(|_| async {
            let (_, reply) = app.login(json!({"email": "ada@acme.io", "password": PASSWORD})).await;
            assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
            done.set(done.get() + 1);
        });
        let revocation = async {
            let reply = app.delete(&format!("/v1/keys/{id}")).await;
            assert_eq!(reply.status.as_u16(), 200, "{:#}", reply.body);
            pending_at_revocation.set(Some(8 - done.get()));
        };
        futures_util::future::join(futures_util::future::join_all(logins), revocation).await;
        // Logins wait for their turn at the hasher holding no slot, so the revocation found
        // one at once, while most logins were still waiting (not behind all of them).
        let pending = pending_at_revocation.get().unwrap();
        assert!(pending >= 5, "the revocation waited for the logins: {pending} of 8 still pending");
    }
}
