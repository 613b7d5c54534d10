//! Usage metering: one record per verification (and per management call made with an
//! account key), aggregated in memory and written in batches, never on the hot path.

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::{
    id::{AccountId, KeyId},
    verify::VerifyCode,
};

/// One metered request.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRecord {
    pub key_id: KeyId,
    pub account_id: AccountId,
    pub ts: OffsetDateTime,
    /// The caller's endpoint (`POST /v1/keys/verify` takes it from the body).
    pub endpoint: Option<String>,
    pub method: Option<String>,
    /// For management calls: the status Keyward answered.
    pub status_code: Option<u16>,
    pub response_time_ms: Option<u32>,
    pub ip: Option<IpAddr>,
    /// For verifications: the verdict. Management calls have none (their `status_code` says
    /// how they went).
    pub outcome: Option<VerifyCode>,
}

/// `usage` of `GET /v1/keys/{id}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageSummary {
    pub requests_today: u64,
    pub requests_this_month: u64,
}

/// `GET /v1/stats`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AccountStats {
    pub verifications_total: u64,
    pub verifications_today: u64,
    /// Share of VALID verdicts, 0–1 (0 without verifications).
    pub success_rate: f64,
    pub avg_response_time_ms: Option<f64>,
    pub by_code: std::collections::BTreeMap<String, u64>,
}

/// The first instant of `now`'s UTC day and month.
pub fn day_and_month_start(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let now = now.to_offset(time::UtcOffset::UTC);
    let day = now.replace_time(time::Time::MIDNIGHT);
    let month = day.replace_day(1).unwrap_or(day);
    (day, month)
}
