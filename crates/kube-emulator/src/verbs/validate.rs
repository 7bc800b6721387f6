//! Validation and defaulting of write bodies: the typed decoding check, ObjectMeta rules,
//! and the per-type rules (Secrets, Namespaces, events, CRDs), then the CRD schema.

use super::{finalizers, meta_str, FieldValidation, State, CRD_CLEANUP_FINALIZER};
use crate::error::{forbidden_field, invalid_value, required_value, ApiError, ApiResult, Cause};
use crate::resources::ResourceType;
use base64::Engine;
use serde_json::{json, Map, Value};

/// DNS-1123 subdomain (most names) or label (namespaces).
pub(super) fn name_problem(name: &str, label_only: bool) -> Option<String> {
    let max = if label_only { 63 } else { 253 };
    if name.len() > max {
        return Some(format!("must be no more than {max} characters"));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (!label_only && c == '.'));
    let ends_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_chars && ends_ok {
        None
    } else if label_only {
        Some("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into())
    } else {
        Some("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into())
    }
}

impl State {
    /// Type-specific defaulting and validation, then the CRD schema. `obj` is in served form.
    pub(super) fn prepare(
        &self,
        rt: &ResourceType,
        old: Option<&Value>,
        obj: &mut Value,
        validation: FieldValidation,
    ) -> ApiResult<()> {
        let unknown = typed_check(rt, obj)?;
        if !unknown.is_empty() {
            let list: Vec<String> = unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
            match validation {
                FieldValidation::Strict => {
                    let message = format!("strict decoding error: {}", list.join(", "));
                    return Err(ApiError::bad_request(if rt.is_custom() {
                        message
                    } else {
                        format!(
                            "{kind} in version \"{v}\" cannot be handled as a {kind}: {message}",
                            kind = rt.kind,
                            v = rt.version
                        )
                    }));
                }
                FieldValidation::Warn => self.warnings.borrow_mut().extend(list),
                FieldValidation::Ignore => {}
            }
        }
        let name = meta_str(obj, "name").unwrap_or_default().to_string();
        let mut causes: Vec<Cause> = Vec::new();
        if let Some(labels) = obj["metadata"]["labels"].as_object() {
            for (k, v) in labels {
                if !v.is_string() {
                    return Err(ApiError::bad_request(format!(
                        "metadata.labels.{k}: label values must be strings"
                    )));
                }
            }
        }
        if let Some(ann) = obj["metadata"]["annotations"].as_object() {
            if let Some((k, _)) = ann.iter().find(|(_, v)| !v.is_string()) {
                return Err(ApiError::bad_request(format!(
                    "metadata.annotations.{k}: annotation values must be strings"
                )));
            }
        }
        validate_labels(obj, &mut causes);
        validate_owner_references(obj, &mut causes);
        match (rt.group.as_str(), rt.plural.as_str()) {
            ("", "secrets") => prepare_secret(old, obj, &mut causes)?,
            ("", "configmaps") => prepare_config_map(old, obj, &mut causes)?,
            ("", "namespaces") => {
                obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
                if old.is_none() {
                    obj["spec"]["finalizers"] = json!(["kubernetes"]);
                    obj["status"] = json!({"phase": "Active"});
                }
            }
            ("events.k8s.io", "events") if old.is_none() => {
                // ValidateEventCreate for events.k8s.io/v1.
                for f in ["eventTime", "reportingController", "reportingInstance", "action", "reason"] {
                    if obj[f].is_null() || obj[f] == json!("") {
                        causes.push(required_value(f, ""));
                    }
                }
                for (f, max) in [("reportingInstance", 128), ("action", 128), ("reason", 128), ("note", 1024)]
                {
                    if obj[f].as_str().is_some_and(|v| v.len() > max) {
                        causes.push(Cause {
                            reason: "FieldValueTooLong",
                            field: f.to_string(),
                            message: format!("{f}: Too long: may not be more than {max} bytes"),
                        });
                    }
                }
            }
            ("apiextensions.k8s.io", "customresourcedefinitions") => {
                if old.is_none() {
                    // Set at creation by the real server; it holds deletion until the
                    // instances are gone.
                    let mut fins = finalizers(obj);
                    if !fins.iter().any(|f| f == CRD_CLEANUP_FINALIZER) {
                        fins.push(CRD_CLEANUP_FINALIZER.into());
                        obj["metadata"]["finalizers"] = json!(fins);
                    }
                }
                prepare_crd(obj, &mut causes);
                // Unrecognized schema formats are accepted with a warning (on update only
                // those the old object did not have).
                let before = old.map(unrecognized_formats).unwrap_or_default();
                for f in unrecognized_formats(obj) {
                    if !before.contains(&f) {
                        self.warnings.borrow_mut().push(format!("unrecognized format \"{f}\""));
                    }
                }
            }
            _ => {}
        }
        if let Some(schema) = rt.crd.as_ref().and_then(|c| c.schema.as_ref()) {
            let unknown = schema.prune(obj);
            if !unknown.is_empty() {
                let list: Vec<String> =
                    unknown.iter().map(|u| format!("unknown field \"{}\"", &u[1..])).collect();
                match validation {
                    FieldValidation::Strict => {
                        return Err(ApiError::bad_request(format!(
                            "strict decoding error: {}",
                            list.join(", ")
                        )))
                    }
                    FieldValidation::Warn => self.warnings.borrow_mut().extend(list),
                    FieldValidation::Ignore => {}
                }
            }
            schema.apply_defaults(obj);
            causes.extend(schema.validate(obj));
            causes.extend(schema.validate_lists(obj, old));
            let rules = schema.validate_rules(obj, old, &causes);
            causes.extend(rules.causes);
            self.warnings.borrow_mut().extend(rules.warnings);
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(&rt.group, &rt.kind, &name, causes))
        }
    }
}

/// Decodes the object into its typed form (ObjectMeta only for custom resources), as the
/// real server does before anything else: type mismatches are a 400, never a panic later.
/// Fields the type does not have are removed from `obj` and returned (`spec.foo`,
/// `rules[0].bar`), for `fieldValidation` to report.
fn typed_check(rt: &ResourceType, obj: &mut Value) -> ApiResult<Vec<String>> {
    use k8s_openapi::api;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    fn check<T: serde::de::DeserializeOwned + serde::Serialize>(
        v: &mut Value,
        prefix: &str,
    ) -> Result<Vec<String>, serde_json::Error> {
        let typed = serde_json::to_value(serde_json::from_value::<T>(v.clone())?)?;
        let mut unknown = Vec::new();
        drop_unknown(v, &typed, prefix, &mut unknown);
        Ok(unknown)
    }
    let res = match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "secrets") => check::<api::core::v1::Secret>(obj, ""),
        ("", "namespaces") => check::<api::core::v1::Namespace>(obj, ""),
        ("", "configmaps") => check::<api::core::v1::ConfigMap>(obj, ""),
        ("", "events") => check::<api::core::v1::Event>(obj, ""),
        ("", "serviceaccounts") => check::<api::core::v1::ServiceAccount>(obj, ""),
        ("events.k8s.io", "events") => check::<api::events::v1::Event>(obj, ""),
        ("coordination.k8s.io", "leases") => check::<api::coordination::v1::Lease>(obj, ""),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            check::<apiext::CustomResourceDefinition>(obj, "")
        }
        ("rbac.authorization.k8s.io", "roles") => check::<api::rbac::v1::Role>(obj, ""),
        ("rbac.authorization.k8s.io", "rolebindings") => check::<api::rbac::v1::RoleBinding>(obj, ""),
        ("rbac.authorization.k8s.io", "clusterroles") => check::<api::rbac::v1::ClusterRole>(obj, ""),
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            check::<api::rbac::v1::ClusterRoleBinding>(obj, "")
        }
        _ => check::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(
            &mut obj["metadata"],
            "metadata",
        ),
    };
    // Go decoding leaves missing fields at their zero value (validation reports them as
    // 422 later); only type mismatches are decoding errors.
    let res = match res {
        Err(e) if e.to_string().starts_with("missing field") => Ok(vec![]),
        other => other,
    };
    res.map_err(|e| {
        ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {e}",
            kind = rt.kind,
            v = rt.version
        ))
    })
}

/// Removes from `input` what its typed round trip (`typed`) lost, recording the paths.
fn drop_unknown(input: &mut Value, typed: &Value, prefix: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(m), Value::Object(t)) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match t.get(&k) {
                    Some(tv) => {
                        if let Some(child) = m.get_mut(&k) {
                            drop_unknown(child, tv, &path, out);
                        }
                    }
                    None if m[&k].is_null() => {}
                    None => {
                        m.remove(&k);
                        out.push(path);
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(t)) => {
            for (i, (item, titem)) in a.iter_mut().zip(t).enumerate() {
                drop_unknown(item, titem, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// resourceVersion and uid in a write body are preconditions on the stored object.
pub(super) fn check_preconditions(rt: &ResourceType, old: &Value, new: &Value) -> ApiResult<()> {
    let name = meta_str(old, "name").unwrap_or_default();
    if let Some(rv) = meta_str(new, "resourceVersion").filter(|r| !r.is_empty()) {
        if Some(rv) != meta_str(old, "resourceVersion") {
            return Err(ApiError::stale(&rt.group, &rt.plural, name));
        }
    }
    if let Some(uid) = meta_str(new, "uid").filter(|u| !u.is_empty()) {
        let current = meta_str(old, "uid").unwrap_or_default();
        if uid != current {
            return Err(ApiError::conflict(
                &rt.group,
                &rt.plural,
                name,
                &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {current}"),
            ));
        }
    }
    Ok(())
}

/// ownerReferences as apimachinery's ValidateOwnerReferences checks them.
fn validate_owner_references(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(refs) = obj["metadata"]["ownerReferences"].as_array() else {
        return;
    };
    let field = "metadata.ownerReferences";
    for r in refs {
        for (key, what) in [("apiVersion", "version"), ("kind", "kind"), ("name", "name"), ("uid", "uid")] {
            if r[key].as_str().is_none_or(str::is_empty) {
                causes.push(invalid_value(
                    &format!("{field}.{key}"),
                    &json!(""),
                    &format!("{what} must not be empty"),
                ));
            }
        }
    }
    let controllers = refs.iter().filter(|r| r["controller"] == json!(true)).count();
    if controllers > 1 {
        causes.push(invalid_value(
            field,
            &Value::Array(refs.clone()),
            "Only one reference can have Controller set to true",
        ));
    }
}

/// Label keys/values as apimachinery's ValidateLabels checks them.
fn validate_labels(obj: &Value, causes: &mut Vec<Cause>) {
    let Some(labels) = obj["metadata"]["labels"].as_object() else {
        return;
    };
    for (k, v) in labels {
        let (prefix, name) = match k.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        let name_ok = !name.is_empty()
            && name.len() <= 63
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        let prefix_ok = prefix.is_none_or(|p| name_problem(p, false).is_none());
        if !name_ok || !prefix_ok {
            causes.push(invalid_value(
                "metadata.labels",
                &json!(k),
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ));
        }
        let val = v.as_str().unwrap_or_default();
        let val_ok = val.is_empty()
            || (val.len() <= 63
                && val.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && val.starts_with(|c: char| c.is_ascii_alphanumeric())
                && val.ends_with(|c: char| c.is_ascii_alphanumeric()));
        if !val_ok {
            causes.push(invalid_value(
                "metadata.labels",
                v,
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ));
        }
    }
}

fn prepare_secret(old: Option<&Value>, obj: &mut Value, causes: &mut Vec<Cause>) -> ApiResult<()> {
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        let data = obj["data"].as_object().cloned().unwrap_or_default();
        let mut data: Map<String, Value> = data;
        for (k, v) in sd {
            let s = match v {
                Value::String(s) => s,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Secret in version \"v1\" cannot be handled as a Secret: stringData.{k}: expected string, got {other}"
                    )))
                }
            };
            data.insert(k, json!(engine.encode(s.as_bytes())));
        }
        obj["data"] = Value::Object(data);
    }
    if let Some(data) = obj["data"].as_object() {
        for (k, v) in data {
            let ok = v.as_str().is_some_and(|s| engine.decode(s).is_ok());
            if !ok {
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data in data.{k}"
                )));
            }
            let valid_key =
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid_key {
                causes.push(invalid_value(
                    &format!("data[{k}]"),
                    &json!(k),
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                ));
            }
        }
    }
    if obj["type"].is_null() {
        obj["type"] = json!(old.and_then(|o| o["type"].as_str()).unwrap_or("Opaque"));
    }
    if let Some(old) = old {
        if old["type"] != obj["type"] {
            causes.push(invalid_value("type", &obj["type"], "field is immutable"));
        }
        immutable_fields(old, obj, &["data"], causes);
    }
    if obj["data"].as_object().is_some_and(|d| d.is_empty()) {
        if let Some(m) = obj.as_object_mut() {
            m.remove("data");
        }
    }
    Ok(())
}

/// ValidateSecretUpdate / ValidateConfigMapUpdate: with `immutable: true` stored, the
/// flag stays and the data fields cannot change.
fn immutable_fields(old: &Value, obj: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    if old["immutable"] != json!(true) {
        return;
    }
    let detail = "field is immutable when `immutable` is set";
    if obj["immutable"] != json!(true) {
        causes.push(forbidden_field("immutable", detail));
    }
    for f in fields {
        let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(Map::is_empty);
        if old[*f] != obj[*f] && !(empty(&old[*f]) && empty(&obj[*f])) {
            causes.push(forbidden_field(f, detail));
        }
    }
}

fn config_key_problem(k: &str) -> Option<&'static str> {
    let ok = !k.is_empty()
        && k.len() <= 253
        && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        Some("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
    } else if k == "." || k == ".." {
        Some("must not be '.' or '..'")
    } else {
        None
    }
}

/// ValidateConfigMap: keys, a key in both `data` and `binaryData`, base64 `binaryData`,
/// and `immutable`.
fn prepare_config_map(old: Option<&Value>, obj: &mut Value, causes: &mut Vec<Cause>) -> ApiResult<()> {
    let engine = base64::engine::general_purpose::STANDARD;
    let data = obj["data"].as_object().cloned().unwrap_or_default();
    let binary = obj["binaryData"].as_object().cloned().unwrap_or_default();
    for (k, v) in &binary {
        if v.as_str().is_none_or(|s| engine.decode(s).is_err()) {
            return Err(ApiError::bad_request(format!(
                "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: illegal base64 data in binaryData.{k}"
            )));
        }
    }
    for (bag, this, other, other_name) in
        [("data", &data, &binary, "binaryData"), ("binaryData", &binary, &data, "data")]
    {
        for k in this.keys() {
            let field = format!("{bag}[{k}]");
            if let Some(problem) = config_key_problem(k) {
                causes.push(invalid_value(&field, &json!(k), problem));
            }
            if other.contains_key(k) {
                causes.push(invalid_value(
                    &field,
                    &json!(k),
                    &format!("duplicate of key present in {other_name}"),
                ));
            }
        }
    }
    if let Some(old) = old {
        immutable_fields(old, obj, &["data", "binaryData"], causes);
    }
    Ok(())
}

/// Formats in a CRD's schemas that the server does not recognize (apiextensions'
/// GetUnrecognizedFormats): per type, strings know the kube-openapi string formats,
/// integers int32/int64, numbers float/double, other types none.
fn unrecognized_formats(crd: &Value) -> Vec<String> {
    const STRING_FORMATS: &[&str] = &[
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "quantity",
        "k8sshortname",
        "k8slongname",
    ];
    fn walk(s: &Value, out: &mut Vec<String>) {
        let Some(m) = s.as_object() else { return };
        if let Some(f) = m.get("format").and_then(Value::as_str).filter(|f| !f.is_empty()) {
            let known = match m.get("type").and_then(Value::as_str).unwrap_or_default() {
                "" | "string" => STRING_FORMATS.contains(&f.replace('-', "").as_str()),
                "integer" => matches!(f, "int32" | "int64"),
                "number" => matches!(f, "float" | "double"),
                _ => false,
            };
            if !known {
                out.push(f.to_string());
            }
        }
        for key in ["properties", "patternProperties", "definitions", "dependencies"] {
            for child in m.get(key).and_then(Value::as_object).into_iter().flat_map(|o| o.values()) {
                walk(child, out);
            }
        }
        for key in ["items", "additionalProperties", "additionalItems", "not"] {
            match m.get(key) {
                Some(Value::Array(a)) => a.iter().for_each(|c| walk(c, out)),
                Some(child) => walk(child, out),
                None => {}
            }
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for child in m.get(key).and_then(Value::as_array).into_iter().flatten() {
                walk(child, out);
            }
        }
    }
    let mut out = Vec::new();
    for v in crd["spec"]["versions"].as_array().into_iter().flatten() {
        walk(&v["schema"]["openAPIV3Schema"], &mut out);
    }
    out
}

/// Minimal CRD validation plus the status the apiextensions controllers would set.
fn prepare_crd(obj: &mut Value, causes: &mut Vec<Cause>) {
    let spec = obj["spec"].clone();
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let kind = spec["names"]["kind"].as_str().unwrap_or_default();
    if group.is_empty() {
        causes.push(required_value("spec.group", ""));
    }
    if plural.is_empty() {
        causes.push(required_value("spec.names.plural", ""));
    }
    if kind.is_empty() {
        causes.push(required_value("spec.names.kind", ""));
    }
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(invalid_value(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes
            .push(required_value("spec.versions", "must have exactly one version marked as storage version"));
    }
    if !matches!(spec["scope"].as_str(), Some("Namespaced") | Some("Cluster")) {
        causes.push(invalid_value(
            "spec.scope",
            &spec["scope"],
            "supported values: \"Cluster\", \"Namespaced\"",
        ));
    }
    let mut storage = None;
    for (i, v) in versions.iter().enumerate() {
        if v["storage"].as_bool() == Some(true) {
            storage = v["name"].as_str().map(String::from);
        }
        let schema = &v["schema"]["openAPIV3Schema"];
        if schema.is_object() {
            if let Err(e) = crate::schema::CrdSchema::new(schema) {
                causes.push(invalid_value(
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    &json!(""),
                    &e.to_string(),
                ));
            }
        }
    }
    if !kind.is_empty() {
        if obj["spec"]["names"]["singular"].is_null() {
            obj["spec"]["names"]["singular"] = json!(kind.to_lowercase());
        }
        if obj["spec"]["names"]["listKind"].is_null() {
            obj["spec"]["names"]["listKind"] = json!(format!("{kind}List"));
        }
    }
    let now_names = obj["spec"]["names"].clone();
    let mut stored: Vec<Value> = obj["status"]["storedVersions"].as_array().cloned().unwrap_or_default();
    if let Some(s) = storage {
        if !stored.contains(&json!(s)) {
            stored.push(json!(s));
        }
    }
    obj["status"] = json!({
        "acceptedNames": now_names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": obj["metadata"]["creationTimestamp"].clone()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": obj["metadata"]["creationTimestamp"].clone()},
        ],
        "storedVersions": stored,
    });
}
