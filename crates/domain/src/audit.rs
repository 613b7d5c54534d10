//! Audit events: what happened, who did it, to what, and how it ended. Every action of the
//! people and management use cases emits one through the [`AuditSink`] port. (The durable,
//! hash-chained, transactional audit store is issue #5; until then adapters log events.)

use std::{borrow::Cow, net::IpAddr};

use time::OffsetDateTime;

use crate::{
    id::{AccountId, EventId, RequestId},
    key::Actor,
    plan::text_enum,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    pub action: Cow<'static, str>,
    pub resource_type: Cow<'static, str>,
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

    pub fn actions(&self) -> Vec<(String, AuditResult)> {
        self.events().iter().map(|e| (e.action.to_string(), e.result)).collect()
    }
}

impl AuditSink for MemoryAuditSink {
    fn record(&self, event: AuditEvent) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(event);
    }
}

/// An event as stored: with its place in the account's hash chain.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    pub event: AuditEvent,
    /// Position in the account's chain, assigned under the chain's lock (ids are minted
    /// before it, so id order need not be chain order under concurrency).
    pub seq: i64,
    /// The hash of the account's previous event (32 zero bytes for the first).
    pub prev_hash: [u8; 32],
    /// `BLAKE3(prev_hash ‖ canonical(event))`.
    pub hash: [u8; 32],
}

/// The bytes an event's hash covers: every field, in a fixed order, as JSON (object keys of
/// `metadata` sorted), timestamps in RFC 3339 at microsecond precision.
pub fn canonical(event: &AuditEvent) -> Vec<u8> {
    let ts = event.ts.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let value = serde_json::json!([
        event.id.to_string(),
        ts,
        event.account_id.map(|a| a.to_string()),
        event.actor.to_string(),
        event.action,
        event.resource_type,
        event.resource_id,
        event.result.as_str(),
        event.context.ip.map(|ip| ip.to_string()),
        event.context.user_agent,
        event.context.request_id.map(|r| r.to_string()),
        serde_json::Value::Object(event.metadata.clone()),
    ]);
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The next link of a chain.
pub fn chain_hash(prev_hash: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(prev_hash);
    hasher.update(&canonical(event));
    *hasher.finalize().as_bytes()
}

/// The first event of a chain whose link is broken: its stored hashes do not follow from the
/// previous event and its own contents (a row altered, inserted or removed by hand).
pub fn first_broken_link(records: &[AuditRecord], mut prev: Option<[u8; 32]>) -> Option<EventId> {
    for record in records {
        let follows = prev.is_none_or(|p| p == record.prev_hash);
        if !follows || chain_hash(&record.prev_hash, &record.event) != record.hash {
            return Some(record.event.id);
        }
        prev = Some(record.hash);
    }
    None
}

/// Which events `GET /v1/audit` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub key_id: Option<String>,
    pub actor_id: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    pub result: Option<AuditResult>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

impl AuditFilter {
    pub fn matches(&self, event: &AuditEvent) -> bool {
        let actor = event.actor.to_string();
        let key_matches = self.key_id.as_ref().is_none_or(|k| &actor == k || event.resource_id.as_ref() == Some(k));
        key_matches
            && self.actor_id.as_ref().is_none_or(|a| &actor == a)
            && self.resource_type.as_ref().is_none_or(|t| event.resource_type == t.as_str())
            && self.resource_id.as_ref().is_none_or(|r| event.resource_id.as_ref() == Some(r))
            && self.action.as_ref().is_none_or(|a| event.action == a.as_str())
            && self.result.is_none_or(|r| event.result == r)
            && self.since.is_none_or(|s| event.ts >= s)
            && self.until.is_none_or(|u| event.ts < u)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::random::SeededRandom;

    fn event(i: u64) -> AuditEvent {
        let ts = datetime!(2026-03-01 12:00 UTC) + time::Duration::seconds(i as i64);
        AuditEvent {
            id: EventId::generate(ts, &SeededRandom::new(i)),
            ts,
            account_id: None,
            actor: Actor::System,
            action: "key.create".into(),
            resource_type: "key".into(),
            resource_id: Some(format!("key_{i}")),
            result: AuditResult::Success,
            context: RequestContext::default(),
            metadata: serde_json::Map::new(),
        }
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = [0u8; 32];
        (0..n)
            .map(|i| {
                let event = event(i);
                let hash = chain_hash(&prev, &event);
                let record = AuditRecord { event, seq: i as i64 + 1, prev_hash: prev, hash };
                prev = hash;
                record
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_an_altered_event_is_named() {
        let mut records = chain(5);
        assert_eq!(first_broken_link(&records, None), None);
        records[3].event.resource_id = Some("key_forged".into());
        assert_eq!(first_broken_link(&records, None), Some(records[3].event.id));
        let mut removed = chain(5);
        let gone = removed.remove(2);
        assert_eq!(first_broken_link(&removed, None), Some(removed[2].event.id), "the event after a removed one");
        let _ = gone;
    }
}
