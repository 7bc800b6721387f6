//! Report: what a reconcile tells people (status, Events) and when it looks again, computed
//! from the snapshot, the plan and the outcome; then the one status write.
//!
//! Status is written only when it changed, and Events only when something happened or a
//! condition changed, so a reconcile that changes nothing writes nothing.

use super::{
    act::Outcome,
    backoff,
    context::Settings,
    decide::{Converge, Manual, TokenPlan, Trigger, Warning},
    observe::Snapshot,
    schedule::{self, TokenTimes},
};
use crate::{
    clock::format_time,
    conflict::{conflict_or, retry_on_conflict},
    error::{Error, RestartFailure},
    ops::metrics::TokenGauges,
    resource::{
        find_condition, set_condition, Condition, EventReason, GoDuration, ManualKind, RolloutRestartTarget,
        SlackToken, SlackTokenStatus, TokenType, PENDING_TOKEN, READY, ROLLOUT_RESTART, ROTATION_DUE,
    },
};
use jiff::Timestamp;
use kube::{
    api::{Api, Patch, PatchParams},
    Resource, ResourceExt,
};
use serde_json::{json, Value};
use std::time::Duration;

/// The shortest wait before a scheduled reconcile: a time already past must not become a hot loop.
pub const MIN_REQUEUE: Duration = Duration::from_secs(1);
/// How soon a rollout restart that the API server refused for a passing reason is tried again.
pub const RESTART_RETRY: Duration = Duration::from_secs(30);

/// An Event to record about the SlackToken (Normal or Warning as its reason says).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub reason: EventReason,
    pub note: String,
}

impl Note {
    fn new(reason: EventReason, note: String) -> Self {
        Self { reason, note }
    }
}

/// Everything a reconcile reports.
#[derive(Debug)]
pub struct Report {
    pub status: SlackTokenStatus,
    pub events: Vec<Note>,
    /// When to reconcile again; `None` waits for a change.
    pub requeue: Option<Duration>,
}

/// A converging reconcile that did all it planned.
///
/// `stk` is the SlackToken whose status is updated: the snapshot's, or a newer one if writing
/// status met a conflict.
pub fn success(
    stk: &SlackToken,
    s: &Snapshot,
    plan: &Converge,
    out: &Outcome,
    settings: &Settings,
) -> Report {
    let old = stk.status.clone().unwrap_or_default();
    let mut events = Vec::new();
    let mut warnings = plan.warnings.clone();
    let mut conditions = old.conditions.clone();
    let mut cleared = Vec::new();
    let (next_rotation, wake_at) = match &plan.token {
        Some(TokenPlan::Manual(manual)) => {
            let (next, wake) = manual_report(stk, s.now, manual, out, settings, &mut conditions, &mut events);
            if out.refused.is_none() {
                cleared.push(PENDING_TOKEN);
            }
            (Some(next), wake)
        }
        _ => rotating_schedule(stk, &old, out, &mut warnings),
    };
    if let Some(trigger) = out.rotated {
        events.push(Note::new(EventReason::Rotated, rotated_note(stk, trigger, out)));
    }
    if stk.spec.rollout_restart_targets.is_empty() {
        cleared.push(ROLLOUT_RESTART);
    }
    if !out.restarts.is_empty() {
        let (restarted, note) = restart_report(stk, &out.restarts, s.now);
        conditions = set_condition(&conditions, restarted);
        events.push(note);
    }
    events.extend(new_warnings(&old, &warnings));
    let suspended = stk.spec.suspend;
    conditions = set_condition(&conditions, ready(stk, &warnings, s.now));
    conditions.retain(|c| !cleared.contains(&c.type_.as_str()));
    let status = SlackTokenStatus {
        conditions,
        observed_generation: stk.meta().generation,
        last_rotation_time: out.times.issued_at.map(format_time).or_else(|| old.last_rotation_time.clone()),
        next_rotation_time: if suspended { None } else { next_rotation.map(format_time) },
        expiration_time: out.times.expires_at.map(format_time),
        rotation_count: old.rotation_count + u64::from(out.rotated.is_some()),
        last_failure_time: None,
        failed_attempts: 0,
        identity: out.identity.clone().or_else(|| old.identity.clone()),
        last_check_time: out.checked_at.map(format_time).or_else(|| old.last_check_time.clone()),
        last_rotate_request: last_rotate_request(plan, &old),
    };
    let requeue = match wake_at {
        Some(at) if !suspended => Some(schedule::until(s.now, at).max(MIN_REQUEUE)),
        _ => None,
    };
    Report { status, events, requeue: with_restart_retry(requeue, &out.restarts) }
}

/// The `slack.rotator.dev/rotate` value satisfied last: this reconcile's, or the one before.
fn last_rotate_request(plan: &Converge, old: &SlackTokenStatus) -> Option<String> {
    match &plan.token {
        Some(TokenPlan::Rotating(r)) => r.handled_request.clone().or_else(|| old.last_rotate_request.clone()),
        _ => old.last_rotate_request.clone(),
    }
}

/// A warning is announced by an Event once, when it first appears in the Ready message.
fn new_warnings(old: &SlackTokenStatus, warnings: &[Warning]) -> Vec<Note> {
    let ready_before = find_condition(&old.conditions, READY).map(|c| c.message.as_str()).unwrap_or_default();
    let new = warnings.iter().filter(|w| !ready_before.contains(w.message.as_str()));
    new.map(|warning| Note::new(warning.reason, warning.message.clone())).collect()
}

/// Rotating tokens: schedule warnings; returns (next rotation, wake-up time).
fn rotating_schedule(
    stk: &SlackToken,
    old: &SlackTokenStatus,
    out: &Outcome,
    warnings: &mut Vec<Warning>,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let period = stk.spec.rotation_period.map(|d| d.as_std());
    let renew_before = stk.spec.renew_before.map(|d| d.as_std());
    warnings.extend(schedule_warnings(out.times, period, renew_before));
    let next = schedule::next_rotation(out.times, period, renew_before);
    if out.times.expiry_assumed {
        warnings.push(expiry_assumed(out.times, next));
    }
    let last_check = out.checked_at.or_else(|| parse_time(old.last_check_time.as_deref()));
    let check = schedule::next_expiry_check(out.times, last_check);
    (next, [next, check].into_iter().flatten().min())
}

/// Ready=True, with the warnings in its message.
fn ready(stk: &SlackToken, warnings: &[Warning], now: Timestamp) -> Condition {
    let suspended = stk.spec.suspend;
    let mut message = format!(
        "{}token published to Secret {}",
        if suspended { "rotation suspended; " } else { "" },
        stk.spec.secret_ref.name
    );
    for warning in warnings {
        message.push_str("; warning: ");
        message.push_str(&warning.message);
    }
    let reason = if suspended { "Suspended" } else { "TokenPublished" };
    condition(stk, READY, true, reason, &message, now)
}

/// A restart to retry comes back within [`RESTART_RETRY`], whatever else is due.
fn with_restart_retry(
    requeue: Option<Duration>,
    restarts: &[(RolloutRestartTarget, Option<RestartFailure>)],
) -> Option<Duration> {
    match restarts.iter().any(|(_, f)| f.is_some_and(RestartFailure::is_retried)) {
        true => Some(requeue.map_or(RESTART_RETRY, |r| r.min(RESTART_RETRY))),
        false => requeue,
    }
}

/// The `RolloutRestart` condition and the Event for the restarts one reconcile made.
fn restart_report(
    stk: &SlackToken,
    restarts: &[(RolloutRestartTarget, Option<RestartFailure>)],
    now: Timestamp,
) -> (Condition, Note) {
    let namespace = stk.namespace().unwrap_or_default();
    let restarted: Vec<String> =
        restarts.iter().filter(|(_, f)| f.is_none()).map(|(t, _)| t.to_string()).collect();
    let failed: Vec<(&RolloutRestartTarget, RestartFailure)> =
        restarts.iter().filter_map(|(t, f)| f.map(|f| (t, f))).collect();
    let Some((_, first)) = failed.first() else {
        let message =
            format!("restarted {} onto the token published at {}", restarted.join(", "), format_time(now));
        let condition = condition(stk, ROLLOUT_RESTART, true, "Restarted", &message, now);
        return (condition, Note::new(EventReason::RolloutRestarted, message));
    };
    let mut message = failed
        .iter()
        .map(|(t, f)| format!("{t}: {}", f.hint(t.kind.plural(), &namespace)))
        .collect::<Vec<_>>()
        .join("; ");
    if !restarted.is_empty() {
        message.push_str(&format!("; restarted {}", restarted.join(", ")));
    }
    message.push_str(" (the token was published all the same)");
    let condition = condition(stk, ROLLOUT_RESTART, false, first.reason(), &message, now);
    (condition, Note::new(EventReason::RolloutRestartFailed, message))
}

/// Manual tokens: RotationDue and PendingToken conditions; returns (due time, wake-up time).
fn manual_report(
    stk: &SlackToken,
    now: Timestamp,
    manual: &Manual,
    out: &Outcome,
    settings: &Settings,
    conditions: &mut Vec<Condition>,
    events: &mut Vec<Note>,
) -> (Timestamp, Option<Timestamp>) {
    let old = stk.status.clone().unwrap_or_default();
    let credentials = &stk.spec.credentials_ref.name;
    if let Some(why) = &out.refused {
        let message =
            format!("pendingToken in Secret {credentials} was not used: {why}; nothing was changed");
        if find_condition(&old.conditions, PENDING_TOKEN).map(|c| &c.message) != Some(&message) {
            events.push(Note::new(EventReason::PendingTokenRejected, message.clone()));
        }
        *conditions = set_condition(
            conditions,
            condition(stk, PENDING_TOKEN, false, "PendingTokenRejected", &message, now),
        );
    }
    let issued_at = out.times.issued_at.unwrap_or(now);
    let due_at = issued_at.checked_add(manual.period).unwrap_or(Timestamp::MAX);
    if due_at <= now {
        let message = format!(
            "the token is older than rotationPeriod {}; re-issue it: {}",
            GoDuration(manual.period),
            reissue_steps(manual.kind, credentials)
        );
        if find_condition(&old.conditions, ROTATION_DUE).map(|c| c.status.as_str()) != Some("True") {
            events.push(Note::new(EventReason::RotationDue, message.clone()));
        }
        *conditions =
            set_condition(conditions, condition(stk, ROTATION_DUE, true, "RotationDue", &message, now));
    } else {
        let message = format!("next re-issue due at {}", format_time(due_at));
        *conditions = set_condition(conditions, condition(stk, ROTATION_DUE, false, "NotDue", &message, now));
    }
    // Wake for the next health check, or at the due time to raise RotationDue; once raised,
    // only health checks remain.
    let last_check = old.last_check_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let checked = out.checked_at.or(last_check).unwrap_or(now);
    let mut wake = checked.checked_add(settings.health_check_interval).ok();
    if due_at > now {
        wake = wake.map(|t| t.min(due_at)).or(Some(due_at));
    }
    (due_at, wake)
}

fn rotated_note(stk: &SlackToken, trigger: Trigger, out: &Outcome) -> String {
    let secret = &stk.spec.secret_ref.name;
    match trigger {
        Trigger::HandOver => format!(
            "Rotated (HandOver): the supplied token passed auth.test and is published to Secret {secret}{}",
            if out.revoked { "; the replaced token was revoked" } else { "" }
        ),
        _ => {
            let expiry = out.times.expires_at.map(format_time).unwrap_or_else(|| "never".into());
            format!(
                "Rotated ({}); published to Secret {secret}; new token expires {expiry}",
                trigger.as_str()
            )
        }
    }
}

/// Slack's answer gave no lifetime that makes sense (see `slack::Issued::expires_in`): the token
/// is scheduled as one of Slack's 12-hour tokens, rather than not at all, and said to be so in the
/// Ready message until auth.test tells the real expiry.
fn expiry_assumed(times: TokenTimes, next_rotation: Option<Timestamp>) -> Warning {
    let time = |t: Option<Timestamp>| t.map(format_time).unwrap_or_else(|| "unknown".into());
    Warning {
        reason: EventReason::ExpiryAssumed,
        message: format!(
            "expiry assumed: Slack's answer gave no usable lifetime for this token (expires_in or exp missing, zero, negative or over 7 days), so Slack's 12 hours are assumed (expires {}) until auth.test reports the real expiry; checked every {}, rotated by {}",
            time(times.expires_at),
            GoDuration(schedule::EXPIRY_CHECK_INTERVAL),
            time(next_rotation)
        ),
    }
}

fn parse_time(t: Option<&str>) -> Option<Timestamp> {
    t.and_then(|t| t.parse().ok())
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
            reason: EventReason::NoExpiry,
            message: "Slack gave no expiry for this token and no rotationPeriod is set, so it is not rotated on a schedule".into(),
        });
    }
    if let Some(lifetime) =
        times.lifetime().filter(|&life| schedule::renew_before_too_long(renew_before, Some(life)))
    {
        let used = schedule::effective_renew_before(renew_before, Some(lifetime));
        warnings.push(Warning {
            reason: EventReason::RenewBeforeTooLong,
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

/// A reconcile that failed. `pending` says whether a pair Slack issued is still waiting to be
/// saved: then the retry comes on the transient schedule whatever the error, because that pair
/// is the only copy of the refresh token and the current access token keeps ageing.
pub fn failure(stk: &SlackToken, s: &Snapshot, error: &Error, pending: bool) -> Report {
    let old = stk.status.clone().unwrap_or_default();
    let attempts = old.failed_attempts.saturating_add(1);
    let expiry = old.expiration_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    let time_left = expiry.map(|e| schedule::until(s.now, e));
    let delay = backoff::delay(error, attempts, time_left, &s.uid(), pending);
    let message = error.user_message(&stk.spec.credentials_ref.name);
    let note = format!("{}: {message}", error.reason());
    let status = SlackTokenStatus {
        conditions: set_condition(
            &old.conditions,
            condition(stk, READY, false, error.reason(), &message, s.now),
        ),
        observed_generation: stk.meta().generation,
        last_failure_time: Some(format_time(s.now)),
        failed_attempts: attempts,
        ..old
    };
    Report { status, events: vec![Note::new(EventReason::RotationFailed, note)], requeue: Some(delay) }
}

fn condition(
    stk: &SlackToken,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: stk.meta().generation,
        last_transition_time: format_time(now),
    }
}

/// How a person re-issues each kind of long-lived token (Slack help: "Create and regenerate API tokens").
pub fn reissue_steps(kind: ManualKind, creds: &str) -> String {
    let hand_over = format!("then write the new token into Secret {creds} key `pendingToken`");
    match kind {
        ManualKind::LegacyTestToken => format!(
            "legacy test token: revoke it with the auth.revoke tester (api.slack.com/methods/auth.revoke/test), click \"Re-issue token\" on the Legacy Tokens page (api.slack.com/custom-integrations/legacy-tokens), {hand_over}; no new legacy tokens can be created, consider moving to a Slack app"
        ),
        ManualKind::CustomIntegrationBot => format!(
            "custom-integration bot: on my.slack.com/apps/manage/custom-integrations click \"Edit configuration\" next to the bot, then \"Regenerate\" below the token, {hand_over}"
        ),
        ManualKind::HubotLita => format!(
            "Hubot/Lita bot: on my.slack.com/apps/manage click \"Edit configuration\" next to the integration, then \"Regenerate\" below the token, {hand_over}"
        ),
        ManualKind::App => format!(
            "app without token rotation: in the App Directory (my.slack.com/apps/manage, Installed apps) remove the app and reinstall it, {hand_over}; better, turn on token rotation and use type OAuth with `legacyToken` to stop rotating by hand"
        ),
    }
}

/// What the per-token metrics show for a SlackToken with `status`: its times as Unix seconds,
/// Ready, and for Manual tokens RotationDue.
pub fn token_gauges(type_: TokenType, status: &SlackTokenStatus) -> TokenGauges {
    let seconds =
        |t: &Option<String>| t.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map(|t| t.as_second());
    let is_true = |type_| find_condition(&status.conditions, type_).is_some_and(|c| c.status == "True");
    TokenGauges {
        expiration: seconds(&status.expiration_time),
        next_rotation: seconds(&status.next_rotation_time),
        ready: is_true(READY),
        rotation_due: (type_ == TokenType::Manual).then(|| is_true(ROTATION_DUE)),
    }
}

/// Merge-patches status with a resourceVersion precondition, nulling fields that disappeared;
/// skips the write if nothing changed. On a conflict the status is recomputed from the newer
/// object (`compute` is a function of the SlackToken), so a concurrent write is never overwritten.
pub async fn write_status(
    tokens: &Api<SlackToken>,
    stk: SlackToken,
    compute: impl Fn(&SlackToken) -> SlackTokenStatus,
) -> Result<(), Error> {
    const ATTEMPTS: usize = 3;
    let name = stk.name_any();
    let (name, compute) = (&name, &compute);
    let write = |stk: SlackToken| async move {
        let old = stk.status.clone().unwrap_or_default();
        let new = compute(&stk);
        if new == old && stk.status.is_some() {
            return Ok(());
        }
        let mut value = serde_json::to_value(&new).unwrap_or(Value::Null);
        if let (Value::Object(new_map), Ok(Value::Object(old_map))) = (&mut value, serde_json::to_value(&old))
        {
            for key in old_map.keys() {
                new_map.entry(key.clone()).or_insert(Value::Null);
            }
        }
        let patch = json!({ "metadata": { "resourceVersion": stk.resource_version() }, "status": value });
        let written = tokens.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await;
        written.map(drop).map_err(conflict_or(Error::kube("patch", "slacktokens/status", name)))
    };
    let reread = || async { tokens.get(name).await.map_err(Error::kube("get", "slacktokens", name)) };
    retry_on_conflict(ATTEMPTS, ("slacktokens/status", name), stk, write, reread).await
}

#[cfg(test)]
mod tests;
