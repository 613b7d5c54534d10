//! Usage flushes of several instances at once, over the same keys: none fails (no
//! deadlock between their row locks) and every count, quota balances included, is exact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;

use keyward_domain::{
    ManualClock, Plan, SeededRandom,
    key_service::{DomainConfig, KeyService, NewKey, Principal},
    ports::{KeyStore, UsageStore},
    quota::{QuotaBalance, QuotaSpend},
    usage::UsageRecord,
};
use keyward_store_pg::testing::TestDatabase;
use time::{Duration, macros::datetime};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_flushes_over_the_same_keys_all_commit_and_count_exactly() {
    let db = TestDatabase::new().await;
    let start = datetime!(2026-03-01 12:00 UTC);
    let service = KeyService::new(
        db.store(),
        Arc::new(ManualClock::new(start)),
        Arc::new(SeededRandom::new(5)),
        Arc::new(DomainConfig::default()),
    );
    let (account, issued) = service.create_account("Acme", Plan::Enterprise, true).await.unwrap();
    let root = Principal::for_key(&issued.unwrap().key);
    let mut keys = Vec::new();
    for i in 0..40 {
        let created = service.create_key(&root, NewKey { name: format!("k{i}"), ..Default::default() }).await;
        keys.push(created.unwrap().key.id);
    }
    let account_id = account.id;
    let spend = QuotaSpend { fingerprint: 7, period: 0, credits: 3, configured: 100, refill: None };
    let record = move |key, i: i64| UsageRecord {
        key_id: Some(key),
        account_id,
        ts: start + Duration::milliseconds(i),
        endpoint: None,
        method: None,
        status_code: None,
        response_time_us: Some(1),
        ip: None,
        outcome: Some(keyward_domain::VerifyCode::Valid),
        // Each spends 3 credits of a 100-credit quota: 40 of them leave 40.
        quota_spent: Some(spend),
    };
    // Four instances, five flushes each, every flush naming every key (half of them in
    // reverse order): 20 uses of each key.
    let mut flushes = Vec::new();
    for instance in 0..4 {
        let (store, keys) = (db.store(), keys.clone());
        flushes.push(tokio::spawn(async move {
            for round in 0..5 {
                let mut order = keys.clone();
                if (instance + round) % 2 == 1 {
                    order.reverse();
                }
                let batch: Vec<_> = order.iter().enumerate().map(|(i, k)| record(*k, i as i64)).collect();
                store.record_usage(&batch).await.unwrap();
            }
        }));
    }
    for flush in flushes {
        flush.await.unwrap();
    }
    let store = db.store();
    for key in &keys {
        let stored = store.get_key(account.id, *key).await.unwrap().unwrap();
        assert_eq!(stored.usage_count, 20);
        let balance = QuotaBalance { fingerprint: 7, period: 0, remaining: 40 };
        assert_eq!(stored.quota_balance, Some(balance), "every flush's spends came off, none twice");
        assert_eq!(store.usage_summary(account.id, *key, start).await.unwrap().requests_today, 20);
    }
    let stats = store.account_stats(account.id, start).await.unwrap();
    assert_eq!(stats.verifications_total, 4 * 5 * 40);
}
