//! The notices scan: `key.expiring`, `quota.low` and `quota.exhausted`, each sent once per
//! key and threshold ([`crate::webhook::notices`]). Every instance's webhook worker runs it;
//! the notice's mark is recorded before the event is published, in one unit of work, so
//! two instances finding the same key send one event.

use super::*;
use crate::webhook::{
    Message,
    notices::{self, expiry_mark, quota_mark},
};

/// The most keys one scan announces per threshold; the next scan takes the rest.
const SCAN_BATCH: u32 = 500;

impl<S: Store> KeyService<S> {
    /// One scan; answers how many events it published.
    pub async fn announce_notices(&self) -> Result<usize, StorageError> {
        let settings = &self.config.webhook_notices;
        let now = self.now();
        let mut sent = 0;
        let leads = settings.leads_ascending();
        for (i, lead) in leads.iter().enumerate() {
            for key in self.store.keys_expiring_unannounced(now, *lead, SCAN_BATCH).await? {
                let Some(expires_at) = key.expires_at else { continue };
                // The longer leads are moot once a shorter one is announced.
                let marks: Vec<String> = leads[i..].iter().map(|l| expiry_mark(expires_at, *l)).collect();
                if self.notice(&key, EventType::KeyExpiring, &marks, None).await? {
                    sent += 1;
                }
            }
        }
        let levels = [(EventType::QuotaLow, settings.quota_low_percent), (EventType::QuotaExhausted, 0)];
        for (event, percent) in levels {
            for key in self.store.keys_with_low_quota_unannounced(now, percent, event, SCAN_BATCH).await? {
                let (Some(quota), Some(balance)) = (&key.quota, key.quota_balance) else { continue };
                if !notices::is_current(quota, balance, now) || !notices::is_low(quota, balance, percent) {
                    continue;
                }
                let mark = quota_mark(balance);
                if self.notice(&key, event, std::slice::from_ref(&mark), Some(balance.remaining)).await? {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }

    /// Records `marks` and, when the first was new, publishes `event` about `key`, in one
    /// unit of work.
    async fn notice(
        &self,
        key: &Key,
        event: EventType,
        marks: &[String],
        quota_remaining: Option<i64>,
    ) -> Result<bool, StorageError> {
        let published = self
            .changing(async {
                let mut new = false;
                for (i, mark) in marks.iter().enumerate() {
                    let recorded = self.store.record_notice(key.id, event, mark).await?;
                    new |= i == 0 && recorded;
                }
                if new {
                    let remaining = quota_remaining.map(|r| u64::try_from(r).unwrap_or(0));
                    let message = Message::about_key_with(event, key, remaining, self.now(), self.rng());
                    self.store.enqueue_message(&message).await?;
                }
                Ok(new)
            })
            .await;
        published.map_err(|e| match e {
            ManageError::Storage(e) => e,
            other => StorageError::Internal(other.to_string().into()),
        })
    }
}
