//! `AuditStore` and `IdempotencyStore` in memory.

use crate::*;

impl AuditStore for MemStore {
    fn append_audit(&self, event: &AuditEvent) -> impl Future<Output = Result<AuditRecord, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let (seq, prev_hash) = state.audit_heads.get(&event.account_id).copied().unwrap_or((0, [0; 32]));
            let hash = chain_hash(&prev_hash, event);
            let record = AuditRecord { event: event.clone(), seq: seq + 1, prev_hash, hash };
            state.audit_heads.insert(event.account_id, (seq + 1, hash));
            state.audit.insert(event.id, record.clone());
            record
        })))
    }

    fn list_audit(
        &self,
        account: AccountId,
        filter: &AuditFilter,
        limit: u32,
        before: Option<AuditPosition>,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            // The map is in id order, which is time order only to the millisecond: the page
            // is chosen by (ts, id) as PostgreSQL chooses it.
            let mut found: Vec<&AuditRecord> = state
                .audit
                .values()
                .filter(|r| r.event.account_id == Some(account) && filter.matches(&r.event))
                .filter(|r| before.is_none_or(|before| r.position() < before))
                .collect();
            found.sort_unstable_by_key(|r| std::cmp::Reverse(r.position()));
            found.into_iter().take(limit as usize).cloned().collect()
        })))
    }

    fn audit_chain(
        &self,
        account: Option<AccountId>,
        after_seq: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<AuditRecord>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let mut chain: Vec<AuditRecord> =
                state.audit.values().filter(|r| r.event.account_id == account && r.seq > after_seq).cloned().collect();
            chain.sort_by_key(|r| r.seq);
            chain.truncate(limit as usize);
            chain
        })))
    }

    fn audit_chains(&self) -> impl Future<Output = Result<Vec<Option<AccountId>>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.audit_heads.keys().copied().collect())))
    }

    fn purge_audit(
        &self,
        account: Option<AccountId>,
        before: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let before_count = state.audit.len();
            state.audit.retain(|_, r| r.event.account_id != account || r.event.ts >= before);
            (before_count - state.audit.len()) as u64
        })))
    }
}

impl IdempotencyStore for MemStore {
    fn claim_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Claim, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let slot = (account, key.to_owned());
            if let Some(entry) = state.idempotency.get(&slot) {
                match &entry.response {
                    Some(response) if !lapsed(entry.created_at, None, now) => {
                        return Claim::Completed { fingerprint: entry.fingerprint, response: response.clone() };
                    }
                    None if !lapsed(entry.created_at, entry.lease_until, now) => {
                        return Claim::InFlight { fingerprint: entry.fingerprint };
                    }
                    _ => {}
                }
            }
            let entry =
                IdempotencyEntry { fingerprint, created_at: now, lease_until: Some(now + LEASE), response: None };
            state.idempotency.insert(slot, entry);
            Claim::Claimed
        })))
    }

    fn complete_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
        response: &StoredResponse,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            let slot = (account, key.to_owned());
            let created_at = state.idempotency.get(&slot).map_or(now, |e| e.created_at);
            let kept =
                IdempotencyEntry { fingerprint, created_at, lease_until: None, response: Some(response.clone()) };
            state.idempotency.insert(slot, kept);
        });
        ready(Ok(()))
    }

    fn release_idempotency(
        &self,
        account: AccountId,
        key: &str,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            let slot = (account, key.to_owned());
            if state.idempotency.get(&slot).is_some_and(|e| e.response.is_none()) {
                state.idempotency.remove(&slot);
            }
        });
        ready(Ok(()))
    }

    fn purge_idempotency(&self, before: OffsetDateTime) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            let count = state.idempotency.len();
            state.idempotency.retain(|_, e| e.created_at >= before);
            (count - state.idempotency.len()) as u64
        })))
    }
}
