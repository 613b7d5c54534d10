//! Conformance: accounts, keyspaces and keys.

use super::*;

pub async fn account_and_default_keyspace_are_created_together<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = store.get_account(f.principal.account_id).await.unwrap().unwrap();
    assert_eq!(account.name, "Acme");
    assert_eq!(account.plan, Plan::Pro);
    assert_eq!(account.created_at, START);
    let default = store.find_keyspace_by_name(account.id, DEFAULT_KEYSPACE_NAME).await.unwrap().unwrap();
    assert_eq!(default.prefix.as_str(), "kw");
    let bootstrap = store.get_key(account.id, f.principal.actor().to_string().parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(bootstrap.kind, KeyKind::Account);
    assert!(store.get_account(AccountId::generate(START, &SeededRandom::new(99))).await.unwrap().is_none());
}

pub async fn keys_are_found_by_hash_only<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let mut input = named("ci");
    input.metadata = Some(serde_json::json!({"plan": "gold", "n": 3}).as_object().unwrap().clone());
    input.ip_allowlist = Some(vec!["10.0.0.0/8".into(), "2001:db8::1".into()]);
    input.scopes = Some(vec!["server:*".into(), "ip:setptr".into()]);
    input.resource = Some("server:srv_42".into());
    input.expires_at = Some(START + Duration::days(30));
    let issued = f.service.create_key(&f.principal, input).await.unwrap();
    let found =
        f.service.store().find_by_hash(&KeyHash::blake3(issued.plaintext.expose_secret())).await.unwrap().unwrap();
    assert_eq!(*found, VerifiableKey::new(issued.key.clone(), IpPolicy::Open), "found by hash as issued");
    let stored = f.service.store().get_key(f.principal.account_id, issued.key.id).await.unwrap().unwrap();
    assert_eq!(stored, issued.key, "every attribute survives the round trip");
    assert!(f.service.store().find_by_hash(&KeyHash::blake3("kw_live_nope")).await.unwrap().is_none());
}

pub async fn duplicate_hash_rejects_the_whole_batch<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let existing = f.service.create_key(&f.principal, named("a")).await.unwrap().key;
    let mut fresh = existing.clone();
    fresh.id = KeyId::generate(START, &SeededRandom::new(5));
    fresh.hash = KeyHash::sha256("legacy-1");
    let mut clash = existing.clone();
    clash.id = KeyId::generate(START, &SeededRandom::new(6));
    let error = f.service.store().insert_keys(&[fresh.clone(), clash], None).await.unwrap_err();
    assert!(matches!(error, InsertKeyError::DuplicateHash { index: 1 }), "{error:?}");
    assert!(
        f.service.store().get_key(f.principal.account_id, fresh.id).await.unwrap().is_none(),
        "nothing half-written"
    );
}

pub async fn key_limit_is_enforced_atomically<S: Store>(store: S) {
    let f = fixture(store, Plan::Free).await;
    let mut template = f.service.create_key(&f.principal, named("first")).await.unwrap().key;
    let batch: Vec<_> = (0..99)
        .map(|i| {
            template.id = KeyId::generate(START, &SeededRandom::new(1000 + i));
            template.hash = KeyHash::sha256(&format!("legacy-{i}"));
            template.clone()
        })
        .collect();
    let over = f.service.store().insert_keys(&batch, Some(99)).await.unwrap_err();
    assert!(matches!(over, InsertKeyError::KeyLimitReached), "{over:?}");
    assert_eq!(f.service.store().count_keys(f.principal.account_id, START).await.unwrap().active, 1);
    f.service.store().insert_keys(&batch, Some(100)).await.unwrap();
    let refused = f.service.create_key(&f.principal, named("101st")).await.unwrap_err();
    assert!(matches!(refused, crate::error::ManageError::KeyLimitReached), "{refused:?}");
    // Revoked keys free their slot.
    f.service.revoke_key(&f.principal, batch[0].id).await.unwrap();
    f.service.create_key(&f.principal, named("replacement")).await.unwrap();
}

pub async fn other_accounts_objects_are_invisible<S: Store>(store: S) {
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let key = a.service.create_key(&a.principal, named("a's")).await.unwrap().key;
    let ks =
        a.service.create_keyspace(&a.principal, NewKeyspace { name: "vg".into(), ..Default::default() }).await.unwrap();
    assert!(b.service.store().get_key(b.principal.account_id, key.id).await.unwrap().is_none());
    assert!(b.service.store().get_keyspace(b.principal.account_id, ks.id).await.unwrap().is_none());
    let mut stolen = key.clone();
    stolen.account_id = b.principal.account_id;
    stolen.name = "mine now".into();
    assert!(matches!(b.service.store().update_key(&key, &stolen).await, Err(UpdateError::NotFound)));
    assert!(matches!(
        b.service.store().delete_keyspace(b.principal.account_id, ks.id, START).await,
        Err(DeleteKeyspaceError::NotFound)
    ));
    let filter = service_keys();
    let listed =
        b.service.store().list_keys(b.principal.account_id, &filter, PageRequest { limit: 100, before: None }, START);
    assert_eq!(listed.await.unwrap().total, 0);
    assert_eq!(a.service.store().get_key(a.principal.account_id, key.id).await.unwrap().unwrap().name, "a's");
}

pub async fn listing_pages_newest_first_with_filters<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let mut created = Vec::new();
    for i in 0..7 {
        f.clock.advance(Duration::seconds(1));
        let mut input = named(&format!("k{i}"));
        input.environment = Some(if i % 2 == 0 { Environment::Live } else { Environment::Test });
        input.owner_id = Some(if i < 3 { "cust_1".into() } else { "cust_2".into() });
        created.push(f.service.create_key(&f.principal, input).await.unwrap().key.id);
    }
    let store = f.service.store();
    let account = f.principal.account_id;
    let now = crate::clock::Clock::now(f.clock.as_ref());
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_keys(account, &service_keys(), PageRequest { limit: 3, before }, now).await.unwrap();
        assert_eq!(page.total, 7);
        seen.extend(page.keys.iter().map(|k| k.id));
        if !page.has_more {
            break;
        }
        before = page.keys.last().map(|k| k.id);
    }
    created.reverse();
    assert_eq!(seen, created, "every key once, newest first");

    let test_keys = KeyFilter { environment: Some(Environment::Test), ..service_keys() };
    assert_eq!(
        store.list_keys(account, &test_keys, PageRequest { limit: 50, before: None }, now).await.unwrap().total,
        3
    );
    let owned = KeyFilter { owner_id: Some("cust_1".into()), ..service_keys() };
    assert_eq!(store.list_keys(account, &owned, PageRequest { limit: 50, before: None }, now).await.unwrap().total, 3);
    let accounts = KeyFilter { kind: KeyKind::Account, ..service_keys() };
    assert_eq!(
        store.list_keys(account, &accounts, PageRequest { limit: 50, before: None }, now).await.unwrap().total,
        1
    );
}

pub async fn status_filter_follows_expiry_and_idle_timeout<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let active = f.service.create_key(&f.principal, named("active")).await.unwrap().key;
    let inactive = f.service.create_key(&f.principal, named("inactive")).await.unwrap().key;
    f.service
        .update_key(&f.principal, inactive.id, KeyPatch { is_active: Some(false), ..Default::default() })
        .await
        .unwrap();
    let mut expiring = named("expiring");
    expiring.expires_at = Some(START + Duration::seconds(30));
    let expiring = f.service.create_key(&f.principal, expiring).await.unwrap().key;
    let mut idle = named("idle");
    idle.idle_timeout_seconds = Some(45);
    let idle = f.service.create_key(&f.principal, idle).await.unwrap().key;
    let revoked = f.service.create_key(&f.principal, named("revoked")).await.unwrap().key;
    f.service.revoke_key(&f.principal, revoked.id).await.unwrap();

    let ids = |status: KeyStatus, now: OffsetDateTime| {
        let filter = KeyFilter { status: Some(status), ..service_keys() };
        let store = f.service.store().clone();
        let account = f.principal.account_id;
        async move {
            let page = store.list_keys(account, &filter, PageRequest { limit: 100, before: None }, now).await.unwrap();
            let mut ids: Vec<KeyId> = page.keys.into_iter().map(|k| k.id).collect();
            ids.sort();
            ids
        }
    };
    let sorted = |mut v: Vec<KeyId>| {
        v.sort();
        v
    };
    let t0 = START + Duration::seconds(10);
    assert_eq!(ids(KeyStatus::Active, t0).await, sorted(vec![active.id, expiring.id, idle.id]));
    assert_eq!(ids(KeyStatus::Inactive, t0).await, vec![inactive.id]);
    assert_eq!(ids(KeyStatus::Revoked, t0).await, vec![revoked.id]);
    let t1 = START + Duration::seconds(50);
    assert_eq!(ids(KeyStatus::Expired, t1).await, sorted(vec![expiring.id, idle.id]));
    assert_eq!(ids(KeyStatus::Active, t1).await, vec![active.id]);
}

pub async fn revocation_survives_a_later_update<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let key = f.service.create_key(&f.principal, named("k")).await.unwrap().key;
    let stale = key.clone();
    f.clock.advance(Duration::seconds(5));
    let revoked = f.service.revoke_key(&f.principal, key.id).await.unwrap();
    assert_eq!(revoked.revoked_at, Some(START + Duration::seconds(5)));
    // A writer that read the key before the revocation writes its copy back.
    let mut update = stale.clone();
    update.name = "renamed".into();
    f.service.store().update_key(&stale, &update).await.unwrap();
    let stored = f.service.store().get_key(f.principal.account_id, key.id).await.unwrap().unwrap();
    assert_eq!(stored.name, "renamed");
    assert_eq!(stored.revoked_at, revoked.revoked_at, "revocation is permanent");
    f.clock.advance(Duration::seconds(5));
    let again = f.service.revoke_key(&f.principal, key.id).await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at, "revoking twice keeps the first time");
}

/// A PATCH that read the key before a rotation, a disable and an allowlist change writes
/// its copy back: it changes what it changed (the name), and nothing it did not.
pub async fn a_stale_copy_undoes_no_concurrent_change<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let key = f.service.create_key(&f.principal, named("k")).await.unwrap().key;
    let stale = f.service.store().get_key(f.principal.account_id, key.id).await.unwrap().unwrap();
    f.clock.advance(Duration::seconds(5));
    let successor = f.service.rotate_key(&f.principal, key.id, 60).await.unwrap().key;
    let patch =
        KeyPatch { is_active: Some(false), ip_allowlist: Some(vec!["203.0.113.0/24".into()]), ..Default::default() };
    f.service.update_key(&f.principal, key.id, patch).await.unwrap();

    let mut update = stale.clone();
    update.name = "renamed".into();
    update.updated_at = START + Duration::seconds(10);
    f.service.store().update_key(&stale, &update).await.unwrap();
    let stored = f.service.store().get_key(f.principal.account_id, key.id).await.unwrap().unwrap();
    assert_eq!(stored.name, "renamed");
    assert_eq!(stored.expires_at, Some(START + Duration::seconds(65)), "the rotation's grace expiry stays");
    assert_eq!(stored.rotated_to, Some(successor.id));
    assert!(!stored.is_active, "the disable stays");
    assert_eq!(stored.ip_allowlist.len(), 1, "the allowlist stays");
    assert_eq!(stored.updated_at, START + Duration::seconds(10));
}

pub async fn rotation_is_atomic<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let old = f.service.create_key(&f.principal, named("k")).await.unwrap().key;
    let new = f.service.rotate_key(&f.principal, old.id, 60).await.unwrap();
    let store = f.service.store();
    let stored_old = store.get_key(f.principal.account_id, old.id).await.unwrap().unwrap();
    assert_eq!(stored_old.rotated_to, Some(new.key.id));
    assert_eq!(stored_old.expires_at, Some(START + Duration::seconds(60)));
    let found = store.find_by_hash(&KeyHash::blake3(new.plaintext.expose_secret())).await.unwrap().unwrap();
    assert_eq!(found.id, new.key.id);
    let stored_new = store.get_key(f.principal.account_id, new.key.id).await.unwrap().unwrap();
    assert_eq!(stored_new.rotated_from, Some(old.id));

    // Rotating a key revoked meanwhile writes nothing.
    let victim = f.service.create_key(&f.principal, named("victim")).await.unwrap().key;
    f.service.revoke_key(&f.principal, victim.id).await.unwrap();
    let mut successor = new.key.clone();
    successor.id = KeyId::generate(START, &SeededRandom::new(77));
    successor.hash = KeyHash::sha256("successor");
    assert!(matches!(store.rotate_key(&victim, &successor).await, Err(UpdateError::NotFound)));
    assert!(store.get_key(f.principal.account_id, successor.id).await.unwrap().is_none());
}

pub async fn keyspace_names_are_unique_per_account<S: Store>(store: S) {
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let input = || NewKeyspace { name: "crucible".into(), prefix: Some("gmk_cru".into()), ..Default::default() };
    a.clock.advance(Duration::seconds(1));
    let ks = a.service.create_keyspace(&a.principal, input()).await.unwrap();
    b.service.create_keyspace(&b.principal, input()).await.unwrap();
    let mut dup = ks.clone();
    dup.id = crate::id::KeyspaceId::generate(START, &SeededRandom::new(4));
    assert!(matches!(a.service.store().insert_keyspace(&dup).await, Err(InsertKeyspaceError::DuplicateName)));
    let listed = a.service.store().list_keyspaces(a.principal.account_id).await.unwrap();
    let names: Vec<_> = listed.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["default", "crucible"]);
    let mut renamed = ks.clone();
    renamed.name = "default".into();
    assert!(matches!(
        a.service.store().update_keyspace(&renamed).await,
        Err(crate::ports::UpdateKeyspaceError::DuplicateName)
    ));
}

pub async fn keyspace_delete_refuses_active_keys<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let ks = f
        .service
        .create_keyspace(&f.principal, NewKeyspace { name: "tmp".into(), ..Default::default() })
        .await
        .unwrap();
    let key = f.service.create_key(&f.principal, NewKey { keyspace_id: Some(ks.id), ..named("k") }).await.unwrap().key;
    let store = f.service.store();
    assert!(matches!(
        store.delete_keyspace(f.principal.account_id, ks.id, START).await,
        Err(DeleteKeyspaceError::NotEmpty)
    ));
    f.service.revoke_key(&f.principal, key.id).await.unwrap();
    store.delete_keyspace(f.principal.account_id, ks.id, START).await.unwrap();
    assert!(store.get_keyspace(f.principal.account_id, ks.id).await.unwrap().is_none());
    assert!(store.get_key(f.principal.account_id, key.id).await.unwrap().is_none());
}

pub async fn key_counts_ignore_revoked_and_expired<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    for i in 0..3 {
        f.service.create_key(&f.principal, named(&format!("k{i}"))).await.unwrap();
    }
    let gone = f.service.create_key(&f.principal, named("gone")).await.unwrap().key;
    f.service.revoke_key(&f.principal, gone.id).await.unwrap();
    let mut soon = named("soon");
    soon.expires_at = Some(START + Duration::seconds(1));
    f.service.create_key(&f.principal, soon).await.unwrap();
    let counts = f.service.store().count_keys(f.principal.account_id, START + Duration::seconds(2)).await.unwrap();
    assert_eq!((counts.active, counts.revoked), (3, 1), "account keys are not counted");
}
