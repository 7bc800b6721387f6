//! A map whose entries run out: what the retry holds (`reconcile::backoff`) and Slack's rate
//! limits (`slack::limits`) keep.
//!
//! An entry that has run out reads as absent. Nobody is told when a SlackToken without a
//! finalizer goes, so run-out entries are also dropped, all at once, whenever the map has grown
//! to twice its size after the last such sweep: each insert costs O(1) on average, where a sweep
//! on every insert cost O(n) each (10,000 failing SlackTokens in an outage: 10⁸ comparisons a
//! round), and the map never holds more than twice what is live, plus a few.

use std::{borrow::Borrow, collections::HashMap, hash::Hash, sync::Mutex, time::Duration};
use tokio::time::Instant;

/// Below this size no sweep is worth it.
const MIN_SWEEP: usize = 64;

pub struct Expiring<K, V>(Mutex<Entries<K, V>>);

struct Entries<K, V> {
    map: HashMap<K, (Instant, V)>,
    /// Sweep when the map reaches this size.
    sweep_at: usize,
}

impl<K, V> Default for Expiring<K, V> {
    fn default() -> Self {
        Self(Mutex::new(Entries { map: HashMap::new(), sweep_at: MIN_SWEEP }))
    }
}

impl<K: Eq + Hash, V: Clone> Expiring<K, V> {
    fn entries(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `key` holds `value` until `until`; with `keep_later`, an entry that runs out later stays.
    pub fn insert(&self, key: K, until: Instant, value: V, keep_later: bool) {
        let mut entries = self.entries();
        if entries.map.len() >= entries.sweep_at {
            let now = Instant::now();
            entries.map.retain(|_, (until, _)| *until > now);
            entries.sweep_at = (2 * entries.map.len()).max(MIN_SWEEP);
        }
        match entries.map.get(&key) {
            Some((later, _)) if keep_later && *later > until => {}
            _ => {
                entries.map.insert(key, (until, value));
            }
        }
    }

    /// What `key` holds and for how long still, unless it has run out.
    pub fn get<Q: Eq + Hash + ?Sized>(&self, key: &Q) -> Option<(Duration, V)>
    where
        K: Borrow<Q>,
    {
        let entries = self.entries();
        let (until, value) = entries.map.get(key)?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| (left, value.clone()))
    }

    pub fn remove<Q: Eq + Hash + ?Sized>(&self, key: &Q)
    where
        K: Borrow<Q>,
    {
        self.entries().map.remove(key);
    }

    /// Entries kept, run out or not.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries().map.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn run_out_entries_read_as_absent_and_keep_later_keeps_the_later() {
        let map = Expiring::default();
        let now = Instant::now();
        map.insert("a", now + Duration::from_secs(10), 1, false);
        map.insert("a", now + Duration::from_secs(5), 2, true); // sooner: the later stays
        assert_eq!(map.get(&"a"), Some((Duration::from_secs(10), 1)));
        map.insert("a", now + Duration::from_secs(5), 3, false); // replaced
        assert_eq!(map.get(&"a"), Some((Duration::from_secs(5), 3)));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(map.get(&"a"), None, "run out");
        map.remove(&"a");
        assert!(map.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn run_out_entries_are_swept_so_the_map_stays_within_twice_the_live_ones() {
        let map = Expiring::default();
        // Entries that each live 1 s, one inserted per second: about one is live at a time.
        for i in 0..10_000u32 {
            map.insert(i, Instant::now() + Duration::from_secs(1), (), false);
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(map.len() <= MIN_SWEEP, "{} entries kept after {i} inserts", map.len());
        }
        // And live entries are never swept.
        let live = 1_000;
        for i in 0..live {
            map.insert(100_000 + i, Instant::now() + Duration::from_secs(3600), (), false);
        }
        assert!((live as usize..=2 * live as usize + MIN_SWEEP).contains(&map.len()), "{}", map.len());
        assert!((0..live).all(|i| map.get(&(100_000 + i)).is_some()));
    }
}
