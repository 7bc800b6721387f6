//! One reconcile of one SlackToken: observe → decide → act → report.
//!
//! ```text
//!   observe ──► Snapshot ──► decide (pure) ──► Plan ──► act ──► Outcome ──► report ──► status, Events
//!   (reads)                                            (Slack, writes, in      (pure, then the
//!                                                       one fixed order)         status write)
//! ```
//!
//! `observe` reads the SlackToken and its two Secrets afresh, and what this process remembers
//! (a pair Slack issued that is not saved yet, a held failure). `decide` turns that into a
//! [`decide::Plan`] without touching anything: its table tests cover every row of behaviour.
//! `act` carries the plan out in the write order that keeps refresh tokens safe (see
//! [`act`]). `report` computes status, Events and the next wake-up, and writes status once.

mod act;
pub mod alarms;
pub mod backoff;
mod context;
mod decide;
mod events;
mod observe;
mod report;
pub mod schedule;
pub mod turns;

pub use context::{Context, Settings, MAX_CONCURRENT_RECONCILES, RUNNER_CONCURRENCY};

use crate::{
    error::Error,
    resource::{CachedToken, EventReason, SlackToken},
};
use decide::Plan;
use kube::{api::Api, runtime::controller::Action, ResourceExt};
use report::Report;
use std::{convert::Infallible, sync::Arc, time::Duration};
use tracing::{info, info_span, warn, Instrument};

/// One reconcile of the SlackToken `cached`, and when it is looked at next.
///
/// It never hands an error to kube-runtime: every next reconcile, whether due, a retry after a
/// failure or after a Retry-After, is an alarm in `alarms`, the one scheduler. (kube-runtime's
/// requeue would be a second: its own queue, its own order, each entry kept twice.) Its
/// `Infallible` error type says so to the compiler.
pub async fn reconcile(cached: Arc<CachedToken>, ctx: Arc<Context>) -> Result<Action, Infallible> {
    // A turn before anything else. Without one, the SlackToken is parked: it is reconciled again
    // when a slot is kept for it, most urgent first (see `turns`), and nothing of this reconcile
    // stays in memory meanwhile. The log span too is made only once there is a turn: a span
    // lives in the subscriber's registry, its fields formatted, for as long as it exists.
    let Some(_turn) = ctx.turns.take(&turns::Key::of(&cached), turns::urgency(&cached)) else {
        return Ok(Action::await_change());
    };
    let span = info_span!(
        "reconcile",
        slacktoken = %cached.name_any(),
        namespace = cached.namespace().unwrap_or_default()
    );
    let started = tokio::time::Instant::now();
    let key = turns::Key::of(&cached);
    let result = Box::pin(reconcile_one(cached, &ctx)).instrument(span.clone()).await;
    ctx.metrics.reconcile_duration.observe(started.elapsed().as_secs_f64());
    match result {
        // The next reconcile is this one's to say: it replaces any alarm set before.
        Ok(next) => ctx.alarms.set(&key, next),
        // Reading the SlackToken or writing its status failed, so nothing recorded this
        // reconcile: look again soon, or when already due if that is sooner.
        Err(error) => {
            span.in_scope(|| warn!(error = %error, "could not record reconcile result"));
            ctx.alarms.no_later_than(&key, UNRECORDED_RETRY);
        }
    }
    Ok(Action::await_change())
}

/// When a SlackToken whose reconcile could not be recorded (its read or status write failed) is
/// looked at again.
pub const UNRECORDED_RETRY: Duration = Duration::from_secs(15);

/// When the SlackToken wants its next reconcile, if nothing changes before; `None`: only when
/// something does.
type Next = Option<Duration>;

async fn reconcile_one(cached: Arc<CachedToken>, ctx: &Arc<Context>) -> Result<Next, Error> {
    let ctx = ctx.clone();
    let Some(stk) = observe::slacktoken(&ctx, &cached).await? else {
        ctx.backoff.clear(&cached.uid().unwrap_or_default()); // gone: forget its retry state
        ctx.metrics.forget_token(&cached.namespace().unwrap_or_default(), &cached.name_any());
        return Ok(None);
    };
    ctx.metrics.reconciles.inc();
    let tokens: Api<SlackToken> = Api::namespaced(ctx.client.clone(), &stk.namespace().unwrap_or_default());
    let snapshot = match observe::snapshot(&ctx, &stk).await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            let now = ctx.clock.now();
            let s = observe::Snapshot::unread(stk, now);
            return fail(&ctx, &tokens, &s, &error, None).await;
        }
    };
    let s = &snapshot;
    match decide::decide(s, &ctx.settings) {
        Plan::Nothing => Ok(None),
        Plan::Wait(left) => Ok(Some(left)),
        Plan::Finalize(plan) => reconcile_deletion(&ctx, &tokens, s, &plan).await,
        Plan::Converge(plan) => reconcile_convergence(&ctx, &tokens, s, &plan).await,
    }
}

/// Carries out and reports the letting go of a SlackToken being deleted.
async fn reconcile_deletion(
    ctx: &Context,
    tokens: &Api<SlackToken>,
    s: &observe::Snapshot,
    plan: &decide::Finalize,
) -> Result<Next, Error> {
    match act::finalize(ctx, s, plan).await {
        Ok(out) => {
            let note = match (plan, out.revoked) {
                (decide::Finalize::Skip(why), _) => Some((EventReason::RevokeSkipped, why.clone())),
                (decide::Finalize::Revoke, true) => {
                    Some((EventReason::Revoked, "the token was revoked with auth.revoke".to_owned()))
                }
                (decide::Finalize::Revoke, false) => None,
            };
            if let Some((reason, note)) = note {
                ctx.event(&s.slacktoken, reason, note).await;
            }
            ctx.metrics.forget_token(&s.namespace(), &s.slacktoken.name_any());
            Ok(None)
        }
        Err(error) => fail(ctx, tokens, s, &error, None).await,
    }
}

/// Carries out a converging plan, then reports it: status, Events, metrics and the next wake-up.
async fn reconcile_convergence(
    ctx: &Context,
    tokens: &Api<SlackToken>,
    s: &observe::Snapshot,
    plan: &decide::Converge,
) -> Result<Next, Error> {
    let mut out = act::Outcome::default();
    let result = act::converge(ctx, s, plan, &mut out).await;
    ctx.metrics.unsaved_tokens.set(ctx.pending.len() as i64);
    let result = result.and(plan.invalid.clone().map_or(Ok(()), |invalid| Err(invalid.into())));
    if let Err(error) = result {
        return fail(ctx, tokens, s, &error, out.credentials_version).await;
    }
    ctx.backoff.clear(&s.uid());
    let first = report::success(&s.slacktoken, s, plan, &out, &ctx.settings);
    if let Some(trigger) = out.rotated {
        ctx.metrics.count_rotation(type_label(&s.slacktoken), trigger.as_str());
        let expires = out.times.expires_at.map(crate::clock::format_time).unwrap_or_else(|| "never".into());
        info!(?trigger, %expires, "rotated");
    }
    publish_events(ctx, &s.slacktoken, &first).await;
    set_gauges(ctx, &s.slacktoken, &first);
    report::write_status(tokens, s.slacktoken.clone(), |stk| {
        report::success(stk, s, plan, &out, &ctx.settings).status
    })
    .await?;
    Ok(first.requeue)
}

/// Reports a failed reconcile: Ready=False with what to do, a `RotationFailed` Event, a hold on
/// retries until the backoff runs out or the inputs change.
async fn fail(
    ctx: &Context,
    tokens: &Api<SlackToken>,
    s: &observe::Snapshot,
    error: &Error,
    credentials_version: Option<String>,
) -> Result<Next, Error> {
    let pending = ctx.pending.get(&s.namespace(), &s.slacktoken.spec.credentials_ref.name).is_some();
    let first = report::failure(&s.slacktoken, s, error, pending);
    let delay = first.requeue.unwrap_or(report::MIN_REQUEUE);
    let mut inputs = decide::inputs(s);
    if credentials_version.is_some() {
        inputs.credentials_version = credentials_version;
    }
    ctx.backoff.hold(&s.uid(), delay, inputs);
    ctx.metrics.count_failure(type_label(&s.slacktoken), error.reason());
    // Not `message`: the JSON log format writes the event's own message under that key.
    let detail = error.user_message(&s.slacktoken.spec.credentials_ref.name);
    let attempts = first.status.failed_attempts;
    warn!(reason = error.reason(), %detail, attempts, retry_in_secs = delay.as_secs(), "reconcile failed");
    publish_events(ctx, &s.slacktoken, &first).await;
    set_gauges(ctx, &s.slacktoken, &first);
    report::write_status(tokens, s.slacktoken.clone(), |stk| report::failure(stk, s, error, pending).status)
        .await?;
    Ok(Some(delay))
}

/// The `type` label of a SlackToken's metrics: its `spec.type`.
fn type_label(stk: &SlackToken) -> &'static str {
    stk.spec.token_type.as_str()
}

/// The per-token series, from the status this reconcile reports.
fn set_gauges(ctx: &Context, stk: &SlackToken, report: &Report) {
    let gauges = report::token_gauges(stk.spec.token_type, &report.status);
    ctx.metrics.set_token(&stk.namespace().unwrap_or_default(), &stk.name_any(), type_label(stk), &gauges);
}

async fn publish_events(ctx: &Context, stk: &SlackToken, report: &Report) {
    for note in &report.events {
        ctx.event(stk, note.reason, note.note.clone()).await;
    }
}
