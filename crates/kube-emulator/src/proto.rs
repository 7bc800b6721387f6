//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which client-go's typed
//! clients send for built-in kinds (`kubectl create secret|configmap|namespace|…`).
//!
//! The body is the `k8s\0` magic followed by a `runtime.Unknown` envelope whose `raw` is the
//! object's message. Messages are decoded with the generated types of `k8s-pb` and turned
//! into the JSON the rest of the emulator works on, the way Go's JSON encoding of the same
//! struct would look (`omitempty`: empty strings, lists and maps are left out).

use crate::error::{ApiError, ApiResult};
use base64::Engine;
use k8s_pb::api;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use prost::Message;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const MAGIC: &[u8] = b"k8s\0";

/// Go's JSON rendering of a field value; `Value::Null` means "left out".
trait ToJson {
    fn to_json(&self) -> Value;

    /// As an item of a list or a map value, which is never left out.
    fn element(&self) -> Value {
        match self.to_json() {
            Value::Null => json!({}),
            other => other,
        }
    }
}

impl ToJson for String {
    fn to_json(&self) -> Value {
        if self.is_empty() {
            Value::Null
        } else {
            json!(self)
        }
    }

    fn element(&self) -> Value {
        json!(self)
    }
}

impl ToJson for bool {
    fn to_json(&self) -> Value {
        json!(self)
    }
}

impl ToJson for i32 {
    fn to_json(&self) -> Value {
        json!(self)
    }
}

impl ToJson for i64 {
    fn to_json(&self) -> Value {
        json!(self)
    }
}

impl<T: ToJson> ToJson for Option<T> {
    fn to_json(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToJson::to_json)
    }
}

impl<T: ToJson> ToJson for Vec<T> {
    fn to_json(&self) -> Value {
        if self.is_empty() {
            Value::Null
        } else {
            Value::Array(self.iter().map(ToJson::element).collect())
        }
    }
}

impl<T: ToJson> ToJson for BTreeMap<String, T> {
    fn to_json(&self) -> Value {
        if self.is_empty() {
            Value::Null
        } else {
            Value::Object(self.iter().map(|(k, v)| (k.clone(), v.element())).collect())
        }
    }
}

fn non_null(v: Value, empty: impl FnOnce() -> Value) -> Value {
    if v.is_null() {
        empty()
    } else {
        v
    }
}

/// `[]byte` fields are base64 in JSON.
struct Bytes<'a>(&'a BTreeMap<String, Vec<u8>>);

impl ToJson for Bytes<'_> {
    fn to_json(&self) -> Value {
        if self.0.is_empty() {
            return Value::Null;
        }
        let engine = base64::engine::general_purpose::STANDARD;
        Value::Object(self.0.iter().map(|(k, v)| (k.clone(), json!(engine.encode(v)))).collect())
    }
}

/// Builds a JSON object from (name, value) pairs, leaving out `Null`s.
fn object(fields: Vec<(&str, Value)>) -> Value {
    let m: Map<String, Value> =
        fields.into_iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.to_string(), v)).collect();
    if m.is_empty() {
        Value::Null
    } else {
        Value::Object(m)
    }
}

/// `impl ToJson` for a message: `json_name => field` pairs.
macro_rules! to_json {
    ($ty:ty { $($name:literal => $field:ident),* $(,)? }) => {
        impl ToJson for $ty {
            fn to_json(&self) -> Value {
                object(vec![$(($name, self.$field.to_json())),*])
            }
        }
    };
}

fn timestamp(seconds: Option<i64>, nanos: Option<i32>, micros: bool) -> Value {
    let (s, n) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
    if s == 0 && n == 0 {
        return Value::Null; // Go's zero time: omitted
    }
    match jiff::Timestamp::new(s, n) {
        Ok(t) if micros => json!(t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        Ok(t) => json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
        Err(_) => Value::Null,
    }
}

impl ToJson for meta::Time {
    fn to_json(&self) -> Value {
        timestamp(self.seconds, self.nanos, false)
    }
}

impl ToJson for meta::MicroTime {
    fn to_json(&self) -> Value {
        timestamp(self.seconds, self.nanos, true)
    }
}

impl ToJson for meta::FieldsV1 {
    fn to_json(&self) -> Value {
        self.raw.as_deref().and_then(|r| serde_json::from_slice(r).ok()).unwrap_or(Value::Null)
    }
}

to_json!(meta::ObjectMeta {
    "name" => name, "generateName" => generate_name, "namespace" => namespace,
    "selfLink" => self_link, "uid" => uid, "resourceVersion" => resource_version,
    "generation" => generation, "creationTimestamp" => creation_timestamp,
    "deletionTimestamp" => deletion_timestamp,
    "deletionGracePeriodSeconds" => deletion_grace_period_seconds, "labels" => labels,
    "annotations" => annotations, "ownerReferences" => owner_references,
    "finalizers" => finalizers, "managedFields" => managed_fields,
});
to_json!(meta::OwnerReference {
    "apiVersion" => api_version, "kind" => kind, "name" => name, "uid" => uid,
    "controller" => controller, "blockOwnerDeletion" => block_owner_deletion,
});
to_json!(meta::ManagedFieldsEntry {
    "manager" => manager, "operation" => operation, "apiVersion" => api_version, "time" => time,
    "fieldsType" => fields_type, "fieldsV1" => fields_v1, "subresource" => subresource,
});
to_json!(meta::LabelSelector { "matchLabels" => match_labels, "matchExpressions" => match_expressions });
to_json!(meta::LabelSelectorRequirement { "key" => key, "operator" => operator, "values" => values });
to_json!(meta::FieldSelectorRequirement { "key" => key, "operator" => operator, "values" => values });
to_json!(meta::Preconditions { "uid" => uid, "resourceVersion" => resource_version });
to_json!(meta::DeleteOptions {
    "gracePeriodSeconds" => grace_period_seconds, "preconditions" => preconditions,
    "orphanDependents" => orphan_dependents, "propagationPolicy" => propagation_policy,
    "dryRun" => dry_run,
});

use api::core::v1 as core;
to_json!(core::Namespace { "metadata" => metadata, "spec" => spec, "status" => status });
to_json!(core::NamespaceSpec { "finalizers" => finalizers });
to_json!(core::NamespaceStatus { "phase" => phase, "conditions" => conditions });
to_json!(core::NamespaceCondition {
    "type" => r#type, "status" => status, "lastTransitionTime" => last_transition_time,
    "reason" => reason, "message" => message,
});
impl ToJson for core::Secret {
    fn to_json(&self) -> Value {
        object(vec![
            ("metadata", self.metadata.to_json()),
            ("immutable", self.immutable.to_json()),
            ("data", Bytes(&self.data).to_json()),
            ("stringData", self.string_data.to_json()),
            ("type", self.r#type.to_json()),
        ])
    }
}
impl ToJson for core::ConfigMap {
    fn to_json(&self) -> Value {
        object(vec![
            ("metadata", self.metadata.to_json()),
            ("immutable", self.immutable.to_json()),
            ("data", self.data.to_json()),
            ("binaryData", Bytes(&self.binary_data).to_json()),
        ])
    }
}
to_json!(core::ServiceAccount {
    "metadata" => metadata, "secrets" => secrets, "imagePullSecrets" => image_pull_secrets,
    "automountServiceAccountToken" => automount_service_account_token,
});
to_json!(core::ObjectReference {
    "kind" => kind, "namespace" => namespace, "name" => name, "uid" => uid,
    "apiVersion" => api_version, "resourceVersion" => resource_version, "fieldPath" => field_path,
});
to_json!(core::LocalObjectReference { "name" => name });
to_json!(core::Event {
    "metadata" => metadata, "involvedObject" => involved_object, "reason" => reason,
    "message" => message, "source" => source, "firstTimestamp" => first_timestamp,
    "lastTimestamp" => last_timestamp, "count" => count, "type" => r#type,
    "eventTime" => event_time, "series" => series, "action" => action, "related" => related,
    "reportingComponent" => reporting_component, "reportingInstance" => reporting_instance,
});
to_json!(core::EventSource { "component" => component, "host" => host });
to_json!(core::EventSeries { "count" => count, "lastObservedTime" => last_observed_time });

use api::events::v1 as events;
to_json!(events::Event {
    "metadata" => metadata, "eventTime" => event_time, "series" => series,
    "reportingController" => reporting_controller, "reportingInstance" => reporting_instance,
    "action" => action, "reason" => reason, "regarding" => regarding, "related" => related,
    "note" => note, "type" => r#type, "deprecatedSource" => deprecated_source,
    "deprecatedFirstTimestamp" => deprecated_first_timestamp,
    "deprecatedLastTimestamp" => deprecated_last_timestamp, "deprecatedCount" => deprecated_count,
});
to_json!(events::EventSeries { "count" => count, "lastObservedTime" => last_observed_time });

use api::coordination::v1 as coordination;
to_json!(coordination::Lease { "metadata" => metadata, "spec" => spec });
to_json!(coordination::LeaseSpec {
    "holderIdentity" => holder_identity, "leaseDurationSeconds" => lease_duration_seconds,
    "acquireTime" => acquire_time, "renewTime" => renew_time,
    "leaseTransitions" => lease_transitions, "strategy" => strategy,
    "preferredHolder" => preferred_holder,
});

use api::rbac::v1 as rbac;
to_json!(rbac::Role { "metadata" => metadata, "rules" => rules });
to_json!(rbac::ClusterRole {
    "metadata" => metadata, "rules" => rules, "aggregationRule" => aggregation_rule,
});
to_json!(rbac::PolicyRule {
    "verbs" => verbs, "apiGroups" => api_groups, "resources" => resources,
    "resourceNames" => resource_names, "nonResourceURLs" => non_resource_ur_ls,
});
to_json!(rbac::AggregationRule { "clusterRoleSelectors" => cluster_role_selectors });
to_json!(rbac::RoleBinding { "metadata" => metadata, "subjects" => subjects, "roleRef" => role_ref });
to_json!(rbac::ClusterRoleBinding {
    "metadata" => metadata, "subjects" => subjects, "roleRef" => role_ref,
});
to_json!(rbac::Subject {
    "kind" => kind, "apiGroup" => api_group, "name" => name, "namespace" => namespace,
});
to_json!(rbac::RoleRef { "apiGroup" => api_group, "kind" => kind, "name" => name });

use api::authentication::v1 as authn;
to_json!(authn::TokenRequest { "metadata" => metadata, "spec" => spec });
to_json!(authn::TokenRequestSpec {
    "audiences" => audiences, "expirationSeconds" => expiration_seconds,
    "boundObjectRef" => bound_object_ref,
});
to_json!(authn::BoundObjectReference {
    "kind" => kind, "apiVersion" => api_version, "name" => name, "uid" => u_id,
});
to_json!(authn::SelfSubjectReview { "metadata" => metadata });

use api::authorization::v1 as authz;
to_json!(authz::SelfSubjectAccessReview { "metadata" => metadata, "spec" => spec });
to_json!(authz::SelfSubjectAccessReviewSpec {
    "resourceAttributes" => resource_attributes,
    "nonResourceAttributes" => non_resource_attributes,
});
to_json!(authz::SubjectAccessReview { "metadata" => metadata, "spec" => spec });
to_json!(authz::LocalSubjectAccessReview { "metadata" => metadata, "spec" => spec });
to_json!(authz::SubjectAccessReviewSpec {
    "resourceAttributes" => resource_attributes,
    "nonResourceAttributes" => non_resource_attributes, "user" => user, "groups" => groups,
    "extra" => extra, "uid" => uid,
});
impl ToJson for authz::ExtraValue {
    fn to_json(&self) -> Value {
        self.items.to_json()
    }
}
to_json!(authz::ResourceAttributes {
    "namespace" => namespace, "verb" => verb, "group" => group, "version" => version,
    "resource" => resource, "subresource" => subresource, "name" => name,
    "fieldSelector" => field_selector, "labelSelector" => label_selector,
});
to_json!(authz::NonResourceAttributes { "path" => path, "verb" => verb });
to_json!(authz::FieldSelectorAttributes { "rawSelector" => raw_selector, "requirements" => requirements });
to_json!(authz::LabelSelectorAttributes { "rawSelector" => raw_selector, "requirements" => requirements });
to_json!(authz::SelfSubjectRulesReview { "metadata" => metadata, "spec" => spec });
to_json!(authz::SelfSubjectRulesReviewSpec { "namespace" => namespace });

fn decode_as<M: Message + Default + ToJson>(raw: &[u8]) -> Result<Value, prost::DecodeError> {
    M::decode(raw).map(|m| non_null(m.to_json(), || json!({})))
}

/// Decodes a protobuf request body into JSON. `expected` is the (apiVersion, kind) the URL
/// calls for; the envelope's own type must match it, as the real decoder checks.
pub fn decode(body: &[u8], expected: (&str, &str)) -> ApiResult<Value> {
    let (api_version, kind) = expected;
    let bad = |why: String| {
        ApiError::bad_request(format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: {why}",
            api_version.rsplit('/').next().unwrap_or(api_version)
        ))
    };
    let envelope = body.strip_prefix(MAGIC).ok_or_else(|| {
        bad("provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]".into())
    })?;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown::decode(envelope)
        .map_err(|e| bad(format!("unable to decode protobuf envelope: {e}")))?;
    let tm = unknown.type_meta.unwrap_or_default();
    let (got_version, got_kind) = (tm.api_version.unwrap_or_default(), tm.kind.unwrap_or_default());
    if (!got_kind.is_empty() && got_kind != kind) || (!got_version.is_empty() && got_version != api_version) {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized or malformed: expected {api_version}, Kind={kind}, got {got_version}, Kind={got_kind}"
        )));
    }
    let raw = unknown.raw.unwrap_or_default();
    let decoded = match (api_version, kind) {
        ("v1", "Namespace") => decode_as::<core::Namespace>(&raw),
        ("v1", "Secret") => decode_as::<core::Secret>(&raw),
        ("v1", "ConfigMap") => decode_as::<core::ConfigMap>(&raw),
        ("v1", "ServiceAccount") => decode_as::<core::ServiceAccount>(&raw),
        ("v1", "Event") => decode_as::<core::Event>(&raw),
        ("events.k8s.io/v1", "Event") => decode_as::<events::Event>(&raw),
        ("coordination.k8s.io/v1", "Lease") => decode_as::<coordination::Lease>(&raw),
        ("rbac.authorization.k8s.io/v1", "Role") => decode_as::<rbac::Role>(&raw),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => decode_as::<rbac::ClusterRole>(&raw),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => decode_as::<rbac::RoleBinding>(&raw),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            decode_as::<rbac::ClusterRoleBinding>(&raw)
        }
        ("authentication.k8s.io/v1", "TokenRequest") => decode_as::<authn::TokenRequest>(&raw),
        ("authentication.k8s.io/v1", "SelfSubjectReview") => decode_as::<authn::SelfSubjectReview>(&raw),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview") => {
            decode_as::<authz::SelfSubjectAccessReview>(&raw)
        }
        ("authorization.k8s.io/v1", "SubjectAccessReview") => decode_as::<authz::SubjectAccessReview>(&raw),
        ("authorization.k8s.io/v1", "LocalSubjectAccessReview") => {
            decode_as::<authz::LocalSubjectAccessReview>(&raw)
        }
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview") => {
            decode_as::<authz::SelfSubjectRulesReview>(&raw)
        }
        ("meta.k8s.io/v1" | "v1", "DeleteOptions") => decode_as::<meta::DeleteOptions>(&raw),
        _ => {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got \"application/vnd.kubernetes.protobuf\" for {api_version}, Kind={kind})"
            )))
        }
    };
    let mut obj = decoded.map_err(|e| bad(e.to_string()))?;
    if kind != "DeleteOptions" {
        obj["apiVersion"] = json!(api_version);
        obj["kind"] = json!(kind);
    }
    Ok(obj)
}

/// Whether a content type is the protobuf one.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or_default().trim() == "application/vnd.kubernetes.protobuf"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let u = k8s_pb::apimachinery::pkg::runtime::Unknown {
            type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut out = MAGIC.to_vec();
        out.extend(u.encode_to_vec());
        out
    }

    #[test]
    fn secret_decodes_to_go_json() {
        let s = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("bot-creds".into()),
                namespace: Some(String::new()),
                creation_timestamp: Some(meta::Time { seconds: Some(0), nanos: Some(0) }),
                labels: [("a".to_string(), "b".to_string())].into(),
                ..Default::default()
            }),
            data: [("token".to_string(), b"xoxb-1".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let v = decode(&envelope("v1", "Secret", s.encode_to_vec()), ("v1", "Secret")).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"bot-creds","labels":{"a":"b"}},
                   "data":{"token":"eG94Yi0x"},"type":"Opaque"})
        );
    }

    #[test]
    fn wrong_kind_and_garbage_are_errors_not_panics() {
        let ns = core::Namespace::default().encode_to_vec();
        assert_eq!(decode(&envelope("v1", "Namespace", ns), ("v1", "Secret")).unwrap_err().code, 400);
        assert_eq!(decode(b"k8s\0\xff\xff\xff", ("v1", "Secret")).unwrap_err().code, 400);
        assert_eq!(decode(b"{}", ("v1", "Secret")).unwrap_err().code, 400);
        let bad_raw = envelope("v1", "Secret", vec![0xff, 0xff, 0xff]);
        assert_eq!(decode(&bad_raw, ("v1", "Secret")).unwrap_err().code, 400);
    }

    #[test]
    fn micro_time_keeps_microseconds() {
        let t = meta::MicroTime { seconds: Some(1_700_000_000), nanos: Some(123_456_000) };
        assert_eq!(t.to_json(), json!("2023-11-14T22:13:20.123456Z"));
    }
}
