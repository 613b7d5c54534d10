//! Revocation propagation: how long after instance A commits a revocation does instance B,
//! whose cache holds the key, answer with the revoked record? 100 trials over local
//! PostgreSQL, LISTEN/NOTIFY doing the work. Prints p50, p99 and the maximum.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // A measurement, not a library.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use keyward_domain::{
    KeyHash, OsRandom, Plan, SystemClock,
    key_service::{DomainConfig, KeyService, NewKey, Principal},
    ports::KeyStore,
};
use keyward_store_pg::{CacheConfig, testing::TestDatabase};

const TRIALS: usize = 100;

fn main() {
    // `cargo bench` passes --bench; this harness takes no options.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let db = TestDatabase::new().await;
        let long = CacheConfig {
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(30),
            ..CacheConfig::default()
        };
        let a = KeyService::new(
            db.store().with_key_cache(long),
            Arc::new(SystemClock),
            Arc::new(OsRandom),
            Arc::new(DomainConfig::default()),
        );
        let b = db.store().with_key_cache(long);
        b.start_invalidation_listener();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (_, issued) = a.create_account("Bench", Plan::Enterprise, true).await.unwrap();
        let principal = Principal::for_key(&issued.unwrap().key);

        let mut samples = Vec::with_capacity(TRIALS);
        for i in 0..TRIALS {
            let key = a.create_key(&principal, NewKey { name: format!("k{i}"), ..Default::default() }).await.unwrap();
            let hash = KeyHash::blake3(key.plaintext.expose_secret());
            assert!(b.find_by_hash(&hash).await.unwrap().is_some(), "B's cache is warm");
            let started = Instant::now();
            a.revoke_key(&principal, key.key.id).await.unwrap();
            loop {
                if b.find_by_hash(&hash).await.unwrap().unwrap().revoked_at.is_some() {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(5), "never propagated");
                tokio::task::yield_now().await;
            }
            samples.push(started.elapsed());
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).saturating_sub(1)];
        println!(
            "revocation propagation over {TRIALS} trials (commit on A to REVOKED on B): p50 {:?}, p99 {:?}, max {:?}",
            at(0.50),
            at(0.99),
            samples[samples.len() - 1]
        );
        drop(db);
    });
}
