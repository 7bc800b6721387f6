//! Object storage with one global, monotonically increasing resourceVersion (like etcd's
//! revision), a bounded event history for watch resumption and exact-RV lists, and the
//! fan-out of committed events to open watches.

use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How many events are kept for resumption before the oldest are compacted away.
pub const HISTORY_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// (namespace or "" for cluster-scoped, name)
pub type Key = (String, String);

#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub storage: String,
    pub key: Key,
    pub etype: EventType,
    /// The object after the change (for Deleted: the last state, with the deletion's RV).
    pub object: Value,
    /// The object before the change (None for Added).
    pub old: Option<Value>,
}

struct Watcher {
    storage: String,
    tx: mpsc::UnboundedSender<Arc<Event>>,
}

#[derive(Default)]
pub struct Store {
    rv: u64,
    objects: HashMap<String, BTreeMap<Key, Value>>,
    /// uids of every stored object, so ownerReference checks cost O(1), not a scan of the store.
    uids: HashSet<String>,
    history: VecDeque<Arc<Event>>,
    /// Resuming from an RV below this is impossible (410 Gone).
    compacted: u64,
    watchers: HashMap<u64, Watcher>,
    next_watcher: u64,
}

impl Store {
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn compacted_rv(&self) -> u64 {
        self.compacted
    }

    pub fn get(&self, storage: &str, key: &Key) -> Option<&Value> {
        self.objects.get(storage).and_then(|m| m.get(key))
    }

    pub fn objects(&self, storage: &str) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.get(storage).into_iter().flatten()
    }

    /// Whether any stored object has this uid.
    pub fn has_uid(&self, uid: &str) -> bool {
        self.uids.contains(uid)
    }

    pub fn storages(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }

    /// Writes (or removes, for Deleted) an object under a fresh resourceVersion and
    /// notifies watches. Returns the stored object.
    pub fn commit(
        &mut self,
        storage: &str,
        key: Key,
        etype: EventType,
        mut object: Value,
        old: Option<Value>,
    ) -> Value {
        self.rv += 1;
        let rv = self.rv;
        object["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let map = self.objects.entry(storage.to_string()).or_default();
        let uid = object["metadata"]["uid"].as_str().map(str::to_string);
        if etype == EventType::Deleted {
            map.remove(&key);
            if let Some(uid) = uid {
                self.uids.remove(&uid);
            }
        } else {
            map.insert(key.clone(), object.clone());
            if let Some(uid) = uid {
                self.uids.insert(uid);
            }
        }
        let ev =
            Arc::new(Event { rv, storage: storage.to_string(), key, etype, object: object.clone(), old });
        self.history.push_back(ev.clone());
        while self.history.len() > HISTORY_LIMIT {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        self.watchers.retain(|_, w| {
            if w.storage != storage {
                return true;
            }
            w.tx.send(ev.clone()).is_ok()
        });
        object
    }

    /// Forgets all history: resuming from any RV older than the current one gets 410.
    pub fn compact(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// Registers a watch on `storage` and returns the events after `from_rv` still in history.
    /// Caller must have checked `from_rv >= compacted_rv()`.
    pub fn subscribe(
        &mut self,
        storage: &str,
        from_rv: Option<u64>,
    ) -> (u64, Vec<Arc<Event>>, mpsc::UnboundedReceiver<Arc<Event>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        self.next_watcher += 1;
        let id = self.next_watcher;
        self.watchers.insert(id, Watcher { storage: storage.to_string(), tx });
        let replay = match from_rv {
            Some(from) => {
                self.history.iter().filter(|e| e.rv > from && e.storage == storage).cloned().collect()
            }
            None => vec![],
        };
        (id, replay, rx)
    }

    pub fn unsubscribe(&mut self, id: u64) {
        self.watchers.remove(&id);
    }

    /// Drops every watch's channel, which ends their HTTP streams.
    pub fn cut_watches(&mut self) {
        self.watchers.clear();
    }

    /// The objects of `storage` as they were at `rv`, rebuilt by undoing newer events.
    /// Caller must have checked `rv >= compacted_rv()`.
    pub fn snapshot_at(&self, storage: &str, rv: u64) -> BTreeMap<Key, Value> {
        let mut snap = self.objects.get(storage).cloned().unwrap_or_default();
        for ev in self.history.iter().rev() {
            if ev.rv <= rv {
                break;
            }
            if ev.storage != storage {
                continue;
            }
            match (&ev.etype, &ev.old) {
                (EventType::Added, _) => {
                    snap.remove(&ev.key);
                }
                (_, Some(old)) => {
                    snap.insert(ev.key.clone(), old.clone());
                }
                (_, None) => {}
            }
        }
        snap
    }
}
