//! What every reconcile shares: the clients, the clock, the Event recorder, the pairs not yet
//! saved, the retry holds, our own writes, the turns, the alarms and Slack's rate limits, metrics and settings.

use super::{alarms::Alarms, backoff::Gate, events, turns::Turns};
use crate::{
    clock::SharedClock,
    ops::{health::Health, metrics::Metrics},
    resource::{EventReason, SlackToken, MANAGER},
    secrets::{Journal, OwnWrites, PendingPairs, Replayed},
    slack::{RateLimits, SlackClient},
};
use kube::{Client, Resource};
use std::{sync::Arc, time::Duration};
use tracing::warn;

/// Reconciles running at once. Each holds at most one Slack call and one API request in flight,
/// so this bounds the connections a burst opens to Slack's rate-limited methods and to the API
/// server; beyond it, work waits its turn in order of urgency (see `turns`).
pub const MAX_CONCURRENT_RECONCILES: usize = 64;
/// Reconciles kube-runtime's runner holds at once: the running ones, and parked ones returning.
/// Beyond it requests wait in kube-runtime's scheduler, a few bytes each (only those asked for
/// at once: the times of next reconciles are `alarms`').
pub const RUNNER_CONCURRENCY: u16 = 2 * MAX_CONCURRENT_RECONCILES as u16;

/// Settings from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How often long-lived tokens are checked with auth.test.
    pub health_check_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self { health_check_interval: Duration::from_secs(6 * 3600) }
    }
}

/// Shared state of all reconciles. Built by [`Context::with_journal`] (or [`Context::new`]);
/// outside the crate only what `main` and the tests read is at hand, through the methods below.
pub struct Context {
    pub(crate) client: Client,
    pub(crate) slack: SlackClient,
    pub(crate) clock: SharedClock,
    pub(crate) recorder: events::Recorder,
    /// Pairs Slack issued that are not saved yet (the only copy of their refresh token).
    pub(crate) pending: PendingPairs,
    /// Retry holds after failures.
    pub(crate) backoff: Gate,
    /// What we last wrote to each Secret (so our own writes do not wake us, and the output
    /// Secret need not be read back).
    pub(crate) own_writes: OwnWrites,
    /// Reconciles at once, most urgent first.
    pub(crate) turns: Turns,
    /// When each SlackToken is next reconciled.
    pub(crate) alarms: Alarms,
    /// Slack's `Retry-After`, per app and workspace.
    pub(crate) rate_limits: RateLimits,
    pub(crate) metrics: Arc<Metrics>,
    /// What the probes answer; the controller and leader election update it.
    pub(crate) health: Arc<Health>,
    pub(crate) settings: Settings,
}

impl Context {
    /// With the default settings and no crash journal.
    pub fn new(client: Client, slack: SlackClient, clock: SharedClock) -> Arc<Self> {
        Self::with_journal(client, slack, clock, Settings::default(), None)
    }

    /// With a crash journal, pairs Slack issues are on disk until saved; call
    /// [`Context::replay_journal`] before the controller starts.
    pub fn with_journal(
        client: Client,
        slack: SlackClient,
        clock: SharedClock,
        settings: Settings,
        journal: Option<Journal>,
    ) -> Arc<Self> {
        let metrics = Arc::new(Metrics::default());
        Arc::new(Self {
            recorder: events::Recorder::new(
                client.clone(),
                MANAGER,
                std::env::var("POD_NAME").ok(),
                clock.clone(),
            ),
            client,
            slack: slack.observed_by(metrics.clone()),
            clock,
            pending: PendingPairs::new(journal),
            backoff: Gate::default(),
            own_writes: OwnWrites::default(),
            turns: Turns::new(MAX_CONCURRENT_RECONCILES),
            alarms: Alarms::default(),
            rate_limits: RateLimits::default(),
            metrics,
            health: Arc::default(),
            settings,
        })
    }

    /// The operator's metrics (the leader gauge is set by `main` and leader election).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What the probes answer.
    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Pairs Slack issued that are not saved yet.
    pub fn pending(&self) -> &PendingPairs {
        &self.pending
    }

    /// The SlackTokens (`namespace/name`) whose reconcile is running.
    pub fn running(&self) -> Vec<String> {
        self.turns.running()
    }

    /// The probes' and metrics' view of this operator, for the HTTP server.
    pub fn endpoints(&self) -> crate::ops::http::Endpoints {
        crate::ops::http::Endpoints { metrics: self.metrics.clone(), health: self.health.clone() }
    }

    /// Saves the pairs a previous run journaled but did not save (see `secrets::replay`).
    pub async fn replay_journal(&self) -> Replayed {
        crate::secrets::replay(&self.client, &self.pending).await
    }

    /// Publishes an Event about `stk`. Never contains a token: callers pass fixed texts and names.
    pub async fn event(&self, stk: &SlackToken, reason: EventReason, note: String) {
        let event =
            events::EventToWrite { warning: reason.is_warning(), reason: reason.as_str(), note: &note };
        if let Err(e) = self.recorder.publish(&stk.object_ref(&()), event).await {
            // An Event is a courtesy; failing to record one must not fail the rotation.
            warn!(error = %e, "could not publish event");
        }
    }
}
