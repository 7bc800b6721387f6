//! What a reconcile did and found out.

use crate::{
    error::RestartFailure,
    reconcile::{decide::Trigger, schedule::TokenTimes},
    resource::{Identity, RolloutRestartTarget},
};
use jiff::Timestamp;

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
