//! The in-process limiter's decision time: one rule (a tier), three rules (custom windows),
//! and a token bucket, each for a subject already present (the common case).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward_domain::ratelimit::{Limit, Rule};
use keyward_ratelimit::MemoryLimiter;
use time::OffsetDateTime;

fn rules(limits: &[Limit]) -> Vec<Rule> {
    limits.iter().enumerate().map(|(i, limit)| Rule { name: format!("r{i}").into(), limit: *limit }).collect()
}

fn bench(c: &mut Criterion) {
    let limiter = MemoryLimiter::default();
    let now = OffsetDateTime::now_utc();
    // Generous limits, so every iteration is an admitted request that writes state.
    let tier = rules(&[Limit::per_minute(u64::MAX / 4)]);
    let windows = rules(&[
        Limit::Window { limit: u64::MAX / 4, period_seconds: 60 },
        Limit::Window { limit: u64::MAX / 4, period_seconds: 3_600 },
        Limit::Window { limit: u64::MAX / 4, period_seconds: 86_400 },
    ]);
    let bucket = rules(&[Limit::Bucket { capacity: 1 << 40, refill: 1 << 40, refill_seconds: 1 }]);
    let subject = b"key_0351wCjFl5LDteAD5GyVhk";
    c.bench_function("memory limiter: 1 window", |b| b.iter(|| black_box(limiter.check_now(subject, &tier, 1, now))));
    c.bench_function("memory limiter: 3 windows", |b| {
        b.iter(|| black_box(limiter.check_now(subject, &windows, 1, now)))
    });
    c.bench_function("memory limiter: token bucket", |b| {
        b.iter(|| black_box(limiter.check_now(subject, &bucket, 1, now)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
