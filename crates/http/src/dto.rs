//! The JSON shapes of the API. Requests reject unknown fields; responses are built from
//! domain values here and nowhere else (this file and `dto/`, by concern), so the wire
//! format is one room to read.

mod keys;
mod keyspaces;
mod reports;
pub mod schema;
mod webhooks;

pub use keys::*;
pub use keyspaces::*;
pub use reports::*;
pub use webhooks::*;

use keyward_domain::{
    Environment, IpPolicy, Key, KeyId, KeyStatus, Keyspace, KeyspaceId, Tier,
    key_service::{AccountOverview, KeyPatch, KeyspacePatch, Metadata, NewKey, NewKeyspace},
    keyspace::LeakPolicy,
    quota::{Refill, RefillInterval},
};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`), so that
/// `PATCH {"expires_at": null}` clears the value.
fn double_option<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A secret string from a request body (a password, a presented key): deserialised like a
/// string, redacted in `Debug`. Also what a response that shows a secret once (a new key,
/// an initial password) carries, so that no `Debug` of a DTO prints it.
#[derive(Clone, Deserialize, Serialize)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A named rate-limit window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitWindowDto {
    /// e.g. `per_minute`
    #[schema(min_length = 1, max_length = 50, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub name: String,
    #[schema(minimum = 1, maximum = 1000000000)]
    pub limit: u64,
    #[schema(minimum = 1, maximum = 31622400)]
    pub period_seconds: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefillDto {
    #[schema(minimum = 1)]
    pub amount: i64,
    /// `day` or `month`; the balance is replaced at 00:00 UTC.
    #[schema(value_type = schema::RefillIntervalName, example = "month")]
    pub interval: RefillInterval,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaDto {
    #[schema(minimum = 0)]
    pub remaining: i64,
    #[serde(default)]
    pub refill: Option<RefillDto>,
}

impl From<RateLimitWindowDto> for keyward_domain::RateLimitWindow {
    fn from(w: RateLimitWindowDto) -> Self {
        Self { name: w.name, limit: w.limit, period_seconds: w.period_seconds }
    }
}

impl From<&keyward_domain::RateLimitWindow> for RateLimitWindowDto {
    fn from(w: &keyward_domain::RateLimitWindow) -> Self {
        Self { name: w.name.clone(), limit: w.limit, period_seconds: w.period_seconds }
    }
}

impl From<QuotaDto> for keyward_domain::Quota {
    fn from(q: QuotaDto) -> Self {
        Self { remaining: q.remaining, refill: q.refill.map(|r| Refill { amount: r.amount, interval: r.interval }) }
    }
}

impl From<&keyward_domain::Quota> for QuotaDto {
    fn from(q: &keyward_domain::Quota) -> Self {
        Self { remaining: q.remaining, refill: q.refill.map(|r| RefillDto { amount: r.amount, interval: r.interval }) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    /// `ok`, or `unavailable` with 503.
    pub status: &'static str,
}

/// The error envelope of every non-2xx response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    #[schema(example = "validation_failed")]
    pub error: String,
    pub message: String,
    #[schema(example = "req_0F9u2Xf1l8tQkz5Hc0Yw3e")]
    pub request_id: String,
    #[schema(example = "http://127.0.0.1:8080/docs/errors/validation_failed")]
    pub documentation_url: String,
    /// For `validation_failed`: one entry per invalid field.
    pub details: Option<Vec<FieldErrorDto>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorDto {
    pub field: String,
    pub message: String,
}
