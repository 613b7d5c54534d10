//! `KeyStore` in memory.

use crate::*;

fn matches(key: &Key, account: AccountId, filter: &KeyFilter, now: OffsetDateTime) -> bool {
    key.account_id == account
        && key.kind == filter.kind
        && filter.keyspace_id.is_none_or(|ks| key.keyspace_id == Some(ks))
        && filter.environment.is_none_or(|env| key.environment == env)
        && filter.status.is_none_or(|status| key.status(now) == status)
        && filter.owner_id.as_ref().is_none_or(|owner| key.owner_id.as_ref() == Some(owner))
}

impl KeyStore for MemStore {
    fn insert_keys(
        &self,
        keys: &[Key],
        max_keys: Option<u64>,
    ) -> impl Future<Output = Result<(), InsertKeyError>> + Send {
        ready(self.write(|state| {
            if let Some(index) = keys.iter().position(|k| state.by_hash.contains_key(&k.hash)) {
                return Err(InsertKeyError::DuplicateHash { index });
            }
            if let (Some(max), Some(first)) = (max_keys, keys.first()) {
                let now = first.created_at;
                let adding = keys.iter().filter(|k| k.kind == KeyKind::Service).count() as u64;
                if state.active_service_keys(first.account_id, now) + adding > max {
                    return Err(InsertKeyError::KeyLimitReached);
                }
            }
            for key in keys {
                state.by_hash.insert(key.hash, key.id);
                state.keys.insert(key.id, key.clone());
            }
            Ok(())
        }))
    }

    fn find_by_hash(
        &self,
        hash: &KeyHash,
    ) -> impl Future<Output = Result<Option<Arc<VerifiableKey>>, StorageError>> + Send {
        #[cfg(feature = "testing")]
        self.hash_lookups.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ready(Ok(self.read(|state| {
            let key = state.keys.get(state.by_hash.get(hash)?)?.clone();
            let ip_policy =
                key.keyspace_id.and_then(|ks| state.keyspaces.get(&ks)).map(|ks| ks.ip_policy).unwrap_or_default();
            Some(Arc::new(VerifiableKey::new(key, ip_policy)))
        })))
    }

    fn get_key(&self, account: AccountId, id: KeyId) -> impl Future<Output = Result<Option<Key>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.keys.get(&id).filter(|k| k.account_id == account).cloned())))
    }

    fn list_keys(
        &self,
        account: AccountId,
        filter: &KeyFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<KeyPage, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let matching = || state.keys.values().rev().filter(|k| matches(k, account, filter, now));
            let total = matching().count() as u64;
            let limit = page.limit as usize;
            let mut keys: Vec<Key> = matching()
                .filter(|k| page.before.is_none_or(|before| k.id < before))
                .take(limit + 1)
                .cloned()
                .collect();
            let has_more = keys.len() > limit;
            keys.truncate(limit);
            KeyPage { keys, total, has_more }
        })))
    }

    fn update_key(&self, before: &Key, after: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| {
            let stored = state
                .keys
                .get_mut(&after.id)
                .filter(|k| k.account_id == after.account_id)
                .ok_or(UpdateError::NotFound)?;
            macro_rules! changed {
                ($($field:ident),+) => {$(
                    if before.$field != after.$field {
                        stored.$field = after.$field.clone();
                    }
                )+};
            }
            changed!(
                name,
                description,
                scopes,
                resource,
                tier,
                rate_limits,
                quota,
                ip_allowlist,
                expires_at,
                idle_timeout_seconds,
                owner_id,
                metadata,
                is_active,
                leaked_at,
                leak_source
            );
            stored.revoked_at = stored.revoked_at.or(after.revoked_at);
            stored.updated_at = after.updated_at;
            Ok(())
        }))
    }

    fn rotate_key(&self, old: &Key, new: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send {
        ready(self.write(|state| {
            let stored = state
                .keys
                .get_mut(&old.id)
                .filter(|k| k.account_id == old.account_id && k.revoked_at.is_none())
                .ok_or(UpdateError::NotFound)?;
            stored.expires_at = old.expires_at;
            stored.rotated_to = old.rotated_to;
            stored.updated_at = old.updated_at;
            state.by_hash.insert(new.hash, new.id);
            state.keys.insert(new.id, new.clone());
            Ok(())
        }))
    }

    fn touch_key(&self, id: KeyId, at: OffsetDateTime) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            if let Some(key) = state.keys.get_mut(&id) {
                key.last_used_at = Some(key.last_used_at.map_or(at, |last| last.max(at)));
            }
        });
        ready(Ok(()))
    }

    fn live_temporary_keys(
        &self,
        account: AccountId,
        user: UserId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            state
                .keys
                .values()
                .filter(|k| k.account_id == account && k.kind == KeyKind::Temporary)
                .filter(|k| k.created_by == keyward_domain::key::Actor::User(user) && k.revoked_at.is_none())
                .filter(|k| k.expires_at.is_none_or(|at| at > now))
                .cloned()
                .collect()
        })))
    }

    fn list_account_keys(&self, account: AccountId) -> impl Future<Output = Result<Vec<Key>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            state
                .keys
                .values()
                .rev()
                .filter(|k| k.account_id == account && k.kind != KeyKind::Service)
                .take(1_000)
                .cloned()
                .collect()
        })))
    }

    fn count_account_keys(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<u64, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let live = |k: &&Key| {
                k.account_id == account
                    && k.kind != KeyKind::Service
                    && k.revoked_at.is_none()
                    && k.expires_at.is_none_or(|at| at > now)
            };
            state.keys.values().filter(live).count() as u64
        })))
    }

    fn count_keys(
        &self,
        account: AccountId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<KeyCounts, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let revoked = state
                .keys
                .values()
                .filter(|k| k.account_id == account && k.kind == KeyKind::Service && k.revoked_at.is_some())
                .count() as u64;
            KeyCounts { active: state.active_service_keys(account, now), revoked }
        })))
    }
}
