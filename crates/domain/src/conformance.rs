//! The storage conformance suite: one set of tests every storage adapter must pass, so the
//! embedded default and PostgreSQL behave alike. An adapter's test crate runs it with
//! [`conformance_tests!`](crate::conformance_tests), giving an async expression that yields
//! a fresh, empty store and a guard that is dropped when the test ends (a test database,
//! say, or `()`).
//!
//! The tests drive the ports both directly and through [`KeyService`], and use a
//! [`ManualClock`] so that expiry and idle timeouts are exact.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub use crate::key::tests_support::sample_key;
use std::sync::Arc;

use time::{Duration, OffsetDateTime, macros::datetime};

use crate::{
    clock::ManualClock,
    id::{AccountId, KeyId},
    key::{Environment, KeyKind, KeyStatus, VerifiableKey},
    key_format::KeyHash,
    keyspace::{DEFAULT_KEYSPACE_NAME, IpPolicy},
    plan::Plan,
    ports::{DeleteKeyspaceError, InsertKeyError, InsertKeyspaceError, KeyFilter, PageRequest, Store, UpdateError},
    random::SeededRandom,
    service::{DomainConfig, KeyPatch, KeyService, NewKey, NewKeyspace, Principal},
};

/// Runs every conformance test against the store `$make` (an async expression) yields.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@tests $make;
            account_and_default_keyspace_are_created_together,
            keys_are_found_by_hash_only,
            duplicate_hash_rejects_the_whole_batch,
            key_limit_is_enforced_atomically,
            other_accounts_objects_are_invisible,
            listing_pages_newest_first_with_filters,
            status_filter_follows_expiry_and_idle_timeout,
            revocation_survives_a_later_update,
            a_stale_copy_undoes_no_concurrent_change,
            rotation_is_atomic,
            keyspace_names_are_unique_per_account,
            keyspace_delete_refuses_active_keys,
            key_counts_ignore_revoked_and_expired,
            users_are_unique_by_email,
            the_last_owner_stays,
            invitations_wait_for_their_user,
            removing_a_member_ends_their_sessions,
            sessions_round_trip,
            touching_a_key_only_moves_forward,
            audit_chains_are_per_account_and_verify,
            concurrent_appends_never_fork_a_chain,
            audit_lists_newest_first_with_filters,
            the_purge_removes_only_old_events,
            idempotency_keys_follow_stripe_semantics,
            a_committed_unit_of_work_keeps_everything,
            usage_is_counted_per_key_and_day,
        );
    };
    (@tests $make:expr; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, guard) = $make.await;
                $crate::conformance::$name(store).await;
                drop(guard);
            }
        )+
    };
}

const START: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

struct Fixture<S> {
    service: KeyService<S>,
    clock: Arc<ManualClock>,
    principal: Principal,
}

async fn fixture<S: Store>(store: S, plan: Plan) -> Fixture<S> {
    let clock = Arc::new(ManualClock::new(START));
    let config = Arc::new(DomainConfig::default());
    // Each fixture draws from its own seed, so two accounts in one test get distinct ids.
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(11);
    let seed = SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let service = KeyService::new(store, clock.clone(), Arc::new(SeededRandom::new(seed)), config);
    let (_, issued) = service.create_account("Acme", plan, true).await.unwrap();
    let key = issued.unwrap().key;
    let principal = Principal::for_key(&key);
    Fixture { service, clock, principal }
}

fn named(name: &str) -> NewKey {
    NewKey { name: name.into(), ..NewKey::default() }
}

fn service_keys() -> KeyFilter {
    KeyFilter { kind: KeyKind::Service, keyspace_id: None, environment: None, status: None, owner_id: None }
}

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

fn user(email: &str, seed: u64) -> crate::people::User {
    crate::people::User {
        id: crate::id::UserId::generate(START, &SeededRandom::new(seed)),
        email: crate::people::Email::new(email).unwrap(),
        password_hash: crate::password::PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        password_change_required: false,
        created_at: START,
        updated_at: START,
    }
}

fn member(user: &crate::people::User, account: AccountId, role: crate::people::Role) -> crate::people::Membership {
    crate::people::Membership { user_id: user.id, account_id: account, role, created_at: START }
}

fn session(user: &crate::people::User, account: AccountId, seed: u64) -> crate::people::Session {
    crate::people::Session {
        id: crate::id::SessionId::generate(START, &SeededRandom::new(seed)),
        token_hash: [u8::try_from(seed % 256).unwrap(); 32],
        user_id: user.id,
        account_id: account,
        created_at: START,
        last_seen_at: START,
        step_up_at: None,
        temporary_key_id: None,
        password_change_required: false,
    }
}

pub async fn users_are_unique_by_email<S: Store>(store: S) {
    use crate::ports::CreateUserError;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let ada = user("ada@acme.io", 1);
    store.create_user(&ada, Some(&member(&ada, f.principal.account_id, crate::people::Role::Owner))).await.unwrap();
    let again = user("ada@acme.io", 2);
    assert!(matches!(store.create_user(&again, None).await, Err(CreateUserError::DuplicateEmail)));
    let found = store.find_user_by_email(&ada.email).await.unwrap().unwrap();
    assert_eq!(found, ada);
    let memberships = store.memberships_of(ada.id).await.unwrap();
    assert_eq!(memberships.len(), 1);
    assert_eq!(memberships[0].1, "Acme");
    assert_eq!(store.members(f.principal.account_id).await.unwrap()[0].0.email, ada.email);
    let rehash = crate::password::PasswordHash::from_phc("$argon2id$v=19$m=65536,t=3,p=1$c2FsdA$aGFzaA".into());
    store.set_password_hash(ada.id, &rehash, true, START + Duration::seconds(1)).await.unwrap();
    let stored = store.get_user(ada.id).await.unwrap().unwrap();
    assert_eq!((stored.password_hash, stored.password_change_required), (rehash.clone(), true));
    store.set_password_hash(ada.id, &rehash, false, START + Duration::seconds(2)).await.unwrap();
    assert!(!store.get_user(ada.id).await.unwrap().unwrap().password_change_required);
}

/// An invitation becomes a membership only when the invited user answers it.
pub async fn invitations_wait_for_their_user<S: Store>(store: S) {
    use crate::{
        people::{Invitation, Role},
        ports::MembershipError,
    };
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let store = a.service.store();
    let ada = user("ada@acme.io", 31);
    store.create_user(&ada, Some(&member(&ada, b.principal.account_id, Role::Owner))).await.unwrap();
    let invitation = Invitation {
        account_id: a.principal.account_id,
        user_id: ada.id,
        role: Role::Admin,
        invited_by: a.principal.actor(),
        created_at: START,
    };
    store.invite(&invitation).await.unwrap();
    // Inviting again replaces the offer; the invitation gives no membership yet.
    store.invite(&Invitation { role: Role::Viewer, ..invitation.clone() }).await.unwrap();
    assert!(store.get_membership(a.principal.account_id, ada.id).await.unwrap().is_none());
    let waiting = store.invitations_of(ada.id).await.unwrap();
    assert_eq!(waiting, vec![(Invitation { role: Role::Viewer, ..invitation.clone() }, "Acme".to_owned())]);

    let later = START + Duration::seconds(9);
    let joined = store.answer_invitation(a.principal.account_id, ada.id, true, later).await.unwrap().unwrap();
    assert_eq!((joined.role, joined.created_at), (Role::Viewer, later));
    assert_eq!(store.get_membership(a.principal.account_id, ada.id).await.unwrap(), Some(joined));
    assert!(store.invitations_of(ada.id).await.unwrap().is_empty());
    assert!(matches!(
        store.answer_invitation(a.principal.account_id, ada.id, true, later).await,
        Err(MembershipError::NotFound)
    ));
    // A member cannot be invited; a declined invitation leaves nothing behind.
    assert!(matches!(store.invite(&invitation).await, Err(MembershipError::Duplicate)));
    let bob = user("bob@acme.io", 32);
    store.create_user(&bob, None).await.unwrap();
    store.invite(&Invitation { user_id: bob.id, ..invitation }).await.unwrap();
    assert_eq!(store.answer_invitation(a.principal.account_id, bob.id, false, later).await.unwrap(), None);
    assert!(store.get_membership(a.principal.account_id, bob.id).await.unwrap().is_none());
    assert!(store.invitations_of(bob.id).await.unwrap().is_empty());
}

pub async fn the_last_owner_stays<S: Store>(store: S) {
    use crate::{people::Role, ports::MembershipError};
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let (a, b) = (user("a@acme.io", 1), user("b@acme.io", 2));
    store.create_user(&a, Some(&member(&a, account, Role::Owner))).await.unwrap();
    store.create_user(&b, Some(&member(&b, account, Role::Admin))).await.unwrap();
    assert!(matches!(store.set_role(account, a.id, Role::Admin).await, Err(MembershipError::LastOwner)));
    assert!(matches!(store.remove_membership(account, a.id).await, Err(MembershipError::LastOwner)));
    store.set_role(account, b.id, Role::Owner).await.unwrap();
    store.set_role(account, a.id, Role::Viewer).await.unwrap();
    assert_eq!(store.get_membership(account, a.id).await.unwrap().unwrap().role, Role::Viewer);
    assert!(matches!(store.remove_membership(account, b.id).await, Err(MembershipError::LastOwner)));
    assert!(matches!(store.add_membership(&member(&a, account, Role::Member)).await, Err(MembershipError::Duplicate)));
    let stranger = user("c@acme.io", 3);
    assert!(matches!(store.set_role(account, stranger.id, Role::Owner).await, Err(MembershipError::NotFound)));
}

pub async fn removing_a_member_ends_their_sessions<S: Store>(store: S) {
    use crate::people::Role;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let (owner, leaver) = (user("o@acme.io", 1), user("l@acme.io", 2));
    store.create_user(&owner, Some(&member(&owner, account, Role::Owner))).await.unwrap();
    store.create_user(&leaver, Some(&member(&leaver, account, Role::Member))).await.unwrap();
    let (kept, ended) = (session(&owner, account, 10), session(&leaver, account, 11));
    store.insert_session(&kept).await.unwrap();
    store.insert_session(&ended).await.unwrap();
    store.remove_membership(account, leaver.id).await.unwrap();
    assert!(store.find_session(&ended.token_hash).await.unwrap().is_none());
    assert!(store.find_session(&kept.token_hash).await.unwrap().is_some());
    assert!(store.get_membership(account, leaver.id).await.unwrap().is_none());
}

pub async fn sessions_round_trip<S: Store>(store: S) {
    use crate::people::Role;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let ada = user("ada@acme.io", 1);
    store.create_user(&ada, Some(&member(&ada, account, Role::Owner))).await.unwrap();
    let mut s = session(&ada, account, 7);
    s.temporary_key_id = Some(f.principal.actor().to_string().parse().unwrap());
    store.insert_session(&s).await.unwrap();
    assert_eq!(store.find_session(&s.token_hash).await.unwrap().unwrap(), s);
    store.touch_session(s.id, START + Duration::minutes(10)).await.unwrap();
    store.touch_session(s.id, START + Duration::minutes(5)).await.unwrap();
    store.set_step_up(s.id, START + Duration::minutes(10)).await.unwrap();
    let stored = store.find_session(&s.token_hash).await.unwrap().unwrap();
    assert_eq!(stored.last_seen_at, START + Duration::minutes(10), "last_seen_at only moves forward");
    assert_eq!(stored.step_up_at, Some(START + Duration::minutes(10)));
    assert_eq!(store.delete_session(s.id).await.unwrap().map(|d| d.id), Some(s.id));
    assert!(store.find_session(&s.token_hash).await.unwrap().is_none());
    assert!(store.delete_session(s.id).await.unwrap().is_none());
}

pub async fn touching_a_key_only_moves_forward<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let key: KeyId = f.principal.actor().to_string().parse().unwrap();
    store.touch_key(key, START + Duration::hours(2)).await.unwrap();
    store.touch_key(key, START + Duration::hours(1)).await.unwrap();
    let stored = store.get_key(f.principal.account_id, key).await.unwrap().unwrap();
    assert_eq!(stored.last_used_at, Some(START + Duration::hours(2)));
    let listed = store.list_account_keys(f.principal.account_id).await.unwrap();
    assert_eq!(listed.iter().map(|k| k.id).collect::<Vec<_>>(), vec![key]);
    assert_eq!(store.count_account_keys(f.principal.account_id, START).await.unwrap(), 1);
}

fn audit_event(account: Option<AccountId>, seconds: i64, action: &'static str, seed: u64) -> crate::audit::AuditEvent {
    let ts = START + Duration::seconds(seconds);
    crate::audit::AuditEvent {
        id: crate::id::EventId::generate(ts, &SeededRandom::new(seed)),
        ts,
        account_id: account,
        actor: crate::key::Actor::System,
        action: action.into(),
        resource_type: "key".into(),
        resource_id: Some(format!("key_{seed}")),
        result: crate::audit::AuditResult::Success,
        context: crate::audit::RequestContext {
            ip: Some("203.0.113.7".parse().unwrap()),
            user_agent: Some("curl/8".into()),
            request_id: None,
        },
        metadata: serde_json::json!({"n": seed}).as_object().unwrap().clone(),
    }
}

pub async fn audit_chains_are_per_account_and_verify<S: Store>(store: S) {
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let store = a.service.store();
    let (acct_a, acct_b) = (Some(a.principal.account_id), Some(b.principal.account_id));
    for (i, account) in [acct_a, acct_b, acct_a, None, acct_a, acct_b].into_iter().enumerate() {
        let record = store.append_audit(&audit_event(account, i as i64, "key.create", i as u64)).await.unwrap();
        assert_eq!(record.hash, crate::audit::chain_hash(&record.prev_hash, &record.event));
    }
    let chain_a = store.audit_chain(acct_a, 0, 100).await.unwrap();
    assert_eq!(chain_a.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(chain_a[0].prev_hash, [0; 32]);
    assert_eq!(chain_a[1].prev_hash, chain_a[0].hash);
    assert_eq!(crate::audit::first_broken_link(&chain_a, None), None);
    assert_eq!(chain_a[2].event.metadata["n"], 4, "events round-trip whole");
    assert_eq!(chain_a[2].event.context.ip, Some("203.0.113.7".parse().unwrap()));
    assert_eq!(store.audit_chain(acct_b, 0, 100).await.unwrap().len(), 2);
    assert_eq!(store.audit_chain(None, 0, 100).await.unwrap().len(), 1);
    assert_eq!(store.audit_chain(acct_a, 2, 100).await.unwrap().len(), 1, "after a seq");
    let mut chains = store.audit_chains().await.unwrap();
    chains.sort();
    assert_eq!(chains.len(), 3);
}

pub async fn concurrent_appends_never_fork_a_chain<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let account = Some(f.principal.account_id);
    let store = f.service.store();
    let appends = (0..20).map(|i| {
        let store = store.clone();
        async move { store.append_audit(&audit_event(account, i, "key.read", 100 + i as u64)).await.unwrap() }
    });
    let records = futures_join_all(appends).await;
    assert_eq!(records.len(), 20);
    let chain = store.audit_chain(account, 0, 100).await.unwrap();
    assert_eq!(chain.iter().map(|r| r.seq).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
    assert_eq!(crate::audit::first_broken_link(&chain, None), None);
}

/// `join_all` without a futures dependency: polls every future in turn until all finish.
async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut all = true;
        for (i, fut) in pending.iter_mut().enumerate() {
            if done[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(done.iter_mut().map(|d| d.take().unwrap()).collect())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

pub async fn audit_lists_newest_first_with_filters<S: Store>(store: S) {
    let f = fixture(store, Plan::Pro).await;
    let account = f.principal.account_id;
    let store = f.service.store();
    for i in 0..10 {
        let action = if i % 2 == 0 { "key.create" } else { "key.read" };
        store.append_audit(&audit_event(Some(account), i, action, 200 + i as u64)).await.unwrap();
    }
    let all = crate::audit::AuditFilter::default();
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store.list_audit(account, &all, 3, before).await.unwrap();
        if page.is_empty() {
            break;
        }
        before = page.last().map(|r| r.event.id);
        seen.extend(page.into_iter().map(|r| r.event.ts));
    }
    assert_eq!(seen.len(), 10);
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "newest first");
    let creates = crate::audit::AuditFilter { action: Some("key.create".into()), ..Default::default() };
    assert_eq!(store.list_audit(account, &creates, 100, None).await.unwrap().len(), 5);
    let window = crate::audit::AuditFilter {
        since: Some(START + Duration::seconds(2)),
        until: Some(START + Duration::seconds(5)),
        ..Default::default()
    };
    assert_eq!(store.list_audit(account, &window, 100, None).await.unwrap().len(), 3);
    let by_resource = crate::audit::AuditFilter { key_id: Some("key_203".into()), ..Default::default() };
    assert_eq!(store.list_audit(account, &by_resource, 100, None).await.unwrap().len(), 1);
}

pub async fn the_purge_removes_only_old_events<S: Store>(store: S) {
    let a = fixture(store.clone(), Plan::Pro).await;
    let b = fixture(store, Plan::Pro).await;
    let store = a.service.store();
    for i in 0..6 {
        store
            .append_audit(&audit_event(Some(a.principal.account_id), i * 10, "key.read", 300 + i as u64))
            .await
            .unwrap();
        store
            .append_audit(&audit_event(Some(b.principal.account_id), i * 10, "key.read", 400 + i as u64))
            .await
            .unwrap();
    }
    let removed = store.purge_audit(Some(a.principal.account_id), START + Duration::seconds(25)).await.unwrap();
    assert_eq!(removed, 3);
    let remaining = store.audit_chain(Some(a.principal.account_id), 0, 100).await.unwrap();
    assert_eq!(remaining.len(), 3);
    assert_eq!(crate::audit::first_broken_link(&remaining, None), None, "what remains still verifies");
    assert_eq!(store.audit_chain(Some(b.principal.account_id), 0, 100).await.unwrap().len(), 6);
    // Appending after a purge continues the chain.
    let next = store.append_audit(&audit_event(Some(a.principal.account_id), 100, "key.read", 999)).await.unwrap();
    assert_eq!(next.seq, 7);
    assert_eq!(next.prev_hash, remaining[2].hash);
}

pub async fn idempotency_keys_follow_stripe_semantics<S: Store>(store: S) {
    use crate::idempotency::{Claim, StoredResponse};
    let f = fixture(store.clone(), Plan::Pro).await;
    let other = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let (mine, theirs) = ([1u8; 32], [2u8; 32]);
    assert_eq!(store.claim_idempotency(account, "k", mine, START).await.unwrap(), Claim::Claimed);
    assert_eq!(
        store.claim_idempotency(account, "k", mine, START).await.unwrap(),
        Claim::InFlight { fingerprint: mine }
    );
    // Keys are per account.
    assert_eq!(store.claim_idempotency(other.principal.account_id, "k", theirs, START).await.unwrap(), Claim::Claimed);
    let response = StoredResponse { status: 201, sealed_body: b"sealed".to_vec() };
    store.complete_idempotency(account, "k", mine, START, &response).await.unwrap();
    let completed = Claim::Completed { fingerprint: mine, response: response.clone() };
    assert_eq!(store.claim_idempotency(account, "k", theirs, START + Duration::hours(23)).await.unwrap(), completed);
    store.release_idempotency(account, "k").await.unwrap();
    assert_eq!(
        store.claim_idempotency(account, "k", mine, START).await.unwrap(),
        completed,
        "a completed key is not released"
    );
    // After 24 hours the key is new again.
    assert_eq!(
        store.claim_idempotency(account, "k", theirs, START + Duration::hours(24)).await.unwrap(),
        Claim::Claimed
    );

    // A claim whose request crashed lapses with its lease.
    assert_eq!(store.claim_idempotency(account, "crashed", mine, START).await.unwrap(), Claim::Claimed);
    let later = START + crate::idempotency::LEASE;
    assert_eq!(store.claim_idempotency(account, "crashed", theirs, later).await.unwrap(), Claim::Claimed);
    // A released claim frees the key at once.
    store.release_idempotency(account, "crashed").await.unwrap();
    assert_eq!(store.claim_idempotency(account, "crashed", mine, later).await.unwrap(), Claim::Claimed);

    assert!(store.purge_idempotency(START + Duration::hours(48)).await.unwrap() >= 2);
    assert_eq!(store.claim_idempotency(account, "crashed", theirs, later).await.unwrap(), Claim::Claimed);
}

pub async fn a_committed_unit_of_work_keeps_everything<S: Store>(store: S) {
    use crate::ports::Outcome;
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let key = store
        .atomically(async {
            let key = f.service.create_key(&f.principal, named("in a unit")).await.unwrap().key;
            store.append_audit(&audit_event(Some(f.principal.account_id), 0, "key.create", 77)).await.unwrap();
            Outcome::Commit(key)
        })
        .await
        .unwrap();
    assert!(store.get_key(f.principal.account_id, key.id).await.unwrap().is_some());
    assert_eq!(store.audit_chain(Some(f.principal.account_id), 0, 10).await.unwrap().len(), 1);
}

pub async fn usage_is_counted_per_key_and_day<S: Store>(store: S) {
    use crate::{usage::UsageRecord, verify::VerifyCode};
    let f = fixture(store, Plan::Pro).await;
    let store = f.service.store();
    let account = f.principal.account_id;
    let key = f.service.create_key(&f.principal, named("metered")).await.unwrap().key;
    let record = |seconds: i64, outcome: VerifyCode, ms: Option<u32>| UsageRecord {
        key_id: key.id,
        account_id: account,
        ts: START + Duration::seconds(seconds),
        endpoint: Some("/servers".into()),
        method: Some("GET".into()),
        status_code: None,
        response_time_ms: ms,
        ip: Some("203.0.113.9".parse().unwrap()),
        outcome: Some(outcome),
    };
    // Two days: the last second of 1 January and the first of the 2nd.
    let batch = [
        record(10, VerifyCode::Valid, Some(4)),
        record(20, VerifyCode::Valid, Some(6)),
        record(30, VerifyCode::RateLimited, None),
        record(86_400, VerifyCode::Valid, None),
    ];
    store.record_usage(&batch[..3]).await.unwrap();
    store.record_usage(&batch[3..]).await.unwrap();
    let stored = store.get_key(account, key.id).await.unwrap().unwrap();
    assert_eq!(stored.usage_count, 4);
    assert_eq!(stored.last_used_at, Some(START + Duration::seconds(86_400)));

    let next_day = START + Duration::seconds(90_000);
    let summary = store.usage_summary(account, key.id, next_day).await.unwrap();
    assert_eq!((summary.requests_today, summary.requests_this_month), (1, 4));
    let records = store.key_usage(account, key.id, (None, None), None, 10).await.unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[0].record, batch[3], "newest first, whole");
    let older = store.key_usage(account, key.id, (None, None), Some(records[1].position), 10).await.unwrap();
    assert_eq!(older.len(), 2);
    let window = store.key_usage(
        account,
        key.id,
        (Some(START + Duration::seconds(15)), Some(START + Duration::seconds(40))),
        None,
        10,
    );
    assert_eq!(window.await.unwrap().len(), 2);

    let stats = store.account_stats(account, next_day).await.unwrap();
    assert_eq!((stats.verifications_total, stats.verifications_today), (4, 1));
    assert_eq!(stats.by_code.get("VALID"), Some(&3));
    assert_eq!(stats.by_code.get("RATE_LIMITED"), Some(&1));
    assert!((stats.success_rate - 0.75).abs() < 1e-9);
    assert_eq!(stats.avg_response_time_ms, Some(5.0));
    // Another account sees nothing of it.
    let other = fixture(store.clone(), Plan::Pro).await;
    assert_eq!(store.usage_summary(other.principal.account_id, key.id, next_day).await.unwrap().requests_this_month, 0);
    assert_eq!(store.account_stats(other.principal.account_id, next_day).await.unwrap().verifications_total, 0);

    // Records that share a microsecond are paged without loss or repetition.
    let same_time: Vec<UsageRecord> = (0..5).map(|_| record(50, VerifyCode::Valid, None)).collect();
    store.record_usage(&same_time[..2]).await.unwrap();
    store.record_usage(&same_time[2..]).await.unwrap();
    let window = (Some(START + Duration::seconds(50)), Some(START + Duration::seconds(51)));
    let (mut seen, mut before) = (Vec::new(), None);
    loop {
        let page = store.key_usage(account, key.id, window, before, 2).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.position);
        seen.extend(page.iter().map(|e| e.position));
    }
    assert_eq!(seen.len(), 5, "every record once: {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "strictly newest first: {seen:?}");

    // The purge drops records before a day; counts stay.
    store.purge_usage(START + Duration::days(1)).await.unwrap();
    assert_eq!(store.key_usage(account, key.id, (None, None), None, 10).await.unwrap().len(), 1);
    assert_eq!(store.get_key(account, key.id).await.unwrap().unwrap().usage_count, 9, "counts stay");
    assert_eq!(store.usage_summary(account, key.id, next_day).await.unwrap().requests_this_month, 9, "4 + the 5 above");
    let stats = store.account_stats(account, next_day).await.unwrap();
    assert_eq!(stats.verifications_total, 1, "the statistics count the records still kept");
    assert_eq!(stats.by_code.get("RATE_LIMITED"), None);
}
