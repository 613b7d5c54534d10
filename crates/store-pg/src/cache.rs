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
    /// Bytes the entries may hold, records and moka's bookkeeping together, as estimated
    /// by [`VerifiableKey::footprint`]: keys with large metadata count for what they hold.
    pub max_bytes: u64,
    /// The backstop: an entry is reloaded after this even if no notification came.
    pub ttl: Duration,
    /// How long "no such key" is remembered (short: a new key must not wait long).
    pub negative_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            max_bytes: 1 << 30,
            ttl: Duration::from_secs(30),
            negative_ttl: Duration::from_secs(2),
        }
    }
}

type Entry = Option<Arc<VerifiableKey>>;

/// A cached lookup and when it was loaded (seconds since the cache was made: four bytes,
/// where an `Instant` would take sixteen in each of a million entries).
#[derive(Clone)]
struct Cached {
    entry: Entry,
    loaded: u32,
}

/// moka's bookkeeping per entry besides the record: the hash-table slot, the access-order
/// and timer nodes, the key (about 400 bytes, measured: docs/performance.md, "Memory of
/// 1,000,000 cached keys").
const ENTRY_OVERHEAD: usize = 400;

impl Cached {
    /// The bytes this entry holds, for the cache's memory bound.
    fn weight(&self) -> u32 {
        let record = self.entry.as_ref().map_or(0, |key| 2 * size_of::<usize>() + key.footprint());
        u32::try_from(ENTRY_OVERHEAD + size_of::<Self>() + record).unwrap_or(u32::MAX)
    }
}

struct TtlByKind {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Expiry<[u8; 33], Cached> for TtlByKind {
    fn expire_after_create(&self, _key: &[u8; 33], value: &Cached, _created_at: Instant) -> Option<Duration> {
        Some(if value.entry.is_some() { self.ttl } else { self.negative_ttl })
    }
}

/// What a lookup found, and whether the caller should reload it in the background.
pub(crate) struct Found {
    pub(crate) entry: Entry,
    /// Past half its TTL and in use: reload it ahead of expiry ([`KeyCache::refresh`]), so
    /// a key in steady use never waits for a synchronous miss. At most one refresh per
    /// hash is claimed at a time.
    pub(crate) refresh: Option<RefreshClaim>,
}

/// The claim on refreshing one hash; released when dropped, however the refresh ends.
pub(crate) struct RefreshClaim {
    cache: Arc<KeyCache>,
    hash: [u8; 33],
}

impl Drop for RefreshClaim {
    fn drop(&mut self) {
        self.cache.refreshing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.hash);
    }
}

/// Background refreshes in flight at once, per cache (a fraction of the default pool of 16).
const MAX_REFRESHES: usize = 2;

/// What one thread's remembered hits (see [`KeyCache::recent`]) may keep alive, in records'
/// bytes as [`VerifiableKey::footprint`] counts them: at most this much beyond the cache's
/// own memory bound, for records moka has already let go of. When a new hit would pass
/// it, the thread forgets them all and starts again.
const RECENT_BYTES: usize = 8 << 20;

struct Recent {
    /// The cache's eviction count when the hit was read: any eviction since voids it.
    evictions: u64,
    /// The cache's age, in whole seconds, when moka answered: the hit stands for the rest
    /// of that second only. So moka still sees every key in use at least once a second
    /// per thread (its frequency sketch decides what stays under memory pressure), and a
    /// hit never outlives the point where its entry comes due for a refresh.
    read: u32,
    key: Arc<VerifiableKey>,
}

impl Recent {
    /// What remembering `key` holds: its record and the map's slot.
    fn weight(key: &VerifiableKey) -> usize {
        key.footprint() + size_of::<((u64, [u8; 33]), Self)>()
    }
}

#[derive(Default)]
struct RecentHits {
    /// By cache (several may live in one process: one per store) and hash.
    hits: std::collections::HashMap<(u64, [u8; 33]), Recent>,
    /// The footprints of the records in `hits`.
    bytes: usize,
}

thread_local! {
    static RECENT: std::cell::RefCell<RecentHits> = std::cell::RefCell::default();
}

static NEXT_CACHE_ID: AtomicU64 = AtomicU64::new(0);

/// Keys by hash.
pub(crate) struct KeyCache {
    /// Tells this cache's remembered hits from another's.
    id: u64,
    entries: Cache<[u8; 33], Cached>,
    /// The origin of `Cached::loaded`.
    born: Instant,
    /// An entry in use this long after its load is reloaded in the background.
    refresh_after: Duration,
    /// Hashes being refreshed (a lock held for one set operation, never across an await).
    refreshing: std::sync::Mutex<std::collections::HashSet<[u8; 33]>>,
    /// Seconds added to every age, so tests move time instead of sleeping.
    #[cfg(test)]
    skew_seconds: std::sync::atomic::AtomicU32,
    /// Loads from the database (misses that reached storage), for tests and metrics.
    pub(crate) loads: AtomicU64,
    /// Lookups the cache answered, and lookups it did not (several concurrent misses of one
    /// hash share one load), for metrics.
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    /// Entries moka let go of for room or age (not the invalidations of changed keys).
    pub(crate) evicted: Arc<AtomicU64>,
    /// Counts evictions and flushes. A load that read its row before a change committed
    /// can finish after the change's eviction; its loader sees this move and evicts what it
    /// just cached, or a revoked key would stay valid here until the TTL.
    pub(crate) evictions: AtomicU64,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache").field("entries", &self.entries.entry_count()).finish()
    }
}

impl KeyCache {
    pub(crate) fn new(config: CacheConfig) -> Self {
        // One capacity, in bytes, bounds both: an entry weighs what it holds but never less
        // than an even share of the bytes, so no more than about `max_entries` fit.
        let floor = u32::try_from(config.max_bytes / config.max_entries.max(1)).unwrap_or(u32::MAX).max(1);
        let evicted = Arc::new(AtomicU64::new(0));
        let counted = evicted.clone();
        let entries = Cache::builder()
            .eviction_listener(move |_, _, cause| {
                if matches!(cause, moka::notification::RemovalCause::Size | moka::notification::RemovalCause::Expired) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .max_capacity(config.max_bytes)
            .weigher(move |_: &[u8; 33], cached: &Cached| cached.weight().max(floor))
            .expire_after(TtlByKind { ttl: config.ttl, negative_ttl: config.negative_ttl })
            .build();
        Self {
            id: NEXT_CACHE_ID.fetch_add(1, Ordering::Relaxed),
            entries,
            born: Instant::now(),
            refresh_after: config.ttl / 2,
            refreshing: std::sync::Mutex::default(),
            #[cfg(test)]
            skew_seconds: std::sync::atomic::AtomicU32::new(0),
            loads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evicted,
            evictions: AtomicU64::new(0),
        }
    }

    fn age_seconds(&self) -> u32 {
        let age = u32::try_from(self.born.elapsed().as_secs()).unwrap_or(u32::MAX);
        #[cfg(test)]
        let age = age.saturating_add(self.skew_seconds.load(Ordering::Relaxed));
        age
    }

    /// The entry for `hash`, loading it with `load` on a miss. Concurrent misses for one
    /// hash share a single load. Errors are not cached.
    pub(crate) async fn get_or_load<F, E>(self: &Arc<Self>, hash: [u8; 33], load: F) -> Result<Found, Arc<E>>
    where
        F: Future<Output = Result<Option<VerifiableKey>, E>>,
        E: Send + Sync + 'static,
    {
        let evictions_before = self.evictions.load(Ordering::Acquire);
        if let Some(key) = self.recent(&hash, evictions_before) {
            return Ok(Found { entry: Some(key), refresh: None });
        }
        // Set only when this call ran the load: the evictions counted before its query.
        // (An atomic, not a `Cell`: the future must be `Send`.)
        const NOT_LOADED: u64 = u64::MAX;
        let loaded_after = AtomicU64::new(NOT_LOADED);
        let cached = self
            .entries
            .try_get_with(hash, async {
                loaded_after.store(self.evictions.load(Ordering::Acquire), Ordering::Relaxed);
                self.loads.fetch_add(1, Ordering::Relaxed);
                let loaded = self.age_seconds();
                load.await.map(|found| Cached { entry: found.map(Arc::new), loaded })
            })
            .await?;
        // Checked after moka inserted the entry. An eviction counts itself before it
        // invalidates: either it came after the insert and removed the entry, or it counted
        // before this check. (Any eviction meanwhile, of any key, makes this load not stick:
        // at worst one more miss.)
        let seen = loaded_after.load(Ordering::Relaxed);
        if seen != NOT_LOADED && seen != self.evictions.load(Ordering::Acquire) {
            self.entries.invalidate(&hash).await;
        }
        Ok(self.found(hash, evictions_before, cached))
    }

    /// The entry for `hash` if the cache holds one (a negative one included); `None` is a
    /// miss, for [`KeyCache::get_or_load`]. Its future is a few hundred bytes where
    /// `get_or_load`'s holds the load's (a diesel query, ~12 KiB), which every hit would
    /// otherwise build and move through each caller's future.
    pub(crate) async fn get(self: &Arc<Self>, hash: [u8; 33]) -> Option<Found> {
        let evictions_before = self.evictions.load(Ordering::Acquire);
        if let Some(key) = self.recent(&hash, evictions_before) {
            return Some(Found { entry: Some(key), refresh: None });
        }
        let cached = self.entries.get(&hash).await?;
        Some(self.found(hash, evictions_before, cached))
    }

    /// What a lookup hands out: the entry, a refresh claim when it is due for one, and —
    /// when it is not — a remembered hit for this thread's next lookups of it.
    fn found(self: &Arc<Self>, hash: [u8; 33], evictions_before: u64, cached: Cached) -> Found {
        let age = self.age_seconds();
        let due =
            cached.entry.is_some() && u64::from(age.saturating_sub(cached.loaded)) >= self.refresh_after.as_secs();
        let refresh = due.then(|| self.claim_refresh(hash)).flatten();
        if let (Some(key), false) = (&cached.entry, due) {
            self.remember(hash, evictions_before, age, key);
        }
        Found { entry: cached.entry, refresh }
    }

    /// A hit this thread read from moka in the current second, if nothing was evicted
    /// since: the caller's own account key, presented on every verification, and the keys
    /// in steady use cost no moka lookup (hashing, a probe, the bookkeeping of a read and
    /// its share of housekeeping) more than once a second. Only hits are remembered: a key
    /// that was not found is asked of moka every time, so it cannot fill the map.
    fn recent(&self, hash: &[u8; 33], evictions_now: u64) -> Option<Arc<VerifiableKey>> {
        RECENT.with(|recent| {
            let recent = recent.borrow();
            let hit = recent.hits.get(&(self.id, *hash))?;
            (hit.evictions == evictions_now && hit.read == self.age_seconds()).then(|| hit.key.clone())
        })
    }

    fn remember(&self, hash: [u8; 33], evictions: u64, read: u32, key: &Arc<VerifiableKey>) {
        let weight = Recent::weight(key);
        RECENT.with(|recent| {
            let recent = &mut *recent.borrow_mut();
            if recent.bytes + weight > RECENT_BYTES {
                recent.hits.clear();
                recent.bytes = 0;
            }
            let replaced = recent.hits.insert((self.id, hash), Recent { evictions, read, key: key.clone() });
            recent.bytes += weight;
            recent.bytes -= replaced.map_or(0, |r| Recent::weight(&r.key));
        });
    }

    fn claim_refresh(self: &Arc<Self>, hash: [u8; 33]) -> Option<RefreshClaim> {
        let mut refreshing = self.refreshing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A few at a time: when thousands of entries come due together (loaded together,
        // say by a warm-up), unbounded refreshes took every pooled connection and the
        // misses queued behind them for seconds. An entry not refreshed now is on its next
        // hit, or expires and is loaded as a miss.
        let claimed = refreshing.len() < MAX_REFRESHES && refreshing.insert(hash);
        drop(refreshing);
        claimed.then(|| RefreshClaim { cache: self.clone(), hash })
    }

    /// Reloads a claimed entry in place (the old one keeps answering meanwhile). As for a
    /// miss, a change evicted during the load is not undone; a failed load leaves the entry
    /// to its TTL.
    pub(crate) async fn refresh<E>(claim: RefreshClaim, load: impl Future<Output = Result<Option<VerifiableKey>, E>>) {
        let cache = &claim.cache;
        let seen = cache.evictions.load(Ordering::Acquire);
        let loaded = cache.age_seconds();
        cache.loads.fetch_add(1, Ordering::Relaxed);
        if let Ok(found) = load.await {
            cache.entries.insert(claim.hash, Cached { entry: found.map(Arc::new), loaded }).await;
            if cache.evictions.load(Ordering::Acquire) != seen {
                cache.entries.invalidate(&claim.hash).await;
            }
        }
    }

    pub(crate) async fn evict(&self, hash: &[u8; 33]) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate(hash).await;
    }

    pub(crate) fn flush(&self) {
        self.evictions.fetch_add(1, Ordering::AcqRel);
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

    fn key() -> VerifiableKey {
        let key = keyward_domain::conformance::sample_key(time::OffsetDateTime::UNIX_EPOCH);
        VerifiableKey::new(key, keyward_domain::keyspace::IpPolicy::Open)
    }

    async fn fill(cache: &Arc<KeyCache>, count: u8, make: impl Fn() -> VerifiableKey) -> u64 {
        for i in 0..count {
            let record = make();
            cache.get_or_load([i; 33], async { Ok::<_, ()>(Some(record)) }).await.unwrap();
        }
        cache.entries.run_pending_tasks().await;
        cache.entries.entry_count()
    }

    /// Both bounds hold: ordinary records stop at `max_entries`, and records with large
    /// metadata stop at `max_bytes` long before.
    #[tokio::test]
    async fn the_cache_is_bounded_by_entries_and_by_memory() {
        let by_entries = Arc::new(KeyCache::new(CacheConfig { max_entries: 50, ..CacheConfig::default() }));
        let kept = fill(&by_entries, 200, key).await;
        assert!((40..=50).contains(&kept), "{kept} entries kept of 200, at most 50");

        let big = || {
            let mut record = keyward_domain::conformance::sample_key(time::OffsetDateTime::UNIX_EPOCH);
            record.metadata.insert("blob".into(), serde_json::Value::String("x".repeat(8_000)));
            VerifiableKey::new(record, keyward_domain::keyspace::IpPolicy::Open)
        };
        assert!(big().footprint() > 8_000);
        let by_memory =
            Arc::new(KeyCache::new(CacheConfig { max_entries: 1_000, max_bytes: 100_000, ..CacheConfig::default() }));
        let kept = fill(&by_memory, 200, big).await;
        assert!((1..=12).contains(&kept), "{kept} entries of over 8 KB kept in 100 KB");
    }

    /// A revocation whose eviction lands while a miss is still loading the row as it was
    /// before: the loaded (stale) record must not stay cached until the TTL.
    #[tokio::test]
    async fn an_eviction_during_a_load_is_not_undone_by_it() {
        let cache = Arc::new(KeyCache::new(CacheConfig::default()));
        let hash = [7u8; 33];
        let stale = cache
            .get_or_load(hash, async {
                // The change commits and its notification evicts, mid-load.
                cache.evict(&hash).await;
                Ok::<_, ()>(Some(key()))
            })
            .await
            .unwrap()
            .entry;
        assert!(stale.is_some(), "the racing request itself gets what was read");
        let reloaded = cache.get_or_load(hash, async { Ok::<_, ()>(None) }).await.unwrap().entry;
        assert!(reloaded.is_none(), "the next lookup loads again and sees the change");
        assert_eq!(cache.loads.load(Ordering::Relaxed), 2);

        // Without an eviction meanwhile, a load sticks.
        let hits = cache.get_or_load(hash, async { Ok::<_, ()>(Some(key())) }).await.unwrap().entry;
        assert!(hits.is_none(), "the cached miss is served");
        assert_eq!(cache.loads.load(Ordering::Relaxed), 2);
    }

    /// A hit remembered by the thread is served until anything is evicted, and only by the
    /// cache that read it.
    #[tokio::test]
    async fn remembered_hits_end_with_an_eviction() {
        let (cache, other) =
            (Arc::new(KeyCache::new(CacheConfig::default())), Arc::new(KeyCache::new(CacheConfig::default())));
        let hash = [5u8; 33];
        for _ in 0..3 {
            let found = cache.get_or_load(hash, async { Ok::<_, ()>(Some(key())) }).await.unwrap();
            assert!(found.entry.is_some());
        }
        assert_eq!(cache.loads.load(Ordering::Relaxed), 1);
        let elsewhere = other.get_or_load(hash, async { Ok::<_, ()>(None) }).await.unwrap();
        assert!(elsewhere.entry.is_none(), "another cache does not see this one's hits");

        // The caller's key, looked up between the keys it verifies, stays remembered however
        // many others pass through (a miss of the remembered hit would show as a load once
        // the cache forgets it).
        for i in 0..20u8 {
            cache.get_or_load([200 - i; 33], async { Ok::<_, ()>(Some(key())) }).await.unwrap();
            assert!(cache.recent(&hash, cache.evictions.load(Ordering::Acquire)).is_some(), "after {i} others");
        }

        // Revoked: the eviction ends the remembered hit at once.
        cache.evict(&[6u8; 33]).await;
        cache.evict(&hash).await;
        let after = cache.get_or_load(hash, async { Ok::<_, ()>(None) }).await.unwrap();
        assert!(after.entry.is_none(), "the change is seen");
        assert_eq!(cache.loads.load(Ordering::Relaxed), 2 + 20);
    }

    /// A remembered hit stands for the second moka answered it in, so moka keeps seeing
    /// the keys in use; keys not found are never remembered.
    #[tokio::test]
    async fn remembered_hits_last_one_second_and_only_hits_are_remembered() {
        let cache = Arc::new(KeyCache::new(CacheConfig::default()));
        let (hash, unknown) = ([11u8; 33], [12u8; 33]);
        let evictions = || cache.evictions.load(Ordering::Acquire);
        cache.get_or_load(hash, async { Ok::<_, ()>(Some(key())) }).await.unwrap();
        assert!(cache.recent(&hash, evictions()).is_some(), "remembered in the second it was read");
        cache.skew_seconds.store(1, Ordering::Relaxed);
        assert!(cache.recent(&hash, evictions()).is_none(), "the next second asks moka again");
        let found = cache.get(hash).await.expect("still cached");
        assert!(found.entry.is_some() && found.refresh.is_none());
        assert!(cache.recent(&hash, evictions()).is_some(), "and remembers it for that second");
        assert_eq!(cache.loads.load(Ordering::Relaxed), 1, "moka answered: no load");

        let remembered = || RECENT.with(|r| r.borrow().hits.len());
        let before = remembered();
        for _ in 0..3 {
            assert!(cache.get_or_load(unknown, async { Ok::<_, ()>(None) }).await.unwrap().entry.is_none());
        }
        assert_eq!(remembered(), before, "a key not found is not remembered");
    }

    /// However many keys a thread verifies, its remembered hits keep at most
    /// `RECENT_BYTES` of records alive, and the hits it still holds are served.
    #[tokio::test]
    async fn remembered_hits_are_bounded_in_bytes() {
        let big = || {
            let mut record = keyward_domain::conformance::sample_key(time::OffsetDateTime::UNIX_EPOCH);
            record.metadata.insert("blob".into(), serde_json::Value::String("x".repeat(4_000)));
            VerifiableKey::new(record, keyward_domain::keyspace::IpPolicy::Open)
        };
        let per_key = Recent::weight(&big());
        let count = RECENT_BYTES / per_key * 3 / 2;
        let cache = Arc::new(KeyCache::new(CacheConfig::default()));
        let mut most = 0;
        for i in 0..count {
            let hash: [u8; 33] = std::array::from_fn(|b| (i >> (8 * (b % 4))) as u8);
            cache.get_or_load(hash, async { Ok::<_, ()>(Some(big())) }).await.unwrap();
            let (bytes, held) = RECENT.with(|r| (r.borrow().bytes, r.borrow().hits.len()));
            assert!(bytes <= RECENT_BYTES, "{bytes} bytes remembered after {i} keys");
            assert_eq!(bytes, held * per_key, "the count matches what is held");
            most = most.max(held);
        }
        assert!(most >= RECENT_BYTES / per_key - 1, "the budget is used before starting again: {most}");
        assert!(most < count, "{count} keys did not all stay remembered");
        let last: [u8; 33] = std::array::from_fn(|b| ((count - 1) >> (8 * (b % 4))) as u8);
        assert!(cache.recent(&last, cache.evictions.load(Ordering::Acquire)).is_some());
    }

    /// An entry in use past half its TTL is reloaded in the background, once at a time,
    /// and the reload replaces it without a miss.
    #[tokio::test]
    async fn entries_in_use_are_refreshed_ahead_of_expiry() {
        let cache = Arc::new(KeyCache::new(CacheConfig::default()));
        let hash = [9u8; 33];
        let first = cache.get_or_load(hash, async { Ok::<_, ()>(Some(key())) }).await.unwrap();
        assert_eq!(first.entry.as_deref().map(|k| &*k.name), Some("k"));
        cache.skew_seconds.store(14, Ordering::Relaxed);
        let early = cache.get_or_load(hash, async { Ok::<_, ()>(None) }).await.unwrap();
        assert!(early.entry.is_some() && early.refresh.is_none(), "before half the TTL (15 s), nothing to do");
        // Past half the TTL; moka's own clock, which expires entries, has not moved.
        cache.skew_seconds.store(16, Ordering::Relaxed);
        let due = cache.get_or_load(hash, async { Ok::<_, ()>(None) }).await.unwrap();
        assert!(due.entry.is_some(), "answered from the entry, not a miss");
        let claim = due.refresh.expect("a refresh is due");
        let meanwhile = cache.get_or_load(hash, async { Ok::<_, ()>(None) }).await.unwrap();
        assert!(meanwhile.refresh.is_none(), "one refresh of a key at a time");
        // Other keys due meanwhile: a bounded number refresh at once.
        let mut others = Vec::new();
        for i in 0..10u8 {
            let other = [100 + i; 33];
            cache.get_or_load(other, async { Ok::<_, ()>(Some(key())) }).await.unwrap();
        }
        cache.skew_seconds.store(32, Ordering::Relaxed);
        for i in 0..10u8 {
            others.extend(cache.get_or_load([100 + i; 33], async { Ok::<_, ()>(None) }).await.unwrap().refresh);
        }
        assert_eq!(others.len(), MAX_REFRESHES - 1, "with the first key's claim, {MAX_REFRESHES} in flight");
        drop(others);

        let mut renamed = key();
        renamed.name = "renamed".into();
        KeyCache::refresh(claim, async { Ok::<_, ()>(Some(renamed)) }).await;
        let after = cache.get_or_load(hash, async { Ok::<_, ()>(None) }).await.unwrap();
        assert_eq!(after.entry.as_deref().map(|k| &*k.name), Some("renamed"), "the reload replaced the entry");
        assert!(after.refresh.is_none(), "a fresh entry is not due");
        assert_eq!(cache.loads.load(Ordering::Relaxed), 1 + 10 + 1, "a load per key, one refresh, no miss");
    }

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
