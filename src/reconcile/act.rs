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

mod finalize;
mod manual;
mod metadata;
mod outcome;
mod publish;
mod restart;
mod rotation;

pub use finalize::finalize;
pub use outcome::Outcome;

use super::{
    context::Context,
    decide::{Converge, TokenPlan},
    observe::Snapshot,
};
use crate::{error::Error, resource::REVOKE_FINALIZER};
use kube::ResourceExt;

/// Steps 1 to 5 of a converging reconcile. Fills `out` as it goes, so that a failure still
/// reports what was done.
pub async fn converge(ctx: &Context, s: &Snapshot, plan: &Converge, out: &mut Outcome) -> Result<(), Error> {
    let stk = &s.slacktoken;
    let secrets = metadata::secrets_api(ctx, s);
    out.credentials_version = s.credentials.as_ref().and_then(|c| c.version());
    if let Some(add) = plan.finalizer {
        let mut finalizers = metadata::without_ours(stk);
        if add {
            finalizers.push(REVOKE_FINALIZER.to_owned());
        }
        metadata::set_finalizers(&metadata::slacktokens_api(ctx, s), stk, finalizers).await?;
    }
    let mut credentials = s.credentials.as_ref().map(|c| c.secret.clone());
    if let (Some(claim), Some(secret)) = (&plan.claim, &credentials) {
        let claimed = metadata::claim_credentials(&secrets, stk, secret, claim).await?;
        ctx.own_writes.wrote(&claimed);
        out.credentials_version = claimed.resource_version();
        credentials = Some(claimed);
    }
    if plan.release_stale {
        let current = &stk.spec.credentials_ref.name;
        for secret in metadata::held_for(&secrets, stk).await?.iter().filter(|s| &s.name_any() != current) {
            metadata::set_finalizers(&secrets, secret, metadata::without_ours(secret)).await?;
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
            rotation::carry_out_rotation(ctx, s, &secrets, plan, credentials, parsed, mark, out).await?
        }
        TokenPlan::Manual(plan) => {
            manual::carry_out_manual(ctx, s, &secrets, plan, credentials, parsed, mark, out).await?
        }
    }
    if let Some(restart) = &plan.restart {
        restart::restart_targets(ctx, s, &secrets, restart, out).await;
    }
    Ok(())
}
