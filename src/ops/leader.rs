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

pub struct Leadership {
    state: watch::Receiver<bool>,
}

/// Waits until this replica holds the Lease. Namespace and identity come from the downward API
/// (`POD_NAMESPACE`, `POD_NAME`).
pub async fn acquire(client: Client) -> anyhow::Result<Leadership> {
    let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("slack-token-operator-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client, LEASE_NAME)
        .with_namespace(namespace)
        .with_parameters(LeaseParams::new(identity, 15, 5).with_field_manager(crate::resource::MANAGER))
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
