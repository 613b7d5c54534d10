//! Conformance: the order of every listing, ties included. Both stores must answer the same
//! page for the same data, and ties (records of one instant) are where they diverged: the
//! memory store listed the audit events of one millisecond in their ids' random order
//! (issue #15). Each test makes its records at one instant, so only the tie-break orders them.

use super::*;

/// Pages `list` through by `limit`, each page after the previous page's last item.
async fn every_page<T: Clone, P>(mut list: impl AsyncFnMut(Option<P>) -> Vec<T>, position: impl Fn(&T) -> P) -> Vec<T> {
    let (mut seen, mut before) = (Vec::new(), None);
    loop {
        let page = list(before.take()).await;
        let Some(last) = page.last() else { return seen };
        before = Some(position(last));
        seen.extend(page);
    }
}

pub async fn keys_of_one_instant_page_newest_first_by_id<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(f.service.create_key(&f.principal, named(&format!("k{i}"))).await.unwrap().key.id);
    }
    let (store, account) = (f.service.store(), f.principal.account_id);
    let now = crate::clock::Clock::now(f.clock.as_ref());
    let seen = every_page(
        async |before| {
            let page = PageRequest { limit: 2, before };
            store.list_keys(account, &service_keys(), page, now).await.unwrap().keys
        },
        |k: &crate::key::Key| k.id,
    )
    .await;
    created.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen.iter().map(|k| k.id).collect::<Vec<_>>(), created, "every key once, by id descending");

    let account_keys = store.list_account_keys(account).await.unwrap();
    assert!(account_keys.windows(2).all(|w| w[0].id > w[1].id), "account keys newest first by id");
}

pub async fn keyspaces_of_one_instant_list_oldest_first_by_id<S: Store>(store: S) {
    let f = fixture(store, Plan::Enterprise).await;
    for i in 0..4 {
        let input = crate::key_service::NewKeyspace { name: format!("space {i}"), ..Default::default() };
        f.service.create_keyspace(&f.principal, input).await.unwrap();
    }
    let listed = f.service.store().list_keyspaces(f.principal.account_id).await.unwrap();
    assert_eq!(listed.len(), 5, "the default keyspace and four more");
    assert!(listed.windows(2).all(|w| w[0].id < w[1].id), "oldest first, ties by id");
}

pub async fn members_of_one_instant_list_oldest_first_by_user_id<S: Store>(store: S) {
    use crate::people::{Membership, Role, User};
    let f = fixture(store, Plan::Pro).await;
    let (store, account) = (f.service.store(), f.principal.account_id);
    for seed in 0..5u64 {
        let user = User {
            id: crate::id::UserId::generate(START, &SeededRandom::new(100 + seed)),
            email: crate::people::Email::new(&format!("m{seed}@acme.io")).unwrap(),
            password_hash: crate::password::PasswordHash::from_phc(
                "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            ),
            password_change_required: false,
            created_at: START,
            updated_at: START,
        };
        let membership = Membership { user_id: user.id, account_id: account, role: Role::Member, created_at: START };
        store.create_user(&user, Some(&membership)).await.unwrap();
    }
    let members = store.members(account).await.unwrap();
    assert_eq!(members.len(), 5);
    assert!(members.windows(2).all(|w| w[0].0.id < w[1].0.id), "oldest first, ties by user id");
}

pub async fn audit_events_of_one_millisecond_page_by_time_then_id<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let (store, account) = (f.service.store(), f.principal.account_id);
    // Twelve events within one millisecond: four instants 100 µs apart, three events each.
    // Their ids share the millisecond, so id order is the order of their random bits.
    let mut expected = Vec::new();
    for seed in 0..12u64 {
        let ts = START + Duration::microseconds(100 * (seed % 4) as i64);
        let event = crate::audit::AuditEvent {
            id: crate::id::EventId::generate(ts, &SeededRandom::new(500 + seed)),
            ts,
            ..audit_event(Some(account), 0, "key.read", seed)
        };
        expected.push(store.append_audit(&event).await.unwrap().position());
    }
    expected.sort_unstable_by(|a, b| b.cmp(a));
    let all = crate::audit::AuditFilter::default();
    let seen = every_page(
        async |before| store.list_audit(account, &all, 5, before).await.unwrap(),
        crate::audit::AuditRecord::position,
    )
    .await;
    let seen: Vec<_> = seen.iter().map(crate::audit::AuditRecord::position).collect();
    assert_eq!(seen, expected, "newest first by (ts, id), every event once");
}
