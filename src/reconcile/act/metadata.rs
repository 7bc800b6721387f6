//! Steps 1 to 3: our finalizers and label on the SlackToken and its Secrets (metadata only).

use crate::{
    error::Error,
    reconcile::{
        context::Context,
        decide::{has_our_finalizer, Claim},
        observe::Snapshot,
    },
    resource::{SlackToken, REVOKE_FINALIZER, SLACKTOKEN_LABEL},
};
use k8s_openapi::api::core::v1::Secret;
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    Resource, ResourceExt,
};
use serde_json::json;

pub fn secrets_api(ctx: &Context, s: &Snapshot) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &s.namespace())
}

pub fn slacktokens_api(ctx: &Context, s: &Snapshot) -> Api<SlackToken> {
    Api::namespaced(ctx.client.clone(), &s.namespace())
}

/// One patch: our label, and our finalizer added or removed, with a resourceVersion
/// precondition: the finalizer list is written whole, and of two SlackTokens claiming one
/// unlabelled Secret at once exactly one must win (the other would hand Slack the same refresh
/// token). The loser gets a conflict, and its next reconcile finds the Secret labelled for the
/// winner: `CredentialsInUse`, before Slack is called or anything published.
pub async fn claim_credentials(
    secrets: &Api<Secret>,
    stk: &SlackToken,
    secret: &Secret,
    claim: &Claim,
) -> Result<Secret, Error> {
    let mut patch = json!({"metadata": {
        "labels": {SLACKTOKEN_LABEL: stk.name_any()},
        "resourceVersion": secret.resource_version(),
    }});
    if let Some(hold) = claim.hold {
        let mut finalizers = without_ours(secret);
        if hold {
            finalizers.push(REVOKE_FINALIZER.to_owned());
        }
        patch["metadata"]["finalizers"] = json!(finalizers);
    }
    let name = secret.name_any();
    match secrets.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(claimed) => Ok(claimed),
        Err(kube::Error::Api(e)) if e.code == 409 => Err(Error::CredentialsChanged { name }),
        Err(e) => Err(Error::kube("patch", "secrets", &name)(e)),
    }
}

/// Secrets labelled for this SlackToken that carry our finalizer.
pub async fn held_for(secrets: &Api<Secret>, stk: &SlackToken) -> Result<Vec<Secret>, Error> {
    let selector = format!("{SLACKTOKEN_LABEL}={}", stk.name_any());
    let list = secrets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list", "secrets", &selector))?;
    Ok(list.items.into_iter().filter(has_our_finalizer).collect())
}

pub fn without_ours(object: &impl Resource) -> Vec<String> {
    object.finalizers().iter().filter(|f| *f != REVOKE_FINALIZER).cloned().collect()
}

/// Merge patch of the whole list with a resourceVersion precondition: another controller's
/// finalizer added meanwhile is never dropped (we get a conflict and come back). Gone is done.
pub async fn set_finalizers<K>(api: &Api<K>, object: &K, finalizers: Vec<String>) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": object.resource_version()}});
    let name = object.name_any();
    match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::kube("patch", resource_name::<K>(), &name)(e)),
    }
}

/// The resource (plural) of `K`, for error messages: the type's own (`secrets`, `slacktokens`).
fn resource_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::plural(&()) {
        std::borrow::Cow::Borrowed(plural) => plural,
        // Static types (k8s-openapi's, kube's derive) name their plural as a literal.
        std::borrow::Cow::Owned(_) => "objects",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_name_the_resource_of_each_type() {
        assert_eq!(super::resource_name::<k8s_openapi::api::core::v1::Secret>(), "secrets");
        assert_eq!(super::resource_name::<crate::resource::SlackToken>(), "slacktokens");
        assert_eq!(super::resource_name::<k8s_openapi::api::apps::v1::Deployment>(), "deployments");
    }
}
