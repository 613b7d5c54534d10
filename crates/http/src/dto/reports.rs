//! The JSON of the audit trail, usage records and statistics.

use super::*;

/// `GET /v1/audit` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Events by or about this key.
    pub key_id: Option<String>,
    pub actor_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    #[param(value_type = Option<schema::AuditResultName>)]
    pub result: Option<keyward_domain::audit::AuditResult>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
}

/// One audit event.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventResponse {
    #[schema(example = "evt_0351wCjFl5LDteAD5GyVhk")]
    pub id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: OffsetDateTime,
    pub account_id: Option<String>,
    /// `user`, `key` or `system`.
    pub actor_type: &'static str,
    pub actor_id: Option<String>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    #[schema(value_type = String, example = "success")]
    pub result: keyward_domain::audit::AuditResult,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Metadata,
    /// This event's link in the account's hash chain (hex).
    pub hash: String,
}

impl From<&keyward_domain::audit::AuditRecord> for AuditEventResponse {
    fn from(r: &keyward_domain::audit::AuditRecord) -> Self {
        let e = &r.event;
        let (actor_type, actor_id) = match e.actor {
            keyward_domain::Actor::User(id) => ("user", Some(id.to_string())),
            keyward_domain::Actor::Key(id) => ("key", Some(id.to_string())),
            keyward_domain::Actor::System => ("system", None),
        };
        Self {
            id: e.id.to_string(),
            ts: e.ts,
            account_id: e.account_id.map(|a| a.to_string()),
            actor_type,
            actor_id,
            action: e.action.to_string(),
            resource_type: e.resource_type.to_string(),
            resource_id: e.resource_id.clone(),
            result: e.result,
            ip: e.context.ip.map(|ip| ip.to_string()),
            user_agent: e.context.user_agent.clone(),
            request_id: e.context.request_id.map(|r| r.to_string()),
            metadata: e.metadata.clone(),
            hash: r.hash.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditListResponse {
    pub data: Vec<AuditEventResponse>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/keys/{id}/usage` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "crate::timestamp::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<OffsetDateTime>,
}

/// One metered request.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRecordResponse {
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub ts: OffsetDateTime,
    pub endpoint: Option<String>,
    pub method: Option<String>,
    pub status_code: Option<u16>,
    /// Keyward's handling time (verifications, management calls) or the guarded
    /// service's (the embedded guard), in milliseconds to the microsecond.
    #[schema(example = 0.042)]
    pub response_time_ms: Option<f64>,
    pub ip: Option<String>,
    /// The verdict of a verification; `null` for a management call made with the key.
    #[schema(value_type = Option<String>, example = "VALID")]
    pub outcome: Option<keyward_domain::VerifyCode>,
}

impl From<&keyward_domain::usage::UsageRecord> for UsageRecordResponse {
    fn from(r: &keyward_domain::usage::UsageRecord) -> Self {
        Self {
            ts: r.ts,
            endpoint: r.endpoint.clone(),
            method: r.method.clone(),
            status_code: r.status_code,
            response_time_ms: r.response_time_us.map(|us| f64::from(us) / 1000.0),
            ip: r.ip.map(|ip| ip.to_string()),
            outcome: r.outcome,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageListResponse {
    pub data: Vec<UsageRecordResponse>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/stats`
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsResponse {
    pub active_keys: u64,
    pub revoked_keys: u64,
    pub verifications_total: u64,
    pub verifications_today: u64,
    /// Share of VALID verdicts, 0–1.
    pub success_rate: f64,
    /// The mean of Keyward's own handling time of the verifications (from the handler's
    /// start, the body read, to the verdict; failed lookups included) and of the latency the
    /// embedded guard recorded for guarded requests, in milliseconds; `null` before any.
    pub avg_response_time_ms: Option<f64>,
    /// Every verdict, `NOT_FOUND` (a key the account does not have) included.
    pub by_code: std::collections::BTreeMap<String, u64>,
    /// The most used service keys over the last 30 days (today included, UTC): at most
    /// five, the most requests first; a key without requests in that time is not listed.
    pub top_keys: Vec<KeyUseResponse>,
}

/// A key and its requests (verifications and calls metered under it) over the last 30 days.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyUseResponse {
    #[schema(value_type = String, example = "key_0358Pw2X9cQm4GdUe6mBL1")]
    pub key_id: String,
    pub requests: u64,
}
