//! PostgreSQL storage for Keyward: diesel's query builder over diesel-async connections
//! from a deadpool pool, with the migrations embedded in the binary (no libpq).
//!
//! Architecture invariant: diesel types never leave this crate. Rows are private structs
//! converted to domain types at the boundary, and every database error is translated here,
//! once, into the domain's error variants (unique violation → `DuplicateHash`/`DuplicateName`,
//! pool exhaustion or a lost connection → `StorageError::Unavailable`).

//!
//! Where things are: this file holds the pool (`PgStore::connect`), the cache listener and
//! the error translation; `unit.rs` the units of work; `stores/` one module per port;
//! `rows.rs` the row structs; `cache.rs` the verification cache; `migrate.rs` the embedded
//! migrations; `embedded.rs` the embedded verifier.

mod cache;
pub mod embedded;
mod gate_cache;
mod migrate;
mod rows;
mod schema;
mod stores;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
mod unit;

// Shared by the port modules, which import the crate root (`use crate::*`).
use stores::expired_at;
use unit::{ConnGuard, PINNED};

use std::{future::Future, sync::Arc, time::Duration};

pub use cache::CacheConfig;
use cache::KeyCache;
use diesel::{
    dsl::sql,
    pg::Pg,
    prelude::*,
    result::{DatabaseErrorKind, Error as DieselError},
    sql_types::{Bool, Nullable, Timestamptz},
};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
        deadpool::{Object, Pool, PoolError},
    },
};
use futures_util::FutureExt as _;
use keyward_domain::{
    Account, AccountId, Key, KeyHash, KeyId, KeyKind, KeyStatus, Keyspace, KeyspaceId, SessionId, UserId,
    audit::{AuditEvent, AuditFilter, AuditPosition, AuditRecord, chain_hash},
    idempotency::{Claim, LEASE, RETENTION, StoredResponse},
    password::PasswordHash,
    people::{Email, Invitation, Membership, Role, Session, User},
    ports::{
        AccountStore, Atomic, AuditStore, BoxError, CreateUserError, DeleteKeyspaceError, IdempotencyStore,
        InsertKeyError, InsertKeyspaceError, KeyCounts, KeyFilter, KeyPage, KeyStore, KeyspaceStore, MembershipError,
        Outcome, PageRequest, SessionStore, StorageError, Store, UpdateError, UpdateKeyspaceError, UsageStore,
        UserStore, VerifiableKey,
    },
    usage::{
        AccountStats, KeyUse, TOP_KEYS, UsageEntry, UsagePosition, UsageRecord, UsageSummary, day_and_month_start,
    },
};
pub use migrate::{MigrationError, MigrationLock, pending_migrations, run_migrations};
use rows::{
    AccountRow, AuditRow, CorruptRow, InvitationRow, KeyChanges, KeyRow, KeyspaceRow, MembershipRow, SessionRow,
    UserRow,
};
use schema::{
    accounts, audit_events, idempotency_keys, invitations, key_usage_daily, keys, keyspaces, memberships, sessions,
    usage_records, users,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Pool settings; every field has a default that suits one `keyward serve`.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub max_size: usize,
    /// How long a request waits for a free connection before answering 503.
    pub wait_timeout: Duration,
    /// `statement_timeout` of every connection: no query holds a connection longer.
    pub statement_timeout: Duration,
    /// `idle_in_transaction_session_timeout` of every connection: PostgreSQL ends a session
    /// whose transaction sat idle this long, so a unit of work whose task stalled cannot
    /// hold its row locks and its connection indefinitely.
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            idle_in_transaction_timeout: Duration::from_secs(30),
        }
    }
}

/// Storage in PostgreSQL. Cloning shares the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool<AsyncPgConnection>,
    /// Units of work hold a connection for a whole management call; at most this many at
    /// once, so a burst of them (a login flood waiting on password hashing) always leaves
    /// connections for verification.
    units: Arc<tokio::sync::Semaphore>,
    /// How long a unit of work waits for its slot before the call answers 503, like the
    /// pool's own wait for a connection.
    unit_wait: Duration,
    /// Key records by hash for verification; `None` until `with_key_cache`.
    cache: Option<Arc<KeyCache>>,
    /// Keyspaces' gates for the forward-auth route, beside the keys (`gate_cache.rs`).
    gates: Option<Arc<gate_cache::GateCache>>,
    /// Opens the invalidation listener's own connection, as the pool's.
    connector: tls::Connector,
    /// Seals webhook signing secrets at rest; `None` until `with_secrets_at_rest`.
    at_rest: Option<Arc<keyward_domain::at_rest::AtRest>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL in the manager may hold a password: show only the pool's state.
        f.debug_struct("PgStore").field("pool", &self.pool.status()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PoolBuildError {
    #[error("could not build the connection pool")]
    Pool(#[source] diesel_async::pooled_connection::deadpool::BuildError),
    #[error("TLS to PostgreSQL: {0}")]
    Tls(#[from] tls::TlsError),
}

impl PgStore {
    /// Builds the pool; connections are opened lazily, on first use.
    /// TLS as `sslmode` in `database_url` asks ([`tls`]).
    pub fn connect(database_url: &str, config: &PoolConfig) -> Result<Self, PoolBuildError> {
        let connector = tls::Connector::new(database_url)?;
        let opener = connector.clone();
        let statement_timeout_ms = config.statement_timeout.as_millis();
        let idle_in_transaction_ms = config.idle_in_transaction_timeout.as_millis();
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        // No `SELECT 1` before every checkout (the default), which doubled the round trips
        // of a cache miss. A connection PostgreSQL closed is still never handed out: the
        // pool drops it when `is_broken` sees its socket closed.
        manager_config.recycling_method = RecyclingMethod::Fast;
        manager_config.custom_setup = Box::new(move |_url| {
            let opener = opener.clone();
            async move {
                let mut conn = opener.connect().await?;
                conn.batch_execute(&format!(
                    "SET statement_timeout = {statement_timeout_ms}; \
                     SET idle_in_transaction_session_timeout = {idle_in_transaction_ms}; \
                     SET application_name = 'keyward'"
                ))
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
            .boxed()
        });
        let manager = AsyncDieselConnectionManager::new_with_config(database_url, manager_config);
        let pool = Pool::builder(manager)
            .max_size(config.max_size)
            .wait_timeout(Some(config.wait_timeout))
            .create_timeout(Some(config.wait_timeout))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(PoolBuildError::Pool)?;
        // A quarter of the pool, at least one connection, stays free of units of work.
        let units = config.max_size.saturating_sub(config.max_size.div_ceil(4)).max(1);
        Ok(Self {
            pool,
            units: Arc::new(tokio::sync::Semaphore::new(units)),
            unit_wait: config.wait_timeout,
            cache: None,
            gates: None,
            connector,
            at_rest: None,
        })
    }

    /// Seals the secrets Keyward must keep readable (webhook signing secrets) with keys
    /// derived from `KEYWARD_SECRET` from now on; [`PgStore::seal_webhook_secrets`] seals
    /// those written before.
    #[must_use]
    pub fn with_secrets_at_rest(mut self, at_rest: keyward_domain::at_rest::AtRest) -> Self {
        self.at_rest = Some(Arc::new(at_rest));
        self
    }

    pub(crate) fn at_rest(&self) -> Option<&keyward_domain::at_rest::AtRest> {
        self.at_rest.as_deref()
    }

    /// Whether the connecting role owns `audit_events` — what migration 000011 undoes when
    /// it may create roles. An owner could disable the append-only trigger, so `serve`
    /// warns about it.
    pub async fn audit_trail_owned_by_this_role(&self) -> Result<bool, StorageError> {
        #[derive(diesel::QueryableByName)]
        struct Owned {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            owned: bool,
        }
        let mut conn = self.conn().await?;
        let found: Option<Owned> = diesel::sql_query(
            "SELECT tableowner = current_user AS owned FROM pg_tables WHERE tablename = 'audit_events'",
        )
        .get_result(&mut conn)
        .await
        .optional()
        .map_err(db_error)?;
        Ok(found.is_some_and(|o| o.owned))
    }

    /// Keys every plain SHA-256 hash of an imported legacy key with `pepper`
    /// ([`KeyHash::peppered`]), in one transaction, and tells every instance's cache to
    /// forget the old hashes. Run by `keyward serve` at start when a secret is configured;
    /// returns how many keys changed (0 once done).
    pub async fn pepper_legacy_hashes(
        &self,
        pepper: &keyward_domain::key_format::LegacyPepper,
    ) -> Result<u64, StorageError> {
        let mut conn = self.own_conn().await?;
        let changed = conn
            .transaction::<_, DieselError, _>(async |conn| {
                let plain: Vec<(Uuid, Vec<u8>)> = keys::table
                    .filter(diesel::dsl::sql::<diesel::sql_types::Bool>("get_byte(hash, 0) = 2"))
                    .select((keys::id, keys::hash))
                    .for_update()
                    .load(conn)
                    .await?;
                for (id, bytes) in &plain {
                    let Some(hash) = KeyHash::from_bytes(bytes) else { continue };
                    diesel::update(keys::table.find(id))
                        .set(keys::hash.eq(hash.peppered(pepper).to_bytes().to_vec()))
                        .execute(conn)
                        .await?;
                }
                let old: Vec<&[u8]> = plain.iter().map(|(_, bytes)| bytes.as_slice()).collect();
                self.announce(conn, &old).await?;
                Ok(plain.len() as u64)
            })
            .await
            .map_err(db_error)?;
        Ok(changed)
    }

    /// Caches key records by hash for verification (see `cache.rs`). Start the listener too
    /// ([`PgStore::start_invalidation_listener`]), or other instances' changes wait for the TTL.
    #[must_use]
    pub fn with_key_cache(mut self, config: CacheConfig) -> Self {
        self.cache = Some(Arc::new(KeyCache::new(config)));
        self.gates = Some(Arc::new(gate_cache::GateCache::new(&config)));
        self
    }

    /// The connection pool's and the key cache's counters now, for metrics.
    pub fn stats(&self) -> StoreStats {
        let pool = self.pool.status();
        let count = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
        StoreStats {
            pool_max: pool.max_size as u64,
            pool_open: pool.size as u64,
            pool_idle: pool.available as u64,
            pool_waiting: pool.waiting as u64,
            cache: self.cache.as_ref().map(|c| CacheStats {
                hits: count(&c.hits),
                misses: count(&c.misses),
                loads: count(&c.loads),
                evicted: count(&c.evicted),
                invalidations: count(&c.evictions),
            }),
        }
    }

    /// How many key lookups reached the database (cache misses); 0 without a cache.
    #[cfg(feature = "testing")]
    pub fn cache_loads(&self) -> u64 {
        self.cache
            .as_ref()
            .map_or(0, |c| std::sync::atomic::AtomicU64::load(&c.loads, std::sync::atomic::Ordering::Relaxed))
    }

    /// Listens on `keyward_keys` on a connection of its own and evicts what other instances
    /// change; once it listens again after losing its connection it flushes the cache, since
    /// notifications may have been missed — but not before: while the database is away,
    /// cached keys keep verifying. Runs until the process ends.
    pub fn start_invalidation_listener(&self) {
        let (Some(cache), Some(gates)) = (self.cache.clone(), self.gates.clone()) else { return };
        let connector = self.connector.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let started = std::time::Instant::now();
                // The cache is kept while the listener is away — cached keys keep verifying
                // through a database restart — and flushed by `listen` once it listens
                // again, since it cannot know what it missed meanwhile.
                let ended = listen(&connector, &cache, &gates).await;
                match ended {
                    Ok(()) => tracing::warn!("the cache invalidation listener lost its connection; reconnecting"),
                    Err(error) => tracing::warn!(%error, "the cache invalidation listener failed; reconnecting"),
                }
                if started.elapsed() > Duration::from_secs(10) {
                    backoff = Duration::from_millis(100);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    /// Tells every instance (this one included) that these keys changed. Inside a
    /// transaction the notification leaves when it commits. Sent whether or not this
    /// store caches: other instances and embedded verifiers may.
    async fn announce(&self, conn: &mut AsyncPgConnection, hashes: &[&[u8]]) -> QueryResult<()> {
        for payload in cache::payloads(hashes.iter().copied()) {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<diesel::sql_types::Text, _>(cache::CHANNEL)
                .bind::<diesel::sql_types::Text, _>(payload)
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// Tells every instance (this one included) that a keyspace's gate changed, when the
    /// transaction on `conn` commits; and evicts it here at once.
    async fn announce_gate(&self, conn: &mut AsyncPgConnection, keyspace: Uuid) -> QueryResult<()> {
        diesel::sql_query("SELECT pg_notify($1, $2)")
            .bind::<diesel::sql_types::Text, _>(cache::CHANNEL)
            .bind::<diesel::sql_types::Text, _>(gate_cache::payload(keyspace))
            .execute(conn)
            .await?;
        if let Some(gates) = &self.gates {
            gates.evict(keyspace).await;
        }
        Ok(())
    }

    /// Evicts at once on this instance, before the notification comes back.
    async fn evict_locally(&self, hashes: &[&[u8]]) {
        if let Some(cache) = &self.cache {
            for hash in hashes {
                if let Ok(hash) = <[u8; 33]>::try_from(*hash) {
                    cache.evict(&hash).await;
                }
            }
        }
    }

    #[tracing::instrument(target = "keyward::otel", name = "store.load_key", skip_all, fields(db.system.name = "postgresql"))]
    async fn load_by_hash(&self, bytes: [u8; 33]) -> Result<Option<VerifiableKey>, StorageError> {
        // Never through a unit of work's connection: the cache must only ever hold committed
        // rows, and other tasks may be waiting on this very load.
        let mut conn = self.own_conn().await?;
        let found: Option<(KeyRow, Option<String>)> = keys::table
            .left_join(keyspaces::table)
            .filter(keys::hash.eq(&bytes[..]))
            .select((KeyRow::as_select(), keyspaces::ip_policy.nullable()))
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        let Some((row, policy)) = found else { return Ok(None) };
        let key = Key::try_from(row).map_err(corrupt)?;
        let ip_policy = policy.map(|p| p.parse()).transpose().map_err(|e| StorageError::Internal(Box::new(e)))?;
        Ok(Some(VerifiableKey::new(key, ip_policy.unwrap_or_default())))
    }

    /// The connection for one call: the unit of work's, when the calling task is inside
    /// [`Atomic::atomically`] on this store; otherwise one from the pool.
    async fn conn(&self) -> Result<ConnGuard, StorageError> {
        let pinned = PINNED.try_with(|p| (p.pool_id == self.pool_id()).then(|| p.conn.clone())).ok().flatten();
        if let Some(conn) = pinned {
            let guard = conn.lock_owned().await;
            if guard.is_some() {
                return Ok(ConnGuard::Pinned(guard));
            }
        }
        self.pool.get().await.map(ConnGuard::Pooled).map_err(pool_error)
    }

    /// A connection from the pool even inside a unit of work: for writes every other request
    /// must see at once (idempotency claims).
    async fn own_conn(&self) -> Result<Object<AsyncPgConnection>, StorageError> {
        self.pool.get().await.map_err(pool_error)
    }

    fn pool_id(&self) -> usize {
        // The pool's shared state: equal for clones of one store, distinct across stores.
        std::ptr::from_ref(self.pool.manager()) as usize
    }
}

async fn listen(
    connector: &tls::Connector,
    cache: &KeyCache,
    gates: &gate_cache::GateCache,
) -> Result<(), DieselError> {
    use futures_util::StreamExt as _;
    let mut conn = connector.connect().await.map_err(|e| DieselError::QueryBuilderError(Box::new(e)))?;
    conn.batch_execute(&format!("SET application_name = 'keyward-listener'; LISTEN {}", cache::CHANNEL)).await?;
    // Whatever was cached before this connection listened may have changed unannounced.
    cache.flush();
    gates.flush();
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        let payload = notification?.payload;
        for hash in cache::parse_payload(&payload) {
            cache.evict(&hash).await;
        }
        for keyspace in gate_cache::parse_payload(&payload) {
            gates.evict(keyspace).await;
        }
    }
    Ok(())
}

/// A storage error shared by the waiters of one cache load, as theirs.
fn shared_error(error: &StorageError) -> StorageError {
    let message: BoxError = error.to_string().into();
    match error {
        StorageError::Unavailable(_) => StorageError::Unavailable(message),
        StorageError::Internal(_) => StorageError::Internal(message),
    }
}

fn pool_error(error: PoolError) -> StorageError {
    StorageError::Unavailable(Box::new(error))
}

fn db_error(error: DieselError) -> StorageError {
    if is_lost_connection(&error) {
        StorageError::Unavailable(Box::new(error))
    } else {
        StorageError::Internal(Box::new(error))
    }
}

/// Whether `error` says the connection is gone rather than the statement wrong: a restart
/// or `pg_terminate_backend` must answer 503 `unavailable`, never 500.
///
/// diesel-async reports an error without an SQLSTATE (closed socket, I/O error) as
/// `UnableToSendCommand`; the server's own goodbye (SQLSTATE class 57, "operator
/// intervention": `terminating connection due to administrator command`, `the database
/// system is shutting down`) arrives as `Unknown`, and diesel exposes no SQLSTATE, so it is
/// recognised by its message.
fn is_lost_connection(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand, _)
        | DieselError::BrokenTransactionManager => true,
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            ["terminating connection", "the database system is", "canceling statement due to conflict with recovery"]
                .iter()
                .any(|goodbye| message.starts_with(goodbye))
        }
        _ => false,
    }
}

fn corrupt(error: CorruptRow) -> StorageError {
    StorageError::Internal(Box::new(error))
}

fn is_unique_violation(error: &DieselError, constraint: &str) -> bool {
    matches!(error, DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) if info.constraint_name() == Some(constraint))
}

/// An error inside a transaction: either the database's or an answer the domain expects.
/// Returning it from the closure rolls the transaction back.
#[derive(Debug)]
enum TxError<E> {
    Db(DieselError),
    Domain(E),
}

impl<E> From<DieselError> for TxError<E> {
    fn from(error: DieselError) -> Self {
        Self::Db(error)
    }
}

impl<E: From<StorageError>> TxError<E> {
    fn into_domain(self) -> E {
        match self {
            Self::Db(e) => E::from(db_error(e)),
            Self::Domain(e) => e,
        }
    }
}

impl Store for PgStore {
    async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        conn.batch_execute("SELECT 1").await.map_err(db_error)?;
        let pending = migrate::pending_on(&mut conn).await.map_err(|e| StorageError::Unavailable(Box::new(e)))?;
        if pending > 0 {
            return Err(StorageError::Unavailable(format!("{pending} migrations are pending").into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> DieselError {
        DieselError::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn a_lost_connection_is_unavailable_and_a_wrong_statement_is_not() {
        for lost in [
            database_error(DatabaseErrorKind::UnableToSendCommand, "connection closed"),
            database_error(DatabaseErrorKind::ClosedConnection, "server closed the connection unexpectedly"),
            database_error(DatabaseErrorKind::Unknown, "terminating connection due to administrator command"),
            database_error(DatabaseErrorKind::Unknown, "the database system is shutting down"),
        ] {
            assert!(matches!(db_error(lost), StorageError::Unavailable(_)));
        }
        for wrong in [
            database_error(DatabaseErrorKind::Unknown, "syntax error at or near \"SELEC\""),
            database_error(DatabaseErrorKind::UniqueViolation, "duplicate key value"),
            DieselError::NotFound,
        ] {
            assert!(matches!(db_error(wrong), StorageError::Internal(_)));
        }
    }
}

/// See [`PgStore::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Connections the pool may open, has open, has idle, and tasks waiting for one.
    pub pool_max: u64,
    pub pool_open: u64,
    pub pool_idle: u64,
    pub pool_waiting: u64,
    /// `None` without a key cache.
    pub cache: Option<CacheStats>,
}

/// The key cache's counters since the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Misses that reached the database (concurrent misses of one key share a load).
    pub loads: u64,
    /// Entries let go of for room or age.
    pub evicted: u64,
    /// Entries dropped because their key changed (here or, by notification, elsewhere),
    /// and whole-cache flushes.
    pub invalidations: u64,
}
