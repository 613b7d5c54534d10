//! Audit events: what happened, who did it, to what, and how it ended. Every action of the
//! people and management use cases emits one through the [`AuditSink`] port. (The durable,
//! hash-chained, transactional audit store is issue #5; until then adapters log events.)

mod action;

pub use action::Action;

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
    /// An [`Action`]'s wire name (`auth.login`, `account_key.create`, …): a string, as
    /// storage keeps it and reads it back.
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

impl AuditRecord {
    /// Where the record stands in `GET /v1/audit`'s order.
    pub fn position(&self) -> AuditPosition {
        AuditPosition { ts: self.event.ts, id: self.event.id }
    }
}

/// A place in the audit listing's order: time, then id (SPEC: newest first, cursor over
/// `(ts, id)`). Events of one microsecond are ordered by id, the same in every store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditPosition {
    pub ts: OffsetDateTime,
    pub id: EventId,
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
/// previous event (`prev`: its seq and hash) and its own contents, its `seq` is not the
/// next one, or — the very first event of a chain (seq 1) — it does not start from the
/// zero hash (a row altered, inserted or removed by hand). A chain whose oldest events
/// were purged starts wherever the purge left it; removals at the newest end are what
/// [`AnchoredHead`] catches.
pub fn first_broken_link(records: &[AuditRecord], mut prev: Option<(i64, [u8; 32])>) -> Option<EventId> {
    for record in records {
        let follows = match prev {
            Some((seq, hash)) => record.seq == seq + 1 && record.prev_hash == hash,
            None => record.seq > 1 || record.prev_hash == [0; 32],
        };
        if !follows || chain_hash(&record.prev_hash, &record.event) != record.hash {
            return Some(record.event.id);
        }
        prev = Some((record.seq, record.hash));
    }
    None
}

/// A chain's head as an operator wrote it down outside the database (`keyward audit head`):
/// the trail must still hold that event, unchanged, at that position — so deleting the
/// newest events, which leaves an intact but shorter chain, is caught by
/// `keyward audit verify --expect-head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchoredHead {
    pub account: Option<AccountId>,
    pub seq: i64,
    pub hash: [u8; 32],
}

impl std::fmt::Display for AnchoredHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let chain = self.account.map_or_else(|| "none".to_owned(), |a| a.to_string());
        write!(f, "{chain}:{}:{}", self.seq, hex::encode(self.hash))
    }
}

impl std::str::FromStr for AnchoredHead {
    type Err = &'static str;

    /// `<account id or none>:<seq>:<64 hex digits>`, as `Display` writes it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const FORM: &str = "expected <acct_… or none>:<seq>:<64 hex digits>";
        let mut parts = text.splitn(3, ':');
        let (Some(chain), Some(seq), Some(hash)) = (parts.next(), parts.next(), parts.next()) else { return Err(FORM) };
        let account = if chain == "none" { None } else { Some(chain.parse().map_err(|_| FORM)?) };
        let seq = seq.parse().map_err(|_| FORM)?;
        let hash = hex::decode(hash).ok().and_then(|h| <[u8; 32]>::try_from(h).ok()).ok_or(FORM)?;
        Ok(Self { account, seq, hash })
    }
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

    #[test]
    fn a_forged_start_or_a_skipped_seq_is_a_broken_link() {
        // A first event that does not start from the zero hash.
        let mut forged = chain(3);
        forged[0].prev_hash = [7; 32];
        forged[0].hash = chain_hash(&forged[0].prev_hash, &forged[0].event);
        assert_eq!(first_broken_link(&forged, None), Some(forged[0].event.id));
        // A renumbered event, hashes intact.
        let mut renumbered = chain(3);
        renumbered[2].seq = 5;
        assert_eq!(first_broken_link(&renumbered, None), Some(renumbered[2].event.id));
        // What a purge leaves (the oldest events gone) still verifies.
        assert_eq!(first_broken_link(&chain(5)[2..], None), None);
    }

    #[test]
    fn an_anchored_head_reads_back_as_written() {
        let head = AnchoredHead { account: None, seq: 42, hash: [0xab; 32] };
        assert_eq!(head.to_string().parse::<AnchoredHead>(), Ok(head));
        assert!("none:42:abcd".parse::<AnchoredHead>().is_err());
    }
}
