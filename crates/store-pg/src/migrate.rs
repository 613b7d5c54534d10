//! The migrations of `migrations/`, embedded in the binary and applied by `keyward migrate`.
//!
//! diesel's migration harness is synchronous; it runs on a blocking thread over
//! `AsyncConnectionWrapper`, so no libpq is needed anywhere.

use diesel::{migration::MigrationSource, pg::Pg, prelude::*, sql_types::Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, async_connection_wrapper::AsyncConnectionWrapper};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::tls::Connector;

pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("could not connect to PostgreSQL: {0}")]
    Connect(#[source] diesel::ConnectionError),
    #[error("a migration failed: {0}")]
    Apply(String),
    #[error("could not read the applied migrations: {0}")]
    Query(#[source] diesel::result::Error),
    #[error("TLS to PostgreSQL: {0}")]
    Tls(#[from] crate::tls::TlsError),
}

/// Applies every pending migration; returns the versions applied, oldest first.
pub async fn run_migrations(database_url: &str) -> Result<Vec<String>, MigrationError> {
    MigrationLock::acquire(database_url).await?.run_migrations().await
}

type Blocking = AsyncConnectionWrapper<AsyncPgConnection>;

/// The advisory lock's key: "keyward" in ASCII.
const LOCK_KEY: i64 = 0x006b_6579_7761_7264;

/// What every `keyward migrate` holds while it migrates (and bootstraps): a session-level
/// advisory lock, so that instances or jobs started at once apply the migrations one after
/// the other. PostgreSQL releases it when the connection closes, a crashed holder included.
pub struct MigrationLock {
    conn: Option<Blocking>,
}

impl std::fmt::Debug for MigrationLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MigrationLock")
    }
}

impl MigrationLock {
    /// Waits for the lock.
    pub async fn acquire(database_url: &str) -> Result<Self, MigrationError> {
        let conn = Connector::new(database_url)?.connect().await.map_err(MigrationError::Connect)?;
        // Made here, where it finds the runtime it blocks on.
        let mut lock = Self { conn: Some(Blocking::from(conn)) };
        lock.blocking(|conn| {
            let query = diesel::sql_query("SELECT pg_advisory_lock($1)").bind::<diesel::sql_types::BigInt, _>(LOCK_KEY);
            diesel::RunQueryDsl::execute(query, conn).map(drop).map_err(MigrationError::Query)
        })
        .await?;
        Ok(lock)
    }

    /// Applies every pending migration; returns the versions applied, oldest first.
    pub async fn run_migrations(mut self) -> Result<Vec<String>, MigrationError> {
        self.migrate().await
    }

    /// As [`MigrationLock::run_migrations`], keeping the lock for what comes next.
    pub async fn migrate(&mut self) -> Result<Vec<String>, MigrationError> {
        self.blocking(|conn| {
            let applied = conn.run_pending_migrations(MIGRATIONS).map_err(|e| MigrationError::Apply(e.to_string()))?;
            Ok(applied.iter().map(ToString::to_string).collect())
        })
        .await
    }

    /// Whether any account exists (a first start creates one).
    pub async fn has_accounts(&mut self) -> Result<bool, MigrationError> {
        #[derive(QueryableByName)]
        struct Found {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            found: bool,
        }
        self.blocking(|conn| {
            let query = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM accounts) AS found");
            diesel::RunQueryDsl::get_result::<Found>(query, conn).map(|row| row.found).map_err(MigrationError::Query)
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &mut self,
        work: impl FnOnce(&mut Blocking) -> Result<T, MigrationError> + Send + 'static,
    ) -> Result<T, MigrationError> {
        let mut conn = self.conn.take().ok_or_else(|| MigrationError::Apply("the lock's connection is gone".into()))?;
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = work(&mut conn);
            (conn, result)
        })
        .await
        .map_err(|e| MigrationError::Apply(format!("the migration task failed: {e}")))?;
        self.conn = Some(conn);
        result
    }
}

/// The versions of the embedded migrations, oldest first.
fn embedded_versions() -> Vec<String> {
    MigrationSource::<Pg>::migrations(&MIGRATIONS)
        .map(|all| all.iter().map(|m| m.name().version().to_string()).collect())
        .unwrap_or_default()
}

#[derive(QueryableByName)]
struct AppliedVersion {
    #[diesel(sql_type = Text)]
    version: String,
}

/// How many embedded migrations the database has not applied.
pub(crate) async fn pending_on(conn: &mut AsyncPgConnection) -> Result<usize, MigrationError> {
    let applied: Vec<AppliedVersion> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load(conn)
        .await
        .map_err(MigrationError::Query)?;
    Ok(embedded_versions().iter().filter(|v| !applied.iter().any(|a| &a.version == *v)).count())
}

/// The embedded migrations a database at `database_url` has not applied.
pub async fn pending_migrations(database_url: &str) -> Result<usize, MigrationError> {
    let mut conn = Connector::new(database_url)?.connect().await.map_err(MigrationError::Connect)?;
    pending_on(&mut conn).await
}
