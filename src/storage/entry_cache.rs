//! A cache of sealed `entries` values for a store that only this process writes (SQLite).
//!
//! Every request reads the same few entries (its token, the role, the connection, the
//! mount's password policy). When SQLite ran on a thread of its own, each read was a round
//! trip to it, and those hops were most of the engine's CPU per credential; with statements
//! on the calling task, a hit still spares a turn at the store's one connection, for which
//! every write queues. Values stay sealed by the barrier in the cache, as in storage, and
//! absent keys are cached too.
//!
//! A read that misses records the write version before going to the database and fills the
//! cache only if no write happened meanwhile, so a slow read never caches a value that a
//! concurrent write has replaced.

use std::collections::HashMap;
use std::sync::Mutex;

/// Entries kept before the cache starts over (values are small sealed blobs).
const CAPACITY: usize = 16_384;

/// The cache; see the module documentation.
#[derive(Debug, Default)]
pub struct EntryCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    values: HashMap<String, Option<Vec<u8>>>,
    version: u64,
}

impl EntryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map is always consistent between statements, so a poisoned lock is usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached value (`Some(None)`: known absent), or the version to pass to
    /// [`EntryCache::fill`] after reading the database.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, u64> {
        let inner = self.lock();
        match inner.values.get(key) {
            Some(value) => Ok(value.clone()),
            None => Err(inner.version),
        }
    }

    /// Caches what the database returned, unless a write happened since `version`.
    pub fn fill(&self, version: u64, key: &str, value: Option<Vec<u8>>) {
        let mut inner = self.lock();
        if inner.version != version {
            return;
        }
        if inner.values.len() >= CAPACITY {
            inner.values.clear();
        }
        inner.values.insert(key.to_owned(), value);
    }

    /// Records a write that reached the database: the new value, or `None` to forget the key.
    pub fn wrote(&self, key: &str, value: Option<Vec<u8>>) {
        let mut inner = self.lock();
        inner.version += 1;
        match value {
            Some(v) if inner.values.len() < CAPACITY => {
                inner.values.insert(key.to_owned(), Some(v));
            }
            _ => {
                inner.values.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_misses_and_writes() {
        let cache = EntryCache::default();
        let v0 = cache.get("a").unwrap_err();
        cache.fill(v0, "a", None);
        assert_eq!(cache.get("a"), Ok(None), "absence is cached");
        cache.wrote("a", Some(b"1".to_vec()));
        assert_eq!(cache.get("a"), Ok(Some(b"1".to_vec())));
        cache.wrote("a", None);
        assert!(cache.get("a").is_err(), "a delete forgets the key");
    }

    #[test]
    fn a_read_overtaken_by_a_write_is_not_cached() {
        let cache = EntryCache::default();
        let version = cache.get("k").unwrap_err();
        // A write lands between the reader's database read and its fill.
        cache.wrote("k", Some(b"new".to_vec()));
        cache.fill(version, "k", Some(b"old".to_vec()));
        assert_eq!(cache.get("k"), Ok(Some(b"new".to_vec())));
        let version = cache.get("other").unwrap_err();
        cache.wrote("k", None);
        cache.fill(version, "other", Some(b"stale?".to_vec()));
        assert!(cache.get("other").is_err());
    }
}
