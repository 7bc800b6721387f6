//! SlackToken status: computed from what a reconcile found, written only when it changed.

use crate::{
    clock::format_time,
    crd::{Condition, SlackToken, SlackTokenStatus},
    error::Error,
    rotation::Trigger,
    schedule::TokenTimes,
};
use jiff::Timestamp;
use kube::{
    api::{Api, Patch, PatchParams},
    Resource, ResourceExt,
};
use serde_json::{json, Value};

pub const READY: &str = "Ready";
/// Manual tokens: True when a person should re-issue the token.
pub const ROTATION_DUE: &str = "RotationDue";
/// Manual tokens: present while a supplied `pendingToken` is refused.
pub const PENDING_TOKEN: &str = "PendingToken";

/// What a successful reconcile found out.
#[derive(Default)]
pub struct Done {
    pub rotated: Option<Trigger>,
    pub times: TokenTimes,
    pub next_rotation: Option<Timestamp>,
    /// When to look again, if not at `next_rotation` (long-lived tokens: due time and health checks).
    pub wake_at: Option<Timestamp>,
    pub identity: Option<crate::crd::Identity>,
    pub handled_rotate_request: Option<String>,
    pub warnings: Vec<Warning>,
    /// Conditions besides Ready to set: (type, status, reason, message).
    pub conditions: Vec<(&'static str, bool, String, String)>,
    /// Condition types to drop.
    pub cleared: Vec<&'static str>,
    pub last_check: Option<Timestamp>,
}

/// Something about the spec that works, but not as the user may think. Shown in the Ready
/// message and announced once by an Event with `reason`.
pub struct Warning {
    pub reason: &'static str,
    pub message: String,
}

impl Done {
    /// When to reconcile again: `wake_at` if set (the type's own path decided), else the next rotation.
    pub fn wake_at(&self) -> Option<Timestamp> {
        self.wake_at.or(self.next_rotation)
    }
}

pub fn success(stk: &SlackToken, old: &SlackTokenStatus, done: &Done, now: Timestamp) -> SlackTokenStatus {
    let suspended = stk.spec.suspend;
    let mut message = format!(
        "{}token published to Secret {}",
        if suspended { "rotation suspended; " } else { "" },
        stk.spec.secret_ref.name
    );
    for warning in &done.warnings {
        message.push_str("; warning: ");
        message.push_str(&warning.message);
    }
    let reason = if suspended { "Suspended" } else { "TokenPublished" };
    let mut conditions = set_condition(&old.conditions, condition(stk, READY, true, reason, &message, now));
    for (type_, ok, reason, message) in &done.conditions {
        conditions = set_condition(&conditions, condition(stk, type_, *ok, reason, message, now));
    }
    conditions.retain(|c| !done.cleared.contains(&c.type_.as_str()));
    SlackTokenStatus {
        conditions,
        observed_generation: stk.meta().generation,
        last_rotation_time: done.times.issued_at.map(format_time).or_else(|| old.last_rotation_time.clone()),
        next_rotation_time: if suspended { None } else { done.next_rotation.map(format_time) },
        expiration_time: done.times.expires_at.map(format_time),
        rotation_count: old.rotation_count + u64::from(done.rotated.is_some()),
        last_failure_time: None,
        failed_attempts: 0,
        identity: done.identity.clone().or_else(|| old.identity.clone()),
        last_check_time: done.last_check.map(format_time).or_else(|| old.last_check_time.clone()),
        last_rotate_request: done.handled_rotate_request.clone().or_else(|| old.last_rotate_request.clone()),
    }
}

pub fn failure(
    stk: &SlackToken,
    old: &SlackTokenStatus,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> SlackTokenStatus {
    SlackTokenStatus {
        conditions: set_condition(&old.conditions, condition(stk, READY, false, reason, message, now)),
        observed_generation: stk.meta().generation,
        last_failure_time: Some(format_time(now)),
        failed_attempts: old.failed_attempts.saturating_add(1),
        ..old.clone()
    }
}

pub fn condition(
    stk: &SlackToken,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: stk.meta().generation,
        last_transition_time: format_time(now),
    }
}

/// Replaces the condition of the same type, keeping its transition time when the status is unchanged.
pub fn set_condition(conditions: &[Condition], mut new: Condition) -> Vec<Condition> {
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
pub fn find<'a>(status: Option<&'a SlackTokenStatus>, type_: &str) -> Option<&'a Condition> {
    status?.conditions.iter().find(|c| c.type_ == type_)
}

/// Merge-patches status with a resourceVersion precondition, nulling fields that disappeared;
/// skips the write if nothing changed. On a conflict the status is recomputed from the newer object
/// (`compute` is a function of the old status), so a concurrent write is never overwritten.
pub async fn write(
    tokens: &Api<SlackToken>,
    mut stk: SlackToken,
    compute: impl Fn(&SlackToken, &SlackTokenStatus) -> SlackTokenStatus,
) -> Result<(), Error> {
    const ATTEMPTS: usize = 3;
    for attempt in 1..=ATTEMPTS {
        let old = stk.status.clone().unwrap_or_default();
        let new = compute(&stk, &old);
        if new == old && stk.status.is_some() {
            return Ok(());
        }
        let mut value = serde_json::to_value(&new).map_err(|e| Error::InvalidSpec(e.to_string()))?;
        if let (Value::Object(new_map), Ok(Value::Object(old_map))) = (&mut value, serde_json::to_value(&old))
        {
            for key in old_map.keys() {
                new_map.entry(key.clone()).or_insert(Value::Null);
            }
        }
        let patch = json!({ "metadata": { "resourceVersion": stk.resource_version() }, "status": value });
        match tokens.patch_status(&stk.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < ATTEMPTS => {
                stk = tokens.get(&stk.name_any()).await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
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
        let out = set_condition(&[cond("True", "t0")], cond("True", "t1"));
        assert_eq!(out[0].last_transition_time, "t0");
        let out = set_condition(&[cond("True", "t0")], cond("False", "t1"));
        assert_eq!(out[0].last_transition_time, "t1");
    }
}
