//! Rate limits and quotas as the domain sees them: limits as data, the arithmetic that
//! decides, and the ports adapters implement (`keyward-ratelimit`: in-process and Redis).
//!
//! A policy is one or more rules checked **all-or-nothing**: a request is admitted only if
//! every rule admits it, and a refused request consumes nothing from any rule (unlike
//! limiters that consume earlier windows before a later one refuses).

use std::{borrow::Cow, collections::VecDeque, future::Future};

use time::OffsetDateTime;

use crate::{
    id::KeyId,
    quota::{Quota, QuotaBalance},
};

/// One limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// At most `limit` per window of `period_seconds`, windows aligned to the Unix epoch (so
    /// every instance agrees where a window starts). Cheap and exact; used for tiers and
    /// custom windows.
    Window { limit: u64, period_seconds: u64 },
    /// A token bucket (GCRA): bursts of `capacity`, refilled by `refill` tokens every
    /// `refill_seconds`. Used for the management API (100 burst, 10/s per IP, …).
    Bucket { capacity: u64, refill: u64, refill_seconds: u64 },
    /// At most `limit` in any `period_seconds`, however aligned (a log of timestamps). For
    /// small limits that must be exact, such as failed logins.
    Sliding { limit: u64, period_seconds: u64 },
}

impl Limit {
    pub fn per_minute(limit: u64) -> Self {
        Self::Window { limit, period_seconds: 60 }
    }

    /// The number of requests the limit allows at once (`q` of the IETF header).
    pub fn quota(&self) -> u64 {
        match *self {
            Self::Window { limit, .. } | Self::Sliding { limit, .. } => limit,
            Self::Bucket { capacity, .. } => capacity,
        }
    }

    /// The window the quota applies to, in seconds (`w` of the IETF header): for a bucket,
    /// the time an empty bucket takes to fill.
    pub fn window_seconds(&self) -> u64 {
        match *self {
            Self::Window { period_seconds, .. } | Self::Sliding { period_seconds, .. } => period_seconds,
            Self::Bucket { capacity, refill, refill_seconds } => (capacity * refill_seconds).div_ceil(refill.max(1)),
        }
    }
}

/// A named limit of a policy. The name and the limit identify the rule's state: renaming
/// or changing a limit starts it afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: Cow<'static, str>,
    pub limit: Limit,
}

impl Rule {
    pub fn new(name: &'static str, limit: Limit) -> Self {
        Self { name: Cow::Borrowed(name), limit }
    }
}

/// What a limiter answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Of the rule that bound the answer (the refusing one, or the one with least room).
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until that rule is fully available again (a window resets, a bucket refills).
    pub reset_seconds: u64,
    /// When refused: seconds until the same request could be admitted. 0 when allowed.
    pub retry_after_seconds: u64,
    /// Index of the binding rule in the policy.
    pub rule: usize,
    pub window_seconds: u64,
}

impl Decision {
    /// The decision of an empty policy: nothing limits.
    pub const UNLIMITED: Self = Self {
        allowed: true,
        limit: u64::MAX,
        remaining: u64::MAX,
        reset_seconds: 0,
        retry_after_seconds: 0,
        rule: 0,
        window_seconds: 0,
    };
}

/// The state one rule keeps for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleState {
    Window {
        start: i64,
        count: u64,
    },
    /// Theoretical arrival time, microseconds since the epoch.
    Bucket {
        tat: i64,
    },
    Sliding {
        hits: VecDeque<i64>,
    },
}

/// One rule's verdict and the state to keep if the whole policy admits the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub allowed: bool,
    pub remaining: u64,
    pub reset_seconds: u64,
    pub retry_after_seconds: u64,
    pub next: RuleState,
    /// Microseconds since the epoch after which the state is worthless (may be dropped).
    pub idle_after: i64,
}

const MICROS: i64 = 1_000_000;

fn ceil_seconds(micros: i64) -> u64 {
    u64::try_from(micros.max(0)).unwrap_or(0).div_ceil(MICROS as u64)
}

pub fn micros(now: OffsetDateTime) -> i64 {
    i64::try_from(now.unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// The arithmetic of one rule: pure, shared by the in-process limiter and mirrored by the
/// Redis script, so both adapters answer alike.
pub fn evaluate(limit: &Limit, state: Option<&RuleState>, cost: u64, now_us: i64) -> RuleOutcome {
    match *limit {
        Limit::Window { limit, period_seconds } => {
            let period = i64::try_from(period_seconds.max(1)).unwrap_or(i64::MAX / MICROS) * MICROS;
            let start = now_us - now_us.rem_euclid(period);
            let count = match state {
                Some(RuleState::Window { start: s, count }) if *s == start => *count,
                _ => 0,
            };
            let allowed = count + cost <= limit;
            let used = if allowed { count + cost } else { count };
            let reset = ceil_seconds(start + period - now_us);
            RuleOutcome {
                allowed,
                remaining: limit.saturating_sub(used),
                reset_seconds: reset,
                retry_after_seconds: if allowed { 0 } else { reset.max(1) },
                next: RuleState::Window { start, count: used },
                idle_after: start + period,
            }
        }
        Limit::Bucket { capacity, refill, refill_seconds } => {
            // Microseconds per token, and how far ahead of now the bucket may be booked.
            let interval = (i64::try_from(refill_seconds).unwrap_or(i64::MAX / MICROS) * MICROS)
                / i64::try_from(refill.max(1)).unwrap_or(1);
            let interval = interval.max(1);
            let tolerance = interval.saturating_mul(i64::try_from(capacity).unwrap_or(i64::MAX));
            let tat = match state {
                Some(RuleState::Bucket { tat }) => (*tat).max(now_us),
                _ => now_us,
            };
            let new_tat = tat.saturating_add(interval.saturating_mul(i64::try_from(cost).unwrap_or(i64::MAX)));
            let allowed = new_tat - now_us <= tolerance;
            let booked = if allowed { new_tat } else { tat };
            let room = u64::try_from((tolerance - (booked - now_us)) / interval).unwrap_or(0);
            RuleOutcome {
                allowed,
                remaining: room.min(capacity),
                reset_seconds: ceil_seconds(booked - now_us),
                retry_after_seconds: if allowed { 0 } else { ceil_seconds(new_tat - tolerance - now_us).max(1) },
                next: RuleState::Bucket { tat: booked },
                idle_after: booked,
            }
        }
        Limit::Sliding { limit, period_seconds } => {
            let period = i64::try_from(period_seconds.max(1)).unwrap_or(i64::MAX / MICROS) * MICROS;
            let mut hits = match state {
                Some(RuleState::Sliding { hits }) => hits.clone(),
                _ => VecDeque::new(),
            };
            while hits.front().is_some_and(|t| *t <= now_us - period) {
                hits.pop_front();
            }
            let count = hits.len() as u64;
            let allowed = count + cost <= limit;
            if allowed {
                hits.extend(std::iter::repeat_n(now_us, usize::try_from(cost).unwrap_or(0)));
            }
            let oldest = hits.front().copied().unwrap_or(now_us);
            // When refused, the request fits once enough of the oldest hits have aged out.
            let needed = usize::try_from((count + cost).saturating_sub(limit)).unwrap_or(usize::MAX);
            let freeing = hits.get(needed.saturating_sub(1)).copied().unwrap_or(oldest);
            RuleOutcome {
                allowed,
                remaining: limit.saturating_sub(hits.len() as u64),
                reset_seconds: if hits.is_empty() {
                    0
                } else {
                    ceil_seconds(hits.back().copied().unwrap_or(now_us) + period - now_us)
                },
                retry_after_seconds: if allowed { 0 } else { ceil_seconds(freeing + period - now_us).max(1) },
                idle_after: hits.back().copied().unwrap_or(now_us) + period,
                next: RuleState::Sliding { hits },
            }
        }
    }
}

/// Combines the rules' outcomes: refused if any refuses (binding: the longest wait);
/// otherwise admitted, binding the rule with the least room left.
pub fn decide(rules: &[Rule], outcomes: &[RuleOutcome]) -> Decision {
    let pick = |i: usize| {
        let o = &outcomes[i];
        Decision {
            allowed: o.allowed,
            limit: rules[i].limit.quota(),
            remaining: o.remaining,
            reset_seconds: o.reset_seconds,
            retry_after_seconds: o.retry_after_seconds,
            rule: i,
            window_seconds: rules[i].limit.window_seconds(),
        }
    };
    let refused =
        (0..outcomes.len()).filter(|i| !outcomes[*i].allowed).max_by_key(|i| outcomes[*i].retry_after_seconds);
    match refused {
        Some(i) => Decision { allowed: false, ..pick(i) },
        None => (0..outcomes.len()).min_by_key(|i| outcomes[*i].remaining).map_or(Decision::UNLIMITED, pick),
    }
}

/// The rate limiter port. Implementations MUST check every rule of `rules` atomically and
/// all-or-nothing, and MUST always answer: when their backing store fails, they fall back
/// (to an in-process limiter) rather than fail the request.
pub trait RateLimiter: Send + Sync {
    /// Decides and, if admitted, consumes `cost` from every rule.
    fn check(
        &self,
        subject: &[u8],
        rules: &[Rule],
        cost: u64,
        now: OffsetDateTime,
    ) -> impl Future<Output = Decision> + Send;

    /// Decides without consuming anything.
    fn peek(
        &self,
        subject: &[u8],
        rules: &[Rule],
        cost: u64,
        now: OffsetDateTime,
    ) -> impl Future<Output = Decision> + Send;

    /// [`check`](Self::check), decided by this instance alone: for limits that protect an
    /// instance rather than meter a customer, where being exact across instances buys
    /// nothing and a round trip to shared state costs every request. An in-process limiter
    /// answers `check` here already.
    fn check_in_instance(
        &self,
        subject: &[u8],
        rules: &[Rule],
        cost: u64,
        now: OffsetDateTime,
    ) -> impl Future<Output = Decision> + Send {
        self.check(subject, rules, cost, now)
    }
}

/// A quota's answer: admitted or not, and the credits left afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    pub allowed: bool,
    pub remaining: i64,
}

/// What admits a verification: the rate limiter and the quota ledger, which every limits
/// adapter provides together. A name for the pair, so adapters that hold one (the HTTP
/// layer) say it once.
pub trait Admission: RateLimiter + QuotaLedger + std::fmt::Debug + 'static {
    /// What a verification spends: one request of `rules` and then, only if they admit, the
    /// `quota` charge (`None` when refused first, or without a quota). The default decides
    /// them in turn; an adapter that can decide both at once (one Redis round trip) does.
    fn admit(
        &self,
        subject: &[u8],
        rules: &[Rule],
        quota: Option<QuotaCharge<'_>>,
        now: OffsetDateTime,
    ) -> impl Future<Output = (Decision, Option<QuotaDecision>)> + Send {
        admit_in_turn(self, self, subject, rules, quota, now)
    }
}

/// [`Admission::admit`] as two decisions in turn: `limiter` checks one request of `rules`,
/// then, only if it admitted, `ledger` spends the charge.
pub async fn admit_in_turn(
    limiter: &(impl RateLimiter + ?Sized),
    ledger: &(impl QuotaLedger + ?Sized),
    subject: &[u8],
    rules: &[Rule],
    quota: Option<QuotaCharge<'_>>,
    now: OffsetDateTime,
) -> (Decision, Option<QuotaDecision>) {
    let decision = limiter.check(subject, rules, 1, now).await;
    let spent = match quota {
        Some(c) if decision.allowed => Some(ledger.spend(c.key, c.quota, c.stored, c.cost, now).await),
        _ => None,
    };
    (decision, spent)
}

/// The quota a verification spends from, with [`Admission::admit`].
#[derive(Debug, Clone, Copy)]
pub struct QuotaCharge<'a> {
    pub key: KeyId,
    pub quota: &'a Quota,
    /// The balance storage keeps ([`QuotaLedger::spend`]).
    pub stored: Option<&'a QuotaBalance>,
    pub cost: u64,
}

/// Spends quota credits. Implementations MUST be atomic per key (no two spends of the last
/// credit both succeed) and MUST always answer, like `RateLimiter`.
pub trait QuotaLedger: Send + Sync {
    /// Spends `cost` if the balance allows it. For each distinct quota configuration of the
    /// key (`PATCH`ing the quota sets a new balance), the ledger starts from `stored` (the
    /// balance storage keeps) or else from `quota.remaining`, and never holds more than
    /// `stored` ([`crate::quota::ledger_start`]).
    fn spend(
        &self,
        key: KeyId,
        quota: &Quota,
        stored: Option<&QuotaBalance>,
        cost: u64,
        now: OffsetDateTime,
    ) -> impl Future<Output = QuotaDecision> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000 * MICROS;

    fn run(limit: Limit, times_and_costs: &[(i64, u64)]) -> Vec<RuleOutcome> {
        let mut state = None;
        let mut out = Vec::new();
        for &(t, cost) in times_and_costs {
            let o = evaluate(&limit, state.as_ref(), cost, t);
            if o.allowed {
                state = Some(o.next.clone());
            }
            out.push(o);
        }
        out
    }

    #[test]
    fn windows_admit_exactly_the_limit_and_reset_on_the_boundary() {
        let limit = Limit::Window { limit: 3, period_seconds: 60 };
        let start = T0 - T0.rem_euclid(60 * MICROS);
        let at = |s: i64| start + s * MICROS;
        let out = run(limit, &[(at(10), 1), (at(11), 1), (at(12), 1), (at(13), 1), (at(60), 1)]);
        assert_eq!(out.iter().map(|o| o.allowed).collect::<Vec<_>>(), [true, true, true, false, true]);
        assert_eq!(out[2].remaining, 0);
        assert_eq!(out[3].retry_after_seconds, 47);
        assert_eq!(out[4].remaining, 2);
    }

    #[test]
    fn buckets_burst_then_refill() {
        let limit = Limit::Bucket { capacity: 100, refill: 10, refill_seconds: 1 };
        let burst: Vec<(i64, u64)> = (0..101).map(|_| (T0, 1)).collect();
        let out = run(limit, &burst);
        assert!(out[..100].iter().all(|o| o.allowed));
        assert!(!out[100].allowed);
        assert_eq!(out[100].retry_after_seconds, 1);
        // 0.1 s later exactly one token is back.
        let mut state = Some(out[99].next.clone());
        let o = evaluate(&limit, state.as_ref(), 1, T0 + MICROS / 10);
        assert!(o.allowed);
        state = Some(o.next);
        assert!(!evaluate(&limit, state.as_ref(), 1, T0 + MICROS / 10).allowed);
    }

    #[test]
    fn sliding_logs_are_exact_at_any_alignment() {
        let limit = Limit::Sliding { limit: 5, period_seconds: 900 };
        let mut calls: Vec<(i64, u64)> = (0..5).map(|i| (T0 + i * 60 * MICROS, 1)).collect();
        calls.push((T0 + 899 * MICROS, 1));
        calls.push((T0 + 900 * MICROS, 1));
        let out = run(limit, &calls);
        assert!(out[..5].iter().all(|o| o.allowed));
        assert!(!out[5].allowed);
        assert_eq!(out[5].retry_after_seconds, 1);
        assert!(out[6].allowed, "the first hit aged out");
    }

    #[test]
    fn refused_costs_do_not_consume() {
        let limit = Limit::Window { limit: 10, period_seconds: 60 };
        let out = run(limit, &[(T0, 8), (T0, 3), (T0, 2)]);
        assert_eq!(out.iter().map(|o| o.allowed).collect::<Vec<_>>(), [true, false, true]);
        assert_eq!(out[2].remaining, 0);
    }
}
