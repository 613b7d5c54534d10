//! Embedding: a Rust service verifies its customers' keys in-process against the same
//! PostgreSQL a Keyward server uses — the same verification cache, kept coherent by the
//! same `LISTEN/NOTIFY` invalidation (a key revoked through any Keyward instance stops
//! working here within milliseconds). [`connect`] prepares that store; the runtime's
//! `keyward_runtime::embedded::EmbeddedVerifier` composes it with a resolver, the limits
//! and the usage flusher.
//!
//! ```no_run
//! # async fn example() -> Result<(), keyward_store_pg::embedded::EmbedError> {
//! let store = keyward_store_pg::embedded::connect("postgres://keyward@db/keyward", &Default::default()).await?;
//! // … then `keyward_runtime::embedded::EmbeddedVerifier::start(store, account, limits, resolver, options)`:
//! // the example in `examples/embedded-service` shows the whole composition.
//! # Ok(()) }
//! ```
//!
//! Needs a tokio runtime (the listener is a tokio task).

use crate::{CacheConfig, MigrationError, PgStore, PoolBuildError, PoolConfig, pending_migrations};

/// How the embedded store connects and caches; the defaults are `keyward serve`'s.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedStoreOptions {
    pub pool: PoolConfig,
    pub cache: CacheConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error(transparent)]
    Pool(#[from] PoolBuildError),
    #[error("cannot check the database's migrations")]
    Migrations(#[from] MigrationError),
    /// The database is behind this version of Keyward: run `keyward migrate` first.
    #[error("{0} database migrations are pending: run `keyward migrate` first")]
    PendingMigrations(usize),
}

/// Connects to a migrated Keyward database, with the verification cache on and its
/// invalidation listener running.
/// Errors: the pool cannot be built, the migrations cannot be read, or some are pending.
pub async fn connect(database_url: &str, options: &EmbeddedStoreOptions) -> Result<PgStore, EmbedError> {
    let pending = pending_migrations(database_url).await?;
    if pending > 0 {
        return Err(EmbedError::PendingMigrations(pending));
    }
    let store = PgStore::connect(database_url, &options.pool)?.with_key_cache(options.cache);
    store.start_invalidation_listener();
    Ok(store)
}
