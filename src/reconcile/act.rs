//! Act: carry out a [`Plan`] in its one fixed order.
//!
//! The order is what keeps refresh tokens safe. For a rotation:
//!
//! 1. the SlackToken's finalizer, 2. the credentials Secret's label and finalizer, 3. release of
//!    Secrets no longer used (all metadata only, all before Slack is called);
//! 4. (a token whose expiry is only assumed: auth.test is asked for the real one, and a token
//!    Slack calls dead is rotated at once;)
//!    Slack issues a new pair, which is kept as pending (the refresh token it replaces is spent
//!    now, so it is the only copy) and saved into the credentials Secret in ONE write with a
//!    resourceVersion precondition; only then is it no longer pending;
//! 5. the access token is published into the output Secret (marked if it changed and workloads
//!    are to be restarted);
//! 6. the `rolloutRestartTargets` are restarted onto it and the mark cleared; a target that
//!    cannot be restarted is reported, never a failure of the rotation;
//! 7. status and Events are written last, by [`super::report`].
//!
//! A failure anywhere ends the reconcile with what was done so far in the [`Outcome`]; the next
//! reconcile starts from a fresh snapshot and finds the pending pair instead of calling Slack.

use super::{
    context::Context,
    decide::{
        self, Call, Claim, Converge, Finalize, HandOver, Manual, Restart, Rotate, Rotating, TokenPlan,
        Trigger,
    },
    observe::Snapshot,
    schedule::TokenTimes,
};
use crate::{
    error::{Error, RestartFailure},
    resource::{
        Identity, RolloutRestartTarget, SlackToken, HANDOVER_ANNOTATION, MANAGER, RESTARTED_AT_ANNOTATION,
        RESTART_PENDING_ANNOTATION, REVOKE_FINALIZER, ROTATE_ANNOTATION, SLACKTOKEN_LABEL,
    },
    secrets::{self, chain_token, Credentials, Entry, Saved, PENDING_TOKEN},
    slack::{AuthTest, Installation, Issued, SlackError, SlackErrorKind},
};
use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    Resource, ResourceExt,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::time::Instant;
use tracing::{debug, warn};

/// What a reconcile did and found out, for status and Events.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The credentials Secret's resourceVersion after our writes: a failure is held until it changes.
    pub credentials_version: Option<String>,
    pub rotated: Option<Trigger>,
    /// Issue time and expiry of the published token.
    pub times: TokenTimes,
    pub identity: Option<Identity>,
    /// When the current token last passed auth.test, if it did in this reconcile (Manual tokens,
    /// and rotating ones whose expiry is assumed).
    pub checked_at: Option<Timestamp>,
    /// Manual tokens: why a supplied `pendingToken` was refused.
    pub refused: Option<String>,
    /// Whether auth.revoke revoked a token (on delete, or the one a hand-over replaced).
    pub revoked: bool,
    /// Whether publishing changed the token in the output Secret.
    pub token_changed: bool,
    /// The rollout restarts made, in `rolloutRestartTargets` order, each with its failure if any.
    pub restarts: Vec<(RolloutRestartTarget, Option<RestartFailure>)>,
}

/// Steps 1 to 5 of a converging reconcile. Fills `out` as it goes, so that a failure still
/// reports what was done.
pub async fn converge(ctx: &Context, s: &Snapshot, plan: &Converge, out: &mut Outcome) -> Result<(), Error> {
    let stk = &s.slacktoken;
    let secrets = secrets_api(ctx, s);
    out.credentials_version = s.credentials.as_ref().and_then(|c| c.version());
    if let Some(add) = plan.finalizer {
        let mut finalizers = without_ours(stk);
        if add {
            finalizers.push(REVOKE_FINALIZER.to_owned());
        }
        set_finalizers(&slacktokens_api(ctx, s), stk, finalizers).await?;
    }
    let mut credentials = s.credentials.as_ref().map(|c| c.secret.clone());
    if let (Some(claim), Some(secret)) = (&plan.claim, &credentials) {
        let claimed = claim_credentials(&secrets, stk, secret, claim).await?;
        ctx.own_writes.wrote(&claimed);
        out.credentials_version = claimed.resource_version();
        credentials = Some(claimed);
    }
    if plan.release_stale {
        let current = &stk.spec.credentials_ref.name;
        for secret in held_for(&secrets, stk).await?.iter().filter(|s| &s.name_any() != current) {
            set_finalizers(&secrets, secret, without_ours(secret)).await?;
        }
    }
    let (Some(token), Some(credentials), Some(Ok(parsed))) =
        (&plan.token, credentials, s.credentials.as_ref().map(|c| &c.parsed))
    else {
        return Ok(());
    };
    let mark = plan.restart.as_ref().filter(|r| r.mark()).map(|_| crate::clock::format_time(s.now));
    let mark = mark.as_deref();
    match token {
        TokenPlan::Rotating(plan) => {
            carry_out_rotation(ctx, s, &secrets, plan, credentials, parsed, mark, out).await?
        }
        TokenPlan::Manual(plan) => {
            carry_out_manual(ctx, s, &secrets, plan, credentials, parsed, mark, out).await?
        }
    }
    if let Some(restart) = &plan.restart {
        restart_targets(ctx, s, &secrets, restart, out).await;
    }
    Ok(())
}

/// Step 6: one patch per target, as `kubectl rollout restart` makes; then the mark goes, unless
/// a restart is to be retried (the next reconcile finds the mark and tries again).
async fn restart_targets(
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
    let retry = out.restarts.iter().any(|(_, f)| f.is_some_and(RestartFailure::is_retried));
    let marked = restart.pending || (out.token_changed && restart.mark());
    if marked && !retry {
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

/// OAuth and AppConfiguration: steps 4 (rotate and save) and 5 (publish).
#[allow(clippy::too_many_arguments)]
async fn carry_out_rotation(
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

/// Puts `token` into the output Secret. Without reading it when our last write says what it
/// holds; if it changed since (the write's precondition fails), it is read and written as usual.
async fn publish(
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
    if existing.as_ref().is_some_and(|e| !secrets::output_is_ours(stk, e)) {
        return Err(crate::error::Invalid::OutputSecretConflict { name: name.clone() }.into());
    }
    secrets::publish(secrets, &ctx.own_writes, stk, existing.as_ref(), token, mark).await
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
    let stk = &s.slacktoken;
    let (namespace, name) = (s.namespace(), stk.spec.credentials_ref.name.clone());
    let entry = match (&s.pending, rotate.call) {
        (Some(pending), _) => pending.clone(),
        (None, Some(call)) => {
            let presented = chain_token(&credentials).ok_or_else(|| changed(&name))?;
            let issued = match call_slack(ctx, s, call, creds).await {
                Ok(issued) => issued,
                Err(Error::Slack(e)) if e.kind() == SlackErrorKind::InvalidRefreshToken => {
                    return Err(refused_refresh_token(secrets, s, creds, &presented, e).await);
                }
                Err(e) => return Err(e),
            };
            let answered = Instant::now();
            let entry = Entry {
                namespace: namespace.clone(),
                name: name.clone(),
                replaces: secrets::fingerprint(&presented),
                issued,
                issued_at: ctx.clock.now(),
                slacktoken: stk.name_any(),
                rotate_request: stk.annotations().get(ROTATE_ANNOTATION).cloned(),
            };
            // The token just presented is spent from here on: this pair is the only copy, so it
            // goes to the journal before anything else is attempted.
            ctx.pending.put(entry.clone()).await;
            let journal_ms = answered.elapsed().as_secs_f64() * 1000.0;
            debug!(journal_ms, journaled = ctx.pending.journal().is_some(), secret = %name, "new pair kept");
            entry
        }
        (None, None) => return Err(changed(&name)), // decide plans no save without a pair
    };
    let client = creds.client_id.as_deref().zip(creds.client_secret.as_ref());
    let saved = match secrets::save_pair(secrets, Some(credentials), &entry, client).await? {
        Saved::Written(saved) | Saved::AlreadyThere(saved) => {
            ctx.own_writes.wrote(&saved);
            saved
        }
        Saved::Superseded => {
            warn!(secret = %name, "dropped a new token pair: the credentials Secret already holds a newer refresh token");
            ctx.pending.remove(&namespace, &name).await;
            return Err(changed(&name));
        }
    };
    ctx.pending.remove(&namespace, &name).await;
    let since_slack = ctx.clock.now().duration_since(entry.issued_at);
    debug!(save_ms = since_slack.as_secs_f64() * 1000.0, "new pair saved");
    out.credentials_version = saved.resource_version();
    if let Ok(saved) = Credentials::from_secret(&saved) {
        out.times = decide::token_times(&saved);
    }
    Ok(entry.issued)
}

async fn call_slack(ctx: &Context, s: &Snapshot, call: Call, creds: &Credentials) -> Result<Issued, Error> {
    let installation = installation(&s.slacktoken, call, creds);
    if let Some(left) = installation.as_ref().and_then(|i| ctx.rate_limits.wait(i)) {
        // Another SlackToken of this app in this workspace was told to wait: calling now would
        // only earn another 429.
        return Err(SlackError::RateLimited { method: call.method(), retry_after: left }.into());
    }
    let result = call_slack_now(ctx, call, creds).await;
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

async fn call_slack_now(ctx: &Context, call: Call, creds: &Credentials) -> Result<Issued, Error> {
    // decide has checked that what each call needs is there.
    let missing = || Error::Invalid(crate::error::Invalid::Spec("credentials changed while deciding".into()));
    let issued = match call {
        Call::RefreshOAuth => {
            let (id, secret) = creds.require_client().map_err(|_| missing())?;
            let refresh = creds.refresh_token.as_ref().ok_or_else(missing)?;
            ctx.slack.refresh_oauth(id, secret, refresh).await?
        }
        Call::Exchange => {
            let (id, secret) = creds.require_client().map_err(|_| missing())?;
            let legacy = creds.legacy_token.as_ref().ok_or_else(missing)?;
            ctx.slack.exchange(id, secret, legacy).await?
        }
        Call::RotateConfigToken => {
            let refresh = creds.refresh_token.as_ref().ok_or_else(missing)?;
            ctx.slack.rotate_config_token(refresh).await?
        }
    };
    Ok(issued)
}

fn changed(name: &str) -> Error {
    Error::CredentialsChanged { name: name.to_owned() }
}

/// Slack says the refresh token we presented was already used or revoked. Another replica may
/// have just used it and saved its successor: look again before calling the chain broken.
async fn refused_refresh_token(
    secrets: &Api<Secret>,
    s: &Snapshot,
    creds: &Credentials,
    presented: &SecretString,
    slack: crate::slack::SlackError,
) -> Error {
    let name = &s.slacktoken.spec.credentials_ref.name;
    let now_held = match secrets.get_opt(name).await {
        Ok(secret) => secret.as_ref().and_then(chain_token),
        Err(e) => return Error::kube("get", "secrets", name)(e),
    };
    if now_held.is_none_or(|held| secrets::fingerprint(&held) != secrets::fingerprint(presented)) {
        return changed(name);
    }
    // A refresh token the operator saved itself (it records the issue time with it) was good
    // when saved; a refused one means its chain broke. One a person put in may simply be wrong.
    match creds.issued_at {
        Some(_) => Error::ChainBroken {
            name: name.clone(),
            app_id: s
                .slacktoken
                .status
                .as_ref()
                .and_then(|st| st.identity.as_ref())
                .and_then(|i| i.app_id.clone()),
            config_token: s.slacktoken.spec.token_type == crate::resource::TokenType::AppConfiguration,
        },
        None => Error::Slack(slack),
    }
}

/// Manual: steps 4 (start the period), 5 (hand-over), 6 (health check) and 7 (publish).
#[allow(clippy::too_many_arguments)]
async fn carry_out_manual(
    ctx: &Context,
    s: &Snapshot,
    secrets: &Api<Secret>,
    plan: &Manual,
    mut credentials: Secret,
    creds: &Credentials,
    mark: Option<&str>,
    out: &mut Outcome,
) -> Result<(), Error> {
    let stk = &s.slacktoken;
    let name = &stk.spec.credentials_ref.name;
    let Some(mut current) = creds.access_token.clone() else {
        return Ok(()); // decide refuses this
    };
    let mut issued_at = creds.issued_at.unwrap_or(s.now);
    if plan.stamp_issued_at {
        let patch = json!({"metadata": {"annotations": {crate::resource::ISSUED_AT_ANNOTATION: crate::clock::format_time(s.now)}}});
        credentials = secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube("patch", "secrets", name))?;
        out.credentials_version = credentials.resource_version();
    }
    if let (Some(hand_over), Some(pending)) = (plan.hand_over, &creds.pending_token) {
        match check_replacement(ctx, stk, &current, pending, hand_over).await? {
            Ok(who) => {
                out.token_changed |= publish(ctx, s, secrets, pending, mark).await?;
                if hand_over.revoke_replaced {
                    // The help article's first step; done once the new token is live.
                    out.revoked = ctx.slack.revoke(&current).await?;
                }
                let saved = save_hand_over(secrets, name, credentials, pending, s.now).await?;
                ctx.own_writes.wrote(&saved);
                out.credentials_version = saved.resource_version();
                current = pending.clone();
                issued_at = s.now;
                out.rotated = Some(Trigger::HandOver);
                out.identity = Some(identity_of(&who));
                out.checked_at = Some(s.now);
            }
            // Named, so that `kubectl slacktoken handover --wait` sees this refusal is its
            // token's even when an earlier token was refused for the same reason.
            Err(why) => {
                out.refused = Some(match &creds.handover {
                    Some(handover) => format!("{why} (hand-over {handover})"),
                    None => why,
                })
            }
        }
    }
    if out.rotated.is_none() {
        if plan.health_check {
            // A long-lived token can be revoked by a person or by Slack for disuse at any time.
            let who = ctx.slack.auth_test(&current).await?;
            out.identity = Some(identity_of(&who));
            out.checked_at = Some(s.now);
        }
        out.token_changed |= publish(ctx, s, secrets, &current, mark).await?;
    }
    out.times = TokenTimes { issued_at: Some(issued_at), ..Default::default() };
    Ok(())
}

/// Checks a supplied token with auth.test against the current one's identity. Outer error: try
/// again later; inner error: the token is refused, with the reason.
async fn check_replacement(
    ctx: &Context,
    stk: &SlackToken,
    current: &SecretString,
    pending: &SecretString,
    hand_over: HandOver,
) -> Result<Result<AuthTest, String>, Error> {
    let new = match ctx.slack.auth_test(pending).await {
        Ok(who) => who,
        Err(e) if e.is_transient() => return Err(e.into()),
        Err(e) => return Ok(Err(format!("Slack rejected it ({})", e.code().unwrap_or("error")))),
    };
    let reference = match ctx.slack.auth_test(current).await {
        Ok(who) => Some(identity_of(&who)),
        Err(e) if e.is_transient() => return Err(e.into()),
        // The current token may already be dead; fall back to the identity recorded earlier.
        Err(_) => stk.status.as_ref().and_then(|s| s.identity.clone()),
    };
    Ok(decide::accept_replacement(reference.as_ref(), &new, hand_over.allow_identity_change).map(|()| new))
}

/// Moves the pending token to `accessToken` in one write with a resourceVersion precondition.
async fn save_hand_over(
    secrets: &Api<Secret>,
    name: &str,
    latest: Secret,
    token: &SecretString,
    now: Timestamp,
) -> Result<Secret, Error> {
    secrets::update_credentials(secrets, name, latest, |secret| {
        let data = secret.data.get_or_insert_with(Default::default);
        data.insert(secrets::ACCESS_TOKEN.into(), ByteString(token.expose_secret().as_bytes().to_vec()));
        data.remove(PENDING_TOKEN);
        if let Some(annotations) = secret.metadata.annotations.as_mut() {
            annotations.remove(HANDOVER_ANNOTATION);
        }
        secrets::set_issued_at(secret, now);
    })
    .await
}

fn identity_of(who: &AuthTest) -> Identity {
    Identity {
        team_id: who.team_id.clone(),
        enterprise_id: who.enterprise_id.clone(),
        app_id: who.app_id.clone(),
        user_id: who.user_id.clone(),
        bot_user_id: None,
        scopes: None,
    }
}

/// A SlackToken with our finalizer is being deleted: revoke (or not), then release the
/// credentials Secret(s) first and the SlackToken last. The other way round, a failure in between
/// would leave a Secret held by a SlackToken that no longer exists.
pub async fn finalize(ctx: &Context, s: &Snapshot, plan: &Finalize) -> Result<Outcome, Error> {
    let stk = &s.slacktoken;
    let mut out = Outcome::default();
    if let Finalize::Revoke = plan {
        let token =
            s.credentials.as_ref().and_then(|c| c.parsed.as_ref().ok()).and_then(|c| c.access_token.as_ref());
        if let Some(token) = token {
            out.revoked = ctx.slack.revoke(token).await?;
        }
    }
    let secrets = secrets_api(ctx, s);
    for secret in held_for(&secrets, stk).await? {
        set_finalizers(&secrets, &secret, without_ours(&secret)).await?;
    }
    set_finalizers(&slacktokens_api(ctx, s), stk, without_ours(stk)).await?;
    Ok(out)
}

fn secrets_api(ctx: &Context, s: &Snapshot) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &s.namespace())
}

fn slacktokens_api(ctx: &Context, s: &Snapshot) -> Api<SlackToken> {
    Api::namespaced(ctx.client.clone(), &s.namespace())
}

/// One patch: our label, and our finalizer added or removed, with a resourceVersion
/// precondition: the finalizer list is written whole, and of two SlackTokens claiming one
/// unlabelled Secret at once exactly one must win (the other would hand Slack the same refresh
/// token). The loser gets a conflict, and its next reconcile finds the Secret labelled for the
/// winner: `CredentialsInUse`, before Slack is called or anything published.
async fn claim_credentials(
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
        Err(kube::Error::Api(e)) if e.code == 409 => Err(changed(&name)),
        Err(e) => Err(Error::kube("patch", "secrets", &name)(e)),
    }
}

/// Secrets labelled for this SlackToken that carry our finalizer.
async fn held_for(secrets: &Api<Secret>, stk: &SlackToken) -> Result<Vec<Secret>, Error> {
    let selector = format!("{SLACKTOKEN_LABEL}={}", stk.name_any());
    let list = secrets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::kube("list", "secrets", &selector))?;
    Ok(list.items.into_iter().filter(decide::has_our_finalizer).collect())
}

fn without_ours(object: &impl Resource) -> Vec<String> {
    object.finalizers().iter().filter(|f| *f != REVOKE_FINALIZER).cloned().collect()
}

/// Merge patch of the whole list with a resourceVersion precondition: another controller's
/// finalizer added meanwhile is never dropped (we get a conflict and come back). Gone is done.
async fn set_finalizers<K>(api: &Api<K>, object: &K, finalizers: Vec<String>) -> Result<(), Error>
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
