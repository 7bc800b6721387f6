//! What this process last wrote to each Secret: its resourceVersion, and for an output Secret
//! what it holds.
//!
//! Two things follow from it. The Secret watch can tell our own writes from anyone else's, so a
//! rotation's writes to the credentials and output Secrets do not wake a second, read-only
//! reconcile. And a reconcile need not read the output Secret back: as long as the watch has
//! shown no other version of it, it is what our last write's answer said. Writes made on that
//! knowledge carry its resourceVersion as a precondition, so a watch event still on its way can
//! only cost a conflict and a read, never a lost edit.
//!
//! Only writes made on a version we had read (a resourceVersion precondition, or a create) are
//! recorded: then every version older than the one written was built on, and the watch showing
//! it late is no news. A write without precondition is left for the watch to report.
//!
//! Kept small on purpose (a few dozen bytes per Secret): no object, no token, only a
//! fingerprint of the published token. The key is a hash of namespace and name; two Secrets
//! colliding on 64 bits would at worst make a write meet its precondition and fall back to a read.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
};

/// What an output Secret holds after our write, enough to write it again without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputFacts {
    /// Fingerprint of the token under the SlackToken's key (see [`token_fingerprint`]).
    pub token: u64,
    /// Hash of everything else we put there that the spec decides (owner, key, template); see
    /// [`output_shape`]. A SlackToken whose shape differs needs the full write.
    pub shape: u64,
    /// Whether the restart-pending mark is on it.
    pub restart_pending: bool,
}

/// An output Secret as our last write left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownOutput {
    pub resource_version: String,
    pub facts: OutputFacts,
}

struct Written {
    resource_version: Box<str>,
    output: Option<OutputFacts>,
}

#[derive(Default)]
pub struct OwnWrites(Mutex<HashMap<u64, Written>>);

/// What a watch event of a Secret means, given what we wrote (see [`OwnWrites::seen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Our own write, or an older version than it: nothing new.
    Ours,
    /// Someone else's change (or a Secret we never wrote).
    Theirs,
}

/// Whether a watched version is one we know: the one we wrote, or (where both are the integers
/// etcd hands out) an older one that our write already built on. Anything else is news.
pub fn classify(written: Option<&str>, seen: &str) -> Seen {
    let Some(written) = written else { return Seen::Theirs };
    if written == seen {
        return Seen::Ours;
    }
    match (written.parse::<u64>(), seen.parse::<u64>()) {
        (Ok(w), Ok(s)) if s < w => Seen::Ours,
        _ => Seen::Theirs,
    }
}

fn key(namespace: &str, name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (namespace, name).hash(&mut h);
    h.finish()
}

/// A fingerprint of a token, only to tell whether the output Secret already holds it. Never
/// leaves this process.
pub fn token_fingerprint(token: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    token.hash(&mut h);
    h.finish()
}

impl OwnWrites {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Written>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records our write of a Secret (not an output Secret), as the API server answered it.
    pub fn wrote(&self, saved: &Secret) {
        self.record(saved, None);
    }

    /// Records our write of an output Secret and what it now holds.
    pub fn wrote_output(&self, saved: &Secret, facts: OutputFacts) {
        self.record(saved, Some(facts));
    }

    fn record(&self, saved: &Secret, output: Option<OutputFacts>) {
        let (Some(namespace), Some(rv)) = (saved.namespace(), saved.resource_version()) else { return };
        let written = Written { resource_version: rv.into_boxed_str(), output };
        self.map().insert(key(&namespace, &saved.name_any()), written);
    }

    /// The output Secret `namespace/name` as our last write left it, if the watch has shown no
    /// other version since.
    pub fn output(&self, namespace: &str, name: &str) -> Option<KnownOutput> {
        let map = self.map();
        let written = map.get(&key(namespace, name))?;
        Some(KnownOutput { resource_version: written.resource_version.to_string(), facts: written.output? })
    }

    /// What [`OwnWrites::seen`] would say, without forgetting anything.
    pub fn peek(&self, namespace: &str, name: &str, resource_version: Option<&str>) -> Seen {
        let map = self.map();
        let written = map.get(&key(namespace, name)).map(|w| &*w.resource_version);
        resource_version.map_or(Seen::Theirs, |rv| classify(written, rv))
    }

    /// The watch shows version `resource_version` of Secret `namespace/name`. Someone else's
    /// version makes us forget what we knew of it (the next reconcile reads it).
    pub fn seen(&self, namespace: &str, name: &str, resource_version: Option<&str>) -> Seen {
        let mut map = self.map();
        let k = key(namespace, name);
        let written = map.get(&k).map(|w| &*w.resource_version);
        let seen = resource_version.map_or(Seen::Theirs, |rv| classify(written, rv));
        if seen == Seen::Theirs {
            map.remove(&k);
        }
        seen
    }

    /// The Secret is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.map().remove(&key(namespace, name));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map().len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    #[test]
    fn a_watched_version_is_ours_when_we_wrote_it_or_wrote_over_it() {
        // (what we wrote last, what the watch shows, meaning)
        let table = [
            (None, "7", Seen::Theirs),
            (Some("7"), "7", Seen::Ours),
            (Some("7"), "5", Seen::Ours),
            (Some("7"), "8", Seen::Theirs),
            (Some("abc"), "abc", Seen::Ours),
            (Some("abc"), "abd", Seen::Theirs),
            (Some("7"), "x", Seen::Theirs),
        ];
        for (written, seen, expected) in table {
            assert_eq!(classify(written, seen), expected, "{written:?} {seen:?}");
        }
    }

    #[test]
    fn someone_elses_version_forgets_what_we_knew() {
        let own = OwnWrites::default();
        let saved = Secret {
            metadata: ObjectMeta {
                name: Some("bot-token".into()),
                namespace: Some("ns".into()),
                resource_version: Some("10".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let facts = OutputFacts { token: 1, shape: 2, restart_pending: false };
        own.wrote_output(&saved, facts);
        assert_eq!(own.seen("ns", "bot-token", Some("10")), Seen::Ours);
        assert_eq!(own.output("ns", "bot-token"), Some(KnownOutput { resource_version: "10".into(), facts }));
        assert_eq!(own.seen("ns", "bot-token", Some("11")), Seen::Theirs);
        assert_eq!(own.output("ns", "bot-token"), None, "forgotten: the next reconcile reads it");
        assert_eq!(own.seen("ns", "bot-token", Some("10")), Seen::Theirs, "nothing known any more");
        own.wrote(&saved);
        assert_eq!(own.output("ns", "bot-token"), None, "a credentials write tells nothing of an output");
        own.forget("ns", "bot-token");
        assert!(own.is_empty());
    }
}
