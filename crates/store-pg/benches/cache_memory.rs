//! Resident memory of the verification cache holding 1,000,000 keys (issue #6: under
//! 1 GiB). Not a criterion benchmark: it fills a cache with copies of a realistic record
//! (three scopes, an owner, metadata, a keyspace's IP policy — loaded from PostgreSQL the
//! way a cache miss loads it) and reads the process's resident set size before and after.
//! Linux only (`/proc/self/status`). Needs PostgreSQL at `DATABASE_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // A measurement run.

use std::sync::Arc;

use keyward_domain::{
    KeyHash, OsRandom, Plan, ScopeSet, SystemClock, VerifiableKey,
    key_service::{DomainConfig, KeyService, NewKey, Principal},
    ports::KeyStore,
};
use keyward_store_pg::testing::{TestDatabase, filled_key_cache};

const ENTRIES: u32 = 1_000_000;

/// Resident set size in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/self/status");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let db = TestDatabase::new().await;
        let service =
            KeyService::new(db.store(), Arc::new(SystemClock), Arc::new(OsRandom), Arc::new(DomainConfig::default()));
        let (_, issued) = service.create_account("Bench", Plan::Enterprise, true).await.unwrap();
        let principal = Principal::for_key(&issued.unwrap().key);
        let metadata = serde_json::json!({"plan": "pro", "customer": "cus_8f3k2j", "region": "eu-west-1"});
        let created = service
            .create_key(
                &principal,
                NewKey {
                    name: "production backend".into(),
                    scopes: Some(vec!["servers:read".into(), "servers:write".into(), "dns:read".into()]),
                    owner_id: Some("cust_4711".into()),
                    metadata: metadata.as_object().cloned(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let record =
            db.store().find_by_hash(&KeyHash::blake3(created.plaintext.expose_secret())).await.unwrap().unwrap();
        let key = db.store().get_key(principal.account_id, record.id).await.unwrap().unwrap();
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        // What a cache miss does: a whole `Key` from the row, turned into the cached view. A
        // plain clone would share the scopes (an `Arc`) and flatter the figure.
        let load = || {
            let mut loaded = key.clone();
            loaded.scopes = ScopeSet::parse(&scopes).unwrap();
            VerifiableKey::new(loaded, record.ip_policy)
        };
        assert_eq!(load(), *record, "the records measured are the ones a lookup caches");

        let before = resident_kib();
        let (cache, entries) = filled_key_cache(load, ENTRIES).await;
        let after = resident_kib();
        let grown = after.saturating_sub(before);
        println!(
            "cache_memory: {entries} cached keys; a record is {} bytes inline before its heap parts",
            std::mem::size_of::<VerifiableKey>()
        );
        println!(
            "cache_memory: resident {:.1} MiB before, {:.1} MiB after: {:.1} MiB for the cache, {} bytes per key",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            grown as f64 / 1024.0,
            grown * 1024 / u64::from(ENTRIES.max(1)),
        );
        assert_eq!(entries, u64::from(ENTRIES), "every key stays cached");
        drop(cache);
    });
}
