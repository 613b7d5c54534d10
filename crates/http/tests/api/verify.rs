//! `POST /v1/keys/verify`: every code this issue covers, in SPEC order.

use serde_json::json;
use time::Duration;

use crate::helpers::*;

both_stores! {
    async fn codes_in_spec_order(app) {
        let (id, key) = app.create_key(json!({
            "name": "bound", "scopes": ["server:*"], "resource": "server:srv_42",
            "ip_allowlist": ["203.0.113.0/24"], "expires_at": "2026-03-01T13:00:00Z",
        })).await;
        let good = || json!({"key": key, "scopes": ["server:list"], "resource": "server:srv_42", "ip": "203.0.113.9"});
        let valid = app.verify(good()).await;
        assert_eq!(valid["valid"], true);
        assert_eq!(valid["code"], "VALID");
        assert_eq!(valid["key_id"], id);
        // An enterprise key without windows of its own: the tier's 10,000 per minute.
        assert_eq!(valid["ratelimit"], json!({"limit": 10_000, "remaining": 9_999, "reset_seconds": 60}));
        assert_eq!(valid["quota_remaining"], serde_json::Value::Null);

        let with = |patch: serde_json::Value| {
            let mut body = good();
            body.as_object_mut().unwrap().extend(patch.as_object().unwrap().clone());
            body
        };
        assert_eq!(app.verify(with(json!({"scopes": ["server:list", "ip:setptr"]}))).await["code"], "INSUFFICIENT_SCOPE");
        assert_eq!(app.verify(with(json!({"resource": "server:srv_43"}))).await["code"], "WRONG_RESOURCE");
        assert_eq!(app.verify(with(json!({"resource": null}))).await["code"], "WRONG_RESOURCE");
        assert_eq!(app.verify(with(json!({"ip": "198.51.100.1"}))).await["code"], "IP_NOT_ALLOWED");
        // Each earlier failure wins over every later one.
        let everything_wrong = with(json!({"ip": "198.51.100.1", "resource": "server:x", "scopes": ["nope:nope"]}));
        assert_eq!(app.verify(everything_wrong.clone()).await["code"], "IP_NOT_ALLOWED");
        app.patch(&format!("/v1/keys/{id}"), json!({"is_active": false})).await;
        assert_eq!(app.verify(everything_wrong.clone()).await["code"], "INACTIVE");
        app.clock.advance(Duration::hours(2));
        assert_eq!(app.verify(everything_wrong.clone()).await["code"], "EXPIRED");
        app.delete(&format!("/v1/keys/{id}")).await;
        let revoked = app.verify(everything_wrong).await;
        assert_eq!(revoked["code"], "REVOKED");
        assert_eq!(revoked["valid"], false);
        assert_eq!(app.verify(json!({"key": "kw_live_doesnotexist"})).await["code"], "NOT_FOUND");
    }

    async fn other_accounts_keys_are_not_found(app) {
        let other = app.other_account_key().await;
        let reply = app.call(actix_web::http::Method::POST, "/v1/keys", &other, Some(json!({"name": "theirs"}))).await;
        let theirs = reply.str("key");
        let verdict = app.verify(json!({"key": theirs})).await;
        assert_eq!(verdict["code"], "NOT_FOUND");
        assert_eq!(verdict["key_id"], serde_json::Value::Null);
        // Account keys are not service keys.
        assert_eq!(app.verify(json!({"key": app.root_key})).await["code"], "NOT_FOUND");
    }

    async fn host_names_in_allowlists_admit_what_they_resolve_to(app) {
        let (id, key) = app.create_key(json!({"name": "office", "ip_allowlist": ["198.51.100.0/24", "LocalHost"]})).await;
        assert_eq!(app.get(&format!("/v1/keys/{id}")).await.body["ip_allowlist"], json!(["198.51.100.0/24", "localhost"]));
        assert_eq!(app.verify(json!({"key": key, "ip": "127.0.0.1"})).await["code"], "VALID", "localhost resolves to it");
        assert_eq!(app.verify(json!({"key": key, "ip": "198.51.100.7"})).await["code"], "VALID", "the network still counts");
        assert_eq!(app.verify(json!({"key": key, "ip": "203.0.113.1"})).await["code"], "IP_NOT_ALLOWED");
        assert_eq!(app.verify(json!({"key": key})).await["code"], "IP_NOT_ALLOWED", "no ip: fails closed");

        let (_, nowhere) = app.create_key(json!({"name": "nowhere", "ip_allowlist": ["keyward-test.invalid"]})).await;
        assert_eq!(app.verify(json!({"key": nowhere, "ip": "127.0.0.1"})).await["code"], "IP_NOT_ALLOWED");

        let refused = app.post("/v1/keys", json!({"name": "bad", "ip_allowlist": ["10.0.0.1", "not a host"]})).await;
        refused.assert_error(400, "validation_failed");
        assert_eq!(refused.body["details"][0]["field"], "ip_allowlist[1]");
    }

    async fn idle_timeout_expires_unused_keys(app) {
        let (_, key) = app.create_key(json!({"name": "idle", "idle_timeout_seconds": 30})).await;
        app.clock.advance(Duration::seconds(29));
        assert_eq!(app.verify(json!({"key": key})).await["code"], "VALID");
        app.clock.advance(Duration::seconds(1));
        assert_eq!(app.verify(json!({"key": key})).await["code"], "EXPIRED");
    }
}

#[actix_web::test]
async fn a_broken_checksum_is_not_found_without_a_storage_lookup() {
    let store = keyward_store_mem::MemStore::new();
    let app = TestApp::new(store.clone()).await;
    let (_, key) = app.create_key(json!({"name": "k"})).await;
    let mut broken: Vec<char> = key.chars().collect();
    let i = broken.len() - 10;
    broken[i] = if broken[i] == 'A' { 'B' } else { 'A' };
    let broken: String = broken.into_iter().collect();

    let before = store.hash_lookups();
    let verdict = app.verify(json!({"key": broken})).await;
    // Exactly one lookup: the caller's own account key. None for the broken key.
    assert_eq!(store.hash_lookups() - before, 1);
    assert_eq!(verdict["code"], "NOT_FOUND");

    let before = store.hash_lookups();
    assert_eq!(app.verify(json!({"key": key})).await["code"], "VALID");
    assert_eq!(store.hash_lookups() - before, 2, "the counter does count lookups");
}
