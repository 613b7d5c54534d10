//! Units of work in PostgreSQL: everything a unit does commits together or not at all,
//! while idempotency claims escape it (other requests must see them at once).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::sync::Arc;

use keyward_domain::{
    ManualClock, Plan, SeededRandom,
    idempotency::Claim,
    key_service::{DomainConfig, KeyService, NewKey, Principal},
    ports::{Atomic, IdempotencyStore, KeyStore, Outcome},
};
use keyward_store_pg::testing::TestDatabase;
use time::macros::datetime;

#[tokio::test]
async fn a_rolled_back_unit_leaves_nothing_but_its_claims_stay_visible() {
    let db = TestDatabase::new().await;
    let store = db.store();
    let clock = Arc::new(ManualClock::new(datetime!(2026-03-01 12:00 UTC)));
    let service =
        KeyService::new(store.clone(), clock, Arc::new(SeededRandom::new(3)), Arc::new(DomainConfig::default()));
    let (account, issued) = service.create_account("Acme", Plan::Pro, true).await.unwrap();
    let principal = Principal::for_key(&issued.unwrap().key);
    let now = datetime!(2026-03-01 12:00 UTC);

    // Boxed: a key creation's future is large (clippy::large_futures).
    let (key_id, claim_seen_outside) = store
        .atomically(Box::pin(async {
            let key = service
                .create_key(&principal, NewKey { name: "doomed".into(), ..Default::default() })
                .await
                .unwrap()
                .key;
            // Inside the unit the key exists...
            assert!(store.get_key(account.id, key.id).await.unwrap().is_some());
            // ...and a claim made now is visible to a separate connection at once.
            store.claim_idempotency(account.id, "k", [7; 32], now).await.unwrap();
            let other = db.store();
            let seen = other.claim_idempotency(account.id, "k", [7; 32], now).await.unwrap();
            Outcome::Rollback((key.id, seen))
        }))
        .await
        .unwrap();
    assert_eq!(claim_seen_outside, Claim::InFlight { fingerprint: [7; 32] });
    assert!(store.get_key(account.id, key_id).await.unwrap().is_none(), "the rolled-back key is gone");
    let listed = store.count_keys(account.id, now).await.unwrap();
    assert_eq!(listed.active, 0);
}
