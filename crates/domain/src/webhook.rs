//! Webhooks: what a SaaS is told when something happens to one of its keys, following the
//! Standard Webhooks specification (<https://www.standardwebhooks.com>).
//!
//! An account registers endpoints (a URL, the event types it wants, a `whsec_` secret).
//! A change that causes an event writes a [`Message`] to the outbox in the same unit of
//! work as the change, fanned out to one [`Delivery`] per subscribed endpoint; a worker
//! posts due deliveries, signed ([`signing`]), and retries failures on a schedule of about
//! three days ([`schedule`]). Every try is an [`Attempt`], listed per endpoint.

pub mod events;
pub mod notices;
pub mod schedule;
pub mod signing;
pub mod url;

use std::fmt;

use time::OffsetDateTime;

use crate::{
    id::{AccountId, AttemptId, MessageId, WebhookId},
    plan::text_enum,
    random::RandomSource,
};

pub use events::{EventType, Message};
pub use url::{UrlError, WebhookUrl};

/// The most endpoints an account may register.
pub const MAX_ENDPOINTS: usize = 20;
/// How much of a receiver's answer an attempt keeps.
pub const RESPONSE_EXCERPT_LEN: usize = 1024;
/// How long an endpoint may keep failing, with every delivery in that time failed, before
/// it is disabled (and an audit event says so).
pub const DISABLE_AFTER: time::Duration = time::Duration::days(5);
/// The longest overlap a secret rotation may keep the old secret signing.
pub const MAX_ROTATION_OVERLAP_SECONDS: u32 = 7 * 24 * 3600;
/// The overlap when a rotation names none: a day, as Svix and Stripe do.
pub const DEFAULT_ROTATION_OVERLAP_SECONDS: u32 = 24 * 3600;

/// A signing secret: 24 random bytes, written `whsec_<base64>` (the Standard Webhooks
/// form). Shown once, when the endpoint is made or its secret rotated; its `Debug` is
/// redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl WebhookSecret {
    pub const PREFIX: &'static str = "whsec_";

    pub fn generate(rng: &dyn RandomSource) -> Self {
        let mut bytes = vec![0u8; 24];
        rng.fill(&mut bytes);
        Self(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `whsec_…` form a receiver configures.
    pub fn expose(&self) -> String {
        use base64::Engine as _;
        format!("{}{}", Self::PREFIX, base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

/// A secret that still signs after a rotation, until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiringSecret {
    pub secret: WebhookSecret,
    pub until: OffsetDateTime,
}

/// Why an endpoint receives nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disabled {
    /// Its account turned it off.
    ByUser,
    /// Every delivery failed for [`DISABLE_AFTER`].
    Failing,
}
text_enum!(Disabled { ByUser => "by_user", Failing => "failing" });

/// Where an account's events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    pub id: WebhookId,
    pub account_id: AccountId,
    pub url: WebhookUrl,
    pub description: Option<String>,
    /// The event types sent; empty: all of them.
    pub event_types: Vec<EventType>,
    pub disabled: Option<Disabled>,
    pub secret: WebhookSecret,
    /// The secret before the last rotation, while it still signs.
    pub previous_secret: Option<RetiringSecret>,
    /// Since when every delivery has failed; cleared by a success.
    pub failing_since: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl WebhookEndpoint {
    pub fn wants(&self, event: EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&event)
    }

    /// The secrets a delivery at `now` is signed with: the current one, and the previous
    /// one during a rotation's overlap.
    pub fn signing_secrets(&self, now: OffsetDateTime) -> impl Iterator<Item = &WebhookSecret> {
        let previous = self.previous_secret.as_ref().filter(|p| p.until > now).map(|p| &p.secret);
        std::iter::once(&self.secret).chain(previous)
    }
}

/// Where one message stands for one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Due at `next_attempt_at` (or claimed by a worker until then).
    Pending,
    Delivered,
    /// Retried for the whole schedule, or its endpoint was disabled; a manual retry sends
    /// it again.
    Failed,
}
text_enum!(DeliveryState { Pending => "pending", Delivered => "delivered", Failed => "failed" });

/// One message on its way to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub message_id: MessageId,
    pub endpoint_id: WebhookId,
    pub account_id: AccountId,
    pub state: DeliveryState,
    /// Tries made so far.
    pub attempts: u32,
    pub next_attempt_at: OffsetDateTime,
}

/// How a claim shares a worker between accounts (issue #29): at most `per_account`
/// deliveries of one account in flight at once, counting the `in_flight` ones the worker
/// holds already, and the due deliveries taken round-robin between accounts — each
/// account's earliest first, then each one's second — so one account's backlog or slow
/// endpoints never hold every slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fairness {
    pub per_account: u32,
    /// What the worker is trying now, per account.
    pub in_flight: Vec<(AccountId, u32)>,
}

impl Fairness {
    /// No account has anything in flight.
    pub fn idle(per_account: u32) -> Self {
        Self { per_account, in_flight: Vec::new() }
    }

    /// How many more of `account`'s deliveries a claim may take.
    pub fn room_for(&self, account: AccountId) -> u32 {
        let busy = self.in_flight.iter().find(|(a, _)| *a == account).map_or(0, |(_, n)| *n);
        self.per_account.saturating_sub(busy)
    }
}

/// A delivery a worker has claimed: everything it needs to post it.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub delivery: Delivery,
    pub endpoint: WebhookEndpoint,
    pub message: Message,
}

/// One try at delivering a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub id: AttemptId,
    pub endpoint_id: WebhookId,
    pub message_id: MessageId,
    pub event_type: EventType,
    pub at: OffsetDateTime,
    /// The receiver's status; `None` when there was no answer (refused, timed out).
    pub status: Option<u16>,
    pub latency_ms: u32,
    /// The start of the receiver's answer, or what went wrong; at most
    /// [`RESPONSE_EXCERPT_LEN`] bytes.
    pub response: String,
    pub succeeded: bool,
}

/// What an attempt leaves a delivery in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(OffsetDateTime),
    GaveUp,
}

/// A page of an endpoint's attempts, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptPage {
    pub attempts: Vec<Attempt>,
    pub has_more: bool,
}

/// Cuts `text` to at most [`RESPONSE_EXCERPT_LEN`] bytes, on a character boundary.
pub fn excerpt(text: &str) -> String {
    let mut end = text.len().min(RESPONSE_EXCERPT_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SeededRandom;

    #[test]
    fn a_secret_is_written_whsec_and_never_shown_by_debug() {
        let secret = WebhookSecret::generate(&SeededRandom::new(1));
        let written = secret.expose();
        assert!(written.starts_with("whsec_") && written.len() == 6 + 32, "{written}");
        assert_eq!(format!("{secret:?}"), "WebhookSecret([redacted])");
        assert!(!format!("{:?}", RetiringSecret { secret, until: OffsetDateTime::UNIX_EPOCH }).contains(&written[6..]));
    }

    #[test]
    fn an_excerpt_ends_on_a_character() {
        let long = "é".repeat(RESPONSE_EXCERPT_LEN);
        let cut = excerpt(&long);
        assert!(cut.len() <= RESPONSE_EXCERPT_LEN && cut.chars().all(|c| c == 'é'));
    }
}
