//! In-process verification against PostgreSQL: the embedded verifier's cost per call, with
//! a warm cache and with no cache at all (every call one indexed query on local PostgreSQL).
//! Needs PostgreSQL at `DATABASE_URL` (as the tests do).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Benchmark set-up: a failure ends the run.

use std::{hint::black_box, sync::Arc};

use criterion::{Criterion, criterion_group, criterion_main};
use keyward_domain::{
    OsRandom, PlaintextKey, Plan, SystemClock,
    key_service::{DomainConfig, KeyService, NewKey, Principal, VerifyInput},
};
use keyward_ratelimit::Limits;
use keyward_store_pg::{CacheConfig, PgStore, testing::TestDatabase};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let db = runtime.block_on(TestDatabase::new());
    let setup = |store: PgStore| {
        runtime.block_on(async {
            let service =
                KeyService::new(store, Arc::new(SystemClock), Arc::new(OsRandom), Arc::new(DomainConfig::default()));
            let (_, issued) = service.create_account("Bench", Plan::Enterprise, true).await.unwrap();
            let principal = Principal::for_key(&issued.unwrap().key);
            let key = service
                .create_key(
                    &principal,
                    NewKey { name: "bench".into(), tier: Some(keyward_domain::Tier::Enterprise), ..Default::default() },
                )
                .await
                .unwrap();
            (service, principal, key.plaintext)
        })
    };
    // Generous limits, so the benchmark measures verification, not refusals.
    let limits = Limits::in_process();
    let input = |plaintext: &PlaintextKey| VerifyInput {
        key: plaintext.clone(),
        scopes: Vec::new(),
        resource: None,
        ip: None,
        cost: 0,
    };

    let (cached, principal, plaintext) = setup(db.store().with_key_cache(CacheConfig::default()));
    let warm = input(&plaintext);
    let mut group = c.benchmark_group("in-process verify");
    group.bench_function("warm cache", |b| {
        b.to_async(&runtime).iter(|| async { black_box(cached.verify(&principal, &warm, &limits).await.unwrap()) })
    });
    // Criterion reports central estimates; the p99 target needs the tail, so time single
    // calls too (the clock's own cost, ~25 ns, is included).
    runtime.block_on(async {
        let mut samples: Vec<std::time::Duration> = Vec::with_capacity(100_000);
        for _ in 0..100_000 {
            let started = std::time::Instant::now();
            black_box(cached.verify(&principal, &warm, &limits).await.unwrap());
            samples.push(started.elapsed());
        }
        samples.sort();
        #[allow(clippy::print_stdout)]
        {
            println!(
                "in-process verify, warm cache, 100,000 single calls: p50 {:?}, p99 {:?}, p99.9 {:?}",
                samples[50_000], samples[99_000], samples[99_900]
            );
        }
    });
    let (uncached, principal, plaintext) = setup(db.store());
    let cold = input(&plaintext);
    group.bench_function("no cache (one query)", |b| {
        b.to_async(&runtime).iter(|| async { black_box(uncached.verify(&principal, &cold, &limits).await.unwrap()) })
    });
    group.finish();
    drop(db);
}

criterion_group!(benches, bench);
criterion_main!(benches);
