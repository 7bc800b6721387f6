//! Manual tokens: long-lived, re-issued only by a person. Say when one is due, take over a token
//! a person supplies, check the current one.

use super::{
    output::output_conflict,
    plan::{HandOver, Manual},
};
use crate::{
    error::Invalid,
    reconcile::{context::Settings, observe::Snapshot},
    resource::{Identity, ManualSpec, SlackTokenSpec},
    secrets::{Credentials, ACCESS_TOKEN},
    slack::AuthTest,
};
use std::time::Duration;

/// Manual: say when it is due, take over a token a person supplies, check the current one.
pub fn manual(s: &Snapshot, creds: &Credentials, settings: &Settings) -> Result<Manual, Invalid> {
    let stk = &s.slacktoken;
    let spec = &stk.spec;
    let (manual, period) = manual_settings(spec)?;
    if creds.access_token.is_none() {
        let problem = creds.missing(ACCESS_TOKEN);
        return Err(Invalid::Credentials { name: spec.credentials_ref.name.clone(), problem });
    }
    if let Some(conflict) = output_conflict(stk, s.output.as_ref()) {
        return Err(conflict);
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
    reference: Option<&Identity>,
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

/// The Manual settings a spec must have: `manual` and `rotationPeriod`.
pub fn manual_settings(spec: &SlackTokenSpec) -> Result<(&ManualSpec, Duration), Invalid> {
    let manual =
        spec.manual.as_ref().ok_or_else(|| Invalid::Spec("type Manual needs spec.manual.kind".into()))?;
    let period = spec.rotation_period.map(|p| p.as_std()).ok_or_else(|| {
        Invalid::Spec("type Manual needs rotationPeriod: how often a person should re-issue the token".into())
    })?;
    Ok((manual, period))
}
