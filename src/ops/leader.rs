//! Leader election with a coordination.k8s.io Lease, so that only one replica rotates.
//!
//! Two replicas rotating the same token would each spend the refresh token the other holds, so
//! a replica works only while it holds the Lease and stops (the process exits and restarts) the
//! moment it loses it. kube-lease-manager does the Lease bookkeeping (renewal, skew tolerance).

use super::health::{Health, Role};
use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManagerBuilder, LeaseParams};
use tokio::sync::watch;

pub const LEASE_NAME: &str = "slack-token-operator";

/// The Lease of the operator that looks after the SlackTokens matching `selector`: each shard
/// (`run --selector`) elects its own leader. Readable where it can be (the selector's letters
/// and digits), and distinct for every selector (a hash of it, with spaces removed, since
/// `a=1,b=2` and `a=1, b=2` select the same).
pub fn lease_name(selector: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    let Some(selector) = selector.map(|s| s.split_whitespace().collect::<String>()).filter(|s| !s.is_empty())
    else {
        return LEASE_NAME.to_owned();
    };
    let mut readable = String::new();
    for c in selector.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_alphanumeric() { c } else { '-' };
        if !(c == '-' && (readable.is_empty() || readable.ends_with('-'))) {
            readable.push(c);
        }
    }
    let readable: String = readable.chars().take(30).collect();
    let readable = readable.trim_end_matches('-');
    let digest = Sha256::digest(selector.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    match readable.is_empty() {
        true => format!("{LEASE_NAME}-{hash}"),
        false => format!("{LEASE_NAME}-{readable}-{hash}"),
    }
}

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

/// Waits until this replica holds the Lease, telling `health` where it stands meanwhile (a
/// standby is Ready: it is a working spare). Namespace and identity come from the downward API
/// (`POD_NAMESPACE`, `POD_NAME`).
pub async fn acquire(client: Client, times: LeaseTimes, health: &Health) -> anyhow::Result<Leadership> {
    acquire_named(client, LEASE_NAME, times, health).await
}

/// [`acquire`] with the Lease `lease` (see [`lease_name`]).
pub async fn acquire_named(
    client: Client,
    lease: &str,
    times: LeaseTimes,
    health: &Health,
) -> anyhow::Result<Leadership> {
    health.set_role(Role::Unknown);
    let namespace = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("slack-token-operator-{}", std::process::id()));
    let manager = LeaseManagerBuilder::new(client.clone(), lease)
        .with_namespace(&namespace)
        .with_parameters(
            LeaseParams::new(identity.clone(), times.duration_secs, times.grace_secs)
                .with_field_manager(crate::resource::MANAGER),
        )
        .build()
        .await
        .context("setting up the leader-election Lease")?;
    let (mut state, _task) = manager.watch().await;
    // The manager has the Lease now; if another replica holds it, this one is a standby. (A Lease
    // nobody holds is taken at once: the role stays unknown for that moment.)
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    if let Ok(lease) = leases.get(lease).await {
        let holder = lease.spec.and_then(|s| s.holder_identity).filter(|h| !h.is_empty());
        if holder.is_some_and(|h| h != identity) && !*state.borrow() {
            health.set_role(Role::Standby);
        }
    }
    tracing::info!("waiting for leadership");
    while !*state.borrow_and_update() {
        state.changed().await.context("leader election stopped")?;
    }
    health.set_role(Role::Leader);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_selector_has_its_own_lease() {
        assert_eq!(lease_name(None), "slack-token-operator");
        assert_eq!(lease_name(Some(" ")), "slack-token-operator");
        // (selector, the readable part before the hash)
        let table = [
            ("shard=a", "slack-token-operator-shard-a-"),
            ("tier in (gold, silver),!legacy", "slack-token-operator-tierin-gold-silver-legacy-"),
            ("!!", "slack-token-operator-"),
        ];
        for (selector, readable) in table {
            let name = lease_name(Some(selector));
            let hash = name.strip_prefix(readable).unwrap_or_else(|| panic!("{selector:?}: {name}"));
            assert!(hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{selector:?}: {name}");
        }
        let names: std::collections::HashSet<String> =
            ["shard=a", "shard=b", "shard-a", "shard in (a,b)", "!shard", "team=x,shard=a"]
                .iter()
                .map(|s| lease_name(Some(s)))
                .collect();
        assert_eq!(names.len(), 6, "distinct selectors, distinct Leases: {names:?}");
        assert_eq!(lease_name(Some("a=1, b=2")), lease_name(Some("a=1,b=2")));
        let long = lease_name(Some(&"x".repeat(500)));
        assert!(long.len() <= 63 && long.starts_with("slack-token-operator-x"), "{long}");
    }
}
