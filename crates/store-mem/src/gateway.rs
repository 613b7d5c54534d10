//! Route tables for the forward-auth route (issue #31), kept as the gates it reads.

use std::{
    future::{Future, ready},
    sync::Arc,
};

use keyward_domain::{
    AccountId, KeyspaceId,
    gateway::{Gate, RouteTable},
    ports::{GatewayStore, StorageError},
};
use time::OffsetDateTime;

use crate::MemStore;

impl GatewayStore for MemStore {
    fn gate(&self, keyspace: KeyspaceId) -> impl Future<Output = Result<Option<Arc<Gate>>, StorageError>> + Send {
        ready(Ok(self.read(|state| {
            let account_id = state.keyspaces.get(&keyspace)?.account_id;
            Some(state.gates.get(&keyspace).cloned().unwrap_or_else(|| {
                Arc::new(Gate { keyspace_id: keyspace, account_id, routes: RouteTable::default(), updated_at: None })
            }))
        })))
    }

    fn put_routes(
        &self,
        account: AccountId,
        keyspace: KeyspaceId,
        routes: &RouteTable,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send {
        ready(Ok(self.write(|state| {
            if state.keyspaces.get(&keyspace).is_none_or(|k| k.account_id != account) {
                return false;
            }
            let gate =
                Gate { keyspace_id: keyspace, account_id: account, routes: routes.clone(), updated_at: Some(at) };
            state.gates.insert(keyspace, Arc::new(gate));
            true
        })))
    }
}
