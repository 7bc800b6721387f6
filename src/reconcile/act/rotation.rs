//! OAuth and AppConfiguration tokens: steps 4 (rotate and save) and 5 (publish).

use super::{outcome::Outcome, publish::publish};
use crate::{
    error::{Error, Invalid},
    reconcile::{
        context::Context,
        decide::{self, Call, Presented, Refused, Rotate, Rotating, Trigger},
        observe::Snapshot,
    },
    resource::{SlackToken, ROTATE_ANNOTATION},
    secrets::{self, Credentials, Entry, Saved},
    slack::{Installation, Issued, SlackError, SlackErrorKind},
};
use k8s_openapi::api::core::v1::Secret;
use kube::{api::Api, ResourceExt};
use secrecy::SecretString;
use tokio::time::Instant;
use tracing::{debug, warn};

/// Carries out a rotating token's plan.
#[allow(clippy::too_many_arguments)]
pub async fn carry_out_rotation(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    plan: &Rotating,
    credentials: Secret,
    creds: &Credentials,
    mark: Option<&str>,
    out: &mut Outcome,
) -> Result<(), Error> {
    out.times = decide::token_times(creds);
    let mut rotate = plan.rotate;
    if let Some(call) = plan.check_expiry {
        if check_expiry(ctx, s, secrets, &credentials, creds, out).await? {
            rotate = Some(Rotate { trigger: Trigger::TokenDead, call: Some(call) });
        }
    }
    let token = match rotate {
        Some(rotate) => {
            let issued = rotate_and_save(ctx, s, secrets, rotate, credentials, creds, out).await?;
            out.rotated = Some(rotate.trigger);
            out.identity = Some(issued.identity);
            issued.access_token
        }
        None => match &creds.access_token {
            Some(token) => token.clone(),
            None => return Ok(()), // decide refuses this; nothing to publish
        },
    };
    if plan.publish {
        out.token_changed |= publish(ctx, s, secrets, &token, mark).await?;
    }
    Ok(())
}

/// Step 4a: asks auth.test about the current token, whose expiry is assumed. A real expiry
/// Slack reports is saved into the credentials Secret (the assumption mark goes with it).
/// Returns whether Slack says the token no longer works.
async fn check_expiry(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    credentials: &Secret,
    creds: &Credentials,
    out: &mut Outcome,
) -> Result<bool, Error> {
    let Some(token) = &creds.access_token else {
        return Ok(false); // decide plans no check without one
    };
    let who = match ctx.slack.auth_test(token).await {
        Ok(who) => who,
        Err(e) if e.token_is_dead() => {
            warn!(
                code = e.code().unwrap_or_default(),
                "the token died before its assumed expiry; rotating now"
            );
            return Ok(true);
        }
        Err(e) => return Err(e.into()),
    };
    out.checked_at = Some(s.now);
    let Some(left) = who.expires_in else {
        return Ok(false); // still unknown: asked again later
    };
    let expires_at = s.now.checked_add(left).ok();
    let checked = secrets::fingerprint(token);
    let name = &s.slacktoken.spec.credentials_ref.name;
    let saved = secrets::update_credentials(secrets, name, credentials.clone(), |secret| {
        // Only for the token asked about: a newer one saved meanwhile has its own expiry.
        if chain_access_token(secret).is_some_and(|t| secrets::fingerprint(&t) == checked) {
            secrets::set_expiry(secret, expires_at, false);
        }
    })
    .await?;
    ctx.own_writes.wrote(&saved);
    out.credentials_version = saved.resource_version();
    if let Ok(saved) = Credentials::from_secret(&saved) {
        out.times = decide::token_times(&saved);
    }
    Ok(false)
}

/// The access token a credentials Secret holds, if it can be read.
fn chain_access_token(secret: &Secret) -> Option<SecretString> {
    Credentials::from_secret(secret).ok()?.access_token
}

/// Step 4: get a pair from Slack (or the one it gave earlier), keep it pending (journaled), then
/// save it into the credentials Secret and forget it.
async fn rotate_and_save(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    rotate: Rotate,
    credentials: Secret,
    creds: &Credentials,
    out: &mut Outcome,
) -> Result<Issued, Error> {
    let entry = match (&s.pending, rotate.call) {
        (Some(pending), _) => pending.clone(),
        (None, Some(call)) => new_pair(ctx, s, secrets, call, creds).await?,
        // decide plans no save without a pair
        (None, None) => {
            return Err(Error::CredentialsChanged { name: s.slacktoken.spec.credentials_ref.name.clone() })
        }
    };
    save_and_forget(ctx, s, secrets, credentials, creds, entry, out).await
}

/// Asks Slack for a new pair and keeps it pending: the token presented is spent from the moment
/// Slack answers, so the pair is the only copy and goes to the journal before anything else.
async fn new_pair(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    call: Call,
    creds: &Credentials,
) -> Result<Entry, Error> {
    let stk = &s.slacktoken;
    let name = &stk.spec.credentials_ref.name;
    // Never refused: decide plans a call only when this answers (one rule for both).
    let presented = decide::presented(call, creds)
        .map_err(|problem| Invalid::Credentials { name: name.clone(), problem })?;
    let issued = match call_slack(ctx, s, call, &presented, creds).await {
        Ok(issued) => issued,
        Err(Error::Slack(e)) if e.kind() == SlackErrorKind::InvalidRefreshToken => {
            return Err(reread_after_refusal(secrets, s, creds, presented.spent(), e).await);
        }
        Err(e) => return Err(e),
    };
    let answered = Instant::now();
    let entry = Entry {
        namespace: s.namespace(),
        name: name.clone(),
        replaces: secrets::fingerprint(presented.spent()),
        issued,
        issued_at: ctx.clock.now(),
        slacktoken: stk.name_any(),
        rotate_request: stk.annotations().get(ROTATE_ANNOTATION).cloned(),
    };
    ctx.pending.put(entry.clone()).await;
    let journal_ms = answered.elapsed().as_secs_f64() * 1000.0;
    debug!(journal_ms, journaled = ctx.pending.journal().is_some(), secret = %name, "new pair kept");
    Ok(entry)
}

/// Saves the pair into the credentials Secret (only over the token it replaces), then forgets
/// it: saved, or superseded by a newer pair.
async fn save_and_forget(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    credentials: Secret,
    creds: &Credentials,
    entry: Entry,
    out: &mut Outcome,
) -> Result<Issued, Error> {
    let (namespace, name) = (s.namespace(), &s.slacktoken.spec.credentials_ref.name);
    let client = creds.client_id.as_deref().zip(creds.client_secret.as_ref());
    let saved = match secrets::save_pair(secrets, Some(credentials), &entry, client).await? {
        Saved::Written(saved) | Saved::AlreadyThere(saved) => {
            ctx.own_writes.wrote(&saved);
            saved
        }
        Saved::Superseded => {
            warn!(secret = %name, "dropped a new token pair: the credentials Secret already holds a newer refresh token");
            ctx.pending.remove(&namespace, name).await;
            return Err(Error::CredentialsChanged { name: name.clone() });
        }
    };
    ctx.pending.remove(&namespace, name).await;
    let since_slack = ctx.clock.now().duration_since(entry.issued_at);
    debug!(save_ms = since_slack.as_secs_f64() * 1000.0, "new pair saved");
    out.credentials_version = saved.resource_version();
    if let Ok(saved) = Credentials::from_secret(&saved) {
        out.times = decide::token_times(&saved);
    }
    Ok(entry.issued)
}

async fn call_slack(
    ctx: &Context,
    s: &Snapshot,
    call: Call,
    presented: &Presented<'_>,
    creds: &Credentials,
) -> Result<Issued, Error> {
    let installation = installation(&s.slacktoken, call, creds);
    if let Some(left) = installation.as_ref().and_then(|i| ctx.rate_limits.wait(i)) {
        // Another SlackToken of this app in this workspace was told to wait: calling now would
        // only earn another 429.
        return Err(SlackError::RateLimited { method: call.method(), retry_after: left }.into());
    }
    let result = call_slack_now(ctx, presented).await;
    if let (Err(Error::Slack(e)), Some(installation)) = (&result, &installation) {
        if let Some(retry_after) = e.retry_after() {
            ctx.rate_limits.limited(installation, retry_after);
        }
    }
    result
}

/// The app and workspace Slack rate-limits this call under: the app's client id (an app
/// configuration token: its user's) and the workspace recorded from an earlier answer.
fn installation(stk: &SlackToken, call: Call, creds: &Credentials) -> Option<Installation> {
    let identity = stk.status.as_ref()?.identity.as_ref()?;
    let app = match call {
        Call::RotateConfigToken => identity.user_id.as_deref().map(|u| format!("config:{u}")),
        Call::RefreshOAuth | Call::Exchange => creds.client_id.clone(),
    };
    Installation::new(app.as_deref(), identity.team_id.as_deref())
}

async fn call_slack_now(ctx: &Context, presented: &Presented<'_>) -> Result<Issued, Error> {
    let issued = match *presented {
        Presented::RefreshOAuth { client_id, client_secret, refresh_token } => {
            ctx.slack.refresh_oauth(client_id, client_secret, refresh_token).await?
        }
        Presented::Exchange { client_id, client_secret, legacy_token } => {
            ctx.slack.exchange(client_id, client_secret, legacy_token).await?
        }
        Presented::RotateConfigToken { refresh_token } => {
            ctx.slack.rotate_config_token(refresh_token).await?
        }
    };
    Ok(issued)
}

/// Slack says the refresh token we presented was already used or revoked. Another replica may
/// have just used it and saved its successor: the credentials Secret is read again, and decide
/// says what the refusal means.
async fn reread_after_refusal(
    secrets: &Api<Secret>,
    s: &Snapshot,
    creds: &Credentials,
    presented: &SecretString,
    slack: SlackError,
) -> Error {
    let name = &s.slacktoken.spec.credentials_ref.name;
    let now_held = match secrets.get_opt(name).await {
        Ok(secret) => secret,
        Err(e) => return Error::kube("get", "secrets", name)(e),
    };
    match decide::refused_refresh_token(&s.slacktoken, creds, presented, now_held.as_ref()) {
        Refused::Superseded => Error::CredentialsChanged { name: name.clone() },
        Refused::ChainBroken { app_id, config_token } => {
            Error::ChainBroken { name: name.clone(), app_id, config_token }
        }
        Refused::Rejected => Error::Slack(slack),
    }
}
