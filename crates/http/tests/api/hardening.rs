//! Issue #29 item 4: the smaller holes — no cache keeps an answer that carries a secret.

use actix_web::{http::Method, test::TestRequest};
use keyward_domain::people::Role;
use serde_json::json;

use crate::helpers::*;

fn cache_control(reply: &Reply) -> Option<&str> {
    reply.headers.get("cache-control").and_then(|v| v.to_str().ok())
}

both_stores! {
    async fn no_answer_that_carries_a_secret_may_be_cached(app) {
        let mut answers = Vec::new();
        let (_, key) = app.create_key(json!({"name": "cached?"})).await;
        let created = app.post("/v1/keys", json!({"name": "shown once"})).await;
        let id = created.str("id");
        answers.push(("POST /v1/keys", created));
        answers.push(("POST /v1/keys/{id}/rotate", app.post(&format!("/v1/keys/{id}/rotate"), json!({})).await));
        let hook = app.post("/v1/webhooks", json!({"url": "https://hooks.example.com/k", "event_types": ["key.revoked"]})).await;
        let hook_id = hook.str("id");
        answers.push(("POST /v1/webhooks", hook));
        answers.push(("POST /v1/webhooks/{id}/rotate-secret", app.post(&format!("/v1/webhooks/{hook_id}/rotate-secret"), json!({})).await));
        // A replayed creation carries the same plaintext again.
        let replay = || TestRequest::post().uri("/v1/keys").insert_header(("authorization", format!("Bearer {}", app.root_key)))
            .insert_header(("idempotency-key", "once")).set_json(json!({"name": "replayed"}));
        app.send(replay()).await;
        let replayed = app.send(replay()).await;
        assert_eq!(replayed.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
        answers.push(("a replayed POST /v1/keys", replayed));

        app.add_person("owner@acme.io", Role::Owner).await;
        let (session, login) = app.login(json!({"email": "owner@acme.io", "password": PASSWORD, "temporary_key": true})).await;
        assert!(login.body["temporary_key"]["key"].is_string());
        answers.push(("POST /v1/auth/login with a temporary key", login));
        let session = session.unwrap();
        app.step_up(&session).await;
        let account_key = app.with_session(Method::POST, "/v1/account/keys", &session, Some(json!({"name": "ci", "scopes": ["keys:read"]}))).await;
        let account_key_id = account_key.str("id");
        answers.push(("POST /v1/account/keys", account_key));
        answers.push(("POST /v1/account/keys/{id}/rotate", app.with_session(Method::POST, &format!("/v1/account/keys/{account_key_id}/rotate"), &session, Some(json!({}))).await));
        answers.push(("POST /v1/account/users", app.with_session(Method::POST, "/v1/account/users", &session, Some(json!({"email": "new@acme.io", "role": "member"}))).await));
        for (what, reply) in &answers {
            assert!(reply.status.is_success(), "{what}: {:#}", reply.body);
            assert_eq!(cache_control(reply), Some("no-store"), "{what}");
        }
        // The hot path is left alone: a verification carries no secret.
        let verified = app.send(TestRequest::post().uri("/v1/keys/verify").insert_header(("authorization", format!("Bearer {}", app.root_key))).set_json(json!({"key": key}))).await;
        assert_eq!(verified.status.as_u16(), 200);
    }
}
