//! Step 5: the token into the output Secret.

use crate::{
    error::Error,
    reconcile::{context::Context, decide, observe::Snapshot},
    secrets,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use secrecy::SecretString;

/// Puts `token` into the output Secret. Without reading it when our last write says what it
/// holds; if it changed since (the write's precondition fails), it is read again, and written as
/// usual if decide still finds it ours. Returns whether the token in it changed.
pub async fn publish(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    token: &SecretString,
    mark: Option<&str>,
) -> Result<bool, Error> {
    let stk = &s.slacktoken;
    let Some(known) = &s.known_output else {
        return secrets::publish(secrets, &ctx.own_writes, stk, s.output.as_ref(), token, mark).await;
    };
    if let Some(changed) = secrets::publish_known(secrets, &ctx.own_writes, stk, known, token, mark).await? {
        return Ok(changed);
    }
    let name = &stk.spec.secret_ref.name;
    let existing = secrets.get_opt(name).await.map_err(Error::kube("get", "secrets", name))?;
    if let Some(conflict) = decide::output_conflict(stk, existing.as_ref()) {
        return Err(conflict.into());
    }
    secrets::publish(secrets, &ctx.own_writes, stk, existing.as_ref(), token, mark).await
}
