//! Leader election with a coordination.k8s.io Lease, so that only one replica rotates.
//!
//! Two replicas rotating the same token would each spend the refresh token the other holds, so
//! a replica works only while it holds the Lease and stops (the process exits and restarts) the
//! moment it loses it. kube-lease-manager does the Lease bookkeeping (renewal, skew tolerance).

use anyhow::Context as _;
use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

pub const LEASE_NAME: &str = "slack-token-operator";

/// How long a Lease holds after its last renewal: a leader that stops renewing (killed, paused,
/// cut off) is replaced after at most this long. The holder renews `grace` before it runs out.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimes {
    pub duration_secs: u64,
    pub grace_secs: u64,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        Self { duration_secs: 15, grace_secs: 5 }
    }
}

impl LeaseTimes {
    /// A Lease of `duration_secs`, renewed a third of it before it runs out (at most 5 s before).
    pub fn lasting(duration_secs: u64) -> Self {
        let duration_secs = duration_secs.max(2);
        Self { duration_secs, grace_secs: (duration_secs / 3).clamp(1, 5) }
    }
}

pub struct Leadership {
    state: watch::Receiver<bool>,
}

/// Waits until this replica holds the Lease. Namespace and identity come from the downward API
/// (`POD_NAMESPACE`, `POD_NAME`).
pub async fn acquire(client: Client, times: LeaseTimes) -> anyhow::Result<Leadership> {
    let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("slack-token-operator-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_parameters(
            LeaseParams::new(identity, times.duration_secs, times.grace_secs)
                .with_field_manager(crate::resource::MANAGER),
        )
        .build()
        .await
        .context("setting up the leader-election Lease")?;
    let (mut state, _task) = manager.watch().await;
    tracing::info!("waiting for leadership");
    while !*state.borrow_and_update() {
        state.changed().await.context("leader election stopped")?;
    }
    tracing::info!("became leader");
    Ok(Leadership { state })
}

impl Leadership {
    /// Whether this replica still holds the Lease.
    pub fn is_leader(&self) -> bool {
        *self.state.borrow()
    }

    /// Resolves when leadership is lost.
    pub async fn lost(mut self) {
        while *self.state.borrow_and_update() {
            if self.state.changed().await.is_err() {
                return;
            }
        }
    }
}
