//! Which reconcile goes next when more are waiting than may run at once: the most urgent.
//!
//! The controller hands every reconcile over at once (it runs them unbounded); each waits here
//! for one of [`Turns`]' slots, and a freed slot goes to the most urgent waiter (see
//! [`urgency`]): SlackTokens with no published token first, then the one whose token expires
//! soonest. After a restart hours late, or when a Slack outage ends, that is the order in which
//! apps would otherwise lose their tokens; first come, first served let tokens that were fine
//! rotate again and again while others had none at all.
//!
//! A waiting reconcile holds only its SlackToken's `Arc` and a channel end: the work itself is
//! started once it has its turn.

use crate::resource::{SlackToken, SlackTokenStatus};
use jiff::Timestamp;
use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{Arc, Mutex},
};
use tokio::sync::oneshot;

/// How urgent a SlackToken's reconcile is; smaller is more urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Urgency {
    /// `false` (first): no token has been published yet.
    published: bool,
    /// When its token expires (or, with none, falls due), Unix seconds; `i64::MAX` if never.
    deadline: i64,
}

impl Urgency {
    pub const MOST: Urgency = Urgency { published: false, deadline: i64::MIN };
}

/// The urgency of a SlackToken, from the status the watch last showed.
pub fn urgency(stk: &SlackToken) -> Urgency {
    urgency_of(stk.status.as_ref())
}

pub fn urgency_of(status: Option<&SlackTokenStatus>) -> Urgency {
    let seconds =
        |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map(|t| t.as_second());
    let Some(status) = status else { return Urgency { published: false, deadline: i64::MAX } };
    let expires = seconds(&status.expiration_time);
    let published = expires.is_some() || status.last_rotation_time.is_some();
    let deadline = expires.or_else(|| seconds(&status.next_rotation_time)).unwrap_or(i64::MAX);
    Urgency { published, deadline }
}

struct Waiter {
    urgency: Urgency,
    /// Arrival order, among equally urgent ones.
    sequence: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.urgency, self.sequence) == (other.urgency, other.sequence)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.urgency, self.sequence).cmp(&(other.urgency, other.sequence))
    }
}

struct State {
    free: usize,
    sequence: u64,
    waiting: BinaryHeap<Reverse<Waiter>>,
}

/// `slots` reconciles at a time, handed out most urgent first.
pub struct Turns(Arc<Mutex<State>>);

/// A slot; freed when dropped.
pub struct Turn(Arc<Mutex<State>>);

impl Turns {
    pub fn new(slots: usize) -> Self {
        Self(Arc::new(Mutex::new(State { free: slots.max(1), sequence: 0, waiting: BinaryHeap::new() })))
    }

    /// Reconciles waiting for a turn.
    pub fn waiting(&self) -> usize {
        lock(&self.0).waiting.len()
    }

    /// Waits for a slot.
    pub async fn take(&self, urgency: Urgency) -> Turn {
        let receiver = {
            let mut state = lock(&self.0);
            if state.free > 0 && state.waiting.is_empty() {
                state.free -= 1;
                return Turn(self.0.clone());
            }
            let (wake, receiver) = oneshot::channel();
            state.sequence += 1;
            let sequence = state.sequence;
            state.waiting.push(Reverse(Waiter { urgency, sequence, wake }));
            receiver
        };
        let mut waiting = Waiting { state: self.0.clone(), receiver: Some(receiver) };
        let handed = match waiting.receiver.as_mut() {
            Some(receiver) => receiver.await.is_ok(),
            None => false,
        };
        waiting.receiver = None;
        debug_assert!(handed, "the sender lives in the queue until it hands a slot over");
        Turn(self.0.clone())
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands a freed slot to the most urgent waiter still waiting.
fn release(state: &Mutex<State>) {
    let mut state = lock(state);
    while let Some(Reverse(waiter)) = state.waiting.pop() {
        if waiter.wake.send(()).is_ok() {
            return;
        }
    }
    state.free += 1;
}

impl Drop for Turn {
    fn drop(&mut self) {
        release(&self.0);
    }
}

/// A waiter given up (its reconcile cancelled at shutdown) passes on a slot it was handed.
struct Waiting {
    state: Arc<Mutex<State>>,
    receiver: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut receiver) = self.receiver.take() {
            receiver.close();
            if receiver.try_recv().is_ok() {
                release(&self.state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_most_urgent_waiter() {
        let turns = Arc::new(Turns::new(1));
        let first = turns.take(Urgency::MOST).await;
        let done = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, deadline) in [(0, 30), (1, 10), (2, 20)] {
            let (turns, done) = (turns.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turns.take(Urgency { published: true, deadline }).await;
                done.lock().unwrap().push(i);
            }));
            tokio::task::yield_now().await;
        }
        // One that gave up waiting does not keep its slot.
        let gave_up = tokio::spawn({
            let turns = turns.clone();
            async move { turns.take(Urgency::MOST).await }
        });
        tokio::task::yield_now().await;
        gave_up.abort();
        let _ = gave_up.await;
        assert_eq!(turns.waiting(), 4);
        drop(first);
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*done.lock().unwrap(), vec![1, 2, 0]);
        let _again = turns.take(Urgency::MOST).await; // the slot came back
    }
}
