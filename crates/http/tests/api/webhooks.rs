//! `/v1/webhooks` over HTTP: the secret shown once and rotated, what an endpoint refuses
//! (private destinations, unknown events), who may see and change it (its account, with
//! the webhook scopes), and the attempts list and manual retry of its deliveries.

use actix_web::http::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const HOOK: &str = "https://hooks.example.com/keyward";

both_stores! {
    async fn an_endpoint_shows_its_secret_once_and_rotates_it(app) {
        let made = app.post("/v1/webhooks", json!({"url": HOOK, "event_types": ["key.revoked", "key.leaked"]})).await;
        assert_eq!(made.status.as_u16(), 201, "{:#}", made.body);
        let id = made.str("id");
        assert!(id.starts_with("wh_"), "{id}");
        let secret = made.str("secret");
        assert!(secret.starts_with("whsec_") && secret.len() == 38, "{secret}");
        assert_eq!((made.body["enabled"].as_bool(), made.body["event_types"].clone()), (Some(true), json!(["key.revoked", "key.leaked"])));

        let read = app.get(&format!("/v1/webhooks/{id}")).await;
        assert_eq!(read.status.as_u16(), 200);
        assert!(read.body.get("secret").is_none(), "shown once: {:#}", read.body);
        let listed = app.get("/v1/webhooks").await;
        assert!(!listed.bytes.windows(secret.len()).any(|w| w == secret.as_bytes()), "nor in the list");

        let rotated = app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"overlap_seconds": 3600})).await;
        assert_eq!(rotated.status.as_u16(), 200, "{:#}", rotated.body);
        assert_ne!(rotated.str("secret"), secret);
        let until = time::OffsetDateTime::parse(&rotated.str("previous_secret_expires_at"), &time::format_description::well_known::Rfc3339).unwrap();
        assert_eq!(until, START + time::Duration::hours(1));
        app.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"overlap_seconds": 999_999_999}))
            .await
            .assert_error(400, "validation_failed");

        let patched = app.patch(&format!("/v1/webhooks/{id}"), json!({"event_types": [], "enabled": false, "description": "all of it"})).await;
        assert_eq!(patched.status.as_u16(), 200, "{:#}", patched.body);
        assert_eq!((patched.body["enabled"].clone(), patched.body["disabled_reason"].clone(), patched.body["event_types"].clone()), (json!(false), json!("by_user"), json!([])));

        let deleted = app.delete(&format!("/v1/webhooks/{id}")).await;
        assert_eq!(deleted.body, json!({"id": id, "deleted": true}));
        app.get(&format!("/v1/webhooks/{id}")).await.assert_error(404, "not_found");
        let actions: Vec<String> = app.audit_actions().await.into_iter().map(|(a, _)| a).collect();
        for action in ["webhook.create", "webhook.read", "webhook.rotate_secret", "webhook.update", "webhook.delete"] {
            assert!(actions.iter().any(|a| a == action), "{action} in {actions:?}");
        }
        let trail = serde_json::to_string(&app.account_trail().await.iter().map(|r| r.event.metadata.clone()).collect::<Vec<_>>()).unwrap();
        assert!(!trail.contains(&secret[6..]), "no secret in the audit trail");
    }

    async fn private_destinations_and_unknown_events_are_refused(app) {
        for url in ["http://127.0.0.1:9000/", "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://localhost/", "http://10.1.2.3/", "ftp://example.com/", "https://user:pw@example.com/", "not a url"] {
            let refused = app.post("/v1/webhooks", json!({"url": url})).await;
            refused.assert_error(400, "validation_failed");
            assert_eq!(refused.body["details"][0]["field"], "url", "{url}: {:#}", refused.body);
        }
        // As many as there are event types, no more (the document's maxItems), repeats included.
        let refused = app.post("/v1/webhooks", json!({"url": HOOK, "event_types": vec!["quota.low"; 9]})).await;
        refused.assert_error(400, "validation_failed");
        assert_eq!(refused.body["details"][0]["field"], "event_types");
        let refused = app.post("/v1/webhooks", json!({"url": HOOK, "event_types": ["key.exploded"]})).await;
        refused.assert_error(400, "validation_failed");
        assert_eq!(refused.body["details"][0]["field"], "event_types[0]");
        let made = app.post("/v1/webhooks", json!({"url": HOOK})).await;
        let id = made.str("id");
        app.patch(&format!("/v1/webhooks/{id}"), json!({"url": "http://192.168.0.1/"})).await.assert_error(400, "validation_failed");
        assert_eq!(app.get(&format!("/v1/webhooks/{id}")).await.str("url"), HOOK, "unchanged");
        assert_eq!(app.get("/v1/webhooks").await.body["data"].as_array().unwrap().len(), 1, "nothing half-made");
    }

    async fn another_account_and_narrow_keys_see_nothing(app) {
        let id = app.post("/v1/webhooks", json!({"url": HOOK})).await.str("id");
        let other = app.other_account_key().await;
        for (method, path, body) in [
            (Method::GET, format!("/v1/webhooks/{id}"), None),
            (Method::PATCH, format!("/v1/webhooks/{id}"), Some(json!({"enabled": false}))),
            (Method::DELETE, format!("/v1/webhooks/{id}"), None),
            (Method::POST, format!("/v1/webhooks/{id}/rotate-secret"), None),
            (Method::GET, format!("/v1/webhooks/{id}/attempts"), None),
        ] {
            app.call(method, &path, &other, body).await.assert_error(404, "not_found");
        }
        assert_eq!(app.call(Method::GET, "/v1/webhooks", &other, None).await.body["data"], json!([]));
        // A viewer reads endpoints but changes none; a member (keys, not webhooks) neither.
        app.add_person("viewer@acme.io", keyward_domain::people::Role::Viewer).await;
        app.add_person("member@acme.io", keyward_domain::people::Role::Member).await;
        let viewer = app.login_as("viewer@acme.io").await;
        assert_eq!(app.with_session(Method::GET, "/v1/webhooks", &viewer, None).await.status.as_u16(), 200);
        let change = json!({"url": HOOK});
        app.with_session(Method::POST, "/v1/webhooks", &viewer, Some(change.clone())).await.assert_error(403, "insufficient_scope");
        let member = app.login_as("member@acme.io").await;
        app.with_session(Method::POST, "/v1/webhooks", &member, Some(change)).await.assert_error(403, "insufficient_scope");
        app.call(Method::GET, "/v1/webhooks", "", None).await.assert_error(401, "unauthorized");
        app.get("/v1/webhooks/wh_nonsense").await.assert_error(404, "not_found");
    }

    async fn attempts_list_and_retry_answer_for_the_account_only(app) {
        let id = app.post("/v1/webhooks", json!({"url": HOOK})).await.str("id");
        let attempts = app.get(&format!("/v1/webhooks/{id}/attempts")).await;
        assert_eq!(attempts.body, json!({"data": [], "next_cursor": null}));
        app.get(&format!("/v1/webhooks/{id}/attempts?cursor=nonsense")).await.assert_error(400, "validation_failed");
        app.get(&format!("/v1/webhooks/{id}/attempts?limit=0")).await.assert_error(400, "validation_failed");
        let unknown = "msg_0000000000000000000000";
        let retry = app.post(&format!("/v1/webhooks/{id}/messages/{unknown}/retry"), Value::Null).await;
        retry.assert_error(404, "not_found");
    }
}
