//! Token pairs Slack issued that are not yet saved in their credentials Secret.
//!
//! The refresh token such a pair replaces is already spent, so the pair is the only copy: a
//! reconcile that finds one here saves it instead of calling Slack again. With a [`Journal`] the
//! pair is also on disk, written before any API call that could fail after it (on the blocking
//! pool: fsync is slow), so it outlives the process.
//!
//! Pairs are keyed by the credentials Secret (`namespace/name`), not by the SlackToken, because a
//! pair continues that Secret's refresh-token chain: a SlackToken deleted and created again (by
//! hand, or by a GitOps tool replacing it) while a save is failing must still find the pair, or
//! its next rotation would present a spent token.

use super::journal::{Entry, Journal};
use std::{collections::HashMap, sync::Mutex};
use tracing::error;

#[derive(Default)]
pub struct PendingPairs {
    pairs: Mutex<HashMap<String, Entry>>,
    journal: Option<Journal>,
}

impl PendingPairs {
    pub(crate) fn new(journal: Option<Journal>) -> Self {
        Self { pairs: Mutex::default(), journal }
    }

    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic elsewhere while holding the lock must not cost us the pairs.
        self.pairs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pair waiting for credentials Secret `namespace/name`, if any.
    pub(crate) fn get(&self, namespace: &str, name: &str) -> Option<Entry> {
        self.map().get(&key(namespace, name)).cloned()
    }

    /// Keeps a pair Slack has just issued: here, then on disk (when there is a journal), both
    /// before the caller makes any API call. The write and its fsync run on tokio's blocking
    /// pool, off the workers that drive every other reconcile; the pair is in memory first, so a
    /// reconcile dropped while the write runs still leaves it here (and the write completes). A
    /// journal that cannot be written is reported, and the pair is still kept and saved: the
    /// credentials Secret is the other durable place, and the save is what matters now.
    pub(crate) async fn put(&self, entry: Entry) {
        self.load(entry.clone());
        if let Some(journal) = self.journal.clone() {
            let (namespace, secret) = (entry.namespace.clone(), entry.name.clone());
            let dir = journal.dir().display().to_string();
            if let Err(e) = blocking(move || journal.write(&entry)).await {
                error!(error = %e, journal = %dir, %namespace, %secret,
                    "could not journal a new token pair; it is kept in memory only until saved");
            }
        }
    }

    /// Keeps a pair read back from the journal (already on disk).
    pub(crate) fn load(&self, entry: Entry) {
        self.map().insert(key(&entry.namespace, &entry.name), entry);
    }

    /// Forgets the pair once its credentials Secret holds it (or holds a newer one).
    pub(crate) async fn remove(&self, namespace: &str, name: &str) {
        self.map().remove(&key(namespace, name));
        if let Some(journal) = self.journal.clone() {
            let (ns, secret) = (namespace.to_owned(), name.to_owned());
            if let Err(e) = blocking(move || journal.remove(&ns, &secret)).await {
                // Harmless: at the next start the entry no longer matches the Secret and is dropped.
                error!(error = %e, namespace, secret = name, "could not remove a saved pair from the journal");
            }
        }
    }

    pub fn all(&self) -> Vec<Entry> {
        self.map().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A file operation (with its fsyncs) on tokio's blocking pool.
async fn blocking(op: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> std::io::Result<()> {
    tokio::task::spawn_blocking(op).await.unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}
