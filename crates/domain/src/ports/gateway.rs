//! The route tables of keyspaces, for the forward-auth route (issue #31). A store with a
//! verification cache caches gates with the keys and evicts them everywhere as it evicts
//! a revoked key.

use std::{future::Future, sync::Arc};

use time::OffsetDateTime;

use crate::{
    gateway::{Gate, RouteTable},
    id::{AccountId, KeyspaceId},
    ports::StorageError,
};

pub trait GatewayStore: Send + Sync {
    /// The keyspace's account and route table (the default table when none was written),
    /// whatever the account: the forward-auth route knows only the keyspace. `None`: no
    /// such keyspace. Read on every forward-auth check: never a write.
    fn gate(&self, keyspace: KeyspaceId) -> impl Future<Output = Result<Option<Arc<Gate>>, StorageError>> + Send;

    /// Replaces the keyspace's route table; answers `false` when the account has no such
    /// keyspace. Every instance sees the new table within a second.
    fn put_routes(
        &self,
        account: AccountId,
        keyspace: KeyspaceId,
        routes: &RouteTable,
        at: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
}
