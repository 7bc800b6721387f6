//! The plan: what one reconcile will do, as plain values, in the order [`super::super::act`]
//! carries them out.

use crate::{
    error::{Invalid, RestartFailure},
    resource::{EventReason, ManualKind, RolloutRestartTarget},
};
use std::time::Duration;

/// Everything one reconcile will do.
#[derive(Debug, PartialEq)]
pub enum Plan {
    /// Being deleted, and our finalizer is not on it: nothing of ours holds it.
    Nothing,
    /// A failure is held and nothing it depended on changed: look again after this long.
    Wait(Duration),
    /// Being deleted with our finalizer: revoke the token (or say why not), then let go of the
    /// credentials Secret and the SlackToken, in that order.
    Finalize(Finalize),
    /// Bring the Secrets and status in line with the spec.
    Converge(Converge),
}

#[derive(Debug, PartialEq)]
pub enum Finalize {
    /// Revoke the current access token with auth.revoke.
    Revoke,
    /// Let go without revoking, for this reason (recorded as a `RevokeSkipped` Event).
    Skip(String),
}

/// The steps of a converging reconcile, in the order they are carried out. Any step that fails
/// ends the reconcile; the next one starts again from a fresh snapshot.
#[derive(Debug, PartialEq)]
pub struct Converge {
    /// 1. Add (`true`) or remove (`false`) our finalizer on the SlackToken, as `revokeOnDelete` says.
    pub finalizer: Option<bool>,
    /// 2. Label the credentials Secret for this SlackToken, and hold or release it with our finalizer.
    pub claim: Option<Claim>,
    /// 3. Release Secrets this SlackToken held before its `credentialsRef` changed.
    pub release_stale: bool,
    /// 4.–7. The token's own steps.
    pub token: Option<TokenPlan>,
    /// 8. After publishing: restart the `rolloutRestartTargets` if the published token changed
    ///    (or a restart is still pending), then clear the pending mark.
    pub restart: Option<Restart>,
    /// Why the SlackToken cannot work as it is; reported (Ready=False) after the steps above.
    pub invalid: Option<Invalid>,
    /// Things that work, but not as the user may think; shown in the Ready message.
    pub warnings: Vec<Warning>,
}

/// A change to the credentials Secret's metadata (one patch).
#[derive(Debug, PartialEq, Eq)]
pub struct Claim {
    /// Set our label (`slack.rotator.dev/slacktoken=<name>`), so the watch sees the Secret.
    pub label: bool,
    /// Add (`true`) or remove (`false`) our finalizer.
    pub hold: Option<bool>,
}

#[derive(Debug, PartialEq)]
pub enum TokenPlan {
    Rotating(Rotating),
    Manual(Manual),
}

/// OAuth and AppConfiguration tokens.
#[derive(Debug, PartialEq)]
pub struct Rotating {
    /// 4. Get a new pair from Slack and save it into the credentials Secret (or save the pair
    ///    Slack gave earlier); `None` keeps the current token.
    pub rotate: Option<Rotate>,
    /// 4a. (Only when 4 rotates nothing.) The token's expiry is assumed, Slack's answer having
    ///    given none, and a check is due: ask auth.test for the real expiry. Should Slack say the
    ///    token no longer works, rotate at once with this call ([`Trigger::TokenDead`]) instead of
    ///    publishing a dead token.
    pub check_expiry: Option<Call>,
    /// 5. Write the token into the output Secret (not when the output Secret is someone else's).
    pub publish: bool,
    /// The `slack.rotator.dev/rotate` value this reconcile satisfies, for status.
    pub handled_request: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotate {
    pub trigger: Trigger,
    /// The Slack method to call; `None` when Slack already answered (a pending pair).
    pub call: Option<Call>,
}

/// Why a token is rotated; shown in the `Rotated` Event.
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
    /// auth.test says the current token no longer works: it died before its assumed expiry.
    TokenDead,
}

impl Trigger {
    /// The `trigger` label of the rotations metric: spelled out, so that renaming a variant
    /// cannot change a series.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FirstToken => "FirstToken",
            Self::Due => "Due",
            Self::Requested => "Requested",
            Self::Exchange => "Exchange",
            Self::SavePending => "SavePending",
            Self::HandOver => "HandOver",
            Self::TokenDead => "TokenDead",
        }
    }
}

/// The Slack method that issues the new pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `oauth.v2.access` with `grant_type=refresh_token`.
    RefreshOAuth,
    /// `tooling.tokens.rotate`.
    RotateConfigToken,
    /// `oauth.v2.exchange`: a long-lived token onto rotation, once.
    Exchange,
}

impl Call {
    pub fn method(self) -> &'static str {
        match self {
            Call::RefreshOAuth => "oauth.v2.access",
            Call::RotateConfigToken => "tooling.tokens.rotate",
            Call::Exchange => "oauth.v2.exchange",
        }
    }
}

/// Long-lived tokens that only a person can re-issue.
#[derive(Debug, PartialEq)]
pub struct Manual {
    pub kind: ManualKind,
    pub period: Duration,
    /// 4. The token has no issue time yet: its rotation period starts now.
    pub stamp_issued_at: bool,
    /// 5. A person supplied `pendingToken`: check it with auth.test; if accepted, publish it,
    ///    revoke the replaced token and move it to `accessToken`.
    pub hand_over: Option<HandOver>,
    /// 6. Check the current token with auth.test (unless a hand-over just did).
    pub health_check: bool,
    // 7. The current token is published unless it was handed over.
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandOver {
    pub revoke_replaced: bool,
    pub allow_identity_change: bool,
}

/// The workloads to restart onto a changed token, and whether a restart is still owed for a
/// token published earlier (the output Secret carries the pending mark).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    pub targets: Vec<RolloutRestartTarget>,
    pub pending: bool,
}

impl Restart {
    /// Whether to restart the targets now, given whether publishing changed the token.
    pub fn now(&self, token_changed: bool) -> bool {
        !self.targets.is_empty() && (token_changed || self.pending)
    }

    /// Whether the publish that changes the token should leave the pending mark.
    pub fn mark(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Whether to clear the pending mark after the `restarts` made: the output Secret carries
    /// it, and no restart is to be retried (the next reconcile finds the mark and tries again).
    pub fn clear_mark(
        &self,
        token_changed: bool,
        restarts: &[(RolloutRestartTarget, Option<RestartFailure>)],
    ) -> bool {
        let marked = self.pending || (token_changed && self.mark());
        let retry = restarts.iter().any(|(_, f)| f.is_some_and(RestartFailure::is_retried));
        marked && !retry
    }
}

/// Something about the spec that works, but not as the user may think. Shown in the Ready
/// message and announced once by an Event with `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub reason: EventReason,
    pub message: String,
}
