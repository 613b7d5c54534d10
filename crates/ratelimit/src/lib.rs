//! Rate limiting and quotas: the adapters of the domain's `RateLimiter` and `QuotaLedger`
//! ports.
//!
//! - [`memory`]: in-process, sharded state with bounded memory. The default, and the
//!   fallback when Redis cannot be reached.
//! - [`redis`]: shared by every instance through one Lua script per decision (one round
//!   trip, atomic for all rules of a policy), keys that expire on their own.
//!
//! [`Limits`] is what the rest of Keyward holds: whichever adapter the configuration chose.
//!
//! Architecture invariant: a decision never fails. A Redis error or timeout falls back to
//! the in-process limiter (logged at most once a minute), so limits degrade to per-instance
//! instead of turning into 500s.

pub mod memory;
pub mod redis;
#[cfg(feature = "testing")]
pub mod testing;

use std::time::Duration;

use keyward_domain::{
    KeyId, Quota,
    quota::QuotaBalance,
    ratelimit::{Admission, Decision, QuotaCharge, QuotaDecision, QuotaLedger, RateLimiter, Rule, admit_in_turn},
};
use time::OffsetDateTime;

pub use crate::{
    memory::{MemoryLedger, MemoryLimiter},
    redis::{RedisLedger, RedisLimiter},
};

/// The limiter and ledger in use.
// One per process, behind an `Arc`: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Limits {
    Memory { limiter: MemoryLimiter, ledger: MemoryLedger },
    Redis { limiter: RedisLimiter, ledger: RedisLedger },
}

impl Limits {
    pub fn in_process() -> Self {
        Self::Memory { limiter: MemoryLimiter::default(), ledger: MemoryLedger::default() }
    }

    /// Shared through Redis at `url`; works (per instance) even while Redis is down.
    pub fn redis(url: &str, timeout: Duration) -> Result<Self, ::redis::RedisError> {
        Self::redis_with(url, &redis::Options::new(timeout))
    }

    /// Like `redis`, with every option (a TLS server's certificate authorities).
    pub fn redis_with(url: &str, options: &redis::Options) -> Result<Self, ::redis::RedisError> {
        let shared = redis::Shared::open(url, options)?;
        Ok(Self::Redis { limiter: RedisLimiter::new(shared.clone()), ledger: RedisLedger::new(shared) })
    }

    /// Decisions made in this process because Redis could not be reached (see
    /// [`redis::Shared::fallbacks`]); `None` when nothing is shared.
    pub fn redis_fallbacks(&self) -> Option<u64> {
        match self {
            Self::Memory { .. } => None,
            Self::Redis { limiter, .. } => Some(limiter.shared().fallbacks()),
        }
    }
}

impl RateLimiter for Limits {
    async fn check(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        match self {
            Self::Memory { limiter, .. } => limiter.check(subject, rules, cost, now).await,
            Self::Redis { limiter, .. } => limiter.check(subject, rules, cost, now).await,
        }
    }

    async fn peek(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        match self {
            Self::Memory { limiter, .. } => limiter.peek(subject, rules, cost, now).await,
            Self::Redis { limiter, .. } => limiter.peek(subject, rules, cost, now).await,
        }
    }

    async fn check_in_instance(&self, subject: &[u8], rules: &[Rule], cost: u64, now: OffsetDateTime) -> Decision {
        match self {
            Self::Memory { limiter, .. } => limiter.check(subject, rules, cost, now).await,
            Self::Redis { limiter, .. } => limiter.check_in_instance(subject, rules, cost, now).await,
        }
    }
}

impl QuotaLedger for Limits {
    async fn spend(
        &self,
        key: KeyId,
        quota: &Quota,
        stored: Option<&QuotaBalance>,
        cost: u64,
        now: OffsetDateTime,
    ) -> QuotaDecision {
        match self {
            Self::Memory { ledger, .. } => ledger.spend(key, quota, stored, cost, now).await,
            Self::Redis { ledger, .. } => ledger.spend(key, quota, stored, cost, now).await,
        }
    }
}

impl Admission for Limits {
    async fn admit(
        &self,
        subject: &[u8],
        rules: &[Rule],
        quota: Option<QuotaCharge<'_>>,
        now: OffsetDateTime,
    ) -> (Decision, Option<QuotaDecision>) {
        match self {
            Self::Memory { limiter, ledger } => admit_in_turn(limiter, ledger, subject, rules, quota, now).await,
            Self::Redis { limiter, ledger } => limiter.admit(ledger, subject, rules, quota, now).await,
        }
    }
}
