//! The create-only authentication/authorization endpoints: `serviceaccounts/{name}/token`
//! (TokenRequest, `kubectl create token`), SelfSubjectAccessReview, SubjectAccessReview and
//! LocalSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth
//! can-i --list`) and SelfSubjectReview (`kubectl auth whoami`). Nothing is stored.

use crate::error::{invalid_value, ApiError, ApiResult};
use crate::rbac::{self, Attributes, User};
use crate::resources::ResourceType;
use crate::verbs::State;
use base64::Engine;
use serde_json::{json, Value};

/// The user the admin token (and a request without credentials) is.
pub fn admin() -> User {
    User {
        name: "kubernetes-admin".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
        service_account: (String::new(), String::new()),
    }
}

const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Answers a review create. `user` is None for the admin; with RBAC off everyone is
/// allowed everything (the emulator's authorizer is then AlwaysAllow).
pub fn review(
    st: &State,
    rbac_on: bool,
    user: Option<&User>,
    rt: &ResourceType,
    namespace: Option<&str>,
    mut body: Value,
) -> ApiResult<Value> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let kind = rt.kind.as_str();
    let invalid = |field: &str, value: Value, detail: &str| {
        ApiError::invalid(&rt.group, kind, "", vec![invalid_value(field, &value, detail)])
    };
    match kind {
        "SelfSubjectReview" => {
            let me = user.cloned().unwrap_or_else(admin);
            body["status"] = json!({"userInfo": user_info(&me)});
        }
        "SelfSubjectRulesReview" => {
            let ns = body["spec"]["namespace"].as_str().unwrap_or_default().to_string();
            if ns.is_empty() {
                return Err(invalid("spec.namespace", json!(""), "must be specified"));
            }
            body["status"] = match user.filter(|_| rbac_on) {
                None => json!({
                    "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                    "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                    "incomplete": false,
                }),
                Some(u) => rules_review(st, u, &ns),
            };
        }
        _ => {
            let spec = body["spec"].clone();
            let res = &spec["resourceAttributes"];
            let non_res = &spec["nonResourceAttributes"];
            if res.is_object() == non_res.is_object() {
                return Err(invalid(
                    "spec.resourceAttributes",
                    json!(if res.is_object() { "non-null" } else { "null" }),
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                ));
            }
            let subject = match kind {
                "SelfSubjectAccessReview" => user.cloned(),
                _ => {
                    let name = spec["user"].as_str().unwrap_or_default().to_string();
                    let groups: Vec<String> = spec["groups"]
                        .as_array()
                        .map(|g| g.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                        .unwrap_or_default();
                    if name.is_empty() && groups.is_empty() {
                        return Err(invalid(
                            "spec.user",
                            json!(""),
                            "at least one of user or group must be specified",
                        ));
                    }
                    if kind == "LocalSubjectAccessReview" {
                        let attr_ns = res["namespace"].as_str().unwrap_or_default();
                        if res.is_object() && attr_ns != namespace.unwrap_or_default() {
                            return Err(invalid(
                                "spec.resourceAttributes.namespace",
                                json!(attr_ns),
                                "must match metadata.namespace",
                            ));
                        }
                    }
                    Some(user_from_spec(&name, groups))
                }
            };
            body["status"] = match subject.filter(|_| rbac_on) {
                // The admin (system:masters) and everyone with RBAC off.
                None => json!({"allowed": true}),
                Some(u) => access_review(st, &u, res, non_res),
            };
        }
    }
    body["apiVersion"] = json!(rt.api_version());
    body["kind"] = json!(kind);
    if !body["metadata"].is_object() {
        body["metadata"] = json!({});
    }
    Ok(body)
}

fn user_info(u: &User) -> Value {
    let mut info = json!({"username": u.name, "groups": u.groups});
    if !u.service_account.1.is_empty() {
        info["extra"] = json!({});
    }
    info
}

fn user_from_spec(name: &str, groups: Vec<String>) -> User {
    match name.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')) {
        Some((ns, sa)) => {
            let mut u = User::service_account(ns, sa);
            for g in groups {
                if !u.groups.contains(&g) {
                    u.groups.push(g);
                }
            }
            u
        }
        None => User { name: name.to_string(), groups, service_account: (String::new(), String::new()) },
    }
}

fn access_review(st: &State, u: &User, res: &Value, non_res: &Value) -> Value {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let reason = if res.is_object() {
        let (verb, group, resource, sub, ns, name) = (
            s(res, "verb"),
            s(res, "group"),
            s(res, "resource"),
            s(res, "subresource"),
            s(res, "namespace"),
            s(res, "name"),
        );
        let attrs = Attributes {
            verb: &verb,
            group: &group,
            resource: &resource,
            subresource: Some(sub.as_str()).filter(|x| !x.is_empty()),
            namespace: Some(ns.as_str()).filter(|x| !x.is_empty()),
            name: Some(name.as_str()).filter(|x| !x.is_empty()),
        };
        rbac::allowed(st, u, &attrs)
    } else {
        rbac::allowed_path(st, u, &s(non_res, "verb"), &s(non_res, "path"))
    };
    match reason {
        Some(r) => json!({"allowed": true, "reason": r}),
        None => json!({"allowed": false}),
    }
}

fn rules_review(st: &State, u: &User, ns: &str) -> Value {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for (rule, _) in rbac::rules_for(st, u, Some(ns)) {
        let pick = |keys: &[&str]| {
            let mut out = serde_json::Map::new();
            for k in keys {
                if let Some(v) = rule.get(*k).filter(|v| v.as_array().is_some_and(|a| !a.is_empty())) {
                    out.insert(k.to_string(), v.clone());
                }
            }
            Value::Object(out)
        };
        if rule["nonResourceURLs"].as_array().is_some_and(|a| !a.is_empty()) {
            non_resource_rules.push(pick(&["verbs", "nonResourceURLs"]));
        } else {
            resource_rules.push(pick(&["verbs", "apiGroups", "resources", "resourceNames"]));
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}

/// `POST serviceaccounts/{name}/token`: a token for the ServiceAccount, valid as a bearer
/// token against this emulator. Returns the TokenRequest and the token.
pub fn token_request(
    st: &State,
    namespace: &str,
    sa_name: &str,
    mut body: Value,
) -> ApiResult<(Value, String, User)> {
    let sa = st
        .store
        .get("serviceaccounts", &(namespace.to_string(), sa_name.to_string()))
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", sa_name))?
        .clone();
    if !body.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    let expiration = match &body["spec"]["expirationSeconds"] {
        Value::Null => 3600,
        v => v.as_i64().unwrap_or(0),
    };
    let invalid = |detail: &str| {
        ApiError::invalid(
            "authentication.k8s.io",
            "TokenRequest",
            sa_name,
            vec![invalid_value("spec.expirationSeconds", &json!(expiration), detail)],
        )
    };
    if expiration < 600 {
        return Err(invalid("may not specify a duration less than 10 minutes"));
    }
    if expiration > 1 << 32 {
        return Err(invalid("may not specify a duration larger than 2^32 seconds"));
    }
    let audiences = match body["spec"]["audiences"].as_array().filter(|a| !a.is_empty()) {
        Some(a) => Value::Array(a.clone()),
        None => json!([DEFAULT_AUDIENCE]),
    };
    let now = (st.now)();
    let exp = now.as_second() + expiration;
    let uid = sa["metadata"]["uid"].as_str().unwrap_or_default();
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = json!({"alg": "RS256", "kid": "kube-emulator"});
    let claims = json!({
        "aud": audiences,
        "exp": exp,
        "iat": now.as_second(),
        "nbf": now.as_second(),
        "iss": DEFAULT_AUDIENCE,
        "jti": format!("{:032x}", rand::random::<u128>()),
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": uid}},
        "sub": format!("system:serviceaccount:{namespace}:{sa_name}"),
    });
    let signature: [u8; 32] = rand::random();
    let token = format!(
        "{}.{}.{}",
        url.encode(header.to_string()),
        url.encode(claims.to_string()),
        url.encode(signature)
    );
    let expires = jiff::Timestamp::from_second(exp).unwrap_or(now);
    body["apiVersion"] = json!("authentication.k8s.io/v1");
    body["kind"] = json!("TokenRequest");
    body["metadata"] = json!({
        "name": sa_name,
        "namespace": namespace,
        "creationTimestamp": st.now_string(),
    });
    body["spec"]["audiences"] = audiences;
    body["spec"]["expirationSeconds"] = json!(expiration);
    if body["spec"]["boundObjectRef"].is_null() {
        body["spec"]["boundObjectRef"] = Value::Null;
    }
    body["status"] = json!({
        "token": token,
        "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    Ok((body, token, User::service_account(namespace, sa_name)))
}
