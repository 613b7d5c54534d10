//! The in-process limiter and ledger: state in 64 shards, each behind a mutex held only for
//! the arithmetic (never across an await), with idle entries swept when a shard grows past
//! its bound.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, Hasher, RandomState},
    sync::{Mutex, PoisonError},
};

use keyward_domain::{
    KeyId, Quota,
    ratelimit::{
        Decision, QuotaDecision, QuotaLedger, RateLimiter, Rule, RuleState, decide, evaluate, micros, quota_balance,
    },
};
use time::OffsetDateTime;

const SHARDS: usize = 64;

#[derive(Debug)]
struct Entry {
    state: RuleState,
    idle_after: i64,
}

#[derive(Debug, Default)]
struct Shard {
    entries: HashMap<u64, Entry>,
}

/// In-process rate limiter.
#[derive(Debug)]
pub struct MemoryLimiter {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    /// Entries a shard keeps before sweeping idle ones.
    max_entries_per_shard: usize,
}

impl Default for MemoryLimiter {
    /// Room for about a million active (subject, rule) pairs before sweeping.
    fn default() -> Self {
        Self::with_capacity(1 << 20)
    }
}

impl MemoryLimiter {
    pub fn with_capacity(entries: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: RandomState::new(),
            max_entries_per_shard: (entries / SHARDS).max(16),
        }
    }

    /// Entries held now (for tests and metrics).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).entries.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn decide(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime, commit: bool) -> Decision {
        if rules.is_empty() {
            return Decision::UNLIMITED;
        }
        let now_us = micros(now);
        let subject_hash = self.hasher.hash_one(subject);
        // A rule is known by its name and parameters: changing a limit starts it afresh.
        let rule_key = |rule: &Rule| {
            let mut h = self.hasher.build_hasher();
            subject_hash.hash(&mut h);
            rule.name.hash(&mut h);
            rule.limit.hash(&mut h);
            h.finish()
        };
        // All rules of a subject live in one shard, so one lock makes the policy atomic.
        let shard = &self.shards[(subject_hash as usize) % SHARDS];
        let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
        let outcomes: Vec<_> = rules
            .iter()
            .map(|rule| evaluate(&rule.limit, shard.entries.get(&rule_key(rule)).map(|e| &e.state), cost, now_us))
            .collect();
        let decision = decide(rules, &outcomes);
        if commit && decision.allowed {
            if shard.entries.len() >= self.max_entries_per_shard {
                shard.entries.retain(|_, e| e.idle_after > now_us);
            }
            for (rule, outcome) in rules.iter().zip(outcomes) {
                shard.entries.insert(rule_key(rule), Entry { state: outcome.next, idle_after: outcome.idle_after });
            }
        }
        decision
    }
}

impl RateLimiter for MemoryLimiter {
    async fn check(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        self.decide(subject, rules, cost, now, true)
    }

    async fn peek(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        self.decide(subject, rules, cost, now, false)
    }
}

impl MemoryLimiter {
    /// The synchronous form of `check`, for callers outside an async context (benchmarks).
    pub fn check_now(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        self.decide(subject, rules, cost, now, true)
    }
}

/// In-process quota ledger: the balance of each key, per quota configuration.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    balances: Mutex<HashMap<(KeyId, u64), (i64, i64)>>,
}

impl QuotaLedger for MemoryLedger {
    async fn spend(&self, key: KeyId, quota: &Quota, cost: u64, now: OffsetDateTime) -> QuotaDecision {
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        let slot = (key, crate::quota_fingerprint(quota));
        let mut balances = self.balances.lock().unwrap_or_else(PoisonError::into_inner);
        let (remaining, period) = quota_balance(quota, balances.get(&slot).copied(), now);
        if remaining >= cost {
            balances.insert(slot, (remaining - cost, period));
            QuotaDecision { allowed: true, remaining: remaining - cost }
        } else {
            balances.insert(slot, (remaining, period));
            QuotaDecision { allowed: false, remaining }
        }
    }
}
