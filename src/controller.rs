//! The controller: which changes wake a reconcile, and how many run at once.
//!
//! Two watches feed one queue: SlackTokens (but only changes a reconcile acts on: spec,
//! annotations, finalizers, deletion; never our own status writes) and the metadata of Secrets
//! labelled `slack.rotator.dev/slacktoken`, mapped to the SlackToken the label names.
//!
//! The watches also tell the probes when they have listed everything once (`/readyz`), and the
//! metrics when a SlackToken is gone (its series go with it).

use crate::{
    error::Error,
    ops::{health::Health, metrics::Metrics},
    reconcile::{reconcile, Context},
    resource::{SlackToken, SLACKTOKEN_LABEL},
};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::{Api, PartialObjectMeta},
    runtime::{
        controller::{self, Action, Controller},
        reflector,
        reflector::ObjectRef,
        watcher, WatchStreamExt,
    },
    Resource, ResourceExt,
};
use std::{
    collections::{hash_map::DefaultHasher, HashSet},
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};
use tracing::warn;

/// Reconciles running at once, across all SlackTokens of one watched scope.
const MAX_CONCURRENT_RECONCILES: u16 = 16;

/// Runs the controller until a shutdown signal. `namespaces` empty = all namespaces.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>) {
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.into_iter().map(Some).collect() };
    // Two watches per scope: SlackTokens and Secrets.
    ctx.health.watches_started(2 * scopes.len());
    futures::future::join_all(scopes.into_iter().map(|ns| run_scope(ctx.clone(), ns))).await;
    ctx.health.stopped();
}

/// Follows one watch's events for the probes and the per-token metrics.
struct WatchTracker {
    health: Arc<Health>,
    /// `None` for the Secret watch: only SlackTokens have series.
    metrics: Option<Arc<Metrics>>,
    namespace: Option<String>,
    synced: bool,
    /// SlackTokens seen in the list being received.
    listed: HashSet<(String, String)>,
}

impl WatchTracker {
    fn new(ctx: &Context, namespace: &Option<String>, metrics: bool) -> Self {
        Self {
            health: ctx.health.clone(),
            metrics: metrics.then(|| ctx.metrics.clone()),
            namespace: namespace.clone(),
            synced: false,
            listed: HashSet::new(),
        }
    }

    fn see<K: Resource>(&mut self, event: &watcher::Event<K>) {
        let key = |o: &K| {
            (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
        };
        match event {
            watcher::Event::Init => self.listed.clear(),
            watcher::Event::InitApply(o) => {
                self.listed.insert(key(o));
            }
            watcher::Event::InitDone => {
                // A (re-)list is complete: SlackTokens deleted while the watch was down are gone.
                if let Some(metrics) = &self.metrics {
                    metrics.forget_tokens_except(self.namespace.as_deref(), &self.listed);
                }
                self.listed.clear();
                if !self.synced {
                    self.synced = true;
                    self.health.watch_synced();
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(metrics) = &self.metrics {
                    let (namespace, name) = key(o);
                    metrics.forget_token(&namespace, &name);
                }
            }
            watcher::Event::Apply(_) => {}
        }
    }
}

async fn run_scope(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let (tokens, secrets): (Api<SlackToken>, Api<PartialObjectMeta<Secret>>) = match &namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let (reader, writer) = reflector::store();
    // The cache only needs what names the object and what the predicate hashes: reconcile reads
    // the SlackToken afresh from the API server. Dropping managedFields and status keeps memory
    // per SlackToken small when there are thousands.
    let slim = watcher(tokens, watcher::Config::default()).modify(|stk| {
        stk.managed_fields_mut().clear();
        stk.status = None;
    });
    let mut tokens_seen = WatchTracker::new(&ctx, &namespace, true);
    let mut secrets_seen = WatchTracker::new(&ctx, &namespace, false);
    let token_stream = reflector(writer, slim)
        .inspect(move |event| {
            if let Ok(event) = event {
                tokens_seen.see(event);
            }
        })
        .default_backoff()
        .applied_objects()
        .predicate_filter(inputs_hash, Default::default());
    // Only Secrets we labelled, and only their metadata: memory stays flat however many other
    // Secrets the cluster holds, and token values never enter this process through the watch.
    let secret_stream = watcher(secrets, watcher::Config::default().labels(SLACKTOKEN_LABEL))
        .inspect(move |event| {
            if let Ok(event) = event {
                secrets_seen.see(event);
            }
        })
        .default_backoff()
        .touched_objects();
    // Bounded so that a start with thousands of SlackTokens does not open thousands of
    // connections at once to the API server and to Slack's rate-limited methods.
    let config = controller::Config::default().concurrency(MAX_CONCURRENT_RECONCILES);
    Controller::for_stream(token_stream, reader)
        .with_config(config)
        .watches_stream(secret_stream, |secret| {
            let owner = secret.labels().get(SLACKTOKEN_LABEL)?;
            Some(ObjectRef::new(owner).within(&secret.namespace()?))
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// What a change must touch to be worth a reconcile.
fn inputs_hash(stk: &SlackToken) -> Option<u64> {
    let mut h = DefaultHasher::new();
    stk.meta().generation.hash(&mut h);
    // Annotations carry requests (rotate now, skip revoke); status-only writes must not wake us.
    stk.annotations().hash(&mut h);
    stk.meta().deletion_timestamp.is_some().hash(&mut h);
    stk.finalizers().hash(&mut h);
    Some(h.finish())
}

/// Only reached when reading the SlackToken or writing its status failed; reconcile reports
/// every other failure in status.
fn error_policy(_stk: Arc<SlackToken>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, "could not record reconcile result");
    Action::requeue(Duration::from_secs(15))
}
