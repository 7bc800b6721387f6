//! The set of served resources: built-in types plus whatever CustomResourceDefinitions
//! currently exist. Creating or deleting a CRD changes what is served and discoverable.

use crate::schema::CrdSchema;
use serde_json::Value;
use std::sync::Arc;

/// How a served representation maps onto its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr {
    /// Stored as served.
    Plain,
    /// events.k8s.io/v1 Event, stored in core/v1 Event form (they share storage in the real server).
    EventsV1,
}

#[derive(Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status_subresource: bool,
    /// Whether `metadata.generation` is maintained (CRs and a few built-ins such as CRDs).
    pub generation: bool,
    /// Storage key shared by every version/representation of the same resource.
    pub storage: String,
    pub repr: Repr,
    /// Present for custom resources.
    pub crd: Option<CrdInfo>,
    /// Review kinds (SelfSubjectAccessReview, …): only `create`, answered, never stored.
    pub create_only: bool,
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.plural)
    }
}

#[derive(Clone)]
pub struct CrdInfo {
    pub schema: Option<Arc<CrdSchema>>,
    pub printer_columns: Vec<Value>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.create_only {
            return vec!["create"];
        }
        vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
    generation: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        status_subresource: status,
        generation,
        storage: storage_key(group, plural),
        repr: Repr::Plain,
        crd: None,
        create_only: false,
    }
}

/// A create-only review resource (authorization.k8s.io, authentication.k8s.io).
fn review(group: &str, plural: &str, kind: &str, namespaced: bool) -> ResourceType {
    ResourceType { create_only: true, ..builtin(group, "v1", plural, kind, namespaced, &[], false, false) }
}

pub fn storage_key(group: &str, plural: &str) -> String {
    crate::error::qualified(group, plural)
}

#[derive(Clone)]
pub struct Registry {
    builtins: Vec<ResourceType>,
    custom: Vec<ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut events_v1 = builtin("events.k8s.io", "v1", "events", "Event", true, &["ev"], false, false);
        events_v1.storage = "events".into();
        events_v1.repr = Repr::EventsV1;
        let rbac = "rbac.authorization.k8s.io";
        Self {
            builtins: vec![
                builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true, false),
                builtin("", "v1", "secrets", "Secret", true, &[], false, false),
                builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false, false),
                builtin("", "v1", "events", "Event", true, &["ev"], false, false),
                builtin("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"], false, false),
                events_v1,
                builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[], false, false),
                builtin(
                    "apiextensions.k8s.io",
                    "v1",
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                    &["crd", "crds"],
                    true,
                    true,
                ),
                builtin(rbac, "v1", "roles", "Role", true, &[], false, false),
                builtin(rbac, "v1", "rolebindings", "RoleBinding", true, &[], false, false),
                builtin(rbac, "v1", "clusterroles", "ClusterRole", false, &[], false, false),
                builtin(rbac, "v1", "clusterrolebindings", "ClusterRoleBinding", false, &[], false, false),
                review("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview", false),
                review("authorization.k8s.io", "selfsubjectaccessreviews", "SelfSubjectAccessReview", false),
                review("authorization.k8s.io", "selfsubjectrulesreviews", "SelfSubjectRulesReview", false),
                review("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview", false),
                review("authorization.k8s.io", "localsubjectaccessreviews", "LocalSubjectAccessReview", true),
                // Workloads, stored as plain objects (no pods are run): enough to patch their
                // pod template, as `kubectl rollout restart` does.
                builtin("apps", "v1", "deployments", "Deployment", true, &["deploy"], true, true),
                builtin("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"], true, true),
                builtin("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true, true),
            ],
            custom: vec![],
        }
    }
}

impl Registry {
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.builtins.iter().chain(self.custom.iter())
    }

    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.all().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn group_versions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for r in self.all() {
            let gv = (r.group.clone(), r.version.clone());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
        out
    }

    pub fn in_group_version<'a>(
        &'a self,
        group: &'a str,
        version: &'a str,
    ) -> impl Iterator<Item = &'a ResourceType> + 'a {
        self.all().filter(move |r| r.group == group && r.version == version)
    }

    /// Rebuilds the custom part from the stored CRDs. CRDs being deleted are still served
    /// until their instances are gone, like the real server.
    pub fn sync_crds<'a>(&mut self, crds: impl Iterator<Item = &'a Value>) {
        let mut custom = Vec::new();
        for crd in crds {
            custom.extend(crd_resource_types(crd));
        }
        self.custom = custom;
    }
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

/// One `ResourceType` per served version of a CRD.
pub fn crd_resource_types(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default().to_string();
    let names = &spec["names"];
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let singular = names["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase());
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for v in spec["versions"].as_array().into_iter().flatten() {
        if v["served"].as_bool() == Some(false) {
            continue;
        }
        let schema = v["schema"]["openAPIV3Schema"].clone();
        let schema = if schema.is_object() { CrdSchema::new(&schema).ok().map(Arc::new) } else { None };
        out.push(ResourceType {
            group: group.clone(),
            version: v["name"].as_str().unwrap_or_default().to_string(),
            plural: plural.clone(),
            singular: singular.clone(),
            kind: kind.clone(),
            namespaced,
            short_names: str_list(&names["shortNames"]),
            categories: str_list(&names["categories"]),
            status_subresource: v["subresources"]["status"].is_object(),
            generation: true,
            storage: storage_key(&group, &plural),
            repr: Repr::Plain,
            crd: Some(CrdInfo {
                schema,
                printer_columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
            }),
            create_only: false,
        });
    }
    out
}

/// core/v1 Event <-> events.k8s.io/v1 Event field renames (storage is core form).
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Stored form -> served form.
pub fn to_served(rt: &ResourceType, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        if rt.repr == Repr::EventsV1 {
            for (core, ev) in EVENT_RENAMES {
                if let Some(v) = m.remove(*core) {
                    m.insert(ev.to_string(), v);
                }
            }
        }
        m.insert("apiVersion".into(), Value::String(rt.api_version()));
        m.insert("kind".into(), Value::String(rt.kind.clone()));
    }
    obj
}

/// Served form -> stored form.
pub fn to_stored(rt: &ResourceType, mut obj: Value) -> Value {
    if rt.repr == Repr::EventsV1 {
        if let Some(m) = obj.as_object_mut() {
            for (core, ev) in EVENT_RENAMES {
                if let Some(v) = m.remove(*ev) {
                    m.insert(core.to_string(), v);
                }
            }
            m.insert("apiVersion".into(), Value::String("v1".into()));
        }
    }
    obj
}
