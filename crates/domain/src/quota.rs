//! Durable quota balances. A ledger (Redis, or memory) decides each spend; the usage flush
//! subtracts the credits spent from the balance kept with the key in storage. A ledger that
//! has nothing of its own for a key — after a restart, when Redis lost its data or let an
//! idle entry expire, during a Redis outage's in-process fallback — starts from that stored
//! balance instead of the configured one, so none of these refills a quota; and a ledger
//! whose own balance is above the stored one (Redis after an outage whose spends it never
//! saw) comes down to it. Quotas are money: a balance may lag by the flush interval, never
//! go back up.

use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefillInterval {
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refill {
    pub amount: i64,
    pub interval: RefillInterval,
}

/// Credits a key may spend; each verification spends its `cost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub remaining: i64,
    #[serde(default)]
    pub refill: Option<Refill>,
}

/// Which refill period `now` is in: days or months since the epoch (UTC), so the balance is
/// replaced at 00:00 UTC.
pub fn refill_period(interval: RefillInterval, now: OffsetDateTime) -> i64 {
    let now = now.to_offset(time::UtcOffset::UTC);
    match interval {
        RefillInterval::Day => now.unix_timestamp().div_euclid(86_400),
        RefillInterval::Month => i64::from(now.year()) * 12 + i64::from(u8::from(now.month())) - 1,
    }
}

/// The balance at `now` of a quota whose ledger last saw `stored` = (remaining, period).
pub fn quota_balance(quota: &Quota, stored: Option<(i64, i64)>, now: OffsetDateTime) -> (i64, i64) {
    let period = quota.refill.map_or(0, |r| refill_period(r.interval, now));
    match (stored, quota.refill) {
        (Some((remaining, at)), Some(_)) if at == period => (remaining, period),
        (Some(_), Some(refill)) => (refill.amount, period),
        (Some((remaining, _)), None) => (remaining, period),
        (None, _) => (quota.remaining, period),
    }
}

/// A key's quota balance as storage last knew it: `remaining` credits in refill `period`
/// (0 without refills) of the quota configuration `fingerprint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaBalance {
    pub fingerprint: u64,
    pub period: i64,
    pub remaining: i64,
}

/// Credits one verification (or one flush's worth of them) spent, and what the stored
/// balance needs to apply them: the configuration's starting balance and refill amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuotaSpend {
    pub fingerprint: u64,
    pub period: i64,
    pub credits: i64,
    /// The configured balance: where a configuration storage has not seen yet starts.
    pub configured: i64,
    /// The refill amount: where a new period starts.
    pub refill: Option<i64>,
}

impl Quota {
    /// A stable fingerprint of the configuration (FNV-1a over its fields: the same on every
    /// instance and across restarts, unlike std's hasher). A ledger starts afresh when it
    /// changes: `PATCH`ing a quota sets a new balance.
    pub fn fingerprint(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |value: i64| {
            for byte in value.to_le_bytes() {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        };
        mix(self.remaining);
        match self.refill {
            Some(refill) => {
                mix(refill.amount);
                mix(match refill.interval {
                    RefillInterval::Day => 1,
                    RefillInterval::Month => 2,
                });
            }
            None => mix(0),
        }
        hash
    }
}

impl QuotaSpend {
    /// `credits` spent at `now` from `quota`.
    pub fn of(quota: &Quota, credits: u64, now: OffsetDateTime) -> Self {
        Self {
            fingerprint: quota.fingerprint(),
            period: quota.refill.map_or(0, |r| refill_period(r.interval, now)),
            credits: i64::try_from(credits).unwrap_or(i64::MAX),
            configured: quota.remaining,
            refill: quota.refill.map(|r| r.amount),
        }
    }

    /// Whether `other` spends from the same balance (configuration and period).
    pub fn same_balance(&self, other: &Self) -> bool {
        (self.fingerprint, self.period) == (other.fingerprint, other.period)
    }
}

impl QuotaBalance {
    /// The stored balance after `spend`, computed the same way by every store. Spends of a
    /// period older than the stored one change nothing (that balance was replaced); a new
    /// period starts from the refill amount, a new configuration from its balance. Never
    /// below zero (instances without a shared ledger may together spend past it).
    pub fn after(stored: Option<QuotaBalance>, spend: &QuotaSpend) -> QuotaBalance {
        let start = match stored {
            Some(s) if s.fingerprint != spend.fingerprint => spend.configured,
            Some(s) if s.period == spend.period => s.remaining,
            Some(s) if s.period > spend.period => return s,
            Some(s) => spend.refill.unwrap_or(s.remaining),
            None => spend.configured,
        };
        QuotaBalance {
            fingerprint: spend.fingerprint,
            period: spend.period,
            remaining: start.saturating_sub(spend.credits).max(0),
        }
    }
}

/// Where a ledger that has nothing of its own for `quota` starts at `now`, in which period,
/// and the ceiling of a balance it does have (`None`: no ceiling): all from `stored`, when
/// storage has a balance of this configuration.
pub fn ledger_start(quota: &Quota, stored: Option<&QuotaBalance>, now: OffsetDateTime) -> (i64, i64, Option<i64>) {
    let fingerprint = quota.fingerprint();
    let stored = stored.filter(|s| s.fingerprint == fingerprint);
    let (start, period) = quota_balance(quota, stored.map(|s| (s.remaining, s.period)), now);
    let ceiling = stored.filter(|s| s.period == period).map(|s| s.remaining);
    (start, period, ceiling)
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-03-15 12:00 UTC);

    fn monthly() -> Quota {
        Quota { remaining: 100, refill: Some(Refill { amount: 1000, interval: RefillInterval::Month }) }
    }

    #[test]
    fn spends_come_off_the_stored_balance_of_their_period() {
        let quota = monthly();
        let spend = QuotaSpend::of(&quota, 30, NOW);
        let first = QuotaBalance::after(None, &spend);
        assert_eq!(first.remaining, 70, "a configuration storage has not seen starts from its balance");
        assert_eq!(QuotaBalance::after(Some(first), &spend).remaining, 40);
        let next_month = QuotaSpend::of(&quota, 30, datetime!(2026-04-01 00:00 UTC));
        let refilled = QuotaBalance::after(Some(first), &next_month);
        assert_eq!(refilled.remaining, 970, "a new period starts from the refill");
        assert_eq!(QuotaBalance::after(Some(refilled), &spend), refilled, "a late spend of March changes nothing");
        let repriced = Quota { remaining: 5, refill: None };
        let other = QuotaBalance::after(Some(first), &QuotaSpend::of(&repriced, 9, NOW));
        assert_eq!((other.remaining, other.period), (0, 0), "a new configuration starts afresh, never below zero");
    }

    #[test]
    fn a_ledger_starts_from_the_stored_balance_and_never_above_it() {
        let quota = monthly();
        let period = refill_period(RefillInterval::Month, NOW);
        assert_eq!(ledger_start(&quota, None, NOW), (100, period, None), "nothing stored: the configuration");
        let stored = QuotaBalance { fingerprint: quota.fingerprint(), period, remaining: 7 };
        assert_eq!(ledger_start(&quota, Some(&stored), NOW), (7, period, Some(7)));
        let last_month = QuotaBalance { period: period - 1, ..stored };
        assert_eq!(ledger_start(&quota, Some(&last_month), NOW), (1000, period, None), "refilled since");
        let other_configuration = QuotaBalance { fingerprint: 1, ..stored };
        assert_eq!(ledger_start(&quota, Some(&other_configuration), NOW), (100, period, None));
        let once = Quota { remaining: 50, refill: None };
        let spent = QuotaBalance { fingerprint: once.fingerprint(), period: 0, remaining: 0 };
        assert_eq!(ledger_start(&once, Some(&spent), NOW), (0, 0, Some(0)), "an exhausted quota stays exhausted");
    }

    #[test]
    fn quotas_refill_at_midnight_utc() {
        use time::macros::datetime;
        let quota = Quota { remaining: 10, refill: Some(Refill { amount: 7, interval: RefillInterval::Day }) };
        let evening = datetime!(2026-03-01 23:59:59 UTC);
        let (balance, period) = quota_balance(&quota, None, evening);
        assert_eq!(balance, 10);
        assert_eq!(quota_balance(&quota, Some((1, period)), evening), (1, period));
        let midnight = datetime!(2026-03-02 00:00:00 UTC);
        assert_eq!(quota_balance(&quota, Some((1, period)), midnight).0, 7);
        let monthly = Quota { remaining: 5, refill: Some(Refill { amount: 50, interval: RefillInterval::Month }) };
        let (_, march) = quota_balance(&monthly, None, evening);
        assert_eq!(quota_balance(&monthly, Some((0, march)), datetime!(2026-03-31 23:00 UTC)).0, 0);
        assert_eq!(quota_balance(&monthly, Some((0, march)), datetime!(2026-04-01 00:00 UTC)).0, 50);
    }
}
