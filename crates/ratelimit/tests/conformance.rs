//! One suite for both limiters and both ledgers: the in-process ones and the Redis ones
//! (real Redis at `REDIS_URL`, default `redis://127.0.0.1:6379`, each test under its own key
//! prefix). Time is injected: every decision gets its `now`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::time::Duration;

use keyward_domain::{
    KeyId, Quota, SeededRandom,
    quota::{QuotaBalance, Refill, RefillInterval},
    ratelimit::{Admission, Limit, QuotaCharge, QuotaDecision, QuotaLedger, RateLimiter, Rule},
};
use keyward_ratelimit::{
    MemoryLedger, MemoryLimiter, RedisLedger, RedisLimiter,
    redis::{Options, Shared},
    testing::Certificates,
};
use time::{OffsetDateTime, macros::datetime};

/// 2026-03-01 00:00:00 UTC: a minute, hour and day boundary.
const T0: OffsetDateTime = datetime!(2026-03-01 00:00 UTC);

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn shared() -> Shared {
    shared_at(&redis_url(), None)
}

/// A connection to `url` under a key prefix of its own (`ca`: the authorities of a TLS server).
fn shared_at(url: &str, ca: Option<&[u8]>) -> Shared {
    let prefix = format!("kwtest:{}:{}", std::process::id(), OffsetDateTime::now_utc().unix_timestamp_nanos());
    let options = Options { prefix, ca_pem: ca.map(<[u8]>::to_vec), ..Options::new(Duration::from_secs(2)) };
    Shared::open(url, &options).unwrap()
}

fn rule(name: &'static str, limit: Limit) -> Rule {
    Rule::new(name, limit)
}

fn at(seconds: f64) -> OffsetDateTime {
    T0 + time::Duration::seconds_f64(seconds)
}

macro_rules! limiter_suite {
    ($($name:ident),+ $(,)?) => {
        mod memory_limiter {
            $(#[tokio::test] async fn $name() { super::$name(&keyward_ratelimit::MemoryLimiter::default()).await; })+
        }
        mod redis_limiter {
            $(#[tokio::test] async fn $name() { super::$name(&keyward_ratelimit::RedisLimiter::new(super::shared())).await; })+
        }
        /// The whole suite through the Redis at `url`; the decisions Redis did not make.
        async fn limiter_suite_at(url: &str, ca: Option<&[u8]>) -> u64 {
            let mut fallbacks = 0;
            $(
                let shared = shared_at(url, ca);
                $name(&RedisLimiter::new(shared.clone())).await;
                fallbacks += shared.fallbacks();
            )+
            fallbacks
        }
    };
}

limiter_suite!(
    a_window_admits_exactly_its_limit,
    a_bucket_bursts_then_refills,
    a_sliding_log_is_exact,
    a_refused_policy_consumes_no_window,
    peeking_consumes_nothing,
    subjects_are_independent,
    costs_count_whole,
);

async fn admitted(limiter: &impl RateLimiter, subject: &[u8], rules: &[Rule], n: usize, now: OffsetDateTime) -> usize {
    let mut count = 0;
    for _ in 0..n {
        if limiter.check(subject, rules, 1, now).await.allowed {
            count += 1;
        }
    }
    count
}

async fn a_window_admits_exactly_its_limit(limiter: &impl RateLimiter) {
    for (limit, period) in [(10, 60), (100, 3_600), (3, 86_400)] {
        let rules = [rule("w", Limit::Window { limit, period_seconds: period })];
        let subject = format!("window-{period}");
        assert_eq!(admitted(limiter, subject.as_bytes(), &rules, limit as usize + 5, at(1.0)).await, limit as usize);
        let refused = limiter.check(subject.as_bytes(), &rules, 1, at(1.5)).await;
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        assert_eq!(refused.limit, limit);
        assert_eq!(refused.retry_after_seconds, period - 1, "until the window ends");
        // The next window admits again.
        let next = at(period as f64);
        assert_eq!(admitted(limiter, subject.as_bytes(), &rules, limit as usize + 1, next).await, limit as usize);
    }
}

async fn a_bucket_bursts_then_refills(limiter: &impl RateLimiter) {
    let rules = [rule("ip", Limit::Bucket { capacity: 100, refill: 10, refill_seconds: 1 })];
    assert_eq!(admitted(limiter, b"bucket", &rules, 150, at(0.0)).await, 100);
    let refused = limiter.check(b"bucket", &rules, 1, at(0.0)).await;
    assert_eq!(refused.retry_after_seconds, 1);
    // Half a second refills five tokens.
    assert_eq!(admitted(limiter, b"bucket", &rules, 10, at(0.5)).await, 5);
    // Ten seconds refill it all.
    assert_eq!(admitted(limiter, b"bucket", &rules, 150, at(11.0)).await, 100);
}

async fn a_sliding_log_is_exact(limiter: &impl RateLimiter) {
    let rules = [rule("failures", Limit::Sliding { limit: 5, period_seconds: 900 })];
    for i in 0..5 {
        assert!(limiter.check(b"sliding", &rules, 1, at(f64::from(i) * 100.0)).await.allowed);
    }
    let refused = limiter.check(b"sliding", &rules, 1, at(899.0)).await;
    assert!(!refused.allowed);
    assert_eq!(refused.retry_after_seconds, 1, "the first hit leaves the log at 900 s");
    assert!(limiter.check(b"sliding", &rules, 1, at(900.0)).await.allowed);
    assert!(!limiter.check(b"sliding", &rules, 1, at(950.0)).await.allowed);
}

async fn a_refused_policy_consumes_no_window(limiter: &impl RateLimiter) {
    let minute = rule("minute", Limit::Window { limit: 100, period_seconds: 60 });
    let hour = rule("hour", Limit::Window { limit: 1_000, period_seconds: 3_600 });
    let day = rule("day", Limit::Window { limit: 3, period_seconds: 86_400 });
    let policy = [minute.clone(), hour.clone(), day];
    assert_eq!(admitted(limiter, b"three", &policy, 10, at(1.0)).await, 3);
    let refused = limiter.check(b"three", &policy, 1, at(2.0)).await;
    assert!(!refused.allowed);
    assert_eq!(refused.rule, 2, "the day window refused");
    // The minute and hour windows were charged only for the three admitted requests.
    let minute_only = limiter.peek(b"three", &policy[..1], 1, at(3.0)).await;
    assert_eq!(minute_only.remaining, 100 - 3 - 1);
    let hour_only = limiter.peek(b"three", &[minute, hour][1..], 1, at(3.0)).await;
    assert_eq!(hour_only.remaining, 1_000 - 3 - 1);
}

async fn peeking_consumes_nothing(limiter: &impl RateLimiter) {
    let rules = [rule("w", Limit::Window { limit: 2, period_seconds: 60 })];
    for _ in 0..5 {
        assert!(limiter.peek(b"peek", &rules, 1, at(1.0)).await.allowed);
    }
    assert_eq!(admitted(limiter, b"peek", &rules, 5, at(1.0)).await, 2);
    assert!(!limiter.peek(b"peek", &rules, 1, at(1.0)).await.allowed);
}

async fn subjects_are_independent(limiter: &impl RateLimiter) {
    let rules = [rule("w", Limit::Window { limit: 1, period_seconds: 60 })];
    assert!(limiter.check(b"alice", &rules, 1, at(1.0)).await.allowed);
    assert!(limiter.check(b"bob", &rules, 1, at(1.0)).await.allowed);
    assert!(!limiter.check(b"alice", &rules, 1, at(1.0)).await.allowed);
}

async fn costs_count_whole(limiter: &impl RateLimiter) {
    let rules = [rule("w", Limit::Window { limit: 10, period_seconds: 60 })];
    assert!(limiter.check(b"cost", &rules, 8, at(1.0)).await.allowed);
    assert!(!limiter.check(b"cost", &rules, 3, at(1.0)).await.allowed, "no partial spend");
    let last = limiter.check(b"cost", &rules, 2, at(1.0)).await;
    assert!(last.allowed);
    assert_eq!(last.remaining, 0);
}

macro_rules! ledger_suite {
    ($($name:ident),+ $(,)?) => {
        mod memory_ledger {
            $(#[tokio::test] async fn $name() { super::$name(&keyward_ratelimit::MemoryLedger::default()).await; })+
        }
        mod redis_ledger {
            $(#[tokio::test] async fn $name() { super::$name(&keyward_ratelimit::RedisLedger::new(super::shared())).await; })+
        }
        /// The whole suite through the Redis at `url`; the decisions Redis did not make.
        async fn ledger_suite_at(url: &str, ca: Option<&[u8]>) -> u64 {
            let mut fallbacks = 0;
            $(
                let shared = shared_at(url, ca);
                $name(&RedisLedger::new(shared.clone())).await;
                fallbacks += shared.fallbacks();
            )+
            fallbacks
        }
    };
}

ledger_suite!(
    a_quota_of_ten_at_three_admits_three_and_refills_at_midnight,
    a_new_quota_starts_afresh,
    a_ledger_without_a_balance_starts_from_the_stored_one,
    a_ledger_comes_down_to_the_stored_balance,
);

macro_rules! admission_suite {
    ($($name:ident),+ $(,)?) => {
        mod memory_admission {
            $(#[tokio::test] async fn $name() { super::$name(&keyward_ratelimit::Limits::in_process()).await; })+
        }
        mod redis_admission {
            $(#[tokio::test] async fn $name() { super::$name(&super::redis_limits(super::shared())).await; })+
        }
        /// The whole suite through the Redis at `url`; the decisions Redis did not make.
        async fn admission_suite_at(url: &str, ca: Option<&[u8]>) -> u64 {
            let mut fallbacks = 0;
            $(
                let shared = shared_at(url, ca);
                $name(&redis_limits(shared.clone())).await;
                fallbacks += shared.fallbacks();
            )+
            fallbacks
        }
    };
}

fn redis_limits(shared: Shared) -> keyward_ratelimit::Limits {
    keyward_ratelimit::Limits::Redis { limiter: RedisLimiter::new(shared.clone()), ledger: RedisLedger::new(shared) }
}

admission_suite!(
    a_refused_rate_limit_spends_no_quota,
    an_admitted_request_spends_its_cost_once,
    a_subject_other_than_the_key_is_decided_in_turn,
);

/// What a verification spends, decided at once (one Redis round trip): the rate limit
/// first, the quota only when it admitted.
async fn a_refused_rate_limit_spends_no_quota(limits: &impl Admission) {
    let rules = [rule("w", Limit::Window { limit: 2, period_seconds: 60 })];
    let quota = Quota { remaining: 5, refill: None };
    let k = key(20);
    let charge = Some(QuotaCharge { key: k, quota: &quota, stored: None, cost: 1 });
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (decision, spent) = limits.admit(k.as_uuid().as_bytes(), &rules, charge, T0).await;
        answers.push((decision.allowed, spent.map(|s| (s.allowed, s.remaining))));
    }
    assert_eq!(answers, [(true, Some((true, 4))), (true, Some((true, 3))), (false, None)]);
    assert_eq!(limits.spend(k, &quota, None, 1, T0).await.remaining, 2, "the refused request spent nothing");
}

async fn an_admitted_request_spends_its_cost_once(limits: &impl Admission) {
    let rules = [rule("w", Limit::Window { limit: 10, period_seconds: 60 })];
    let quota = Quota { remaining: 5, refill: None };
    let k = key(21);
    let charge = Some(QuotaCharge { key: k, quota: &quota, stored: None, cost: 3 });
    let subject = *k.as_uuid().as_bytes();
    let first = limits.admit(&subject, &rules, charge, T0).await;
    assert!(first.0.allowed);
    assert_eq!(first.1, Some(QuotaDecision { allowed: true, remaining: 2 }));
    // Not enough left: refused, and the window still counted the request (the quota is
    // the later check, as in a verification).
    let second = limits.admit(&subject, &rules, charge, T0).await;
    assert_eq!(second.1, Some(QuotaDecision { allowed: false, remaining: 2 }));
    assert_eq!(second.0.remaining, 8);
    // Without a quota, only the rate limit.
    let third = limits.admit(&subject, &rules, None, T0).await;
    assert_eq!((third.0.allowed, third.0.remaining, third.1), (true, 7, None));
}

/// The rate limits of one subject and the quota of a key that is not it (not what a
/// verification asks; the Redis adapter then decides in two round trips): the same answers.
async fn a_subject_other_than_the_key_is_decided_in_turn(limits: &impl Admission) {
    let rules = [rule("w", Limit::Window { limit: 1, period_seconds: 60 })];
    let quota = Quota { remaining: 5, refill: None };
    let k = key(22);
    let charge = Some(QuotaCharge { key: k, quota: &quota, stored: None, cost: 2 });
    let first = limits.admit(b"another subject", &rules, charge, T0).await;
    assert_eq!((first.0.allowed, first.1), (true, Some(QuotaDecision { allowed: true, remaining: 3 })));
    let second = limits.admit(b"another subject", &rules, charge, T0).await;
    assert_eq!((second.0.allowed, second.1), (false, None));
    assert_eq!(limits.spend(k, &quota, None, 1, T0).await.remaining, 2);
}

fn key(seed: u64) -> KeyId {
    KeyId::generate(T0, &SeededRandom::new(seed))
}

async fn a_quota_of_ten_at_three_admits_three_and_refills_at_midnight(ledger: &impl QuotaLedger) {
    let quota = Quota { remaining: 10, refill: Some(Refill { amount: 10, interval: RefillInterval::Day }) };
    let k = key(1);
    let spends: Vec<_> = futures_spends(ledger, k, &quota, 3, 4, datetime!(2026-03-01 23:59:59 UTC)).await;
    assert_eq!(spends, [(true, 7), (true, 4), (true, 1), (false, 1)]);
    let after_midnight = ledger.spend(k, &quota, None, 3, datetime!(2026-03-02 00:00:00 UTC)).await;
    assert!(after_midnight.allowed);
    assert_eq!(after_midnight.remaining, 7);
}

async fn a_new_quota_starts_afresh(ledger: &impl QuotaLedger) {
    let k = key(2);
    let small = Quota { remaining: 1, refill: None };
    assert!(ledger.spend(k, &small, None, 1, T0).await.allowed);
    assert!(!ledger.spend(k, &small, None, 1, T0).await.allowed);
    let topped_up = Quota { remaining: 5, refill: None };
    let spent = ledger.spend(k, &topped_up, None, 1, T0).await;
    assert_eq!((spent.allowed, spent.remaining), (true, 4));
}

/// A restart, a Redis that lost its data or expired the entry: the ledger has nothing of
/// its own and starts from what storage kept, not from the configured balance.
async fn a_ledger_without_a_balance_starts_from_the_stored_one(ledger: &impl QuotaLedger) {
    let k = key(3);
    let quota = Quota { remaining: 50, refill: None };
    let stored = QuotaBalance { fingerprint: quota.fingerprint(), period: 0, remaining: 2 };
    let spends: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(ledger.spend(k, &quota, Some(&stored), 1, T0).await.allowed);
        }
        v
    };
    assert_eq!(spends, [true, true, false]);
    // A stored balance of another configuration or of an earlier period does not count.
    let monthly = Quota { remaining: 5, refill: Some(Refill { amount: 5, interval: RefillInterval::Month }) };
    let last_month = QuotaBalance { fingerprint: monthly.fingerprint(), period: 0, remaining: 0 };
    assert_eq!(ledger.spend(key(4), &monthly, Some(&last_month), 1, T0).await.remaining, 4);
}

/// Spends this ledger never saw (another instance's fallback during an outage) reached
/// storage: the ledger's own, higher balance comes down to the stored one.
async fn a_ledger_comes_down_to_the_stored_balance(ledger: &impl QuotaLedger) {
    let k = key(5);
    let quota = Quota { remaining: 10, refill: None };
    assert_eq!(ledger.spend(k, &quota, None, 1, T0).await.remaining, 9);
    let stored = QuotaBalance { fingerprint: quota.fingerprint(), period: 0, remaining: 3 };
    assert_eq!(ledger.spend(k, &quota, Some(&stored), 1, T0).await.remaining, 2);
    // A stored balance above the ledger's (the flush lags) changes nothing.
    let lagging = QuotaBalance { remaining: 8, ..stored };
    assert_eq!(ledger.spend(k, &quota, Some(&lagging), 1, T0).await.remaining, 1);
}

async fn futures_spends(
    ledger: &impl QuotaLedger,
    k: KeyId,
    quota: &Quota,
    cost: u64,
    n: usize,
    now: OffsetDateTime,
) -> Vec<(bool, i64)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let d = ledger.spend(k, quota, None, cost, now).await;
        out.push((d.allowed, d.remaining));
    }
    out
}

#[tokio::test]
async fn redis_going_away_falls_back_without_failing() {
    // A private Redis on a free port, killed halfway.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed (cargo xtask ci installs it)");
    let url = format!("redis://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shared = Shared::with_prefix(&url, Duration::from_millis(200), "kwkill").unwrap();
    let limiter = RedisLimiter::new(shared.clone());
    let ledger = RedisLedger::new(shared);
    let rules = [rule("w", Limit::Window { limit: 3, period_seconds: 60 })];
    assert!(limiter.check(b"k", &rules, 1, at(1.0)).await.allowed);
    server.kill().unwrap();
    server.wait().unwrap();
    // Every decision still comes back, from the in-process fallback, within the timeout.
    let started = std::time::Instant::now();
    let answers: Vec<bool> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(limiter.check(b"k", &rules, 1, at(2.0)).await.allowed);
        }
        v
    };
    assert_eq!(answers, [true, true, true, false, false], "the fallback enforces the same limit");
    let quota = Quota { remaining: 2, refill: None };
    assert!(ledger.spend(key(9), &quota, None, 1, T0).await.allowed);
    // A key whose stored balance is spent stays refused: the fallback refills nothing.
    let spent = QuotaBalance { fingerprint: quota.fingerprint(), period: 0, remaining: 0 };
    assert!(!ledger.spend(key(10), &quota, Some(&spent), 1, T0).await.allowed);
    assert!(started.elapsed() < Duration::from_secs(30));
    let _ = (MemoryLimiter::default(), MemoryLedger::default());
}

/// Every suite through a real three-primary Redis Cluster (`redis+cluster://…`): each
/// decision's keys share a hash tag, so each script runs in one slot.
#[tokio::test]
async fn the_suites_hold_through_a_redis_cluster() {
    let cluster = keyward_ratelimit::testing::RedisCluster::start();
    let url = cluster.url();
    let fallbacks =
        limiter_suite_at(&url, None).await + ledger_suite_at(&url, None).await + admission_suite_at(&url, None).await;
    // The in-process fallback passes these suites too: every decision must be the cluster's.
    assert_eq!(fallbacks, 0, "decisions the cluster did not make");
    // The keys of the suites landed on more than one node: the cluster was used as one.
    let nodes: std::collections::BTreeSet<usize> = (0..12).map(|seed| cluster.node_of_key(key(seed))).collect();
    assert!(nodes.len() > 1, "{nodes:?}");
}

/// Every suite through a three-primary cluster that speaks TLS only, clients and cluster bus
/// (`rediss+cluster://`), trusted through `Options::ca_pem`: the client learns the other
/// nodes from the seeds and reaches each over TLS, checking its certificate.
#[tokio::test]
async fn the_suites_hold_through_a_redis_cluster_over_tls() {
    let dir = std::env::temp_dir().join(format!("keyward-cluster-tls-{}", std::process::id()));
    let certificates = Certificates::make(&dir);
    let cluster = keyward_ratelimit::testing::RedisCluster::start_tls(certificates.clone());
    let url = cluster.url();
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    let ca = std::fs::read(&certificates.ca).unwrap();
    let fallbacks = limiter_suite_at(&url, Some(&ca)).await
        + ledger_suite_at(&url, Some(&ca)).await
        + admission_suite_at(&url, Some(&ca)).await;
    assert_eq!(fallbacks, 0, "decisions the cluster did not make");
    let nodes: std::collections::BTreeSet<usize> = (0..12).map(|seed| cluster.node_of_key(key(seed))).collect();
    assert!(nodes.len() > 1, "{nodes:?}");
    let other = std::fs::read(&certificates.other_ca).unwrap();
    let untrusted = shared_at(&url, Some(&other));
    let rules = [rule("w", Limit::Window { limit: 3, period_seconds: 60 })];
    let _ = RedisLimiter::new(untrusted.clone()).check(b"k", &rules, 1, T0).await;
    assert_eq!(untrusted.fallbacks(), 1, "a certificate of another authority is refused");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every suite over TLS (`rediss://`), to a redis-server whose certificate the test makes
/// with openssl, trusted through `Options::ca_pem`; with another authority, nothing reaches
/// that server (every decision falls back).
#[tokio::test]
async fn the_suites_hold_over_tls() {
    let dir = std::env::temp_dir().join(format!("keyward-redis-tls-{}", std::process::id()));
    let certificates = Certificates::make(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("redis-server")
        .current_dir(&dir)
        .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .arg("--tls-cert-file")
        .arg(&certificates.server_cert)
        .arg("--tls-key-file")
        .arg(&certificates.server_key)
        .arg("--tls-ca-cert-file")
        .arg(&certificates.ca)
        .args(["--tls-auth-clients", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let url = format!("rediss://localhost:{port}");
    let ca = std::fs::read(&certificates.ca).unwrap();
    let fallbacks = limiter_suite_at(&url, Some(&ca)).await
        + ledger_suite_at(&url, Some(&ca)).await
        + admission_suite_at(&url, Some(&ca)).await;
    assert_eq!(fallbacks, 0, "decisions the TLS server did not make");
    let other = std::fs::read(&certificates.other_ca).unwrap();
    let untrusted = shared_at(&url, Some(&other));
    let rules = [rule("w", Limit::Window { limit: 3, period_seconds: 60 })];
    let _ = RedisLimiter::new(untrusted.clone()).check(b"k", &rules, 1, T0).await;
    assert_eq!(untrusted.fallbacks(), 1, "a certificate of another authority is refused");
    server.kill().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
