//! Which reconcile goes next when more are due than may run at once: the most urgent.
//!
//! [`Turns`] has a fixed number of slots. A reconcile that finds one free runs at once; one that
//! does not is *parked*: it leaves its SlackToken's name and [`urgency`] here and returns at once
//! (no work, no request), so that nothing of it stays in memory but these few bytes. A freed slot
//! goes to the most urgent parked SlackToken: the slot is reserved for it and the controller is
//! asked to reconcile it again (kube-runtime's `reconcile_on`), and that reconcile finds its
//! slot waiting. SlackTokens with no published token go first, then the one whose token expires
//! soonest. After a restart hours late, or when a Slack outage ends, that is the order in which
//! apps would otherwise lose their tokens; first come, first served let tokens that were fine
//! rotate again and again while others had none at all.
//!
//! Before, every reconcile the controller handed over waited here for its turn: ten thousand
//! SlackTokens at start-up were ten thousand spawned tasks in kube-runtime's runner, whose table
//! of running futures never shrinks and is polled whole each time one of them wakes.

#[cfg(test)]
use crate::resource::SlackTokenStatus;
use crate::resource::{CachedToken, StatusTimes};
use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap, HashSet},
    sync::{Arc, Mutex},
};
use tokio::sync::Notify;

/// How urgent a SlackToken's reconcile is; smaller is more urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Urgency {
    /// `false` (first): no token has been published yet.
    published: bool,
    /// When its token expires (or, with none, falls due), Unix seconds; `i64::MAX` if never.
    deadline: i64,
}

impl Urgency {
    #[cfg(test)]
    pub const MOST: Urgency = Urgency { published: false, deadline: i64::MIN };
}

/// The urgency of a SlackToken, from the status the watch last showed.
pub fn urgency(stk: &CachedToken) -> Urgency {
    urgency_of_times(&stk.times)
}

/// The urgency of a SlackToken with `status` (the cache keeps only its times).
#[cfg(test)]
fn urgency_of(status: Option<&SlackTokenStatus>) -> Urgency {
    let Some(s) = status else { return Urgency { published: false, deadline: i64::MAX } };
    let times = StatusTimes::of(
        s.expiration_time.as_deref(),
        s.last_rotation_time.as_deref(),
        s.next_rotation_time.as_deref(),
    );
    urgency_of_times(&times)
}

fn urgency_of_times(times: &StatusTimes) -> Urgency {
    let published = times.expires.is_some() || times.rotated;
    let deadline = times.expires.or(times.next_rotation).unwrap_or(i64::MAX);
    Urgency { published, deadline }
}

/// A SlackToken, as the queue names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    namespace: Box<str>,
    name: Box<str>,
}

impl Key {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    pub fn of(stk: &CachedToken) -> Self {
        Self::new(
            stk.metadata.namespace.as_deref().unwrap_or_default(),
            stk.metadata.name.as_deref().unwrap_or_default(),
        )
    }

    fn object_ref(&self) -> ObjectRef<CachedToken> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }

    /// Whether it is in `namespace` (`None`: all).
    pub fn in_namespace(&self, namespace: Option<&str>) -> bool {
        namespace.is_none_or(|ns| ns == &*self.namespace)
    }

    /// Whether it is among `listed` (namespace, name).
    pub fn listed_in(&self, listed: &HashSet<(String, String)>) -> bool {
        listed.contains(&(self.namespace.to_string(), self.name.to_string()))
    }
}

/// Asks a controller to reconcile a SlackToken again (the sending half of its `reconcile_on`).
pub type Summoner = UnboundedSender<ObjectRef<CachedToken>>;

struct State {
    free: usize,
    sequence: u64,
    /// Parked SlackTokens, most urgent first; an entry is current only while `parked` holds
    /// the same (urgency, sequence) for its key (a SlackToken parked again moves).
    queue: BinaryHeap<Reverse<(Urgency, u64, Key)>>,
    parked: HashMap<Key, (Urgency, u64)>,
    /// SlackTokens a slot is kept for, until their reconcile comes.
    reserved: HashSet<Key>,
    /// SlackTokens whose reconcile holds a turn.
    running: HashSet<Key>,
    /// The controllers to ask, each with the namespace it watches (`None`: all).
    summoners: Vec<(Option<String>, Summoner)>,
}

/// `slots` reconciles at a time, handed out most urgent first.
pub struct Turns(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
    /// Told each time a turn ends.
    ended: Notify,
}

/// A slot; freed when dropped.
pub struct Turn {
    shared: Arc<Shared>,
    /// The SlackToken whose reconcile holds it.
    key: Option<Key>,
}

impl Turns {
    pub fn new(slots: usize) -> Self {
        let state = State {
            free: slots.max(1),
            sequence: 0,
            queue: BinaryHeap::new(),
            parked: HashMap::new(),
            reserved: HashSet::new(),
            running: HashSet::new(),
            summoners: Vec::new(),
        };
        Self(Arc::new(Shared { state: Mutex::new(state), ended: Notify::new() }))
    }

    fn turn(&self, state: &mut State, key: Option<&Key>) -> Turn {
        if let Some(key) = key {
            state.running.insert(key.clone());
        }
        Turn { shared: self.0.clone(), key: key.cloned() }
    }

    /// The SlackTokens whose reconcile holds a turn now (`namespace/name`, sorted).
    pub fn running(&self) -> Vec<String> {
        let mut running: Vec<String> =
            lock(&self.0.state).running.iter().map(|k| format!("{}/{}", k.namespace, k.name)).collect();
        running.sort();
        running
    }

    /// Whether `key`'s reconcile holds a turn now.
    pub fn is_running(&self, key: &Key) -> bool {
        lock(&self.0.state).running.contains(key)
    }

    /// Waits until `key`'s reconcile holds no turn, at most `within`; whether it ended.
    pub async fn ended(&self, key: &Key, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ended = self.0.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !self.is_running(key) {
                return true;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return false;
            }
        }
    }

    /// Where to ask for the reconcile of a parked SlackToken in `namespace` (`None`: all).
    pub fn connect(&self, namespace: Option<String>, summoner: Summoner) {
        lock(&self.0.state).summoners.push((namespace, summoner));
    }

    /// SlackTokens parked, waiting for a slot.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        lock(&self.0.state).parked.len()
    }

    /// A slot for `key`'s reconcile: the one kept for it, or a free one. If there is none, `key`
    /// is parked with `urgency` and will be reconciled again when a slot is kept for it.
    pub fn take(&self, key: &Key, urgency: Urgency) -> Option<Turn> {
        let mut state = lock(&self.0.state);
        if state.reserved.remove(key) {
            return Some(self.turn(&mut state, Some(key)));
        }
        if state.free > 0 {
            state.free -= 1;
            return Some(self.turn(&mut state, Some(key)));
        }
        state.sequence += 1;
        let sequence = state.sequence;
        state.parked.insert(key.clone(), (urgency, sequence));
        state.queue.push(Reverse((urgency, sequence, key.clone())));
        None
    }

    /// Asks the controller watching `key`'s namespace for its reconcile (when its alarm rings,
    /// see `super::alarms`); whether one was there to ask.
    pub fn ask(&self, key: &Key) -> bool {
        ask(&mut lock(&self.0.state), key)
    }

    /// `key` is gone (its SlackToken was deleted): it waits no more, and a slot kept for it is
    /// passed on (its reconcile will never come).
    pub fn forget(&self, key: &Key) {
        let mut state = lock(&self.0.state);
        state.parked.remove(key);
        if state.reserved.remove(key) {
            release(&mut state);
        }
    }

    /// After a re-list of `namespace` (`None`: all): forgets the SlackTokens of it that are not in
    /// `listed` (namespace, name), deleted while the watch was down.
    pub fn forget_all_except(&self, namespace: Option<&str>, listed: &HashSet<(String, String)>) {
        let gone: Vec<Key> = {
            let state = lock(&self.0.state);
            state
                .parked
                .keys()
                .chain(state.reserved.iter())
                .filter(|k| k.in_namespace(namespace) && !k.listed_in(listed))
                .cloned()
                .collect()
        };
        for key in &gone {
            self.forget(key);
        }
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps a freed slot for the most urgent parked SlackToken and asks for its reconcile; with
/// none (or no controller to ask), the slot is free.
fn release(state: &mut State) {
    while let Some(Reverse((urgency, sequence, key))) = state.queue.pop() {
        if state.parked.get(&key) != Some(&(urgency, sequence)) {
            continue; // parked again since, or forgotten
        }
        state.parked.remove(&key);
        if ask(state, &key) {
            state.reserved.insert(key);
            return;
        }
    }
    state.free += 1;
    // Nothing waits: what a burst grew goes back (a heap and a map never shrink by themselves).
    state.queue = BinaryHeap::new();
    state.parked.shrink_to_fit();
}

/// Asks the controller watching `key`'s namespace for its reconcile; whether it was asked.
fn ask(state: &mut State, key: &Key) -> bool {
    state.summoners.retain(|(_, summoner)| !summoner.is_closed());
    let summoner = state.summoners.iter().find(|(ns, _)| key.in_namespace(ns.as_deref()));
    summoner.is_some_and(|(_, summoner)| summoner.unbounded_send(key.object_ref()).is_ok())
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        if let Some(key) = &self.key {
            state.running.remove(key);
        }
        release(&mut state);
        drop(state);
        self.shared.ended.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn status(expires: Option<&str>, last: Option<&str>, next: Option<&str>) -> SlackTokenStatus {
        SlackTokenStatus {
            expiration_time: expires.map(Into::into),
            last_rotation_time: last.map(Into::into),
            next_rotation_time: next.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn no_token_first_then_nearest_expiry() {
        let t = |s: &str| s.parse::<Timestamp>().unwrap().as_second();
        // (status, published, deadline)
        let table = [
            (None, false, i64::MAX),
            (Some(status(None, None, None)), false, i64::MAX),
            (
                Some(status(Some("2026-01-01T12:00:00Z"), Some("2026-01-01T00:00:00Z"), None)),
                true,
                t("2026-01-01T12:00:00Z"),
            ),
            (
                Some(status(None, Some("2026-01-01T00:00:00Z"), Some("2026-04-01T00:00:00Z"))),
                true,
                t("2026-04-01T00:00:00Z"),
            ),
            (Some(status(None, None, Some("2026-04-01T00:00:00Z"))), false, t("2026-04-01T00:00:00Z")),
        ];
        for (status, published, deadline) in table {
            assert_eq!(urgency_of(status.as_ref()), Urgency { published, deadline }, "{status:?}");
        }
        let none = urgency_of(None);
        let soon = urgency_of(Some(&status(Some("2026-01-01T01:00:00Z"), None, None)));
        let later = urgency_of(Some(&status(Some("2026-01-01T12:00:00Z"), None, None)));
        let mut order = vec![later, soon, none];
        order.sort();
        assert_eq!(order, vec![none, soon, later]);
    }

    fn key(name: &str) -> Key {
        Key::new("ns", name)
    }

    fn urgency(deadline: i64) -> Urgency {
        Urgency { published: true, deadline }
    }

    #[test]
    fn a_freed_slot_is_kept_for_the_most_urgent_parked_slacktoken() {
        let turns = Turns::new(1);
        let (trigger, mut triggered) = futures::channel::mpsc::unbounded();
        turns.connect(None, trigger);
        let first = turns.take(&key("first"), Urgency::MOST).expect("a free slot");
        for (name, deadline) in [("a", 30), ("b", 10), ("c", 20), ("d", 40)] {
            assert!(turns.take(&key(name), urgency(deadline)).is_none(), "{name} is parked");
        }
        // Parked again, now less urgent: it moves.
        assert!(turns.take(&key("b"), urgency(50)).is_none());
        // Deleted while parked: it waits no more.
        turns.forget(&key("d"));
        assert_eq!(turns.waiting(), 3);

        let mut order = Vec::new();
        let mut turn = Some(first);
        while let Some(t) = turn.take() {
            drop(t);
            let Ok(next) = triggered.try_recv() else { break };
            // Someone else's reconcile finds no slot: it is kept for the one asked for.
            assert!(turns.take(&key("late"), urgency(0)).is_none());
            turns.forget(&key("late"));
            order.push(next.name.clone());
            turn = Some(turns.take(&key(&next.name), urgency(0)).expect("the kept slot"));
        }
        assert_eq!(order, ["c", "a", "b"]);
        assert_eq!(turns.waiting(), 0);
        let _again = turns.take(&key("x"), Urgency::MOST).expect("the slot came back");
    }

    #[test]
    fn a_slot_kept_for_a_slacktoken_that_is_gone_is_passed_on() {
        let turns = Turns::new(1);
        let (trigger, mut triggered) = futures::channel::mpsc::unbounded();
        turns.connect(Some("ns".into()), trigger);
        let first = turns.take(&key("first"), Urgency::MOST).expect("a free slot");
        assert!(turns.take(&key("deleted"), urgency(10)).is_none());
        assert!(turns.take(&key("next"), urgency(20)).is_none());
        // Another namespace: this controller does not watch it, so no slot is kept for it.
        assert!(turns.take(&Key::new("elsewhere", "x"), Urgency::MOST).is_none());
        drop(first);
        assert_eq!(triggered.try_recv().unwrap().name, "deleted");
        // Deleted before its reconcile came (a re-list shows it gone).
        turns.forget_all_except(Some("ns"), &[("ns".to_owned(), "next".to_owned())].into_iter().collect());
        assert_eq!(triggered.try_recv().unwrap().name, "next");
        assert!(turns.take(&key("next"), urgency(20)).is_some());
    }
}
