//! Idempotency keys over HTTP (Stripe semantics) and the unit of work behind every
//! management call.

use actix_web::test::TestRequest;
use serde_json::json;
use time::Duration;

use crate::helpers::*;

fn with_key(app_key: &str, idempotency_key: &str, body: serde_json::Value) -> TestRequest {
    TestRequest::post()
        .uri("/v1/keys")
        .insert_header(("authorization", format!("Bearer {app_key}")))
        .insert_header(("idempotency-key", idempotency_key.to_owned()))
        .set_json(body)
}

both_stores! {
    async fn the_quickstart_loop_twice_creates_fifty_keys_not_a_hundred(app) {
        let root = app.root_key.clone();
        let mut first = Vec::new();
        for i in 0..50 {
            let reply = app.send(with_key(&root, &format!("bootstrap-{i}"), json!({"name": format!("web-{i}")}))).await;
            assert_eq!(reply.status.as_u16(), 201, "{:#}", reply.body);
            assert!(reply.headers.get("idempotent-replayed").is_none());
            first.push(reply);
        }
        app.clock.advance(Duration::seconds(10));
        for (i, original) in first.iter().enumerate() {
            let again = app.send(with_key(&root, &format!("bootstrap-{i}"), json!({"name": format!("web-{i}")}))).await;
            assert_eq!(again.status.as_u16(), 201);
            assert_eq!(again.headers.get("idempotent-replayed").unwrap(), "true");
            assert_eq!(again.bytes, original.bytes, "byte-identical, the plaintext key included");
            assert_ne!(again.headers.get("x-request-id"), original.headers.get("x-request-id"), "a new request all the same");
        }
        app.clock.advance(Duration::seconds(10));
        assert_eq!(app.get("/v1/keys").await.body["total"], 50);
        // Replays are audited as calls, not as new creations.
        let creates = app.account_trail().await.iter().filter(|r| r.event.action == "key.create").count();
        assert_eq!(creates, 100);
        let replays = app.account_trail().await.iter().filter(|r| r.event.metadata.get("idempotent_replayed").is_some()).count();
        assert_eq!(replays, 50);
    }

    async fn a_key_reused_for_another_request_is_refused(app) {
        let root = app.root_key.clone();
        assert_eq!(app.send(with_key(&root, "k-1", json!({"name": "a"}))).await.status.as_u16(), 201);
        // The same JSON written differently is the same request.
        let reformatted = TestRequest::post()
            .uri("/v1/keys")
            .insert_header(("authorization", format!("Bearer {root}")))
            .insert_header(("idempotency-key", "k-1"))
            .insert_header(("content-type", "application/json"))
            .set_payload("{ \"name\" :   \"a\" }");
        assert_eq!(app.send(reformatted).await.headers.get("idempotent-replayed").unwrap(), "true");
        app.send(with_key(&root, "k-1", json!({"name": "b"}))).await.assert_error(422, "idempotency_key_reused");
        // Another caller with the same key is another request.
        let other = app.other_account_key().await;
        assert_eq!(app.send(with_key(&other, "k-1", json!({"name": "a"}))).await.status.as_u16(), 201);
        assert_eq!(app.get("/v1/keys").await.body["total"], 1);

        // A refusal before execution is not kept: the corrected retry runs.
        app.send(with_key(&root, "k-2", json!({"name": ""}))).await.assert_error(400, "validation_failed");
        assert_eq!(app.send(with_key(&root, "k-2", json!({"name": "fixed"}))).await.status.as_u16(), 201);
        // Keys are bounded.
        app.send(with_key(&root, &"x".repeat(256), json!({"name": "c"}))).await.assert_error(400, "validation_failed");
        // After 24 hours a key is new again.
        app.clock.advance(Duration::hours(24));
        let fresh = app.send(with_key(&root, "k-1", json!({"name": "b"}))).await;
        assert_eq!(fresh.status.as_u16(), 201, "{:#}", fresh.body);
        assert!(fresh.headers.get("idempotent-replayed").is_none());
    }

    async fn fifty_identical_requests_at_once_create_one_key(app) {
        let root = app.root_key.clone();
        let requests = (0..50).map(|_| app.send(with_key(&root, "once", json!({"name": "only one"}))));
        let replies = futures_util::future::join_all(requests).await;
        let created = replies.iter().filter(|r| r.status.as_u16() == 201 && r.headers.get("idempotent-replayed").is_none()).count();
        assert_eq!(created, 1);
        for reply in &replies {
            let replayed = reply.headers.get("idempotent-replayed").is_some();
            assert!(reply.status.as_u16() == 201 || reply.body["error"] == "idempotency_key_in_use", "{:#}", reply.body);
            assert!(reply.status.as_u16() != 201 || replayed || created == 1);
        }
        app.clock.advance(Duration::seconds(10));
        assert_eq!(app.get("/v1/keys").await.body["total"], 1);
    }
}

#[actix_web::test]
async fn a_failure_between_the_change_and_its_audit_event_leaves_neither() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

    let db = keyward_store_pg::testing::TestDatabase::new().await;
    let app = TestApp::new(db.store()).await;
    // The fault, injected in the store: the audit table refuses this call's event.
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    conn.batch_execute(
        "CREATE FUNCTION fail_key_create() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.action = 'key.create' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER inject BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION fail_key_create();",
    )
    .await
    .unwrap();
    let root = app.root_key.clone();
    let failed = app.send(with_key(&root, "fault", json!({"name": "never stored"}))).await;
    failed.assert_error(500, "internal");
    assert!(!String::from_utf8_lossy(&failed.bytes).contains("injected"), "no internal detail reaches the client");
    assert_eq!(app.get("/v1/keys").await.body["total"], 0, "the key was rolled back with its event");
    assert!(app.account_trail().await.iter().all(|r| r.event.action != "key.create"));

    // Once the fault is gone the same key runs the request (a 5xx is never kept).
    conn.batch_execute("DROP TRIGGER inject ON audit_events").await.unwrap();
    let retried = app.send(with_key(&root, "fault", json!({"name": "never stored"}))).await;
    assert_eq!(retried.status.as_u16(), 201, "{:#}", retried.body);
    assert_eq!(app.get("/v1/keys").await.body["total"], 1);
    let sealed: Vec<u8> = {
        #[derive(diesel::QueryableByName)]
        struct Body {
            #[diesel(sql_type = diesel::sql_types::Bytea)]
            body: Vec<u8>,
        }
        let row: Body =
            diesel_async::RunQueryDsl::get_result(diesel::sql_query("SELECT body FROM idempotency_keys"), &mut conn)
                .await
                .unwrap();
        row.body
    };
    let plaintext = retried.str("key");
    assert!(!sealed.windows(plaintext.len()).any(|w| w == plaintext.as_bytes()), "the stored response is sealed");
}
