//! Leader election with a coordination.k8s.io Lease, so that only one replica rotates.
//!
//! Two replicas rotating the same token would each spend the refresh token the other holds, so
//! a replica works only while it holds the Lease and stops (the process exits and restarts) the
//! moment it may have lost it. The protocol is client-go's `leaderelection`:
//!
//! - Every write of the Lease (take a free one, take over an expired one, renew, release) is an
//!   update carrying the resourceVersion just read. Of two replicas that read the same Lease,
//!   one write succeeds and the other gets 409 Conflict: two can never both take it.
//! - Another replica's Lease has run out when its record has not changed for its duration, timed
//!   on this replica's own clock from the moment it saw that record (the nodes' clocks need not
//!   agree, and `renewTime` is only for people).
//! - The leader gives up when it has not renewed for `renew_deadline`, shorter than the duration,
//!   so it has stopped before anyone else can take over.
//! - A leader that exits gracefully releases the Lease (holder emptied), so a standby takes it at
//!   its next try, within about one retry period, instead of after the whole duration.
//!
//! (kube-lease-manager, used before, takes a free Lease with a server-side apply under one field
//! manager shared by every replica, so a second replica's apply overwrites the first instead of
//! conflicting, and renews and force-releases with patches that carry no precondition: two
//! replicas starting together could both become leader.)

use super::health::{Health, Role};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prometheus_client::metrics::gauge::Gauge;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

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

/// The timings of leader election, in client-go's proportions (15 s, 10 s, 2 s by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    /// How long a Lease holds after its last renewal: a leader that stops renewing (killed,
    /// paused, cut off) is replaced after at most this long (plus one retry period).
    pub duration: Duration,
    /// How long the leader goes on trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// How often the leader renews, and a standby looks at the Lease.
    pub retry_period: Duration,
}

impl Default for LeaseTimes {
    fn default() -> Self {
        Self::lasting(Duration::from_secs(15))
    }
}

impl LeaseTimes {
    /// A Lease of `duration` (whole seconds, at least 2, as the Lease records it), renewed every
    /// 2/15 of it, given up 2/3 of it after the last renewal.
    pub fn lasting(duration: Duration) -> Self {
        let duration = Duration::from_secs(duration.as_secs().max(2));
        Self { duration, renew_deadline: duration * 2 / 3, retry_period: duration * 2 / 15 }
    }

    fn duration_secs(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Who competes for which Lease.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub namespace: String,
    pub lease: String,
    /// This replica's name in the Lease (its Pod's name).
    pub identity: String,
    pub times: LeaseTimes,
}

impl Candidate {
    /// The Lease `lease` in the Pod's namespace, as the Pod: both from the downward API
    /// (`POD_NAMESPACE`, `POD_NAME`).
    pub fn from_env(lease: &str, times: LeaseTimes) -> Self {
        Self {
            namespace: std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
            lease: lease.to_owned(),
            identity: std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("slack-token-operator-{}", std::process::id())),
            times,
        }
    }
}

/// What to do with the Lease as just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It is free (no holder, or released) or has run out: take it.
    Take,
    /// It is ours: renew it.
    Renew,
    /// Another replica holds it and it has not run out: stand by.
    Wait,
}

/// What to do with a Lease held by `holder` (empty: nobody) for `lease_duration`, whose record
/// this replica has seen unchanged for `unchanged_for` on its own clock.
pub fn next(identity: &str, holder: Option<&str>, unchanged_for: Duration, lease_duration: Duration) -> Next {
    match holder.filter(|h| !h.is_empty()) {
        Some(h) if h == identity => Next::Renew,
        Some(_) if unchanged_for < lease_duration => Next::Wait,
        _ => Next::Take,
    }
}

/// How one try at the Lease went.
#[derive(Debug, PartialEq, Eq)]
enum Tried {
    /// This replica holds it (took or renewed it).
    Holds,
    /// `0` holds it.
    HeldBy(String),
    /// Another replica wrote it between our read and our write.
    Conflict,
}

/// The Lease as this replica last read or wrote it.
struct Seen {
    lease: Lease,
    /// When its record last changed, on this replica's clock.
    changed_at: Instant,
}

struct Elector {
    leases: Api<Lease>,
    candidate: Candidate,
    seen: Option<Seen>,
}

fn holder_of(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref().filter(|h| !h.is_empty())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    fn new(client: Client, candidate: Candidate) -> Self {
        Self { leases: Api::namespaced(client, &candidate.namespace), candidate, seen: None }
    }

    fn identity(&self) -> &str {
        &self.candidate.identity
    }

    /// How long `lease` holds after a renewal, as its holder wrote it.
    fn duration_of(&self, lease: &Lease) -> Duration {
        lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|d| u64::try_from(d).ok())
            .map_or(self.candidate.times.duration, Duration::from_secs)
    }

    /// Remembers `lease`, restarting the clock of its record if the record changed.
    fn observe(&mut self, lease: Lease, at: Instant) {
        let changed_at = match &self.seen {
            Some(seen) if seen.lease.spec == lease.spec => seen.changed_at,
            _ => at,
        };
        self.seen = Some(Seen { lease, changed_at });
    }

    /// The Lease record that says this replica holds it, continuing `previous`.
    fn held_by_us(&self, previous: Option<&LeaseSpec>) -> LeaseSpec {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let previous = previous.cloned().unwrap_or_default();
        let renewing = previous.holder_identity.as_deref() == Some(self.identity());
        LeaseSpec {
            holder_identity: Some(self.identity().to_owned()),
            lease_duration_seconds: Some(self.candidate.times.duration_secs()),
            acquire_time: if renewing { previous.acquire_time.clone() } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: match renewing {
                true => previous.lease_transitions,
                false => Some(previous.lease_transitions.unwrap_or(0) + 1),
            },
            ..previous
        }
    }

    fn post_params() -> PostParams {
        PostParams { field_manager: Some(crate::resource::MANAGER.into()), ..Default::default() }
    }

    /// One read of the Lease and, if it is free, run out or ours, one write guarded by the
    /// resourceVersion read. `renewing`: this replica leads, and a Lease that is not ours any
    /// more (even free) means it lost it.
    async fn try_acquire_or_renew(&mut self, renewing: bool) -> Result<Tried, kube::Error> {
        let started = Instant::now();
        let current = self.leases.get_opt(&self.candidate.lease).await?;
        if renewing && current.as_ref().and_then(holder_of) != Some(self.identity()) {
            return Ok(Tried::HeldBy(current.as_ref().and_then(holder_of).unwrap_or("nobody").to_owned()));
        }
        let Some(current) = current else {
            // Deleted under a holder we saw: that holder goes on leading until it next renews, so
            // the Lease counts as held until it would have run out.
            if let Some(seen) = &self.seen {
                if let Some(h) = holder_of(&seen.lease).filter(|h| *h != self.identity()) {
                    if seen.changed_at.elapsed() < self.duration_of(&seen.lease) {
                        return Ok(Tried::HeldBy(h.to_owned()));
                    }
                }
            }
            // No Lease (first start, or deleted): create it as ours. Of two creates, one wins.
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.candidate.lease.clone()), ..Default::default() },
                spec: Some(self.held_by_us(None)),
            };
            return match self.leases.create(&Self::post_params(), &lease).await {
                Ok(created) => {
                    self.observe(created, started);
                    Ok(Tried::Holds)
                }
                Err(e) if is_conflict(&e) => Ok(Tried::Conflict),
                Err(e) => Err(e),
            };
        };
        self.observe(current.clone(), Instant::now());
        let seen = self.seen.as_ref().map(|s| s.changed_at.elapsed()).unwrap_or_default();
        match next(self.identity(), holder_of(&current), seen, self.duration_of(&current)) {
            Next::Wait => Ok(Tried::HeldBy(holder_of(&current).unwrap_or_default().to_owned())),
            Next::Take | Next::Renew => {
                let mut ours = current.clone();
                ours.spec = Some(self.held_by_us(current.spec.as_ref()));
                // `replace` sends the resourceVersion read above: a write in between fails.
                match self.leases.replace(&self.candidate.lease, &Self::post_params(), &ours).await {
                    Ok(written) => {
                        self.observe(written, started);
                        Ok(Tried::Holds)
                    }
                    Err(e) if is_conflict(&e) => Ok(Tried::Conflict),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Empties the holder of the Lease if it is still ours as last written (client-go's
    /// `ReleaseOnCancel`), so that a standby takes it at once. Whether it did.
    async fn release(&mut self) -> Result<bool, kube::Error> {
        let Some(seen) = &self.seen else { return Ok(false) };
        if holder_of(&seen.lease) != Some(self.identity()) {
            return Ok(false);
        }
        let mut released = seen.lease.clone();
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        released.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..seen.lease.spec.clone().unwrap_or_default()
        });
        match self.leases.replace(&self.candidate.lease, &Self::post_params(), &released).await {
            Ok(written) => {
                self.observe(written, Instant::now());
                Ok(true)
            }
            // Someone else wrote it since our last renewal: not ours to empty.
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Up to a fifth more than `period`, so that replicas started together spread out.
fn jittered(period: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    // Each RandomState is keyed afresh: enough randomness for a jitter, without a dependency.
    let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
    period + period.mul_f64((random % 1000) as f64 / 5000.0)
}

/// Waits until this replica holds the Lease, telling `health` where it stands meanwhile (a
/// standby is Ready: it is a working spare) and following the Lease while it waits (a new
/// holder, a released or deleted Lease). `leader` is 1 while it leads. Errors reading or
/// writing the Lease are logged and retried; cancel the future to stop.
pub async fn acquire(client: Client, candidate: Candidate, health: &Health, leader: Gauge) -> Leadership {
    health.set_role(Role::Unknown);
    leader.set(0);
    let times = candidate.times;
    let mut elector = Elector::new(client, candidate);
    let mut holder: Option<String> = None;
    let mut conflicts_in_a_row = 0;
    loop {
        match tokio::time::timeout(times.renew_deadline, elector.try_acquire_or_renew(false)).await {
            Ok(Ok(Tried::Holds)) => break,
            Ok(Ok(Tried::HeldBy(h))) => {
                if holder.as_deref() != Some(h.as_str()) {
                    info!(leader = %h, "standing by: another replica leads");
                    health.set_role(Role::Standby);
                    holder = Some(h);
                }
            }
            // Another replica wrote the Lease first: read it again now to learn who leads.
            Ok(Ok(Tried::Conflict)) if conflicts_in_a_row == 0 => {
                debug!("the Lease changed while we tried to take it");
                conflicts_in_a_row += 1;
                continue;
            }
            Ok(Ok(Tried::Conflict)) => debug!("the Lease changed while we tried to take it"),
            Ok(Err(e)) => {
                warn!(error = %e, lease = %elector.candidate.lease, "leader election: the Lease could not be read or written; trying again")
            }
            Err(_) => {
                warn!(lease = %elector.candidate.lease, "leader election: the API server did not answer in time; trying again")
            }
        }
        conflicts_in_a_row = 0;
        tokio::time::sleep(jittered(times.retry_period)).await;
    }
    let renewed = Instant::now();
    health.set_role(Role::Leader);
    leader.set(1);
    info!(identity = %elector.identity(), "became leader");
    let (state, watch) = watch::channel(true);
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(hold(elector, renewed, state, stopped, leader));
    Leadership { state: watch, stop: Some(stop), task }
}

/// Renews the Lease every retry period until it cannot for `renew_deadline`, another replica
/// holds it, or `stop` says to release it.
async fn hold(
    mut elector: Elector,
    mut renewed: Instant,
    state: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
    leader: Gauge,
) {
    let times = elector.candidate.times;
    let mut wait = times.retry_period;
    loop {
        let deadline = renewed + times.renew_deadline;
        let woke = tokio::select! {
            biased;
            _ = &mut stop => None,
            () = tokio::time::sleep_until((Instant::now() + wait).min(deadline)) => Some(()),
        };
        if woke.is_none() {
            // Stop leading first: the Lease may be taken the moment it is released.
            leader.set(0);
            let _ = state.send(false);
            match tokio::time::timeout(times.renew_deadline, elector.release()).await {
                Ok(Ok(true)) => info!("released the Lease"),
                Ok(Ok(false)) => info!("the Lease was no longer ours to release"),
                Ok(Err(e)) => warn!(error = %e, "could not release the Lease; it runs out by itself"),
                Err(_) => warn!("could not release the Lease in time; it runs out by itself"),
            }
            return;
        }
        let started = Instant::now();
        // (whether leadership is lost for sure, why the renewal failed)
        // After a pause (SIGSTOP, a stalled node) the deadline may be gone already: another
        // replica may lead by now, so no renewal is even tried.
        let attempt = match started < deadline {
            true => Some(tokio::time::timeout_at(deadline, elector.try_acquire_or_renew(true)).await),
            false => None,
        };
        let (lost, why) = match attempt {
            None | Some(Err(_)) => (true, "not renewed within the renew deadline".to_owned()),
            Some(Ok(Ok(Tried::Holds))) => {
                renewed = started;
                wait = times.retry_period;
                continue;
            }
            Some(Ok(Ok(Tried::HeldBy(h)))) => (true, format!("the Lease is held by {h}")),
            Some(Ok(Ok(Tried::Conflict))) => (false, "the Lease changed under us".to_owned()),
            Some(Ok(Err(e))) => (false, format!("renewing failed: {e}")),
        };
        if !lost && Instant::now() < deadline {
            debug!(%why, "renewal failed; trying again before the deadline");
            wait = times.retry_period / 4;
            continue;
        }
        leader.set(0);
        warn!(%why, "lost leadership");
        let _ = state.send(false);
        return;
    }
}

/// This replica's hold on the Lease, renewed in the background.
pub struct Leadership {
    state: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Resolves when leadership is lost (it could not be renewed in time, or another replica
    /// took the Lease).
    pub async fn lost(&mut self) {
        let _ = self.state.wait_for(|leader| !leader).await;
    }

    /// Stops renewing and releases the Lease, so that a standby takes over at its next try.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // Without `release`, the Lease simply runs out.
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
