//! When each SlackToken wants its next reconcile: one timer for all of them.
//!
//! A reconcile ends knowing when its SlackToken is next due (a rotation, a health check, a retry;
//! one whose result could not be recorded, no later than `reconcile::UNRECORDED_RETRY`).
//! Handed to kube-runtime as `Action::requeue`, that time sat in its scheduler as a
//! `ReconcileRequest` kept twice (a hash map and a delay queue), each with the object's name,
//! namespace, uid and resourceVersion: about 700 bytes per SlackToken, 7 MiB of the heap at 10,000
//! (DHAT, see `docs/src/contributing/benchmarks.md`). Here a SlackToken's alarm is its name once and an instant,
//! and the one task of [`Alarms::run`] asks the controller for the reconcile when it is time,
//! through the same `reconcile_on` that [`super::turns`] uses.
//!
//! The last reconcile's answer replaces the alarm (kube-runtime's scheduler keeps the earlier of
//! two, so a rotation moved later still woke a reconcile at the old time). An alarm that fires
//! for a SlackToken whose reconcile is running is not lost: kube-runtime runs it once more
//! after.

use super::turns::{Key, Turns};
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::Notify, time::Instant};

/// Each SlackToken's next reconcile, earliest first.
#[derive(Default)]
pub struct Alarms {
    state: Mutex<State>,
    /// Told when an alarm comes before all the others.
    sooner: Notify,
}

#[derive(Default)]
struct State {
    at: HashMap<Arc<Key>, Instant>,
    order: BTreeSet<(Instant, Arc<Key>)>,
}

impl State {
    fn remove(&mut self, key: &Key) {
        if let Some((key, at)) = self.at.remove_entry(key) {
            self.order.remove(&(at, key));
        }
    }
}

impl Alarms {
    /// `key` is next reconciled after `after` (replacing its alarm), or, with `None`, only when
    /// something changes.
    pub fn set(&self, key: &Key, after: Option<Duration>) {
        let mut state = lock(&self.state);
        state.remove(key);
        let Some(after) = after else { return };
        let at = Instant::now() + after;
        let key = Arc::new(key.clone());
        state.at.insert(key.clone(), at);
        let first = state.order.first().is_none_or(|(first, _)| at < *first);
        state.order.insert((at, key));
        drop(state);
        if first {
            self.sooner.notify_one();
        }
    }

    /// `key` is next reconciled after `after` at the latest: an earlier alarm stays.
    pub fn no_later_than(&self, key: &Key, after: Duration) {
        let earlier = lock(&self.state).at.get(key).is_some_and(|at| *at <= Instant::now() + after);
        if !earlier {
            self.set(key, Some(after));
        }
    }

    /// `key` is gone (its SlackToken was deleted).
    pub fn forget(&self, key: &Key) {
        lock(&self.state).remove(key);
    }

    /// After a re-list of `namespace` (`None`: all): forgets the SlackTokens of it that are not in
    /// `listed` (namespace, name), deleted while the watch was down.
    pub fn forget_all_except(
        &self,
        namespace: Option<&str>,
        listed: &std::collections::HashSet<(String, String)>,
    ) {
        let mut state = lock(&self.state);
        let gone: Vec<Arc<Key>> =
            state.at.keys().filter(|k| k.in_namespace(namespace) && !k.listed_in(listed)).cloned().collect();
        for key in gone {
            state.remove(&key);
        }
        // A re-list may follow a mass deletion: what the map grew goes back.
        state.at.shrink_to_fit();
    }

    /// When `key`'s alarm rings, if it has one.
    #[cfg(test)]
    fn when(&self, key: &Key) -> Option<Instant> {
        lock(&self.state).at.get(key).copied()
    }

    /// Rings the alarms as their times come: asks `turns` for each SlackToken's reconcile. Runs
    /// until dropped.
    pub async fn run(&self, turns: &Turns) {
        loop {
            let next = self.ring(turns, Instant::now());
            let sooner = self.sooner.notified();
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = sooner => {}
                    }
                }
                None => sooner.await,
            }
        }
    }

    /// Takes every alarm due at `now` and asks for those reconciles; the next alarm's time.
    fn ring(&self, turns: &Turns, now: Instant) -> Option<Instant> {
        let mut due = Vec::new();
        let next = {
            let mut state = lock(&self.state);
            while let Some((at, _)) = state.order.first() {
                if *at > now {
                    break;
                }
                let (_, key) = state.order.pop_first().expect("first exists");
                state.at.remove(&key);
                due.push(key);
            }
            state.order.first().map(|(at, _)| *at)
        };
        for key in due {
            turns.ask(&key);
        }
        next
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.state).at.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::CachedToken;
    use futures::StreamExt;
    use kube::runtime::reflector::ObjectRef;

    fn key(name: &str) -> Key {
        Key::new("ns", name)
    }

    /// Alarms ringing into a connected `Turns`; the reconciles they asked for.
    fn setup() -> (Arc<Alarms>, Arc<Turns>, Asked) {
        let turns = Arc::new(Turns::new(1));
        let (trigger, triggered) = futures::channel::mpsc::unbounded();
        turns.connect(None, trigger);
        let alarms = Arc::new(Alarms::default());
        let (a, t) = (alarms.clone(), turns.clone());
        tokio::spawn(async move { a.run(&t).await });
        (alarms, turns, Asked(triggered))
    }

    struct Asked(futures::channel::mpsc::UnboundedReceiver<ObjectRef<CachedToken>>);

    impl Asked {
        async fn next(&mut self) -> Option<String> {
            self.0.next().await.map(|r| r.name)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn alarms_ring_in_time_order_at_their_time_and_the_last_answer_counts() {
        let (alarms, _turns, mut asked) = setup();
        let started = Instant::now();
        // (name, after seconds) in the order set; "b" is set again, later then sooner; "c"
        // is cleared; "d" is forgotten.
        alarms.set(&key("a"), Some(Duration::from_secs(30)));
        alarms.set(&key("b"), Some(Duration::from_secs(10)));
        alarms.set(&key("b"), Some(Duration::from_secs(50)));
        alarms.set(&key("c"), Some(Duration::from_secs(5)));
        alarms.set(&key("c"), None);
        alarms.set(&key("d"), Some(Duration::from_secs(7)));
        alarms.forget(&key("d"));
        alarms.set(&key("e"), Some(Duration::from_secs(20)));
        assert_eq!(alarms.len(), 3);
        let expected = [("e", 20), ("a", 30), ("b", 50)];
        for (name, secs) in expected {
            assert_eq!(asked.next().await.as_deref(), Some(name));
            assert_eq!(started.elapsed(), Duration::from_secs(secs), "{name}");
        }
        assert!(alarms.is_empty(), "a rung alarm is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_set_sooner_than_all_others_wakes_the_sleeping_timer() {
        let (alarms, _turns, mut asked) = setup();
        alarms.set(&key("late"), Some(Duration::from_secs(3600)));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let set = Instant::now();
        alarms.set(&key("soon"), Some(Duration::from_secs(1)));
        assert_eq!(asked.next().await.as_deref(), Some("soon"));
        assert_eq!(set.elapsed(), Duration::from_secs(1));
        assert_eq!(
            alarms.when(&key("late")),
            Some(set - Duration::from_secs(60) + Duration::from_secs(3600))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_relist_forgets_the_alarms_of_slacktokens_not_listed_in_its_namespace() {
        let alarms = Alarms::default();
        for (ns, name) in [("a", "kept"), ("a", "gone"), ("b", "other-namespace")] {
            alarms.set(&Key::new(ns, name), Some(Duration::from_secs(60)));
        }
        let listed = [("a".to_owned(), "kept".to_owned())].into();
        alarms.forget_all_except(Some("a"), &listed);
        assert!(alarms.when(&Key::new("a", "kept")).is_some());
        assert!(alarms.when(&Key::new("a", "gone")).is_none());
        assert!(alarms.when(&Key::new("b", "other-namespace")).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_comes_no_later_than_asked_and_keeps_an_earlier_alarm() {
        let alarms = Alarms::default();
        let now = Instant::now();
        let retry = Duration::from_secs(15);
        // (alarm before, alarm after): none is set; a later one is brought forward; a sooner one
        // (a rotation due) is kept.
        let rows = [(None, now + retry), (Some(3600), now + retry), (Some(2), now + Duration::from_secs(2))];
        for (i, (before, after)) in rows.into_iter().enumerate() {
            let k = key(&format!("t{i}"));
            alarms.set(&k, before.map(Duration::from_secs));
            alarms.no_later_than(&k, retry);
            assert_eq!(alarms.when(&k), Some(after), "row {i}");
        }
    }
}
