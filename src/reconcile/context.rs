//! What every reconcile shares: the clients, the clock, the Event recorder, the pairs not yet
//! saved, the retry holds, metrics and settings.

use super::backoff::Gate;
use crate::{
    clock::SharedClock,
    ops::{health::Health, metrics::Metrics},
    resource::{EventReason, SlackToken, MANAGER},
    secrets::{Journal, PendingPairs, Replayed},
    slack::SlackClient,
};
use kube::{
    runtime::events::{Event, EventType, Recorder, Reporter},
    Client, Resource,
};
use std::{sync::Arc, time::Duration};
use tracing::warn;

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

/// Shared state of all reconciles.
pub struct Context {
    pub client: Client,
    pub slack: SlackClient,
    pub clock: SharedClock,
    pub recorder: Recorder,
    /// Pairs Slack issued that are not saved yet (the only copy of their refresh token).
    pub pending: PendingPairs,
    /// Retry holds after failures.
    pub backoff: Gate,
    pub metrics: Arc<Metrics>,
    /// What the probes answer; the controller and leader election update it.
    pub health: Arc<Health>,
    pub settings: Settings,
}

impl Context {
    pub fn new(client: Client, slack: SlackClient, clock: SharedClock) -> Arc<Self> {
        Self::with_settings(client, slack, clock, Settings::default())
    }

    pub fn with_settings(
        client: Client,
        slack: SlackClient,
        clock: SharedClock,
        settings: Settings,
    ) -> Arc<Self> {
        Self::with_journal(client, slack, clock, settings, None)
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
        let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        let metrics = Arc::new(Metrics::default());
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            slack: slack.observed_by(metrics.clone()),
            clock,
            pending: PendingPairs::new(journal),
            backoff: Gate::default(),
            metrics,
            health: Arc::default(),
            settings,
        })
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
        let type_ = if reason.is_warning() { EventType::Warning } else { EventType::Normal };
        let (reason, action) = (reason.as_str().to_owned(), reason.as_str().to_owned());
        let event = Event { type_, reason, note: Some(note), action, secondary: None };
        if let Err(e) = self.recorder.publish(&event, &stk.object_ref(&())).await {
            // An Event is a courtesy; failing to record one must not fail the rotation.
            warn!(error = %e, "could not publish event");
        }
    }
}
