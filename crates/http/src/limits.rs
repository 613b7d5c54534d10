//! Rate limits of the HTTP API (SPEC §5): token buckets per IP, per key and per account, and
//! hourly sub-limits per account on the riskiest endpoints, for the management API; a
//! separate, generous bucket per account for verification. All configurable.
//!
//! With Redis, the management limits are shared by every instance. The verification bucket
//! is kept by each instance alone: it protects an instance's capacity (which grows with the
//! instances) rather than metering a customer, and a Redis round trip for it would cost
//! every verification. The limits and quotas of the keys being verified stay shared.
//!
//! Every response of a limited route carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
//! `X-RateLimit-Reset` (Unix seconds) and the IETF `RateLimit-Policy` / `RateLimit` fields of
//! the most constraining limit it met; a 429 adds `Retry-After` and, in the envelope,
//! `tier` and `retry_after_seconds`.

use actix_web::{HttpMessage, HttpRequest};
use keyward_domain::ratelimit::{Decision, Limit, RateLimiter, Rule};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::{
    error::{ApiError, ErrorCode},
    headers::RateLimitSeen,
};

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketSetting {
    pub burst: u64,
    pub per_second: u64,
}

impl BucketSetting {
    fn rule(self, name: &'static str) -> Rule {
        Rule::new(name, Limit::Bucket { capacity: self.burst, refill: self.per_second, refill_seconds: 1 })
    }
}

/// A sub-limit on one endpoint, per account: `limit` per `period_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSetting {
    pub method: String,
    /// The route as written in the API reference, e.g. `/v1/keys/{id}/rotate`.
    pub path: String,
    pub limit: u64,
    pub period_seconds: u64,
}

/// The HTTP API's limits; SPEC §5 defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiLimits {
    pub ip: BucketSetting,
    pub key: BucketSetting,
    pub account: BucketSetting,
    /// `POST /v1/keys/verify`, per calling account (not the management limits).
    pub verify: BucketSetting,
    pub endpoints: Vec<EndpointSetting>,
    /// Keys `POST /v1/keys/import` may bring in per account, counted per key (an import is
    /// a way to create usable keys, so it has a creation budget too; it is larger than
    /// `POST /v1/keys`'s because one import carries up to 1,000 keys of a migration).
    pub imported_keys: ItemSetting,
    /// Strings in public leak reports (`POST /v1/leaks/revoke`, up to 100 a report) per
    /// client address (its /64 for IPv6), counted per string: each may cost a lookup.
    pub leak_reports: ItemSetting,
}

/// A budget counted per item (per imported key), per account: `limit` per `period_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemSetting {
    pub limit: u64,
    pub period_seconds: u64,
}

impl Default for ApiLimits {
    fn default() -> Self {
        let hourly = |method: &str, path: &str, limit| EndpointSetting {
            method: method.into(),
            path: path.into(),
            limit,
            period_seconds: 3_600,
        };
        Self {
            ip: BucketSetting { burst: 100, per_second: 10 },
            key: BucketSetting { burst: 1_000, per_second: 100 },
            account: BucketSetting { burst: 5_000, per_second: 500 },
            verify: BucketSetting { burst: 20_000, per_second: 10_000 },
            endpoints: vec![
                hourly("POST", "/v1/keys", 100),
                hourly("DELETE", "/v1/keys/{id}", 100),
                hourly("POST", "/v1/keys/{id}/rotate", 10),
                hourly("POST", "/v1/account/keys", 10),
                hourly("POST", "/v1/account/keys/{id}/rotate", 10),
                // An endpoint's URL is where this server sends requests: changing it is
                // creating it anew, under the same budget (above the 20 endpoints an
                // account may have, so that limit is the one a new account meets).
                hourly("POST", "/v1/webhooks", 30),
                hourly("PATCH", "/v1/webhooks/{id}", 30),
                hourly("POST", "/v1/webhooks/{id}/rotate-secret", 10),
            ],
            imported_keys: ItemSetting { limit: 10_000, period_seconds: 3_600 },
            leak_reports: ItemSetting { limit: 100, period_seconds: 60 },
        }
    }
}

/// Checks one limit for the request; records it for the headers and refuses with 429.
pub(crate) async fn enforce(
    limits: &impl RateLimiter,
    req: &HttpRequest,
    tier: &'static str,
    subject: &[u8],
    rules: &[Rule],
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    enforce_cost(limits, req, tier, subject, rules, 1, now).await
}

/// [`enforce`] for a request that spends `cost` units of the limit at once.
pub(crate) async fn enforce_cost(
    limits: &impl RateLimiter,
    req: &HttpRequest,
    tier: &'static str,
    subject: &[u8],
    rules: &[Rule],
    cost: u64,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let decision = limits.check(subject, rules, cost, now).await;
    record(req, tier, decision, now)
}

/// [`enforce`] for a limit this instance keeps alone ([`RateLimiter::check_in_instance`]).
pub(crate) async fn enforce_in_instance(
    limits: &impl RateLimiter,
    req: &HttpRequest,
    tier: &'static str,
    subject: &[u8],
    rules: &[Rule],
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let decision = limits.check_in_instance(subject, rules, 1, now).await;
    record(req, tier, decision, now)
}

/// Records `decision` for the response's headers, if it is the tightest so far (a refusal
/// is the caller's to answer).
pub(crate) fn note(req: &HttpRequest, tier: &'static str, decision: Decision, now: OffsetDateTime) {
    let _ = record(req, tier, decision, now);
}

/// Records `decision` for the response's headers, if it is the tightest so far, and turns
/// a refusal into a 429.
fn record(req: &HttpRequest, tier: &'static str, decision: Decision, now: OffsetDateTime) -> Result<(), ApiError> {
    let seen = RateLimitSeen {
        tier,
        decision,
        reset_at: now.unix_timestamp() + i64::try_from(decision.reset_seconds).unwrap_or(i64::MAX / 2),
    };
    let mut extensions = req.extensions_mut();
    let tighter = match extensions.get::<RateLimitSeen>() {
        Some(previous) => !decision.allowed || decision.remaining < previous.decision.remaining,
        None => true,
    };
    if tighter {
        extensions.insert(seen);
    }
    drop(extensions);
    if decision.allowed {
        Ok(())
    } else {
        Err(ApiError {
            retry: Some((tier, decision.retry_after_seconds)),
            ..ApiError::new(ErrorCode::RateLimited, format!("rate limit exceeded ({tier}); retry later"))
        })
    }
}

impl ApiLimits {
    pub(crate) fn ip_rules(&self) -> [Rule; 1] {
        [self.ip.rule("ip")]
    }

    pub(crate) fn key_rules(&self) -> [Rule; 1] {
        [self.key.rule("key")]
    }

    pub(crate) fn account_rules(&self) -> [Rule; 1] {
        [self.account.rule("account")]
    }

    pub(crate) fn verify_rules(&self) -> [Rule; 1] {
        [self.verify.rule("verify")]
    }

    pub(crate) fn imported_keys_rules(&self) -> [Rule; 1] {
        let ItemSetting { limit, period_seconds } = self.imported_keys;
        [Rule::new("imported_keys", Limit::Window { limit, period_seconds })]
    }

    pub(crate) fn leak_report_rules(&self) -> [Rule; 1] {
        let ItemSetting { limit, period_seconds } = self.leak_reports;
        [Rule::new("leak_reports", Limit::Window { limit, period_seconds })]
    }

    /// The sub-limit of the route this request matched, if it has one.
    pub(crate) fn endpoint_rules(&self, req: &HttpRequest) -> Option<(String, [Rule; 1])> {
        let pattern = req.match_pattern()?;
        let method = req.method().as_str();
        self.endpoints.iter().find(|e| e.path == pattern && e.method.eq_ignore_ascii_case(method)).map(|e| {
            let rule = Rule::new("endpoint", Limit::Window { limit: e.limit, period_seconds: e.period_seconds });
            (format!("{method} {pattern}"), [rule])
        })
    }
}
