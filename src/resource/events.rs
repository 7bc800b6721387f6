//! The reasons of the Events the operator records about a SlackToken: a closed set, so that
//! every one is documented (the book's Events page, `docs/src/operations/events.md`, lists them,
//! checked by `tests/book.rs`) and alerts or scripts can match on them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// A new token was published (Normal).
    Rotated,
    /// A reconcile failed; the Ready condition says why and what to do (Warning).
    RotationFailed,
    /// A Manual token is older than its rotationPeriod: a person should re-issue it (Warning).
    RotationDue,
    /// A supplied `pendingToken` was refused (Warning).
    PendingTokenRejected,
    /// `rotationPeriod` is under 1h (Warning).
    ShortRotationPeriod,
    /// Slack gave no expiry and no rotationPeriod is set: no schedule (Warning).
    NoExpiry,
    /// `renewBefore` is not shorter than the token's lifetime; the default is used (Warning).
    RenewBeforeTooLong,
    /// Slack's answer gave no usable lifetime for a new token; its 12 hours were assumed (Warning).
    ExpiryAssumed,
    /// The `rolloutRestartTargets` were restarted onto a new token (Normal).
    RolloutRestarted,
    /// A rollout restart target is missing, forbidden, or its patch failed (Warning).
    RolloutRestartFailed,
    /// The token was revoked on delete (Normal).
    Revoked,
    /// The token was not revoked on delete, and why (Warning).
    RevokeSkipped,
}

impl EventReason {
    pub const ALL: [EventReason; 12] = [
        Self::Rotated,
        Self::RotationFailed,
        Self::RotationDue,
        Self::PendingTokenRejected,
        Self::ShortRotationPeriod,
        Self::NoExpiry,
        Self::RenewBeforeTooLong,
        Self::ExpiryAssumed,
        Self::RolloutRestarted,
        Self::RolloutRestartFailed,
        Self::Revoked,
        Self::RevokeSkipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rotated => "Rotated",
            Self::RotationFailed => "RotationFailed",
            Self::RotationDue => "RotationDue",
            Self::PendingTokenRejected => "PendingTokenRejected",
            Self::ShortRotationPeriod => "ShortRotationPeriod",
            Self::NoExpiry => "NoExpiry",
            Self::RenewBeforeTooLong => "RenewBeforeTooLong",
            Self::ExpiryAssumed => "ExpiryAssumed",
            Self::RolloutRestarted => "RolloutRestarted",
            Self::RolloutRestartFailed => "RolloutRestartFailed",
            Self::Revoked => "Revoked",
            Self::RevokeSkipped => "RevokeSkipped",
        }
    }

    /// Whether Events with this reason are of type Warning (else Normal).
    pub fn is_warning(self) -> bool {
        !matches!(self, Self::Rotated | Self::RolloutRestarted | Self::Revoked)
    }
}

impl fmt::Display for EventReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
