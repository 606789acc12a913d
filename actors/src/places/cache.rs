//! The answer cache of the PlacesActor (SPEC §5): a map with one fixed
//! time-to-live and a bound on the number of entries.
//!
//! Because every entry lives exactly `ttl`, insertion order is expiry order:
//! a queue of (key, expiry) in insertion order is enough to drop the expired
//! entries from the front, and, when the cache is full, to evict the entry
//! closest to expiring. A key inserted again leaves its old queue slot
//! behind; that slot is recognised by its expiry time and skipped. The queue
//! is compacted when stale slots pile up, so memory stays proportional to
//! the bound whatever the traffic.
//!
//! The clock is passed in, so the behaviour is tested without sleeping.
//!
//! Kept hand-written rather than `moka`: the actor already serialises access
//! (a concurrent cache buys nothing), moka's `get_with` coalescing would hide
//! whether a request hit, joined one in flight or called upstream (three
//! counters), its eviction is TinyLFU or LRU rather than closest-to-expiry,
//! and its clock cannot be driven by tests.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A bounded cache whose entries expire `ttl` after they were stored.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<K, (V, Instant)>,
    order: VecDeque<(K, Instant)>,
}

impl<K: Hash + Eq + Clone, V> TtlCache<K, V> {
    /// A cache of at most `capacity` entries, each kept for `ttl`. A zero
    /// capacity or a zero ttl makes a cache that keeps nothing.
    pub fn new(ttl: Duration, capacity: usize) -> TtlCache<K, V> {
        TtlCache {
            ttl,
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The live entry for `key` at `now`, if any.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<&V> {
        self.expire(now);
        self.entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(value, _)| value)
    }

    /// Stores `value` for `key` from `now` on, evicting the entry closest to
    /// expiry when full.
    pub fn insert(&mut self, key: K, value: V, now: Instant) {
        if self.capacity == 0 || self.ttl.is_zero() {
            return;
        }
        self.expire(now);
        while self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            if !self.evict_front() {
                break;
            }
        }
        let expires = now + self.ttl;
        self.entries.insert(key.clone(), (value, expires));
        self.order.push_back((key, expires));
        if self.order.len() > 2 * self.capacity.max(16) {
            let entries = &self.entries;
            self.order
                .retain(|(k, at)| entries.get(k).is_some_and(|(_, e)| e == at));
        }
    }

    /// Drops every entry expired at `now`.
    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(_, at)| *at <= now) {
            self.evict_front();
        }
    }

    /// Removes the entry of the oldest queue slot, if that slot is still
    /// its entry's; false when the queue is empty.
    fn evict_front(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        if self.entries.get(&key).is_some_and(|(_, e)| *e == at) {
            self.entries.remove(&key);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn entries_live_exactly_the_ttl() {
        let t0 = Instant::now();
        let mut cache = TtlCache::new(s(30), 10);
        cache.insert("a", 1, t0);
        assert_eq!(cache.get(&"a", t0 + s(29)), Some(&1));
        assert_eq!(cache.get(&"a", t0 + s(30)), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_the_oldest() {
        let t0 = Instant::now();
        let mut cache = TtlCache::new(s(30), 3);
        for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.insert(key, i, t0 + s(i as u64));
        }
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&"a", t0 + s(4)), None);
        assert_eq!(cache.get(&"d", t0 + s(4)), Some(&3));
    }

    #[test]
    fn reinserting_refreshes_and_old_slots_are_skipped() {
        let t0 = Instant::now();
        let mut cache = TtlCache::new(s(10), 2);
        cache.insert("a", 1, t0);
        cache.insert("b", 2, t0 + s(1));
        cache.insert("a", 3, t0 + s(5));
        // The first slot of "a" expires at t0+10 but must not take the new "a".
        assert_eq!(cache.get(&"a", t0 + s(12)), Some(&3));
        assert_eq!(cache.get(&"b", t0 + s(12)), None);
        // Full with "a"; inserting "c" evicts nothing wrongly.
        cache.insert("c", 4, t0 + s(12));
        assert_eq!(cache.get(&"a", t0 + s(12)), Some(&3));
        assert_eq!(cache.get(&"c", t0 + s(12)), Some(&4));
    }

    #[test]
    fn memory_stays_bounded_under_churn_of_one_key() {
        let t0 = Instant::now();
        let mut cache = TtlCache::new(s(1000), 4);
        for i in 0..10_000u64 {
            cache.insert(i % 2, i, t0 + Duration::from_millis(i));
        }
        assert_eq!(cache.len(), 2);
        assert!(cache.order.len() <= 2 * 16 + 1, "{}", cache.order.len());
    }

    #[test]
    fn zero_ttl_or_capacity_keeps_nothing() {
        let t0 = Instant::now();
        let mut none = TtlCache::new(Duration::ZERO, 10);
        none.insert(1, 1, t0);
        assert_eq!(none.get(&1, t0), None);
        let mut none = TtlCache::new(s(1), 0);
        none.insert(1, 1, t0);
        assert_eq!(none.get(&1, t0), None);
    }
}
