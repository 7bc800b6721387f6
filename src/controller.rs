//! The controller: watches, the reconcile path, status and Events.
//!
//! `reconcile` reads top to bottom: validate, read the credentials, honour a pending backoff,
//! rotate if due (see [`crate::rotation`] for the write order), publish, then report status and
//! schedule the next wake-up at exactly the next rotation time. A reconcile that changes nothing
//! writes nothing.

use crate::{
    backoff, cleanup,
    clock::{format_time, SharedClock},
    crd::{SlackToken, TokenType},
    credentials::{Credentials, ROTATED_FOR_ANNOTATION, SLACKTOKEN_LABEL},
    duration::GoDuration,
    error::Error,
    manual,
    metrics::{ReasonLabels, TypeLabels},
    rotation::{self, Rotator, Trigger, Unsaved},
    schedule::{self, TokenTimes},
    slack::SlackClient,
    status::{self, Done, Warning, READY},
};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::{Api, PartialObjectMeta},
    runtime::{
        controller::{self, Action, Controller},
        events::{Event, EventType, Recorder, Reporter},
        reflector,
        reflector::ObjectRef,
        watcher, WatchStreamExt,
    },
    Client, Resource, ResourceExt,
};
use secrecy::SecretString;
use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    sync::Arc,
    time::Duration,
};
use tracing::{info, instrument, warn};

/// Field manager for every write, and the reporting controller of Events.
pub const MANAGER: &str = "slack-token-operator";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "slack-token-operator";
/// Any new value triggers one immediate rotation (like cert-manager's renew).
pub const ROTATE_ANNOTATION: &str = "slack.rotator.dev/rotate";

/// Reconciles running at once, across all SlackTokens of one watched scope.
const MAX_CONCURRENT_RECONCILES: u16 = 16;

/// The shortest wait before a scheduled reconcile.
const MIN_REQUEUE: Duration = Duration::from_secs(1);

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
    pub unsaved: Unsaved,
    pub backoff: backoff::Gate,
    pub metrics: Arc<crate::metrics::Metrics>,
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
        let reporter = Reporter { controller: MANAGER.into(), instance: std::env::var("POD_NAME").ok() };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            slack,
            clock,
            unsaved: Unsaved::default(),
            backoff: backoff::Gate::default(),
            metrics: Arc::default(),
            settings,
        })
    }

    /// Publishes an Event about `stk`. Never contains a token: callers pass fixed texts and names.
    pub async fn event(&self, stk: &SlackToken, type_: EventType, reason: &str, note: String) {
        let event =
            Event { type_, reason: reason.into(), note: Some(note), action: reason.into(), secondary: None };
        if let Err(e) = self.recorder.publish(&event, &stk.object_ref(&())).await {
            // An Event is a courtesy; failing to record one must not fail the rotation.
            warn!(error = %e, "could not publish event");
        }
    }
}

/// Runs the controller until a shutdown signal. `namespaces` empty = all namespaces.
pub async fn run(ctx: Arc<Context>, namespaces: Vec<String>) {
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.into_iter().map(Some).collect() };
    futures::future::join_all(scopes.into_iter().map(|ns| run_scope(ctx.clone(), ns))).await;
}

async fn run_scope(ctx: Arc<Context>, namespace: Option<String>) {
    let client = ctx.client.clone();
    let (tokens, secrets): (Api<SlackToken>, Api<PartialObjectMeta<Secret>>) = match &namespace {
        Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client, ns)),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let (reader, writer) = reflector::store();
    // Our own status writes must not wake us: only spec, annotations, finalizers and deletion do.
    // The cache only needs what names the object and what the predicate hashes: reconcile reads
    // the SlackToken afresh from the API server. Dropping managedFields and status keeps memory
    // per SlackToken small when there are thousands.
    let slim = watcher(tokens, watcher::Config::default()).modify(|stk| {
        stk.managed_fields_mut().clear();
        stk.status = None;
    });
    let token_stream = reflector(writer, slim)
        .default_backoff()
        .applied_objects()
        .predicate_filter(inputs_hash, Default::default());
    // Only Secrets we labelled, and only their metadata: memory stays flat however many other
    // Secrets the cluster holds, and token values never enter this process through the watch.
    let secret_stream = watcher(secrets, watcher::Config::default().labels(SLACKTOKEN_LABEL))
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

/// Only reached when writing status itself failed; reconcile reports every other failure in status.
fn error_policy(_stk: Arc<SlackToken>, error: &Error, _ctx: Arc<Context>) -> Action {
    warn!(error = %error, "could not record reconcile result");
    Action::requeue(Duration::from_secs(15))
}

#[instrument(skip_all, fields(slacktoken = %cached.name_any(), namespace = cached.namespace().unwrap_or_default()))]
pub async fn reconcile(cached: Arc<SlackToken>, ctx: Arc<Context>) -> Result<Action, Error> {
    let Some(ns) = cached.namespace() else {
        return Ok(Action::await_change());
    };
    let tokens: Api<SlackToken> = Api::namespaced(ctx.client.clone(), &ns);
    // Decide on the object as the API server has it now, not as the cache last saw it: a status
    // that lags behind would make us handle the same rotate request twice.
    let Some(stk) = tokens.get_opt(&cached.name_any()).await? else {
        ctx.backoff.clear(&cached); // gone: forget its retry state
        return Ok(Action::await_change());
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let now = ctx.clock.now();
    ctx.metrics.reconciles.inc();

    let outcome = if stk.meta().deletion_timestamp.is_some() {
        match cleanup::on_delete(&ctx, &tokens, &secrets, &stk).await {
            Ok(()) => return Ok(Action::await_change()),
            Err(e) => Err(e),
        }
    } else {
        match cleanup::sync_finalizer(&tokens, &stk).await {
            Ok(()) => converge(&stk, &ctx, &secrets, now).await,
            Err(e) => Err(e),
        }
    };
    ctx.metrics.unsaved_tokens.set(ctx.unsaved.len() as i64);
    let action = match outcome {
        Ok(Converged::Waiting(retry_in)) => return Ok(Action::requeue(retry_in)),
        Ok(Converged::Done(done)) => {
            ctx.backoff.clear(&stk);
            report_warnings(&ctx, &stk, &done).await;
            status::write(&tokens, stk.clone(), |stk, old| status::success(stk, old, &done, now)).await?;
            match done.wake_at() {
                // Never sooner than MIN_REQUEUE: a time already past must not become a hot loop.
                Some(at) if !stk.spec.suspend => {
                    Action::requeue(schedule::until(ctx.clock.now(), at).max(MIN_REQUEUE))
                }
                _ => Action::await_change(),
            }
        }
        Err(error) => {
            let old = stk.status.clone().unwrap_or_default();
            let attempts = old.failed_attempts.saturating_add(1);
            let expiry = old.expiration_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
            let time_left = expiry.map(|e| schedule::until(now, e));
            let delay = backoff::delay(&error, attempts, time_left, &stk.uid().unwrap_or_default());
            ctx.backoff.hold(&stk, delay);
            ctx.metrics.failures.get_or_create(&ReasonLabels { reason: error.reason().to_owned() }).inc();
            let message = error.user_message(&stk.spec.credentials_ref.name);
            warn!(reason = error.reason(), %message, attempts, retry_in_secs = delay.as_secs(), "reconcile failed");
            let note = format!("{}: {message}", error.reason());
            ctx.event(&stk, EventType::Warning, "RotationFailed", note).await;
            status::write(&tokens, stk.clone(), |stk, old| {
                status::failure(stk, old, error.reason(), &message, now)
            })
            .await?;
            Action::requeue(delay)
        }
    };
    Ok(action)
}

/// The result of a reconcile that did not fail.
pub enum Converged {
    /// Still backing off from an earlier failure and nothing relevant changed.
    Waiting(Duration),
    Done(Box<Done>),
}

/// Reads and checks the credentials, then hands over to the path for the token's type.
async fn converge(
    stk: &SlackToken,
    ctx: &Context,
    secrets: &Api<Secret>,
    now: Timestamp,
) -> Result<Converged, Error> {
    let spec = &stk.spec;
    let warnings = validate(stk)?;
    let creds_name = &spec.credentials_ref.name;
    let creds_secret = secrets.get_opt(creds_name).await?;
    if !fresh_rotate_request(stk, creds_secret.as_ref()) && !ctx.unsaved.holds(stk) {
        let creds_version = creds_secret.as_ref().and_then(|s| s.resource_version());
        if let Some(wait) = ctx.backoff.remaining(stk, creds_version.as_deref()) {
            return Ok(Converged::Waiting(wait));
        }
    }
    let Some(creds_secret) = creds_secret else {
        ctx.backoff.observe(stk, None);
        return Err(Error::CredentialsNotFound { name: creds_name.clone() });
    };
    if let Some(owner) = creds_secret.labels().get(SLACKTOKEN_LABEL) {
        if owner != &stk.name_any() {
            return Err(Error::CredentialsInUse { name: creds_name.clone(), owner: owner.clone() });
        }
    }
    // Claim the credentials Secret before anything can fail on its content, so that the user's
    // fix to it wakes us through the watch (and, with revokeOnDelete, it outlives the SlackToken).
    let creds_secret = cleanup::claim_credentials(secrets, stk, creds_secret).await?;
    // A changed spec may have moved credentialsRef away from a Secret we hold (a new SlackToken
    // has none: nothing to look for).
    let observed = stk.status.as_ref().and_then(|s| s.observed_generation);
    if observed.is_some() && observed != stk.meta().generation {
        cleanup::release_stale_credentials(secrets, stk).await?;
    }
    // A failure from here on holds retries until the SlackToken or these credentials change.
    ctx.backoff.observe(stk, creds_secret.resource_version());
    let creds = Credentials::from_secret(&creds_secret)
        .map_err(|source| Error::BadCredentials { name: creds_name.clone(), source })?;
    let mut done = match spec.token_type {
        TokenType::Manual => manual::converge(stk, ctx, secrets, creds_secret, creds, now).await?,
        TokenType::OAuth | TokenType::AppConfiguration => {
            converge_rotating(stk, ctx, secrets, creds_secret, creds, now).await?
        }
    };
    done.warnings.splice(0..0, warnings);
    Ok(Converged::Done(Box::new(done)))
}

/// Whether `slack.rotator.dev/rotate` holds a value no rotation has satisfied yet: not the one
/// recorded in status, nor the one saved with the current tokens in the credentials Secret.
fn fresh_rotate_request(stk: &SlackToken, creds_secret: Option<&Secret>) -> bool {
    let Some(request) = stk.annotations().get(ROTATE_ANNOTATION) else {
        return false;
    };
    let in_status = stk.status.as_ref().and_then(|s| s.last_rotate_request.as_ref());
    let in_credentials = creds_secret.and_then(|s| s.annotations().get(ROTATED_FOR_ANNOTATION));
    stk.spec.token_type != TokenType::Manual && in_status != Some(request) && in_credentials != Some(request)
}

/// OAuth and AppConfiguration tokens: rotate through Slack when due, then publish.
async fn converge_rotating(
    stk: &SlackToken,
    ctx: &Context,
    secrets: &Api<Secret>,
    creds_secret: Secret,
    creds: Credentials,
    now: Timestamp,
) -> Result<Done, Error> {
    let spec = &stk.spec;
    let bad = |source| Error::BadCredentials { name: spec.credentials_ref.name.clone(), source };
    let rotator = Rotator { secrets, slack: &ctx.slack, clock: &ctx.clock, unsaved: &ctx.unsaved };
    let mut times = TokenTimes { issued_at: creds.issued_at, expires_at: creds.expires_at };
    let period = spec.rotation_period.map(|d| d.as_std());
    let renew_before = spec.renew_before.map(|d| d.as_std());
    let due = schedule::next_rotation(times, period, renew_before).is_some_and(|next| next <= now);
    let rotate_request = stk.annotations().get(ROTATE_ANNOTATION).cloned();
    let requested = fresh_rotate_request(stk, Some(&creds_secret));

    let trigger = if ctx.unsaved.holds(stk) {
        Some(Trigger::SavePending)
    } else if spec.suspend {
        None
    } else if spec.token_type == TokenType::OAuth
        && creds.refresh_token.is_none()
        && creds.legacy_token.is_some()
    {
        Some(Trigger::Exchange)
    } else if creds.needs_first_token() {
        Some(Trigger::FirstToken)
    } else if requested {
        Some(Trigger::Requested)
    } else if due {
        Some(Trigger::Due)
    } else {
        None
    };

    let mut identity = None;
    let token: SecretString = match trigger {
        Some(trigger) => {
            let (saved, issued) = rotator.rotate(stk, creds_secret, &creds, trigger).await?;
            identity = Some(issued.identity.clone());
            let saved_creds = Credentials::from_secret(&saved).map_err(bad)?;
            times = TokenTimes { issued_at: saved_creds.issued_at, expires_at: saved_creds.expires_at };
            issued.access_token
        }
        None => creds
            .access_token
            .clone()
            .ok_or(bad(crate::credentials::CredentialsError::Missing(crate::credentials::ACCESS_TOKEN)))?,
    };
    rotation::publish(secrets, stk, &token).await?;

    if let Some(trigger) = trigger {
        let expiry = times.expires_at.map(format_time).unwrap_or_else(|| "never".into());
        info!(?trigger, expires = %expiry, "rotated");
        let labels = TypeLabels { r#type: format!("{:?}", spec.token_type) };
        ctx.metrics.rotations.get_or_create(&labels).inc();
        let note = format!(
            "Rotated ({trigger:?}); published to Secret {}; new token expires {expiry}",
            spec.secret_ref.name
        );
        ctx.event(stk, EventType::Normal, "Rotated", note).await;
    }
    Ok(Done {
        rotated: trigger,
        next_rotation: schedule::next_rotation(times, period, renew_before),
        warnings: schedule_warnings(times, period, renew_before),
        times,
        identity,
        // A request is handled by this rotation, or was by one whose status write was lost.
        handled_rotate_request: rotate_request.filter(|_| trigger.is_some() || !requested),
        ..Done::default()
    })
}

/// Schedules that work, but not as the user may think.
fn schedule_warnings(
    times: TokenTimes,
    period: Option<Duration>,
    renew_before: Option<Duration>,
) -> Vec<Warning> {
    let mut warnings = Vec::new();
    if times.expires_at.is_none() && period.is_none() {
        warnings.push(Warning {
            reason: "NoExpiry",
            message: "Slack gave no expiry for this token and no rotationPeriod is set, so it is not rotated on a schedule".into(),
        });
    }
    if let Some(lifetime) =
        times.lifetime().filter(|&life| schedule::renew_before_too_long(renew_before, Some(life)))
    {
        let used = schedule::effective_renew_before(renew_before, Some(lifetime));
        warnings.push(Warning {
            reason: "RenewBeforeTooLong",
            message: format!(
                "renewBefore {} is not shorter than the token's lifetime {}; renewing {} before expiry instead",
                GoDuration(renew_before.unwrap_or_default()),
                GoDuration(lifetime),
                GoDuration(used)
            ),
        });
    }
    warnings
}

/// Checks a spec can work. Returns warnings that do not stop rotation.
fn validate(stk: &SlackToken) -> Result<Vec<Warning>, Error> {
    let spec = &stk.spec;
    if spec.credentials_ref.name == spec.secret_ref.name {
        return Err(Error::InvalidSpec(
            "credentialsRef and secretRef name the same Secret; the output Secret must be a separate one"
                .into(),
        ));
    }
    if spec.rotation_period.is_some_and(|p| p.as_std().is_zero()) {
        return Err(Error::InvalidSpec("rotationPeriod must be greater than zero".into()));
    }
    if spec.token_type == TokenType::Manual {
        manual::settings(spec)?;
        return Ok(Vec::new());
    }
    let mut warnings = Vec::new();
    if let Some(period) = spec.rotation_period.filter(|p| p.as_std() < schedule::SHORT_ROTATION_PERIOD) {
        warnings.push(Warning {
            reason: "ShortRotationPeriod",
            message: format!(
                "rotationPeriod {period} is under 1h: Slack keeps only two access tokens active, so consumers must reload Secret {} within {period}",
                spec.secret_ref.name
            ),
        });
    }
    Ok(warnings)
}

/// A warning is announced by an Event once, when it first appears in the Ready message.
async fn report_warnings(ctx: &Context, stk: &SlackToken, done: &Done) {
    let ready = status::find(stk.status.as_ref(), READY).map(|c| c.message.as_str()).unwrap_or_default();
    for warning in done.warnings.iter().filter(|w| !ready.contains(w.message.as_str())) {
        ctx.event(stk, EventType::Warning, warning.reason, warning.message.clone()).await;
    }
}
