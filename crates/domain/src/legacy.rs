//! Guessing imported legacy keys online. A string that is not a native key (no prefix, no
//! checksum to refuse it first) costs a lookup; a caller who sends many that match nothing
//! is guessing. Such misses are counted per calling account and per client (/64 for IPv6),
//! and past their budgets legacy strings are refused before any lookup.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::{
    id::AccountId,
    ratelimit::{Limit, RateLimiter, Rule},
    throttle::client_subnet,
};

/// The budgets of failed legacy lookups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyMissLimits {
    /// Per calling account: generous, since one SaaS verifies for all its customers.
    pub per_account: Limit,
    /// Per client address (the `ip` a verification names, or the caller's own).
    pub per_client: Limit,
}

impl Default for LegacyMissLimits {
    fn default() -> Self {
        Self {
            per_account: Limit::Bucket { capacity: 1_000, refill: 10, refill_seconds: 1 },
            per_client: Limit::Bucket { capacity: 100, refill: 1, refill_seconds: 1 },
        }
    }
}

/// The limiter subjects and rules one legacy lookup is counted under.
fn budgets(limits: &LegacyMissLimits, account: Option<AccountId>, client: Option<IpAddr>) -> Vec<(Vec<u8>, Rule)> {
    let mut out = Vec::with_capacity(2);
    if let Some(account) = account {
        out.push((format!("legacy-miss:{account}").into_bytes(), Rule::new("legacy_account", limits.per_account)));
    }
    if let Some(ip) = client {
        out.push((
            format!("legacy-miss:{}", client_subnet(ip)).into_bytes(),
            Rule::new("legacy_client", limits.per_client),
        ));
    }
    out
}

/// `Err(retry_after_seconds)` when a budget is spent: the lookup must not happen.
pub async fn admit<L: RateLimiter>(
    limiter: &L,
    limits: &LegacyMissLimits,
    account: Option<AccountId>,
    client: Option<IpAddr>,
    now: OffsetDateTime,
) -> Result<(), u64> {
    for (subject, rule) in budgets(limits, account, client) {
        let decision = limiter.peek(&subject, std::slice::from_ref(&rule), 1, now).await;
        if !decision.allowed {
            return Err(decision.retry_after_seconds.max(1));
        }
    }
    Ok(())
}

/// Counts one failed lookup against every budget.
pub async fn count_miss<L: RateLimiter>(
    limiter: &L,
    limits: &LegacyMissLimits,
    account: Option<AccountId>,
    client: Option<IpAddr>,
    now: OffsetDateTime,
) {
    for (subject, rule) in budgets(limits, account, client) {
        limiter.check(&subject, std::slice::from_ref(&rule), 1, now).await;
    }
}
