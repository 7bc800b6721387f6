//! Decide: what one reconcile does, as a plain value computed from the [`Snapshot`] alone.
//!
//! Nothing here talks to a server or reads a clock; the table tests at the bottom cover every
//! row of the operator's behaviour without one. A [`Plan`] lists the writes in the one order
//! they are made (see [`super::act`]).

use super::{
    backoff::Inputs,
    context::Settings,
    observe::{CredentialsSecret, Snapshot},
    schedule::{self, TokenTimes},
};
use crate::{
    error::Invalid,
    resource::{
        EventReason, ManualKind, RolloutRestartTarget, SlackToken, SlackTokenSpec, TokenType,
        REVOKE_FINALIZER, ROTATED_FOR_ANNOTATION, ROTATE_ANNOTATION, SKIP_REVOKE_ANNOTATION,
        SLACKTOKEN_LABEL,
    },
    secrets::{legacy_token_problem, refresh_token_problem, Credentials, ACCESS_TOKEN},
    slack::AuthTest,
};
use kube::{Resource, ResourceExt};
use std::time::Duration;

/// Everything one reconcile will do.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Being deleted, and our finalizer is not on it: nothing of ours holds it.
    Nothing,
    /// A failure is held and nothing it depended on changed: look again after this long.
    Wait(Duration),
    /// Being deleted with our finalizer: revoke the token (or say why not), then let go of the
    /// credentials Secret and the SlackToken, in that order.
    Finalize(Finalize),
    /// Bring the Secrets and status in line with the spec.
    Converge(Converge),
}

#[derive(Debug, PartialEq)]
pub enum Finalize {
    /// Revoke the current access token with auth.revoke.
    Revoke,
    /// Let go without revoking, for this reason (recorded as a `RevokeSkipped` Event).
    Skip(String),
}

/// The steps of a converging reconcile, in the order they are carried out. Any step that fails
/// ends the reconcile; the next one starts again from a fresh snapshot.
#[derive(Debug, PartialEq)]
pub struct Converge {
    /// 1. Add (`true`) or remove (`false`) our finalizer on the SlackToken, as `revokeOnDelete` says.
    pub finalizer: Option<bool>,
    /// 2. Label the credentials Secret for this SlackToken, and hold or release it with our finalizer.
    pub claim: Option<Claim>,
    /// 3. Release Secrets this SlackToken held before its `credentialsRef` changed.
    pub release_stale: bool,
    /// 4.–7. The token's own steps.
    pub token: Option<TokenPlan>,
    /// 8. After publishing: restart the `rolloutRestartTargets` if the published token changed
    ///    (or a restart is still pending), then clear the pending mark.
    pub restart: Option<Restart>,
    /// Why the SlackToken cannot work as it is; reported (Ready=False) after the steps above.
    pub invalid: Option<Invalid>,
    /// Things that work, but not as the user may think; shown in the Ready message.
    pub warnings: Vec<Warning>,
}

/// A change to the credentials Secret's metadata (one patch).
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    /// Set our label (`slack.rotator.dev/slacktoken=<name>`), so the watch sees the Secret.
    pub label: bool,
    /// Add (`true`) or remove (`false`) our finalizer.
    pub hold: Option<bool>,
}

#[derive(Debug, PartialEq)]
pub enum TokenPlan {
    Rotating(Rotating),
    Manual(Manual),
}

/// OAuth and AppConfiguration tokens.
#[derive(Debug, PartialEq)]
pub struct Rotating {
    /// 4. Get a new pair from Slack and save it into the credentials Secret (or save the pair
    ///    Slack gave earlier); `None` keeps the current token.
    pub rotate: Option<Rotate>,
    /// 4a. (Only when 4 rotates nothing.) The token's expiry is assumed, Slack's answer having
    ///    given none, and a check is due: ask auth.test for the real expiry. Should Slack say the
    ///    token no longer works, rotate at once with this call ([`Trigger::TokenDead`]) instead of
    ///    publishing a dead token.
    pub check_expiry: Option<Call>,
    /// 5. Write the token into the output Secret (not when the output Secret is someone else's).
    pub publish: bool,
    /// The `slack.rotator.dev/rotate` value this reconcile satisfies, for status.
    pub handled_request: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotate {
    pub trigger: Trigger,
    /// The Slack method to call; `None` when Slack already answered (a pending pair).
    pub call: Option<Call>,
}

/// Why a token is rotated; shown in the `Rotated` Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// No access token yet: the first one is obtained by rotating.
    FirstToken,
    /// The schedule says so.
    Due,
    /// The `slack.rotator.dev/rotate` annotation asked for it.
    Requested,
    /// A long-lived token is moved onto rotation with oauth.v2.exchange.
    Exchange,
    /// A previous attempt got new tokens but could not save them; this one only saves.
    SavePending,
    /// A person supplied a new long-lived token as `pendingToken`.
    HandOver,
    /// auth.test says the current token no longer works: it died before its assumed expiry.
    TokenDead,
}

impl Trigger {
    /// The `trigger` label of the rotations metric: spelled out, so that renaming a variant
    /// cannot change a series.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstToken => "FirstToken",
            Self::Due => "Due",
            Self::Requested => "Requested",
            Self::Exchange => "Exchange",
            Self::SavePending => "SavePending",
            Self::HandOver => "HandOver",
            Self::TokenDead => "TokenDead",
        }
    }
}

/// The Slack method that issues the new pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `oauth.v2.access` with `grant_type=refresh_token`.
    RefreshOAuth,
    /// `tooling.tokens.rotate`.
    RotateConfigToken,
    /// `oauth.v2.exchange`: a long-lived token onto rotation, once.
    Exchange,
}

impl Call {
    pub fn method(self) -> &'static str {
        match self {
            Call::RefreshOAuth => "oauth.v2.access",
            Call::RotateConfigToken => "tooling.tokens.rotate",
            Call::Exchange => "oauth.v2.exchange",
        }
    }
}

/// Long-lived tokens that only a person can re-issue.
#[derive(Debug, PartialEq)]
pub struct Manual {
    pub kind: ManualKind,
    pub period: Duration,
    /// 4. The token has no issue time yet: its rotation period starts now.
    pub stamp_issued_at: bool,
    /// 5. A person supplied `pendingToken`: check it with auth.test; if accepted, publish it,
    ///    revoke the replaced token and move it to `accessToken`.
    pub hand_over: Option<HandOver>,
    /// 6. Check the current token with auth.test (unless a hand-over just did).
    pub health_check: bool,
    // 7. The current token is published unless it was handed over.
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandOver {
    pub revoke_replaced: bool,
    pub allow_identity_change: bool,
}

/// The workloads to restart onto a changed token, and whether a restart is still owed for a
/// token published earlier (the output Secret carries the pending mark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    pub targets: Vec<RolloutRestartTarget>,
    pub pending: bool,
}

impl Restart {
    /// Whether to restart the targets now, given whether publishing changed the token.
    pub fn now(&self, token_changed: bool) -> bool {
        !self.targets.is_empty() && (token_changed || self.pending)
    }

    /// Whether the publish that changes the token should leave the pending mark.
    pub fn mark(&self) -> bool {
        !self.targets.is_empty()
    }
}

/// Something about the spec that works, but not as the user may think. Shown in the Ready
/// message and announced once by an Event with `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub reason: EventReason,
    pub message: String,
}

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
    // A changed spec may have moved credentialsRef away from a Secret we hold (a new SlackToken
    // has none: nothing to look for).
    let observed = stk.status.as_ref().and_then(|s| s.observed_generation);
    let release_stale = observed.is_some() && observed != stk.meta().generation;
    let parsed = match &credentials.parsed {
        Ok(parsed) => parsed,
        Err(problem) => {
            let invalid = Invalid::Credentials { name: credentials_name.clone(), problem: problem.clone() };
            return stop(invalid, claim, release_stale);
        }
    };
    let (token, invalid) = match stk.spec.token_type {
        TokenType::Manual => match manual(s, parsed, settings) {
            Ok(manual) => (Some(TokenPlan::Manual(manual)), None),
            Err(invalid) => (None, Some(invalid)),
        },
        TokenType::OAuth | TokenType::AppConfiguration => rotating(s, parsed, requested),
    };
    let restart = restart(stk, s.restart_pending()).filter(|_| token.is_some());
    Plan::Converge(Converge { finalizer, claim, release_stale, token, restart, invalid, warnings })
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

/// OAuth and AppConfiguration: rotate when due, asked or needed, then publish.
fn rotating(s: &Snapshot, creds: &Credentials, requested: bool) -> (Option<TokenPlan>, Option<Invalid>) {
    let stk = &s.slacktoken;
    let spec = &stk.spec;
    let invalid = |problem| Invalid::Credentials { name: spec.credentials_ref.name.clone(), problem };
    let missing = |key| invalid(creds.missing(key));
    let times = token_times(creds);
    let period = spec.rotation_period.map(|d| d.as_std());
    let renew_before = spec.renew_before.map(|d| d.as_std());
    let due = schedule::next_rotation(times, period, renew_before).is_some_and(|next| next <= s.now);
    let exchange =
        spec.token_type == TokenType::OAuth && creds.refresh_token.is_none() && creds.legacy_token.is_some();

    let trigger = if s.pending.is_some() {
        Some(Trigger::SavePending)
    } else if spec.suspend {
        None
    } else if exchange {
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
    // Found before Slack is called, so a refresh token is never spent for a token that cannot
    // be published. A pair Slack already gave is saved all the same: it is the only copy.
    let conflict = s
        .output_is_someone_elses()
        .then(|| Invalid::OutputSecretConflict { name: spec.secret_ref.name.clone() });

    if conflict.is_some() && trigger != Some(Trigger::SavePending) {
        return (None, conflict);
    }
    // A value that plainly is not the token its key is for never goes to Slack: Slack would
    // only answer `invalid_refresh_token`, which sends people to reinstall the app for nothing.
    // Said at once, not at the due time, so there are hours left to fix it. A pair Slack already
    // gave is saved all the same; a suspended token is not rotated, so its keys do not matter.
    if s.pending.is_none() && !spec.suspend {
        let problem = match (&creds.refresh_token, &creds.legacy_token) {
            (Some(refresh), _) => refresh_token_problem(refresh),
            (None, Some(legacy)) if spec.token_type == TokenType::OAuth => legacy_token_problem(legacy),
            _ => None,
        };
        if let Some(problem) = problem {
            return (None, Some(invalid(problem)));
        }
    }
    let call = match trigger.map(|trigger| call_for(trigger, spec.token_type, creds)) {
        None => None,
        Some(Ok(call)) => call,
        Some(Err(problem)) => return (None, Some(invalid(problem))),
    };
    if trigger.is_none() && creds.access_token.is_none() {
        return (None, Some(missing(ACCESS_TOKEN)));
    }
    // A guessed expiry may be far too late: until auth.test tells the real one, the token is
    // looked at every few minutes, so that one dead at Slack is not shown Ready for hours.
    // (Without what a rotation needs there is no remedy to offer; that is said when it is due.)
    let last_check = stk
        .status
        .as_ref()
        .and_then(|s| s.last_check_time.as_deref())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let check_due = schedule::next_expiry_check(times, last_check).is_some_and(|at| at <= s.now);
    let check_expiry = (trigger.is_none() && !spec.suspend && check_due)
        .then(|| call_for(Trigger::TokenDead, spec.token_type, creds).ok().flatten())
        .flatten();
    // A request is handled by this rotation, or was by one whose status write was lost.
    let handled_request =
        stk.annotations().get(ROTATE_ANNOTATION).cloned().filter(|_| trigger.is_some() || !requested);
    let plan = Rotating {
        rotate: trigger.map(|trigger| Rotate { trigger, call }),
        check_expiry,
        publish: conflict.is_none(),
        handled_request,
    };
    (Some(TokenPlan::Rotating(plan)), conflict)
}

/// The Slack method a rotation for `trigger` calls, if what the call needs is there; `None`
/// when Slack has answered already (a pending pair is only saved).
fn call_for(
    trigger: Trigger,
    token_type: TokenType,
    creds: &Credentials,
) -> Result<Option<Call>, crate::error::CredentialsError> {
    match trigger {
        Trigger::SavePending => Ok(None),
        Trigger::Exchange => creds.require_client().map(|_| Some(Call::Exchange)),
        _ => {
            if token_type == TokenType::OAuth {
                creds.require_client()?;
            }
            if creds.refresh_token.is_none() {
                return Err(creds.missing(crate::secrets::REFRESH_TOKEN));
            }
            Ok(Some(match token_type {
                TokenType::AppConfiguration => Call::RotateConfigToken,
                _ => Call::RefreshOAuth,
            }))
        }
    }
}

/// The current token's times as the credentials Secret records them.
pub fn token_times(creds: &Credentials) -> TokenTimes {
    TokenTimes {
        issued_at: creds.issued_at,
        expires_at: creds.expires_at,
        expiry_assumed: creds.expiry_assumed,
    }
}

/// Manual: say when it is due, take over a token a person supplies, check the current one.
fn manual(s: &Snapshot, creds: &Credentials, settings: &Settings) -> Result<Manual, Invalid> {
    let stk = &s.slacktoken;
    let spec = &stk.spec;
    let (manual, period) = manual_settings(spec)?;
    if creds.access_token.is_none() {
        let problem = creds.missing(ACCESS_TOKEN);
        return Err(Invalid::Credentials { name: spec.credentials_ref.name.clone(), problem });
    }
    if s.output_is_someone_elses() {
        return Err(Invalid::OutputSecretConflict { name: spec.secret_ref.name.clone() });
    }
    let last_check = stk
        .status
        .as_ref()
        .and_then(|s| s.last_check_time.as_deref())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let interval = settings.health_check_interval;
    let health_check = last_check.is_none_or(|t| t.checked_add(interval).is_ok_and(|next| next <= s.now));
    Ok(Manual {
        kind: manual.kind,
        period,
        stamp_issued_at: creds.issued_at.is_none(),
        hand_over: creds.pending_token.as_ref().map(|_| HandOver {
            revoke_replaced: manual.revoke_replaced,
            allow_identity_change: manual.allow_identity_change,
        }),
        health_check,
    })
}

/// Whether a supplied token may replace the current one: same team and, unless
/// `allow_identity_change`, the same user or bot. `reference` is the current token's identity
/// (from auth.test, or as recorded in status when the current token no longer works).
pub fn accept_replacement(
    reference: Option<&crate::resource::Identity>,
    new: &AuthTest,
    allow_identity_change: bool,
) -> Result<(), String> {
    let Some(reference) = reference else {
        return Err("the current token no longer works and no identity was recorded to compare with".into());
    };
    if reference.team_id != new.team_id {
        return Err(format!(
            "it belongs to team {} but the current token to team {}",
            new.team_id.as_deref().unwrap_or("?"),
            reference.team_id.as_deref().unwrap_or("?")
        ));
    }
    if !allow_identity_change && reference.user_id != new.user_id {
        return Err(format!(
            "it belongs to user {} but the current token to {} (set spec.manual.allowIdentityChange: true to accept)",
            new.user_id.as_deref().unwrap_or("?"),
            reference.user_id.as_deref().unwrap_or("?")
        ));
    }
    Ok(())
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
        manual_settings(spec)?;
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

/// The Manual settings a spec must have: `manual` and `rotationPeriod`.
fn manual_settings(spec: &SlackTokenSpec) -> Result<(&crate::resource::ManualSpec, Duration), Invalid> {
    let manual =
        spec.manual.as_ref().ok_or_else(|| Invalid::Spec("type Manual needs spec.manual.kind".into()))?;
    let period = spec.rotation_period.map(|p| p.as_std()).ok_or_else(|| {
        Invalid::Spec("type Manual needs rotationPeriod: how often a person should re-issue the token".into())
    })?;
    Ok((manual, period))
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
