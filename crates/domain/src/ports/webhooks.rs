//! The webhook storage port: endpoints, the outbox (messages, one delivery per message and
//! endpoint, every attempt) and the notices sent once. Adapters MUST return the errors
//! documented on each method; the conformance suite checks that they do.

use std::future::Future;

use time::OffsetDateTime;

use crate::{
    id::{AccountId, AttemptId, KeyId, MessageId, WebhookId},
    key::Key,
    ports::{StorageError, UpdateError},
    webhook::{Attempt, AttemptOutcome, AttemptPage, ClaimedDelivery, EventType, Fairness, Message, WebhookEndpoint},
};

/// Webhook endpoints and the outbox: messages, their deliveries and every attempt.
pub trait WebhookStore: Send + Sync {
    fn insert_webhook(&self, endpoint: &WebhookEndpoint) -> impl Future<Output = Result<(), StorageError>> + Send;
    fn get_webhook(
        &self,
        account: AccountId,
        id: WebhookId,
    ) -> impl Future<Output = Result<Option<WebhookEndpoint>, StorageError>> + Send;
    /// The account's endpoints, oldest first.
    fn list_webhooks(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Vec<WebhookEndpoint>, StorageError>> + Send;
    /// Errors: `NotFound`.
    fn update_webhook(&self, endpoint: &WebhookEndpoint) -> impl Future<Output = Result<(), UpdateError>> + Send;
    /// Removes the endpoint with its deliveries and attempts. Errors: `NotFound`.
    fn delete_webhook(&self, account: AccountId, id: WebhookId)
    -> impl Future<Output = Result<(), UpdateError>> + Send;
    /// Writes `message` with a pending delivery, due at its `created_at`, to each enabled
    /// endpoint of its account that wants its type; writes nothing when none does. Answers
    /// how many deliveries it made.
    fn enqueue_message(&self, message: &Message) -> impl Future<Output = Result<u32, StorageError>> + Send;
    /// Claims up to `limit` pending deliveries due at `now` to enabled endpoints, shared
    /// between accounts as `fairness` says (round-robin, each account's earliest due
    /// first, no account past its room), skipping those another worker is claiming at the
    /// same moment: each claimed one's `next_attempt_at` moves to `lease_until`, so a worker
    /// that dies mid-delivery leaves it to be claimed again then (at least once).
    fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
        fairness: &Fairness,
    ) -> impl Future<Output = Result<Vec<ClaimedDelivery>, StorageError>> + Send;
    /// Keeps `attempt`, moves its delivery to `outcome` (counting the try), and sets the
    /// endpoint's `failing_since` at a failure when unset, or clears it at a success.
    fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// The endpoint's attempts, newest first, before `before` when given.
    fn list_attempts(
        &self,
        account: AccountId,
        endpoint: WebhookId,
        before: Option<AttemptId>,
        limit: u32,
    ) -> impl Future<Output = Result<AttemptPage, StorageError>> + Send;
    /// Removes the messages written before `before` that no delivery still waits for,
    /// with their deliveries and attempts; answers how many messages went.
    fn purge_webhook_messages(&self, before: OffsetDateTime) -> impl Future<Output = Result<u64, StorageError>> + Send;
    /// Service keys, neither revoked nor replaced by a rotation, whose `expires_at` is in
    /// (`now`, `now + lead`] and that have no `key.expiring` notice marked
    /// [`crate::webhook::notices::expiry_mark`]`(expires_at, lead)`; at most `limit`.
    fn keys_expiring_unannounced(
        &self,
        now: OffsetDateTime,
        lead: time::Duration,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send;
    /// Service keys, not revoked, whose stored quota balance is of their current quota
    /// configuration and refill period at `now`, and at most `percent` % of the configured
    /// amount (the refill amount, else the quota's `remaining`) — 0 % meaning exhausted —
    /// with no `event` notice marked [`crate::webhook::notices::quota_mark`] for that
    /// configuration and period; at most `limit`.
    fn keys_with_low_quota_unannounced(
        &self,
        now: OffsetDateTime,
        percent: u8,
        event: EventType,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send;
    /// Records that `event` was sent about `key` for `mark`; answers `false` when it had
    /// been already (by this or another instance), so each is sent once.
    fn record_notice(
        &self,
        key: KeyId,
        event: EventType,
        mark: &str,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Makes the delivery of `message` to `endpoint` pending and due at `now`, whatever
    /// its state. Errors: `NotFound` (no such delivery in that account).
    fn retry_delivery(
        &self,
        account: AccountId,
        endpoint: WebhookId,
        message: MessageId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), UpdateError>> + Send;
}
