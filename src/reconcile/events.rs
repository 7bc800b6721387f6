//! Events about SlackTokens (`kubectl describe stk`), written as events.k8s.io/v1.
//!
//! kube-runtime's `Recorder` keeps every Event it wrote in a map for six minutes, keyed without
//! the note, scans the whole map on every publish, and folds a repeat into the first Event's
//! series: ten thousand rotations kept ten thousand Events in memory, and a repeated `Rotated`
//! showed the first note ("expires 10:00") long after it stopped being true. Here a series folds
//! only Events whose note is the same text, so what `describe` shows is always true; and what is
//! remembered for folding is bounded ([`MAX_SERIES`] entries of a few dozen bytes).

use crate::clock::SharedClock;
use jiff::Timestamp;
use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event, events::v1::EventSeries},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    api::{Api, ObjectMeta, Patch, PatchParams, PostParams},
    Client,
};
use serde_json::json;
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

/// How long a repeat of the same Event folds into its series (as kube's client-go does).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// At most this many series are remembered; past it, ones older than the window go, and if
/// that is not enough, all (a repeat then starts a new Event: one write either way).
pub const MAX_SERIES: usize = 1024;

/// One Event to write.
pub struct EventToWrite<'a> {
    pub warning: bool,
    pub reason: &'a str,
    pub note: &'a str,
}

struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    clock: SharedClock,
    series: Mutex<HashMap<u64, Series>>,
    sequence: AtomicU64,
}

/// What to do with an Event, given the series remembered for it.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    /// A new Event object.
    Create,
    /// Count one more in the series of Event `name`.
    Repeat { name: String, count: i32 },
}

fn key(regarding: &ObjectReference, reason: &str, note: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (&regarding.uid, &regarding.namespace, &regarding.name, reason, note).hash(&mut h);
    h.finish()
}

fn within_window(last: Timestamp, now: Timestamp) -> bool {
    now.duration_since(last).as_secs_f64() < SERIES_WINDOW.as_secs_f64()
}

impl Recorder {
    pub fn new(client: Client, controller: &str, instance: Option<String>, clock: SharedClock) -> Self {
        Self {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            clock,
            series: Mutex::default(),
            sequence: AtomicU64::new(0),
        }
    }

    fn series(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Series>> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Series remembered now.
    #[cfg(test)]
    pub fn remembered(&self) -> usize {
        self.series().len()
    }

    fn plan(&self, key: u64, now: Timestamp) -> Write {
        match self.series().get(&key) {
            Some(s) if within_window(s.last, now) => {
                Write::Repeat { name: s.name.clone(), count: s.count + 1 }
            }
            _ => Write::Create,
        }
    }

    fn remember(&self, key: u64, series: Series) {
        let mut map = self.series();
        if map.len() >= MAX_SERIES && !map.contains_key(&key) {
            let now = series.last;
            map.retain(|_, s| within_window(s.last, now));
            if map.len() >= MAX_SERIES {
                map.clear();
            }
        }
        map.insert(key, series);
    }

    /// Writes one Event about `regarding`: a new one, or one more in the series of the same
    /// reason and note.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        event: EventToWrite<'_>,
    ) -> Result<(), kube::Error> {
        let now = self.clock.now();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key = key(regarding, event.reason, event.note);
        if let Write::Repeat { name, count } = self.plan(key, now) {
            let patch = json!({"series": EventSeries { count, last_observed_time: MicroTime(now) }});
            match events.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => {
                    self.remember(key, Series { name, count, last: now });
                    return Ok(());
                }
                // Gone (the API server's event TTL): start a new one.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.{:x}{:04x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond(),
            sequence & 0xffff
        );
        let object = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            action: Some(event.reason.to_owned()),
            reason: Some(event.reason.to_owned()),
            note: Some(event.note.to_owned()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if event.warning { "Warning" } else { "Normal" }.to_owned()),
            ..Default::default()
        };
        events.create(&PostParams::default(), &object).await?;
        self.remember(key, Series { name, count: 1, last: now });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use std::sync::Arc;

    fn recorder() -> Recorder {
        let client = Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        Recorder::new(client, "test", None, Arc::new(TokioClock::starting_at(start)))
    }

    fn series(name: &str, count: i32, at: &str) -> Series {
        Series { name: name.into(), count, last: at.parse().unwrap() }
    }

    #[tokio::test]
    async fn only_the_same_note_within_the_window_folds_into_a_series() {
        let r = recorder();
        let stk = ObjectReference { name: Some("bot".into()), uid: Some("u".into()), ..Default::default() };
        let (rotated_a, rotated_b) =
            (key(&stk, "Rotated", "expires 10:00"), key(&stk, "Rotated", "expires 20:00"));
        assert_ne!(rotated_a, rotated_b, "another note is another Event");
        r.remember(rotated_a, series("bot.1", 1, "2026-01-01T00:00:00Z"));
        let at = |t: &str| t.parse::<Timestamp>().unwrap();
        // (event key, now, write)
        let table = [
            (rotated_a, "2026-01-01T00:05:00Z", Write::Repeat { name: "bot.1".into(), count: 2 }),
            (rotated_a, "2026-01-01T00:06:00Z", Write::Create),
            (rotated_b, "2026-01-01T00:01:00Z", Write::Create),
        ];
        for (key, now, expected) in table {
            assert_eq!(r.plan(key, at(now)), expected, "{now}");
        }
    }

    #[tokio::test]
    async fn what_is_remembered_is_bounded() {
        let r = recorder();
        for i in 0..(3 * MAX_SERIES as u64) {
            r.remember(i, series("e", 1, "2026-01-01T00:00:00Z"));
            assert!(r.remembered() <= MAX_SERIES);
        }
        // Old series make room for new ones first.
        r.remember(u64::MAX, series("e", 1, "2026-01-01T01:00:00Z"));
        assert_eq!(r.remembered(), 1);
    }
}
