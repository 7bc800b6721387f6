//! The controller: which changes wake a reconcile, and what is kept in memory to know.
//!
//! Two watches feed one queue: SlackTokens (but only changes a reconcile acts on: spec,
//! annotations of ours, finalizers, deletion; never our own status writes) and the metadata of
//! Secrets labelled `slack.rotator.dev/slacktoken`, mapped to the SlackToken the label names,
//! but never for a version of a Secret that we wrote ourselves (`secrets::OwnWrites`): a
//! rotation's own writes do not wake a second reconcile.
//!
//! Memory per SlackToken is what names it, what the wake-up filter hashes and what orders the work
//! (`reconcile::turns`): the cache holds `CachedToken`s, metadata without labels, managed fields
//! or other controllers' annotations, no spec, and of the status only the times, deserialized
//! as such. Every reconcile reads the SlackToken afresh, so nothing else is needed here.
//!
//! The bound on work in flight and its order (most urgent first) live in `reconcile::turns`: a
//! reconcile without a turn parks its SlackToken there and returns, and comes back through
//! `reconcile_on` when a slot is kept for it. kube-runtime's runner holds only a few more than
//! the running ones. When each SlackToken is next due (a rotation, a check, a retry after any
//! failure, a Retry-After) is `reconcile::alarms`' alone, which asks through the same
//! `reconcile_on`: reconcile hands kube-runtime no error and no requeue, so its scheduler holds no
//! entry per SlackToken.
//!
//! With a label selector (`run --selector`) only matching SlackTokens are watched, so several
//! operators, each with its own selector and Lease, share a cluster's SlackTokens between them.
//!
//! The watches also tell the probes when they have listed everything once (`/readyz`), and the
//! metrics when a SlackToken is gone (its series go with it).

use crate::{
    ops::health::Health,
    reconcile::{reconcile, turns, Context, MAX_CONCURRENT_RECONCILES, RUNNER_CONCURRENCY},
    resource::{CachedToken, OUR_ANNOTATIONS, SLACKTOKEN_LABEL},
    secrets::Seen,
};
use futures::{Stream, StreamExt, TryStreamExt};
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
    collections::{hash_map::DefaultHasher, HashMap, HashSet},
    convert::Infallible,
    hash::{BuildHasher, Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};
use tracing::{debug, warn};

/// Which SlackTokens one operator looks after.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Namespaces to watch; empty = all namespaces.
    pub namespaces: Vec<String>,
    /// A label selector the SlackTokens must match (`run --selector`); `None` = all.
    pub selector: Option<String>,
}

/// Runs the controller until a shutdown signal. `namespaces` empty = all namespaces.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>) {
    run_scoped(ctx, Scope { namespaces, selector: None }).await
}

/// Runs the controller for the SlackTokens of `scope` until a shutdown signal.
pub async fn run_scoped(ctx: Arc<Context>, scope: Scope) {
    let namespaces: Vec<Option<String>> = if scope.namespaces.is_empty() {
        vec![None]
    } else {
        scope.namespaces.into_iter().map(Some).collect()
    };
    // Two watches per namespace: SlackTokens and Secrets.
    ctx.health.watches_started(2 * namespaces.len());
    let selector = scope.selector;
    let controllers = futures::future::join_all(
        namespaces.into_iter().map(|ns| run_scope(ctx.clone(), ns, selector.clone())),
    );
    // The alarms ring for as long as the controllers run (they ask through `reconcile_on`).
    tokio::select! {
        _ = controllers => {}
        () = ctx.alarms.run(&ctx.turns) => {}
    }
    ctx.health.stopped();
}

/// Follows one watch's events for the probes, and for SlackTokens that go, the per-token metrics
/// and the turns.
struct WatchTracker {
    health: Arc<Health>,
    /// `None` for the Secret watch: only SlackTokens have series and turns.
    tokens: Option<Arc<Context>>,
    namespace: Option<String>,
    synced: bool,
    /// SlackTokens seen in the list being received.
    listed: HashSet<(String, String)>,
    /// The SlackToken watch's wake-up filter, told of SlackTokens that go.
    wakes: Option<Arc<Wakes>>,
}

impl WatchTracker {
    fn new(ctx: &Arc<Context>, namespace: &Option<String>, wakes: Option<Arc<Wakes>>) -> Self {
        Self {
            health: ctx.health.clone(),
            tokens: wakes.is_some().then(|| ctx.clone()),
            namespace: namespace.clone(),
            synced: false,
            listed: HashSet::new(),
            wakes,
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
                if let Some(ctx) = &self.tokens {
                    ctx.metrics.forget_tokens_except(self.namespace.as_deref(), &self.listed);
                    ctx.turns.forget_all_except(self.namespace.as_deref(), &self.listed);
                    ctx.alarms.forget_all_except(self.namespace.as_deref(), &self.listed);
                }
                if let Some(wakes) = &self.wakes {
                    wakes.forget_all_except(&self.listed);
                }
                // Not kept at the size of the list: it is needed again only at the next one.
                self.listed = HashSet::new();
                if !self.synced {
                    self.synced = true;
                    self.health.watch_synced();
                }
            }
            watcher::Event::Delete(o) => {
                if let Some(ctx) = &self.tokens {
                    let (namespace, name) = key(o);
                    ctx.metrics.forget_token(&namespace, &name);
                    let key = turns::Key::new(&namespace, &name);
                    ctx.turns.forget(&key);
                    ctx.alarms.forget(&key);
                }
                if let Some(wakes) = &self.wakes {
                    let (namespace, name) = key(o);
                    wakes.forget(&namespace, &name);
                }
            }
            watcher::Event::Apply(_) => {}
        }
    }
}

async fn run_scope(ctx: Arc<Context>, namespace: Option<String>, selector: Option<String>) {
    let client = ctx.client.clone();
    let (tokens, secrets): (Api<CachedToken>, Api<PartialObjectMeta<Secret>>) = match &namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let (reader, writer) = reflector::store();
    let token_stream = slacktoken_news(&ctx, tokens, writer, &namespace, selector);
    let secret_stream = secret_news(&ctx, secrets, &namespace);
    let store = reader.clone();
    // Parked SlackTokens come back through here when a slot is kept for them.
    let (trigger, triggered) = futures::channel::mpsc::unbounded();
    ctx.turns.connect(namespace.clone(), trigger);
    Controller::for_stream(token_stream, reader)
        // The bound on work, and its order, are `reconcile::turns`'; the runner only needs room
        // for the running reconciles and the parked ones on their way out.
        .with_config(controller::Config::default().concurrency(RUNNER_CONCURRENCY))
        .reconcile_on(triggered)
        .watches_stream(secret_stream, move |secret| {
            let owner = secret.labels().get(SLACKTOKEN_LABEL)?;
            let slacktoken = ObjectRef::new(owner).within(&secret.namespace()?);
            // Another operator's SlackToken (another selector), or none: not ours to wake.
            store.get(&slacktoken)?;
            Some(slacktoken)
        })
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            let ctx = ctx.clone();
            async move { after_reconcile(&ctx, result) }
        })
        .await;
}

/// The SlackTokens to reconcile: the watch (kept in `writer`'s cache) filtered to the changes a
/// reconcile acts on ([`Wakes`]).
fn slacktoken_news(
    ctx: &Arc<Context>,
    tokens: Api<CachedToken>,
    writer: reflector::store::Writer<CachedToken>,
    namespace: &Option<String>,
    selector: Option<String>,
) -> impl Stream<Item = Result<CachedToken, watcher::Error>> {
    let mut config = watcher::Config::default();
    if let Some(selector) = &selector {
        config = config.labels(selector);
    }
    // Deserialized straight into the slim form the cache keeps (see `CachedToken`).
    let slim = watcher(tokens, config);
    let wakes = Arc::new(Wakes::default());
    let mut seen = WatchTracker::new(ctx, namespace, Some(wakes.clone()));
    reflector(writer, slim)
        .inspect(move |event| {
            if let Ok(event) = event {
                seen.see(event);
            }
        })
        .default_backoff()
        .applied_objects()
        .try_filter(move |stk| futures::future::ready(wakes.is_news(stk)))
}

/// The labelled Secrets whose change is news (see [`only_news`]). Only Secrets we labelled, and
/// only their metadata: memory stays flat however many other Secrets the cluster holds, and
/// token values never enter this process through the watch.
fn secret_news(
    ctx: &Arc<Context>,
    secrets: Api<PartialObjectMeta<Secret>>,
    namespace: &Option<String>,
) -> impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> {
    let mut seen = WatchTracker::new(ctx, namespace, None);
    let watch = watcher(secrets, watcher::Config::default().labels(SLACKTOKEN_LABEL))
        .inspect(move |event| {
            if let Ok(event) = event {
                seen.see(event);
            }
        })
        .default_backoff();
    only_news(ctx.clone(), watch)
}

/// What the controller says of each reconcile it ran, or could not run. One it could not run
/// because its SlackToken has left the cache (deleted, relabelled out of our selector) may have
/// had a slot kept for it in the turns: that reconcile will never come, so the slot goes on.
fn after_reconcile<T, E>(ctx: &Context, result: Result<T, controller::Error<E, watcher::Error>>)
where
    E: std::error::Error + 'static,
{
    match result {
        Ok(_) => {}
        Err(controller::Error::ObjectNotFound(gone)) => {
            debug!(slacktoken = %gone, "asked for a SlackToken no longer in the cache");
            ctx.turns.forget(&turns::Key::new(gone.namespace.as_deref().unwrap_or_default(), &gone.name));
        }
        Err(e) => warn!(error = %e, "reconcile failed"),
    }
}

/// The Secret watch events that are news to us (see [`news`]). Each event waits only for its own
/// SlackToken's reconcile: judged one after another, a Secret changed by someone else during a
/// slow rotation would hold every other Secret's event behind it for up to
/// [`OWN_WRITE_PATIENCE`]. Their order does not matter: each only asks for its SlackToken's
/// reconcile.
fn only_news(
    ctx: Arc<Context>,
    events: impl Stream<Item = Result<watcher::Event<PartialObjectMeta<Secret>>, watcher::Error>>,
) -> impl Stream<Item = Result<PartialObjectMeta<Secret>, watcher::Error>> {
    events
        .map(move |event| {
            let ctx = ctx.clone();
            async move { news(&ctx, event).await }
        })
        .buffer_unordered(MAX_CONCURRENT_RECONCILES)
        .filter_map(futures::future::ready)
}

/// How long a Secret watch event waits for the reconcile of its SlackToken to end (see [`news`]).
const OWN_WRITE_PATIENCE: Duration = Duration::from_secs(5);

/// Whether a Secret watch event is news to us: not a version we wrote ourselves. A deleted
/// Secret always is (an output Secret to restore).
///
/// The watch can show our write before the write's own answer has reached the reconcile that
/// made it, and so before it is remembered: an unknown version of a Secret whose SlackToken's
/// reconcile is running is judged once that reconcile has ended (at most
/// [`OWN_WRITE_PATIENCE`]). Judged at once, a burst of rotations in real time woke a second,
/// read-only reconcile for half of them.
async fn news(
    ctx: &Context,
    event: Result<watcher::Event<PartialObjectMeta<Secret>>, watcher::Error>,
) -> Option<Result<PartialObjectMeta<Secret>, watcher::Error>> {
    let secret = match event {
        Ok(watcher::Event::Delete(secret)) => {
            ctx.own_writes.forget(&secret.namespace().unwrap_or_default(), &secret.name_any());
            return Some(Ok(secret));
        }
        Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => secret,
        Ok(watcher::Event::Init | watcher::Event::InitDone) => return None,
        Err(e) => return Some(Err(e)),
    };
    let namespace = secret.namespace().unwrap_or_default();
    let rv = secret.resource_version();
    if ctx.own_writes.peek(&namespace, &secret.name_any(), rv.as_deref()) == Seen::Theirs {
        if let Some(owner) = secret.labels().get(SLACKTOKEN_LABEL) {
            let key = turns::Key::new(&namespace, owner);
            if ctx.turns.is_running(&key) {
                ctx.turns.ended(&key, OWN_WRITE_PATIENCE).await;
            }
        }
    }
    match ctx.own_writes.seen(&namespace, &secret.name_any(), rv.as_deref()) {
        Seen::Ours => None,
        Seen::Theirs => Some(Ok(secret)),
    }
}

/// Which SlackToken watch events are worth a reconcile: those that change what a reconcile acts
/// on (see [`inputs_hash`]), or show a SlackToken not seen before (a new uid under a known name
/// too). kube-runtime's `predicate_filter` does this keyed by three Strings per SlackToken
/// (1.5 MiB at 10,000), forgets only by age (an entry unseen for its TTL, an hour by default,
/// lets the next event through: our own status write after a rotation would wake one more
/// reconcile) and never sees a deletion; here a SlackToken is a hash of its namespace and name,
/// forgotten when it is deleted or missing from a re-list, and what it last
/// showed a hash of its uid and inputs: 16 bytes. Two SlackTokens whose names collide on 64 bits
/// would at worst wake each other's reconcile once more than needed.
#[derive(Default)]
struct Wakes {
    seen: Mutex<HashMap<u64, u64>>,
    hasher: std::hash::RandomState,
}

impl Wakes {
    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn key(&self, namespace: &str, name: &str) -> u64 {
        self.hasher.hash_one((namespace, name))
    }

    /// Whether this version of `stk` is news, remembering it.
    fn is_news(&self, stk: &CachedToken) -> bool {
        let key = self.key(stk.meta().namespace.as_deref().unwrap_or_default(), &stk.name_any());
        let inputs = self.hasher.hash_one((stk.meta().uid.as_deref(), inputs_hash(stk)));
        self.seen().insert(key, inputs) != Some(inputs)
    }

    /// A SlackToken is gone: its next appearance is news.
    fn forget(&self, namespace: &str, name: &str) {
        let key = self.key(namespace, name);
        self.seen().remove(&key);
    }

    /// After a re-list: forgets SlackTokens not in `listed` (namespace, name).
    fn forget_all_except(&self, listed: &HashSet<(String, String)>) {
        let keep: HashSet<u64> = listed.iter().map(|(ns, name)| self.key(ns, name)).collect();
        let mut seen = self.seen();
        seen.retain(|key, _| keep.contains(key));
        seen.shrink_to_fit();
    }
}

/// What a change must touch to be worth a reconcile.
fn inputs_hash(stk: &CachedToken) -> u64 {
    let mut h = DefaultHasher::new();
    stk.meta().generation.hash(&mut h);
    // Our annotations carry requests (rotate now, skip revoke); status-only writes must not wake
    // us. (The cache keeps only ours: see `CachedToken`.)
    stk.annotations().iter().filter(|(k, _)| k.starts_with(OUR_ANNOTATIONS)).for_each(|a| a.hash(&mut h));
    stk.meta().deletion_timestamp.is_some().hash(&mut h);
    stk.finalizers().hash(&mut h);
    h.finish()
}

/// Never called: `reconcile` hands no error to kube-runtime (it sets its own alarm instead).
fn error_policy(_stk: Arc<CachedToken>, error: &Infallible, _ctx: Arc<Context>) -> Action {
    match *error {}
}

#[cfg(test)]
mod tests;
