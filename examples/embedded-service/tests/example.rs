//! Drives the example service against real PostgreSQL, with a second store playing the
//! Keyward server that issues and revokes the keys.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{sync::Arc, time::Duration};

use actix_web::test;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use keyward_domain::{
    OsRandom, PlaintextKey, Plan, SystemClock, VerifyCode,
    embedded::RequestUsage,
    key_service::{DomainConfig, KeyService, NewKey, Principal, VerifyInput},
};
use keyward_ratelimit::Limits;
use keyward_runtime::embedded::{EmbeddedOptions, EmbeddedVerifier};
use keyward_store_pg::{CacheConfig, PgStore, testing::TestDatabase};

fn service(store: PgStore) -> KeyService<PgStore> {
    KeyService::new(store, Arc::new(SystemClock), Arc::new(OsRandom), Arc::new(DomainConfig::default()))
}

/// The embedding service's composition, as `src/main.rs` does it.
async fn embed(
    url: &str,
    account: keyward_domain::AccountId,
    options: EmbeddedOptions,
) -> EmbeddedVerifier<PgStore, Limits> {
    let store = keyward_store_pg::embedded::connect(url, &Default::default()).await.unwrap();
    let resolver = Arc::new(keyward_resolver::SystemResolver::new(Default::default()));
    EmbeddedVerifier::start(store, account, Arc::new(Limits::in_process()), resolver, options)
}

async fn get_servers(
    app: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
    >,
    key: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = test::TestRequest::get().uri("/servers");
    if let Some(key) = key {
        req = req.insert_header(("Authorization", format!("Bearer {key}")));
    }
    let response = test::call_service(app, req.to_request()).await;
    let status = response.status().as_u16();
    let body = test::read_body(response).await;
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[actix_web::test]
async fn the_example_admits_valid_keys_rejects_revoked_ones_and_records_usage() {
    let db = TestDatabase::new().await;
    // The Keyward server's side: issues keys and revokes them (and announces each change).
    let keyward = service(db.store().with_key_cache(CacheConfig::default()));
    let (account, issued) = keyward.create_account("Crucible", Plan::Pro, true).await.unwrap();
    let root = Principal::for_key(&issued.unwrap().key);
    let customer = keyward
        .create_key(
            &root,
            NewKey {
                name: "cust_7 agent".into(),
                scopes: Some(vec!["server:*".into()]),
                owner_id: Some("cust_7".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let dns_only = keyward
        .create_key(&root, NewKey { name: "dns".into(), scopes: Some(vec!["dns:read".into()]), ..Default::default() })
        .await
        .unwrap();

    // The embedding service, flushing only when told to so that the counts below are exact.
    let options = EmbeddedOptions { flush_every: Duration::from_secs(3600), ..EmbeddedOptions::default() };
    let embedded = embed(db.url(), account.id, options).await;
    let app = test::init_service(keyward_example_embedded::app(embedded.verifier().clone())).await;
    let key = customer.plaintext.expose_secret();

    let (status, body) = get_servers(&app, Some(key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["owner_id"], "cust_7");
    // Nothing an embedding service might log shows the key: the verifier, a request, a verdict.
    let random_part = &key[key.len() - 36..key.len() - 6];
    let input = keyward_domain::key_service::VerifyInput::key(keyward_domain::PlaintextKey::new(key.to_owned()));
    let outcome = embedded.check(&input).await.unwrap();
    for shown in [format!("{embedded:?}"), format!("{input:?}"), format!("{outcome:?}")] {
        assert!(!shown.contains(key) && !shown.contains(random_part), "a key leaked into Debug output: {shown}");
    }
    let (status, body) = get_servers(&app, None).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));
    let (status, body) = get_servers(&app, Some(dns_only.plaintext.expose_secret())).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")));
    let (status, _) = get_servers(&app, Some("kw_live_notakeyatall")).await;
    assert_eq!(status, 401);
    // Basic auth names the account: the right one passes, another is refused unmetered.
    let basic = |account: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{account}:{key}")))
    };
    let with_basic = |value: String| test::TestRequest::get().uri("/servers").insert_header(("Authorization", value));
    let passed = test::call_service(&app, with_basic(basic(&account.id.to_string())).to_request()).await;
    assert_eq!(passed.status().as_u16(), 200);
    let other = keyward.create_account("Other", Plan::Pro, false).await.unwrap().0;
    let refused = test::call_service(&app, with_basic(basic(&other.id.to_string())).to_request()).await;
    assert_eq!(refused.status().as_u16(), 401);

    // Revoked through "Keyward": the example's cache hears of it, long before its 30 s TTL.
    keyward.revoke_key(&root, customer.key.id).await.unwrap();
    let mut refused = None;
    for _ in 0..200 {
        let (status, body) = get_servers(&app, Some(key)).await;
        if status != 200 {
            refused = Some((status, body));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, body) = refused.expect("the revoked key is refused within two seconds");
    assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")));

    // Usage, as Keyward shows it: route pattern, method, status, latency and verdict.
    assert!(embedded.shutdown().await >= 3, "the customer's 200 and 401 and the 403 are written");
    let entries = keyward.key_usage(&root, customer.key.id, (None, None), None, 100).await.unwrap();
    let records: Vec<_> = entries.into_iter().map(|e| e.record).collect();
    let admitted: Vec<_> = records.iter().filter(|r| r.outcome == Some(VerifyCode::Valid)).collect();
    assert!(!admitted.is_empty());
    for record in &admitted {
        assert_eq!(record.status_code, Some(200));
        assert_eq!(record.endpoint.as_deref(), Some("/servers"));
        assert_eq!(record.method.as_deref(), Some("GET"));
        assert!(record.response_time_us.is_some());
    }
    let last = records.first().expect("records are newest first");
    assert_eq!((last.outcome, last.status_code), (Some(VerifyCode::Revoked), Some(401)));
    let scoped = keyward.key_usage(&root, dns_only.key.id, (None, None), None, 100).await.unwrap();
    assert_eq!(scoped.len(), 1);
    assert_eq!(
        (scoped[0].record.outcome, scoped[0].record.status_code),
        (Some(VerifyCode::InsufficientScope), Some(403))
    );
    let refreshed = keyward.get_key(&root, customer.key.id).await.unwrap();
    assert_eq!(refreshed.usage_count, records.len() as u64, "usage_count counts every metered request");
}

/// A shutdown while a flush waits on PostgreSQL lets that flush finish: the batch it took
/// from the meter is written, not dropped with an aborted task.
#[tokio::test]
async fn shutdown_waits_for_a_flush_in_progress() {
    // Scoped here: its `first` would shadow the slice's in the test above.
    use diesel_async::RunQueryDsl as _;

    let db = TestDatabase::new().await;
    let keyward = service(db.store());
    let (account, issued) = keyward.create_account("Slowpoke", Plan::Pro, true).await.unwrap();
    let root = Principal::for_key(&issued.unwrap().key);
    let customer = keyward.create_key(&root, NewKey { name: "cust".into(), ..Default::default() }).await.unwrap();
    let options = EmbeddedOptions { flush_every: Duration::from_millis(20), ..EmbeddedOptions::default() };
    let embedded = embed(db.url(), account.id, options).await;

    // Another session holds the key's row, so the flush of the verification below waits.
    let mut holder = AsyncPgConnection::establish(db.url()).await.unwrap();
    holder
        .batch_execute(&format!("BEGIN; SELECT id FROM keys WHERE id = '{}' FOR UPDATE", customer.key.id.as_uuid()))
        .await
        .unwrap();
    let input = VerifyInput::key(PlaintextKey::new(customer.plaintext.expose_secret().to_owned()));
    let outcome = embedded.verify(&input, RequestUsage::default()).await.unwrap();
    assert_eq!(outcome.code, VerifyCode::Valid);
    let mut waiting = false;
    for _ in 0..200 {
        let blocked: Vec<Blocked> = diesel::sql_query(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .load(&mut holder)
        .await
        .unwrap();
        if !blocked.is_empty() {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "the flush reached the locked row");

    let shutdown = tokio::spawn(embedded.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!shutdown.is_finished(), "the shutdown waits for the flush in progress");
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(shutdown.await.unwrap(), 0, "the last flush found nothing left");
    let entries = keyward.key_usage(&root, customer.key.id, (None, None), None, 100).await.unwrap();
    assert_eq!(entries.len(), 1, "the verification the flush had taken is written");
}

#[derive(diesel::QueryableByName)]
struct Blocked {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    #[allow(dead_code)] // Only counted.
    pid: i32,
}
