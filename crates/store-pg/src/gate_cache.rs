//! Keyspaces' gates (their route tables, issue #31) by keyspace id, cached beside the keys
//! and kept coherent the same way: writing a route table, or deleting a keyspace, notifies
//! `keyward_keys` with `gate:<id>` inside its transaction, and every instance's listener
//! evicts it (and flushes all when it had to reconnect). The key cache's TTL bounds what a
//! missed notification could matter.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use keyward_domain::gateway::Gate;
use moka::{Expiry, future::Cache};
use uuid::Uuid;

use crate::cache::CacheConfig;

/// Keyspaces whose gates are kept: far more than any deployment has.
const MAX_GATES: u64 = 100_000;
/// A `NOTIFY` payload item naming a keyspace's gate; key hashes are 66 hex digits.
const PREFIX: &str = "gate:";

type Entry = Option<Arc<Gate>>;

struct TtlByKind {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry<Uuid, Entry> for TtlByKind {
    fn expire_after_create(&self, _: &Uuid, value: &Entry, _: Instant) -> Option<Duration> {
        Some(if value.is_some() { self.ttl } else { self.negative_ttl })
    }
}

pub(crate) struct GateCache {
    entries: Cache<Uuid, Entry>,
    /// Counts evictions: a load that read its row before a change committed and finished
    /// after the change's eviction must not stay (as in the key cache).
    evictions: AtomicU64,
}

impl std::fmt::Debug for GateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateCache").field("entries", &self.entries.entry_count()).finish()
    }
}

impl GateCache {
    pub(crate) fn new(config: &CacheConfig) -> Self {
        let entries = Cache::builder()
            .max_capacity(MAX_GATES)
            .expire_after(TtlByKind { ttl: config.ttl, negative_ttl: config.negative_ttl })
            .build();
        Self { entries, evictions: AtomicU64::new(0) }
    }

    /// The gate of `keyspace`, loading it with `load` on a miss (concurrent misses share
    /// one load; errors are not cached).
    pub(crate) async fn get_or_load<F, E>(&self, keyspace: Uuid, load: F) -> Result<Entry, Arc<E>>
    where
        F: Future<Output = Result<Entry, E>>,
        E: Send + Sync + 'static,
    {
        if let Some(entry) = self.entries.get(&keyspace).await {
            return Ok(entry);
        }
        const NOT_LOADED: u64 = u64::MAX;
        let loaded_after = AtomicU64::new(NOT_LOADED);
        let entry = self
            .entries
            .try_get_with(keyspace, async {
                loaded_after.store(self.evictions.load(Ordering::Acquire), Ordering::Relaxed);
                load.await
            })
            .await?;
        let seen = loaded_after.load(Ordering::Relaxed);
        if seen != NOT_LOADED && seen != self.evictions.load(Ordering::Acquire) {
            self.entries.invalidate(&keyspace).await;
        }
        Ok(entry)
    }

    pub(crate) async fn evict(&self, keyspace: Uuid) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(&keyspace).await;
    }

    pub(crate) fn flush(&self) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }
}

/// The payload item that names `keyspace`'s gate.
pub(crate) fn payload(keyspace: Uuid) -> String {
    format!("{PREFIX}{}", keyspace.simple())
}

/// The keyspaces a payload names (its other items are key hashes).
pub(crate) fn parse_payload(payload: &str) -> impl Iterator<Item = Uuid> + '_ {
    payload.split(',').filter_map(|item| item.strip_prefix(PREFIX)).filter_map(|hex| Uuid::try_parse(hex).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_names_its_keyspace_among_key_hashes() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let mixed = format!("{},{},gate:nonsense", "ab".repeat(33), payload(id));
        assert_eq!(parse_payload(&mixed).collect::<Vec<_>>(), [id]);
        assert!(crate::cache::parse_payload(&payload(id)).is_empty(), "no key hash is read from it");
    }
}
