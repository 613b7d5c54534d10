//! Units of work in memory: each write a unit makes to a table records the entry's value
//! from before (its "before image"), tagged with the unit; a rollback puts those values
//! back, newest first, and a commit forgets them. Writes outside a unit (the usage
//! flusher, the retention purges) record nothing and cost nothing extra.
//!
//! Unlike PostgreSQL, other tasks see a unit's writes before it commits, and a rollback
//! restores the entries it wrote even if another task wrote the same entry meanwhile (in
//! PostgreSQL that writer would have waited for the unit's row lock). The journal's units
//! write few entries and roll back only when the call failed, so both are rare; the
//! memory store is the embedded default, not a database.

use std::{
    collections::{BTreeMap, HashMap},
    hash::Hash,
    sync::atomic::{AtomicU64, Ordering},
};

tokio::task_local! {
    /// The unit of work the current task is in.
    static UNIT: u64;
}

/// Orders before images across tables and units; a savepoint is a value of it.
static SEQ: AtomicU64 = AtomicU64::new(1);
/// Names units.
static NEXT_UNIT: AtomicU64 = AtomicU64::new(1);

/// The unit the current task is in, if any.
pub(crate) fn current_unit() -> Option<u64> {
    UNIT.try_with(|unit| *unit).ok()
}

pub(crate) fn new_unit() -> u64 {
    NEXT_UNIT.fetch_add(1, Ordering::Relaxed)
}

/// A mark to roll back to: every before image recorded after it.
pub(crate) fn savepoint() -> u64 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Runs `work` as unit `unit`: the store's writes it makes are recorded.
pub(crate) async fn scope<F: Future>(unit: u64, work: F) -> F::Output {
    UNIT.scope(unit, work).await
}

/// The map operations a journaled table needs.
pub(crate) trait MapOps: Default {
    type K: Clone;
    type V: Clone;
    fn find(&self, key: &Self::K) -> Option<&Self::V>;
    fn find_mut(&mut self, key: &Self::K) -> Option<&mut Self::V>;
    fn put(&mut self, key: Self::K, value: Self::V) -> Option<Self::V>;
    fn take(&mut self, key: &Self::K) -> Option<Self::V>;
    fn keys_where(&self, keep: impl FnMut(&Self::K, &Self::V) -> bool) -> Vec<Self::K>;
}

/// `MapOps` for a std map: the two maps spell these operations alike.
macro_rules! map_ops {
    ($map:ident, $($bound:tt)+) => {
        impl<K: $($bound)+ + Clone, V: Clone> MapOps for $map<K, V> {
            type K = K;
            type V = V;
            fn find(&self, key: &K) -> Option<&V> {
                self.get(key)
            }
            fn find_mut(&mut self, key: &K) -> Option<&mut V> {
                self.get_mut(key)
            }
            fn put(&mut self, key: K, value: V) -> Option<V> {
                self.insert(key, value)
            }
            fn take(&mut self, key: &K) -> Option<V> {
                self.remove(key)
            }
            fn keys_where(&self, mut keep: impl FnMut(&K, &V) -> bool) -> Vec<K> {
                self.iter().filter(|(k, v)| !keep(k, v)).map(|(k, _)| k.clone()).collect()
            }
        }
    };
}

map_ops!(HashMap, Hash + Eq);
map_ops!(BTreeMap, Ord);

/// A before image: which unit, when, which entry, and its value before (`None`: absent).
struct Image<K, V> {
    unit: u64,
    seq: u64,
    key: K,
    before: Option<V>,
}

/// A table whose writes inside a unit of work can be undone. Reads go to the map
/// (`Deref`); writes go through the methods below, which have the map's names and
/// meaning, so the stores' code reads as it would over a plain map.
pub(crate) struct Journaled<M: MapOps> {
    map: M,
    images: Vec<Image<M::K, M::V>>,
}

impl<M: MapOps> Default for Journaled<M> {
    fn default() -> Self {
        Self { map: M::default(), images: Vec::new() }
    }
}

impl<M: MapOps + std::fmt::Debug> std::fmt::Debug for Journaled<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journaled").field("map", &self.map).field("pending_images", &self.images.len()).finish()
    }
}

impl<M: MapOps> std::ops::Deref for Journaled<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.map
    }
}

impl<M: MapOps> Journaled<M> {
    fn remember(&mut self, key: &M::K) {
        if let Some(unit) = current_unit() {
            let before = self.map.find(key).cloned();
            self.images.push(Image { unit, seq: SEQ.fetch_add(1, Ordering::Relaxed), key: key.clone(), before });
        }
    }

    pub(crate) fn insert(&mut self, key: M::K, value: M::V) -> Option<M::V> {
        self.remember(&key);
        self.map.put(key, value)
    }

    pub(crate) fn remove(&mut self, key: &M::K) -> Option<M::V> {
        if self.map.find(key).is_some() {
            self.remember(key);
        }
        self.map.take(key)
    }

    pub(crate) fn get_mut(&mut self, key: &M::K) -> Option<&mut M::V> {
        if self.map.find(key).is_some() {
            self.remember(key);
        }
        self.map.find_mut(key)
    }

    pub(crate) fn retain(&mut self, keep: impl FnMut(&M::K, &M::V) -> bool) {
        for key in self.map.keys_where(keep) {
            self.remove(&key);
        }
    }

    /// Puts back what `unit` wrote after `since`, newest first, and forgets it.
    pub(crate) fn undo(&mut self, unit: u64, since: u64) {
        let mut kept = Vec::with_capacity(self.images.len());
        let mut undone = Vec::new();
        for image in self.images.drain(..) {
            if image.unit == unit && image.seq > since { undone.push(image) } else { kept.push(image) }
        }
        self.images = kept;
        for image in undone.into_iter().rev() {
            match image.before {
                Some(value) => self.map.put(image.key, value),
                None => self.map.take(&image.key),
            };
        }
    }

    /// Forgets what `unit` wrote: it committed.
    pub(crate) fn forget(&mut self, unit: u64) {
        self.images.retain(|image| image.unit != unit);
    }
}
