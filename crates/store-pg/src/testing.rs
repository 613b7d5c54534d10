//! A fresh PostgreSQL database for each test, cloned from a migrated template.
//!
//! The template is named after a hash of `migrations/`, so a change to a migration builds a
//! new one; building it is guarded by an advisory lock, so test processes running at the
//! same time build it once. Each test then gets `CREATE DATABASE … TEMPLATE …` (a file copy,
//! milliseconds) and drops it when done. The server is `DATABASE_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/postgres`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use crate::{PgStore, PoolConfig};

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The URL of the server's maintenance database, from `DATABASE_URL`.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{server}/{database}?{q}"),
        None => format!("{server}/{database}"),
    }
}

fn migrations_fingerprint() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files: Vec<_> = walk(&dir);
    files.sort();
    let mut hasher = blake3::Hasher::new();
    for file in files {
        hasher.update(file.strip_prefix(&dir).unwrap().to_string_lossy().as_bytes());
        hasher.update(&std::fs::read(&file).unwrap());
    }
    hasher.finalize().to_hex()[..16].to_owned()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("migrations/ is readable") {
        let path = entry.unwrap().path();
        if path.is_dir() { out.extend(walk(&path)) } else { out.push(path) }
    }
    out
}

async fn admin() -> AsyncPgConnection {
    let url = admin_url();
    AsyncPgConnection::establish(&url).await.unwrap_or_else(|e| {
        panic!("PostgreSQL is not reachable at {url} ({e}); start it, or set DATABASE_URL (cargo xtask ci starts one)")
    })
}

/// Creates the migrated template if it does not exist yet; returns its name.
async fn ensure_template() -> String {
    let name = format!("keyward_template_{}", migrations_fingerprint());
    let mut conn = admin().await;
    // Any 64-bit number the tests agree on; held for the session, released on disconnect.
    conn.batch_execute("SELECT pg_advisory_lock(7140242710)").await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let exists: Exists = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&name),
        &mut conn,
    )
    .await
    .unwrap();
    // A template behind the migrations this build embeds (one built by a stale build) is
    // rebuilt rather than handed out: every test cloned from it would fail confusingly.
    let stale = exists.exists
        && crate::pending_migrations(&with_database(&admin_url(), &name)).await.map_or(true, |pending| pending > 0);
    if stale {
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
    }
    if !exists.exists || stale {
        let building = format!("{name}_building");
        conn.batch_execute(&format!("DROP DATABASE IF EXISTS {building}")).await.unwrap();
        conn.batch_execute(&format!("CREATE DATABASE {building}")).await.unwrap();
        crate::run_migrations(&with_database(&admin_url(), &building))
            .await
            .expect("migrations apply to an empty database");
        // Renamed only once complete, so no test ever clones a half-migrated template.
        conn.batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}")).await.unwrap();
    }
    conn.batch_execute("SELECT pg_advisory_unlock(7140242710)").await.unwrap();
    name
}

/// A database of its own for one test; dropped when this value is.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    pub async fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let template = ensure_template().await;
        let name = format!(
            "keyward_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
        );
        admin().await.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await.unwrap();
        let url = with_database(&admin_url(), &name);
        Self { name, url }
    }

    /// A database with nothing in it, not even the migrations (for `keyward migrate`).
    pub async fn empty() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!("keyward_empty_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        admin().await.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = with_database(&admin_url(), &name);
        Self { name, url }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store over this database with a small pool.
    pub fn store(&self) -> PgStore {
        PgStore::connect(&self.url, &PoolConfig { max_size: 4, ..PoolConfig::default() }).unwrap()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop cannot await; a short-lived thread with its own runtime does the cleanup.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                admin().await.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.ok();
            });
        })
        .join();
    }
}

/// A verification cache holding `count` records made by `make_record` under distinct hashes
/// (each its own allocation, as a loaded record would be), and the number of entries it holds
/// once settled. For measuring the cache's memory (`benches/cache_memory.rs`); the cache is
/// returned so that it stays alive while the caller measures.
pub async fn filled_key_cache(
    make_record: impl Fn() -> keyward_domain::ports::VerifiableKey,
    count: u32,
) -> (Box<dyn Send + Sync>, u64) {
    let cache = std::sync::Arc::new(crate::cache::KeyCache::new(crate::CacheConfig {
        max_entries: u64::from(count),
        // Measured, not bounded: every record stays.
        max_bytes: u64::MAX,
        // Long enough that nothing expires while the caller measures.
        ttl: std::time::Duration::from_secs(3600),
        ..crate::CacheConfig::default()
    }));
    for i in 0..count {
        let mut hash = [0u8; 33];
        hash[1..5].copy_from_slice(&i.to_le_bytes());
        let record = make_record();
        let loaded = cache.get_or_load(hash, async { Ok::<_, std::convert::Infallible>(Some(record)) }).await;
        assert!(loaded.is_ok());
    }
    let entries = cache.settle().await;
    (Box::new(cache), entries)
}

/// PostgreSQL's plan for the audit append's chain-head query, with sequential scans
/// disabled so that a query the index cannot serve still shows `Seq Scan`.
pub async fn explain_chain_head(url: &str, account: Option<uuid::Uuid>) -> String {
    use diesel::QueryableByName;
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let query = crate::stores::chain_head(account);
    let sql = diesel::debug_query::<diesel::pg::Pg, _>(&query).to_string();
    let sql = sql.split(" -- binds:").next().unwrap().to_owned();
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    conn.batch_execute("SET enable_seqscan = off").await.unwrap();
    let explain = diesel::sql_query(format!("EXPLAIN {sql}"));
    let lines: Vec<Line> = match account {
        Some(account) => explain
            .bind::<diesel::sql_types::Uuid, _>(account)
            .bind::<diesel::sql_types::BigInt, _>(1_i64)
            .load(&mut conn)
            .await
            .unwrap(),
        None => explain.bind::<diesel::sql_types::BigInt, _>(1_i64).load(&mut conn).await.unwrap(),
    };
    lines.into_iter().map(|l| l.line).collect::<Vec<_>>().join("\n")
}
