//! The JSON of webhook endpoints and their delivery attempts.

use keyward_domain::{
    key_service::{NewWebhook, WebhookPatch},
    webhook::{Attempt, WebhookEndpoint},
};

use super::*;

/// `POST /v1/webhooks`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// An absolute `https` (or `http`) URL. Private, loopback and link-local destinations
    /// are refused unless the operator allows them.
    #[schema(max_length = 2048, example = "https://api.example.com/keyward-events")]
    pub url: String,
    #[schema(max_length = 512, pattern = r"^[^\u0000]*$")]
    pub description: Option<String>,
    /// The events sent to this endpoint; empty or absent: all of them.
    #[schema(value_type = Option<Vec<schema::EventTypeName>>, max_items = 8, example = json!(["key.revoked", "key.leaked"]))]
    pub event_types: Option<Vec<String>>,
    /// Default `true`.
    pub enabled: Option<bool>,
}

impl From<CreateWebhookRequest> for NewWebhook {
    fn from(r: CreateWebhookRequest) -> Self {
        NewWebhook {
            url: r.url,
            description: r.description,
            event_types: r.event_types.unwrap_or_default(),
            enabled: r.enabled.unwrap_or(true),
        }
    }
}

/// `PATCH /v1/webhooks/{id}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(max_length = 512, nullable, pattern = r"^[^\u0000]*$")]
    pub description: Option<Option<String>>,
    #[schema(value_type = Option<Vec<schema::EventTypeName>>, max_items = 8)]
    pub event_types: Option<Vec<String>>,
    /// `true` turns on an endpoint turned off by its account or for failing.
    pub enabled: Option<bool>,
}

impl From<UpdateWebhookRequest> for WebhookPatch {
    fn from(r: UpdateWebhookRequest) -> Self {
        WebhookPatch { url: r.url, description: r.description, event_types: r.event_types, enabled: r.enabled }
    }
}

/// `POST /v1/webhooks/{id}/rotate-secret`
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWebhookSecretRequest {
    /// How long the old secret keeps signing beside the new one: 0 to 604800 seconds,
    /// default 86400.
    #[schema(minimum = 0, maximum = 604800)]
    pub overlap_seconds: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResponse {
    #[schema(example = "wh_0C1kG7rY2b0l8dZp3QeW1x")]
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    /// Empty: every event.
    #[schema(value_type = Vec<schema::EventTypeName>)]
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Why it is off: `by_user`, or `failing` (every delivery failed for 5 days).
    #[schema(example = "failing")]
    pub disabled_reason: Option<&'static str>,
    /// Since when every delivery has failed.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<OffsetDateTime>,
    /// Until when the secret before the last rotation still signs beside the current one.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

impl WebhookResponse {
    pub fn new(e: &WebhookEndpoint, now: OffsetDateTime) -> Self {
        Self {
            id: e.id.to_string(),
            url: e.url.as_str().to_owned(),
            description: e.description.clone(),
            event_types: e.event_types.iter().map(|t| t.as_str().to_owned()).collect(),
            enabled: e.disabled.is_none(),
            disabled_reason: e.disabled.map(|d| d.as_str()),
            failing_since: e.failing_since,
            previous_secret_expires_at: e.previous_secret.as_ref().map(|p| p.until).filter(|at| *at > now),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret, shown once: when it is made or its secret rotated.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecretResponse {
    #[serde(flatten)]
    pub endpoint: WebhookResponse,
    /// `whsec_…`, the Standard Webhooks form. It will not be shown again.
    #[schema(value_type = String, example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookListResponse {
    pub data: Vec<WebhookResponse>,
}

/// One try at delivering a message.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptResponse {
    #[schema(example = "att_0C1kG7rY2b0l8dZp3QeW1x")]
    pub id: String,
    /// The `webhook-id` of the message: what a manual retry names.
    #[schema(example = "msg_0C1kG7rY2b0l8dZp3QeW1x")]
    pub message_id: String,
    #[schema(value_type = schema::EventTypeName)]
    pub event_type: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The receiver's status; `null` when there was no answer.
    pub status: Option<u16>,
    pub latency_ms: u32,
    /// The start of the receiver's answer (1 KiB at most), or what went wrong.
    pub response: String,
    pub succeeded: bool,
}

impl From<&Attempt> for WebhookAttemptResponse {
    fn from(a: &Attempt) -> Self {
        Self {
            id: a.id.to_string(),
            message_id: a.message_id.to_string(),
            event_type: a.event_type.as_str().to_owned(),
            at: a.at,
            status: a.status,
            latency_ms: a.latency_ms,
            response: a.response.clone(),
            succeeded: a.succeeded,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttemptListResponse {
    pub data: Vec<WebhookAttemptResponse>,
    /// Pass as `cursor` for the next (older) page; `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct WebhookAttemptQuery {
    /// 1–100, default 50.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookRetryResponse {
    pub message_id: String,
    /// `true`: the message is due again now.
    pub queued: bool,
}
