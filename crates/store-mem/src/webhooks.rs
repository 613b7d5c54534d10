//! `WebhookStore` in memory: one lock taken per call, so a claim is never shared.

use keyward_domain::{
    AttemptId, MessageId, WebhookId,
    ports::WebhookStore,
    webhook::{
        Attempt, AttemptOutcome, AttemptPage, ClaimedDelivery, Delivery, DeliveryState, EventType, Fairness, Message,
        WebhookEndpoint,
        notices::{expiry_mark, is_current, is_low, quota_mark},
    },
};

use crate::*;

impl WebhookStore for MemStore {
    fn insert_webhook(&self, endpoint: &WebhookEndpoint) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| state.webhooks.insert(endpoint.id, endpoint.clone()));
        ready(Ok(()))
    }

    fn get_webhook(
        &self,
        account: AccountId,
        id: WebhookId,
    ) -> impl Future<Output = Result<Option<WebhookEndpoint>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.webhooks.get(&id).filter(|e| e.account_id == account).cloned())))
    }

    fn list_webhooks(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<Vec<WebhookEndpoint>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.webhooks.values().filter(|e| e.account_id == account).cloned().collect())))
    }

    fn update_webhook(&self, endpoint: &WebhookEndpoint) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| match state.webhooks.get_mut(&endpoint.id) {
            Some(stored) if stored.account_id == endpoint.account_id => {
                *stored = endpoint.clone();
                Ok(())
            }
            _ => Err(UpdateError::NotFound),
        }))
    }

    fn delete_webhook(
        &self,
        account: AccountId,
        id: WebhookId,
    ) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| {
            if state.webhooks.get(&id).is_none_or(|e| e.account_id != account) {
                return Err(UpdateError::NotFound);
            }
            state.webhooks.remove(&id);
            state.deliveries.retain(|(_, endpoint), _| *endpoint != id);
            state.attempts.retain(|_, a| a.endpoint_id != id);
            Ok(())
        }))
    }

    fn enqueue_message(&self, message: &Message) -> impl Future<Output = Result<u32, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let targets: Vec<WebhookId> = state
                .webhooks
                .values()
                .filter(|e| e.account_id == message.account_id && e.disabled.is_none() && e.wants(message.event_type))
                .map(|e| e.id)
                .collect();
            if targets.is_empty() {
                return 0;
            }
            state.messages.insert(message.id, message.clone());
            for endpoint_id in &targets {
                let delivery = Delivery {
                    message_id: message.id,
                    endpoint_id: *endpoint_id,
                    account_id: message.account_id,
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_attempt_at: message.created_at,
                };
                state.deliveries.insert((message.id, *endpoint_id), delivery);
            }
            u32::try_from(targets.len()).unwrap_or(u32::MAX)
        })))
    }

    fn claim_deliveries(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
        fairness: &Fairness,
    ) -> impl Future<Output = Result<Vec<ClaimedDelivery>, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let mut due: Vec<(AccountId, OffsetDateTime, (MessageId, WebhookId))> = state
                .deliveries
                .iter()
                .filter(|(_, d)| d.state == DeliveryState::Pending && d.next_attempt_at <= now)
                .filter(|(_, d)| state.webhooks.get(&d.endpoint_id).is_some_and(|e| e.disabled.is_none()))
                .map(|(k, d)| (d.account_id, d.next_attempt_at, *k))
                .collect();
            // Each account's earliest first, within its room; then round-robin by rank.
            due.sort();
            let mut ranked: Vec<(u32, OffsetDateTime, (MessageId, WebhookId))> = Vec::with_capacity(due.len());
            let mut previous: Option<(AccountId, u32)> = None;
            for (account, at, key) in due {
                let rank = match previous {
                    Some((a, r)) if a == account => r + 1,
                    _ => 1,
                };
                previous = Some((account, rank));
                if rank <= fairness.room_for(account) {
                    ranked.push((rank, at, key));
                }
            }
            ranked.sort();
            ranked.truncate(limit as usize);
            let mut claimed = Vec::with_capacity(ranked.len());
            for (_, _, key) in ranked {
                let (Some(endpoint), Some(message)) =
                    (state.webhooks.get(&key.1).cloned(), state.messages.get(&key.0).cloned())
                else {
                    continue;
                };
                let Some(delivery) = state.deliveries.get_mut(&key) else { continue };
                let before = delivery.clone();
                delivery.next_attempt_at = lease_until;
                claimed.push(ClaimedDelivery { delivery: before, endpoint, message });
            }
            claimed
        })))
    }

    fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            state.attempts.insert(attempt.id, attempt.clone());
            if let Some(delivery) = state.deliveries.get_mut(&(attempt.message_id, attempt.endpoint_id)) {
                delivery.attempts += 1;
                (delivery.state, delivery.next_attempt_at) = match outcome {
                    AttemptOutcome::Delivered => (DeliveryState::Delivered, attempt.at),
                    AttemptOutcome::RetryAt(at) => (DeliveryState::Pending, at),
                    AttemptOutcome::GaveUp => (DeliveryState::Failed, attempt.at),
                };
            }
            if let Some(endpoint) = state.webhooks.get_mut(&attempt.endpoint_id) {
                if attempt.succeeded {
                    endpoint.failing_since = None;
                } else if endpoint.failing_since.is_none() {
                    endpoint.failing_since = Some(attempt.at);
                }
            }
        });
        ready(Ok(()))
    }

    fn list_attempts(
        &self,
        account: AccountId,
        endpoint: WebhookId,
        before: Option<AttemptId>,
        limit: u32,
    ) -> impl Future<Output = Result<AttemptPage, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            if state.webhooks.get(&endpoint).is_none_or(|e| e.account_id != account) {
                return AttemptPage { attempts: Vec::new(), has_more: false };
            }
            let mut attempts: Vec<Attempt> = state
                .attempts
                .values()
                .rev()
                .filter(|a| a.endpoint_id == endpoint && before.is_none_or(|b| a.id < b))
                .take(limit as usize + 1)
                .cloned()
                .collect();
            let has_more = attempts.len() > limit as usize;
            attempts.truncate(limit as usize);
            AttemptPage { attempts, has_more }
        })))
    }

    fn purge_webhook_messages(&self, before: OffsetDateTime) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let old: Vec<MessageId> = state
                .messages
                .values()
                .filter(|m| m.created_at < before)
                .filter(|m| {
                    !state.deliveries.iter().any(|((id, _), d)| *id == m.id && d.state == DeliveryState::Pending)
                })
                .map(|m| m.id)
                .collect();
            for id in &old {
                state.messages.remove(id);
            }
            state.deliveries.retain(|(id, _), _| !old.contains(id));
            state.attempts.retain(|_, a| !old.contains(&a.message_id));
            old.len() as u64
        })))
    }

    fn keys_expiring_unannounced(
        &self,
        now: OffsetDateTime,
        lead: time::Duration,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut due: Vec<Key> = state
                .keys
                .values()
                .filter(|k| k.kind == KeyKind::Service && k.revoked_at.is_none() && k.rotated_to.is_none())
                .filter(|k| k.expires_at.is_some_and(|at| at > now && at <= now + lead))
                .filter(|k| {
                    let mark = expiry_mark(k.expires_at.unwrap_or(now), lead);
                    !state.notices.contains_key(&(k.id, EventType::KeyExpiring.as_str(), mark))
                })
                .cloned()
                .collect();
            due.sort_by_key(|k| k.expires_at);
            due.truncate(limit as usize);
            due
        })))
    }

    fn keys_with_low_quota_unannounced(
        &self,
        now: OffsetDateTime,
        percent: u8,
        event: EventType,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            state
                .keys
                .values()
                .filter(|k| k.kind == KeyKind::Service && k.revoked_at.is_none())
                .filter(|k| match (&k.quota, k.quota_balance) {
                    (Some(quota), Some(balance)) => {
                        is_current(quota, balance, now)
                            && is_low(quota, balance, percent)
                            && !state.notices.contains_key(&(k.id, event.as_str(), quota_mark(balance)))
                    }
                    _ => false,
                })
                .take(limit as usize)
                .cloned()
                .collect()
        })))
    }

    fn record_notice(
        &self,
        key: KeyId,
        event: EventType,
        mark: &str,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(self.write(|state| state.notices.insert((key, event.as_str(), mark.to_owned()), ()).is_none())))
    }

    fn retry_delivery(
        &self,
        account: AccountId,
        endpoint: WebhookId,
        message: MessageId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| match state.deliveries.get_mut(&(message, endpoint)) {
            Some(delivery) if delivery.account_id == account => {
                (delivery.state, delivery.next_attempt_at) = (DeliveryState::Pending, now);
                Ok(())
            }
            _ => Err(UpdateError::NotFound),
        }))
    }
}
