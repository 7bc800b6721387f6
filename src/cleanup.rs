//! `revokeOnDelete`: a finalizer that revokes the current token before the SlackToken goes.
//!
//! The token to revoke is in the credentials Secret, so that Secret carries the same finalizer
//! while the SlackToken wants revoking: deleting the namespace deletes both at once, and without
//! it the Secret (and the token) would be gone before the revoke could run. Both are released
//! together once the token is revoked.
//!
//! Deleting a namespace must never hang on Slack, so there is an escape: the annotation
//! `slack.rotator.dev/skip-revoke` releases the finalizers without calling Slack, and a token that
//! can no longer be found is reported and released too.

use crate::{
    controller::Context,
    crd::SlackToken,
    credentials::{Credentials, SLACKTOKEN_LABEL},
    error::Error,
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    runtime::events::EventType,
    Resource, ResourceExt,
};
use serde_json::json;

pub const REVOKE_FINALIZER: &str = "slack.rotator.dev/revoke-on-delete";
pub const SKIP_REVOKE_ANNOTATION: &str = "slack.rotator.dev/skip-revoke";

/// Adds or removes our finalizer so that it is present exactly when `revokeOnDelete` is set.
pub async fn sync_finalizer(tokens: &Api<SlackToken>, stk: &SlackToken) -> Result<(), Error> {
    if holds(stk) == stk.spec.revoke_on_delete {
        return Ok(());
    }
    let mut finalizers = without_ours(stk);
    if stk.spec.revoke_on_delete {
        finalizers.push(REVOKE_FINALIZER.to_owned());
    }
    set_finalizers(tokens, stk, finalizers).await
}

/// Labels the credentials Secret for this SlackToken (so that a fix to it wakes us through the
/// watch) and holds it with our finalizer exactly while `revokeOnDelete` is set. One patch, and
/// none when both are already right.
pub async fn claim_credentials(
    secrets: &Api<Secret>,
    stk: &SlackToken,
    secret: Secret,
) -> Result<Secret, Error> {
    let labelled = secret.labels().get(SLACKTOKEN_LABEL) == Some(&stk.name_any());
    let held = holds(&secret);
    // The API server refuses new finalizers on an object already being deleted.
    let hold = stk.spec.revoke_on_delete && (held || secret.meta().deletion_timestamp.is_none());
    if labelled && held == hold {
        return Ok(secret);
    }
    let mut patch = json!({"metadata": {"labels": {SLACKTOKEN_LABEL: stk.name_any()}}});
    if held != hold {
        let mut finalizers = without_ours(&secret);
        if hold {
            finalizers.push(REVOKE_FINALIZER.to_owned());
        }
        patch["metadata"]["finalizers"] = json!(finalizers);
        patch["metadata"]["resourceVersion"] = json!(secret.resource_version());
    }
    Ok(secrets.patch(&secret.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?)
}

/// Releases our finalizer from Secrets labelled for this SlackToken other than its current
/// credentials: ones it held before `credentialsRef` was changed. Only worth a list when the
/// spec changed.
pub async fn release_stale_credentials(secrets: &Api<Secret>, stk: &SlackToken) -> Result<(), Error> {
    let current = &stk.spec.credentials_ref.name;
    for secret in held_for(secrets, stk).await?.iter().filter(|s| &s.name_any() != current) {
        release_secret(secrets, secret).await?;
    }
    Ok(())
}

/// Runs when a SlackToken with our finalizer is being deleted. Returns once the finalizer is
/// released; a transient Slack failure is returned as an error and retried with backoff.
pub async fn on_delete(
    ctx: &Context,
    tokens: &Api<SlackToken>,
    secrets: &Api<Secret>,
    stk: &SlackToken,
) -> Result<(), Error> {
    if !holds(stk) {
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
        return release(tokens, secrets, stk).await;
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
        return release(tokens, secrets, stk).await;
    };
    if ctx.slack.revoke(&token).await? {
        ctx.event(stk, EventType::Normal, "Revoked", "the token was revoked with auth.revoke".into()).await;
    }
    release(tokens, secrets, stk).await
}

/// Releases the credentials Secret(s) first, then the SlackToken: the other way round, a failure
/// in between would leave a Secret held by a SlackToken that no longer exists.
async fn release(tokens: &Api<SlackToken>, secrets: &Api<Secret>, stk: &SlackToken) -> Result<(), Error> {
    for secret in held_for(secrets, stk).await? {
        release_secret(secrets, &secret).await?;
    }
    set_finalizers(tokens, stk, without_ours(stk)).await
}

/// Secrets labelled for this SlackToken that carry our finalizer.
async fn held_for(secrets: &Api<Secret>, stk: &SlackToken) -> Result<Vec<Secret>, Error> {
    let selector = format!("{SLACKTOKEN_LABEL}={}", stk.name_any());
    let list = secrets.list(&ListParams::default().labels(&selector)).await?;
    Ok(list.items.into_iter().filter(holds).collect())
}

async fn release_secret(secrets: &Api<Secret>, secret: &Secret) -> Result<(), Error> {
    set_finalizers(secrets, secret, without_ours(secret)).await
}

fn holds(object: &impl Resource) -> bool {
    object.finalizers().iter().any(|f| f == REVOKE_FINALIZER)
}

fn without_ours(object: &impl Resource) -> Vec<String> {
    object.finalizers().iter().filter(|f| *f != REVOKE_FINALIZER).cloned().collect()
}

/// Merge patch of the whole list with a resourceVersion precondition: another controller's
/// finalizer added meanwhile is never dropped (we get a conflict and come back).
async fn set_finalizers<K>(api: &Api<K>, object: &K, finalizers: Vec<String>) -> Result<(), Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}});
    match api.patch(&object.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
