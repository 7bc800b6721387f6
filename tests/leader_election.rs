//! Leader election when replicas start in the same instant (a fresh install, a rollout) against
//! an API server that takes a few milliseconds per Lease request: the moment two replicas both
//! read a free Lease and both write it. The replicas run in this process (each with its own
//! client, connections, health and leader gauge), so that many seeded starts stay quick.

use kube_emulator::KubeEmulator;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use slack_token_operator::{
    health::{Health, Role},
    leader::{self, Candidate, LeaseTimes},
};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::watch, time::Instant};

/// Seeded starts, alternately of 2 and 3 replicas.
const STARTS: u64 = 60;
const SEED: u64 = 20;

/// Short enough that a standby takes a released Lease within tens of milliseconds; the Lease
/// itself holds 2 s (whole seconds, the least `LeaseTimes::lasting` gives).
fn times() -> LeaseTimes {
    LeaseTimes {
        duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1300),
        retry_period: Duration::from_millis(40),
    }
}

/// One replica's leadership, as it reported it: from "became leader" to when it stopped
/// leading (lost, or released on a graceful stop); `None` while it still leads.
#[derive(Debug, Clone)]
struct Interval {
    replica: usize,
    from: Instant,
    to: Option<Instant>,
}

type Reports = Arc<Mutex<Vec<Interval>>>;

struct Replica {
    health: Arc<Health>,
    gauge: prometheus_client::metrics::gauge::Gauge,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn_replica(
    client: kube::Client,
    lease: &str,
    replica: usize,
    delay: Duration,
    go: &watch::Receiver<bool>,
    reports: &Reports,
) -> Replica {
    let candidate = Candidate {
        namespace: "default".into(),
        lease: lease.into(),
        identity: format!("op-{replica}"),
        times: times(),
    };
    let health = Arc::new(Health::default());
    let gauge = prometheus_client::metrics::gauge::Gauge::default();
    let (stop, stopped) = watch::channel(false);
    let (mut go, reports) = (go.clone(), reports.clone());
    let (h, g) = (health.clone(), gauge.clone());
    let task = tokio::spawn(async move {
        let mut stopped_ = stopped.clone();
        let _ = go.wait_for(|go| *go).await;
        tokio::time::sleep(delay).await;
        let mut leadership = tokio::select! {
            l = leader::acquire(client, candidate, &h, g) => l,
            _ = stopped_.wait_for(|s| *s) => return,
        };
        let index = {
            let mut reports = reports.lock().unwrap();
            reports.push(Interval { replica, from: Instant::now(), to: None });
            reports.len() - 1
        };
        let mut stopped = stopped.clone();
        let graceful = tokio::select! {
            () = leadership.lost() => false,
            _ = stopped.wait_for(|s| *s) => true,
        };
        reports.lock().unwrap()[index].to = Some(Instant::now());
        if graceful {
            leadership.release().await;
        }
    });
    Replica { health, gauge, stop, task }
}

/// Pairs of intervals of different replicas that share an instant (an open one lasts till `now`).
fn overlaps(reports: &[Interval], now: Instant) -> Vec<(Interval, Interval)> {
    let mut found = Vec::new();
    for (i, a) in reports.iter().enumerate() {
        for b in &reports[i + 1..] {
            let (a_to, b_to) = (a.to.unwrap_or(now), b.to.unwrap_or(now));
            if a.replica != b.replica && a.from.max(b.from) < a_to.min(b_to) {
                found.push((a.clone(), b.clone()));
            }
        }
    }
    found
}

async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("not within {within:?}: {what}"));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

fn leaders(replicas: &[Replica]) -> Vec<usize> {
    (0..replicas.len()).filter(|&i| replicas[i].gauge.get() == 1).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_started_together_never_lead_at_the_same_time_and_all_know_their_role() {
    let kube = KubeEmulator::start().await.unwrap();
    // A few milliseconds per Lease request, different for each: requests overtake one another.
    kube.faults().add_latency_between(
        None,
        Some("leases"),
        Duration::from_micros(500),
        Duration::from_millis(10),
        SEED,
    );
    let mut rng = StdRng::seed_from_u64(SEED);
    // Each replica its own client and connections (built once: a client takes a while to build).
    let clients: Vec<kube::Client> = (0..3).map(|_| kube.client()).collect();
    let mut failures = Vec::new();
    let mut handovers = Vec::new();
    let started = std::time::Instant::now();
    for start in 0..STARTS {
        let n = 2 + (start % 2) as usize;
        let lease = format!("start-{start}");
        let reports: Reports = Arc::default();
        let (go, ready) = watch::channel(false);
        // Started within the same millisecond, in a seeded order.
        let replicas: Vec<Replica> = (0..n)
            .map(|i| {
                let delay = Duration::from_micros(rng.random_range(0..1000));
                spawn_replica(clients[i].clone(), &lease, i, delay, &ready, &reports)
            })
            .collect();
        let _ = go.send(true);
        let mut outcome = until("every replica knows its role", Duration::from_secs(3), || {
            replicas.iter().all(|r| matches!(r.health.state().role, Role::Leader | Role::Standby))
        })
        .await;
        // The leader stops gracefully: a standby takes over.
        if outcome.is_ok() {
            let first = leaders(&replicas);
            if let [leader] = first[..] {
                let released = Instant::now();
                let _ = replicas[leader].stop.send(true);
                outcome = until("a standby takes over", Duration::from_secs(10), || {
                    reports.lock().unwrap().iter().any(|i| i.replica != leader)
                })
                .await;
                handovers.push(released.elapsed());
            }
        }
        let now = Instant::now();
        let found = overlaps(&reports.lock().unwrap(), now);
        let roles: Vec<Role> = replicas.iter().map(|r| r.health.state().role).collect();
        for r in &replicas {
            let _ = r.stop.send(true);
        }
        for r in replicas {
            let _ = r.task.await;
        }
        if let Err(e) = outcome {
            failures.push(format!("start {start} ({n} replicas): {e}; roles {roles:?}"));
        }
        if !found.is_empty() {
            failures.push(format!("start {start} ({n} replicas): two leaders at once: {found:?}"));
        }
    }
    handovers.sort();
    eprintln!(
        "{STARTS} starts in {:?}; graceful handover (retry period {:?}): median {:?}, max {:?}; failed: {}",
        started.elapsed(),
        times().retry_period,
        handovers.get(handovers.len() / 2),
        handovers.last(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} of {STARTS} starts failed:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_follows_the_lease_when_it_is_deleted_and_the_former_leader_steps_down() {
    use k8s_openapi::api::coordination::v1::Lease;
    let kube = KubeEmulator::start().await.unwrap();
    let reports: Reports = Arc::default();
    let (go, ready) = watch::channel(true);
    drop(go);
    let first = spawn_replica(kube.client(), "vanishing", 0, Duration::ZERO, &ready, &reports);
    until("op-0 leads", Duration::from_secs(10), || first.gauge.get() == 1).await.unwrap();
    let second = spawn_replica(kube.client(), "vanishing", 1, Duration::ZERO, &ready, &reports);
    until("op-1 stands by", Duration::from_secs(10), || second.health.state().role == Role::Standby)
        .await
        .unwrap();

    // Someone deletes the Lease. The leader, finding it gone at its next renewal, stops leading;
    // the standby, which saw op-0 hold it, creates it only once op-0's hold would have run out.
    let leases: kube::Api<Lease> = kube::Api::default_namespaced(kube.client());
    let deleted = Instant::now();
    leases.delete("vanishing", &Default::default()).await.unwrap();
    until("op-0 stepped down", Duration::from_secs(10), || first.gauge.get() == 0).await.unwrap();
    until("op-1 leads", Duration::from_secs(10), || second.health.state().role == Role::Leader)
        .await
        .unwrap();
    // (Timed from its last look at op-0's record, up to a retry period before the deletion.)
    assert!(deleted.elapsed() >= times().duration / 2, "op-1 waited for op-0's hold to run out");
    let holder = leases.get("vanishing").await.unwrap().spec.and_then(|s| s.holder_identity);
    assert_eq!(holder.as_deref(), Some("op-1"));
    let reports = reports.lock().unwrap().clone();
    assert!(overlaps(&reports, Instant::now()).is_empty(), "{reports:?}");
    assert_eq!(reports.iter().map(|i| i.replica).collect::<Vec<_>>(), [0, 1]);
    for r in [first, second] {
        let _ = r.stop.send(true);
        let _ = r.task.await;
    }
}
