//! Decide: what one reconcile does, as a plain value computed from the [`Snapshot`] alone.
//!
//! Nothing here talks to a server or reads a clock; the table tests (`tests.rs`) cover every row
//! of the operator's behaviour without one. A [`Plan`] lists the writes in the one order they
//! are made (see [`super::act`]). What act finds out while carrying a plan out (Slack refused a
//! refresh token, the output Secret changed after our last write) is judged here too.

mod call;
mod manual;
mod output;
mod plan;
mod refused;
mod rotating;

pub use call::{presented, Presented};
pub use manual::accept_replacement;
pub use output::output_conflict;
pub use plan::{
    Call, Claim, Converge, Finalize, HandOver, Manual, Plan, Restart, Rotate, Rotating, TokenPlan, Trigger,
    Warning,
};
pub use refused::{refused_refresh_token, Refused};
pub use rotating::token_times;

use super::{
    backoff::Inputs,
    context::Settings,
    observe::{CredentialsSecret, Snapshot},
    schedule,
};
use crate::{
    error::Invalid,
    resource::{
        EventReason, SlackToken, SlackTokenSpec, TokenType, REVOKE_FINALIZER, ROTATED_FOR_ANNOTATION,
        ROTATE_ANNOTATION, SKIP_REVOKE_ANNOTATION, SLACKTOKEN_LABEL,
    },
    secrets::Credentials,
};
use kube::{Resource, ResourceExt};
use std::time::Duration;

pub fn decide(s: &Snapshot, settings: &Settings) -> Plan {
    let stk = &s.slacktoken;
    if stk.meta().deletion_timestamp.is_some() {
        return match has_our_finalizer(stk) {
            true => Plan::Finalize(finalize(s)),
            false => Plan::Nothing,
        };
    }
    let finalizer =
        (has_our_finalizer(stk) != stk.spec.revoke_on_delete).then_some(stk.spec.revoke_on_delete);
    let stop = |invalid, claim, release_stale| {
        Plan::Converge(Converge {
            finalizer,
            claim,
            release_stale,
            token: None,
            restart: None,
            invalid: Some(invalid),
            warnings: Vec::new(),
        })
    };
    let warnings = match validate(&stk.spec) {
        Ok(warnings) => warnings,
        Err(invalid) => return stop(invalid, None, false),
    };
    let requested = fresh_rotate_request(stk, s.credentials.as_ref());
    if !requested && s.pending.is_none() {
        if let Some(wait) = still_held(s) {
            return Plan::Wait(wait);
        }
    }
    let credentials_name = &stk.spec.credentials_ref.name;
    let Some(credentials) = &s.credentials else {
        return stop(Invalid::CredentialsNotFound { name: credentials_name.clone() }, None, false);
    };
    if let Some(owner) = credentials.secret.labels().get(SLACKTOKEN_LABEL).filter(|o| **o != stk.name_any()) {
        let invalid = Invalid::CredentialsInUse { name: credentials_name.clone(), owner: owner.clone() };
        return stop(invalid, None, false);
    }
    // Claimed before anything can fail on the Secret's content, so that the user's fix to it
    // wakes us through the watch (and, with revokeOnDelete, it outlives the SlackToken).
    let claim = claim(stk, &credentials.secret);
    let release_stale = release_stale(stk);
    let parsed = match &credentials.parsed {
        Ok(parsed) => parsed,
        Err(problem) => {
            let invalid = Invalid::Credentials { name: credentials_name.clone(), problem: problem.clone() };
            return stop(invalid, claim, release_stale);
        }
    };
    let (token, invalid) = token_plan(s, parsed, settings, requested);
    let restart = restart(stk, s.restart_pending()).filter(|_| token.is_some());
    Plan::Converge(Converge { finalizer, claim, release_stale, token, restart, invalid, warnings })
}

/// The token's own steps (4.–7.), or why there are none.
fn token_plan(
    s: &Snapshot,
    parsed: &Credentials,
    settings: &Settings,
    requested: bool,
) -> (Option<TokenPlan>, Option<Invalid>) {
    match s.slacktoken.spec.token_type {
        TokenType::Manual => match manual::manual(s, parsed, settings) {
            Ok(manual) => (Some(TokenPlan::Manual(manual)), None),
            Err(invalid) => (None, Some(invalid)),
        },
        TokenType::OAuth | TokenType::AppConfiguration => rotating::rotating(s, parsed, requested),
    }
}

/// A changed spec may have moved credentialsRef away from a Secret we hold (a new SlackToken has
/// none: nothing to look for).
fn release_stale(stk: &SlackToken) -> bool {
    let observed = stk.status.as_ref().and_then(|s| s.observed_generation);
    observed.is_some() && observed != stk.meta().generation
}

/// The restart step: there are targets, or a restart mark to clear.
fn restart(stk: &SlackToken, pending: bool) -> Option<Restart> {
    let targets = stk.spec.rollout_restart_targets.clone();
    (pending || !targets.is_empty()).then_some(Restart { targets, pending })
}

fn finalize(s: &Snapshot) -> Finalize {
    let stk = &s.slacktoken;
    if stk.annotations().contains_key(SKIP_REVOKE_ANNOTATION) {
        return Finalize::Skip(format!("{SKIP_REVOKE_ANNOTATION} is set: the token was not revoked"));
    }
    let name = &stk.spec.credentials_ref.name;
    match s.credentials.as_ref().map(|c| &c.parsed) {
        Some(Ok(parsed)) if parsed.access_token.is_some() => Finalize::Revoke,
        Some(Err(problem)) => Finalize::Skip(format!(
            "credentials Secret {name} cannot be read ({problem}): nothing was revoked"
        )),
        _ => Finalize::Skip(format!(
            "credentials Secret {name} holds no token any more (deleted first?): nothing was revoked"
        )),
    }
}

/// Checks a spec can work. Returns warnings that do not stop rotation.
fn validate(spec: &SlackTokenSpec) -> Result<Vec<Warning>, Invalid> {
    if spec.credentials_ref.name == spec.secret_ref.name {
        return Err(Invalid::Spec(
            "credentialsRef and secretRef name the same Secret; the output Secret must be a separate one"
                .into(),
        ));
    }
    if spec.rotation_period.is_some_and(|p| p.as_std().is_zero()) {
        return Err(Invalid::Spec("rotationPeriod must be greater than zero".into()));
    }
    if spec.token_type == TokenType::Manual {
        manual::manual_settings(spec)?;
        return Ok(Vec::new());
    }
    let mut warnings = Vec::new();
    if let Some(period) = spec.rotation_period.filter(|p| p.as_std() < schedule::SHORT_ROTATION_PERIOD) {
        warnings.push(Warning {
            reason: EventReason::ShortRotationPeriod,
            message: format!(
                "rotationPeriod {period} is under 1h: Slack keeps only two access tokens active, so consumers must reload Secret {} within {period}",
                spec.secret_ref.name
            ),
        });
    }
    Ok(warnings)
}

/// Whether `slack.rotator.dev/rotate` holds a value no rotation has satisfied yet: not the one
/// recorded in status, nor the one saved with the current tokens in the credentials Secret.
fn fresh_rotate_request(stk: &SlackToken, credentials: Option<&CredentialsSecret>) -> bool {
    let Some(request) = stk.annotations().get(ROTATE_ANNOTATION) else {
        return false;
    };
    let in_status = stk.status.as_ref().and_then(|s| s.last_rotate_request.as_ref());
    let in_credentials = credentials.and_then(|c| c.secret.annotations().get(ROTATED_FOR_ANNOTATION));
    stk.spec.token_type != TokenType::Manual && in_status != Some(request) && in_credentials != Some(request)
}

/// Time left on a held failure, if nothing it depended on has changed since.
fn still_held(s: &Snapshot) -> Option<Duration> {
    let hold = s.hold.as_ref()?;
    (hold.inputs == inputs(s)).then_some(hold.left)
}

/// What a failure of this reconcile depends on (see [`super::backoff::Gate`]).
pub fn inputs(s: &Snapshot) -> Inputs {
    Inputs {
        generation: s.slacktoken.meta().generation,
        credentials_version: s.credentials.as_ref().and_then(CredentialsSecret::version),
    }
}

/// Labels the credentials Secret for this SlackToken and holds it with our finalizer exactly
/// while `revokeOnDelete` is set. `None` when both are already right.
fn claim(stk: &SlackToken, secret: &k8s_openapi::api::core::v1::Secret) -> Option<Claim> {
    let label = secret.labels().get(SLACKTOKEN_LABEL) != Some(&stk.name_any());
    let held = has_our_finalizer(secret);
    // The API server refuses new finalizers on an object already being deleted.
    let hold = stk.spec.revoke_on_delete && (held || secret.meta().deletion_timestamp.is_none());
    let hold = (held != hold).then_some(hold);
    (label || hold.is_some()).then_some(Claim { label, hold })
}

pub fn has_our_finalizer(object: &impl Resource) -> bool {
    object.finalizers().iter().any(|f| f == REVOKE_FINALIZER)
}

#[cfg(test)]
mod tests;
