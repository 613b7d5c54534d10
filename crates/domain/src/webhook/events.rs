//! The events a webhook carries and the message each becomes: the Standard Webhooks
//! payload `{"type", "timestamp", "data"}`, rendered once when the event is written to
//! the outbox, so every endpoint and every retry sends the same bytes.

use serde::Serialize;
use time::OffsetDateTime;

use crate::{
    id::{AccountId, MessageId},
    key::Key,
    plan::text_enum,
    random::RandomSource,
};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    KeyCreated,
    KeyUpdated,
    KeyRevoked,
    KeyRotated,
    KeyLeaked,
    KeyExpiring,
    QuotaLow,
    QuotaExhausted,
}
text_enum!(EventType {
    KeyCreated => "key.created",
    KeyUpdated => "key.updated",
    KeyRevoked => "key.revoked",
    KeyRotated => "key.rotated",
    KeyLeaked => "key.leaked",
    KeyExpiring => "key.expiring",
    QuotaLow => "quota.low",
    QuotaExhausted => "quota.exhausted",
});

impl EventType {
    pub const ALL: &[Self] = &[
        Self::KeyCreated,
        Self::KeyUpdated,
        Self::KeyRevoked,
        Self::KeyRotated,
        Self::KeyLeaked,
        Self::KeyExpiring,
        Self::QuotaLow,
        Self::QuotaExhausted,
    ];
}

/// An event in the outbox: its id is the `webhook-id` every delivery of it carries, so a
/// receiver that sees one twice (deliveries are at least once) can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub account_id: AccountId,
    pub event_type: EventType,
    /// The JSON body posted, exactly.
    pub payload: String,
    pub created_at: OffsetDateTime,
}

/// What a key event says of the key: who it is and where it stands, never its hash.
#[derive(Debug, Serialize)]
struct KeyData<'a> {
    id: String,
    account_id: String,
    keyspace_id: Option<String>,
    name: &'a str,
    /// The masked display form (`kw_live_Ab3d…9xQz`).
    key_prefix: &'a str,
    environment: &'a str,
    status: &'static str,
    owner_id: Option<&'a str>,
    metadata: &'a serde_json::Map<String, serde_json::Value>,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    revoked_at: Option<OffsetDateTime>,
    rotated_to: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    leaked_at: Option<OffsetDateTime>,
    leak_source: Option<&'a str>,
    quota_remaining: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Payload<D: Serialize> {
    r#type: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    timestamp: OffsetDateTime,
    data: D,
}

impl Message {
    /// The message for an event about `key`, as it stands after the change.
    pub fn about_key(event_type: EventType, key: &Key, now: OffsetDateTime, rng: &dyn RandomSource) -> Self {
        Self::about_key_with(event_type, key, None, now, rng)
    }

    /// Like [`Self::about_key`], with the quota balance the event is about
    /// (`quota.low`, `quota.exhausted`).
    pub fn about_key_with(
        event_type: EventType,
        key: &Key,
        quota_remaining: Option<u64>,
        now: OffsetDateTime,
        rng: &dyn RandomSource,
    ) -> Self {
        let data = KeyData {
            id: key.id.to_string(),
            account_id: key.account_id.to_string(),
            keyspace_id: key.keyspace_id.map(|id| id.to_string()),
            name: &key.name,
            key_prefix: &key.key_prefix,
            environment: key.environment.as_str(),
            status: key.status(now).as_str(),
            owner_id: key.owner_id.as_deref(),
            metadata: &key.metadata,
            expires_at: key.expires_at,
            revoked_at: key.revoked_at,
            rotated_to: key.rotated_to.map(|id| id.to_string()),
            leaked_at: key.leaked_at,
            leak_source: key.leak_source.as_deref(),
            quota_remaining,
        };
        let payload = Payload { r#type: event_type.as_str(), timestamp: now, data };
        Self {
            id: MessageId::generate(now, rng),
            account_id: key.account_id,
            event_type,
            // Serialising a struct of strings, numbers and a JSON map cannot fail.
            payload: serde_json::to_string(&payload).unwrap_or_default(),
            created_at: now,
        }
    }
}
