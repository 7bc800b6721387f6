//! HTTP front end: path parsing, authentication/authorization, fault injection,
//! content negotiation, and dispatch to the verbs.

use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::faults::{Faults, Stats, Verb};
use crate::patch::{self, PatchType};
use crate::rbac::{self, User};
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::verbs::{DeleteOpts, Deleted, FieldValidation, ListOpts, Propagation, State, WriteOpts};
use crate::watch::{self, WatchParams};
use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Shared {
    pub state: Arc<Mutex<State>>,
    pub faults: Faults,
    pub stats: Mutex<Stats>,
    /// Per resource (plural, plus "/status" for the status subresource).
    pub stats_by_resource: Mutex<HashMap<String, Stats>>,
    pub rbac: bool,
    pub admin_token: String,
    /// bearer token -> service account user
    pub tokens: Mutex<HashMap<String, User>>,
    pub addr: String,
}

const MAX_BODY: usize = 16 * 1024 * 1024;

fn json_response(code: u16, body: &Value) -> Response {
    let mut resp =
        (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body.to_string())
            .into_response();
    resp.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/json"));
    resp
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// A parsed resource URL.
#[derive(Debug)]
struct Target {
    rt: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn lock(state: &Mutex<State>) -> ApiResult<std::sync::MutexGuard<'_, State>> {
    state.lock().map_err(|_| ApiError::internal("state lock poisoned"))
}

fn parse_target(state: &State, segs: &[&str]) -> ApiResult<Target> {
    let (group, version, rest) = match segs {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let reg = &state.registry;
    let find = |plural: &str| reg.find(group, version, plural).cloned();
    let (namespace, rest): (Option<String>, &[&str]) = match rest {
        ["namespaces", ns, plural, more @ ..] if *plural != "status" && *plural != "finalize" => {
            match find(plural) {
                Some(rt) if rt.namespaced => {
                    let mut r = vec![*plural];
                    r.extend_from_slice(more);
                    return finish_target(rt, Some(ns.to_string()), &r[1..]);
                }
                _ => return Err(ApiError::path_not_found()),
            }
        }
        other => (None, other),
    };
    match rest {
        [plural, more @ ..] => {
            let rt = find(plural).ok_or_else(ApiError::path_not_found)?;
            if rt.namespaced && !more.is_empty() {
                // Named namespaced objects need a namespace in the path.
                return Err(ApiError::path_not_found());
            }
            finish_target(rt, namespace, more)
        }
        [] => Err(ApiError::path_not_found()),
    }
}

fn finish_target(rt: ResourceType, namespace: Option<String>, more: &[&str]) -> ApiResult<Target> {
    let (name, subresource) = match more {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => {
            let core = |plural: &str| rt.plural == plural && rt.group.is_empty();
            let ok = (*sub == "status" && rt.status_subresource)
                || (*sub == "finalize" && core("namespaces"))
                || (*sub == "token" && core("serviceaccounts"));
            if !ok {
                return Err(ApiError::path_not_found());
            }
            (Some(name.to_string()), Some(sub.to_string()))
        }
        _ => return Err(ApiError::path_not_found()),
    };
    Ok(Target { rt, namespace, name, subresource })
}

fn truthy(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true") | Some("1"))
}

fn list_opts(q: &HashMap<String, String>, storage: &str) -> ApiResult<ListOpts> {
    let labels = LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = match q.get("fieldSelector").filter(|s| !s.is_empty()) {
        Some(s) => Some(FieldSelector::parse(s, storage).map_err(ApiError::bad_request)?),
        None => None,
    };
    let limit = match q.get("limit").filter(|s| !s.is_empty()) {
        Some(l) => {
            Some(l.parse::<i64>().map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?.max(0)
                as usize)
        }
        None => None,
    };
    Ok(ListOpts {
        labels,
        fields,
        limit,
        continue_token: q.get("continue").filter(|s| !s.is_empty()).cloned(),
        resource_version: q.get("resourceVersion").cloned(),
        resource_version_match: q.get("resourceVersionMatch").cloned(),
    })
}

/// The field manager of a write without `fieldManager`: the User-Agent up to its first `/`,
/// unprintable characters dropped, at most 128 bytes (the apiserver's `prefixFromUserAgent`).
/// No User-Agent (kube-rs sends none) gives the empty manager, as on a real server.
fn default_manager(headers: &HeaderMap) -> String {
    const FIELD_MANAGER_MAX_LENGTH: usize = 128;
    let ua = headers.get("user-agent").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let prefix = ua.as_deref().unwrap_or_default().split('/').next().unwrap_or_default();
    let mut manager = String::new();
    // Go's unicode.IsPrint: no control characters, no spacing but the ASCII space.
    for c in prefix.chars().filter(|c| !c.is_control() && (*c == ' ' || !c.is_whitespace())) {
        if manager.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        manager.push(c);
    }
    manager
}

fn success_status(rt: &ResourceType, obj: &Value) -> Value {
    let mut details = json!({
        "name": obj["metadata"]["name"],
        "kind": rt.plural,
        "uid": obj["metadata"]["uid"],
    });
    if !rt.group.is_empty() {
        details["group"] = json!(rt.group);
    }
    json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":details})
}

/// Who is asking: `None` is the admin (the admin token, or no credentials at all, since
/// client-go never sends credentials to a plain-http server). The admin may impersonate
/// (`kubectl --as=NAME --as-group=G`). Minted tokens (service_account_client, TokenRequest)
/// are their ServiceAccount; with RBAC on, any other token is 401, with RBAC off it is the admin.
fn authenticate(shared: &Shared, headers: &HeaderMap) -> ApiResult<Option<User>> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    if token.is_empty() || token == shared.admin_token {
        let Some(name) = headers.get("impersonate-user").and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        let user = match name.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')) {
            Some((ns, sa)) => User::service_account(ns, sa),
            None => User {
                name: name.to_string(),
                groups: headers
                    .get_all("impersonate-group")
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(String::from))
                    .chain(std::iter::once("system:authenticated".to_string()))
                    .collect(),
                service_account: (String::new(), String::new()),
            },
        };
        return Ok(Some(user));
    }
    match shared.tokens.lock().ok().and_then(|t| t.get(&token).cloned()) {
        Some(u) => Ok(Some(u)),
        None if shared.rbac => Err(ApiError::new(401, "Unauthorized", "Unauthorized")),
        None => Ok(None),
    }
}

pub async fn handle(shared: Arc<Shared>, req: Request) -> Response {
    match handle_inner(shared, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn handle_inner(shared: Arc<Shared>, req: Request) -> ApiResult<Response> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let query: HashMap<String, String> =
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))?;

    let user = authenticate(&shared, &parts.headers)?;

    // Non-resource endpoints.
    if parts.method == Method::GET {
        let st = lock(&shared.state)?;
        let doc = match segs.as_slice() {
            [] => Some(discovery::root_paths(&st.registry)),
            ["version"] => Some(discovery::version()),
            ["api"] => Some(discovery::api_versions(&shared.addr)),
            ["api", "v1"] => discovery::resource_list(&st.registry, "", "v1"),
            ["apis"] => Some(discovery::group_list(&st.registry)),
            ["apis", g] => Some(discovery::group(&st.registry, g).ok_or_else(ApiError::path_not_found)?),
            ["apis", g, v] => {
                Some(discovery::resource_list(&st.registry, g, v).ok_or_else(ApiError::path_not_found)?)
            }
            ["healthz"] | ["livez"] | ["readyz"] => {
                return Ok((StatusCode::OK, "ok").into_response());
            }
            ["openapi", "v3"] => Some(discovery::openapi_v3_root(&st.registry)),
            ["openapi", "v3", "api", v] => {
                Some(discovery::openapi_v3_gv(&st.registry, "", v).ok_or_else(ApiError::path_not_found)?)
            }
            ["openapi", "v3", "apis", g, v] => {
                Some(discovery::openapi_v3_gv(&st.registry, g, v).ok_or_else(ApiError::path_not_found)?)
            }
            ["openapi", "v2"] => {
                // client-go asks for protobuf (gnostic's openapi.v2.Document); JSON otherwise.
                let accept = parts.headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()).unwrap_or("");
                if accept.contains("protobuf") {
                    let body = crate::openapi::v2_protobuf(&st.registry);
                    let mut response = (StatusCode::OK, body).into_response();
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(
                            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
                        ),
                    );
                    return Ok(response);
                }
                Some(crate::openapi::v2_document(&st.registry))
            }
            ["openapi", ..] | ["swagger.json"] => return Err(ApiError::path_not_found()),
            _ => None,
        };
        if let Some(doc) = doc {
            return Ok(json_response(200, &doc));
        }
    }

    let target = {
        let st = lock(&shared.state)?;
        parse_target(&st, &segs)?
    };
    let rt = target.rt.clone();
    let verb = match (&parts.method, &target.name) {
        (&Method::GET, _) if truthy(query.get("watch")) && target.subresource.is_none() => Verb::Watch,
        (&Method::GET, None) => Verb::List,
        (&Method::GET, Some(_)) => Verb::Get,
        (&Method::POST, None) => Verb::Create,
        (&Method::POST, Some(_)) if target.subresource.as_deref() == Some("token") => Verb::Create,
        (&Method::PUT, Some(_)) => Verb::Update,
        (&Method::PATCH, Some(_)) => Verb::Patch,
        (&Method::DELETE, Some(_)) => Verb::Delete,
        (&Method::DELETE, None) => Verb::DeleteCollection,
        _ => return Err(ApiError::method_not_allowed()),
    };
    if let Ok(mut s) = shared.stats.lock() {
        s.record(verb);
    }
    if let Ok(mut by) = shared.stats_by_resource.lock() {
        let key = match &target.subresource {
            Some(sub) => format!("{}/{sub}", rt.plural),
            None => rt.plural.clone(),
        };
        by.entry(key).or_default().record(verb);
    }
    if rt.create_only && verb != Verb::Create {
        return Err(ApiError::method_not_allowed());
    }
    if let Some(u) = user.as_ref().filter(|_| shared.rbac) {
        let st = lock(&shared.state)?;
        rbac::authorize(
            &st,
            u,
            verb,
            &rt,
            target.namespace.as_deref(),
            target.name.as_deref(),
            target.subresource.as_deref(),
        )?;
    }
    let (delay, fault) = shared.faults.check(verb, &rt.plural, target.subresource.as_deref());
    if delay > Duration::ZERO {
        tokio::time::sleep(delay).await;
    }
    if let Some(e) = fault {
        return Err(e);
    }

    let ns = target.namespace.as_deref();
    if rt.namespaced && ns.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(ApiError::path_not_found());
    }
    let headers = &parts.headers;
    let body = axum::body::to_bytes(Body::new(body), MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
    let content_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
    if content_type.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
        )));
    }
    // Typed client-go writers (`kubectl create secret|configmap|namespace|…`) send
    // protobuf; it is decoded into the same JSON as every other body. Responses stay
    // JSON, which those clients accept too.
    let protobuf_body: Option<Value> = if crate::proto::is_protobuf(&content_type) && !body.is_empty() {
        let expected = match verb {
            Verb::Delete | Verb::DeleteCollection => {
                ("meta.k8s.io/v1".to_string(), "DeleteOptions".to_string())
            }
            _ if target.subresource.as_deref() == Some("token") => {
                ("authentication.k8s.io/v1".to_string(), "TokenRequest".to_string())
            }
            _ => (rt.api_version(), rt.kind.clone()),
        };
        Some(crate::proto::decode(&body, (&expected.0, &expected.1))?)
    } else {
        None
    };
    let decode_body = |yaml: bool| -> ApiResult<Value> {
        match &protobuf_body {
            Some(v) => Ok(v.clone()),
            None => patch::parse_body(&body, yaml),
        }
    };
    let yaml_body = content_type.contains("yaml");
    let wopts = WriteOpts {
        field_manager: query.get("fieldManager").cloned().unwrap_or_else(|| default_manager(headers)),
        dry_run: dry_run(verb, query.get("dryRun").map(String::as_str))?,
        force: truthy(query.get("force")),
        subresource: target.subresource.clone(),
        field_validation: field_validation(verb, query.get("fieldValidation").map(String::as_str))?,
    };
    // `as=PartialObjectMetadata[List]` (kube-rs metadata APIs and metadata_watcher).
    let as_metadata = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').next().unwrap_or_default().contains("as=PartialObjectMetadata"));
    let respond = |code: u16, v: &Value| -> Response {
        if as_metadata && v["kind"] != "Status" {
            json_response(code, &partial_metadata(v))
        } else {
            json_response(code, v)
        }
    };
    let as_table = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.split(',').next().unwrap_or_default().contains("as=Table"));

    if rt.create_only {
        let st = lock(&shared.state)?;
        let out = crate::access::review(&st, shared.rbac, user.as_ref(), &rt, ns, decode_body(yaml_body)?)?;
        return Ok(json_response(201, &out));
    }
    if target.subresource.as_deref() == Some("token") {
        let st = lock(&shared.state)?;
        let name = target.name.as_deref().unwrap_or_default();
        let (out, token, sa) =
            crate::access::token_request(&st, ns.unwrap_or_default(), name, decode_body(yaml_body)?)?;
        if !wopts.dry_run {
            if let Ok(mut t) = shared.tokens.lock() {
                t.insert(token, sa);
            }
        }
        return Ok(json_response(201, &out));
    }

    match verb {
        Verb::Watch => {
            let mut lo = list_opts(&query, &rt.storage)?;
            if let Some(name) = &target.name {
                // Watching a named object is a watch with a metadata.name field selector.
                let sel = format!("metadata.name={name}");
                let fs = match query.get("fieldSelector").filter(|f| !f.is_empty()) {
                    Some(f) => format!("{f},{sel}"),
                    None => sel,
                };
                lo.fields = Some(FieldSelector::parse(&fs, &rt.storage).map_err(ApiError::bad_request)?);
            }
            let p = WatchParams {
                namespace: target.namespace.clone(),
                resource_version: query.get("resourceVersion").cloned(),
                bookmarks: truthy(query.get("allowWatchBookmarks")),
                send_initial_events: truthy(query.get("sendInitialEvents")),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(Duration::from_secs),
                labels: lo.labels,
                fields: lo.fields,
                metadata_only: as_metadata,
                table: if as_table {
                    let now = lock(&shared.state)?.now.clone();
                    let include = query.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into());
                    Some((now, include))
                } else {
                    None
                },
            };
            watch::start(shared.state.clone(), rt, p)
        }
        Verb::Get => {
            let st = lock(&shared.state)?;
            let obj = st.get(&rt, ns, target.name.as_deref().unwrap_or_default())?;
            if as_table {
                let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                let include = query.get("includeObject").map(String::as_str).unwrap_or("Metadata");
                return Ok(json_response(200, &crate::table::render(&rt, &[obj], meta, (st.now)(), include)));
            }
            Ok(respond(200, &obj))
        }
        Verb::List => {
            let st = lock(&shared.state)?;
            let list = st.list(&rt, ns, &list_opts(&query, &rt.storage)?)?;
            if as_table {
                let items = list["items"].as_array().cloned().unwrap_or_default();
                let include = query.get("includeObject").map(String::as_str).unwrap_or("Metadata");
                return Ok(json_response(
                    200,
                    &crate::table::render(&rt, &items, list["metadata"].clone(), (st.now)(), include),
                ));
            }
            Ok(respond(200, &list))
        }
        Verb::Create => {
            let obj = decode_body(yaml_body)?;
            let mut st = lock(&shared.state)?;
            st.warnings.borrow_mut().clear();
            let created = st.create(&rt, ns, obj, &wopts)?;
            Ok(with_warnings(respond(201, &created), &st))
        }
        Verb::Update => {
            let obj = decode_body(yaml_body)?;
            let mut st = lock(&shared.state)?;
            st.warnings.borrow_mut().clear();
            let name = target.name.as_deref().unwrap_or_default();
            let updated = st.update(&rt, ns, name, obj, &wopts)?;
            Ok(with_warnings(respond(200, &updated), &st))
        }
        Verb::Patch => {
            let ptype = PatchType::from_content_type(&content_type)?;
            if ptype == PatchType::Apply && query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            let mut st = lock(&shared.state)?;
            let name = target.name.as_deref().unwrap_or_default();
            st.warnings.borrow_mut().clear();
            let (patched, created) = st.patch(&rt, ns, name, ptype, &body, &wopts)?;
            Ok(with_warnings(respond(if created { 201 } else { 200 }, &patched), &st))
        }
        Verb::Delete | Verb::DeleteCollection => {
            let dopts = delete_opts(&query, protobuf_body.clone(), &body)?;
            let mut st = lock(&shared.state)?;
            if verb == Verb::DeleteCollection {
                let lo = list_opts(&query, &rt.storage)?;
                return Ok(json_response(200, &st.delete_collection(&rt, ns, &lo, &dopts)?));
            }
            let name = target.name.as_deref().unwrap_or_default();
            match st.delete(&rt, ns, name, &dopts)? {
                Deleted::Gone(last) => Ok(json_response(200, &success_status(&rt, &last))),
                // Real servers answer 202 only when orphanDependents=false was asked for.
                Deleted::Pending(obj) if dopts.orphan_dependents == Some(false) => Ok(respond(202, &obj)),
                Deleted::Pending(obj) => Ok(respond(200, &obj)),
            }
        }
    }
}

/// Adds the write's warnings as `Warning: 299 - "…"` headers (kubectl prints them as
/// `Warning: …`; client-go hands them to its warning handler).
fn with_warnings(mut resp: Response, st: &State) -> Response {
    for w in st.warnings.borrow_mut().drain(..) {
        let quoted = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

fn options_kind(verb: Verb) -> &'static str {
    match verb {
        Verb::Create => "CreateOptions",
        Verb::Update => "UpdateOptions",
        Verb::Patch => "PatchOptions",
        _ => "DeleteOptions",
    }
}

/// `dryRun`: only `All` is a value (422 otherwise, as the real options validation says).
fn dry_run(verb: Verb, value: Option<&str>) -> ApiResult<bool> {
    match value {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            "meta.k8s.io",
            options_kind(verb),
            "",
            vec![crate::error::Cause {
                reason: "FieldValueNotSupported",
                field: "dryRun".into(),
                message: format!(
                    "dryRun: Unsupported value: []string{{\"{other}\"}}: supported values: \"All\""
                ),
            }],
        )),
    }
}

/// `fieldValidation`: unset means `Warn`, as on the real server.
fn field_validation(verb: Verb, value: Option<&str>) -> ApiResult<FieldValidation> {
    match value {
        None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
        Some("Ignore") => Ok(FieldValidation::Ignore),
        Some("Strict") => Ok(FieldValidation::Strict),
        Some(other) if matches!(verb, Verb::Create | Verb::Update | Verb::Patch) => Err(ApiError::invalid(
            "meta.k8s.io",
            options_kind(verb),
            "",
            vec![crate::error::Cause {
                reason: "FieldValueNotSupported",
                field: "fieldValidation".into(),
                message: format!(
                    "fieldValidation: Unsupported value: \"{other}\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                ),
            }],
        )),
        Some(_) => Ok(FieldValidation::Warn),
    }
}

/// meta.k8s.io/v1 PartialObjectMetadata(List) view of an object or list.
pub fn partial_metadata(v: &Value) -> Value {
    if let Some(items) = v.get("items").and_then(Value::as_array) {
        return json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": v["metadata"].clone(),
            "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
        });
    }
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": v["metadata"].clone(),
    })
}

fn delete_opts(q: &HashMap<String, String>, decoded: Option<Value>, body: &[u8]) -> ApiResult<DeleteOpts> {
    let b: Value = if let Some(v) = decoded {
        v
    } else if body.iter().all(|c| c.is_ascii_whitespace()) {
        json!({})
    } else {
        patch::parse_body(body, false)?
    };
    let policy =
        b["propagationPolicy"].as_str().map(String::from).or_else(|| q.get("propagationPolicy").cloned());
    let orphan_flag =
        b["orphanDependents"].as_bool().or_else(|| q.get("orphanDependents").map(|v| v == "true"));
    let propagation = match (policy.as_deref(), orphan_flag) {
        (Some("Orphan"), _) | (None, Some(true)) => Some(Propagation::Orphan),
        (Some("Foreground"), _) => Some(Propagation::Foreground),
        (Some("Background"), _) | (None, Some(false)) => Some(Propagation::Background),
        (None, None) => None,
        (Some(other), _) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )))
        }
    };
    let mut dry_run = dry_run(Verb::Delete, q.get("dryRun").map(String::as_str))?;
    for v in b["dryRun"].as_array().into_iter().flatten() {
        dry_run |= self::dry_run(Verb::Delete, Some(v.as_str().unwrap_or("?")))?;
    }
    Ok(DeleteOpts {
        propagation,
        precondition_uid: b["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv: b["preconditions"]["resourceVersion"].as_str().map(String::from),
        dry_run,
        orphan_dependents: orphan_flag,
    })
}
