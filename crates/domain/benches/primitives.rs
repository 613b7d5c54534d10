//! The pure steps of a verification, one at a time: parsing a presented key (shape and
//! checksum), hashing it, the scope checks, and the static checks on a cached record.

#![allow(clippy::unwrap_used)] // Benchmark set-up: a failure ends the run.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use keyward_domain::{
    Environment, IpPolicy, KeyHash, KeyPrefix, OsRandom, Scope, ScopeSet, VerifiableKey, key_format,
    verdict::{self, VerifyRequest},
};

fn bench(c: &mut Criterion) {
    let prefix = KeyPrefix::new("gmk_cru").unwrap();
    let key = key_format::generate(&prefix, Environment::Live, &OsRandom);
    let presented = key.expose_secret().to_owned();
    let mut corrupted = presented.clone().into_bytes();
    corrupted[20] = if corrupted[20] == b'a' { b'b' } else { b'a' };
    let corrupted = String::from_utf8(corrupted).unwrap();

    let mut group = c.benchmark_group("primitives");
    group.bench_function("parse a key (checksum)", |b| b.iter(|| key_format::parse(black_box(&presented)).is_ok()));
    group.bench_function("reject a corrupted key", |b| b.iter(|| key_format::parse(black_box(&corrupted)).is_err()));
    group.bench_function("BLAKE3 of a key", |b| b.iter(|| KeyHash::blake3(black_box(&presented))));

    let held = ScopeSet::parse(&["server:*", "dns:read", "ip:setptr", "keys:read"]).unwrap();
    let wanted = [Scope::new("server:list").unwrap(), Scope::new("ip:setptr").unwrap()];
    group.bench_function("scope check (2 of 4, one wildcard)", |b| b.iter(|| black_box(&held).grants_all(&wanted)));
    group.bench_function("management scope check (text)", |b| b.iter(|| black_box(&held).grants_str("keys:read")));

    // A record shaped as the verification cache holds one.
    let mut allowlisted = sample_key(held.clone());
    allowlisted.ip_allowlist.push("10.0.0.0/8").unwrap();
    let record = VerifiableKey::new(allowlisted, IpPolicy::Open);
    let ip = Some("10.1.2.3".parse().unwrap());
    let request = VerifyRequest { scopes: &wanted, resource: None, ip, resolved: &[] };
    let now = time::OffsetDateTime::now_utc();
    group.bench_function("static checks on a cached record", |b| {
        b.iter(|| verdict::check(black_box(&record), black_box(&request), now))
    });
    group.finish();
}

fn sample_key(scopes: ScopeSet) -> keyward_domain::Key {
    use keyward_domain::{AccountId, Actor, Key, KeyId, KeyKind, Tier};
    let now = time::OffsetDateTime::now_utc();
    Key {
        id: KeyId::generate(now, &OsRandom),
        account_id: AccountId::generate(now, &OsRandom),
        keyspace_id: None,
        kind: KeyKind::Service,
        name: "bench".into(),
        description: None,
        environment: Environment::Live,
        key_prefix: "gmk_cru_live_abcd…wxyz".into(),
        hash: KeyHash::blake3("x"),
        scopes,
        resource: None,
        tier: Tier::Pro,
        rate_limits: vec![],
        quota: None,
        quota_balance: None,
        ip_allowlist: keyward_domain::key::IpAllowlist::default(),
        expires_at: None,
        idle_timeout_seconds: None,
        owner_id: Some("cust_1".into()),
        metadata: serde_json::Map::new(),
        is_active: true,
        revoked_at: None,
        rotated_from: None,
        rotated_to: None,
        leaked_at: None,
        leak_source: None,
        last_used_at: None,
        usage_count: 0,
        created_at: now,
        created_by: Actor::System,
        updated_at: now,
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
