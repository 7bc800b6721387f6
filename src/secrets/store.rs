//! Writes to the credentials Secret: the one place rotation state lives, so every write is
//! guarded by a resourceVersion precondition and none is ever lost to a concurrent edit.

use super::credentials::{self, Credentials};
use crate::{error::Error, resource::MANAGER, slack::Issued};
use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::api::{Api, ObjectMeta, PostParams};
use secrecy::ExposeSecret;

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
    mut latest: Secret,
    change: impl Fn(&mut Secret),
) -> Result<Secret, Error> {
    for _ in 0..SAVE_ATTEMPTS {
        let mut updated = latest.clone();
        change(&mut updated);
        match secrets.replace(name, &write_params(), &updated).await {
            Ok(saved) => return Ok(saved),
            Err(kube::Error::Api(e)) if e.code == 409 => {
                latest = secrets.get(name).await.map_err(Error::kube("get", "secrets", name))?;
            }
            Err(e) => return Err(Error::kube("update", "secrets", name)(e)),
        }
    }
    Err(Error::Conflict { resource: "secrets", name: name.to_owned() })
}

/// Saves a pair Slack issued into the credentials Secret, with `also` (labels, annotations) in
/// the same write. If the Secret was deleted after Slack answered, it is created again with
/// everything known: the pair is the only copy of the new refresh token.
pub async fn save_issued(
    secrets: &Api<Secret>,
    latest: Secret,
    creds: &Credentials,
    issued: &Issued,
    now: Timestamp,
    also: impl Fn(&mut Secret),
) -> Result<Secret, Error> {
    let name = latest.metadata.name.clone().unwrap_or_default();
    let record = |secret: &mut Secret| {
        credentials::record_issued(secret, issued, now);
        also(secret);
    };
    match update(secrets, &name, latest, record).await {
        Err(Error::Kube { source: kube::Error::Api(e), .. }) if e.code == 404 => {
            let mut fresh = Secret {
                metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
                ..Default::default()
            };
            if let Some((id, secret)) = creds.client_id.as_ref().zip(creds.client_secret.as_ref()) {
                let data = fresh.data.get_or_insert_with(Default::default);
                data.insert(credentials::CLIENT_ID.into(), ByteString(id.as_bytes().to_vec()));
                data.insert(
                    credentials::CLIENT_SECRET.into(),
                    ByteString(secret.expose_secret().as_bytes().to_vec()),
                );
            }
            record(&mut fresh);
            secrets.create(&write_params(), &fresh).await.map_err(Error::kube("create", "secrets", &name))
        }
        other => other,
    }
}
