//! Every error path answers with the SPEC §5 envelope, the right status and a stable code.

use actix_web::{http::Method, test::TestRequest};
use base64::Engine as _;
use serde_json::json;

use crate::helpers::*;

both_stores! {
    async fn error_table(app) {
        let root = app.root_key.clone();
        let (service_id, service_key) = app.create_key(json!({"name": "customer"})).await;
        let other_root = app.other_account_key().await;
        let json_post = |path: &str, key: &str, body: &str| {
            TestRequest::post().uri(path).insert_header(("authorization", format!("Bearer {key}"))).insert_header(("content-type", "application/json")).set_payload(body.to_owned())
        };

        // 400
        app.send(json_post("/v1/keys", &root, "{\"name\": ")).await.assert_error(400, "invalid_json");
        app.send(json_post("/v1/keys", &root, "{\"name\": \"a\"} trailing")).await.assert_error(400, "invalid_json");
        let unknown = app.send(json_post("/v1/keys", &root, r#"{"name": "a", "nmae": "b"}"#)).await;
        unknown.assert_error(400, "validation_failed");
        assert_eq!(unknown.body["details"][0]["field"], "nmae");
        let missing = app.send(json_post("/v1/keys", &root, "{}")).await;
        missing.assert_error(400, "validation_failed");
        let wrong_type = app.send(json_post("/v1/keys", &root, r#"{"name": "a", "scopes": "keys:read"}"#)).await;
        wrong_type.assert_error(400, "validation_failed");
        assert_eq!(wrong_type.body["details"][0]["field"], "scopes");
        let bounds = app.post("/v1/keys", json!({"name": "x".repeat(101), "scopes": ["no-colon"], "ip_allowlist": ["999.1.1.1"]})).await;
        bounds.assert_error(400, "validation_failed");
        let fields: Vec<&str> = bounds.body["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
        assert_eq!(fields, ["name", "scopes", "ip_allowlist[0]"]);
        app.get("/v1/keys?limit=0").await.assert_error(400, "validation_failed");
        app.get("/v1/keys?limit=101").await.assert_error(400, "validation_failed");
        app.get("/v1/keys?colour=red").await.assert_error(400, "validation_failed");
        app.get("/v1/keys?cursor=not-a-cursor").await.assert_error(400, "validation_failed");
        app.get("/v1/keys?status=sleeping").await.assert_error(400, "validation_failed");
        let ambiguous = TestRequest::get().uri("/v1/account").insert_header(("authorization", format!("Bearer {root}"))).insert_header(("x-api-key", other_root.clone()));
        app.send(ambiguous).await.assert_error(400, "ambiguous_credentials");

        // 401: missing, malformed, unknown, bad checksum, revoked: one code.
        app.send(TestRequest::get().uri("/v1/account")).await.assert_error(401, "unauthorized");
        app.call(Method::GET, "/v1/account", "garbage", None).await.assert_error(401, "unauthorized");
        let mut broken = root.clone();
        let last = broken.pop().unwrap();
        broken.push(if last == 'a' { 'b' } else { 'a' });
        app.call(Method::GET, "/v1/account", &broken, None).await.assert_error(401, "unauthorized");
        app.send(TestRequest::get().uri("/v1/account").insert_header(("authorization", "Token abc"))).await.assert_error(401, "unauthorized");
        let wrong_account = base64::engine::general_purpose::STANDARD.encode(format!("acct_0000000000000000000000:{root}"));
        app.send(TestRequest::get().uri("/v1/account").insert_header(("authorization", format!("Basic {wrong_account}")))).await.assert_error(401, "unauthorized");

        // 403
        app.call(Method::GET, "/v1/keys", &service_key, None).await.assert_error(403, "forbidden");
        // The default keyspace cannot be deleted.
        let ks = app.get("/v1/keyspaces").await.body["data"][0]["id"].as_str().unwrap().to_owned();
        app.delete(&format!("/v1/keyspaces/{ks}")).await.assert_error(403, "forbidden");

        // 404: unknown route, unknown id, malformed id, another account's key.
        app.get("/v1/nothing").await.assert_error(404, "not_found");
        app.get("/v1/keys/key_0000000000000000000000").await.assert_error(404, "not_found");
        app.get("/v1/keys/not-an-id").await.assert_error(404, "not_found");
        app.call(Method::GET, &format!("/v1/keys/{service_id}"), &other_root, None).await.assert_error(404, "not_found");
        app.call(Method::DELETE, &format!("/v1/keys/{service_id}"), &other_root, None).await.assert_error(404, "not_found");
        app.call(Method::PATCH, &format!("/v1/keys/{service_id}"), &other_root, Some(json!({"name": "stolen"}))).await.assert_error(404, "not_found");
        app.send(TestRequest::get().uri("/docs/errors/no_such_code")).await.assert_error(404, "not_found");

        // 405
        app.send(TestRequest::put().uri("/v1/keys")).await.assert_error(405, "method_not_allowed");
        app.send(TestRequest::delete().uri("/healthz")).await.assert_error(405, "method_not_allowed");

        // 409
        let ks = app.post("/v1/keyspaces", json!({"name": "busy", "prefix": "busy"})).await.str("id");
        app.create_key(json!({"name": "in busy", "keyspace_id": ks})).await;
        app.delete(&format!("/v1/keyspaces/{ks}")).await.assert_error(409, "keyspace_not_empty");

        // 413, 415
        let big = format!(r#"{{"name": "a", "description": "{}"}}"#, "x".repeat(70 * 1024));
        app.send(json_post("/v1/keys", &root, &big)).await.assert_error(413, "payload_too_large");
        let big_import = format!(r#"{{"keys": [], "pad": "{}"}}"#, "x".repeat(1100 * 1024));
        app.send(json_post("/v1/keys/import", &root, &big_import)).await.assert_error(413, "payload_too_large");
        let text = TestRequest::post().uri("/v1/keys").insert_header(("authorization", format!("Bearer {root}"))).insert_header(("content-type", "text/plain")).set_payload(r#"{"name": "a"}"#);
        app.send(text).await.assert_error(415, "unsupported_media_type");

        // No error body leaks the presented key.
        let leaked = app.send(json_post("/v1/keys/verify", &root, &format!(r#"{{"key": "{service_key}", "cost": "{service_key}"}}"#))).await;
        leaked.assert_error(400, "validation_failed");
        assert!(!leaked.body.to_string().contains(&service_key), "{}", leaked.body);
    }

    async fn key_limit_is_403(app) {
        // Keys created past the plan's limit answer 403, not 429.
        let free = TestApp::with_plan(app.service.store().clone(), keyward_domain::Plan::Free).await;
        let keys: Vec<_> = (0..100).map(|i| json!({"hash": format!("sha256:{:064x}", i), "name": format!("k{i}")})).collect();
        let imported = free.post("/v1/keys/import", json!({"keys": keys})).await;
        assert_eq!(imported.status.as_u16(), 201, "{:#}", imported.body);
        free.post("/v1/keys", json!({"name": "one too many"})).await.assert_error(403, "key_limit_reached");
    }

    async fn insufficient_scope(app) {
        let read_only = app.service.create_account("Readers", keyward_domain::Plan::Pro, true).await.unwrap().1.unwrap();
        let mut key = read_only.key.clone();
        key.scopes = keyward_domain::ScopeSet::parse(&["keys:read"]).unwrap();
        app.service.store().update_key(&read_only.key, &key).await.unwrap();
        let secret = read_only.plaintext.expose_secret();
        assert_eq!(app.call(Method::GET, "/v1/keys", secret, None).await.status.as_u16(), 200);
        let denied = app.call(Method::POST, "/v1/keys", secret, Some(json!({"name": "nope"}))).await;
        denied.assert_error(403, "insufficient_scope");
        assert!(denied.str("message").contains("keys:write"));
        app.call(Method::POST, "/v1/keys/verify", secret, Some(json!({"key": "x"}))).await.assert_error(403, "insufficient_scope");
        let before = key.clone();
        key.is_active = false;
        app.service.store().update_key(&before, &key).await.unwrap();
        app.call(Method::GET, "/v1/keys", secret, None).await.assert_error(403, "key_inactive");
        let before = key.clone();
        key.is_active = true;
        key.ip_allowlist.push("10.0.0.0/8").unwrap();
        app.service.store().update_key(&before, &key).await.unwrap();
        app.call(Method::GET, "/v1/keys", secret, None).await.assert_error(403, "ip_not_allowed");
    }
}

#[actix_web::test]
async fn every_code_has_a_documentation_page() {
    let app = TestApp::new(keyward_store_mem::MemStore::new()).await;
    for (code, status, _) in keyward_http::error::ERROR_CODES {
        let page = app.send(TestRequest::get().uri(&format!("/docs/errors/{code}"))).await;
        assert_eq!(page.status.as_u16(), 200, "{code}");
        let text = page.body.as_str().unwrap();
        assert!(text.starts_with(&format!("# `{code}` ({status})")), "{text}");
    }
}

#[actix_web::test]
async fn openapi_document_lists_the_routes() {
    let app = TestApp::new(keyward_store_mem::MemStore::new()).await;
    let doc = app.send(TestRequest::get().uri("/v1/openapi.json")).await.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/keys",
        "/v1/keys/{id}",
        "/v1/keys/{id}/rotate",
        "/v1/keys/verify",
        "/v1/keys/import",
        "/v1/keys/self",
        "/v1/keyspaces",
        "/v1/account",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
}

#[actix_web::test]
async fn storage_down_is_503_with_the_envelope() {
    use std::{sync::Arc, time::Duration};

    use keyward_domain::{OsRandom, SystemClock, key_service::DomainConfig};
    use keyward_http::{AppState, HttpSettings, TrustedProxies};
    use keyward_store_pg::{PgStore, PoolConfig};

    // Nothing listens on port 1: every connection attempt fails at once.
    let config = PoolConfig { wait_timeout: Duration::from_millis(500), ..PoolConfig::default() };
    let store = PgStore::connect("postgres://postgres@127.0.0.1:1/keyward", &config).unwrap();
    let service = keyward_domain::key_service::KeyService::new(
        store,
        Arc::new(SystemClock),
        Arc::new(OsRandom),
        Arc::new(DomainConfig::default()),
    );
    let settings = HttpSettings {
        public_url: "http://keyward.test".into(),
        trusted_proxies: TrustedProxies::default(),
        metrics_token: None,
    };
    let hasher =
        keyward_runtime::password::BlockingPasswordHasher::new(keyward_domain::password::HashParams::default(), 1)
            .unwrap();
    let state = AppState::new(
        service,
        hasher,
        Arc::new(keyward_domain::audit::MemoryAuditSink::default()),
        Arc::new(keyward_ratelimit::Limits::in_process()),
        keyward_http::Policies::default(),
        "http://keyward.test",
    );
    let app = actix_web::test::init_service(keyward_http::app(actix_web::web::Data::new(state), settings)).await;
    for request in [
        TestRequest::get().uri("/readyz"),
        TestRequest::get().uri("/v1/account").insert_header(("authorization", "Bearer kw_acct_live_anything")),
    ] {
        let response = actix_web::test::call_service(&app, request.to_request()).await;
        assert_eq!(response.status().as_u16(), 503);
        let request_id = response.headers().get("x-request-id").unwrap().to_str().unwrap().to_owned();
        let body: serde_json::Value = actix_web::test::read_body_json(response).await;
        assert_eq!(body["error"], "unavailable");
        assert_eq!(body["request_id"], request_id);
        assert!(!body["message"].as_str().unwrap().contains("127.0.0.1"), "no internal detail: {body}");
    }
}

both_stores! {
    async fn a_nul_character_anywhere_is_a_400_never_a_500(app) {
        // PostgreSQL's text and jsonb cannot hold U+0000: it must be refused by name before
        // any write (schemathesis found a 500 on PATCH /v1/keyspaces/{id}).
        let ks = app.post("/v1/keyspaces", json!({"name": "plain", "prefix": "nul_ks"})).await;
        assert_eq!(ks.status.as_u16(), 201, "{:#}", ks.body);
        let ks_id = ks.str("id");
        for (method, path, body, field) in [
            (Method::POST, "/v1/keyspaces".to_owned(), json!({"name": "a\u{0}b"}), "name"),
            (Method::PATCH, format!("/v1/keyspaces/{ks_id}"), json!({"name": "a\u{0}b"}), "name"),
            (Method::POST, "/v1/keys".to_owned(), json!({"name": "tab\there"}), "name"),
            (Method::POST, "/v1/keys".to_owned(), json!({"name": "k", "description": "a\u{0}b"}), "description"),
            (Method::POST, "/v1/keys".to_owned(), json!({"name": "k", "owner_id": "a\u{0}b"}), "owner_id"),
            (Method::POST, "/v1/keys".to_owned(), json!({"name": "k", "metadata": {"a": "b\u{0}"}}), "metadata"),
        ] {
            let root = app.root_key.clone();
            let reply = app.call(method.clone(), &path, &root, Some(body)).await;
            reply.assert_error(400, "validation_failed");
            assert_eq!(reply.body["details"][0]["field"], field, "{method} {path}: {:#}", reply.body);
        }
    }
}

both_stores! {
    async fn a_keyspace_name_taken_is_a_409_naming_the_field(app) {
        let first = app.post("/v1/keyspaces", json!({"name": "crucible", "prefix": "cru_a"})).await;
        assert_eq!(first.status.as_u16(), 201, "{:#}", first.body);
        let again = app.post("/v1/keyspaces", json!({"name": "crucible", "prefix": "cru_b"})).await;
        again.assert_error(409, "name_taken");
        assert_eq!(again.body["details"][0]["field"], "name");
        let other = app.post("/v1/keyspaces", json!({"name": "forge", "prefix": "forge"})).await;
        let renamed = app.patch(&format!("/v1/keyspaces/{}", other.str("id")), json!({"name": "crucible"})).await;
        renamed.assert_error(409, "name_taken");
    }
}
