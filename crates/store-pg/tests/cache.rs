//! The verification cache: warm lookups stay in memory, and a change on one instance reaches
//! another's cache through LISTEN/NOTIFY without waiting for the TTL — also after the
//! listener's connection was killed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::{sync::Arc, time::Duration};

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use keyward_domain::{
    KeyHash, Plan, SeededRandom, SystemClock,
    key_service::{DomainConfig, KeyService, NewKey, Principal},
    ports::KeyStore,
};
use keyward_store_pg::{CacheConfig, PgStore, testing::TestDatabase};

/// A TTL far longer than any test: only notifications can explain a fresh answer.
const LONG: CacheConfig = CacheConfig {
    max_entries: 10_000,
    max_bytes: 1 << 30,
    ttl: Duration::from_secs(3_600),
    negative_ttl: Duration::from_secs(3_600),
};

#[derive(diesel::QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

async fn listener_pid(url: &str) -> Option<i32> {
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let rows: Vec<Pid> = diesel::sql_query(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'keyward-listener' AND datname = current_database()",
    )
    .load(&mut conn)
    .await
    .unwrap();
    rows.iter().map(|r| r.pid).next()
}

async fn wait_for_listener(url: &str, not: Option<i32>) -> i32 {
    for _ in 0..200 {
        if let Some(pid) = listener_pid(url).await.filter(|pid| Some(*pid) != not) {
            // LISTEN runs right after the connection names itself; give it a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the listener did not connect");
}

/// Polls `check` for up to two seconds.
async fn eventually(mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Whether `store`'s cache comes to answer `hash` without a load (a load that raced the
/// key's own insert notification is not kept, so warming may take a second one).
async fn warms(store: &PgStore, hash: &KeyHash) -> bool {
    eventually(async || {
        let loads = store.cache_loads();
        store.find_by_hash(hash).await.unwrap().is_some() && store.cache_loads() == loads
    })
    .await
}

fn service(store: PgStore) -> KeyService<PgStore> {
    KeyService::new(store, Arc::new(SystemClock), Arc::new(SeededRandom::new(9)), Arc::new(DomainConfig::default()))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_without_a_cache_still_announces_its_changes() {
    let db = TestDatabase::new().await;
    // A keeps no cache (`[cache] enabled = false`); B, an embedded verifier say, does.
    let a = service(db.store());
    let b = db.store().with_key_cache(LONG);
    b.start_invalidation_listener();
    wait_for_listener(db.url(), None).await;
    let (_, issued) = a.create_account("Acme", Plan::Pro, true).await.unwrap();
    let principal = Principal::for_key(&issued.unwrap().key);
    let issued = a.create_key(&principal, NewKey { name: "k".into(), ..Default::default() }).await.unwrap();
    let hash = KeyHash::blake3(issued.plaintext.expose_secret());
    assert!(b.find_by_hash(&hash).await.unwrap().unwrap().revoked_at.is_none());
    a.revoke_key(&principal, issued.key.id).await.unwrap();
    assert!(
        eventually(async || b.find_by_hash(&hash).await.unwrap().unwrap().revoked_at.is_some()).await,
        "B hears of the revocation long before its one-hour TTL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn changes_on_one_instance_reach_another_without_waiting_for_the_ttl() {
    let db = TestDatabase::new().await;
    let a = service(db.store().with_key_cache(LONG));
    let b = db.store().with_key_cache(LONG);
    b.start_invalidation_listener();
    let first_pid = wait_for_listener(db.url(), None).await;

    let (_, issued) = a.create_account("Acme", Plan::Pro, true).await.unwrap();
    let principal = Principal::for_key(&issued.unwrap().key);
    let issued = a.create_key(&principal, NewKey { name: "cached".into(), ..Default::default() }).await.unwrap();
    let hash = KeyHash::blake3(issued.plaintext.expose_secret());

    // Warm B's cache, then revoke on A. The key's own insert notifies too: when that
    // notification lands while B loads the key, B does not keep what it loaded (it cannot
    // tell the load from one that raced a change), so warming may take a second load.
    assert!(b.find_by_hash(&hash).await.unwrap().unwrap().revoked_at.is_none());
    assert!(warms(&b, &hash).await, "B's cache warms");
    let loads = b.cache_loads();
    for _ in 0..3 {
        assert!(b.find_by_hash(&hash).await.unwrap().is_some());
    }
    assert_eq!(b.cache_loads(), loads, "warm lookups do not reach the database");
    a.revoke_key(&principal, issued.key.id).await.unwrap();
    assert!(
        eventually(async || b.find_by_hash(&hash).await.unwrap().unwrap().revoked_at.is_some()).await,
        "B sees the revocation"
    );

    // "No such key" is cached too, and a new key evicts it.
    let fresh = a.create_key(&principal, NewKey { name: "later".into(), ..Default::default() }).await.unwrap();
    let unknown = KeyHash::sha256("col_legacy_key");
    assert!(b.find_by_hash(&unknown).await.unwrap().is_none());
    let mut imported = fresh.key.clone();
    imported.id = keyward_domain::KeyId::generate(time::OffsetDateTime::now_utc(), &SeededRandom::new(77));
    imported.hash = unknown;
    a.store().insert_keys(&[imported], None).await.unwrap();
    assert!(eventually(async || b.find_by_hash(&unknown).await.unwrap().is_some()).await, "B forgets the miss");

    // Kill B's listener connection: it reconnects, flushes, and listens again.
    let mut admin = AsyncPgConnection::establish(db.url()).await.unwrap();
    admin.batch_execute(&format!("SELECT pg_terminate_backend({first_pid})")).await.unwrap();
    wait_for_listener(db.url(), Some(first_pid)).await;
    assert!(b.find_by_hash(&KeyHash::blake3(fresh.plaintext.expose_secret())).await.unwrap().unwrap().is_active);
    a.update_key(
        &principal,
        fresh.key.id,
        keyward_domain::key_service::KeyPatch { is_active: Some(false), ..Default::default() },
    )
    .await
    .unwrap();
    assert!(
        eventually(async || !b
            .find_by_hash(&KeyHash::blake3(fresh.plaintext.expose_secret()))
            .await
            .unwrap()
            .unwrap()
            .is_active)
        .await,
        "notifications flow again after the reconnection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_share_one_load() {
    let db = TestDatabase::new().await;
    let store = db.store().with_key_cache(LONG);
    let hash = KeyHash::blake3("kw_live_not_there");
    let lookups = (0..50).map(|_| store.find_by_hash(&hash));
    let found = futures_util::future::join_all(lookups).await;
    assert!(found.iter().all(|f| f.as_ref().unwrap().is_none()));
    assert_eq!(store.cache_loads(), 1, "one query for fifty concurrent misses");
}

/// Every verification awaits `find_by_hash` twice (the caller's key, the presented one),
/// inside futures that actix moves and boxes: a future holding the miss path's diesel query
/// (12 KiB) cost a 12 KiB copy at each step, ~5% of a verification's CPU in the HTTP
/// benchmark. The miss path is boxed, so the future a hit builds stays small.
#[test]
fn the_lookup_future_does_not_carry_the_miss_path() {
    let store = PgStore::connect("postgres://postgres@127.0.0.1:1/unused", &Default::default())
        .unwrap()
        .with_key_cache(CacheConfig::default());
    let hash = KeyHash::blake3("kw_live_anything");
    let lookup = store.find_by_hash(&hash);
    assert!(std::mem::size_of_val(&lookup) <= 2048, "{} bytes", std::mem::size_of_val(&lookup));
}

/// The database's own view of who is connected to `name`, from the admin database.
async fn admin(url: &str) -> AsyncPgConnection {
    let (base, _) = url.rsplit_once('/').unwrap();
    AsyncPgConnection::establish(&format!("{base}/postgres")).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_keys_keep_verifying_while_the_database_is_unreachable() {
    let db = TestDatabase::new().await;
    let a = service(db.store());
    let b = db.store().with_key_cache(LONG);
    b.start_invalidation_listener();
    let listener = wait_for_listener(db.url(), None).await;
    let (_, issued) = a.create_account("Acme", Plan::Pro, true).await.unwrap();
    let principal = Principal::for_key(&issued.unwrap().key);
    let issued = a.create_key(&principal, NewKey { name: "cached".into(), ..Default::default() }).await.unwrap();
    let hash = KeyHash::blake3(issued.plaintext.expose_secret());
    assert!(warms(&b, &hash).await, "B's cache warms");

    // The database goes away: no new connection is allowed, every open one is ended (the
    // listener's and the pools' alike), as in a restart.
    let mut admin = admin(db.url()).await;
    let name = db.name();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .await
        .unwrap();
    // Long enough for the listener to notice and fail to reconnect at least once.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cached = b.find_by_hash(&hash).await;
    assert!(
        cached.as_ref().is_ok_and(|found| found.as_ref().is_some_and(|k| k.is_active)),
        "a cached key keeps verifying while the database is down: {cached:?}"
    );
    let unknown = b.find_by_hash(&KeyHash::blake3("kw_live_never_cached")).await;
    assert!(
        matches!(unknown, Err(keyward_domain::StorageError::Unavailable(_))),
        "an uncached key meets the outage as unavailable: {unknown:?}"
    );

    // The database returns: the listener reconnects, reconciles (it cannot know what it
    // missed, so it forgets everything), and changes flow again.
    admin.batch_execute(&format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")).await.unwrap();
    wait_for_listener(db.url(), Some(listener)).await;
    a.revoke_key(&principal, issued.key.id).await.unwrap();
    assert!(
        eventually(async || b.find_by_hash(&hash).await.is_ok_and(|k| k.is_some_and(|k| k.revoked_at.is_some()))).await,
        "B sees a revocation made after the database came back"
    );
}

/// A keyspace's route table is cached with the keys (the forward-auth route reads it on
/// every check) and a change on one instance reaches another's cache without its TTL; a
/// deleted keyspace's gate goes too.
#[tokio::test(flavor = "multi_thread")]
async fn route_tables_changed_on_one_instance_reach_another() {
    use keyward_domain::{
        gateway::{RouteDefault, RouteTableInput},
        key_service::NewKeyspace,
        ports::GatewayStore,
    };
    let db = TestDatabase::new().await;
    let a = service(db.store().with_key_cache(LONG));
    let b = db.store().with_key_cache(LONG);
    b.start_invalidation_listener();
    wait_for_listener(db.url(), None).await;
    let (_, issued) = a.create_account("Acme", Plan::Pro, true).await.unwrap();
    let principal = Principal::for_key(&issued.unwrap().key);
    let space = NewKeyspace { name: "api".into(), prefix: Some("gw".into()), ..Default::default() };
    let keyspace = a.create_keyspace(&principal, space).await.unwrap();
    assert_eq!(b.gate(keyspace.id).await.unwrap().unwrap().routes.default, RouteDefault::AnyKey, "B caches it");

    let deny = RouteTableInput { default: RouteDefault::Deny, ..Default::default() };
    a.put_routes(&principal, keyspace.id, &deny).await.unwrap();
    assert!(
        eventually(async || b.gate(keyspace.id).await.unwrap().unwrap().routes.default == RouteDefault::Deny).await,
        "B sees the new table long before its one-hour TTL"
    );
    a.delete_keyspace(&principal, keyspace.id).await.unwrap();
    assert!(eventually(async || b.gate(keyspace.id).await.unwrap().is_none()).await, "and the keyspace's end");
}
