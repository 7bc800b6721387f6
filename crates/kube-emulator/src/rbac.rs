//! RBAC authorization for service-account tokens (only when `Config::rbac` is on):
//! Roles/ClusterRoles and their bindings stored in the emulator are evaluated like the
//! real RBAC authorizer (union of allow rules; no deny). The admin token bypasses it.

use crate::error::{qualified, ApiError, ApiResult};
use crate::faults::Verb;
use crate::resources::ResourceType;
use crate::verbs::State;
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// Service account namespace and name.
    pub service_account: (String, String),
}

impl User {
    pub fn service_account(namespace: &str, name: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
            service_account: (namespace.into(), name.into()),
        }
    }
}

fn list_has(v: &Value, wanted: &str) -> bool {
    v.as_array().is_some_and(|a| a.iter().any(|x| x.as_str() == Some(wanted) || x.as_str() == Some("*")))
}

fn subject_matches(user: &User, subject: &Value, binding_ns: &str) -> bool {
    let name = subject["name"].as_str().unwrap_or_default();
    match subject["kind"].as_str() {
        Some("ServiceAccount") => {
            let ns = subject["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
            user.service_account.0 == ns && user.service_account.1 == name
        }
        Some("User") => user.name == name,
        Some("Group") => user.groups.iter().any(|g| g == name),
        _ => false,
    }
}

fn rule_allows(rule: &Value, verb: Verb, rt: &ResourceType, sub: Option<&str>, name: Option<&str>) -> bool {
    let resource = match sub {
        Some(s) => format!("{}/{s}", rt.plural),
        None => rt.plural.clone(),
    };
    let names_ok = match rule["resourceNames"].as_array() {
        Some(a) if !a.is_empty() => name.is_some_and(|n| a.iter().any(|x| x.as_str() == Some(n))),
        _ => true,
    };
    list_has(&rule["apiGroups"], &rt.group)
        && list_has(&rule["resources"], &resource)
        && list_has(&rule["verbs"], verb.as_str())
        && names_ok
}

fn rules_of(st: &State, role_ref: &Value, binding_ns: &str) -> Vec<Value> {
    let name = role_ref["name"].as_str().unwrap_or_default().to_string();
    let obj = match role_ref["kind"].as_str() {
        Some("ClusterRole") => st.store.get("clusterroles.rbac.authorization.k8s.io", &(String::new(), name)),
        Some("Role") => st.store.get("roles.rbac.authorization.k8s.io", &(binding_ns.to_string(), name)),
        _ => None,
    };
    obj.and_then(|o| o["rules"].as_array().cloned()).unwrap_or_default()
}

pub fn authorize(
    st: &State,
    user: &User,
    verb: Verb,
    rt: &ResourceType,
    namespace: Option<&str>,
    name: Option<&str>,
    sub: Option<&str>,
) -> ApiResult<()> {
    let mut rules: Vec<Value> = Vec::new();
    for (_, b) in st.store.objects("clusterrolebindings.rbac.authorization.k8s.io") {
        let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
        if subjects.iter().any(|s| subject_matches(user, s, "")) {
            rules.extend(rules_of(st, &b["roleRef"], ""));
        }
    }
    if let Some(ns) = namespace {
        for (key, b) in st.store.objects("rolebindings.rbac.authorization.k8s.io") {
            if key.0 != ns {
                continue;
            }
            let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
            if subjects.iter().any(|s| subject_matches(user, s, ns)) {
                rules.extend(rules_of(st, &b["roleRef"], ns));
            }
        }
    }
    if rules.iter().any(|r| rule_allows(r, verb, rt, sub, name)) {
        return Ok(());
    }
    let resource = match sub {
        Some(s) => format!("{}/{s}", rt.plural),
        None => rt.plural.clone(),
    };
    let scope = match namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", qualified(&rt.group, &rt.plural)),
        None => qualified(&rt.group, &rt.plural),
    };
    let mut e = ApiError::forbidden(format!(
        "{subject} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, verb, rt.group
    ));
    let mut details = json!({"kind": rt.plural});
    if let Some(n) = name {
        details["name"] = json!(n);
    }
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    e.details = Some(details);
    Err(e)
}
