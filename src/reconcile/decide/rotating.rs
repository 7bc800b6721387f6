//! OAuth and AppConfiguration tokens: rotate when due, asked or needed, then publish.

use super::{
    call::call_for,
    output::output_conflict,
    plan::{Call, Rotate, Rotating, TokenPlan, Trigger},
};
use crate::{
    error::{CredentialsError, Invalid},
    reconcile::{
        observe::Snapshot,
        schedule::{self, TokenTimes},
    },
    resource::{TokenType, ROTATE_ANNOTATION},
    secrets::{legacy_token_problem, refresh_token_problem, Credentials, ACCESS_TOKEN},
};
use kube::ResourceExt;

/// The token's own steps, or why there are none.
pub fn rotating(s: &Snapshot, creds: &Credentials, requested: bool) -> (Option<TokenPlan>, Option<Invalid>) {
    let stk = &s.slacktoken;
    let spec = &stk.spec;
    let invalid = |problem| Invalid::Credentials { name: spec.credentials_ref.name.clone(), problem };
    let trigger = trigger(s, creds, requested);
    // Found before Slack is called, so a refresh token is never spent for a token that cannot
    // be published. A pair Slack already gave is saved all the same: it is the only copy.
    let conflict = output_conflict(stk, s.output.as_ref());
    if conflict.is_some() && trigger != Some(Trigger::SavePending) {
        return (None, conflict);
    }
    if let Some(problem) = wrong_token(s, creds) {
        return (None, Some(invalid(problem)));
    }
    let call = match trigger.map(|trigger| call_for(trigger, spec.token_type, creds)) {
        None => None,
        Some(Ok(call)) => call,
        Some(Err(problem)) => return (None, Some(invalid(problem))),
    };
    if trigger.is_none() && creds.access_token.is_none() {
        return (None, Some(invalid(creds.missing(ACCESS_TOKEN))));
    }
    // A request is handled by this rotation, or was by one whose status write was lost.
    let handled_request =
        stk.annotations().get(ROTATE_ANNOTATION).cloned().filter(|_| trigger.is_some() || !requested);
    let plan = Rotating {
        rotate: trigger.map(|trigger| Rotate { trigger, call }),
        check_expiry: planned_expiry_check(s, creds, trigger),
        publish: conflict.is_none(),
        handled_request,
    };
    (Some(TokenPlan::Rotating(plan)), conflict)
}

/// Why the token is rotated in this reconcile, if it is.
fn trigger(s: &Snapshot, creds: &Credentials, requested: bool) -> Option<Trigger> {
    let spec = &s.slacktoken.spec;
    let period = spec.rotation_period.map(|d| d.as_std());
    let renew_before = spec.renew_before.map(|d| d.as_std());
    let due =
        schedule::next_rotation(token_times(creds), period, renew_before).is_some_and(|next| next <= s.now);
    let exchange =
        spec.token_type == TokenType::OAuth && creds.refresh_token.is_none() && creds.legacy_token.is_some();
    if s.pending.is_some() {
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
    }
}

/// A value that plainly is not the token its key is for never goes to Slack: Slack would only
/// answer `invalid_refresh_token`, which sends people to reinstall the app for nothing. Said at
/// once, not at the due time, so there are hours left to fix it. A pair Slack already gave is
/// saved all the same; a suspended token is not rotated, so its keys do not matter.
fn wrong_token(s: &Snapshot, creds: &Credentials) -> Option<CredentialsError> {
    let spec = &s.slacktoken.spec;
    if s.pending.is_some() || spec.suspend {
        return None;
    }
    match (&creds.refresh_token, &creds.legacy_token) {
        (Some(refresh), _) => refresh_token_problem(refresh),
        (None, Some(legacy)) if spec.token_type == TokenType::OAuth => legacy_token_problem(legacy),
        _ => None,
    }
}

/// A guessed expiry may be far too late: until auth.test tells the real one, the token is
/// looked at every few minutes, so that one dead at Slack is not shown Ready for hours. (Without
/// what a rotation needs there is no remedy to offer; that is said when it is due.)
fn planned_expiry_check(s: &Snapshot, creds: &Credentials, trigger: Option<Trigger>) -> Option<Call> {
    let spec = &s.slacktoken.spec;
    let last_check = s
        .slacktoken
        .status
        .as_ref()
        .and_then(|s| s.last_check_time.as_deref())
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let check_due = schedule::next_expiry_check(token_times(creds), last_check).is_some_and(|at| at <= s.now);
    (trigger.is_none() && !spec.suspend && check_due)
        .then(|| call_for(Trigger::TokenDead, spec.token_type, creds).ok().flatten())
        .flatten()
}

/// The current token's times as the credentials Secret records them.
pub fn token_times(creds: &Credentials) -> TokenTimes {
    TokenTimes {
        issued_at: creds.issued_at,
        expires_at: creds.expires_at,
        expiry_assumed: creds.expiry_assumed,
    }
}
