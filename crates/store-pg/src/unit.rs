//! Units of work: one pooled connection pinned to a task (a task-local), its transaction,
//! and the guard that closes a connection abandoned mid-transaction.

use super::*;

/// The connection a unit of work runs on, shared by every call of its task.
#[derive(Clone)]
pub(crate) struct Pinned {
    pub(crate) pool_id: usize,
    pub(crate) conn: SharedConn,
}

/// The unit of work's connection; `None` once the unit has ended.
pub(crate) type SharedConn = Arc<tokio::sync::Mutex<Option<Object<AsyncPgConnection>>>>;

tokio::task_local! {
    pub(crate) static PINNED: Pinned;
}

/// Closes a unit of work's connection if the unit is abandoned half-way.
pub(crate) struct Unfinished(pub(crate) SharedConn);

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.0.try_lock()
            && let Some(conn) = slot.take()
        {
            // Out of the pool and closed: PostgreSQL rolls the open transaction back.
            drop(Object::take(conn));
        }
    }
}

/// A connection borrowed for one call. (It lives on the stack of that call only, so the
/// size of a pooled connection held inline costs nothing worth a box.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum ConnGuard {
    Pooled(Object<AsyncPgConnection>),
    /// Holds `Some` for as long as the unit of work runs (`conn` checks).
    Pinned(tokio::sync::OwnedMutexGuard<Option<Object<AsyncPgConnection>>>),
}

impl std::ops::Deref for ConnGuard {
    type Target = AsyncPgConnection;

    fn deref(&self) -> &AsyncPgConnection {
        match self {
            Self::Pooled(conn) => conn,
            Self::Pinned(guard) => guard.as_deref().unwrap_or_else(|| unreachable!("checked when borrowed")),
        }
    }
}

impl std::ops::DerefMut for ConnGuard {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        match self {
            Self::Pooled(conn) => conn,
            Self::Pinned(guard) => guard.as_deref_mut().unwrap_or_else(|| unreachable!("checked when borrowed")),
        }
    }
}

impl Atomic for PgStore {
    /// Begins a transaction on one pooled connection and runs `work` with that connection
    /// pinned to the task: every call `work` makes on this store (and its clones) runs in
    /// the transaction; calls that open transactions of their own nest as savepoints.
    #[tracing::instrument(target = "keyward::otel", name = "store.transaction", skip_all, fields(db.system.name = "postgresql"))]
    async fn atomically<T, F: Future<Output = Outcome<T>>>(&self, work: F) -> Result<T, StorageError> {
        use diesel_async::{AnsiTransactionManager, TransactionManager};
        // Inside a unit of work of this store already: a savepoint of its transaction.
        if let Some(shared) = PINNED.try_with(|p| (p.pool_id == self.pool_id()).then(|| p.conn.clone())).ok().flatten()
        {
            return savepoint(&shared, work).await;
        }
        let _permit = tokio::time::timeout(self.unit_wait, self.units.acquire())
            .await
            .map_err(|_| StorageError::Unavailable("every unit-of-work slot stayed busy".into()))?
            .map_err(|e| StorageError::Unavailable(Box::new(e)))?;
        let mut conn = self.own_conn().await?;
        AnsiTransactionManager::begin_transaction(&mut *conn).await.map_err(db_error)?;
        let shared: SharedConn = Arc::new(tokio::sync::Mutex::new(Some(conn)));
        let pinned = Pinned { pool_id: self.pool_id(), conn: shared.clone() };
        // If this future is dropped before the end (the request was cancelled), the
        // connection must not go back to the pool mid-transaction: the guard closes it.
        let unfinished = Unfinished(shared.clone());
        let outcome = PINNED.scope(pinned, work).await;
        let conn = shared.lock().await.take();
        drop(unfinished);
        let Some(mut conn) = conn else {
            return Err(StorageError::Internal("the unit of work lost its connection".into()));
        };
        match outcome {
            Outcome::Commit(value) => {
                AnsiTransactionManager::commit_transaction(&mut *conn).await.map_err(db_error)?;
                Ok(value)
            }
            Outcome::Rollback(value) => {
                AnsiTransactionManager::rollback_transaction(&mut *conn).await.map_err(db_error)?;
                Ok(value)
            }
        }
    }
}

/// A unit of work nested in another: a savepoint on the outer unit's connection, released
/// on `Commit` (the outer unit still decides) and rolled back to on `Rollback`.
async fn savepoint<T, F: Future<Output = Outcome<T>>>(shared: &SharedConn, work: F) -> Result<T, StorageError> {
    use diesel_async::{AnsiTransactionManager, TransactionManager};
    async fn on_conn<R>(
        shared: &SharedConn,
        step: impl AsyncFnOnce(&mut AsyncPgConnection) -> Result<R, DieselError>,
    ) -> Result<R, StorageError> {
        let mut guard = shared.lock().await;
        let conn = guard.as_mut().ok_or_else(|| StorageError::Internal("the unit of work has ended".into()))?;
        step(conn).await.map_err(db_error)
    }
    on_conn(shared, async |conn| AnsiTransactionManager::begin_transaction(conn).await).await?;
    match work.await {
        Outcome::Commit(value) => {
            on_conn(shared, async |conn| AnsiTransactionManager::commit_transaction(conn).await).await?;
            Ok(value)
        }
        Outcome::Rollback(value) => {
            on_conn(shared, async |conn| AnsiTransactionManager::rollback_transaction(conn).await).await?;
            Ok(value)
        }
    }
}
