//! Step 6: the `rolloutRestartTargets` restarted onto a changed token.

use super::outcome::Outcome;
use crate::{
    error::{Error, RestartFailure},
    reconcile::{context::Context, decide::Restart, observe::Snapshot},
    resource::{RolloutRestartTarget, MANAGER, RESTARTED_AT_ANNOTATION, RESTART_PENDING_ANNOTATION},
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Step 6: one patch per target, as `kubectl rollout restart` makes; then the mark goes, unless
/// a restart is to be retried (the next reconcile finds the mark and tries again).
pub async fn restart_targets(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    restart: &Restart,
    out: &mut Outcome,
) {
    let namespace = s.namespace();
    if restart.now(out.token_changed) {
        let at = crate::clock::format_time(s.now);
        for target in &restart.targets {
            let result = restart_one(ctx, &namespace, target, &at).await;
            let failure = result.err().map(|e| {
                tracing::warn!(target = %target, error = %e, "rollout restart failed");
                e.restart_failure()
            });
            ctx.metrics.count_rollout_restart(failure.map_or("Restarted", RestartFailure::reason));
            out.restarts.push((target.clone(), failure));
        }
    }
    if restart.clear_mark(out.token_changed, &out.restarts) {
        let name = &s.slacktoken.spec.secret_ref.name;
        let patch = json!({"metadata": {"annotations": {RESTART_PENDING_ANNOTATION: null}}});
        // Not recorded as our own write: it carries no precondition, so the watch must show us
        // whatever it was applied on top of (see `secrets::OwnWrites`).
        if let Err(e) = secrets.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            // The restarts are done; the worst a stale mark does is restart them once more.
            tracing::warn!(error = %e, "could not clear the restart mark of the output Secret");
        }
    }
}

async fn restart_one(
    ctx: &Context,
    namespace: &str,
    target: &RolloutRestartTarget,
    at: &str,
) -> Result<(), Error> {
    let gvk = kube::api::GroupVersionKind::gvk("apps", "v1", target.kind.as_str());
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, target.kind.plural());
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, &resource);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: at}}}}});
    let params = PatchParams { field_manager: Some(MANAGER.to_owned()), ..Default::default() };
    api.patch(&target.name, &params, &Patch::Merge(&patch)).await.map(drop).map_err(Error::kube(
        "patch",
        target.kind.plural(),
        &target.name,
    ))
}
