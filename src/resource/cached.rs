//! A SlackToken as the controller's watch cache keeps it.
//!
//! Only what names it, what decides whether a change wakes a reconcile (generation, our
//! annotations, finalizers, deletion) and the status times that order the work. It is
//! deserialized straight from the API server's JSON: the spec and the rest of the status are
//! skipped, never built, and the full [`SlackToken`] type (some 900 bytes before its strings)
//! is not what ten thousand cached objects are made of. Every reconcile reads the SlackToken
//! afresh.

use super::slacktoken::SlackToken;
use jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::{api::ObjectMeta, Resource};
use serde::Deserialize;
use std::borrow::Cow;

/// The prefix of the annotations that carry requests to the operator (rotate now, skip revoke):
/// the only annotations the cache keeps.
pub const OUR_ANNOTATIONS: &str = "slack.rotator.dev/";

/// A SlackToken in the watch cache: its metadata without labels, managed fields, owner
/// references or other controllers' annotations, and the times of its status.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "Wire")]
pub struct CachedToken {
    pub metadata: ObjectMeta,
    pub times: StatusTimes,
}

/// The times of a SlackToken's status that order the work, as Unix seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusTimes {
    /// `status.expirationTime`.
    pub expires: Option<i64>,
    /// Whether `status.lastRotationTime` is set (a token was published).
    pub rotated: bool,
    /// `status.nextRotationTime`.
    pub next_rotation: Option<i64>,
}

impl StatusTimes {
    pub fn of(expiration: Option<&str>, last_rotation: Option<&str>, next_rotation: Option<&str>) -> Self {
        let seconds = |t: Option<&str>| t.and_then(|t| t.parse::<Timestamp>().ok()).map(|t| t.as_second());
        Self {
            expires: seconds(expiration),
            rotated: last_rotation.is_some(),
            next_rotation: seconds(next_rotation),
        }
    }
}

impl Resource for CachedToken {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        SlackToken::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        SlackToken::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        SlackToken::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        SlackToken::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What is read of the JSON; serde skips every other field without building it.
#[derive(Deserialize)]
struct Wire {
    metadata: ObjectMeta,
    #[serde(default)]
    status: Option<WireStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireStatus {
    #[serde(default)]
    expiration_time: Option<String>,
    #[serde(default)]
    last_rotation_time: Option<String>,
    #[serde(default)]
    next_rotation_time: Option<String>,
}

impl From<Wire> for CachedToken {
    fn from(wire: Wire) -> Self {
        let mut metadata = wire.metadata;
        metadata.managed_fields = None;
        metadata.labels = None;
        metadata.owner_references = None;
        if let Some(annotations) = &mut metadata.annotations {
            annotations.retain(|k, _| k.starts_with(OUR_ANNOTATIONS));
        }
        let times = wire.status.map_or_else(StatusTimes::default, |s| {
            StatusTimes::of(
                s.expiration_time.as_deref(),
                s.last_rotation_time.as_deref(),
                s.next_rotation_time.as_deref(),
            )
        });
        Self { metadata, times }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_names_our_annotations_and_status_times_only() {
        let json = serde_json::json!({
            "apiVersion": "slack.rotator.dev/v1alpha1",
            "kind": "SlackToken",
            "metadata": {
                "name": "bot", "namespace": "ns", "uid": "u1", "resourceVersion": "7", "generation": 2,
                "labels": {"team": "a"},
                "annotations": {
                    "slack.rotator.dev/rotate": "1",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"a very long\": \"object\"}"
                },
                "finalizers": ["slack.rotator.dev/revoke"],
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"type": "OAuth", "credentialsRef": {"name": "c"}, "secretRef": {"name": "s"}},
            "status": {
                "expirationTime": "2026-01-01T12:00:00Z",
                "lastRotationTime": "2026-01-01T00:00:00Z",
                "nextRotationTime": "2026-01-01T10:00:00Z",
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        let cached: CachedToken = serde_json::from_value(json).unwrap();
        let m = &cached.metadata;
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.generation),
            (Some("bot"), Some("ns"), Some(2))
        );
        assert_eq!(m.finalizers.as_deref(), Some(&["slack.rotator.dev/revoke".to_owned()][..]));
        assert_eq!(
            m.annotations.as_ref().map(|a| a.keys().map(String::as_str).collect::<Vec<_>>()),
            Some(vec!["slack.rotator.dev/rotate"])
        );
        assert!(m.labels.is_none() && m.managed_fields.is_none());
        let t = |s: &str| s.parse::<Timestamp>().unwrap().as_second();
        assert_eq!(
            cached.times,
            StatusTimes {
                expires: Some(t("2026-01-01T12:00:00Z")),
                rotated: true,
                next_rotation: Some(t("2026-01-01T10:00:00Z"))
            }
        );
        let new: CachedToken =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "new"}, "spec": {}})).unwrap();
        assert_eq!(new.times, StatusTimes::default());
    }
}
