//! The in-memory store keeps a bounded number of per-request usage records: a server on
//! the embedded default under load must not grow by every verification for 30 days.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;

use keyward_domain::{
    ManualClock, Plan, SeededRandom,
    key_service::{DomainConfig, KeyService, NewKey, Principal},
    ports::{KeyStore, UsageStore},
    usage::UsageRecord,
};
use keyward_store_mem::MemStore;
use time::{Duration, macros::datetime};

#[tokio::test]
async fn past_its_bound_the_oldest_records_go_and_the_counts_stay_exact() {
    let start = datetime!(2026-06-01 12:00 UTC);
    let store = MemStore::with_usage_records(3);
    let service = KeyService::new(
        store.clone(),
        Arc::new(ManualClock::new(start)),
        Arc::new(SeededRandom::new(3)),
        Arc::new(DomainConfig::default()),
    );
    let (account, issued) = service.create_account("Acme", Plan::Pro, true).await.unwrap();
    let root = Principal::for_key(&issued.unwrap().key);
    let key = service.create_key(&root, NewKey { name: "busy".into(), ..Default::default() }).await.unwrap().key;
    let record = |i: i64| UsageRecord {
        key_id: Some(key.id),
        account_id: account.id,
        ts: start + Duration::seconds(i),
        endpoint: Some(format!("/e{i}")),
        method: None,
        status_code: None,
        response_time_us: None,
        ip: None,
        outcome: None,
        quota_spent: None,
    };
    store.record_usage(&(0..4).map(record).collect::<Vec<_>>()).await.unwrap();
    store.record_usage(&(4..6).map(record).collect::<Vec<_>>()).await.unwrap();

    let kept = store.key_usage(account.id, key.id, (None, None), None, 10).await.unwrap();
    let endpoints: Vec<_> = kept.iter().map(|e| e.record.endpoint.clone().unwrap()).collect();
    assert_eq!(endpoints, ["/e5", "/e4", "/e3"], "the newest three, newest first");
    assert_eq!(store.get_key(account.id, key.id).await.unwrap().unwrap().usage_count, 6);
    let summary = store.usage_summary(account.id, key.id, start).await.unwrap();
    assert_eq!(summary.requests_today, 6, "daily counts are not records");
}
