//! `AccountStore` and `KeyspaceStore` in memory.

use crate::*;

impl AccountStore for MemStore {
    fn create_account(
        &self,
        account: &Account,
        default_keyspace: &Keyspace,
        first_key: Option<&Key>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        self.write(|state| {
            state.accounts.insert(account.id, account.clone());
            state.keyspaces.insert(default_keyspace.id, default_keyspace.clone());
            if let Some(key) = first_key {
                state.by_hash.insert(key.hash, key.id);
                state.keys.insert(key.id, key.clone());
            }
        });
        ready(Ok(()))
    }

    fn get_account(&self, id: AccountId) -> impl Future<Output = Result<Option<Account>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.accounts.get(&id).cloned())))
    }
}

impl KeyspaceStore for MemStore {
    fn insert_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), InsertKeyspaceError>> + Send {
        ready(self.write(|state| {
            let taken =
                state.keyspaces.values().any(|k| k.account_id == keyspace.account_id && k.name == keyspace.name);
            if taken {
                return Err(InsertKeyspaceError::DuplicateName);
            }
            state.keyspaces.insert(keyspace.id, keyspace.clone());
            Ok(())
        }))
    }

    fn get_keyspace(
        &self,
        account: AccountId,
        id: KeyspaceId,
    ) -> impl Future<Output = Result<Option<Keyspace>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.keyspaces.get(&id).filter(|k| k.account_id == account).cloned())))
    }

    fn find_keyspace_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> impl Future<Output = Result<Option<Keyspace>, StorageError>> + Send {
        ready(Ok(
            self.read(|state| state.keyspaces.values().find(|k| k.account_id == account && k.name == name).cloned())
        ))
    }

    fn list_keyspaces(&self, account: AccountId) -> impl Future<Output = Result<Vec<Keyspace>, StorageError>> + Send {
        ready(Ok(self.read(|state| state.keyspaces.values().filter(|k| k.account_id == account).cloned().collect())))
    }

    fn update_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), UpdateKeyspaceError>> + Send {
        ready(self.write(|state| {
            let taken = state
                .keyspaces
                .values()
                .any(|k| k.account_id == keyspace.account_id && k.name == keyspace.name && k.id != keyspace.id);
            if taken {
                return Err(UpdateKeyspaceError::DuplicateName);
            }
            let stored = state
                .keyspaces
                .get_mut(&keyspace.id)
                .filter(|k| k.account_id == keyspace.account_id)
                .ok_or(UpdateKeyspaceError::NotFound)?;
            *stored = Keyspace { created_at: stored.created_at, ..keyspace.clone() };
            Ok(())
        }))
    }

    fn delete_keyspace(
        &self,
        account: AccountId,
        id: KeyspaceId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<(), DeleteKeyspaceError>> + Send {
        ready(self.write(|state| {
            if state.keyspaces.get(&id).is_none_or(|k| k.account_id != account) {
                return Err(DeleteKeyspaceError::NotFound);
            }
            let in_keyspace = |k: &Key| k.keyspace_id == Some(id);
            let live = |k: &Key| !matches!(k.status(now), KeyStatus::Revoked | KeyStatus::Expired);
            if state.keys.values().any(|k| in_keyspace(k) && live(k)) {
                return Err(DeleteKeyspaceError::NotEmpty);
            }
            let doomed: Vec<(KeyId, KeyHash)> =
                state.keys.values().filter(|k| in_keyspace(k)).map(|k| (k.id, k.hash)).collect();
            for (key_id, hash) in doomed {
                state.keys.remove(&key_id);
                state.by_hash.remove(&hash);
            }
            state.keyspaces.remove(&id);
            state.gates.remove(&id);
            Ok(())
        }))
    }
}
