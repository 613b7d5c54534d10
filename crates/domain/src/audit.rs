//! Audit events: what happened, who did it, to what, and how it ended. Every action of the
//! people and management use cases emits one through the [`AuditSink`] port. (The durable,
//! hash-chained, transactional audit store is issue #5; until then adapters log events.)

use std::net::IpAddr;

use time::OffsetDateTime;

use crate::{
    id::{AccountId, EventId, RequestId},
    key::Actor,
    plan::text_enum,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditResult {
    Success,
    Failure,
    Denied,
}
text_enum!(AuditResult { Success => "success", Failure => "failure", Denied => "denied" });

/// Where a request came from, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<RequestId>,
}

/// One audit event. `metadata` never holds a secret: no plaintext key, password or token.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub id: EventId,
    pub ts: OffsetDateTime,
    pub account_id: Option<AccountId>,
    pub actor: Actor,
    /// `auth.login`, `auth.login_failed`, `auth.verify_password`, `account_key.create`, …
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
    pub result: AuditResult,
    pub context: RequestContext,
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Receives audit events. Implementations must not block: they queue or write quickly.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    fn record(&self, event: AuditEvent);
}

/// Keeps events in memory; for tests.
#[derive(Debug, Default)]
pub struct MemoryAuditSink(std::sync::Mutex<Vec<AuditEvent>>);

impl MemoryAuditSink {
    pub fn events(&self) -> Vec<AuditEvent> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn actions(&self) -> Vec<(&'static str, AuditResult)> {
        self.events().iter().map(|e| (e.action, e.result)).collect()
    }
}

impl AuditSink for MemoryAuditSink {
    fn record(&self, event: AuditEvent) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event);
    }
}
