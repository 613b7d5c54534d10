//! Rows of the webhook tables.

use diesel::prelude::*;
use keyward_domain::{
    AccountId, AttemptId, MessageId, OsRandom, WebhookId,
    at_rest::AtRest,
    webhook::{Attempt, Message, RetiringSecret, WebhookEndpoint, WebhookSecret, WebhookUrl},
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{CorruptRow, corrupt};
use crate::schema::{webhook_attempts, webhook_endpoints, webhook_messages};

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_endpoints, check_for_backend(diesel::pg::Pg))]
pub(crate) struct EndpointRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<String>,
    pub disabled: Option<String>,
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_secret_until: Option<OffsetDateTime>,
    pub failing_since: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl From<&WebhookEndpoint> for EndpointRow {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            id: e.id.as_uuid(),
            account_id: e.account_id.as_uuid(),
            url: e.url.as_str().to_owned(),
            description: e.description.clone(),
            event_types: e.event_types.iter().map(|t| t.as_str().to_owned()).collect(),
            disabled: e.disabled.map(|d| d.as_str().to_owned()),
            secret: e.secret.bytes().to_vec(),
            previous_secret: e.previous_secret.as_ref().map(|p| p.secret.bytes().to_vec()),
            previous_secret_until: e.previous_secret.as_ref().map(|p| p.until),
            failing_since: e.failing_since,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

impl EndpointRow {
    /// `e` as stored: its secrets sealed when `at_rest` is set (`KEYWARD_SECRET`).
    pub(crate) fn new(e: &WebhookEndpoint, at_rest: Option<&AtRest>) -> Self {
        let mut row = Self::from(e);
        if let Some(at_rest) = at_rest {
            row.secret = at_rest.seal(&sealing_context(row.id, "secret"), &row.secret, &OsRandom);
            row.previous_secret =
                row.previous_secret.map(|p| at_rest.seal(&sealing_context(row.id, "previous_secret"), &p, &OsRandom));
        }
        row
    }

    /// The endpoint this row holds, its secrets opened.
    pub(crate) fn open(mut self, at_rest: Option<&AtRest>) -> Result<WebhookEndpoint, CorruptRow> {
        let bad = corrupt("webhook_endpoints", self.id);
        self.secret = reveal(at_rest, self.id, "secret", self.secret).map_err(&bad)?;
        self.previous_secret =
            self.previous_secret.map(|p| reveal(at_rest, self.id, "previous_secret", p)).transpose().map_err(&bad)?;
        WebhookEndpoint::try_from(self)
    }
}

/// What a sealed secret is bound to: its row and column.
pub(crate) fn sealing_context(id: Uuid, column: &str) -> Vec<u8> {
    format!("webhook_endpoints/{id}/{column}").into_bytes()
}

/// A stored secret's bytes: opened when sealed, as they are when written before sealing
/// was configured (24 bytes, never taken for a sealed value).
fn reveal(at_rest: Option<&AtRest>, id: Uuid, column: &str, stored: Vec<u8>) -> Result<Vec<u8>, String> {
    if !AtRest::is_sealed(&stored) {
        return Ok(stored);
    }
    let Some(at_rest) = at_rest else {
        return Err(format!("{column} is sealed: set the KEYWARD_SECRET that sealed it"));
    };
    at_rest.open(&sealing_context(id, column), &stored).map(|(plain, _)| plain).map_err(|e| format!("{column}: {e}"))
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = CorruptRow;

    fn try_from(row: EndpointRow) -> Result<Self, Self::Error> {
        let bad = corrupt("webhook_endpoints", row.id);
        Ok(Self {
            id: WebhookId::from_uuid(row.id),
            account_id: AccountId::from_uuid(row.account_id),
            // Checked against the SSRF rules when it was written; the sender checks every
            // address again at each delivery.
            url: WebhookUrl::parse(&row.url, true).map_err(|e| bad(format!("url: {e}")))?,
            description: row.description,
            event_types: row
                .event_types
                .iter()
                .map(|t| t.parse())
                .collect::<Result<_, _>>()
                .map_err(|e| bad(format!("event_types: {e}")))?,
            disabled: row.disabled.map(|d| d.parse()).transpose().map_err(|e| bad(format!("disabled: {e}")))?,
            secret: WebhookSecret::from_bytes(row.secret),
            previous_secret: match (row.previous_secret, row.previous_secret_until) {
                (Some(secret), Some(until)) => {
                    Some(RetiringSecret { secret: WebhookSecret::from_bytes(secret), until })
                }
                _ => None,
            },
            failing_since: row.failing_since,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_messages, check_for_backend(diesel::pg::Pg))]
pub(crate) struct MessageRow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub event_type: String,
    pub payload: String,
    pub created_at: OffsetDateTime,
}

impl From<&Message> for MessageRow {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id.as_uuid(),
            account_id: m.account_id.as_uuid(),
            event_type: m.event_type.as_str().to_owned(),
            payload: m.payload.clone(),
            created_at: m.created_at,
        }
    }
}

impl TryFrom<MessageRow> for Message {
    type Error = CorruptRow;

    fn try_from(row: MessageRow) -> Result<Self, Self::Error> {
        let bad = corrupt("webhook_messages", row.id);
        Ok(Self {
            id: MessageId::from_uuid(row.id),
            account_id: AccountId::from_uuid(row.account_id),
            event_type: row.event_type.parse().map_err(|e| bad(format!("event_type: {e}")))?,
            payload: row.payload,
            created_at: row.created_at,
        })
    }
}

#[derive(Debug, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_attempts, check_for_backend(diesel::pg::Pg))]
pub(crate) struct AttemptRow {
    pub id: Uuid,
    pub endpoint_id: Uuid,
    pub message_id: Uuid,
    pub event_type: String,
    pub at: OffsetDateTime,
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub response: String,
    pub succeeded: bool,
}

impl From<&Attempt> for AttemptRow {
    fn from(a: &Attempt) -> Self {
        Self {
            id: a.id.as_uuid(),
            endpoint_id: a.endpoint_id.as_uuid(),
            message_id: a.message_id.as_uuid(),
            event_type: a.event_type.as_str().to_owned(),
            at: a.at,
            status: a.status.map(i32::from),
            latency_ms: i32::try_from(a.latency_ms).unwrap_or(i32::MAX),
            // PostgreSQL's text cannot hold U+0000; a receiver's answer might.
            response: a.response.replace('\0', "\u{fffd}"),
            succeeded: a.succeeded,
        }
    }
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = CorruptRow;

    fn try_from(row: AttemptRow) -> Result<Self, Self::Error> {
        let bad = corrupt("webhook_attempts", row.id);
        Ok(Self {
            id: AttemptId::from_uuid(row.id),
            endpoint_id: WebhookId::from_uuid(row.endpoint_id),
            message_id: MessageId::from_uuid(row.message_id),
            event_type: row.event_type.parse().map_err(|e| bad(format!("event_type: {e}")))?,
            at: row.at,
            status: row.status.map(u16::try_from).transpose().map_err(|e| bad(format!("status: {e}")))?,
            latency_ms: u32::try_from(row.latency_ms).unwrap_or(0),
            response: row.response,
            succeeded: row.succeeded,
        })
    }
}
