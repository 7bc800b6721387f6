//! Manual tokens: steps 4 (start the period), 5 (hand-over), 6 (health check) and 7 (publish).

use super::{outcome::Outcome, publish::publish};
use crate::{
    error::Error,
    reconcile::{
        context::Context,
        decide::{self, HandOver, Manual, Trigger},
        observe::Snapshot,
        schedule::TokenTimes,
    },
    resource::{Identity, SlackToken, HANDOVER_ANNOTATION, ISSUED_AT_ANNOTATION},
    secrets::{self, Credentials, PENDING_TOKEN},
    slack::AuthTest,
};
use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::{
    api::{Api, Patch, PatchParams},
    ResourceExt,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// Carries out a Manual token's plan.
#[allow(clippy::too_many_arguments)]
pub async fn carry_out_manual(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    plan: &Manual,
    mut credentials: Secret,
    creds: &Credentials,
    mark: Option<&str>,
    out: &mut Outcome,
) -> Result<(), Error> {
    let Some(current) = &creds.access_token else {
        return Ok(()); // decide refuses this
    };
    if plan.stamp_issued_at {
        let name = &s.slacktoken.spec.credentials_ref.name;
        let patch =
            json!({"metadata": {"annotations": {ISSUED_AT_ANNOTATION: crate::clock::format_time(s.now)}}});
        credentials = secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("patch", "secrets", name))?;
        out.credentials_version = credentials.resource_version();
    }
    if let Some(hand_over) = plan.hand_over {
        take_over(ctx, s, secrets, hand_over, credentials, creds, mark, out).await?;
    }
    let issued_at = match out.rotated {
        Some(_) => s.now,
        None => {
            if plan.health_check {
                // A long-lived token can be revoked by a person or by Slack for disuse at any time.
                let who = ctx.slack.auth_test(current).await?;
                out.identity = Some(identity_of(&who));
                out.checked_at = Some(s.now);
            }
            out.token_changed |= publish(ctx, s, secrets, current, mark).await?;
            creds.issued_at.unwrap_or(s.now)
        }
    };
    out.times = TokenTimes { issued_at: Some(issued_at), ..Default::default() };
    Ok(())
}

/// Step 5: the token a person supplied as `pendingToken` is checked; if accepted it is
/// published, the one it replaces revoked (if asked), and it moves to `accessToken`. If refused,
/// the reason is in `out.refused`.
#[allow(clippy::too_many_arguments)]
async fn take_over(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    hand_over: HandOver,
    credentials: Secret,
    creds: &Credentials,
    mark: Option<&str>,
    out: &mut Outcome,
) -> Result<(), Error> {
    let (Some(current), Some(pending)) = (&creds.access_token, &creds.pending_token) else {
        return Ok(()); // decide plans a hand-over only for a supplied token
    };
    let who = match check_replacement(ctx, &s.slacktoken, current, pending, hand_over).await? {
        Ok(who) => who,
        // Named, so that `kubectl slacktoken handover --wait` sees this refusal is its
        // token's even when an earlier token was refused for the same reason.
        Err(why) => {
            out.refused = Some(match &creds.handover {
                Some(handover) => format!("{why} (hand-over {handover})"),
                None => why,
            });
            return Ok(());
        }
    };
    out.token_changed |= publish(ctx, s, secrets, pending, mark).await?;
    if hand_over.revoke_replaced {
        // The help article's first step; done once the new token is live.
        out.revoked = ctx.slack.revoke(current).await?;
    }
    let name = &s.slacktoken.spec.credentials_ref.name;
    let saved = save_hand_over(secrets, name, credentials, pending, s.now).await?;
    ctx.own_writes.wrote(&saved);
    out.credentials_version = saved.resource_version();
    out.rotated = Some(Trigger::HandOver);
    out.identity = Some(identity_of(&who));
    out.checked_at = Some(s.now);
    Ok(())
}

/// Checks a supplied token with auth.test against the current one's identity. Outer error: try
/// again later; inner error: the token is refused, with the reason.
async fn check_replacement(
    ctx: &Context,
    stk: &SlackToken,
    current: &SecretString,
    pending: &SecretString,
    hand_over: HandOver,
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
    Ok(decide::accept_replacement(reference.as_ref(), &new, hand_over.allow_identity_change).map(|()| new))
}

/// Moves the pending token to `accessToken` in one write with a resourceVersion precondition.
async fn save_hand_over(
    secrets: &Api<Secret>,
    name: &str,
    latest: Secret,
    token: &SecretString,
    now: Timestamp,
) -> Result<Secret, Error> {
    secrets::update_credentials(secrets, name, latest, |secret| {
        let data = secret.data.get_or_insert_with(Default::default);
        data.insert(secrets::ACCESS_TOKEN.into(), ByteString(token.expose_secret().as_bytes().to_vec()));
        data.remove(PENDING_TOKEN);
        if let Some(annotations) = secret.metadata.annotations.as_mut() {
            annotations.remove(HANDOVER_ANNOTATION);
        }
        secrets::set_issued_at(secret, now);
    })
    .await
}

fn identity_of(who: &AuthTest) -> Identity {
    Identity {
        team_id: who.team_id.clone(),
        enterprise_id: who.enterprise_id.clone(),
        app_id: who.app_id.clone(),
        user_id: who.user_id.clone(),
        bot_user_id: None,
        scopes: None,
    }
}
