//! The in-process limiter and ledger: state in 64 shards, each behind a mutex held only for
//! the arithmetic (never across an await), with idle entries swept when a shard grows past
//! its bound.

use std::{
    collections::HashMap,
    hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState},
    sync::{Mutex, PoisonError},
};

use keyward_domain::{
    KeyId, Quota,
    quota::{QuotaBalance, ledger_start, quota_balance},
    ratelimit::{Decision, QuotaDecision, QuotaLedger, RateLimiter, Rule, RuleState, decide, evaluate, micros},
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
    entries: HashMap<u64, Entry, BuildHasherDefault<Prehashed>>,
}

/// The shards' keys are SipHash outputs already (keyed per process, so no client can aim
/// them at one bucket): the map uses them as they are instead of hashing them again.
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }

    /// Not used for `u64` keys; mixes anything else in rather than ignore it.
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }
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
        // One rule (a tier, the verify limit: nearly every decision) needs no list.
        if let [rule] = rules {
            let key = rule_key(rule);
            let outcome = evaluate(&rule.limit, shard.entries.get(&key).map(|e| &e.state), cost, now_us);
            let decision = decide(rules, std::slice::from_ref(&outcome));
            if commit && decision.allowed {
                self.make_room(&mut shard, now_us);
                shard.entries.insert(key, Entry { state: outcome.next, idle_after: outcome.idle_after });
            }
            return decision;
        }
        let keys: Vec<u64> = rules.iter().map(rule_key).collect();
        let outcomes: Vec<_> = rules
            .iter()
            .zip(&keys)
            .map(|(rule, key)| evaluate(&rule.limit, shard.entries.get(key).map(|e| &e.state), cost, now_us))
            .collect();
        let decision = decide(rules, &outcomes);
        if commit && decision.allowed {
            self.make_room(&mut shard, now_us);
            for (key, outcome) in keys.into_iter().zip(outcomes) {
                shard.entries.insert(key, Entry { state: outcome.next, idle_after: outcome.idle_after });
            }
        }
        decision
    }

    /// Sweeps a full shard's idle entries before it grows.
    fn make_room(&self, shard: &mut Shard, now_us: i64) {
        if shard.entries.len() >= self.max_entries_per_shard {
            shard.entries.retain(|_, e| e.idle_after > now_us);
        }
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

/// In-process quota ledger: the balance of each key, per quota configuration, starting from
/// the balance storage keeps (so a restart refills nothing) and never above it.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    balances: Mutex<HashMap<(KeyId, u64), (i64, i64)>>,
}

impl MemoryLedger {
    /// This ledger's balance of `quota` for `key` at `now`, if it holds one of the current
    /// period (a new period's refill is no ceiling).
    pub fn known(&self, key: KeyId, quota: &Quota, now: OffsetDateTime) -> Option<i64> {
        let balances = self.balances.lock().unwrap_or_else(PoisonError::into_inner);
        let &(remaining, period) = balances.get(&(key, quota.fingerprint()))?;
        (quota_balance(quota, Some((remaining, period)), now).1 == period).then_some(remaining)
    }

    /// Takes `remaining` (in `period`) as the balance: what the shared ledger answered, kept
    /// so that the fallback continues from it.
    pub fn observe(&self, key: KeyId, quota: &Quota, remaining: i64, period: i64) {
        let mut balances = self.balances.lock().unwrap_or_else(PoisonError::into_inner);
        balances.insert((key, quota.fingerprint()), (remaining, period));
    }
}

impl QuotaLedger for MemoryLedger {
    async fn spend(
        &self,
        key: KeyId,
        quota: &Quota,
        stored: Option<&QuotaBalance>,
        cost: u64,
        now: OffsetDateTime,
    ) -> QuotaDecision {
        let cost = i64::try_from(cost).unwrap_or(i64::MAX);
        let (start, period, ceiling) = ledger_start(quota, stored, now);
        let slot = (key, quota.fingerprint());
        let mut balances = self.balances.lock().unwrap_or_else(PoisonError::into_inner);
        let (own, period) = match balances.get(&slot) {
            Some(&held) => quota_balance(quota, Some(held), now),
            None => (start, period),
        };
        let remaining = ceiling.map_or(own, |ceiling| own.min(ceiling));
        if remaining >= cost {
            balances.insert(slot, (remaining - cost, period));
            QuotaDecision { allowed: true, remaining: remaining - cost }
        } else {
            balances.insert(slot, (remaining, period));
            QuotaDecision { allowed: false, remaining }
        }
    }
}
