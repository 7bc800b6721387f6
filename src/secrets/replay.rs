//! Start-up: save the pairs a previous run of this container journaled but did not save.
//!
//! Runs before the controller takes any work (on every replica, leader or not: a former leader
//! whose container restarted after another replica took over must still save what it holds).
//! Each pair is saved only into a Secret that still holds the token it replaces; one that has
//! moved on (another replica saved a newer pair, a person put in another token) is dropped.
//! While the API server cannot be reached it waits and tries again; a pair that cannot be saved
//! for another reason stays pending, and the controller will not call Slack for that Secret
//! until it is saved.

use super::{
    journal::Entry,
    pending::PendingPairs,
    store::{save_pair, Saved},
};
use crate::error::Error;
use k8s_openapi::api::core::v1::Secret;
use kube::{api::Api, Client};
use std::time::Duration;
use tracing::{error, info, warn};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What a replay did, by outcome.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub saved: usize,
    pub already_saved: usize,
    pub superseded: usize,
    pub dropped: usize,
    pub damaged: usize,
    pub left_pending: usize,
}

pub async fn replay(client: &Client, pending: &PendingPairs) -> Replayed {
    let mut replayed = Replayed::default();
    let Some(journal) = pending.journal() else {
        return replayed;
    };
    let (entries, damaged) = match journal.read_all() {
        Ok(read) => read,
        Err(e) => {
            error!(error = %e, journal = %journal.dir().display(), "could not read the journal");
            return replayed;
        }
    };
    for d in &damaged {
        error!(path = %d.path.display(), why = %d.why, "a journal entry is damaged and was set aside; its token pair cannot be recovered from it");
    }
    replayed.damaged = damaged.len();
    // Every pair is known before anything else happens, so nothing can call Slack for its Secret.
    for entry in &entries {
        pending.load(entry.clone());
    }
    for entry in entries {
        let (namespace, name) = (entry.namespace.clone(), entry.name.clone());
        match save_with_retries(client, &entry).await {
            Ok(Saved::Written(_)) => {
                info!(%namespace, secret = %name, "saved a token pair from the journal");
                replayed.saved += 1;
                pending.remove(&namespace, &name).await;
            }
            Ok(Saved::AlreadyThere(_)) => {
                replayed.already_saved += 1;
                pending.remove(&namespace, &name).await;
            }
            Ok(Saved::Superseded) => {
                warn!(%namespace, secret = %name, "dropped a journaled token pair: the credentials Secret already holds a newer refresh token");
                replayed.superseded += 1;
                pending.remove(&namespace, &name).await;
            }
            Err(e) if namespace_gone(&e) => {
                warn!(%namespace, secret = %name, "dropped a journaled token pair: its namespace no longer exists");
                replayed.dropped += 1;
                pending.remove(&namespace, &name).await;
            }
            Err(e) => {
                warn!(%namespace, secret = %name, error = %e, "could not save a journaled token pair; it stays pending and is retried by the controller");
                replayed.left_pending += 1;
            }
        }
    }
    replayed
}

/// Tries until the API server answers something other than a transient failure.
async fn save_with_retries(client: &Client, entry: &Entry) -> Result<Saved, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &entry.namespace);
    let mut wait = FIRST_RETRY;
    loop {
        let attempt = async {
            let latest =
                secrets.get_opt(&entry.name).await.map_err(Error::kube("get", "secrets", &entry.name))?;
            save_pair(&secrets, latest, entry, None).await
        };
        match attempt.await {
            Err(e) if e.is_transient() => {
                warn!(namespace = %entry.namespace, secret = %entry.name, error = %e, retry_in_secs = wait.as_secs(),
                    "waiting for the API server to save a journaled token pair");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY);
            }
            other => return other,
        }
    }
}

/// A create into a namespace that is gone answers 404 NotFound.
fn namespace_gone(e: &Error) -> bool {
    matches!(e, Error::Kube { verb: "create", source: kube::Error::Api(s), .. } if s.code == 404)
}
