//! `revokeOnDelete`: a finalizer that revokes the current token before the SlackToken goes.
//!
//! Deleting a namespace must never hang on Slack, so there is an escape: the annotation
//! `slack.rotator.dev/skip-revoke` releases the finalizer without calling Slack, and a token that
//! can no longer be found (its credentials Secret went first) is reported and released too.

use crate::{controller::Context, crd::SlackToken, credentials::Credentials, error::Error};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::{Api, Patch, PatchParams},
    runtime::events::EventType,
    ResourceExt,
};
use serde_json::json;

pub const REVOKE_FINALIZER: &str = "slack.rotator.dev/revoke-on-delete";
pub const SKIP_REVOKE_ANNOTATION: &str = "slack.rotator.dev/skip-revoke";

/// Adds or removes our finalizer so that it is present exactly when `revokeOnDelete` is set.
pub async fn sync_finalizer(tokens: &Api<SlackToken>, stk: &SlackToken) -> Result<(), Error> {
    let has = stk.finalizers().iter().any(|f| f == REVOKE_FINALIZER);
    if has == stk.spec.revoke_on_delete {
        return Ok(());
    }
    let mut finalizers: Vec<String> =
        stk.finalizers().iter().filter(|f| *f != REVOKE_FINALIZER).cloned().collect();
    if stk.spec.revoke_on_delete {
        finalizers.push(REVOKE_FINALIZER.to_owned());
    }
    set_finalizers(tokens, stk, finalizers).await
}

/// Runs when a SlackToken with our finalizer is being deleted. Returns once the finalizer is
/// released; a transient Slack failure is returned as an error and retried with backoff.
pub async fn on_delete(
    ctx: &Context,
    tokens: &Api<SlackToken>,
    secrets: &Api<Secret>,
    stk: &SlackToken,
) -> Result<(), Error> {
    if !stk.finalizers().iter().any(|f| f == REVOKE_FINALIZER) {
        return Ok(());
    }
    if stk.annotations().contains_key(SKIP_REVOKE_ANNOTATION) {
        ctx.event(
            stk,
            EventType::Warning,
            "RevokeSkipped",
            format!("{SKIP_REVOKE_ANNOTATION} is set: the token was not revoked"),
        )
        .await;
        return release(tokens, stk).await;
    }
    let creds = match secrets.get_opt(&stk.spec.credentials_ref.name).await? {
        Some(secret) => Credentials::from_secret(&secret).ok().and_then(|c| c.access_token),
        None => None,
    };
    let Some(token) = creds else {
        let note = format!(
            "credentials Secret {} holds no token any more (deleted first?): nothing was revoked",
            stk.spec.credentials_ref.name
        );
        ctx.event(stk, EventType::Warning, "RevokeSkipped", note).await;
        return release(tokens, stk).await;
    };
    match ctx.slack.revoke(&token).await {
        Ok(_) => {
            ctx.event(stk, EventType::Normal, "Revoked", "the token was revoked with auth.revoke".into())
                .await
        }
        // Already unusable: nothing left to revoke.
        Err(e) if e.token_is_dead() => {}
        Err(e) => return Err(e.into()),
    }
    release(tokens, stk).await
}

async fn release(tokens: &Api<SlackToken>, stk: &SlackToken) -> Result<(), Error> {
    let finalizers = stk.finalizers().iter().filter(|f| *f != REVOKE_FINALIZER).cloned().collect();
    set_finalizers(tokens, stk, finalizers).await
}

/// Merge patch of the whole list with a resourceVersion precondition: another controller's
/// finalizer added meanwhile is never dropped (we get a conflict and come back).
async fn set_finalizers(
    tokens: &Api<SlackToken>,
    stk: &SlackToken,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": stk.resource_version()}});
    match tokens.patch(&stk.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
