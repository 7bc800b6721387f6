//! Letting go of a SlackToken being deleted.

use super::{
    metadata::{held_for, secrets_api, set_finalizers, slacktokens_api, without_ours},
    outcome::Outcome,
};
use crate::{
    error::Error,
    reconcile::{context::Context, decide::Finalize, observe::Snapshot},
};

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
