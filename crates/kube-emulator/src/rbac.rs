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

/// What a request asks to do, as the RBAC authorizer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl Attributes<'_> {
    fn resource_path(&self) -> String {
        match self.subresource.filter(|s| !s.is_empty()) {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.to_string(),
        }
    }
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let names_ok = match rule["resourceNames"].as_array() {
        Some(list) if !list.is_empty() => a.name.is_some_and(|n| list.iter().any(|x| x.as_str() == Some(n))),
        _ => true,
    };
    list_has(&rule["apiGroups"], a.group)
        && list_has(&rule["resources"], &a.resource_path())
        && list_has(&rule["verbs"], a.verb)
        && names_ok
}

/// Whether a rule allows a non-resource request (`nonResourceURLs`, `*` and `prefix*`).
fn rule_allows_path(rule: &Value, verb: &str, path: &str) -> bool {
    let path_ok = rule["nonResourceURLs"].as_array().is_some_and(|urls| {
        urls.iter().filter_map(Value::as_str).any(|u| {
            u == path || u == "*" || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix))
        })
    });
    path_ok && list_has(&rule["verbs"], verb)
}

/// `Some(reason)` when RBAC allows a non-resource request.
pub fn allowed_path(st: &State, user: &User, verb: &str, path: &str) -> Option<String> {
    rules_for(st, user, None).into_iter().find(|(r, _)| rule_allows_path(r, verb, path)).map(|(_, why)| why)
}

/// The bootstrap ClusterRoles every real cluster binds to `system:authenticated`
/// (`system:basic-user`, `system:discovery`, `system:public-info-viewer`). They are not
/// stored objects here, but they grant the same.
fn bootstrap_rules(user: &User) -> Vec<(Value, String)> {
    if !user.groups.iter().any(|g| g == "system:authenticated") {
        return vec![];
    }
    let why = |role: &str| {
        format!(
            "RBAC: allowed by ClusterRoleBinding \"{role}\" of ClusterRole \"{role}\" to Group \"system:authenticated\""
        )
    };
    vec![
        (
            json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}),
            why("system:basic-user"),
        ),
        (
            json!({"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]}),
            why("system:basic-user"),
        ),
        (
            json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"]}),
            why("system:discovery"),
        ),
    ]
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

/// Every rule granted to `user` cluster-wide and, with a namespace, in it; each with the
/// RBAC authorizer's description of where it comes from.
pub fn rules_for(st: &State, user: &User, namespace: Option<&str>) -> Vec<(Value, String)> {
    let mut rules = bootstrap_rules(user);
    let describe = |binding: &str, b: &Value, subject: &Value| {
        let sub_kind = subject["kind"].as_str().unwrap_or_default();
        let sub_name = subject["name"].as_str().unwrap_or_default();
        let sub = match subject["namespace"].as_str().filter(|n| !n.is_empty()) {
            Some(ns) => format!("{sub_kind} \"{ns}/{sub_name}\""),
            None => format!("{sub_kind} \"{sub_name}\""),
        };
        format!(
            "RBAC: allowed by {binding} of {} \"{}\" to {sub}",
            b["roleRef"]["kind"].as_str().unwrap_or_default(),
            b["roleRef"]["name"].as_str().unwrap_or_default()
        )
    };
    for (key, b) in st.store.objects("clusterrolebindings.rbac.authorization.k8s.io") {
        let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
        if let Some(s) = subjects.iter().find(|s| subject_matches(user, s, "")) {
            let why = describe(&format!("ClusterRoleBinding \"{}\"", key.1), b, s);
            rules.extend(rules_of(st, &b["roleRef"], "").into_iter().map(|r| (r, why.clone())));
        }
    }
    if let Some(ns) = namespace {
        for (key, b) in st.store.objects("rolebindings.rbac.authorization.k8s.io") {
            if key.0 != ns {
                continue;
            }
            let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
            if let Some(s) = subjects.iter().find(|s| subject_matches(user, s, ns)) {
                let why = describe(&format!("RoleBinding \"{}/{ns}\"", key.1), b, s);
                rules.extend(rules_of(st, &b["roleRef"], ns).into_iter().map(|r| (r, why.clone())));
            }
        }
    }
    rules
}

/// `Some(reason)` when RBAC allows the request.
pub fn allowed(st: &State, user: &User, a: &Attributes) -> Option<String> {
    rules_for(st, user, a.namespace).into_iter().find(|(r, _)| rule_allows(r, a)).map(|(_, why)| why)
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
    let attrs = Attributes {
        verb: verb.as_str(),
        group: &rt.group,
        resource: &rt.plural,
        subresource: sub,
        namespace,
        name,
    };
    if allowed(st, user, &attrs).is_some() {
        return Ok(());
    }
    let resource = attrs.resource_path();
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
