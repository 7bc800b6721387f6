//! The output Secret: what applications mount. Created and owned by the operator (an
//! ownerReference to the SlackToken, so the garbage collector removes it with the SlackToken),
//! derived entirely from the credentials Secret and so always rebuildable.

use super::{
    store::write_params,
    written::{token_fingerprint, KnownOutput, OutputFacts, OwnWrites},
};
use crate::{
    error::Error,
    resource::{SlackToken, MANAGED_BY, MANAGED_BY_LABEL, RESTART_PENDING_ANNOTATION, SLACKTOKEN_LABEL},
};
use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::{
    api::{Api, ObjectMeta, Patch, PatchParams},
    Resource, ResourceExt,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Whether an existing output Secret may be written by this SlackToken: it is owned by it, or
/// was made by the operator for a SlackToken of the same name (one deleted and created again).
/// Anyone else's Secret is never overwritten.
pub fn is_ours(stk: &SlackToken, existing: &Secret) -> bool {
    let owned = stk.uid().is_some_and(|uid| existing.owner_references().iter().any(|o| o.uid == uid));
    let made_for_this_name = existing.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && existing.labels().get(SLACKTOKEN_LABEL) == Some(&stk.name_any());
    owned || made_for_this_name
}

/// The output Secret as it should be: `existing` (if any) with the token under its key, the
/// template's labels and annotations, our labels and the owner reference.
pub fn desired(stk: &SlackToken, existing: Option<&Secret>, token: &SecretString) -> Option<Secret> {
    let spec = &stk.spec.secret_ref;
    let owner = stk.controller_owner_ref(&())?;
    let template = stk.spec.secret_template.clone().unwrap_or_default();
    let mut desired = existing.cloned().unwrap_or_else(|| Secret {
        metadata: ObjectMeta { name: Some(spec.name.clone()), ..Default::default() },
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    });
    let meta = &mut desired.metadata;
    let owners = meta.owner_references.get_or_insert_with(Vec::new);
    owners.retain(|o| o.controller != Some(true));
    owners.push(owner);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.extend(template.labels);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    labels.insert(SLACKTOKEN_LABEL.to_owned(), stk.name_any());
    if !template.annotations.is_empty() {
        meta.annotations.get_or_insert_with(Default::default).extend(template.annotations);
    }
    desired
        .data
        .get_or_insert_with(Default::default)
        .insert(spec.key.clone(), ByteString(token.expose_secret().as_bytes().to_vec()));
    Some(desired)
}

/// Whether writing `token` changes a token applications may already have read: the output
/// Secret exists and holds another one. (A Secret created now has had no readers.)
pub fn token_changes(stk: &SlackToken, existing: Option<&Secret>, token: &SecretString) -> bool {
    let current = existing.and_then(|e| e.data.as_ref()?.get(&stk.spec.secret_ref.key));
    existing.is_some() && current.is_none_or(|c| c.0 != token.expose_secret().as_bytes())
}

/// Makes the output Secret hold `token`. Writes only when something differs from `existing`
/// (the caller has checked that `existing` is ours). Returns whether the token changed (see
/// [`token_changes`]); if it did and `restart_mark` is given, the same write marks the Secret
/// with [`RESTART_PENDING_ANNOTATION`] so that the restarts it owes survive a failure or a crash.
/// What was written is recorded in `own`, so that the watch does not wake us for it and the next
/// reconcile need not read the Secret back.
pub async fn publish(
    secrets: &Api<Secret>,
    own: &OwnWrites,
    stk: &SlackToken,
    existing: Option<&Secret>,
    token: &SecretString,
    restart_mark: Option<&str>,
) -> Result<bool, Error> {
    let name = &stk.spec.secret_ref.name;
    let Some(mut desired) = desired(stk, existing, token) else {
        // Only a SlackToken the API server has not stored yet has no uid; the watch brings it back.
        return Ok(false);
    };
    let changed = token_changes(stk, existing, token);
    if let (true, Some(mark)) = (changed, restart_mark) {
        let annotations = desired.metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert(RESTART_PENDING_ANNOTATION.to_owned(), mark.to_owned());
    }
    let saved = match existing {
        Some(current) if *current == desired => current.clone(),
        Some(_) => secrets
            .replace(name, &write_params(), &desired)
            .await
            .map_err(Error::kube("update", "secrets", name))?,
        None => {
            secrets.create(&write_params(), &desired).await.map_err(Error::kube("create", "secrets", name))?
        }
    };
    if let Some(facts) = facts(stk, &saved) {
        own.wrote_output(&saved, facts);
    }
    Ok(changed)
}

/// [`publish`] without reading the output Secret: `known` is what our last write left there,
/// and the write (only when the token or the mark must change) carries its resourceVersion as a
/// precondition. `None`: the Secret changed meanwhile (or is gone); read it and [`publish`].
pub async fn publish_known(
    secrets: &Api<Secret>,
    own: &OwnWrites,
    stk: &SlackToken,
    known: &KnownOutput,
    token: &SecretString,
    restart_mark: Option<&str>,
) -> Result<Option<bool>, Error> {
    let spec = &stk.spec.secret_ref;
    if shape(stk) != Some(known.facts.shape) {
        return Ok(None);
    }
    let changed = token_fingerprint(token.expose_secret().as_bytes()) != known.facts.token;
    if !changed {
        return Ok(Some(false));
    }
    let mut patch = json!({
        "metadata": {"resourceVersion": known.resource_version},
        "data": {spec.key.clone(): ByteString(token.expose_secret().as_bytes().to_vec())},
    });
    if let Some(mark) = restart_mark {
        patch["metadata"]["annotations"] = json!({RESTART_PENDING_ANNOTATION: mark});
    }
    let params = PatchParams { field_manager: write_params().field_manager, ..Default::default() };
    match secrets.patch(&spec.name, &params, &Patch::Merge(&patch)).await {
        Ok(saved) => {
            if let Some(facts) = facts(stk, &saved) {
                own.wrote_output(&saved, facts);
            }
            Ok(Some(true))
        }
        Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
            own.forget(&stk.namespace().unwrap_or_default(), &spec.name);
            Ok(None)
        }
        Err(e) => Err(Error::kube("patch", "secrets", &spec.name)(e)),
    }
}

/// Hash of what the spec decides about the output Secret besides the token: owner, key and
/// template. Equal shapes mean a token-only write keeps the Secret as [`desired`] would make it.
pub fn shape(stk: &SlackToken) -> Option<u64> {
    let mut h = DefaultHasher::new();
    stk.uid()?.hash(&mut h);
    stk.name_any().hash(&mut h);
    stk.spec.secret_ref.key.hash(&mut h);
    if let Some(template) = &stk.spec.secret_template {
        template.labels.hash(&mut h);
        template.annotations.hash(&mut h);
    }
    Some(h.finish())
}

/// What the output Secret `saved` holds for `stk`, to remember after writing it.
pub fn facts(stk: &SlackToken, saved: &Secret) -> Option<OutputFacts> {
    let token = saved.data.as_ref()?.get(&stk.spec.secret_ref.key)?;
    Some(OutputFacts {
        token: token_fingerprint(&token.0),
        shape: shape(stk)?,
        restart_pending: saved.annotations().contains_key(RESTART_PENDING_ANNOTATION),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{SlackTokenSpec, TokenType};

    #[test]
    fn only_a_different_token_in_an_existing_secret_is_a_change() {
        let stk = SlackToken::new("bot", SlackTokenSpec::new(TokenType::OAuth, "c", "o"));
        let holding = |value: Option<&str>| Secret {
            data: value.map(|v| [("token".to_owned(), ByteString(v.as_bytes().to_vec()))].into()),
            ..Default::default()
        };
        let token = SecretString::from("new".to_owned());
        // (existing output Secret, changes)
        let table = [
            (None, false),
            (Some(holding(Some("new"))), false),
            (Some(holding(Some("old"))), true),
            (Some(holding(None)), true),
        ];
        for (existing, changes) in table {
            assert_eq!(token_changes(&stk, existing.as_ref(), &token), changes, "{existing:?}");
        }
    }
}
