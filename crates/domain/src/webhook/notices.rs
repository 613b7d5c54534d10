//! Notices: events no request causes — a key about to expire, a quota running low or out —
//! found by a periodic scan and sent once per key and threshold. A notice's mark names the
//! threshold it was sent for; storage keeps the marks, so a scan on another instance, or
//! the next one, sends nothing twice.

use time::{Duration, OffsetDateTime};

use crate::quota::{Quota, QuotaBalance, refill_period};

/// When `key.expiring` is sent, and how low a quota is `quota.low` (`[webhooks]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeSettings {
    /// How long before its expiry a key is announced, once per lead time; the shortest
    /// that applies when the scan finds it (a key made to expire in two days hears of the
    /// one-day lead only when that comes).
    pub expiring_leads: Vec<Duration>,
    /// A quota at or below this share of its configured amount is low.
    pub quota_low_percent: u8,
}

impl Default for NoticeSettings {
    fn default() -> Self {
        Self { expiring_leads: vec![Duration::days(7), Duration::days(1)], quota_low_percent: 10 }
    }
}

impl NoticeSettings {
    /// The lead times, shortest first.
    pub fn leads_ascending(&self) -> Vec<Duration> {
        let mut leads = self.expiring_leads.clone();
        leads.sort();
        leads.dedup();
        leads
    }
}

/// The mark of a `key.expiring` notice: the expiry it announced and the lead time.
pub fn expiry_mark(expires_at: OffsetDateTime, lead: Duration) -> String {
    format!("{}:{}", expires_at.unix_timestamp(), lead.whole_seconds())
}

/// The mark of a quota notice: the configuration and refill period it was sent for.
pub fn quota_mark(balance: QuotaBalance) -> String {
    format!("{}:{}", balance.fingerprint.cast_signed(), balance.period)
}

/// The configured amount a quota's balance is measured against: a refill's amount, else
/// the starting balance.
pub fn configured_amount(quota: &Quota) -> i64 {
    quota.refill.map_or(quota.remaining, |r| r.amount)
}

/// Whether `balance` is of `quota`'s current configuration and refill period at `now`
/// (a balance of an older period has been refilled since).
pub fn is_current(quota: &Quota, balance: QuotaBalance, now: OffsetDateTime) -> bool {
    let period = quota.refill.map_or(0, |r| refill_period(r.interval, now));
    balance.fingerprint == quota.fingerprint() && balance.period == period
}

/// Whether `balance` is at or below `percent` % of what `quota` grants.
pub fn is_low(quota: &Quota, balance: QuotaBalance, percent: u8) -> bool {
    balance.remaining * 100 <= i64::from(percent) * configured_amount(quota)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quota::{Refill, RefillInterval};

    #[test]
    fn a_balance_is_low_against_its_refill_or_its_start() {
        let once = Quota { remaining: 1000, refill: None };
        let monthly = Quota { remaining: 50, refill: Some(Refill { amount: 200, interval: RefillInterval::Month }) };
        let balance = |remaining| QuotaBalance { fingerprint: 0, period: 0, remaining };
        assert!(is_low(&once, balance(100), 10) && !is_low(&once, balance(101), 10));
        assert!(is_low(&monthly, balance(20), 10) && !is_low(&monthly, balance(21), 10));
        assert!(is_low(&once, balance(0), 0) && !is_low(&once, balance(1), 0), "0 %: exhausted");
    }

    #[test]
    fn a_balance_of_another_period_or_configuration_is_not_current() {
        let now = time::macros::datetime!(2026-03-15 12:00 UTC);
        let monthly = Quota { remaining: 50, refill: Some(Refill { amount: 200, interval: RefillInterval::Month }) };
        let period = refill_period(RefillInterval::Month, now);
        let balance = QuotaBalance { fingerprint: monthly.fingerprint(), period, remaining: 0 };
        assert!(is_current(&monthly, balance, now));
        assert!(!is_current(&monthly, QuotaBalance { period: period - 1, ..balance }, now));
        assert!(!is_current(&monthly, QuotaBalance { fingerprint: 1, ..balance }, now));
        assert_eq!(expiry_mark(now, Duration::days(1)), format!("{}:86400", now.unix_timestamp()));
    }
}
