//! Long-lived tokens (`type: Manual`): Slack has no API to re-issue them, so a person does, and
//! the operator does the rest: it says when one is due and how to re-issue it, checks the token a
//! person supplies as `pendingToken` with auth.test, publishes it, revokes the old one and keeps
//! watching that the current token still works.

use crate::{
    controller::Context,
    crd::{ManualKind, ManualSpec, SlackToken, SlackTokenSpec},
    credentials::{self, Credentials, CredentialsError, PENDING_TOKEN},
    error::Error,
    rotation::{self, Trigger},
    schedule::TokenTimes,
    slack::AuthTest,
    status::{self, Done, PENDING_TOKEN as PENDING_CONDITION, ROTATION_DUE},
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::{
    api::{Api, Patch, PatchParams},
    runtime::events::EventType,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::time::Duration;

/// The Manual settings a spec must have: `manual` and `rotationPeriod`.
pub fn settings(spec: &SlackTokenSpec) -> Result<(&ManualSpec, Duration), Error> {
    let manual = spec
        .manual
        .as_ref()
        .ok_or_else(|| Error::InvalidSpec("type Manual needs spec.manual.kind".into()))?;
    let period = spec.rotation_period.map(|p| p.as_std()).ok_or_else(|| {
        Error::InvalidSpec(
            "type Manual needs rotationPeriod: how often a person should re-issue the token".into(),
        )
    })?;
    Ok((manual, period))
}

pub async fn converge(
    stk: &SlackToken,
    ctx: &Context,
    secrets: &Api<Secret>,
    creds_secret: Secret,
    creds: Credentials,
    now: Timestamp,
) -> Result<Done, Error> {
    let spec = &stk.spec;
    let creds_name = &spec.credentials_ref.name;
    let bad = |source| Error::BadCredentials { name: creds_name.clone(), source };
    let (manual, period) = settings(spec)?;
    let mut current =
        creds.access_token.clone().ok_or(bad(CredentialsError::Missing(credentials::ACCESS_TOKEN)))?;
    let mut creds_secret = creds_secret;

    // The period needs a start: a token first seen now counts from now.
    let mut issued_at = match creds.issued_at {
        Some(t) => t,
        None => {
            let patch = json!({"metadata": {"annotations": {credentials::ISSUED_AT_ANNOTATION: crate::clock::format_time(now)}}});
            creds_secret = secrets.patch(creds_name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            now
        }
    };

    let mut done = Done::default();
    let previous = stk.status.as_ref();
    if let Some(pending) = &creds.pending_token {
        match check_pending(ctx, stk, &current, pending).await? {
            Ok(who) => {
                rotation::publish(secrets, stk, pending).await?;
                if manual.revoke_replaced {
                    // The help article's first step; done once the new token is live.
                    ctx.slack.revoke(&current).await?;
                }
                save_handover(secrets, creds_name, creds_secret, pending, now).await?;
                current = pending.clone();
                issued_at = now;
                done.rotated = Some(Trigger::HandOver);
                done.identity = Some(identity_of(&who));
                done.last_check = Some(now);
                done.cleared.push(PENDING_CONDITION);
                let note = format!(
                    "Rotated (HandOver): the supplied token passed auth.test and is published to Secret {}{}",
                    spec.secret_ref.name,
                    if manual.revoke_replaced { "; the replaced token was revoked" } else { "" }
                );
                ctx.event(stk, EventType::Normal, "Rotated", note).await;
            }
            Err(why) => {
                let message =
                    format!("pendingToken in Secret {creds_name} was not used: {why}; nothing was changed");
                if status::find(previous, PENDING_CONDITION).map(|c| &c.message) != Some(&message) {
                    ctx.event(stk, EventType::Warning, "PendingTokenRejected", message.clone()).await;
                }
                done.conditions.push((PENDING_CONDITION, false, "PendingTokenRejected".into(), message));
            }
        }
    } else {
        done.cleared.push(PENDING_CONDITION);
    }

    // Health: a long-lived token can be revoked by a person or by Slack for disuse at any time.
    let interval = ctx.settings.health_check_interval;
    let last_check =
        previous.and_then(|s| s.last_check_time.as_deref()).and_then(|t| t.parse::<Timestamp>().ok());
    let check_due = last_check.is_none_or(|t| t.checked_add(interval).is_ok_and(|next| next <= now));
    if done.rotated.is_none() && check_due {
        let who = ctx.slack.auth_test(&current).await?;
        done.identity = Some(identity_of(&who));
        done.last_check = Some(now);
    }
    let checked = done.last_check.or(last_check).unwrap_or(now);
    done.wake_at = checked.checked_add(interval).ok();

    if done.rotated.is_none() {
        // (A hand-over published the new token already, before revoking the old one.)
        rotation::publish(secrets, stk, &current).await?;
    }

    let due_at = issued_at.checked_add(period).unwrap_or(Timestamp::MAX);
    if due_at <= now {
        let message = format!(
            "the token is older than rotationPeriod {}; re-issue it: {}",
            spec.rotation_period.map(|p| p.to_string()).unwrap_or_default(),
            reissue_steps(manual.kind, creds_name)
        );
        if status::find(previous, ROTATION_DUE).map(|c| c.status.as_str()) != Some("True") {
            ctx.event(stk, EventType::Warning, "RotationDue", message.clone()).await;
        }
        done.conditions.push((ROTATION_DUE, true, "RotationDue".into(), message));
    } else {
        let message = format!("next re-issue due at {}", crate::clock::format_time(due_at));
        done.conditions.push((ROTATION_DUE, false, "NotDue".into(), message));
    }
    done.times = TokenTimes { issued_at: Some(issued_at), expires_at: None };
    done.next_rotation = Some(due_at);
    if due_at > now {
        // Wake at the due time to raise RotationDue; once raised, only health checks remain.
        done.wake_at = done.wake_at.map(|t| t.min(due_at)).or(Some(due_at));
    }
    Ok(done)
}

/// Checks a supplied token: it must work and belong to the same team (and, unless
/// `allowIdentityChange`, the same user or bot) as the current one. Outer error: try again later;
/// inner error: the token is refused, with the reason.
async fn check_pending(
    ctx: &Context,
    stk: &SlackToken,
    current: &SecretString,
    pending: &SecretString,
) -> Result<Result<AuthTest, String>, Error> {
    let new = match ctx.slack.auth_test(pending).await {
        Ok(who) => who,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => return Ok(Err(format!("Slack rejected it ({})", e.code().unwrap_or("error")))),
    };
    let reference = match ctx.slack.auth_test(current).await {
        Ok(who) => Some(identity_of(&who)),
        Err(e) if e.is_transient() => return Err(e.into()),
        // The current token may already be dead; fall back to the identity recorded earlier.
        Err(_) => stk.status.as_ref().and_then(|s| s.identity.clone()),
    };
    let Some(reference) = reference else {
        return Ok(Err(
            "the current token no longer works and no identity was recorded to compare with".into()
        ));
    };
    if reference.team_id != new.team_id {
        return Ok(Err(format!(
            "it belongs to team {} but the current token to team {}",
            new.team_id.as_deref().unwrap_or("?"),
            reference.team_id.as_deref().unwrap_or("?")
        )));
    }
    let allow_change = stk.spec.manual.as_ref().is_some_and(|m| m.allow_identity_change);
    if !allow_change && reference.user_id != new.user_id {
        return Ok(Err(format!(
            "it belongs to user {} but the current token to {} (set spec.manual.allowIdentityChange: true to accept)",
            new.user_id.as_deref().unwrap_or("?"),
            reference.user_id.as_deref().unwrap_or("?")
        )));
    }
    Ok(Ok(new))
}

/// Moves the pending token to `accessToken` in one write with a resourceVersion precondition.
async fn save_handover(
    secrets: &Api<Secret>,
    name: &str,
    latest: Secret,
    token: &SecretString,
    now: Timestamp,
) -> Result<(), Error> {
    rotation::update_credentials(secrets, name, latest, |secret| {
        let data = secret.data.get_or_insert_with(Default::default);
        data.insert(credentials::ACCESS_TOKEN.into(), ByteString(token.expose_secret().as_bytes().to_vec()));
        data.remove(PENDING_TOKEN);
        credentials::set_issued_at(secret, now);
    })
    .await?;
    Ok(())
}

fn identity_of(who: &AuthTest) -> crate::crd::Identity {
    crate::crd::Identity {
        team_id: who.team_id.clone(),
        enterprise_id: who.enterprise_id.clone(),
        app_id: who.app_id.clone(),
        user_id: who.user_id.clone(),
        bot_user_id: None,
        scopes: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_reissue_steps_that_end_in_the_hand_over() {
        let kinds = [
            ManualKind::LegacyTestToken,
            ManualKind::CustomIntegrationBot,
            ManualKind::HubotLita,
            ManualKind::App,
        ];
        let steps: Vec<String> = kinds.iter().map(|k| reissue_steps(*k, "c")).collect();
        assert!(steps[0].contains("legacy-tokens") && steps[0].contains("auth.revoke"));
        assert!(steps[1].contains("custom-integrations"));
        assert!(steps[2].contains("apps/manage") && steps[2].contains("Regenerate"));
        assert!(steps[3].contains("reinstall"));
        assert!(steps.iter().all(|s| s.contains("pendingToken")));
    }
}
