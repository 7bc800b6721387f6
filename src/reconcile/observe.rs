//! Observe: read everything one reconcile decides on, once, into a [`Snapshot`].

use super::{backoff::Hold, context::Context};
use crate::{
    error::{CredentialsError, Error},
    resource::{CachedToken, SlackToken, RESTART_PENDING_ANNOTATION},
    secrets::{output_shape, Credentials, Entry, KnownOutput},
};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{api::Api, Resource, ResourceExt};

/// The world as one reconcile sees it.
pub struct Snapshot {
    /// The SlackToken as the API server has it now, not as the watch cache last saw it: a status
    /// that lags behind would make us handle the same rotate request twice.
    pub slacktoken: SlackToken,
    /// The credentials Secret straight from the API server (a stale copy would hand Slack a
    /// refresh token that was already spent); `None` if it does not exist.
    pub credentials: Option<CredentialsSecret>,
    /// The output Secret, if it exists and was read: not for a SlackToken being deleted, nor
    /// when `known_output` says what it holds.
    pub output: Option<Secret>,
    /// The output Secret as our last write left it, when the watch has shown no other version
    /// since: then it is not read (see `secrets::OwnWrites`).
    pub known_output: Option<KnownOutput>,
    /// A pair Slack issued for these credentials that is not saved yet.
    pub pending: Option<Entry>,
    /// A failure being held, if any.
    pub hold: Option<Hold>,
    pub now: Timestamp,
}

/// The credentials Secret and what it holds.
pub struct CredentialsSecret {
    pub secret: Secret,
    pub parsed: Result<Credentials, CredentialsError>,
}

impl CredentialsSecret {
    pub fn new(secret: Secret) -> Self {
        let parsed = Credentials::from_secret(&secret);
        Self { secret, parsed }
    }

    pub fn version(&self) -> Option<String> {
        self.secret.resource_version()
    }
}

impl Snapshot {
    /// The SlackToken alone, for reporting a failure to read the rest.
    pub fn unread(slacktoken: SlackToken, now: Timestamp) -> Self {
        Self {
            slacktoken,
            credentials: None,
            output: None,
            known_output: None,
            pending: None,
            hold: None,
            now,
        }
    }

    /// Whether the output Secret carries the restart-pending mark.
    pub fn restart_pending(&self) -> bool {
        let read =
            self.output.as_ref().is_some_and(|o| o.annotations().contains_key(RESTART_PENDING_ANNOTATION));
        read || self.known_output.as_ref().is_some_and(|k| k.facts.restart_pending)
    }

    pub fn namespace(&self) -> String {
        self.slacktoken.namespace().unwrap_or_default()
    }

    pub fn uid(&self) -> String {
        self.slacktoken.uid().unwrap_or_default()
    }
}

/// Reads the SlackToken named by `cached` afresh. `None` if it is gone.
pub async fn slacktoken(ctx: &Context, cached: &CachedToken) -> Result<Option<SlackToken>, Error> {
    let (name, namespace) = (cached.name_any(), cached.namespace().unwrap_or_default());
    let tokens: Api<SlackToken> = Api::namespaced(ctx.client.clone(), &namespace);
    tokens.get_opt(&name).await.map_err(Error::kube("get", "slacktokens", &name))
}

/// Reads what `slacktoken` refers to, and what this process remembers about it.
pub async fn snapshot(ctx: &Context, slacktoken: &SlackToken) -> Result<Snapshot, Error> {
    let namespace = slacktoken.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let credentials_name = &slacktoken.spec.credentials_ref.name;
    let credentials = secrets
        .get_opt(credentials_name)
        .await
        .map_err(Error::kube("get", "secrets", credentials_name))?
        .map(CredentialsSecret::new);
    let output_name = &slacktoken.spec.secret_ref.name;
    // What our last write left there, unless the spec now wants something else of it.
    let known_output = ctx
        .own_writes
        .output(&namespace, output_name)
        .filter(|known| output_shape(slacktoken) == Some(known.facts.shape));
    let output = match (slacktoken.meta().deletion_timestamp.as_ref(), &known_output) {
        (Some(_), _) | (None, Some(_)) => None,
        (None, None) => {
            secrets.get_opt(output_name).await.map_err(Error::kube("get", "secrets", output_name))?
        }
    };
    Ok(Snapshot {
        slacktoken: slacktoken.clone(),
        credentials,
        output,
        known_output,
        pending: ctx.pending.get(&namespace, credentials_name),
        hold: ctx.backoff.get(&slacktoken.uid().unwrap_or_default()),
        now: ctx.clock.now(),
    })
}
