//! The rotation itself, and the one order in which its results are written.
//!
//! 1. Read the credentials Secret straight from the API server (never from a cache: a stale
//!    copy would hand Slack a refresh token that was already spent).
//! 2. Ask Slack for a new token pair, unless a previous attempt already got one that is not yet
//!    saved (see [`Unsaved`]).
//! 3. Save refresh token, access token and expiry into the credentials Secret in ONE write with
//!    a resourceVersion precondition. Until that write succeeds the pair lives only in memory and
//!    Slack is not called again.
//! 4. Publish the access token into the output Secret.
//! 5. Status is written last, by the controller.

use crate::{
    clock::SharedClock,
    controller::{MANAGED_BY, MANAGED_BY_LABEL, MANAGER, ROTATE_ANNOTATION},
    crd::{SlackToken, TokenType},
    credentials::{self, Credentials, SLACKTOKEN_LABEL},
    error::Error,
    slack::{Issued, SlackClient},
};
use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::{
    api::{Api, ObjectMeta, PostParams},
    Resource, ResourceExt,
};
use secrecy::{ExposeSecret, SecretString};
use std::{collections::HashMap, sync::Mutex};

/// How often a conflicting write of the credentials Secret is re-read and retried in one go.
const SAVE_ATTEMPTS: usize = 5;

/// Token pairs Slack issued that are not yet saved, by credentials Secret (`namespace/name`).
///
/// The refresh token they replace is already spent, so these are the only copy. A reconcile that
/// finds one here saves it instead of calling Slack. They are keyed by the credentials Secret,
/// not by the SlackToken, because the pair continues that Secret's refresh-token chain: a
/// SlackToken deleted and created again (by hand, or by a GitOps tool replacing it) while a save
/// is failing must still find the pair, or its next rotation would present a spent token.
#[derive(Default)]
pub struct Unsaved(Mutex<HashMap<String, Issued>>);

impl Unsaved {
    fn key(stk: &SlackToken) -> String {
        format!("{}/{}", stk.namespace().unwrap_or_default(), stk.spec.credentials_ref.name)
    }
    fn get(&self, stk: &SlackToken) -> Option<Issued> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&Self::key(stk)).cloned()
    }
    fn put(&self, stk: &SlackToken, issued: Issued) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).insert(Self::key(stk), issued);
    }
    fn remove(&self, stk: &SlackToken) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&Self::key(stk));
    }
    /// Whether a pair for this SlackToken's credentials is waiting to be saved.
    pub fn holds(&self, stk: &SlackToken) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).contains_key(&Self::key(stk))
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a rotation happens; shown in the `Rotated` Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// No access token yet: the first one is obtained by rotating.
    FirstToken,
    /// The schedule says so.
    Due,
    /// The `slack.rotator.dev/rotate` annotation asked for it.
    Requested,
    /// A long-lived token is moved onto rotation with oauth.v2.exchange.
    Exchange,
    /// A previous attempt got new tokens but could not save them; this one only saves.
    SavePending,
    /// A person supplied a new long-lived token as `pendingToken`.
    HandOver,
}

pub struct Rotator<'a> {
    pub secrets: &'a Api<Secret>,
    pub slack: &'a SlackClient,
    pub clock: &'a SharedClock,
    pub unsaved: &'a Unsaved,
}

impl Rotator<'_> {
    /// Steps 2 and 3. Returns the credentials as saved.
    pub async fn rotate(
        &self,
        stk: &SlackToken,
        creds_secret: Secret,
        creds: &Credentials,
        trigger: Trigger,
    ) -> Result<(Secret, Issued), Error> {
        let issued = match self.unsaved.get(stk) {
            Some(issued) => issued,
            None => {
                let issued = self.call_slack(stk, creds, trigger).await?;
                self.unsaved.put(stk, issued.clone());
                issued
            }
        };
        let saved = self.save(stk, creds_secret, creds, &issued).await?;
        self.unsaved.remove(stk);
        Ok((saved, issued))
    }

    async fn call_slack(
        &self,
        stk: &SlackToken,
        creds: &Credentials,
        trigger: Trigger,
    ) -> Result<Issued, Error> {
        let bad = |source| Error::BadCredentials { name: stk.spec.credentials_ref.name.clone(), source };
        match (stk.spec.token_type, trigger) {
            (TokenType::OAuth, Trigger::Exchange) => {
                let (id, secret) = creds.require_client().map_err(bad)?;
                let legacy = creds
                    .legacy_token
                    .as_ref()
                    .ok_or(credentials::CredentialsError::Missing(credentials::LEGACY_TOKEN));
                Ok(self.slack.exchange(id, secret, legacy.map_err(bad)?).await?)
            }
            (TokenType::OAuth, _) => {
                let (id, secret) = creds.require_client().map_err(bad)?;
                let refresh = refresh_token(creds).map_err(bad)?;
                Ok(self.slack.refresh_oauth(id, secret, refresh).await?)
            }
            (TokenType::AppConfiguration, _) => {
                Ok(self.slack.rotate_config_token(refresh_token(creds).map_err(bad)?).await?)
            }
            (TokenType::Manual, _) => {
                Err(Error::InvalidSpec("Manual tokens cannot be rotated through Slack's API".into()))
            }
        }
    }

    /// Step 3: one write, resourceVersion precondition; on conflict re-read and re-apply.
    async fn save(
        &self,
        stk: &SlackToken,
        latest: Secret,
        creds: &Credentials,
        issued: &Issued,
    ) -> Result<Secret, Error> {
        let name = &stk.spec.credentials_ref.name;
        let now = self.clock.now();
        let request = stk.annotations().get(ROTATE_ANNOTATION);
        let record = |secret: &mut Secret| {
            credentials::record_issued(secret, issued, now);
            label_for(&mut secret.metadata, &stk.name_any());
            // Whatever triggered it, this rotation satisfies any outstanding rotate-now request.
            if let Some(request) = request {
                let annotations = secret.metadata.annotations.get_or_insert_with(Default::default);
                annotations.insert(credentials::ROTATED_FOR_ANNOTATION.to_owned(), request.clone());
            }
        };
        match update_credentials(self.secrets, name, latest, record).await {
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 => {
                // Someone deleted the Secret after Slack answered: these tokens are the only
                // copy, so recreate it with everything we know rather than lose them.
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
                Ok(self.secrets.create(&write_params(), &fresh).await?)
            }
            other => other,
        }
    }
}

fn write_params() -> PostParams {
    PostParams { field_manager: Some(MANAGER.to_owned()), ..Default::default() }
}

/// Writes the credentials Secret once, with a resourceVersion precondition. On a conflict (someone
/// edited it meanwhile) it re-reads and re-applies `change`, so neither their edit nor ours is lost.
pub async fn update_credentials(
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
            Err(kube::Error::Api(e)) if e.code == 409 => latest = secrets.get(name).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Kube(kube::Error::Api(
        kube::core::Status::failure("credentials Secret kept changing while saving", "Conflict")
            .with_code(409)
            .boxed(),
    )))
}

fn refresh_token(creds: &Credentials) -> Result<&SecretString, credentials::CredentialsError> {
    creds.refresh_token.as_ref().ok_or(credentials::CredentialsError::Missing(credentials::REFRESH_TOKEN))
}

/// Marks a Secret as belonging to a SlackToken, so the operator's label-selected watch sees it.
pub fn label_for(meta: &mut ObjectMeta, slacktoken: &str) {
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(SLACKTOKEN_LABEL.to_owned(), slacktoken.to_owned());
}

/// Step 4: make the output Secret hold `token`. Writes only when something differs.
pub async fn publish(secrets: &Api<Secret>, stk: &SlackToken, token: &SecretString) -> Result<(), Error> {
    let spec = &stk.spec.secret_ref;
    let owner = stk
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidSpec("SlackToken has no uid yet".into()))?;
    let template = stk.spec.secret_template.clone().unwrap_or_default();
    let params = write_params();
    let existing = secrets.get_opt(&spec.name).await?;
    let mut desired = match &existing {
        Some(current) => {
            let ours = current.owner_references().iter().any(|o| o.uid == owner.uid)
                || (current.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
                    && current.labels().get(SLACKTOKEN_LABEL) == Some(&stk.name_any()));
            if !ours {
                return Err(Error::OutputSecretConflict { name: spec.name.clone() });
            }
            current.clone()
        }
        None => Secret {
            metadata: ObjectMeta { name: Some(spec.name.clone()), ..Default::default() },
            type_: Some("Opaque".to_owned()),
            ..Default::default()
        },
    };
    let meta = &mut desired.metadata;
    meta.owner_references.get_or_insert_with(Vec::new).retain(|o| o.controller != Some(true));
    meta.owner_references.get_or_insert_with(Vec::new).push(owner);
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.extend(template.labels);
    labels.insert(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned());
    label_for(meta, &stk.name_any());
    if !template.annotations.is_empty() {
        meta.annotations.get_or_insert_with(Default::default).extend(template.annotations);
    }
    desired
        .data
        .get_or_insert_with(Default::default)
        .insert(spec.key.clone(), ByteString(token.expose_secret().as_bytes().to_vec()));

    match existing {
        Some(current) if current == desired => {}
        Some(_) => {
            secrets.replace(&spec.name, &params, &desired).await?;
        }
        None => {
            secrets.create(&params, &desired).await?;
        }
    }
    Ok(())
}
