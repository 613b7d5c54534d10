//! Embedding: a Rust service verifies its customers' keys in-process against the same
//! PostgreSQL a Keyward server uses — the same verification cache, kept coherent by the
//! same `LISTEN/NOTIFY` invalidation (a key revoked through any Keyward instance stops
//! working here within milliseconds), and the same batched usage metering.
//!
//! ```no_run
//! # async fn example(account: keyward_domain::AccountId) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use keyward_store_pg::embedded::{EmbeddedOptions, EmbeddedVerifier};
//!
//! // Any `RateLimiter + QuotaLedger`: `keyward_ratelimit::Limits` (in process or Redis).
//! let limits = Arc::new(keyward_ratelimit::Limits::in_process());
//! let verifier =
//!     EmbeddedVerifier::connect("postgres://keyward@db/keyward", account, limits, EmbeddedOptions::default()).await?;
//! // … verifier.verify(…) on every request, or guard routes with `keyward_http::guard` …
//! verifier.shutdown().await; // writes the usage still in memory
//! # Ok(()) }
//! ```
//!
//! Needs a tokio runtime (the listener and the usage flusher are tokio tasks).

use std::{sync::Arc, time::Duration};

use keyward_domain::{
    AccountId, OsRandom, SystemClock,
    ratelimit::{QuotaLedger, RateLimiter},
    service::{DomainConfig, KeyService},
    usage::UsageMeter,
    verifier::Verifier,
};

use crate::{CacheConfig, MigrationError, PgStore, PoolBuildError, PoolConfig, pending_migrations};

/// How the embedded verifier connects, caches and meters; the defaults are `keyward
/// serve`'s.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub pool: PoolConfig,
    pub cache: CacheConfig,
    /// Tiers and plans: must match the Keyward servers' configuration, or the same key
    /// would be limited differently here and there.
    pub domain: DomainConfig,
    /// Usage records kept in memory before they are dropped (and counted).
    pub usage_buffer: usize,
    /// How often usage is written.
    pub flush_every: Duration,
    /// How host names in IP allowlists are resolved.
    pub resolver: keyward_resolver::ResolverConfig,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            pool: PoolConfig::default(),
            cache: CacheConfig::default(),
            domain: DomainConfig::default(),
            usage_buffer: 100_000,
            flush_every: Duration::from_secs(1),
            resolver: keyward_resolver::ResolverConfig::default(),
        }
    }
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

/// A [`Verifier`] over PostgreSQL with its cache listener and usage flusher running
/// (dropping it ends the flusher after one last flush; [`EmbeddedVerifier::shutdown`] waits
/// for that flush).
/// Dereferences to the [`Verifier`]; share it behind an `Arc`.
#[derive(Debug)]
pub struct EmbeddedVerifier<A> {
    verifier: Arc<Verifier<PgStore, A>>,
    /// Held for each flush, the flusher's and [`EmbeddedVerifier::flush`]'s: a flush takes
    /// the whole buffer, so one that did not wait for another in progress could return
    /// before that one's records are written.
    flushing: Arc<tokio::sync::Mutex<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    /// Ends with a last flush, and says how many records it wrote.
    flusher: tokio::task::JoinHandle<usize>,
}

impl<A: RateLimiter + QuotaLedger + 'static> EmbeddedVerifier<A> {
    /// Connects to a migrated Keyward database and starts the invalidation listener and the
    /// usage flusher. The verifier finds the service keys of `account` only.
    /// Errors: the pool cannot be built, the migrations cannot be read, or some are pending.
    pub async fn connect(
        database_url: &str,
        account: AccountId,
        admission: Arc<A>,
        options: EmbeddedOptions,
    ) -> Result<Self, EmbedError> {
        let pending = pending_migrations(database_url).await?;
        if pending > 0 {
            return Err(EmbedError::PendingMigrations(pending));
        }
        let store = PgStore::connect(database_url, &options.pool)?.with_key_cache(options.cache);
        store.start_invalidation_listener();
        let resolver = Arc::new(keyward_resolver::SystemResolver::new(options.resolver));
        let service =
            KeyService::new(store.clone(), Arc::new(SystemClock), Arc::new(OsRandom), Arc::new(options.domain))
                .with_resolver(resolver);
        let meter = Arc::new(UsageMeter::new(options.usage_buffer));
        let verifier = Arc::new(Verifier::new(service, admission, meter.clone(), account));
        let flushing = Arc::new(tokio::sync::Mutex::new(()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let flusher = tokio::spawn({
            let flushing = flushing.clone();
            async move {
                let mut interval = tokio::time::interval(options.flush_every);
                loop {
                    // Only the wait is raced against the stop signal: a flush, once begun,
                    // runs to its end (aborting it could drop a batch taken but not written).
                    tokio::select! {
                        biased;
                        _ = &mut stopped => break,
                        _ = interval.tick() => {
                            let _flushing = flushing.lock().await;
                            keyward_runtime::usage::flush(&meter, &store).await;
                        }
                    }
                }
                let _flushing = flushing.lock().await;
                keyward_runtime::usage::flush(&meter, &store).await
            }
        });
        Ok(Self { verifier, flushing, stop, flusher })
    }

    /// The verifier, to hand to `keyward_http::guard::KeyGuard` or keep elsewhere.
    pub fn verifier(&self) -> &Arc<Verifier<PgStore, A>> {
        &self.verifier
    }

    /// Writes what is buffered now, after a flush in progress; returns how many records
    /// this call wrote.
    pub async fn flush(&self) -> usize {
        let _flushing = self.flushing.lock().await;
        keyward_runtime::usage::flush(self.verifier.meter(), self.verifier.service().store()).await
    }

    /// Stops the flusher (after a flush in progress) and writes what is left: call it once
    /// requests have stopped. Returns how many records this last flush wrote.
    pub async fn shutdown(self) -> usize {
        // Refused only when the task has already ended, which is what this asks for.
        let _ = self.stop.send(());
        self.flusher.await.unwrap_or(0)
    }
}

impl<A> std::ops::Deref for EmbeddedVerifier<A> {
    type Target = Verifier<PgStore, A>;

    fn deref(&self) -> &Self::Target {
        &self.verifier
    }
}
