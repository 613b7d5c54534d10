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
    let conn = Connector::new(database_url)?.connect().await.map_err(MigrationError::Connect)?;
    // Made here, where it finds the runtime it blocks on.
    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
    tokio::task::spawn_blocking(move || {
        let applied = conn.run_pending_migrations(MIGRATIONS).map_err(|e| MigrationError::Apply(e.to_string()))?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
    .map_err(|e| MigrationError::Apply(format!("the migration task failed: {e}")))?
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
