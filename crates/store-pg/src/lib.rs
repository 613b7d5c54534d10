//! PostgreSQL storage for Keyward: diesel's query builder over diesel-async connections
//! from a deadpool pool, with the migrations embedded in the binary (no libpq).
//!
//! Architecture invariant: diesel types never leave this crate. Rows are private structs
//! converted to domain types at the boundary, and every database error is translated here,
//! once, into the domain's error variants (unique violation → `DuplicateHash`/`DuplicateName`,
//! pool exhaustion or a lost connection → `StorageError::Unavailable`).

mod cache;
pub mod embedded;
mod migrate;
mod rows;
mod schema;
#[cfg(feature = "testing")]
pub mod testing;

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
    Account, AccountId, EventId, Key, KeyHash, KeyId, KeyKind, KeyStatus, Keyspace, KeyspaceId, SessionId, UserId,
    audit::{AuditEvent, AuditFilter, AuditRecord, chain_hash},
    idempotency::{Claim, LEASE, RETENTION, StoredResponse},
    password::PasswordHash,
    people::{Email, Invitation, Membership, Role, Session, User},
    ports::{
        AccountStore, Atomic, AuditStore, BoxError, CreateUserError, DeleteKeyspaceError, IdempotencyStore,
        InsertKeyError, InsertKeyspaceError, KeyCounts, KeyFilter, KeyPage, KeyStore, KeyspaceStore, MembershipError,
        Outcome, PageRequest, SessionStore, StorageError, Store, UpdateError, UpdateKeyspaceError, UsageStore,
        UserStore, VerifiableKey,
    },
    usage::{AccountStats, UsageEntry, UsagePosition, UsageRecord, UsageSummary, day_and_month_start},
};
pub use migrate::{MigrationError, pending_migrations, run_migrations};
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
    /// For the invalidation listener's own connection. Never printed (it may hold a password).
    url: Arc<str>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL in the manager may hold a password: show only the pool's state.
        f.debug_struct("PgStore").field("pool", &self.pool.status()).finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not build the connection pool")]
pub struct PoolBuildError(#[source] diesel_async::pooled_connection::deadpool::BuildError);

impl PgStore {
    /// Builds the pool; connections are opened lazily, on first use.
    pub fn connect(database_url: &str, config: &PoolConfig) -> Result<Self, PoolBuildError> {
        let statement_timeout_ms = config.statement_timeout.as_millis();
        let idle_in_transaction_ms = config.idle_in_transaction_timeout.as_millis();
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        // No `SELECT 1` before every checkout (the default), which doubled the round trips
        // of a cache miss. A connection PostgreSQL closed is still never handed out: the
        // pool drops it when `is_broken` sees its socket closed.
        manager_config.recycling_method = RecyclingMethod::Fast;
        manager_config.custom_setup = Box::new(move |url| {
            async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
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
            .map_err(PoolBuildError)?;
        // A quarter of the pool, at least one connection, stays free of units of work.
        let units = config.max_size.saturating_sub(config.max_size.div_ceil(4)).max(1);
        Ok(Self {
            pool,
            units: Arc::new(tokio::sync::Semaphore::new(units)),
            unit_wait: config.wait_timeout,
            cache: None,
            url: database_url.into(),
        })
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
        self
    }

    /// How many key lookups reached the database (cache misses); 0 without a cache.
    pub fn cache_loads(&self) -> u64 {
        self.cache
            .as_ref()
            .map_or(0, |c| std::sync::atomic::AtomicU64::load(&c.loads, std::sync::atomic::Ordering::Relaxed))
    }

    /// Listens on `keyward_keys` on a connection of its own and evicts what other instances
    /// change; on every (re)connection it flushes the cache, since notifications may have
    /// been missed. Runs until the process ends.
    pub fn start_invalidation_listener(&self) {
        let Some(cache) = self.cache.clone() else { return };
        let url = self.url.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let started = std::time::Instant::now();
                let ended = listen(&url, &cache).await;
                cache.flush();
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

async fn listen(url: &str, cache: &KeyCache) -> Result<(), DieselError> {
    use futures_util::StreamExt as _;
    let mut conn = AsyncPgConnection::establish(url).await.map_err(|e| DieselError::QueryBuilderError(Box::new(e)))?;
    conn.batch_execute(&format!("SET application_name = 'keyward-listener'; LISTEN {}", cache::CHANNEL)).await?;
    // Whatever was cached before this connection listened may have changed unannounced.
    cache.flush();
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        for hash in cache::parse_payload(&notification?.payload) {
            cache.evict(&hash).await;
        }
    }
    Ok(())
}

/// What the usage flush reads back of a key it counted that has an idle timeout.
#[derive(QueryableByName)]
struct UsageTouched {
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    hash: Vec<u8>,
}

/// The advisory lock the usage flushes take turns under: the two-`int4` form, whose key
/// space does not overlap the single-`bigint` one of the audit chains' locks.
const USAGE_FLUSH_LOCK: (i32, i32) = (0x6b77_7573, 1); // "kwus"

/// A storage error shared by the waiters of one cache load, as theirs.
fn shared_error(error: &StorageError) -> StorageError {
    let message: BoxError = error.to_string().into();
    match error {
        StorageError::Unavailable(_) => StorageError::Unavailable(message),
        StorageError::Internal(_) => StorageError::Internal(message),
    }
}

/// The connection a unit of work runs on, shared by every call of its task.
#[derive(Clone)]
struct Pinned {
    pool_id: usize,
    conn: SharedConn,
}

/// The unit of work's connection; `None` once the unit has ended.
type SharedConn = Arc<tokio::sync::Mutex<Option<Object<AsyncPgConnection>>>>;

tokio::task_local! {
    static PINNED: Pinned;
}

/// Closes a unit of work's connection if the unit is abandoned half-way.
struct Unfinished(SharedConn);

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
enum ConnGuard {
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

fn pool_error(error: PoolError) -> StorageError {
    StorageError::Unavailable(Box::new(error))
}

fn db_error(error: DieselError) -> StorageError {
    match error {
        DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) | DieselError::BrokenTransactionManager => {
            StorageError::Unavailable(Box::new(error))
        }
        other => StorageError::Internal(Box::new(other)),
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

/// `true` when the key is past `expires_at` or idle past its timeout at `now`; mirrors
/// `Key::status`, so listing by status agrees with what verification would answer.
fn expired_at(
    now: OffsetDateTime,
) -> diesel::expression::SqlLiteral<Bool, impl diesel::query_builder::QueryFragment<Pg> + Send> {
    sql::<Bool>("(COALESCE(keys.expires_at <= ")
        .bind::<Timestamptz, _>(now)
        .sql(", false) OR COALESCE(COALESCE(keys.last_used_at, keys.created_at) + make_interval(secs => keys.idle_timeout_seconds) <= ")
        .bind::<Timestamptz, _>(now)
        .sql(", false))")
}

type BoxedKeys<'a> = keys::BoxedQuery<'a, Pg>;

fn filtered_keys<'a>(account: AccountId, filter: &'a KeyFilter, now: OffsetDateTime) -> BoxedKeys<'a> {
    let mut query = keys::table
        .filter(keys::account_id.eq(account.as_uuid()))
        .filter(keys::kind.eq(filter.kind.as_str()))
        .into_boxed();
    if let Some(ks) = filter.keyspace_id {
        query = query.filter(keys::keyspace_id.eq(ks.as_uuid()));
    }
    if let Some(env) = filter.environment {
        query = query.filter(keys::environment.eq(env.as_str()));
    }
    if let Some(owner) = &filter.owner_id {
        query = query.filter(keys::owner_id.eq(owner));
    }
    match filter.status {
        None => {}
        Some(KeyStatus::Revoked) => query = query.filter(keys::revoked_at.is_not_null()),
        Some(KeyStatus::Expired) => query = query.filter(keys::revoked_at.is_null()).filter(expired_at(now)),
        Some(KeyStatus::Inactive) => {
            query = query
                .filter(keys::revoked_at.is_null())
                .filter(expired_at(now).eq(false))
                .filter(keys::is_active.eq(false));
        }
        Some(KeyStatus::Active) => {
            query = query
                .filter(keys::revoked_at.is_null())
                .filter(expired_at(now).eq(false))
                .filter(keys::is_active.eq(true));
        }
    }
    query
}

/// Active service keys: neither revoked nor past `expires_at` (what `max_keys` limits).
async fn count_active(conn: &mut AsyncPgConnection, account: Uuid, now: OffsetDateTime) -> QueryResult<i64> {
    keys::table
        .filter(keys::account_id.eq(account))
        .filter(keys::kind.eq(KeyKind::Service.as_str()))
        .filter(keys::revoked_at.is_null())
        .filter(keys::expires_at.is_null().or(keys::expires_at.gt(now)))
        .count()
        .get_result(conn)
        .await
}

impl KeyStore for PgStore {
    fn insert_keys(
        &self,
        new_keys: &[Key],
        max_keys: Option<u64>,
    ) -> impl Future<Output = Result<(), InsertKeyError>> + Send {
        let rows: Vec<KeyRow> = new_keys.iter().map(KeyRow::from).collect();
        let first = new_keys.first().map(|k| (k.account_id.as_uuid(), k.created_at));
        let adding = new_keys.iter().filter(|k| k.kind == KeyKind::Service).count() as u64;
        async move {
            let Some((account, now)) = first else { return Ok(()) };
            let mut conn = self.conn().await?;
            let result = conn
                .transaction::<_, TxError<InsertKeyError>, _>(async |conn| {
                    // Serialises key creation per account, so two concurrent inserts
                    // cannot both slip under the limit. NO KEY UPDATE: foreign-key checks of
                    // other tables (idempotency claims, sessions) need not wait for it.
                    accounts::table.find(account).select(accounts::id).for_no_key_update().first::<Uuid>(conn).await?;
                    let hashes: Vec<&Vec<u8>> = rows.iter().map(|r| &r.hash).collect();
                    let clashing: Vec<Vec<u8>> =
                        keys::table.filter(keys::hash.eq_any(hashes)).select(keys::hash).load(conn).await?;
                    if let Some(index) = rows.iter().position(|r| clashing.contains(&r.hash)) {
                        return Err(TxError::Domain(InsertKeyError::DuplicateHash { index }));
                    }
                    if let Some(max) = max_keys {
                        let active = u64::try_from(count_active(conn, account, now).await?).unwrap_or(0);
                        if active + adding > max {
                            return Err(TxError::Domain(InsertKeyError::KeyLimitReached));
                        }
                    }
                    diesel::insert_into(keys::table).values(&rows).execute(conn).await?;
                    // "No such key" may be cached for these hashes.
                    let hashes: Vec<&[u8]> = rows.iter().map(|r| r.hash.as_slice()).collect();
                    self.announce(conn, &hashes).await?;
                    Ok(())
                })
                .await;
            if result.is_ok() {
                let hashes: Vec<&[u8]> = rows.iter().map(|r| r.hash.as_slice()).collect();
                self.evict_locally(&hashes).await;
            }
            match result {
                Ok(()) => Ok(()),
                // A concurrent insert of the same hash won the race after our check.
                Err(TxError::Db(e)) if is_unique_violation(&e, "keys_hash_key") => {
                    Err(InsertKeyError::DuplicateHash { index: 0 })
                }
                Err(e) => Err(e.into_domain()),
            }
        }
    }

    fn find_by_hash(
        &self,
        hash: &KeyHash,
    ) -> impl Future<Output = Result<Option<Arc<VerifiableKey>>, StorageError>> + Send {
        let bytes = hash.to_bytes();
        async move {
            // The load's future is large (~12 KiB: a diesel query): on the heap, and built
            // only on a miss, so that a hit's future — and every future awaiting it, up to
            // the HTTP handler's — stays small and cheap to move.
            match &self.cache {
                None => Ok(Box::pin(self.load_by_hash(bytes)).await?.map(Arc::new)),
                // A hit hands out the cached record itself, shared.
                Some(cache) => {
                    let found = match cache.get(bytes).await {
                        Some(hit) => hit,
                        None => Box::pin(cache.get_or_load(bytes, self.load_by_hash(bytes)))
                            .await
                            .map_err(|e| shared_error(&e))?,
                    };
                    if let Some(claim) = found.refresh {
                        // In the background: this request answers from the entry it has.
                        let store = self.clone();
                        tokio::spawn(async move { KeyCache::refresh(claim, store.load_by_hash(bytes)).await });
                    }
                    Ok(found.entry)
                }
            }
        }
    }

    async fn get_key(&self, account: AccountId, id: KeyId) -> Result<Option<Key>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<KeyRow> = keys::table
            .filter(keys::id.eq(id.as_uuid()))
            .filter(keys::account_id.eq(account.as_uuid()))
            .select(KeyRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Key::try_from).transpose().map_err(corrupt)
    }

    async fn list_keys(
        &self,
        account: AccountId,
        filter: &KeyFilter,
        page: PageRequest,
        now: OffsetDateTime,
    ) -> Result<KeyPage, StorageError> {
        let mut conn = self.conn().await?;
        let total: i64 = filtered_keys(account, filter, now).count().get_result(&mut conn).await.map_err(db_error)?;
        let mut query = filtered_keys(account, filter, now);
        if let Some(before) = page.before {
            query = query.filter(keys::id.lt(before.as_uuid()));
        }
        let rows: Vec<KeyRow> = query
            .order(keys::id.desc())
            .limit(i64::from(page.limit) + 1)
            .select(KeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        let has_more = rows.len() > page.limit as usize;
        let keys =
            rows.into_iter().take(page.limit as usize).map(Key::try_from).collect::<Result<_, _>>().map_err(corrupt)?;
        Ok(KeyPage { keys, total: u64::try_from(total).unwrap_or(0), has_more })
    }

    fn update_key(&self, before: &Key, after: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send {
        let (read, row) = (KeyRow::from(before), KeyRow::from(after));
        async move {
            let mut conn = self.conn().await?;
            // `revoked_at` is only ever set, never cleared or moved: a writer holding a copy
            // read before a revocation cannot undo it.
            let keep_first_revocation = sql::<Nullable<Timestamptz>>("COALESCE(keys.revoked_at, ")
                .bind::<Nullable<Timestamptz>, _>(row.revoked_at)
                .sql(")");
            let updated = diesel::update(keys::table)
                .filter(keys::id.eq(row.id))
                .filter(keys::account_id.eq(row.account_id))
                .set((KeyChanges::between(&read, &row), keys::revoked_at.eq(keep_first_revocation)))
                .execute(&mut conn)
                .await
                .map_err(db_error)?;
            if updated == 0 {
                return Err(UpdateError::NotFound);
            }
            self.announce(&mut conn, &[&row.hash]).await.map_err(db_error)?;
            self.evict_locally(&[&row.hash]).await;
            Ok(())
        }
    }

    fn rotate_key(&self, old: &Key, new: &Key) -> impl Future<Output = Result<(), UpdateError>> + Send {
        let (old_id, account) = (old.id.as_uuid(), old.account_id.as_uuid());
        let (expires_at, rotated_to, updated_at) =
            (old.expires_at, old.rotated_to.map(|id| id.as_uuid()), old.updated_at);
        let new_row = KeyRow::from(new);
        let old_hash = old.hash.to_bytes();
        async move {
            let mut conn = self.conn().await?;
            let hashes: [&[u8]; 2] = [&old_hash, &new_row.hash];
            conn.transaction::<_, TxError<UpdateError>, _>(async |conn| {
                let updated = diesel::update(keys::table)
                    .filter(keys::id.eq(old_id))
                    .filter(keys::account_id.eq(account))
                    .filter(keys::revoked_at.is_null())
                    .set((
                        keys::expires_at.eq(expires_at),
                        keys::rotated_to.eq(rotated_to),
                        keys::updated_at.eq(updated_at),
                    ))
                    .execute(conn)
                    .await?;
                if updated == 0 {
                    return Err(TxError::Domain(UpdateError::NotFound));
                }
                diesel::insert_into(keys::table).values(&new_row).execute(conn).await?;
                self.announce(conn, &hashes).await?;
                Ok(())
            })
            .await
            .map_err(TxError::into_domain)?;
            self.evict_locally(&hashes).await;
            Ok(())
        }
    }

    async fn touch_key(&self, id: KeyId, at: OffsetDateTime) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        let touched: Vec<Vec<u8>> = diesel::update(keys::table)
            .filter(keys::id.eq(id.as_uuid()))
            .filter(keys::last_used_at.is_null().or(keys::last_used_at.lt(at)))
            .set(keys::last_used_at.eq(at))
            .returning(keys::hash)
            .get_results(&mut conn)
            .await
            .map_err(db_error)?;
        let hashes: Vec<&[u8]> = touched.iter().map(Vec::as_slice).collect();
        self.announce(&mut conn, &hashes).await.map_err(db_error)?;
        self.evict_locally(&hashes).await;
        Ok(())
    }

    async fn list_account_keys(&self, account: AccountId) -> Result<Vec<Key>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyRow> = keys::table
            .filter(keys::account_id.eq(account.as_uuid()))
            .filter(keys::kind.ne(KeyKind::Service.as_str()))
            .order(keys::id.desc())
            .limit(1_000)
            .select(KeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(Key::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    async fn live_temporary_keys(
        &self,
        account: AccountId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Key>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyRow> = keys::table
            .filter(keys::account_id.eq(account.as_uuid()))
            .filter(keys::kind.eq(KeyKind::Temporary.as_str()))
            .filter(keys::created_by.eq(keyward_domain::key::Actor::User(user).to_string()))
            .filter(keys::revoked_at.is_null())
            .filter(keys::expires_at.is_null().or(keys::expires_at.gt(now)))
            .select(KeyRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(Key::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    async fn count_account_keys(&self, account: AccountId, now: OffsetDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn().await?;
        let count: i64 = keys::table
            .filter(keys::account_id.eq(account.as_uuid()))
            .filter(keys::kind.ne(KeyKind::Service.as_str()))
            .filter(keys::revoked_at.is_null())
            .filter(keys::expires_at.is_null().or(keys::expires_at.gt(now)))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    async fn count_keys(&self, account: AccountId, now: OffsetDateTime) -> Result<KeyCounts, StorageError> {
        let mut conn = self.conn().await?;
        let active = count_active(&mut conn, account.as_uuid(), now).await.map_err(db_error)?;
        let revoked: i64 = keys::table
            .filter(keys::account_id.eq(account.as_uuid()))
            .filter(keys::kind.eq(KeyKind::Service.as_str()))
            .filter(keys::revoked_at.is_not_null())
            .count()
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(KeyCounts { active: u64::try_from(active).unwrap_or(0), revoked: u64::try_from(revoked).unwrap_or(0) })
    }
}

impl AccountStore for PgStore {
    fn create_account(
        &self,
        account: &Account,
        default_keyspace: &Keyspace,
        first_key: Option<&Key>,
    ) -> impl Future<Output = Result<(), StorageError>> + Send {
        let account = AccountRow::from(account);
        let keyspace = KeyspaceRow::from(default_keyspace);
        let key = first_key.map(KeyRow::from);
        async move {
            let mut conn = self.conn().await?;
            conn.transaction::<_, DieselError, _>(async |conn| {
                diesel::insert_into(accounts::table).values(&account).execute(conn).await?;
                diesel::insert_into(keyspaces::table).values(&keyspace).execute(conn).await?;
                if let Some(key) = &key {
                    diesel::insert_into(keys::table).values(key).execute(conn).await?;
                    self.announce(conn, &[&key.hash]).await?;
                }
                Ok(())
            })
            .await
            .map_err(db_error)?;
            if let Some(key) = &key {
                self.evict_locally(&[&key.hash]).await;
            }
            Ok(())
        }
    }

    async fn get_account(&self, id: AccountId) -> Result<Option<Account>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<AccountRow> = accounts::table
            .find(id.as_uuid())
            .select(AccountRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Account::try_from).transpose().map_err(corrupt)
    }
}

impl KeyspaceStore for PgStore {
    fn insert_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), InsertKeyspaceError>> + Send {
        let row = KeyspaceRow::from(keyspace);
        async move {
            let mut conn = self.conn().await?;
            match diesel::insert_into(keyspaces::table).values(&row).execute(&mut conn).await {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e, "keyspaces_account_name_key") => {
                    Err(InsertKeyspaceError::DuplicateName)
                }
                Err(e) => Err(db_error(e).into()),
            }
        }
    }

    async fn get_keyspace(&self, account: AccountId, id: KeyspaceId) -> Result<Option<Keyspace>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<KeyspaceRow> = keyspaces::table
            .filter(keyspaces::id.eq(id.as_uuid()))
            .filter(keyspaces::account_id.eq(account.as_uuid()))
            .select(KeyspaceRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Keyspace::try_from).transpose().map_err(corrupt)
    }

    fn find_keyspace_by_name(
        &self,
        account: AccountId,
        name: &str,
    ) -> impl Future<Output = Result<Option<Keyspace>, StorageError>> + Send {
        let name = name.to_owned();
        async move {
            let mut conn = self.conn().await?;
            let row: Option<KeyspaceRow> = keyspaces::table
                .filter(keyspaces::account_id.eq(account.as_uuid()))
                .filter(keyspaces::name.eq(name))
                .select(KeyspaceRow::as_select())
                .first(&mut conn)
                .await
                .optional()
                .map_err(db_error)?;
            row.map(Keyspace::try_from).transpose().map_err(corrupt)
        }
    }

    async fn list_keyspaces(&self, account: AccountId) -> Result<Vec<Keyspace>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<KeyspaceRow> = keyspaces::table
            .filter(keyspaces::account_id.eq(account.as_uuid()))
            .order(keyspaces::id.asc())
            .select(KeyspaceRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(Keyspace::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    fn update_keyspace(&self, keyspace: &Keyspace) -> impl Future<Output = Result<(), UpdateKeyspaceError>> + Send {
        let row = KeyspaceRow::from(keyspace);
        async move {
            let mut conn = self.conn().await?;
            let result = diesel::update(keyspaces::table)
                .filter(keyspaces::id.eq(row.id))
                .filter(keyspaces::account_id.eq(row.account_id))
                .set((
                    keyspaces::name.eq(&row.name),
                    keyspaces::prefix.eq(&row.prefix),
                    keyspaces::default_tier.eq(&row.default_tier),
                    keyspaces::default_scopes.eq(&row.default_scopes),
                    keyspaces::allowed_scopes.eq(&row.allowed_scopes),
                    keyspaces::ip_policy.eq(&row.ip_policy),
                    keyspaces::updated_at.eq(row.updated_at),
                ))
                .execute(&mut conn)
                .await;
            match result {
                Ok(0) => Err(UpdateKeyspaceError::NotFound),
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e, "keyspaces_account_name_key") => {
                    Err(UpdateKeyspaceError::DuplicateName)
                }
                Err(e) => Err(db_error(e).into()),
            }
        }
    }

    async fn delete_keyspace(
        &self,
        account: AccountId,
        id: KeyspaceId,
        now: OffsetDateTime,
    ) -> Result<(), DeleteKeyspaceError> {
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<DeleteKeyspaceError>, _>(async |conn| {
            // Locking the keyspace row makes a concurrent key creation in it wait for us
            // (its foreign key check needs a share lock on the same row).
            let found = keyspaces::table
                .filter(keyspaces::id.eq(id.as_uuid()))
                .filter(keyspaces::account_id.eq(account.as_uuid()))
                .select(keyspaces::id)
                .for_update()
                .first::<Uuid>(conn)
                .await
                .optional()?;
            if found.is_none() {
                return Err(TxError::Domain(DeleteKeyspaceError::NotFound));
            }
            let live: i64 = keys::table
                .filter(keys::keyspace_id.eq(id.as_uuid()))
                .filter(keys::revoked_at.is_null())
                .filter(expired_at(now).eq(false))
                .count()
                .get_result(conn)
                .await?;
            if live > 0 {
                return Err(TxError::Domain(DeleteKeyspaceError::NotEmpty));
            }
            let gone: Vec<Vec<u8>> = diesel::delete(keys::table.filter(keys::keyspace_id.eq(id.as_uuid())))
                .returning(keys::hash)
                .get_results(conn)
                .await?;
            self.announce(conn, &gone.iter().map(Vec::as_slice).collect::<Vec<_>>()).await?;
            diesel::delete(keyspaces::table.filter(keyspaces::id.eq(id.as_uuid()))).execute(conn).await?;
            Ok(())
        })
        .await
        .map_err(TxError::into_domain)
    }
}

/// Locks the account's owner memberships and counts them: a concurrent demotion or removal
/// waits, so two of them cannot both leave the account without an owner.
async fn locked_owner_count(conn: &mut AsyncPgConnection, account: Uuid) -> QueryResult<usize> {
    let owners: Vec<Uuid> = memberships::table
        .filter(memberships::account_id.eq(account))
        .filter(memberships::role.eq(Role::Owner.as_str()))
        .select(memberships::user_id)
        .for_update()
        .load(conn)
        .await?;
    Ok(owners.len())
}

async fn current_role(conn: &mut AsyncPgConnection, account: Uuid, user: Uuid) -> QueryResult<Option<String>> {
    memberships::table
        .find((account, user))
        .select(memberships::role)
        .for_update()
        .first::<String>(conn)
        .await
        .optional()
}

impl UserStore for PgStore {
    async fn create_user(&self, user: &User, membership: Option<&Membership>) -> Result<(), CreateUserError> {
        let user_row = UserRow::from(user);
        let membership_row = membership.map(MembershipRow::from);
        let mut conn = self.conn().await?;
        let result = conn
            .transaction::<_, DieselError, _>(async |conn| {
                diesel::insert_into(users::table).values(&user_row).execute(conn).await?;
                if let Some(m) = &membership_row {
                    diesel::insert_into(memberships::table).values(m).execute(conn).await?;
                }
                Ok(())
            })
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if is_unique_violation(&e, "users_email_key") => Err(CreateUserError::DuplicateEmail),
            Err(e) => Err(db_error(e).into()),
        }
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<UserRow> = users::table
            .filter(users::email.eq(email.as_str()))
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(User::try_from).transpose().map_err(corrupt)
    }

    async fn get_user(&self, id: UserId) -> Result<Option<User>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<UserRow> = users::table
            .find(id.as_uuid())
            .select(UserRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(User::try_from).transpose().map_err(corrupt)
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        change_required: bool,
        at: OffsetDateTime,
    ) -> Result<(), UpdateError> {
        let mut conn = self.conn().await?;
        let updated = diesel::update(users::table.find(id.as_uuid()))
            .set((
                users::password_hash.eq(hash.as_phc()),
                users::password_change_required.eq(change_required),
                users::updated_at.eq(at),
            ))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        if updated == 0 { Err(UpdateError::NotFound) } else { Ok(()) }
    }

    async fn memberships_of(&self, user: UserId) -> Result<Vec<(Membership, String)>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(MembershipRow, String)> = memberships::table
            .inner_join(accounts::table)
            .filter(memberships::user_id.eq(user.as_uuid()))
            .order((memberships::created_at.asc(), memberships::account_id.asc()))
            .select((MembershipRow::as_select(), accounts::name))
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(m, name)| Membership::try_from(m).map(|m| (m, name)))
            .collect::<Result<_, _>>()
            .map_err(corrupt)
    }

    async fn get_membership(&self, account: AccountId, user: UserId) -> Result<Option<Membership>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<MembershipRow> = memberships::table
            .find((account.as_uuid(), user.as_uuid()))
            .select(MembershipRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Membership::try_from).transpose().map_err(corrupt)
    }

    async fn members(&self, account: AccountId) -> Result<Vec<(User, Membership)>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(UserRow, MembershipRow)> = memberships::table
            .inner_join(users::table)
            .filter(memberships::account_id.eq(account.as_uuid()))
            .order((memberships::created_at.asc(), memberships::user_id.asc()))
            .select((UserRow::as_select(), MembershipRow::as_select()))
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(u, m)| Ok((User::try_from(u)?, Membership::try_from(m)?)))
            .collect::<Result<_, CorruptRow>>()
            .map_err(corrupt)
    }

    async fn add_membership(&self, membership: &Membership) -> Result<(), MembershipError> {
        let row = MembershipRow::from(membership);
        let mut conn = self.conn().await?;
        match diesel::insert_into(memberships::table).values(&row).execute(&mut conn).await {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e, "memberships_pkey") => Err(MembershipError::Duplicate),
            Err(e) => Err(db_error(e).into()),
        }
    }

    async fn invite(&self, invitation: &Invitation) -> Result<(), MembershipError> {
        let row = InvitationRow::from(invitation);
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<MembershipError>, _>(async |conn| {
            let member: i64 = memberships::table
                .filter(memberships::account_id.eq(row.account_id))
                .filter(memberships::user_id.eq(row.user_id))
                .count()
                .get_result(conn)
                .await?;
            if member > 0 {
                return Err(TxError::Domain(MembershipError::Duplicate));
            }
            diesel::insert_into(invitations::table)
                .values(&row)
                .on_conflict((invitations::account_id, invitations::user_id))
                .do_update()
                .set((
                    invitations::role.eq(&row.role),
                    invitations::invited_by.eq(&row.invited_by),
                    invitations::created_at.eq(row.created_at),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
        .map_err(TxError::into_domain)
    }

    async fn invitations_of(&self, user: UserId) -> Result<Vec<(Invitation, String)>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<(InvitationRow, String)> = invitations::table
            .inner_join(accounts::table)
            .filter(invitations::user_id.eq(user.as_uuid()))
            .order((invitations::created_at.asc(), invitations::account_id.asc()))
            .select((InvitationRow::as_select(), accounts::name))
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter()
            .map(|(i, name)| Invitation::try_from(i).map(|i| (i, name)))
            .collect::<Result<_, _>>()
            .map_err(corrupt)
    }

    async fn answer_invitation(
        &self,
        account: AccountId,
        user: UserId,
        accept: bool,
        at: OffsetDateTime,
    ) -> Result<Option<Membership>, MembershipError> {
        let (account_id, user_id) = (account.as_uuid(), user.as_uuid());
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<MembershipError>, _>(async |conn| {
            let taken: Option<InvitationRow> = diesel::delete(invitations::table.find((account_id, user_id)))
                .returning(InvitationRow::as_returning())
                .get_result(conn)
                .await
                .optional()?;
            let invitation = Invitation::try_from(taken.ok_or(TxError::Domain(MembershipError::NotFound))?)
                .map_err(|e| TxError::Domain(MembershipError::Storage(corrupt(e))))?;
            if !accept {
                return Ok(None);
            }
            let membership = Membership { user_id: user, account_id: account, role: invitation.role, created_at: at };
            match diesel::insert_into(memberships::table).values(MembershipRow::from(&membership)).execute(conn).await {
                Ok(_) => Ok(Some(membership)),
                Err(e) if is_unique_violation(&e, "memberships_pkey") => {
                    Err(TxError::Domain(MembershipError::Duplicate))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
        .map_err(TxError::into_domain)
    }

    async fn set_role(&self, account: AccountId, user: UserId, role: Role) -> Result<(), MembershipError> {
        let (account, user) = (account.as_uuid(), user.as_uuid());
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<MembershipError>, _>(async |conn| {
            let owners = locked_owner_count(conn, account).await?;
            let current = current_role(conn, account, user).await?.ok_or(TxError::Domain(MembershipError::NotFound))?;
            if current == Role::Owner.as_str() && role != Role::Owner && owners <= 1 {
                return Err(TxError::Domain(MembershipError::LastOwner));
            }
            diesel::update(memberships::table.find((account, user)))
                .set(memberships::role.eq(role.as_str()))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
        .map_err(TxError::into_domain)
    }

    async fn remove_membership(&self, account: AccountId, user: UserId) -> Result<(), MembershipError> {
        let (account, user) = (account.as_uuid(), user.as_uuid());
        let mut conn = self.conn().await?;
        conn.transaction::<_, TxError<MembershipError>, _>(async |conn| {
            let owners = locked_owner_count(conn, account).await?;
            let current = current_role(conn, account, user).await?.ok_or(TxError::Domain(MembershipError::NotFound))?;
            if current == Role::Owner.as_str() && owners <= 1 {
                return Err(TxError::Domain(MembershipError::LastOwner));
            }
            diesel::delete(memberships::table.find((account, user))).execute(conn).await?;
            diesel::delete(sessions::table.filter(sessions::account_id.eq(account)).filter(sessions::user_id.eq(user)))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
        .map_err(TxError::into_domain)
    }
}

impl SessionStore for PgStore {
    async fn insert_session(&self, session: &Session) -> Result<(), StorageError> {
        let row = SessionRow::from(session);
        let mut conn = self.conn().await?;
        diesel::insert_into(sessions::table).values(&row).execute(&mut conn).await.map_err(db_error)?;
        Ok(())
    }

    async fn find_session(&self, token_hash: &[u8; 32]) -> Result<Option<Session>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<SessionRow> = sessions::table
            .filter(sessions::token_hash.eq(&token_hash[..]))
            .select(SessionRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Session::try_from).transpose().map_err(corrupt)
    }

    async fn touch_session(&self, id: SessionId, at: OffsetDateTime) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::update(sessions::table.find(id.as_uuid()))
            .filter(sessions::last_seen_at.lt(at))
            .set(sessions::last_seen_at.eq(at))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn set_step_up(&self, id: SessionId, at: OffsetDateTime) -> Result<(), StorageError> {
        let mut conn = self.conn().await?;
        diesel::update(sessions::table.find(id.as_uuid()))
            .set(sessions::step_up_at.eq(at))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn delete_session(&self, id: SessionId) -> Result<Option<Session>, StorageError> {
        let mut conn = self.conn().await?;
        let row: Option<SessionRow> = diesel::delete(sessions::table.find(id.as_uuid()))
            .returning(SessionRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Session::try_from).transpose().map_err(corrupt)
    }
}

/// The newest (seq, hash) of a chain, served by the `(account_id, seq)` index read
/// backwards: `account_id = $1`, or `IS NULL` for the chain without an account, since
/// `IS NOT DISTINCT FROM` cannot use an index and would scan the whole table under the
/// chain's lock on every management call (`testing::explain_chain_head` shows the plan).
pub(crate) fn chain_head(
    account: Option<Uuid>,
) -> audit_events::BoxedQuery<'static, diesel::pg::Pg, (diesel::sql_types::BigInt, diesel::sql_types::Binary)> {
    let query = audit_events::table.select((audit_events::seq, audit_events::hash)).into_boxed();
    let query = match account {
        Some(account) => query.filter(audit_events::account_id.eq(account)),
        None => query.filter(audit_events::account_id.is_null()),
    };
    query.order(audit_events::seq.desc()).limit(1)
}

/// The advisory lock of a chain: the first 8 bytes of the account id (another fixed number
/// for the chain of events without an account).
fn chain_lock(account: Option<Uuid>) -> i64 {
    account.map_or(0x6b77_6175_6469_7400, |a| i64::from_be_bytes(a.as_bytes()[..8].try_into().unwrap_or_default()))
}

#[derive(diesel::QueryableByName)]
struct Purged {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    removed: i64,
}

impl AuditStore for PgStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<AuditRecord, StorageError> {
        let account = event.account_id.map(|a| a.as_uuid());
        let mut conn = self.conn().await?;
        conn.transaction::<_, DieselError, _>(async |conn| {
            // Appends to one chain are serialised; other chains proceed in parallel.
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(chain_lock(account))
                .execute(conn)
                .await?;
            let head: Option<(i64, Vec<u8>)> = chain_head(account).first(conn).await.optional()?;
            let (seq, prev_hash) = match head {
                Some((seq, hash)) => (seq, hash.as_slice().try_into().unwrap_or([0; 32])),
                None => (0, [0; 32]),
            };
            let record =
                AuditRecord { event: event.clone(), seq: seq + 1, prev_hash, hash: chain_hash(&prev_hash, event) };
            diesel::insert_into(audit_events::table).values(&AuditRow::from(&record)).execute(conn).await?;
            Ok(record)
        })
        .await
        .map_err(db_error)
    }

    async fn list_audit(
        &self,
        account: AccountId,
        filter: &AuditFilter,
        limit: u32,
        before: Option<EventId>,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        let mut query = audit_events::table.filter(audit_events::account_id.eq(account.as_uuid())).into_boxed();
        if let Some(before) = before {
            query = query.filter(audit_events::id.lt(before.as_uuid()));
        }
        if let Some(key) = &filter.key_id {
            query = query.filter(audit_events::actor.eq(key.clone()).or(audit_events::resource_id.eq(key.clone())));
        }
        if let Some(actor) = &filter.actor_id {
            query = query.filter(audit_events::actor.eq(actor.clone()));
        }
        if let Some(kind) = &filter.resource_type {
            query = query.filter(audit_events::resource_type.eq(kind.clone()));
        }
        if let Some(id) = &filter.resource_id {
            query = query.filter(audit_events::resource_id.eq(id.clone()));
        }
        if let Some(action) = &filter.action {
            query = query.filter(audit_events::action.eq(action.clone()));
        }
        if let Some(result) = filter.result {
            query = query.filter(audit_events::result.eq(result.as_str()));
        }
        if let Some(since) = filter.since {
            query = query.filter(audit_events::ts.ge(since));
        }
        if let Some(until) = filter.until {
            query = query.filter(audit_events::ts.lt(until));
        }
        let mut conn = self.conn().await?;
        let rows: Vec<AuditRow> = query
            .order(audit_events::id.desc())
            .limit(i64::from(limit))
            .select(AuditRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(AuditRecord::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    async fn audit_chain(
        &self,
        account: Option<AccountId>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StorageError> {
        let mut conn = self.conn().await?;
        let rows: Vec<AuditRow> = audit_events::table
            .filter(audit_events::account_id.is_not_distinct_from(account.map(|a| a.as_uuid())))
            .filter(audit_events::seq.gt(after_seq))
            .order(audit_events::seq.asc())
            .limit(i64::from(limit))
            .select(AuditRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(AuditRecord::try_from).collect::<Result<_, _>>().map_err(corrupt)
    }

    async fn audit_chains(&self) -> Result<Vec<Option<AccountId>>, StorageError> {
        let mut conn = self.conn().await?;
        let chains: Vec<Option<Uuid>> =
            audit_events::table.select(audit_events::account_id).distinct().load(&mut conn).await.map_err(db_error)?;
        Ok(chains.into_iter().map(|a| a.map(AccountId::from_uuid)).collect())
    }

    async fn purge_audit(&self, account: Option<AccountId>, before: OffsetDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn().await?;
        let purged: Purged = diesel::sql_query("SELECT keyward_audit_purge($1, $2) AS removed")
            .bind::<Nullable<diesel::sql_types::Uuid>, _>(account.map(|a| a.as_uuid()))
            .bind::<Timestamptz, _>(before)
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(purged.removed).unwrap_or(0))
    }
}

/// A key's fingerprint, status and sealed body, as stored.
type HeldKey = (Vec<u8>, Option<i16>, Option<Vec<u8>>);

#[derive(diesel::QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    claimed: bool,
}

impl IdempotencyStore for PgStore {
    async fn claim_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<Claim, StorageError> {
        // Inside a unit of work the claim joins the unit: it becomes visible when the call
        // commits, together with its response, and vanishes if the call rolls back. Another
        // request with the same key meanwhile meets the uncommitted row in the unique index;
        // rather than wait for it, it gives up after a moment and answers "in use". So every
        // request holds one connection at most, and a crashed request frees its key at once.
        let mut conn = self.conn().await?;
        for _ in 0..3 {
            let attempt = conn
                .transaction::<_, DieselError, _>(async |conn| {
                    conn.batch_execute("SET LOCAL lock_timeout = '200ms'").await?;
                    let claimed: Vec<ClaimedRow> = diesel::sql_query(
                        "INSERT INTO idempotency_keys (account_id, key, fingerprint, created_at, lease_until) \
                         VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (account_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
                           created_at = EXCLUDED.created_at, lease_until = EXCLUDED.lease_until, status = NULL, body = NULL \
                         WHERE idempotency_keys.created_at <= $6 \
                            OR (idempotency_keys.status IS NULL AND idempotency_keys.lease_until <= $4) \
                         RETURNING true AS claimed",
                    )
                    .bind::<diesel::sql_types::Uuid, _>(account.as_uuid())
                    .bind::<diesel::sql_types::Text, _>(key)
                    .bind::<diesel::sql_types::Bytea, _>(fingerprint.as_slice())
                    .bind::<Timestamptz, _>(now)
                    .bind::<Timestamptz, _>(now + LEASE)
                    .bind::<Timestamptz, _>(now - RETENTION)
                    .load(conn)
                    .await?;
                    Ok(claimed.iter().any(|c| c.claimed))
                })
                .await;
            let claimed = match attempt {
                Ok(claimed) => claimed,
                // 55P03: the key is held by a request that has not committed yet.
                Err(DieselError::DatabaseError(_, info)) if info.message().contains("lock timeout") => {
                    return Ok(Claim::InFlight { fingerprint });
                }
                Err(e) => return Err(db_error(e)),
            };
            if claimed {
                return Ok(Claim::Claimed);
            }
            let held: Option<HeldKey> = idempotency_keys::table
                .find((account.as_uuid(), key))
                .select((idempotency_keys::fingerprint, idempotency_keys::status, idempotency_keys::body))
                .first(&mut *conn)
                .await
                .optional()
                .map_err(db_error)?;
            // Gone between the two statements (released or purged): try again.
            let Some((stored_fingerprint, status, body)) = held else { continue };
            let stored_fingerprint: [u8; 32] = stored_fingerprint.as_slice().try_into().unwrap_or([0; 32]);
            return Ok(match status {
                Some(status) => Claim::Completed {
                    fingerprint: stored_fingerprint,
                    response: StoredResponse {
                        status: u16::try_from(status).unwrap_or(500),
                        sealed_body: body.unwrap_or_default(),
                    },
                },
                None => Claim::InFlight { fingerprint: stored_fingerprint },
            });
        }
        Err(StorageError::Internal("an idempotency key kept changing under its claim".into()))
    }

    async fn complete_idempotency(
        &self,
        account: AccountId,
        key: &str,
        fingerprint: [u8; 32],
        now: OffsetDateTime,
        response: &StoredResponse,
    ) -> Result<(), StorageError> {
        // An upsert: after a rolled-back call its claim is gone, and a kept refusal is
        // written afresh.
        let mut conn = self.conn().await?;
        diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::account_id.eq(account.as_uuid()),
                idempotency_keys::key.eq(key),
                idempotency_keys::fingerprint.eq(fingerprint.as_slice()),
                idempotency_keys::created_at.eq(now),
                idempotency_keys::status.eq(i16::try_from(response.status).unwrap_or(i16::MAX)),
                idempotency_keys::body.eq(&response.sealed_body),
            ))
            .on_conflict((idempotency_keys::account_id, idempotency_keys::key))
            .do_update()
            .set((
                idempotency_keys::status.eq(i16::try_from(response.status).unwrap_or(i16::MAX)),
                idempotency_keys::body.eq(&response.sealed_body),
                idempotency_keys::lease_until.eq(None::<OffsetDateTime>),
            ))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn release_idempotency(&self, account: AccountId, key: &str) -> Result<(), StorageError> {
        let mut conn = self.own_conn().await?;
        diesel::delete(idempotency_keys::table.find((account.as_uuid(), key)))
            .filter(idempotency_keys::status.is_null())
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn purge_idempotency(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn().await?;
        let removed = diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(before)))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(removed as u64)
    }
}

/// A usage record's columns, as selected.
type UsageColumns = (
    i64,
    OffsetDateTime,
    Uuid,
    Uuid,
    Option<String>,
    Option<String>,
    Option<i16>,
    Option<i32>,
    Option<String>,
    Option<String>,
);

fn usage_from_columns(
    (seq, ts, key_id, account_id, endpoint, method, status, ms, ip, outcome): UsageColumns,
) -> UsageEntry {
    UsageEntry {
        position: UsagePosition { ts, seq },
        record: UsageRecord {
            ts,
            key_id: KeyId::from_uuid(key_id),
            account_id: AccountId::from_uuid(account_id),
            endpoint,
            method,
            status_code: status.and_then(|s| u16::try_from(s).ok()),
            response_time_ms: ms.and_then(|ms| u32::try_from(ms).ok()),
            ip: ip.and_then(|ip| ip.parse().ok()),
            outcome: outcome.and_then(|o| o.parse().ok()),
        },
    }
}

#[derive(diesel::QueryableByName)]
struct ByCode {
    #[diesel(sql_type = diesel::sql_types::Text)]
    outcome: String,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    total: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    today: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    timed: i64,
    #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
    ms: Option<f64>,
}

#[derive(diesel::QueryableByName)]
struct Dropped {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    dropped: i32,
}

impl UsageStore for PgStore {
    async fn record_usage(&self, batch: &[UsageRecord]) -> Result<(), StorageError> {
        use diesel::sql_types::{Array, Date, Int2, Int4, Int8, Nullable, Text, Timestamptz as Ts, Uuid as SqlUuid};
        use std::collections::{BTreeMap, BTreeSet};
        if batch.is_empty() {
            return Ok(());
        }
        // Per key: how many and the latest use; per key and UTC day: how many. (Sorted maps:
        // each statement's arrays come out in key order.)
        let mut per_key: BTreeMap<Uuid, (i64, OffsetDateTime)> = BTreeMap::new();
        let mut per_day: BTreeMap<(Uuid, time::Date), i64> = BTreeMap::new();
        // Per account, UTC day and verdict (verifications only): requests, timed, total ms.
        let mut per_outcome: BTreeMap<(Uuid, time::Date, &'static str), (i64, i64, i64)> = BTreeMap::new();
        for r in batch {
            let entry = per_key.entry(r.key_id.as_uuid()).or_insert((0, r.ts));
            entry.0 += 1;
            entry.1 = entry.1.max(r.ts);
            let day = r.ts.to_offset(time::UtcOffset::UTC).date();
            *per_day.entry((r.key_id.as_uuid(), day)).or_default() += 1;
            if let Some(outcome) = r.outcome {
                let sums = per_outcome.entry((r.account_id.as_uuid(), day, outcome.as_str())).or_default();
                sums.0 += 1;
                if let Some(ms) = r.response_time_ms {
                    sums.1 += 1;
                    sums.2 += i64::from(ms);
                }
            }
        }
        let days: BTreeSet<time::Date> = per_day.keys().map(|(_, d)| *d).collect();
        let key_ids: Vec<Uuid> = per_key.keys().copied().collect();
        let (counts, lasts): (Vec<i64>, Vec<OffsetDateTime>) = per_key.values().copied().unzip();
        let (day_keys, day_dates): (Vec<Uuid>, Vec<time::Date>) = per_day.keys().copied().unzip();
        let day_counts: Vec<i64> = per_day.values().copied().collect();
        let mut conn = self.conn().await?;
        let idle_hashes = conn
            .transaction::<_, DieselError, _>(async |conn| {
                for day in &days {
                    diesel::sql_query("SELECT keyward_usage_partition($1)").bind::<Date, _>(*day).execute(conn).await?;
                }
                // Set-based: one statement per 10,000 records, however many keys they name
                // (a statement per key took seconds once 10,000 keys were in use). Inserted
                // in the primary key's order (key_id, ts), so consecutive index insertions
                // land on the same leaf pages: ~11% less time than arrival order for 40,000
                // records over 10,000 keys, sort included (docs/performance.md).
                for chunk in batch.chunks(10_000) {
                    diesel::sql_query(
                        "INSERT INTO usage_records \
                         (ts, key_id, account_id, endpoint, method, status_code, response_time_ms, ip, outcome) \
                         SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9) ORDER BY 2, 1",
                    )
                    .bind::<Array<Ts>, _>(chunk.iter().map(|r| r.ts).collect::<Vec<_>>())
                    .bind::<Array<SqlUuid>, _>(chunk.iter().map(|r| r.key_id.as_uuid()).collect::<Vec<_>>())
                    .bind::<Array<SqlUuid>, _>(chunk.iter().map(|r| r.account_id.as_uuid()).collect::<Vec<_>>())
                    .bind::<Array<Nullable<Text>>, _>(chunk.iter().map(|r| r.endpoint.as_deref()).collect::<Vec<_>>())
                    .bind::<Array<Nullable<Text>>, _>(chunk.iter().map(|r| r.method.as_deref()).collect::<Vec<_>>())
                    .bind::<Array<Nullable<Int2>>, _>(
                        chunk.iter().map(|r| r.status_code.and_then(|s| i16::try_from(s).ok())).collect::<Vec<_>>(),
                    )
                    .bind::<Array<Nullable<Int4>>, _>(
                        chunk
                            .iter()
                            .map(|r| r.response_time_ms.and_then(|ms| i32::try_from(ms).ok()))
                            .collect::<Vec<_>>(),
                    )
                    .bind::<Array<Nullable<Text>>, _>(
                        chunk.iter().map(|r| r.ip.map(|ip| ip.to_string())).collect::<Vec<_>>(),
                    )
                    .bind::<Array<Nullable<Text>>, _>(
                        chunk.iter().map(|r| r.outcome.map(keyward_domain::VerifyCode::as_str)).collect::<Vec<_>>(),
                    )
                    .execute(conn)
                    .await?;
                }
                // The counters' turn: flushes of several instances take it one at a time.
                // Their row locks (the update below, the daily upserts) are taken in no
                // guaranteed order, so two at once over overlapping keys could deadlock. One
                // lock per flush rather than per key row (locking the rows first wrote every
                // one of them before the update wrote it again); taken after the records'
                // insert, the bulk of a flush, which instances still run side by side.
                diesel::sql_query("SELECT pg_advisory_xact_lock($1, $2)")
                    .bind::<Int4, _>(USAGE_FLUSH_LOCK.0)
                    .bind::<Int4, _>(USAGE_FLUSH_LOCK.1)
                    .execute(conn)
                    .await?;
                // Only the keys whose idle timeout depends on the new `last_used_at` come
                // back (to be announced), not a hash per key used in the second.
                let idle: Vec<UsageTouched> = diesel::sql_query(
                    "WITH touched AS (UPDATE keys SET usage_count = keys.usage_count + v.n, \
                     last_used_at = GREATEST(keys.last_used_at, v.last) \
                     FROM unnest($1, $2, $3) AS v(id, n, last) WHERE keys.id = v.id \
                     RETURNING keys.hash, keys.idle_timeout_seconds) \
                     SELECT hash FROM touched WHERE idle_timeout_seconds IS NOT NULL",
                )
                .bind::<Array<SqlUuid>, _>(&key_ids)
                .bind::<Array<Int8>, _>(&counts)
                .bind::<Array<Ts>, _>(&lasts)
                .load(conn)
                .await?;
                diesel::sql_query(
                    "INSERT INTO key_usage_daily (key_id, day, requests) SELECT * FROM unnest($1, $2, $3) \
                     ON CONFLICT (key_id, day) DO UPDATE SET requests = key_usage_daily.requests + EXCLUDED.requests",
                )
                .bind::<Array<SqlUuid>, _>(&day_keys)
                .bind::<Array<Date>, _>(&day_dates)
                .bind::<Array<Int8>, _>(&day_counts)
                .execute(conn)
                .await?;
                // What GET /v1/stats reads: a few rows per flush, whatever the traffic.
                diesel::sql_query(
                    "INSERT INTO account_usage_daily (account_id, day, outcome, requests, timed, total_ms) \
                     SELECT * FROM unnest($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, day, outcome) DO UPDATE \
                     SET requests = account_usage_daily.requests + EXCLUDED.requests, \
                         timed = account_usage_daily.timed + EXCLUDED.timed, \
                         total_ms = account_usage_daily.total_ms + EXCLUDED.total_ms",
                )
                .bind::<Array<SqlUuid>, _>(per_outcome.keys().map(|k| k.0).collect::<Vec<_>>())
                .bind::<Array<Date>, _>(per_outcome.keys().map(|k| k.1).collect::<Vec<_>>())
                .bind::<Array<Text>, _>(per_outcome.keys().map(|k| k.2).collect::<Vec<_>>())
                .bind::<Array<Int8>, _>(per_outcome.values().map(|v| v.0).collect::<Vec<_>>())
                .bind::<Array<Int8>, _>(per_outcome.values().map(|v| v.1).collect::<Vec<_>>())
                .bind::<Array<Int8>, _>(per_outcome.values().map(|v| v.2).collect::<Vec<_>>())
                .execute(conn)
                .await?;
                // Keys with an idle timeout must see their new `last_used_at` everywhere.
                let idle_hashes: Vec<Vec<u8>> = idle.into_iter().map(|t| t.hash).collect();
                let hashes: Vec<&[u8]> = idle_hashes.iter().map(Vec::as_slice).collect();
                self.announce(conn, &hashes).await?;
                Ok(idle_hashes)
            })
            .await
            .map_err(db_error)?;
        let hashes: Vec<&[u8]> = idle_hashes.iter().map(Vec::as_slice).collect();
        self.evict_locally(&hashes).await;
        Ok(())
    }

    async fn key_usage(
        &self,
        account: AccountId,
        key: KeyId,
        window: (Option<OffsetDateTime>, Option<OffsetDateTime>),
        before: Option<UsagePosition>,
        limit: u32,
    ) -> Result<Vec<UsageEntry>, StorageError> {
        let mut query = usage_records::table
            .filter(usage_records::account_id.eq(account.as_uuid()))
            .filter(usage_records::key_id.eq(key.as_uuid()))
            .into_boxed();
        if let Some(since) = window.0 {
            query = query.filter(usage_records::ts.ge(since));
        }
        if let Some(until) = window.1 {
            query = query.filter(usage_records::ts.lt(until));
        }
        if let Some(before) = before {
            // (ts, id) < (before.ts, before.seq): the row after the previous page's last.
            query = query.filter(
                usage_records::ts
                    .lt(before.ts)
                    .or(usage_records::ts.eq(before.ts).and(usage_records::id.lt(before.seq))),
            );
        }
        let mut conn = self.conn().await?;
        let rows: Vec<UsageColumns> = query
            .order((usage_records::ts.desc(), usage_records::id.desc()))
            .limit(i64::from(limit))
            .select((
                usage_records::id,
                usage_records::ts,
                usage_records::key_id,
                usage_records::account_id,
                usage_records::endpoint,
                usage_records::method,
                usage_records::status_code,
                usage_records::response_time_ms,
                usage_records::ip,
                usage_records::outcome,
            ))
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(rows.into_iter().map(usage_from_columns).collect())
    }

    async fn usage_summary(
        &self,
        account: AccountId,
        key: KeyId,
        now: OffsetDateTime,
    ) -> Result<UsageSummary, StorageError> {
        let (day, month) = day_and_month_start(now);
        let mut conn = self.conn().await?;
        let owned: i64 = keys::table
            .filter(keys::id.eq(key.as_uuid()))
            .filter(keys::account_id.eq(account.as_uuid()))
            .count()
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        if owned == 0 {
            return Ok(UsageSummary::default());
        }
        let days: Vec<(time::Date, i64)> = key_usage_daily::table
            .filter(key_usage_daily::key_id.eq(key.as_uuid()))
            .filter(key_usage_daily::day.ge(month.date()))
            .select((key_usage_daily::day, key_usage_daily::requests))
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(UsageSummary {
            requests_today: days.iter().filter(|(d, _)| *d == day.date()).map(|(_, n)| count(*n)).sum(),
            requests_this_month: days.iter().map(|(_, n)| count(*n)).sum(),
        })
    }

    async fn account_stats(&self, account: AccountId, now: OffsetDateTime) -> Result<AccountStats, StorageError> {
        let (day, _) = day_and_month_start(now);
        let mut conn = self.conn().await?;
        let rows: Vec<ByCode> = diesel::sql_query(
            // The roll-up the usage flush keeps (migration 000009), not the records: one row
            // per day and verdict however many verifications there were.
            "SELECT outcome, sum(requests)::int8 AS total, \
                    coalesce(sum(requests) FILTER (WHERE day >= $2), 0)::int8 AS today, \
                    sum(timed)::int8 AS timed, sum(total_ms)::float8 AS ms \
             FROM account_usage_daily WHERE account_id = $1 GROUP BY outcome",
        )
        .bind::<diesel::sql_types::Uuid, _>(account.as_uuid())
        .bind::<diesel::sql_types::Date, _>(day.to_offset(time::UtcOffset::UTC).date())
        .load(&mut conn)
        .await
        .map_err(db_error)?;
        let mut stats = AccountStats::default();
        let (mut valid, mut timed, mut total_ms) = (0u64, 0u64, 0f64);
        for row in rows {
            let total = u64::try_from(row.total).unwrap_or(0);
            stats.verifications_total += total;
            stats.verifications_today += u64::try_from(row.today).unwrap_or(0);
            if row.outcome == keyward_domain::VerifyCode::Valid.as_str() {
                valid += total;
            }
            timed += u64::try_from(row.timed).unwrap_or(0);
            total_ms += row.ms.unwrap_or(0.0);
            stats.by_code.insert(row.outcome, total);
        }
        stats.success_rate =
            if stats.verifications_total == 0 { 0.0 } else { valid as f64 / stats.verifications_total as f64 };
        stats.avg_response_time_ms = (timed > 0).then(|| total_ms / timed as f64);
        Ok(stats)
    }

    async fn purge_usage(&self, before: OffsetDateTime) -> Result<u64, StorageError> {
        let mut conn = self.conn().await?;
        let dropped: Dropped = diesel::sql_query("SELECT keyward_usage_drop_before($1) AS dropped")
            .bind::<diesel::sql_types::Date, _>(before.to_offset(time::UtcOffset::UTC).date())
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(u64::try_from(dropped.dropped).unwrap_or(0))
    }
}

impl Atomic for PgStore {
    /// Begins a transaction on one pooled connection and runs `work` with that connection
    /// pinned to the task: every call `work` makes on this store (and its clones) runs in
    /// the transaction; calls that open transactions of their own nest as savepoints.
    async fn atomically<T, F: Future<Output = Outcome<T>>>(&self, work: F) -> Result<T, StorageError> {
        use diesel_async::{AnsiTransactionManager, TransactionManager};
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
