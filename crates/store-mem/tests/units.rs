//! Units of work in memory, beyond the conformance suite: an abandoned unit is undone, a
//! unit inside a unit is a savepoint, and a rollback leaves other tasks' writes alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use keyward_domain::{
    ManualClock, Plan, SeededRandom,
    key_service::{DomainConfig, KeyService, NewKey, Principal},
    ports::{Atomic, KeyStore, Outcome},
};
use keyward_store_mem::MemStore;
use time::macros::datetime;

async fn service() -> (KeyService<MemStore>, Principal) {
    let clock = Arc::new(ManualClock::new(datetime!(2026-03-01 12:00 UTC)));
    let service =
        KeyService::new(MemStore::new(), clock, Arc::new(SeededRandom::new(5)), Arc::new(DomainConfig::default()));
    let (_, issued) = service.create_account("Acme", Plan::Pro, true).await.unwrap();
    let principal = Principal::for_key(&issued.unwrap().key);
    (service, principal)
}

fn named(name: &str) -> NewKey {
    NewKey { name: name.into(), ..Default::default() }
}

#[tokio::test]
async fn an_abandoned_unit_is_undone() {
    let (service, principal) = service().await;
    let store = service.store();
    let created = std::cell::Cell::new(None);
    {
        let unit = pin!(store.atomically(async {
            created.set(Some(service.create_key(&principal, named("abandoned")).await.unwrap().key.id));
            std::future::pending::<()>().await;
            Outcome::Commit(())
        }));
        // One poll runs the unit up to its endless wait; then the unit is dropped.
        let mut unit = unit;
        assert!(matches!(unit.as_mut().poll(&mut Context::from_waker(Waker::noop())), Poll::Pending));
    }
    let id = created.get().expect("the unit created its key before it was abandoned");
    assert!(store.get_key(principal.account_id, id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_unit_inside_a_unit_is_a_savepoint() {
    let (service, principal) = service().await;
    let store = service.store();
    let (outer, inner) = store
        .atomically(async {
            let outer = service.create_key(&principal, named("outer")).await.unwrap().key.id;
            let inner = store
                .atomically(async {
                    Outcome::Rollback(service.create_key(&principal, named("inner")).await.unwrap().key.id)
                })
                .await
                .unwrap();
            Outcome::Commit((outer, inner))
        })
        .await
        .unwrap();
    assert!(store.get_key(principal.account_id, outer).await.unwrap().is_some(), "the outer unit committed");
    assert!(store.get_key(principal.account_id, inner).await.unwrap().is_none(), "the inner one rolled back");

    // And an inner commit is undone by the outer rollback.
    let inner = store
        .atomically(async {
            let inner = store
                .atomically(async {
                    Outcome::Commit(service.create_key(&principal, named("inner 2")).await.unwrap().key.id)
                })
                .await
                .unwrap();
            Outcome::Rollback(inner)
        })
        .await
        .unwrap();
    assert!(store.get_key(principal.account_id, inner).await.unwrap().is_none());
}

#[tokio::test]
async fn a_rollback_leaves_other_tasks_writes_alone() {
    let (service, principal) = service().await;
    let store = service.store();
    let (other, doomed) = store
        .atomically(async {
            let doomed = service.create_key(&principal, named("doomed")).await.unwrap().key.id;
            // Another task writes meanwhile, outside the unit.
            let other = tokio::spawn({
                let service = service.clone();
                let principal = principal.clone();
                async move { service.create_key(&principal, named("other")).await.unwrap().key.id }
            })
            .await
            .unwrap();
            Outcome::Rollback((other, doomed))
        })
        .await
        .unwrap();
    assert!(store.get_key(principal.account_id, doomed).await.unwrap().is_none());
    assert!(store.get_key(principal.account_id, other).await.unwrap().is_some(), "the other task's key stays");
}
