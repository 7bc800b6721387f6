//! Status conditions (metav1.Condition) and the types the operator sets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Whether the current token is published (the condition every SlackToken has).
pub const READY: &str = "Ready";
/// Manual tokens: True when a person should re-issue the token.
pub const ROTATION_DUE: &str = "RotationDue";
/// Manual tokens: present while a supplied `pendingToken` is refused.
pub const PENDING_TOKEN: &str = "PendingToken";
/// With `rolloutRestartTargets`: whether the last restart of the workloads onto a new token worked.
pub const ROLLOUT_RESTART: &str = "RolloutRestart";

/// A standard Kubernetes condition (metav1.Condition).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    pub last_transition_time: String,
}

/// Replaces the condition of the same type, keeping its transition time when the status is
/// unchanged (as metav1 conditions do). Conditions stay sorted by type.
pub fn set(conditions: &[Condition], mut new: Condition) -> Vec<Condition> {
    let mut out: Vec<Condition> = conditions.iter().filter(|c| c.type_ != new.type_).cloned().collect();
    if let Some(old) = conditions.iter().find(|c| c.type_ == new.type_) {
        if old.status == new.status {
            new.last_transition_time = old.last_transition_time.clone();
        }
    }
    out.push(new);
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// The condition of `type_`, if set.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &str, at: &str) -> Condition {
        Condition {
            type_: READY.into(),
            status: status.into(),
            reason: "R".into(),
            message: "m".into(),
            observed_generation: None,
            last_transition_time: at.into(),
        }
    }

    #[test]
    fn transition_time_is_kept_while_status_is_unchanged() {
        let out = set(&[cond("True", "t0")], cond("True", "t1"));
        assert_eq!(out[0].last_transition_time, "t0");
        let out = set(&[cond("True", "t0")], cond("False", "t1"));
        assert_eq!(out[0].last_transition_time, "t1");
    }
}
