//! Items recently read, kept in memory so that reading one — the catalogue's hottest call, from
//! every app and screen — needs no trip to the database.
//!
//! Consistency: every entry carries the item's version, and a newer version always wins, so a
//! read racing a change can never put an older item back over a newer one. The replica that
//! makes a change stores the new item at once (its readers see it immediately); other replicas
//! drop theirs when the change's event arrives, and no entry is served after `ttl` in any
//! case — so another replica answers at most `ttl` late. Lists, search and watch read the
//! database.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::domain::Item;

#[derive(Debug, Clone)]
enum Entry {
    /// The item at `version`.
    Item(Box<Item>),
    /// Nothing to serve: the item was deleted at this version, or a change to this version
    /// was heard of; only a read of at least `version` may fill the entry.
    Below(i64),
}

impl Entry {
    fn version(&self) -> i64 {
        match self {
            Entry::Item(item) => item.version,
            Entry::Below(version) => *version,
        }
    }
}

/// The cache, shared by the clones of a service.
#[derive(Debug)]
pub(crate) struct ItemCache {
    ttl: Duration,
    /// At most this many entries; past it the cache starts again empty (a street's catalogue is
    /// small).
    max_entries: usize,
    #[expect(clippy::disallowed_types, reason = "short critical sections without .await")]
    entries: std::sync::RwLock<HashMap<String, (Entry, Instant)>>,
}

impl ItemCache {
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        #[expect(clippy::disallowed_types, reason = "short critical sections without .await")]
        let entries = std::sync::RwLock::new(HashMap::new());
        Self { ttl, max_entries, entries }
    }

    /// The item under `name`, if a fresh entry holds it.
    pub(crate) fn get(&self, name: &str) -> Option<Item> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.get(name) {
            Some((Entry::Item(item), at)) if at.elapsed() < self.ttl => Some((**item).clone()),
            _ => None,
        }
    }

    /// Keeps `item` unless a newer version is known.
    pub(crate) fn put(&self, item: &Item) {
        self.offer(item.name.to_string(), Entry::Item(Box::new(item.clone())));
    }

    /// Serves nothing for `name` until an item of at least `version` is read.
    pub(crate) fn invalidate(&self, name: &str, version: i64) {
        self.offer(name.to_owned(), Entry::Below(version));
    }

    fn offer(&self, name: String, entry: Entry) {
        let now = Instant::now();
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= self.max_entries && !entries.contains_key(&name) {
            entries.clear();
        }
        let keep = entries.get(&name).is_some_and(|(current, at)| {
            // A fresh entry of a newer version stays (an older read must not undo a change), and
            // so does an item the marker or offer does not go beyond.
            at.elapsed() < self.ttl
                && (current.version() > entry.version()
                    || (matches!(current, Entry::Item(_)) && current.version() == entry.version()))
        });
        if !keep {
            entries.insert(name, (entry, now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Content, ItemName, ItemState};

    fn item(version: i64) -> Item {
        Item {
            name: ItemName::parse("name", "streets/s/items/i").expect("name"),
            state: ItemState::Published,
            revision: 1,
            version,
            content: Content::from_stored(Default::default()),
            created_at: String::new(),
            updated_at: String::new(),
            publish_time: None,
        }
    }

    #[test]
    fn a_newer_version_always_wins() {
        let cache = ItemCache::new(Duration::from_secs(60), 100);
        cache.put(&item(2));
        cache.put(&item(1));
        assert_eq!(cache.get("streets/s/items/i").map(|i| i.version), Some(2), "a late read of v1 is refused");
        cache.invalidate("streets/s/items/i", 3);
        assert!(cache.get("streets/s/items/i").is_none(), "a change heard of hides v2");
        cache.put(&item(2));
        assert!(cache.get("streets/s/items/i").is_none(), "v2 cannot come back after v3 was heard of");
        cache.put(&item(3));
        assert_eq!(cache.get("streets/s/items/i").map(|i| i.version), Some(3));
    }

    #[test]
    fn entries_expire() {
        let cache = ItemCache::new(Duration::ZERO, 100);
        cache.put(&item(1));
        assert!(cache.get("streets/s/items/i").is_none());
    }
}
