//! What the operator reads and writes in the cluster: the `SlackToken` custom resource, its
//! durations and conditions, and the names (labels, annotations, finalizers) it puts on objects.

mod cached;
mod conditions;
mod crd;
mod duration;
mod events;
mod slacktoken;

pub use cached::{CachedToken, StatusTimes, OUR_ANNOTATIONS};
pub use conditions::{
    find as find_condition, set as set_condition, Condition, PENDING_TOKEN, READY, ROLLOUT_RESTART,
    ROTATION_DUE,
};
pub use crd::{crd, crd_yaml, KNOWN_FORMATS};
pub use duration::GoDuration;
pub use events::EventReason;
#[cfg(test)]
pub use slacktoken::WorkloadKind;
pub use slacktoken::{
    Identity, ManualKind, ManualSpec, RolloutRestartTarget, SlackToken, SlackTokenSpec, SlackTokenStatus,
    TokenType,
};

/// Field manager of every write, and the reporting controller of Events.
pub const MANAGER: &str = "slack-token-operator";
/// Field manager of the writes of `kubectl slacktoken` (rotate requests, handed-over tokens).
pub const PLUGIN_MANAGER: &str = "kubectl-slacktoken";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "slack-token-operator";

/// Put on every Secret the operator reads or writes, valued with the SlackToken's name: the
/// operator watches only Secrets carrying it, and it stops two SlackTokens sharing credentials.
pub const SLACKTOKEN_LABEL: &str = "slack.rotator.dev/slacktoken";

/// Any new value triggers one immediate rotation (like cert-manager's renew).
pub const ROTATE_ANNOTATION: &str = "slack.rotator.dev/rotate";
/// Lets a SlackToken with `revokeOnDelete` go without revoking (Slack unreachable, say).
pub const SKIP_REVOKE_ANNOTATION: &str = "slack.rotator.dev/skip-revoke";
/// On the SlackToken and its credentials Secret while `revokeOnDelete` wants the token revoked.
pub const REVOKE_FINALIZER: &str = "slack.rotator.dev/revoke-on-delete";

/// On the pod template of each `rolloutRestartTargets` workload: when the operator restarted it
/// onto a new token (RFC 3339), as `kubectl.kubernetes.io/restartedAt` is for `kubectl rollout restart`.
pub const RESTARTED_AT_ANNOTATION: &str = "slack.rotator.dev/restartedAt";
/// On the output Secret from the write that changes its token until the `rolloutRestartTargets`
/// have been restarted: a restart that failed for a while, or was cut short by a crash, is not
/// lost (the value is when the token changed).
pub const RESTART_PENDING_ANNOTATION: &str = "slack.rotator.dev/restart-pending";

/// On the credentials Secret beside a `pendingToken` that `kubectl slacktoken handover` wrote: a
/// value of its own for each hand-over, named in a refusal (the `PendingToken` condition), so
/// that the refusal of this token can be told from an earlier one's with the same reason.
/// Removed with `pendingToken` when the token is taken.
pub const HANDOVER_ANNOTATION: &str = "slack.rotator.dev/handover";
/// When the current access token was issued (or adopted); drives `rotationPeriod`.
pub const ISSUED_AT_ANNOTATION: &str = "slack.rotator.dev/issued-at";
/// On the credentials Secret while the current access token's expiry is assumed (Slack's answer
/// gave no usable lifetime) and not yet learned from auth.test. Saved in the same write as the
/// token, so every reconcile, in any replica, knows the expiry is a guess.
pub const EXPIRY_ASSUMED_ANNOTATION: &str = "slack.rotator.dev/expiry-assumed";
/// The `slack.rotator.dev/rotate` value the last rotation satisfied. Saved with the new tokens, in
/// the same write, so a request is handled once even if status cannot be written afterwards.
pub const ROTATED_FOR_ANNOTATION: &str = "slack.rotator.dev/rotated-for-request";
