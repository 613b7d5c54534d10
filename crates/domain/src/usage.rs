//! Usage records: one per verification (and per management call made with an account
//! key), what storage keeps of them and reports from them. The meter that buffers and
//! writes them is [`crate::meter`].

use std::{collections::BTreeMap, net::IpAddr};

use time::OffsetDateTime;

use crate::{
    id::{AccountId, KeyId},
    quota::QuotaSpend,
    verdict::VerifyCode,
};

/// One metered request.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    /// The key the request was made with or about; `None` for a verification that found
    /// no key (`NOT_FOUND`), which counts in the account's statistics only (there is no key
    /// to list it under).
    pub key_id: Option<KeyId>,
    pub account_id: AccountId,
    pub ts: OffsetDateTime,
    /// The caller's endpoint (`POST /v1/keys/verify` takes it from the body).
    pub endpoint: Option<String>,
    pub method: Option<String>,
    /// For management calls: the status Keyward answered.
    pub status_code: Option<u16>,
    /// Keyward's own handling time, in microseconds (a verification takes tens of them).
    pub response_time_us: Option<u32>,
    pub ip: Option<IpAddr>,
    /// For verifications: the verdict. Management calls have none (their `status_code` says
    /// how they went).
    pub outcome: Option<VerifyCode>,
    /// The quota credits the verification spent: the flush subtracts them from the key's
    /// stored balance ([`crate::quota`]). Not kept with the record.
    pub quota_spent: Option<QuotaSpend>,
}

/// Where a stored record stands among a key's records: its time, then the order in which
/// the store kept records of the same time (`seq`, increasing). Records are listed by
/// (ts, seq) descending, so a position is an exact page boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsagePosition {
    pub ts: OffsetDateTime,
    pub seq: i64,
}

/// A stored usage record and its position.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageEntry {
    pub position: UsagePosition,
    pub record: UsageRecord,
}

/// `usage` of `GET /v1/keys/{id}`, and the dashboard's chart of a key's last days.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsageSummary {
    pub requests_today: u64,
    pub requests_this_month: u64,
    /// Requests on each of the last [`SUMMARY_DAYS`] days (UTC), oldest first, today last;
    /// empty for a key the account does not have.
    pub last_days: Vec<u64>,
}

/// How many days [`UsageSummary::last_days`] covers, today included.
pub const SUMMARY_DAYS: u16 = 30;

impl UsageSummary {
    /// The first day a summary at `now` needs the daily counts of: the month's first or the
    /// first of the last [`SUMMARY_DAYS`] days, whichever is earlier.
    pub fn first_day(now: OffsetDateTime) -> time::Date {
        let (_, month) = day_and_month_start(now);
        month.date().min(Self::first_of_last_days(now))
    }

    /// The day [`UsageSummary::last_days`] starts at, for a summary at `now`.
    pub fn first_of_last_days(now: OffsetDateTime) -> time::Date {
        let (day, _) = day_and_month_start(now);
        day.date() - time::Duration::days(i64::from(SUMMARY_DAYS) - 1)
    }

    /// The summary at `now` of a key's daily counts (days outside it are ignored): what
    /// every store computes the same way from what it keeps.
    pub fn of_days(now: OffsetDateTime, days: impl IntoIterator<Item = (time::Date, u64)>) -> Self {
        let (day, month) = day_and_month_start(now);
        let (today, month) = (day.date(), month.date());
        let first = Self::first_of_last_days(now);
        let mut summary = Self { last_days: vec![0; usize::from(SUMMARY_DAYS)], ..Self::default() };
        for (date, requests) in days {
            if date > today {
                continue;
            }
            if date >= month {
                summary.requests_this_month += requests;
            }
            if date == today {
                summary.requests_today += requests;
            }
            if date >= first {
                let index = usize::try_from((date - first).whole_days()).unwrap_or(0);
                summary.last_days[index] += requests;
            }
        }
        summary
    }
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountStats {
    pub verifications_total: u64,
    pub verifications_today: u64,
    /// Share of VALID verdicts, 0–1 (0 without verifications).
    pub success_rate: f64,
    /// The mean handling time of the verifications that carry one, in milliseconds.
    pub avg_response_time_ms: Option<f64>,
    pub by_code: std::collections::BTreeMap<String, u64>,
    /// The account's most used service keys over the last [`SUMMARY_DAYS`] days, at most
    /// [`TOP_KEYS`] of them, the most requests first (ties by key id); keys without a
    /// request in that time are not listed.
    pub top_keys: Vec<KeyUse>,
}

/// How many keys [`AccountStats::top_keys`] lists.
pub const TOP_KEYS: usize = 5;

/// A key and its requests over the last [`SUMMARY_DAYS`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUse {
    pub key_id: KeyId,
    pub requests: u64,
}

impl KeyUse {
    /// The [`TOP_KEYS`] most used of `uses`, in the order [`AccountStats::top_keys`] states.
    pub fn top(uses: impl IntoIterator<Item = KeyUse>) -> Vec<KeyUse> {
        let mut top: Vec<KeyUse> = uses.into_iter().filter(|u| u.requests > 0).collect();
        top.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.key_id.cmp(&b.key_id)));
        top.truncate(TOP_KEYS);
        top
    }
}

/// Bounds of what a caller says about its own request (`endpoint`, `method` of
/// `POST /v1/keys/verify`): stored with every usage record, so they must be text any store
/// holds, of a bounded size.
pub const MAX_ENDPOINT_LEN: usize = 1024;
pub const MAX_METHOD_LEN: usize = 32;

/// Checks the caller's `endpoint` and `method`: at most [`MAX_ENDPOINT_LEN`] /
/// [`MAX_METHOD_LEN`] bytes, no control characters (a NUL is text PostgreSQL refuses).
/// The message never echoes the value.
pub fn check_request_labels(endpoint: Option<&str>, method: Option<&str>) -> Result<(), crate::FieldErrors> {
    let mut errors = crate::FieldErrors::new();
    for (field, value, max) in [("endpoint", endpoint, MAX_ENDPOINT_LEN), ("method", method, MAX_METHOD_LEN)] {
        let Some(value) = value else { continue };
        if value.len() > max {
            errors.push(field, format!("must be at most {max} bytes"));
        } else if value.chars().any(char::is_control) {
            errors.push(field, "must not contain control characters");
        }
    }
    errors.into_result()
}

/// An elapsed time as [`UsageRecord::response_time_us`], saturating.
pub fn micros(elapsed: std::time::Duration) -> u32 {
    u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX)
}

/// The first instant of `now`'s UTC day and month.
pub fn day_and_month_start(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let now = now.to_offset(time::UtcOffset::UTC);
    let day = now.replace_time(time::Time::MIDNIGHT);
    let month = day.replace_day(1).unwrap_or(day);
    (day, month)
}

/// The credits a flush subtracts, per key: the spends of each key's latest record that
/// spent any, summed over the records of that same balance. Spends of an earlier period or
/// configuration in the same batch are left out: that balance was replaced anyway.
pub fn quota_spends_by_key(batch: &[UsageRecord]) -> BTreeMap<KeyId, QuotaSpend> {
    let mut spends: BTreeMap<KeyId, QuotaSpend> = BTreeMap::new();
    for record in batch {
        let (Some(key), Some(spend)) = (record.key_id, record.quota_spent) else { continue };
        match spends.get_mut(&key) {
            Some(total) if total.same_balance(&spend) => total.credits = total.credits.saturating_add(spend.credits),
            _ => drop(spends.insert(key, spend)),
        }
    }
    spends
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;

    #[test]
    fn a_summary_counts_today_the_month_and_each_of_the_last_thirty_days() {
        let now = datetime!(2026-12-03 17:00 UTC);
        assert_eq!(UsageSummary::first_day(now), date!(2026 - 11 - 04), "29 days back is before the 1st");
        assert_eq!(
            UsageSummary::first_day(datetime!(2026-12-31 00:00 UTC)),
            date!(2026 - 12 - 01),
            "the 1st is earlier"
        );
        let summary = UsageSummary::of_days(
            now,
            [
                (date!(2026 - 11 - 03), 100), // before the window
                (date!(2026 - 11 - 04), 7),   // its first day
                (date!(2026 - 11 - 30), 5),   // last month
                (date!(2026 - 12 - 01), 2),
                (date!(2026 - 12 - 03), 4),  // today
                (date!(2026 - 12 - 04), 50), // a clock ahead of this one: not counted
            ],
        );
        assert_eq!((summary.requests_today, summary.requests_this_month), (4, 6));
        assert_eq!(summary.last_days.len(), 30);
        assert_eq!((summary.last_days[0], summary.last_days[26], summary.last_days[27]), (7, 5, 2));
        assert_eq!(summary.last_days[29], 4);
        assert_eq!(summary.last_days.iter().sum::<u64>(), 18);
    }
}
