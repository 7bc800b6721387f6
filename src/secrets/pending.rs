//! Token pairs Slack issued that are not yet saved in their credentials Secret.
//!
//! The refresh token such a pair replaces is already spent, so the pair is the only copy: a
//! reconcile that finds one here saves it instead of calling Slack again. Pairs are keyed by the
//! credentials Secret (`namespace/name`), not by the SlackToken, because a pair continues that
//! Secret's refresh-token chain: a SlackToken deleted and created again (by hand, or by a GitOps
//! tool replacing it) while a save is failing must still find the pair, or its next rotation
//! would present a spent token.

use crate::slack::Issued;
use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
pub struct PendingPairs(Mutex<HashMap<String, Issued>>);

impl PendingPairs {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        // A panic elsewhere while holding the lock must not cost us the pairs.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pair waiting for credentials Secret `namespace/name`, if any.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Issued> {
        self.map().get(&key(namespace, name)).cloned()
    }

    pub fn put(&self, namespace: &str, name: &str, issued: Issued) {
        self.map().insert(key(namespace, name), issued);
    }

    /// Forgets the pair once its credentials Secret holds it.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.map().remove(&key(namespace, name));
    }

    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}
