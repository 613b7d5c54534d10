//! The service-key lifecycle over HTTP: create, list, get, update, rotate, revoke, import.

use actix_web::{http::Method, test::TestRequest};
use base64::Engine as _;
use serde_json::json;
use time::Duration;

use crate::helpers::*;

both_stores! {
    async fn lifecycle(app) {
        let ks = app.post("/v1/keyspaces", json!({"name": "crucible", "prefix": "gmk_cru", "default_scopes": ["server:list"]})).await;
        assert_eq!(ks.status.as_u16(), 201, "{:#}", ks.body);
        let ks_id = ks.str("id");

        let created = app.post("/v1/keys", json!({
            "keyspace_id": ks_id, "name": "srv 42", "environment": "test", "owner_id": "cust_1",
            "metadata": {"plan": "gold"}, "resource": "server:srv_42",
        })).await;
        assert_eq!(created.status.as_u16(), 201, "{:#}", created.body);
        let (id, plaintext) = (created.str("id"), created.str("key"));
        assert!(plaintext.starts_with("gmk_cru_test_"), "{plaintext}");
        assert!(created.str("key_prefix").starts_with("gmk_cru_test_"));
        assert!(!created.str("key_prefix").contains(&plaintext[13..30]), "the display prefix hides the secret");
        assert_eq!(created.body["scopes"], json!(["server:list"]), "keyspace default scopes apply");
        assert_eq!(created.body["status"], "active");
        assert_eq!(created.body["tier"], "enterprise");

        // The plaintext is never shown again.
        let fetched = app.get(&format!("/v1/keys/{id}")).await;
        assert_eq!(fetched.status.as_u16(), 200);
        assert!(fetched.body.get("key").is_none());
        assert!(!fetched.body.to_string().contains(&plaintext));
        assert!(fetched.body.get("usage").is_some());
        let listed = app.get("/v1/keys").await;
        assert!(!listed.body.to_string().contains(&plaintext));

        // Update, including clearing a nullable field with null.
        app.patch(&format!("/v1/keys/{id}"), json!({"expires_at": "2027-01-01T00:00:00Z"})).await;
        let updated = app.patch(&format!("/v1/keys/{id}"), json!({"name": "renamed", "expires_at": null, "scopes": ["server:*"], "is_active": false})).await;
        assert_eq!(updated.status.as_u16(), 200, "{:#}", updated.body);
        assert_eq!(updated.body["name"], "renamed");
        assert_eq!(updated.body["expires_at"], serde_json::Value::Null);
        assert_eq!(updated.body["status"], "inactive");
        assert_eq!(updated.body["owner_id"], "cust_1", "fields not sent are kept");
        app.patch(&format!("/v1/keys/{id}"), json!({"is_active": true})).await;

        // Listing filters.
        app.create_key(json!({"name": "live one"})).await;
        assert_eq!(app.get("/v1/keys").await.body["total"], 2);
        assert_eq!(app.get("/v1/keys?environment=test").await.body["total"], 1);
        assert_eq!(app.get(&format!("/v1/keys?keyspace_id={ks_id}")).await.body["total"], 1);
        assert_eq!(app.get("/v1/keys?owner_id=cust_1").await.body["total"], 1);
        assert_eq!(app.get("/v1/keys?status=revoked").await.body["total"], 0);

        // Rotation with a grace period: both keys work, then only the new one.
        let rotated = app.post(&format!("/v1/keys/{id}/rotate"), json!({"grace_period_seconds": 60})).await;
        assert_eq!(rotated.status.as_u16(), 201, "{:#}", rotated.body);
        let new_plaintext = rotated.str("key");
        assert_eq!(rotated.body["rotated_from"], id);
        assert_eq!(rotated.body["name"], "renamed");
        let request = |key: &str| json!({"key": key, "resource": "server:srv_42"});
        assert_eq!(app.verify(request(&plaintext)).await["code"], "VALID");
        assert_eq!(app.verify(request(&new_plaintext)).await["code"], "VALID");
        app.clock.advance(Duration::seconds(61));
        assert_eq!(app.verify(request(&plaintext)).await["code"], "EXPIRED");
        assert_eq!(app.verify(request(&new_plaintext)).await["code"], "VALID");
        let old = app.get(&format!("/v1/keys/{id}")).await;
        assert_eq!(old.body["rotated_to"], rotated.body["id"]);

        // An empty body rotates with no grace.
        let rotate_now = app.send(TestRequest::post().uri(&format!("/v1/keys/{}/rotate", rotated.str("id"))).insert_header(("authorization", format!("Bearer {}", app.root_key)))).await;
        assert_eq!(rotate_now.status.as_u16(), 201, "{:#}", rotate_now.body);
        assert_eq!(app.verify(request(&new_plaintext)).await["code"], "EXPIRED");

        // Revocation is immediate and permanent.
        let newest = rotate_now.str("id");
        let revoked = app.delete(&format!("/v1/keys/{newest}")).await;
        assert_eq!(revoked.status.as_u16(), 200);
        assert_eq!(revoked.body["id"], newest);
        assert_eq!(app.verify(request(&rotate_now.str("key"))).await["code"], "REVOKED");
        let again = app.delete(&format!("/v1/keys/{newest}")).await;
        assert_eq!(again.body["revoked_at"], revoked.body["revoked_at"]);
        app.patch(&format!("/v1/keys/{newest}"), json!({"is_active": true})).await;
        assert_eq!(app.verify(request(&rotate_now.str("key"))).await["code"], "REVOKED");
        app.post(&format!("/v1/keys/{newest}/rotate"), json!({})).await.assert_error(403, "forbidden");
        assert_eq!(app.get("/v1/keys?status=revoked").await.body["total"], 1);
    }

    async fn pagination_visits_every_key_once(app) {
        let mut ids = Vec::new();
        for i in 0..12 {
            app.clock.advance(Duration::milliseconds(3));
            ids.push(app.create_key(json!({"name": format!("k{i}")})).await.0);
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor { Some(c) => format!("/v1/keys?limit=5&cursor={c}"), None => "/v1/keys?limit=5".into() };
            let page = app.get(&path).await;
            assert_eq!(page.body["total"], 12);
            seen.extend(page.body["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap().to_owned()));
            match page.body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        ids.reverse();
        assert_eq!(seen, ids);
    }

    async fn authentication_forms(app) {
        let root = app.root_key.clone();
        let bearer = app.send(TestRequest::get().uri("/v1/account").insert_header(("authorization", format!("Bearer {root}")))).await;
        assert_eq!(bearer.status.as_u16(), 200);
        assert_eq!(bearer.body["id"], app.account_id);
        let header = app.send(TestRequest::get().uri("/v1/account").insert_header(("x-api-key", root.clone()))).await;
        assert_eq!(header.status.as_u16(), 200);
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:{root}", app.account_id));
        let basic = app.send(TestRequest::get().uri("/v1/account").insert_header(("authorization", format!("Basic {basic}")))).await;
        assert_eq!(basic.status.as_u16(), 200);
        // The same key twice is not ambiguous.
        let twice = app.send(TestRequest::get().uri("/v1/account").insert_header(("authorization", format!("Bearer {root}"))).insert_header(("x-api-key", root.clone()))).await;
        assert_eq!(twice.status.as_u16(), 200);
        assert_eq!(bearer.body["limits"]["active_keys"], 0);

        // A service key may read only itself.
        let (id, service_key) = app.create_key(json!({"name": "customer"})).await;
        let own = app.call(Method::GET, "/v1/keys/self", &service_key, None).await;
        assert_eq!(own.status.as_u16(), 200);
        assert_eq!(own.body["id"], id);
        assert!(own.body.get("key").is_none());
        let me = app.call(Method::GET, "/v1/keys/self", &root, None).await;
        assert_eq!(me.body["kind"], "account");
    }

    async fn import_is_all_or_nothing(app) {
        use sha2_like::sha256_hex;
        let legacy = "col_3f9a2b7c1d";
        let entries = json!([
            {"hash": format!("sha256:{}", sha256_hex(legacy)), "name": "legacy 1", "scopes": ["reports:read"]},
            {"hash": format!("blake3:{}", "ab".repeat(32)), "name": "legacy 2"},
        ]);
        let bad = json!([
            {"hash": format!("sha256:{}", "cd".repeat(32)), "name": "fine"},
            {"hash": "md5:1234", "name": "broken"},
        ]);
        let refused = app.post("/v1/keys/import", json!({"keys": bad})).await;
        refused.assert_error(400, "validation_failed");
        assert_eq!(refused.body["details"][0]["field"], "keys[1].hash");
        assert_eq!(app.get("/v1/keys").await.body["total"], 0, "nothing of a refused import is stored");

        let imported = app.post("/v1/keys/import", json!({"keys": entries})).await;
        assert_eq!(imported.status.as_u16(), 201, "{:#}", imported.body);
        assert_eq!(imported.body["imported"], 2);
        let verified = app.verify(json!({"key": legacy, "scopes": ["reports:read"]})).await;
        assert_eq!(verified["code"], "VALID");
        assert_eq!(verified["name"], "legacy 1");
        let duplicate = app.post("/v1/keys/import", json!({"keys": [{"hash": format!("sha256:{}", sha256_hex(legacy)), "name": "again"}]})).await;
        duplicate.assert_error(400, "validation_failed");
        app.post("/v1/keys/import", json!({"keys": []})).await.assert_error(400, "validation_failed");
    }
}

/// SHA-256 for test data, through the domain's own hashing.
mod sha2_like {
    pub fn sha256_hex(input: &str) -> String {
        let hash = keyward_domain::KeyHash::sha256(input).to_bytes();
        hash[1..].iter().map(|b| format!("{b:02x}")).collect()
    }
}

both_stores! {
    async fn an_idle_timeout_is_kept_exactly_or_refused(app) {
        // The largest every store keeps exactly is kept exactly, on both; one more is refused
        // instead of being clamped by one store and kept by the other.
        let root = app.root_key.clone();
        let (id, _) = app.create_key(json!({"name": "idle", "idle_timeout_seconds": 2_147_483_647u32})).await;
        let read = app.call(Method::GET, &format!("/v1/keys/{id}"), &root, None).await;
        assert_eq!(read.body["idle_timeout_seconds"], 2_147_483_647u32);
        let too_long = json!({"idle_timeout_seconds": 2_147_483_648u32});
        app.call(Method::PATCH, &format!("/v1/keys/{id}"), &root, Some(too_long.clone())).await.assert_error(400, "validation_failed");
        app.call(Method::POST, "/v1/keys", &root, Some(json!({"name": "x", "idle_timeout_seconds": 2_147_483_648u32}))).await.assert_error(400, "validation_failed");
        let read = app.call(Method::GET, &format!("/v1/keys/{id}"), &root, None).await;
        assert_eq!(read.body["idle_timeout_seconds"], 2_147_483_647u32, "unchanged");
    }
}

both_stores! {
    async fn a_rotation_body_may_be_absent_or_null(app) {
        let root = app.root_key.clone();
        let (id, _) = app.create_key(json!({"name": "rotate me"})).await;
        let rotate = |id: &str, body: Option<&'static str>| {
            let mut request = TestRequest::post()
                .uri(&format!("/v1/keys/{id}/rotate"))
                .insert_header(("authorization", format!("Bearer {root}")));
            if let Some(body) = body {
                request = request.insert_header(("content-type", "application/json")).set_payload(body);
            }
            request
        };
        let absent = app.send(rotate(&id, None)).await;
        assert_eq!(absent.status.as_u16(), 201, "{:#}", absent.body);
        let null = app.send(rotate(&absent.str("id"), Some("null"))).await;
        assert_eq!(null.status.as_u16(), 201, "{:#}", null.body);
    }
}
