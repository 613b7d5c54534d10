//! Webhooks: an account's endpoints (`/v1/webhooks`), the events a key change publishes to
//! the outbox in the unit of work of the change, and the delivery of due messages through
//! the [`WebhookSender`] port, retried on the schedule of [`crate::webhook::schedule`].

use std::future::Future;

use super::*;
use crate::{
    audit::{Action, AuditEvent, AuditResult, RequestContext},
    id::{AttemptId, MessageId, WebhookId},
    ports::{Outcome, UpdateError},
    webhook::{
        self, Attempt, AttemptOutcome, AttemptPage, ClaimedDelivery, Disabled, EventType, Fairness, Message,
        RetiringSecret, WebhookEndpoint, WebhookSecret, WebhookUrl, schedule, signing,
    },
};

/// The longest description an endpoint keeps.
const MAX_WEBHOOK_DESCRIPTION_LEN: usize = 512;
/// How long a worker holds a claimed delivery before another may take it: longer than a
/// delivery can take ([`SEND_TIMEOUT`] and the bookkeeping around it).
pub const DELIVERY_LEASE: Duration = Duration::seconds(20);
/// How long one delivery may take, connecting included; an answer after it, a 2xx too, is
/// a failure (retried on the schedule).
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// The most of a receiver's answer a sender reads.
pub const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

/// A new endpoint, as `POST /v1/webhooks` takes it.
#[derive(Debug, Clone, Default)]
pub struct NewWebhook {
    pub url: String,
    pub description: Option<String>,
    /// Wire names (`key.revoked`); empty: every event.
    pub event_types: Vec<String>,
    pub enabled: bool,
}

/// A change to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<String>>,
    pub enabled: Option<bool>,
}

/// One signed POST, as a sender makes it.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub url: WebhookUrl,
    pub message_id: MessageId,
    pub timestamp: i64,
    /// `v1,…` signatures, space-separated.
    pub signature: String,
    pub body: String,
}

/// What came of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// The receiver answered (any status); the start of its body.
    Answered { status: u16, body: String },
    /// No answer: refused, timed out, a destination this instance does not send to.
    Failed(String),
}

/// Posts webhook requests: an adapter (`keyward_runtime::webhooks`) over HTTP, which
/// refuses destinations that resolve to private addresses unless allowed, follows no
/// redirect and bounds the time ([`SEND_TIMEOUT`]) and the answer ([`MAX_RESPONSE_BYTES`]).
pub trait WebhookSender: Send + Sync {
    fn send(&self, request: WebhookRequest) -> impl Future<Output = SendResult> + Send;
}

/// Which events a change of a service key publishes: a new leak report, a revocation, or
/// else an update.
fn key_change_events(before: &Key, after: &Key) -> Vec<EventType> {
    let mut events = Vec::new();
    if before.leaked_at.is_none() && after.leaked_at.is_some() {
        events.push(EventType::KeyLeaked);
    }
    if before.revoked_at.is_none() && after.revoked_at.is_some() {
        events.push(EventType::KeyRevoked);
    }
    if events.is_empty() && what_the_account_sets(before) != what_the_account_sets(after) {
        events.push(EventType::KeyUpdated);
    }
    events
}

/// A key without what changes on its own (the time of the write, usage counters, the
/// stored quota balance): an update that changes nothing else is no news.
fn what_the_account_sets(key: &Key) -> Key {
    Key {
        updated_at: OffsetDateTime::UNIX_EPOCH,
        last_used_at: None,
        usage_count: 0,
        quota_balance: None,
        ..key.clone()
    }
}

impl<S: Store> KeyService<S> {
    /// Runs `work` as one unit of work (a savepoint inside the caller's, when there is
    /// one): a change and the events it publishes commit together or not at all.
    pub(crate) fn changing<'a, T: 'a>(
        &'a self,
        work: impl Future<Output = Result<T, ManageError>> + 'a,
    ) -> impl Future<Output = Result<T, ManageError>> + 'a {
        // Boxed at once: the caller's future holds a pointer, not the use case's future
        // inside a unit of work's (tests' threads have small stacks).
        let work = Box::pin(work);
        async move {
            self.store
                .atomically(async {
                    match work.await {
                        Ok(value) => Outcome::Commit(Ok(value)),
                        Err(error) => Outcome::Rollback(Err(error)),
                    }
                })
                .await?
        }
    }

    /// Writes the event `key` is the subject of to the outbox (service keys only: account
    /// and temporary keys are the account's own business).
    pub(crate) async fn publish(&self, event: EventType, key: &Key) -> Result<(), StorageError> {
        if key.kind != KeyKind::Service {
            return Ok(());
        }
        let message = Message::about_key(event, key, self.now(), self.rng());
        self.store.enqueue_message(&message).await.map(drop)
    }

    /// Publishes what the change `before` → `after` of a key means.
    pub(crate) async fn publish_change(&self, before: &Key, after: &Key) -> Result<(), StorageError> {
        for event in key_change_events(before, after) {
            self.publish(event, after).await?;
        }
        Ok(())
    }

    fn webhook_url(&self, errors: &mut FieldErrors, url: &str) -> Option<WebhookUrl> {
        WebhookUrl::parse(url, self.config.webhooks_allow_private).map_err(|e| errors.push("url", e.to_string())).ok()
    }

    fn event_types(errors: &mut FieldErrors, names: &[String]) -> Vec<EventType> {
        if names.len() > EventType::ALL.len() {
            errors.push("event_types", format!("must hold at most {} event types", EventType::ALL.len()));
            return Vec::new();
        }
        let mut types = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match name.parse::<EventType>() {
                Ok(t) if !types.contains(&t) => types.push(t),
                Ok(_) => {}
                Err(e) => errors.push(format!("event_types[{i}]"), e.to_string()),
            }
        }
        types
    }

    pub async fn create_webhook(
        &self,
        principal: &Principal,
        input: NewWebhook,
    ) -> Result<WebhookEndpoint, ManageError> {
        principal.require(management::WEBHOOKS_WRITE)?;
        let mut errors = FieldErrors::new();
        let url = self.webhook_url(&mut errors, &input.url);
        validate_optional_text(&mut errors, "description", input.description.as_deref(), MAX_WEBHOOK_DESCRIPTION_LEN);
        let event_types = Self::event_types(&mut errors, &input.event_types);
        let existing = self.store.list_webhooks(principal.account_id).await?;
        if existing.len() >= webhook::MAX_ENDPOINTS {
            errors.push("url", format!("an account may have at most {} endpoints", webhook::MAX_ENDPOINTS));
        }
        let url = match (url, errors.into_result()) {
            (Some(url), Ok(())) => url,
            (_, Err(errors)) => return Err(errors.into()),
            // A URL refused is a field error already; kept total rather than assumed.
            (None, Ok(())) => return Err(FieldErrors::single("url", "must be an http or https URL").into()),
        };
        let now = self.now();
        let endpoint = WebhookEndpoint {
            id: WebhookId::generate(now, self.rng()),
            account_id: principal.account_id,
            url,
            description: input.description.map(|d| d.trim().to_owned()),
            event_types,
            disabled: (!input.enabled).then_some(Disabled::ByUser),
            secret: WebhookSecret::generate(self.rng()),
            previous_secret: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_webhook(&endpoint).await?;
        Ok(endpoint)
    }

    pub async fn list_webhooks(&self, principal: &Principal) -> Result<Vec<WebhookEndpoint>, ManageError> {
        principal.require(management::WEBHOOKS_READ)?;
        Ok(self.store.list_webhooks(principal.account_id).await?)
    }

    pub async fn get_webhook(&self, principal: &Principal, id: WebhookId) -> Result<WebhookEndpoint, ManageError> {
        principal.require(management::WEBHOOKS_READ)?;
        self.store.get_webhook(principal.account_id, id).await?.ok_or(ManageError::NotFound)
    }

    pub async fn update_webhook(
        &self,
        principal: &Principal,
        id: WebhookId,
        patch: WebhookPatch,
    ) -> Result<WebhookEndpoint, ManageError> {
        principal.require(management::WEBHOOKS_WRITE)?;
        let mut endpoint = self.store.get_webhook(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        let mut errors = FieldErrors::new();
        if let Some(url) = patch.url
            && let Some(url) = self.webhook_url(&mut errors, &url)
        {
            endpoint.url = url;
        }
        if let Some(description) = patch.description {
            validate_optional_text(&mut errors, "description", description.as_deref(), MAX_WEBHOOK_DESCRIPTION_LEN);
            endpoint.description = description.map(|d| d.trim().to_owned());
        }
        if let Some(names) = patch.event_types {
            endpoint.event_types = Self::event_types(&mut errors, &names);
        }
        match patch.enabled {
            // Re-enabling forgets the failures that disabled it.
            Some(true) => (endpoint.disabled, endpoint.failing_since) = (None, None),
            Some(false) => endpoint.disabled = Some(Disabled::ByUser),
            None => {}
        }
        errors.into_result()?;
        endpoint.updated_at = self.now();
        self.store.update_webhook(&endpoint).await.map_err(not_found)?;
        Ok(endpoint)
    }

    pub async fn delete_webhook(&self, principal: &Principal, id: WebhookId) -> Result<(), ManageError> {
        principal.require(management::WEBHOOKS_WRITE)?;
        self.store.delete_webhook(principal.account_id, id).await.map_err(not_found)
    }

    /// A new secret; the old one keeps signing beside it for `overlap_seconds` (a day when
    /// not given, 0 to stop at once), so a receiver can switch without missing a message.
    pub async fn rotate_webhook_secret(
        &self,
        principal: &Principal,
        id: WebhookId,
        overlap_seconds: Option<u32>,
    ) -> Result<WebhookEndpoint, ManageError> {
        principal.require(management::WEBHOOKS_WRITE)?;
        let overlap = overlap_seconds.unwrap_or(webhook::DEFAULT_ROTATION_OVERLAP_SECONDS);
        if overlap > webhook::MAX_ROTATION_OVERLAP_SECONDS {
            let rule = format!("must be 0 to {}", webhook::MAX_ROTATION_OVERLAP_SECONDS);
            return Err(FieldErrors::single("overlap_seconds", rule).into());
        }
        let mut endpoint = self.store.get_webhook(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        let now = self.now();
        let old = std::mem::replace(&mut endpoint.secret, WebhookSecret::generate(self.rng()));
        endpoint.previous_secret =
            (overlap > 0).then(|| RetiringSecret { secret: old, until: now + Duration::seconds(i64::from(overlap)) });
        endpoint.updated_at = now;
        self.store.update_webhook(&endpoint).await.map_err(not_found)?;
        Ok(endpoint)
    }

    pub async fn list_webhook_attempts(
        &self,
        principal: &Principal,
        id: WebhookId,
        before: Option<AttemptId>,
        limit: u32,
    ) -> Result<AttemptPage, ManageError> {
        principal.require(management::WEBHOOKS_READ)?;
        self.store.get_webhook(principal.account_id, id).await?.ok_or(ManageError::NotFound)?;
        Ok(self.store.list_attempts(principal.account_id, id, before, limit).await?)
    }

    /// Sends a message to an endpoint again, now, whatever came of it before.
    pub async fn retry_webhook_message(
        &self,
        principal: &Principal,
        id: WebhookId,
        message: MessageId,
    ) -> Result<(), ManageError> {
        principal.require(management::WEBHOOKS_WRITE)?;
        self.store.retry_delivery(principal.account_id, id, message, self.now()).await.map_err(not_found)
    }

    /// Claims up to `limit` due deliveries, shared between accounts as `fairness` says, for
    /// [`DELIVERY_LEASE`]: a worker then tries each with [`KeyService::attempt_delivery`].
    /// Several instances may claim at once; each delivery is claimed by one of them, and one
    /// whose worker dies is claimed again when the lease ends.
    pub async fn claim_due_deliveries(
        &self,
        limit: u32,
        fairness: &Fairness,
    ) -> Result<Vec<ClaimedDelivery>, StorageError> {
        let now = self.now();
        self.store.claim_deliveries(now, now + DELIVERY_LEASE, limit, fairness).await
    }

    /// One try at a claimed delivery, recorded; an endpoint that has now failed every
    /// delivery for [`webhook::DISABLE_AFTER`] is disabled.
    pub async fn attempt_delivery<W: WebhookSender>(
        &self,
        sender: &W,
        claim: ClaimedDelivery,
    ) -> Result<(), StorageError> {
        match self.deliver(sender, claim).await? {
            Some(endpoint) => self.disable_failing_webhook(endpoint.account_id, endpoint.id).await,
            None => Ok(()),
        }
    }

    /// Claims up to `limit` due deliveries and makes one try at each, concurrently; answers
    /// how many it tried (a batch, for tests and tools; the worker keeps a pipeline of
    /// [`KeyService::attempt_delivery`]s instead).
    pub async fn deliver_due<W: WebhookSender>(&self, sender: &W, limit: u32) -> Result<usize, StorageError> {
        let claimed = self.claim_due_deliveries(limit, &Fairness::idle(limit)).await?;
        let count = claimed.len();
        let tries = claimed.into_iter().map(|claim| self.deliver(sender, claim));
        let mut to_disable: Vec<WebhookEndpoint> = Vec::new();
        for result in futures_join_all(tries).await {
            if let Some(endpoint) = result?
                && !to_disable.iter().any(|e| e.id == endpoint.id)
            {
                to_disable.push(endpoint);
            }
        }
        // Once per endpoint, however many of its deliveries failed in this batch.
        for endpoint in to_disable {
            self.disable_failing_webhook(endpoint.account_id, endpoint.id).await?;
        }
        Ok(count)
    }

    /// One try; answers the endpoint when it has now failed for [`webhook::DISABLE_AFTER`].
    async fn deliver<W: WebhookSender>(
        &self,
        sender: &W,
        claim: ClaimedDelivery,
    ) -> Result<Option<WebhookEndpoint>, StorageError> {
        let ClaimedDelivery { delivery, endpoint, message } = claim;
        let sent_at = self.now();
        let timestamp = sent_at.unix_timestamp();
        let id = message.id.to_string();
        let signature =
            signing::signature_header(endpoint.signing_secrets(sent_at), &id, timestamp, message.payload.as_bytes());
        let request = WebhookRequest {
            url: endpoint.url.clone(),
            message_id: message.id,
            timestamp,
            signature,
            body: message.payload.clone(),
        };
        let started = std::time::Instant::now();
        let result = sender.send(request).await;
        let took = started.elapsed();
        let latency_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX);
        let (status, response, succeeded) = match result {
            // Past the timeout, an answer is a failure, a 2xx too: a receiver that takes
            // that long holds a worker's slot, and is told so by a retry.
            Answered { status, .. } if took > SEND_TIMEOUT => {
                (Some(status), format!("answered after the {} s timeout", SEND_TIMEOUT.as_secs()), false)
            }
            Answered { status, body } => (Some(status), body, (200..300).contains(&status)),
            SendResult::Failed(reason) => (None, reason, false),
        };
        let now = self.now();
        let attempts = delivery.attempts + 1;
        let outcome = if succeeded {
            AttemptOutcome::Delivered
        } else {
            match schedule::retry_delay(attempts, self.rng()) {
                Some(delay) => AttemptOutcome::RetryAt(now + delay),
                None => AttemptOutcome::GaveUp,
            }
        };
        let attempt = Attempt {
            id: AttemptId::generate(now, self.rng()),
            endpoint_id: endpoint.id,
            message_id: message.id,
            event_type: message.event_type,
            at: sent_at,
            status,
            latency_ms,
            response: webhook::excerpt(&response),
            succeeded,
        };
        self.store.record_attempt(&attempt, outcome).await?;
        let failing_for = endpoint.failing_since.map(|since| now - since);
        Ok((!succeeded && failing_for.is_some_and(|d| d >= webhook::DISABLE_AFTER)).then_some(endpoint))
    }

    /// Turns off an endpoint that has failed every delivery for [`webhook::DISABLE_AFTER`],
    /// with an audit event saying so; its account turns it on again.
    async fn disable_failing_webhook(&self, account: AccountId, id: WebhookId) -> Result<(), StorageError> {
        // As stored now: a success since, or another worker's disabling, leaves it be.
        let Some(mut endpoint) = self.store.get_webhook(account, id).await? else { return Ok(()) };
        if endpoint.disabled.is_some() || endpoint.failing_since.is_none() {
            return Ok(());
        }
        let now = self.now();
        endpoint.disabled = Some(Disabled::Failing);
        endpoint.updated_at = now;
        let mut metadata = Metadata::new();
        metadata.insert("reason".into(), "every delivery failed for 5 days".into());
        metadata.insert("url".into(), endpoint.url.as_str().into());
        let event = AuditEvent {
            id: EventId::generate(now, self.rng()),
            ts: now,
            account_id: Some(endpoint.account_id),
            actor: Actor::System,
            action: Cow::Borrowed(Action::WebhookDisable.as_str()),
            resource_type: Cow::Borrowed(Action::WebhookDisable.resource_type()),
            resource_id: Some(endpoint.id.to_string()),
            result: AuditResult::Success,
            context: RequestContext::default(),
            metadata,
        };
        let store = &self.store;
        store
            .atomically(async {
                let written = match store.update_webhook(&endpoint).await {
                    Ok(()) => store.append_audit(&event).await.map(drop),
                    Err(UpdateError::NotFound) => return Outcome::Commit(Ok(())),
                    Err(UpdateError::Storage(e)) => Err(e),
                };
                match written {
                    Ok(()) => Outcome::Commit(Ok(())),
                    Err(e) => Outcome::Rollback(Err(e)),
                }
            })
            .await?
    }
}

use SendResult::Answered;

fn not_found(error: UpdateError) -> ManageError {
    match error {
        UpdateError::NotFound => ManageError::NotFound,
        UpdateError::Storage(e) => ManageError::Storage(e),
    }
}

/// Awaits every future, concurrently, in order (the domain has no futures crate).
async fn futures_join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => {
                        *output = Some(value);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key {
        crate::key::tests_support::sample_key(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn a_change_publishes_what_it_means() {
        let before = key();
        let now = before.created_at;
        let revoked = Key { revoked_at: Some(now), ..before.clone() };
        assert_eq!(key_change_events(&before, &revoked), [EventType::KeyRevoked]);
        let leaked = Key { leaked_at: Some(now), leak_source: Some("x".into()), ..revoked.clone() };
        assert_eq!(key_change_events(&before, &leaked), [EventType::KeyLeaked, EventType::KeyRevoked]);
        let renamed = Key { name: "other".into(), ..before.clone() };
        assert_eq!(key_change_events(&before, &renamed), [EventType::KeyUpdated]);
        assert!(key_change_events(&before, &before).is_empty());
        // An empty PATCH (a new updated_at), or usage flushed in between, is no update.
        let touched = Key {
            updated_at: now + time::Duration::seconds(1),
            usage_count: 7,
            last_used_at: Some(now),
            ..before.clone()
        };
        assert!(key_change_events(&before, &touched).is_empty());
        let disabled = Key { is_active: false, ..touched };
        assert_eq!(key_change_events(&before, &disabled), [EventType::KeyUpdated]);
    }
}
