//! Small objects' bytes kept in memory, by key.
//!
//! A key names bytes written once and never changed (a new write gets a new key, see
//! `bytes`), so a copy can never go stale: no invalidation is needed, and a reader still gets
//! exactly the bytes of the row it read under its policies. What the cache saves is the store's
//! work on every read of a hot small object (the file's open, stat, read and close on the local
//! disk; a second transaction on the postgres store; a request on an S3 store), which for a
//! 1 KiB object costs about as much server CPU as everything else the request does but its
//! database round trip.
//!
//! Bounded by bytes (`--small-object-cache`), holding only objects up to [`MAX_OBJECT`];
//! quick_cache's eviction keeps the frequently read ones when a scan passes through.

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

/// Largest object kept: what a small read is (the local-disk store reads up to this in one go
/// on the runtime's thread, too).
pub const MAX_OBJECT: u64 = 64 * 1024;

/// What an entry costs besides its bytes (its key and the cache's bookkeeping), roughly.
const ENTRY_OVERHEAD: u64 = 128;

pub struct SmallObjects {
    cache: Cache<String, Bytes, ByWeight>,
}

#[derive(Clone)]
struct ByWeight;

impl Weighter<String, Bytes> for ByWeight {
    fn weight(&self, key: &String, bytes: &Bytes) -> u64 {
        bytes.len() as u64 + key.len() as u64 + ENTRY_OVERHEAD
    }
}

impl SmallObjects {
    /// A cache of at most `budget` bytes.
    pub fn new(budget: u64) -> Self {
        // quick_cache sizes its tables from an estimate of the entry count: assume 4 KiB each.
        let estimated = (budget / 4096).clamp(64, 1 << 20) as usize;
        Self {
            cache: Cache::with_weighter(estimated, budget, ByWeight),
        }
    }

    /// Whether an object of `size` bytes is kept.
    pub fn holds(&self, size: u64) -> bool {
        size <= MAX_OBJECT
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.cache.get(key)
    }

    /// Keeps `bytes`, which should own their allocation (a slice of a larger buffer would
    /// keep all of it): the read path builds them at exactly the object's size.
    pub fn insert(&self, key: &str, bytes: Bytes) {
        self.cache.insert(key.to_owned(), bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_fits_in_its_budget() {
        let cache = SmallObjects::new(64 * 1024);
        assert!(cache.holds(MAX_OBJECT));
        assert!(!cache.holds(MAX_OBJECT + 1));
        for n in 0..100 {
            cache.insert(&format!("k{n}"), Bytes::from(vec![n as u8; 4096]));
        }
        let kept: Vec<_> = (0..100)
            .filter_map(|n| cache.get(&format!("k{n}")))
            .collect();
        assert!(!kept.is_empty() && kept.len() <= 16, "kept {}", kept.len());
        assert!(kept.iter().all(|b| b.len() == 4096));
    }
}
