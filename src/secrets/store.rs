//! Writes to the credentials Secret: the one place rotation state lives, so every write is
//! guarded by a resourceVersion precondition and none is ever lost to a concurrent edit.

use super::{
    credentials::{self, chain_token},
    journal::{fingerprint, Entry},
};
use crate::{
    conflict::{conflict_or, retry_on_conflict, Failed},
    error::Error,
    resource::{MANAGER, ROTATED_FOR_ANNOTATION, SLACKTOKEN_LABEL},
};
use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::api::{Api, ObjectMeta, PostParams};
use secrecy::{ExposeSecret, SecretString};

/// How often a conflicting write of the credentials Secret is re-read and retried in one go.
const SAVE_ATTEMPTS: usize = 5;

pub fn write_params() -> PostParams {
    PostParams { field_manager: Some(MANAGER.to_owned()), ..Default::default() }
}

/// Writes the credentials Secret once, with a resourceVersion precondition. On a conflict (someone
/// edited it meanwhile) it re-reads and re-applies `change`, so neither their edit nor ours is lost.
pub async fn update(
    secrets: &Api<Secret>,
    name: &str,
    latest: Secret,
    change: impl Fn(&mut Secret),
) -> Result<Secret, Error> {
    let change = &change;
    let write = |mut updated: Secret| async move {
        change(&mut updated);
        let written = secrets.replace(name, &write_params(), &updated).await;
        written.map_err(conflict_or(Error::kube("update", "secrets", name)))
    };
    let reread = || async { secrets.get(name).await.map_err(Error::kube("get", "secrets", name)) };
    retry_on_conflict(SAVE_ATTEMPTS, ("secrets", name), latest, write, reread).await
}

/// What became of a pair being saved.
#[derive(Debug)]
pub enum Saved {
    /// Written now; the Secret as saved.
    Written(Secret),
    /// The Secret already held it (saved before a crash that kept the journal entry).
    AlreadyThere(Secret),
    /// The Secret holds neither the token this pair replaces nor the pair: another replica saved
    /// a newer pair, or a person put in another token. Overwriting that would break its chain.
    Superseded,
}

/// Saves a pair Slack issued into credentials Secret `entry.name`, only while the Secret still
/// holds the token the pair replaces (checked again on every conflict). `latest` is the Secret
/// as last read, `None` if it is gone: then it is created again with everything known
/// (`client`: the app's id and secret, when at hand), since the pair is the only copy of the new
/// refresh token.
pub async fn save_pair(
    secrets: &Api<Secret>,
    latest: Option<Secret>,
    entry: &Entry,
    client: Option<(&str, &SecretString)>,
) -> Result<Saved, Error> {
    let name = &entry.name;
    let record = |secret: &mut Secret| {
        credentials::record_issued(secret, &entry.issued, entry.issued_at);
        secret
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(SLACKTOKEN_LABEL.to_owned(), entry.slacktoken.clone());
        // Whatever triggered it, this rotation satisfies any outstanding rotate-now request.
        if let Some(request) = &entry.rotate_request {
            let annotations = secret.metadata.annotations.get_or_insert_with(Default::default);
            annotations.insert(ROTATED_FOR_ANNOTATION.to_owned(), request.clone());
        }
    };
    let new = fingerprint(&entry.issued.refresh_token);
    let (record, new) = (&record, &new);
    let write = |latest: Option<Secret>| async move {
        let Some(mut current) = latest else {
            let mut fresh = new_credentials(name, client);
            record(&mut fresh);
            let created = secrets.create(&write_params(), &fresh).await;
            return created.map(Saved::Written).map_err(conflict_or(Error::kube("create", "secrets", name)));
        };
        match chain_token(&current).map(|t| fingerprint(&t)) {
            Some(held) if held == *new => return Ok(Saved::AlreadyThere(current)),
            Some(held) if held == entry.replaces => {}
            _ => return Ok(Saved::Superseded),
        }
        record(&mut current);
        match secrets.replace(name, &write_params(), &current).await {
            Ok(saved) => Ok(Saved::Written(saved)),
            // Deleted meanwhile: read again, and it is created anew.
            Err(kube::Error::Api(e)) if e.code == 404 => Err(Failed::Conflict),
            Err(e) => Err(conflict_or(Error::kube("update", "secrets", name))(e)),
        }
    };
    let reread = || async { secrets.get_opt(name).await.map_err(Error::kube("get", "secrets", name)) };
    retry_on_conflict(SAVE_ATTEMPTS, ("secrets", name), latest, write, reread).await
}

/// A credentials Secret made anew, with the app's id and secret when at hand.
fn new_credentials(name: &str, client: Option<(&str, &SecretString)>) -> Secret {
    let mut fresh = Secret {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        ..Default::default()
    };
    if let Some((id, secret)) = client {
        let data = fresh.data.get_or_insert_with(Default::default);
        data.insert(credentials::CLIENT_ID.into(), ByteString(id.as_bytes().to_vec()));
        data.insert(
            credentials::CLIENT_SECRET.into(),
            ByteString(secret.expose_secret().as_bytes().to_vec()),
        );
    }
    fresh
}
