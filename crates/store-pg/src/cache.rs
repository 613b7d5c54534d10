//! The verification cache: key records by hash, positive and negative, in memory, kept
//! coherent across instances by PostgreSQL `LISTEN/NOTIFY`.
//!
//! Every statement that changes a key notifies `keyward_keys` with the key's hash, inside
//! the same transaction, so the notification is delivered exactly when the change commits.
//! Each instance's listener evicts the named entries; when the listener has to reconnect it
//! flushes the whole cache (it may have missed notifications), and a TTL bounds how long a
//! missed notification could matter anyway.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use keyward_domain::ports::VerifiableKey;
use moka::{Expiry, future::Cache};

pub(crate) const CHANNEL: &str = "keyward_keys";

/// Cache settings; all configurable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Entries kept (keys found and keys not found together).
    pub max_entries: u64,
    /// The backstop: an entry is reloaded after this even if no notification came.
    pub ttl: Duration,
    /// How long "no such key" is remembered (short: a new key must not wait long).
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { max_entries: 1_000_000, ttl: Duration::from_secs(30), negative_ttl: Duration::from_secs(2) }
    }
}

type Entry = Option<Arc<VerifiableKey>>;

struct TtlByKind {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry<[u8; 33], Entry> for TtlByKind {
    fn expire_after_create(&self, _key: &[u8; 33], value: &Entry, _created_at: Instant) -> Option<Duration> {
        Some(if value.is_some() { self.ttl } else { self.negative_ttl })
    }
}

/// Keys by hash.
pub(crate) struct KeyCache {
    entries: Cache<[u8; 33], Entry>,
    /// Loads from the database (misses that reached storage), for tests and metrics.
    pub(crate) loads: AtomicU64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").field("entries", &self.entries.entry_count()).finish()
    }
}

impl KeyCache {
    pub(crate) fn new(config: CacheConfig) -> Self {
        let entries = Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(TtlByKind { ttl: config.ttl, negative_ttl: config.negative_ttl })
            .build();
        Self { entries, loads: AtomicU64::new(0) }
    }

    /// The entry for `hash`, loading it with `load` on a miss. Concurrent misses for one
    /// hash share a single load. Errors are not cached.
    pub(crate) async fn get_or_load<F, E>(&self, hash: [u8; 33], load: F) -> Result<Entry, Arc<E>>
    where
        F: Future<Output = Result<Option<VerifiableKey>, E>>,
        E: Send + Sync + 'static,
    {
        self.entries
            .try_get_with(hash, async {
                self.loads.fetch_add(1, Ordering::Relaxed);
                load.await.map(|found| found.map(Arc::new))
            })
            .await
    }

    pub(crate) async fn evict(&self, hash: &[u8; 33]) {
        self.entries.invalidate(hash).await;
    }

    pub(crate) fn flush(&self) {
        self.entries.invalidate_all();
    }

    /// Runs moka's pending housekeeping, so its entry count and memory are settled.
    #[cfg(feature = "testing")]
    pub(crate) async fn settle(&self) -> u64 {
        self.entries.run_pending_tasks().await;
        self.entries.entry_count()
    }
}

/// The `NOTIFY` payloads for these hashes: hex, comma-separated, under PostgreSQL's 8,000
/// bytes per notification.
pub(crate) fn payloads<'a>(hashes: impl IntoIterator<Item = &'a [u8]>) -> Vec<String> {
    let hex: Vec<String> = hashes.into_iter().map(|h| h.iter().map(|b| format!("{b:02x}")).collect()).collect();
    hex.chunks(100).map(|chunk| chunk.join(",")).collect()
}

/// The hashes a payload names.
pub(crate) fn parse_payload(payload: &str) -> Vec<[u8; 33]> {
    payload
        .split(',')
        .filter_map(|hex| {
            let mut hash = [0u8; 33];
            if hex.len() != 66 {
                return None;
            }
            for (i, byte) in hash.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
            }
            Some(hash)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_stay_small() {
        let hashes: Vec<[u8; 33]> = (0..250u8).map(|i| [i; 33]).collect();
        let sent = payloads(hashes.iter().map(|h| h.as_slice()));
        assert_eq!(sent.len(), 3);
        assert!(sent.iter().all(|p| p.len() < 8_000));
        let received: Vec<[u8; 33]> = sent.iter().flat_map(|p| parse_payload(p)).collect();
        assert_eq!(received, hashes);
        assert!(parse_payload("zz,").is_empty());
    }
}
