//! Conformance tests: the real kube-rs client against the emulator, each pinning one
//! behaviour of the real API server.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{DynamicObject, GroupVersionKind, Status};
use kube::discovery::ApiResource;
use kube_emulator::{KubeEmulator, Verb};
use serde_json::json;
use std::collections::BTreeMap;

fn secret(name: &str) -> Secret {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"token": "xoxb-1"}
    }))
    .unwrap()
}

fn api_err(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Sends a raw request (any method, content type and body) through the kube-rs client.
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    ct: &str,
    body: &str,
) -> Result<serde_json::Value, kube::Error> {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(body.as_bytes().to_vec())
        .unwrap();
    client.request::<serde_json::Value>(req).await
}

/// Creates a namespaced CRD `widgets.example.com` (v1) with a status subresource.
async fn widget_crd(client: &kube::Client) -> Api<DynamicObject> {
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    let crd = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {
                                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                                "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
                                "name": {"type": "string", "pattern": "^[a-z]+$"},
                                "port": {"x-kubernetes-int-or-string": true},
                                "note": {"type": "string", "nullable": true},
                                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": {"type": "string"},
                                "observedGeneration": {"type": "integer"},
                                "conditions": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["type"],
                                    "items": {"type": "object", "required": ["type"], "properties": {
                                        "type": {"type": "string"}, "status": {"type": "string"}}}
                                }
                            }
                        }
                    }
                }}
            }]
        }
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn widget(name: &str, spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

fn rv(o: &impl kube::Resource) -> u64 {
    o.meta().resource_version.as_deref().unwrap().parse().unwrap()
}

#[tokio::test]
async fn create_existing_name_returns_409_already_exists() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    let err = api_err(secrets.create(&PostParams::default(), &secret("s")).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(err.message, "secrets \"s\" already exists");
}

#[tokio::test]
async fn secret_string_data_is_merged_into_data() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut s = secret("s");
    s.data = Some(BTreeMap::from([("other".to_string(), k8s_openapi::ByteString(b"x".to_vec()))]));
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.string_data.is_none());
    let data = created.data.unwrap();
    assert_eq!(data["token"].0, b"xoxb-1");
    assert_eq!(data["other"].0, b"x");
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
}

#[tokio::test]
async fn invalid_name_returns_422_and_missing_namespace_404() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let err = api_err(secrets.create(&PostParams::default(), &secret("Bad_Name")).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    let missing: Api<Secret> = Api::namespaced(emu.client(), "nope");
    let err = api_err(missing.create(&PostParams::default(), &secret("s")).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "namespaces \"nope\" not found");
}

#[tokio::test]
async fn generate_name_appends_random_suffix() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut s = secret("");
    s.metadata.name = None;
    s.metadata.generate_name = Some("tok-".into());
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("tok-") && name.len() == 9, "{name}");
}

#[tokio::test]
async fn stale_resource_version_put_returns_409_conflict() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let v1 = secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    let mut a = v1.clone();
    a.metadata.labels = Some(BTreeMap::from([("a".into(), "1".into())]));
    secrets.replace("s", &PostParams::default(), &a).await.unwrap();
    let mut b = v1.clone();
    b.metadata.labels = Some(BTreeMap::from([("b".into(), "1".into())]));
    let err = api_err(secrets.replace("s", &PostParams::default(), &b).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    // Without a resourceVersion the update is unconditional, as in the real server.
    b.metadata.resource_version = None;
    secrets.replace("s", &PostParams::default(), &b).await.unwrap();
}

#[tokio::test]
async fn noop_update_does_not_bump_resource_version() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let created = secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    let same = secrets.replace("s", &PostParams::default(), &created).await.unwrap();
    assert_eq!(rv(&same), rv(&created));
    let patched =
        secrets.patch("s", &PatchParams::default(), &Patch::Merge(json!({"type": "Opaque"}))).await.unwrap();
    assert_eq!(rv(&patched), rv(&created));
    let changed = secrets
        .patch("s", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert!(rv(&changed) > rv(&created));
}

#[tokio::test]
async fn resource_version_is_global_and_monotonic() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let a = secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    let ns: Api<Namespace> = Api::all(emu.client());
    let n = ns
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata":{"name":"x"}})).unwrap())
        .await
        .unwrap();
    let b = secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
    assert!(rv(&a) < rv(&n) && rv(&n) < rv(&b));
    let list = secrets.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.metadata.resource_version.unwrap().parse::<u64>().unwrap(), rv(&b));
}

#[tokio::test]
async fn merge_json_and_strategic_patches_apply() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    let pp = PatchParams::default();
    secrets.patch("s", &pp, &Patch::Strategic(json!({"metadata": {"labels": {"a": "1"}}}))).await.unwrap();
    let p: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"}])).unwrap();
    let s = secrets.patch("s", &pp, &Patch::<()>::Json(p)).await.unwrap();
    let labels = s.metadata.labels.unwrap();
    assert_eq!(labels["a"], "1");
    assert_eq!(labels["b"], "2");
}

#[tokio::test]
async fn label_selector_filters_list_and_watch() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    for (name, app) in [("a", "x"), ("b", "y"), ("c", "x")] {
        let mut s = secret(name);
        s.metadata.labels = Some(BTreeMap::from([("app".into(), app.into())]));
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<Secret>| -> Vec<String> {
        l.items.into_iter().map(|s| s.metadata.name.unwrap()).collect()
    };
    let lp = |sel: &str| ListParams::default().labels(sel);
    assert_eq!(names(secrets.list(&lp("app=x")).await.unwrap()), ["a", "c"]);
    assert_eq!(names(secrets.list(&lp("app!=x")).await.unwrap()), ["b"]);
    assert_eq!(names(secrets.list(&lp("app in (y,z)")).await.unwrap()), ["b"]);
    assert_eq!(names(secrets.list(&lp("app notin (y)")).await.unwrap()), ["a", "c"]);
    assert_eq!(names(secrets.list(&lp("!app")).await.unwrap()).len(), 0);
    let fl = ListParams::default().fields("metadata.name=b");
    assert_eq!(names(secrets.list(&fl).await.unwrap()), ["b"]);
    let err = api_err(secrets.list(&lp("app in (")).await.unwrap_err());
    assert_eq!(err.code, 400);

    // A watch with a selector sees an object leave the selection as DELETED.
    let list = secrets.list(&lp("app=x")).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = secrets.watch(&WatchParams::default().labels("app=x"), &rv).await.unwrap().boxed();
    secrets
        .patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"labels":{"app":"y"}}})))
        .await
        .unwrap();
    secrets
        .patch("b", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"labels":{"app":"x"}}})))
        .await
        .unwrap();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(s) => assert_eq!(s.metadata.name.as_deref(), Some("a")),
        other => panic!("unexpected {other:?}"),
    }
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("b")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn list_paginates_with_limit_and_continue() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    for i in 0..5 {
        secrets.create(&PostParams::default(), &secret(&format!("s{i}"))).await.unwrap();
    }
    let first = secrets.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    let token = first.metadata.continue_.clone().unwrap();
    // Objects created after the first page do not show up in later pages (consistent snapshot).
    secrets.create(&PostParams::default(), &secret("s9")).await.unwrap();
    let second = secrets.list(&ListParams::default().limit(10).continue_token(&token)).await.unwrap();
    let names: Vec<_> = second.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["s2", "s3", "s4"]);
    assert!(second.metadata.continue_.is_none());
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version);
}

#[tokio::test]
async fn watch_resumes_from_resource_version() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let a = secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
    secrets.delete("a", &DeleteParams::default()).await.unwrap();
    let mut stream = secrets.watch(&WatchParams::default(), &rv(&a).to_string()).await.unwrap().boxed();
    let mut seen = Vec::new();
    for _ in 0..2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(s) => seen.push(format!("ADDED {}", s.metadata.name.unwrap())),
            WatchEvent::Deleted(s) => seen.push(format!("DELETED {}", s.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED b", "DELETED a"]);
}

#[tokio::test]
async fn watch_without_resource_version_starts_with_synthetic_added() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    let mut stream = secrets.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("a")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn watch_from_compacted_resource_version_gets_410_gone() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let a = secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
    emu.faults().compact();
    let mut stream = secrets.watch(&WatchParams::default(), &rv(&a).to_string()).await.unwrap().boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("unexpected {other:?}"),
    }
    // An exact list at a compacted RV is 410 too.
    let lp = ListParams::default().at(&rv(&a).to_string()).matching(kube::api::VersionMatch::Exact);
    let err = api_err(secrets.list(&lp).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn exact_list_returns_historical_state() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let a = secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
    secrets.delete("a", &DeleteParams::default()).await.unwrap();
    let lp = ListParams::default().at(&rv(&a).to_string()).matching(kube::api::VersionMatch::Exact);
    let list = secrets.list(&lp).await.unwrap();
    let names: Vec<_> = list.items.iter().map(|s| s.metadata.name.clone().unwrap()).collect();
    assert_eq!(names, ["a"]);
}

#[tokio::test(start_paused = true)]
async fn watch_sends_bookmarks_when_allowed() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let created = secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    let mut stream = secrets
        .watch(&WatchParams { bookmarks: true, ..WatchParams::default() }, &rv(&created).to_string())
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => {
            assert_eq!(b.metadata.resource_version, rv(&created).to_string())
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn watch_ends_after_timeout_seconds() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut stream = secrets.watch(&WatchParams::default().timeout(5), "0").await.unwrap().boxed();
    assert!(stream.try_next().await.unwrap().is_none());
}

#[tokio::test]
async fn finalizer_delays_deletion_until_removed() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut s = secret("s");
    s.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let res = secrets.delete("s", &DeleteParams::default()).await.unwrap();
    let pending = res.left().expect("object still present");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(0));
    // New finalizers cannot be added while deleting.
    let err = api_err(
        secrets
            .patch(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata":{"finalizers":["example.com/keep","x/y"]}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    secrets
        .patch("s", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"finalizers":null}})))
        .await
        .unwrap();
    let err = api_err(secrets.get("s").await.unwrap_err());
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn owner_deletion_garbage_collects_dependents() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let widgets = widget_crd(&client).await;
    let owner = widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let mut s = secret("dep");
    s.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "name": "w",
        "uid": owner.metadata.uid.clone().unwrap(), "controller": true
    }))
    .unwrap()]);
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let mut orphan = secret("orphan");
    orphan.metadata.owner_references = s.metadata.owner_references.clone();
    secrets.create(&PostParams::default(), &orphan).await.unwrap();

    let w2 = widgets.create(&PostParams::default(), &widget("w2", json!({"size": 1}))).await.unwrap();
    let kept = secrets.patch("orphan", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"ownerReferences":[
        {"apiVersion":"example.com/v1","kind":"Widget","name":"w","uid":owner.metadata.uid.clone().unwrap()},
        {"apiVersion":"example.com/v1","kind":"Widget","name":"w2","uid":w2.metadata.uid.clone().unwrap()}
    ]}}))).await.unwrap();
    assert_eq!(kept.metadata.owner_references.unwrap().len(), 2);

    widgets.delete("w", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(secrets.get("dep").await.unwrap_err()).code, 404);
    // A dependent with another live owner only loses the dangling reference.
    let still = secrets.get("orphan").await.unwrap();
    assert_eq!(still.metadata.owner_references.unwrap().len(), 1);
}

#[tokio::test]
async fn namespace_deletion_removes_contents() {
    let emu = KubeEmulator::start().await.unwrap();
    let ns: Api<Namespace> = Api::all(emu.client());
    ns.create(&PostParams::default(), &serde_json::from_value(json!({"metadata":{"name":"team"}})).unwrap())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(emu.client(), "team");
    let mut held = secret("held");
    held.metadata.finalizers = Some(vec!["x/y".into()]);
    secrets.create(&PostParams::default(), &held).await.unwrap();
    secrets.create(&PostParams::default(), &secret("plain")).await.unwrap();
    ns.delete("team", &DeleteParams::default()).await.unwrap();
    let terminating = ns.get("team").await.unwrap();
    assert_eq!(terminating.status.unwrap().phase.as_deref(), Some("Terminating"));
    assert_eq!(api_err(secrets.get("plain").await.unwrap_err()).code, 404);
    let err = api_err(secrets.create(&PostParams::default(), &secret("new")).await.unwrap_err());
    assert_eq!(err.code, 403);
    secrets
        .patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"finalizers":null}})))
        .await
        .unwrap();
    assert_eq!(api_err(ns.get("team").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn status_subresource_ignores_spec_changes() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    let out = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 5}, "status": {"phase": "Ready"}, "metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(out.data["spec"]["size"], 1);
    assert_eq!(out.data["status"]["phase"], "Ready");
    assert!(out.metadata.labels.is_none());
}

#[tokio::test]
async fn main_resource_write_ignores_status() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    let mut w = widget("w", json!({"size": 1}));
    w.data["status"] = json!({"phase": "Created"});
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert!(created.data.get("status").is_none());
    let out = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"phase": "X"}})),
        )
        .await
        .unwrap();
    assert_eq!(out.data["spec"]["size"], 2);
    assert!(out.data.get("status").is_none());
}

#[tokio::test]
async fn generation_bumps_only_on_spec_change() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    let created = widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let pp = PatchParams::default();
    let labelled =
        widgets.patch("w", &pp, &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(labelled.metadata.generation, Some(1));
    let status =
        widgets.patch_status("w", &pp, &Patch::Merge(json!({"status": {"phase": "Ready"}}))).await.unwrap();
    assert_eq!(status.metadata.generation, Some(1));
    let spec = widgets.patch("w", &pp, &Patch::Merge(json!({"spec": {"size": 3}}))).await.unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
}

#[tokio::test]
async fn crd_schema_rejects_invalid_object_with_422_and_field_path() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    let pp = PostParams::default();
    let cases = [
        (json!({"size": "big"}), "spec.size"),
        (json!({}), "spec.size"),
        (json!({"size": 11}), "spec.size"),
        (json!({"size": 1, "color": "green"}), "spec.color"),
        (json!({"size": 1, "name": "ABC"}), "spec.name"),
        (json!({"size": 1, "port": true}), "spec.port"),
    ];
    for (spec, field) in cases {
        let err = api_err(widgets.create(&pp, &widget("w", spec.clone())).await.unwrap_err());
        assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"), "{spec}");
        assert!(err.message.contains(field), "{spec}: {}", err.message);
        assert!(err.message.starts_with("Widget.example.com \"w\" is invalid: "), "{}", err.message);
    }
    // int-or-string and nullable accept their forms.
    widgets.create(&pp, &widget("ok1", json!({"size": 1, "port": 80, "note": null}))).await.unwrap();
    widgets.create(&pp, &widget("ok2", json!({"size": 1, "port": "http"}))).await.unwrap();
}

#[tokio::test]
async fn crd_schema_applies_defaults() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    let created = widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    assert_eq!(created.data["spec"]["color"], "red");
    // An explicit value is kept.
    let blue = widgets
        .create(&PostParams::default(), &widget("b", json!({"size": 1, "color": "blue"})))
        .await
        .unwrap();
    assert_eq!(blue.data["spec"]["color"], "blue");
}

#[tokio::test]
async fn crd_schema_prunes_unknown_fields_but_keeps_preserved_ones() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    let created = widgets
        .create(
            &PostParams::default(),
            &widget("w", json!({"size": 1, "bogus": 1, "extra": {"anything": {"goes": true}}})),
        )
        .await
        .unwrap();
    assert!(created.data["spec"].get("bogus").is_none());
    assert_eq!(created.data["spec"]["extra"]["anything"]["goes"], true);
}

#[tokio::test]
async fn crd_deletion_stops_serving_and_removes_instances() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let widgets = widget_crd(&client).await;
    widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    let crd = crds.get("widgets.example.com").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    let err = api_err(widgets.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.code, 404);
    assert_eq!(api_err(crds.get("widgets.example.com").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn server_side_apply_conflicts_without_force() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    let apply = |m: &str| PatchParams::apply(m);
    let body = |size: i64| json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":size,"color":"blue"}});
    let created = widgets.patch("w", &apply("alice"), &Patch::Apply(body(1))).await.unwrap();
    assert_eq!(created.data["spec"]["size"], 1);
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    let err = api_err(widgets.patch("w", &apply("bob"), &Patch::Apply(body(2))).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("conflict with \"alice\""), "{}", err.message);
    assert!(err.message.contains(".spec.size"), "{}", err.message);

    let forced = widgets.patch("w", &apply("bob").force(), &Patch::Apply(body(2))).await.unwrap();
    assert_eq!(forced.data["spec"]["size"], 2);

    // alice stops applying `color`; bob still owns it (same value), so it stays.
    let alice_only =
        json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":2}});
    let out = widgets.patch("w", &apply("alice").force(), &Patch::Apply(alice_only)).await.unwrap();
    assert_eq!(out.data["spec"]["color"], "blue");
}

#[tokio::test]
async fn server_side_apply_removes_fields_no_longer_applied() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let pp = PatchParams::apply("op");
    let v1 = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","labels":{"a":"1","b":"2"}},"stringData":{"k":"v"}});
    secrets.patch("s", &pp, &Patch::Apply(v1)).await.unwrap();
    let v2 = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","labels":{"a":"1"}},"stringData":{"k":"v"}});
    let out = secrets.patch("s", &pp, &Patch::Apply(v2)).await.unwrap();
    let labels = out.metadata.labels.clone().unwrap();
    assert!(labels.contains_key("a") && !labels.contains_key("b"));
    // Re-applying the same configuration is a no-op (same resourceVersion).
    let v2 = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","labels":{"a":"1"}},"stringData":{"k":"v"}});
    let again = secrets.patch("s", &pp, &Patch::Apply(v2)).await.unwrap();
    assert_eq!(rv(&again), rv(&out));
}

#[tokio::test]
async fn strategic_merge_patch_on_custom_resource_is_415() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    let err = api_err(
        widgets
            .patch("w", &PatchParams::default(), &Patch::Strategic(json!({"spec":{"size":2}})))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (415, "UnsupportedMediaType"));
}

#[tokio::test]
async fn injected_fault_fails_next_request() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    // (kube-rs retries 503/429 by itself, so a 500 shows the single failure directly.)
    emu.faults().fail_next(Verb::Create, "secrets", None, 1, 500);
    let err = api_err(secrets.create(&PostParams::default(), &secret("s")).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    let stats = emu.stats();
    assert_eq!(stats.create, 2);
    let before = emu.stats().writes();
    secrets.get("s").await.unwrap();
    assert_eq!(emu.stats().writes(), before);
    assert_eq!(emu.stats_for("secrets").get, 1);
    assert_eq!(emu.stats_for("secrets").create, 2);
    assert_eq!(emu.stats_for("leases"), kube_emulator::Stats::default());
}

#[tokio::test(start_paused = true)]
async fn injected_latency_delays_matching_requests() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    emu.faults().add_latency(Some(Verb::List), Some("secrets"), std::time::Duration::from_secs(3));
    let start = tokio::time::Instant::now();
    secrets.list(&ListParams::default()).await.unwrap();
    assert!(start.elapsed() >= std::time::Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn seeded_latency_on_one_resource_varies_per_request_and_repeats_with_the_seed() {
    use k8s_openapi::api::coordination::v1::Lease;
    use std::time::Duration;
    async fn delays(seed: u64) -> Vec<Duration> {
        let emu = KubeEmulator::start().await.unwrap();
        let leases: Api<Lease> = Api::default_namespaced(emu.client());
        let secrets: Api<Secret> = Api::default_namespaced(emu.client());
        emu.faults().add_latency_between(
            None,
            Some("leases"),
            Duration::from_millis(2),
            Duration::from_millis(8),
            seed,
        );
        let start = tokio::time::Instant::now();
        secrets.get_opt("s").await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(2), "other resources are not delayed");
        let mut delays = Vec::new();
        for _ in 0..8 {
            let start = tokio::time::Instant::now();
            leases.get_opt("l").await.unwrap();
            delays.push(start.elapsed());
        }
        delays
    }
    let first = delays(7).await;
    assert!(
        first.iter().all(|d| (Duration::from_millis(2)..=Duration::from_millis(9)).contains(d)),
        "{first:?}"
    );
    assert!(first.iter().any(|d| *d != first[0]), "the delay varies: {first:?}");
    assert_eq!(delays(7).await, first, "the same seed, the same delays");
    assert_ne!(delays(8).await, first, "another seed, other delays");
}

#[tokio::test]
async fn cut_watches_ends_open_streams() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut stream = secrets.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    emu.faults().cut_watches();
    assert!(stream.try_next().await.unwrap().is_none());
}

#[tokio::test]
async fn kubeconfig_works_with_kube_config_loader() {
    let emu = KubeEmulator::start().await.unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&emu.kubeconfig_yaml()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let ns: Api<Namespace> = Api::all(client);
    let names: Vec<_> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| n.metadata.name.unwrap())
        .collect();
    assert!(names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()));
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let owner = secrets.create(&PostParams::default(), &secret("owner")).await.unwrap();
    let mut dep = secret("dep");
    dep.metadata.finalizers = Some(vec!["x/y".into()]);
    dep.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "name": "owner",
        "uid": owner.metadata.uid.clone().unwrap(), "blockOwnerDeletion": true
    }))
    .unwrap()]);
    secrets.create(&PostParams::default(), &dep).await.unwrap();
    secrets.delete("owner", &DeleteParams::foreground()).await.unwrap();
    let waiting = secrets.get("owner").await.unwrap();
    assert_eq!(waiting.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]));
    assert!(secrets.get("dep").await.unwrap().metadata.deletion_timestamp.is_some());
    secrets
        .patch("dep", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"finalizers":null}})))
        .await
        .unwrap();
    assert_eq!(api_err(secrets.get("owner").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_owner_reference() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let owner = secrets.create(&PostParams::default(), &secret("owner")).await.unwrap();
    let mut dep = secret("dep");
    dep.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "name": "owner", "uid": owner.metadata.uid.clone().unwrap()
    }))
    .unwrap()]);
    secrets.create(&PostParams::default(), &dep).await.unwrap();
    secrets.delete("owner", &DeleteParams::orphan()).await.unwrap();
    let kept = secrets.get("dep").await.unwrap();
    assert!(kept.metadata.owner_references.is_none());
}

#[tokio::test]
async fn write_preconditions_and_metadata_validation_match_the_real_server() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let created = secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    // Re-creating a fetched object (resourceVersion set) fails in etcd3 storage.
    let mut again = created.clone();
    again.metadata.name = Some("t".into());
    again.metadata.uid = None;
    assert_eq!(api_err(secrets.create(&PostParams::default(), &again).await.unwrap_err()).code, 500);
    // A mismatched uid is a failed precondition.
    let mut wrong_uid = created.clone();
    wrong_uid.metadata.uid = Some("00000000-0000-0000-0000-000000000000".into());
    let err = api_err(secrets.replace("s", &PostParams::default(), &wrong_uid).await.unwrap_err());
    assert_eq!(err.code, 409);
    assert!(err.message.contains("Precondition failed: UID"), "{}", err.message);
    // Invalid label values are 422.
    let err = api_err(
        secrets
            .patch(
                "s",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata":{"labels":{"a":"not valid!"}}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    // Protected namespaces cannot be deleted.
    let ns: Api<Namespace> = Api::all(emu.client());
    assert_eq!(api_err(ns.delete("default", &DeleteParams::default()).await.unwrap_err()).code, 403);
}

#[tokio::test]
async fn malformed_requests_get_status_errors_not_panics() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let cases = [
        ("POST", "/api/v1/namespaces/default/secrets", "application/json", "{not json", 400),
        ("POST", "/api/v1/namespaces/default/secrets", "application/json", "[]", 400),
        ("GET", "/api/v1/namespaces/default/nonsense", "application/json", "", 404),
        ("GET", "/api/v1/namespaces/default/secrets?labelSelector=a%20in%20(", "application/json", "", 400),
        ("GET", "/api/v1/namespaces/default/secrets?fieldSelector=spec.x%3D1", "application/json", "", 400),
        (
            "GET",
            "/api/v1/namespaces/default/secrets?resourceVersion=abc&resourceVersionMatch=Exact",
            "application/json",
            "",
            400,
        ),
        ("PATCH", "/api/v1/namespaces/default/secrets/x", "text/plain", "{}", 415),
        ("GET", "/api/v1/namespaces/default/secrets?continue=garbage", "application/json", "", 400),
        ("PUT", "/api/v1/namespaces/default/secrets", "application/json", "{}", 405),
    ];
    for (method, path, ct, body, code) in cases {
        match send(&client, method, path, ct, body).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, code, "{method} {path}: {}", s.message),
            other => panic!("{method} {path}: expected {code}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn managed_fields_track_update_and_apply_managers() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    let pp = PostParams { field_manager: Some("creator".into()), ..PostParams::default() };
    widgets.create(&pp, &widget("w", json!({"size": 1}))).await.unwrap();
    let patched = widgets
        .patch(
            "w",
            &PatchParams { field_manager: Some("labeller".into()), ..PatchParams::default() },
            &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
        )
        .await
        .unwrap();
    let mf = patched.metadata.managed_fields.unwrap();
    let by = |m: &str| mf.iter().find(|e| e.manager.as_deref() == Some(m)).cloned().unwrap();
    assert_eq!(by("creator").operation.as_deref(), Some("Update"));
    let creator = serde_json::to_value(by("creator").fields_v1.unwrap()).unwrap();
    assert!(creator["f:spec"]["f:size"].is_object(), "{creator}");
    let labeller = serde_json::to_value(by("labeller").fields_v1.unwrap()).unwrap();
    assert!(labeller["f:metadata"]["f:labels"]["f:team"].is_object(), "{labeller}");

    // An Update manager's field conflicts with an apply that changes it.
    let body =
        json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"spec":{"size":3}});
    let err =
        api_err(widgets.patch("w", &PatchParams::apply("applier"), &Patch::Apply(body)).await.unwrap_err());
    assert!(err.message.contains("conflict with \"creator\""), "{}", err.message);
}

#[tokio::test]
async fn server_side_apply_to_status_subresource_changes_only_status() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    let body = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},
        "spec":{"size":9},"status":{"phase":"Ready"}});
    let out =
        widgets.patch_status("w", &PatchParams::apply("ctrl").force(), &Patch::Apply(body)).await.unwrap();
    assert_eq!(out.data["status"]["phase"], "Ready");
    assert_eq!(out.data["spec"]["size"], 1);
    assert_eq!(out.metadata.generation, Some(1));
    let entry = out
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .find(|e| e.manager.as_deref() == Some("ctrl"))
        .unwrap();
    assert_eq!(entry.subresource.as_deref(), Some("status"));
    assert_eq!(entry.operation.as_deref(), Some("Apply"));
}

#[tokio::test]
async fn apply_without_field_manager_is_rejected() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let req = http::Request::builder()
        .method("PATCH")
        .uri("/api/v1/namespaces/default/secrets/s")
        .header("content-type", "application/apply-patch+yaml")
        .body(b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n".to_vec())
        .unwrap();
    match client.request::<serde_json::Value>(req).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 400),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn lease_replace_with_stale_resource_version_conflicts() {
    use k8s_openapi::api::coordination::v1::Lease;
    let emu = KubeEmulator::start().await.unwrap();
    let leases: Api<Lease> = Api::namespaced(emu.client(), "kube-system");
    let lease: Lease = serde_json::from_value(
        json!({"metadata":{"name":"leader"},"spec":{"holderIdentity":"a","leaseDurationSeconds":15}}),
    )
    .unwrap();
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let mut mine = created.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases.replace("leader", &PostParams::default(), &mine).await.unwrap();
    let mut theirs = created;
    theirs.spec.as_mut().unwrap().holder_identity = Some("c".into());
    let err = api_err(leases.replace("leader", &PostParams::default(), &theirs).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
}

#[tokio::test]
async fn shutdown_completes_with_open_watches_and_refuses_new_requests() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut stream = secrets.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    tokio::time::timeout(std::time::Duration::from_secs(30), emu.shutdown())
        .await
        .expect("shutdown finished in time");
    assert!(stream.try_next().await.unwrap_or(None).is_none());
    assert!(secrets.list(&ListParams::default()).await.is_err());
}

#[tokio::test]
async fn strict_field_validation_rejects_unknown_fields() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    let strict = PatchParams::default().validation_strict();
    let bogus = Patch::Merge(json!({"spec": {"bogus": 1}}));
    let err = api_err(widgets.patch("w", &strict, &bogus).await.unwrap_err());
    assert_eq!(err.code, 400);
    assert!(err.message.contains("unknown field \"spec.bogus\""), "{}", err.message);
    // Without Strict the unknown field is silently pruned (a no-op here).
    let ok = widgets.patch("w", &PatchParams::default(), &bogus).await.unwrap();
    assert!(ok.data["spec"].get("bogus").is_none());
}

#[tokio::test]
async fn owner_references_are_validated() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut s = secret("s");
    s.metadata.owner_references = Some(vec![
        serde_json::from_value(
            json!({"apiVersion":"v1","kind":"Secret","name":"a","uid":"1","controller":true}),
        )
        .unwrap(),
        serde_json::from_value(
            json!({"apiVersion":"v1","kind":"Secret","name":"b","uid":"","controller":true}),
        )
        .unwrap(),
    ]);
    let err = api_err(secrets.create(&PostParams::default(), &s).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(err.message.contains("uid must not be empty"), "{}", err.message);
    assert!(err.message.contains("Only one reference can have Controller set to true"), "{}", err.message);
}

#[tokio::test]
async fn delete_collection_honours_label_selector_and_finalizers() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    for (name, app, fin) in [("a", "x", false), ("b", "x", true), ("c", "y", false)] {
        let mut s = secret(name);
        s.metadata.labels = Some(BTreeMap::from([("app".into(), app.into())]));
        if fin {
            s.metadata.finalizers = Some(vec!["x/y".into()]);
        }
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }
    secrets
        .delete_collection(&DeleteParams::default(), &ListParams::default().labels("app=x"))
        .await
        .unwrap();
    let left: Vec<_> = secrets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| (s.metadata.name.unwrap(), s.metadata.deletion_timestamp.is_some()))
        .collect();
    assert_eq!(left, [("b".to_string(), true), ("c".to_string(), false)]);
}

#[tokio::test]
async fn apply_to_status_of_missing_object_is_404() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    let body = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"nope"},"status":{"phase":"X"}});
    let err = api_err(
        widgets.patch_status("nope", &PatchParams::apply("c"), &Patch::Apply(body)).await.unwrap_err(),
    );
    assert_eq!(err.code, 404);
}

#[tokio::test]
async fn server_side_apply_merges_list_type_map_items_per_manager() {
    let emu = KubeEmulator::start().await.unwrap();
    let widgets = widget_crd(&emu.client()).await;
    widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    let cond = |t: &str, s: &str| {
        json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},
            "status":{"conditions":[{"type": t, "status": s}]}})
    };
    widgets.patch_status("w", &PatchParams::apply("a"), &Patch::Apply(cond("Ready", "True"))).await.unwrap();
    let both = widgets
        .patch_status("w", &PatchParams::apply("b"), &Patch::Apply(cond("Synced", "True")))
        .await
        .unwrap();
    assert_eq!(both.data["status"]["conditions"].as_array().unwrap().len(), 2);
    // b changing a's item conflicts; b dropping its own item removes only that item.
    let err = api_err(
        widgets
            .patch_status("w", &PatchParams::apply("b"), &Patch::Apply(cond("Ready", "False")))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert!(err.message.contains(".status.conditions.k:{\"type\":\"Ready\"}.status"), "{}", err.message);
    let empty = json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w"},"status":{}});
    let out = widgets.patch_status("w", &PatchParams::apply("b"), &Patch::Apply(empty)).await.unwrap();
    assert_eq!(out.data["status"]["conditions"], json!([{"type": "Ready", "status": "True"}]));
}

#[tokio::test]
async fn strategic_merge_patch_merges_finalizers_and_owner_references() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut s = secret("s");
    s.metadata.finalizers = Some(vec!["a/x".into()]);
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let pp = PatchParams::default();
    let out = secrets
        .patch("s", &pp, &Patch::Strategic(json!({"metadata": {"finalizers": ["b/y"]}})))
        .await
        .unwrap();
    assert_eq!(out.metadata.finalizers, Some(vec!["a/x".to_string(), "b/y".to_string()]));
    let out = secrets
        .patch(
            "s",
            &pp,
            &Patch::Strategic(json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/x"]}})),
        )
        .await
        .unwrap();
    assert_eq!(out.metadata.finalizers, Some(vec!["b/y".to_string()]));
    // A JSON merge patch replaces the list instead.
    let out =
        secrets.patch("s", &pp, &Patch::Merge(json!({"metadata": {"finalizers": ["c/z"]}}))).await.unwrap();
    assert_eq!(out.metadata.finalizers, Some(vec!["c/z".to_string()]));
}

#[tokio::test]
async fn events_k8s_io_create_requires_reporting_fields() {
    use k8s_openapi::api::events::v1::Event;
    let emu = KubeEmulator::start().await.unwrap();
    let events: Api<Event> = Api::default_namespaced(emu.client());
    let ev: Event = serde_json::from_value(json!({"metadata": {"name": "e"}, "reason": "X"})).unwrap();
    let err = api_err(events.create(&PostParams::default(), &ev).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(err.message.contains("eventTime: Required value"), "{}", err.message);
}

#[tokio::test]
async fn type_mismatches_in_bodies_are_400_bad_request() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let cases = [
        ("POST", "/api/v1/namespaces", r#"{"metadata":{"name":"x","labels":"oops"}}"#),
        ("POST", "/api/v1/namespaces", r#"{"metadata":{"name":"x"},"spec":"oops"}"#),
        (
            "POST",
            "/api/v1/namespaces/default/secrets",
            r#"{"metadata":{"name":"x"},"data":{"k":"not base64!"}}"#,
        ),
        ("POST", "/api/v1/namespaces/default/secrets", r#"{"metadata":{"name":"x","annotations":[1]}}"#),
        (
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            r#"{"metadata":{"name":"a.b"},"spec":{"names":"oops"}}"#,
        ),
    ];
    for (method, path, body) in cases {
        match send(&client, method, path, "application/json", body).await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 400, "{path} {body}: {}", s.message),
            other => panic!("{path} {body}: {other:?}"),
        }
    }
    // A merge patch that breaks the type is rejected too, and the server keeps serving.
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    let err = api_err(
        secrets
            .patch("s", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": "x"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    secrets.get("s").await.unwrap();
}

#[tokio::test]
async fn dependent_of_missing_owner_is_garbage_collected() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut s = secret("dangling");
    s.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "name": "gone", "uid": "6f1f0a4e-0000-4000-8000-000000000000"
    }))
    .unwrap()]);
    // The create succeeds (the collector acts after the write) ...
    secrets.create(&PostParams::default(), &s).await.unwrap();
    // ... and the dependent is then gone.
    assert_eq!(api_err(secrets.get("dangling").await.unwrap_err()).code, 404);
}

#[tokio::test(start_paused = true)]
async fn watch_on_a_named_object_path_selects_that_object() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
    let req = http::Request::builder()
        .uri("/api/v1/namespaces/default/secrets/b?watch=true&timeoutSeconds=5")
        .body(Vec::new())
        .unwrap();
    let text = client.request_text(req).await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("\"ADDED\"") && lines[0].contains("\"name\":\"b\""), "{text}");
}

#[tokio::test]
async fn namespace_metadata_finalizer_holds_it_after_contents_are_gone() {
    let emu = KubeEmulator::start().await.unwrap();
    let ns: Api<Namespace> = Api::all(emu.client());
    let body: Namespace =
        serde_json::from_value(json!({"metadata":{"name":"held","finalizers":["example.com/hold"]}}))
            .unwrap();
    ns.create(&PostParams::default(), &body).await.unwrap();
    ns.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(ns.get("held").await.unwrap().metadata.deletion_timestamp.is_some());
    ns.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"finalizers":null}})))
        .await
        .unwrap();
    assert_eq!(api_err(ns.get("held").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn delete_answers_status_when_gone_and_the_object_when_held() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let widgets = widget_crd(&client).await;
    let w = widgets.create(&PostParams::default(), &widget("w", json!({"size": 1}))).await.unwrap();
    // A custom resource without finalizers: Status, like every emulated kind.
    let status = widgets.delete("w", &DeleteParams::default()).await.unwrap().right().expect("a Status");
    assert_eq!(status.status, Some(kube::core::response::StatusSummary::Success));
    let details = status.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.group.as_str(), details.kind.as_str()),
        ("w", "example.com", "widgets")
    );
    assert_eq!(details.uid, w.metadata.uid.unwrap());
    // With a finalizer: the object, marked for deletion (generation bumped).
    let mut held = widget("held", json!({"size": 1}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    widgets.create(&PostParams::default(), &held).await.unwrap();
    let pending = widgets.delete("held", &DeleteParams::default()).await.unwrap().left().expect("the object");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.generation, Some(2));
    // dryRun=All: the same answers, nothing changes.
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    let dry = DeleteParams { dry_run: true, ..Default::default() };
    assert!(secrets.delete("s", &dry).await.unwrap().is_right());
    assert!(secrets.get("s").await.unwrap().metadata.deletion_timestamp.is_none());
}

#[tokio::test]
async fn orphan_policy_sets_the_orphan_finalizer_which_the_collector_removes() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut owner = secret("owner");
    owner.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let owner = secrets.create(&PostParams::default(), &owner).await.unwrap();
    let mut dep = secret("dep");
    dep.metadata.owner_references = Some(vec![serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "name": "owner", "uid": owner.metadata.uid.clone().unwrap()
    }))
    .unwrap()]);
    secrets.create(&PostParams::default(), &dep).await.unwrap();
    let answered = secrets.delete("owner", &DeleteParams::orphan()).await.unwrap().left().expect("held");
    assert_eq!(
        answered.metadata.finalizers,
        Some(vec!["example.com/hold".to_string(), "orphan".to_string()])
    );
    // The collector orphaned the dependent and removed its finalizer; the owner's own stays.
    assert!(secrets.get("dep").await.unwrap().metadata.owner_references.is_none());
    let owner = secrets.get("owner").await.unwrap();
    assert_eq!(owner.metadata.finalizers, Some(vec!["example.com/hold".to_string()]));
    // Without other finalizers the owner is answered held, then gone.
    secrets.create(&PostParams::default(), &secret("lone")).await.unwrap();
    let lone = secrets.delete("lone", &DeleteParams::orphan()).await.unwrap().left().expect("held");
    assert_eq!(lone.metadata.finalizers, Some(vec!["orphan".to_string()]));
    assert_eq!(api_err(secrets.get("lone").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn foreground_owner_is_held_only_by_blocking_dependents() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    for block in [false, true] {
        let owner = secrets.create(&PostParams::default(), &secret("owner")).await.unwrap();
        let mut dep = secret("dep");
        dep.metadata.finalizers = Some(vec!["x/y".into()]);
        dep.metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "name": "owner",
            "uid": owner.metadata.uid.clone().unwrap(), "blockOwnerDeletion": block
        }))
        .unwrap()]);
        secrets.create(&PostParams::default(), &dep).await.unwrap();
        let answered = secrets.delete("owner", &DeleteParams::foreground()).await.unwrap();
        assert!(answered.is_left(), "a foreground deletion answers the held object");
        assert!(secrets.get("dep").await.unwrap().metadata.deletion_timestamp.is_some());
        assert_eq!(secrets.get("owner").await.is_ok(), block, "blockOwnerDeletion: {block}");
        secrets
            .patch("dep", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"finalizers":null}})))
            .await
            .unwrap();
        assert_eq!(api_err(secrets.get("owner").await.unwrap_err()).code, 404);
    }
}

#[tokio::test]
async fn watch_deleted_event_carries_the_last_stored_state() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    let mut s = secret("s");
    s.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    secrets.delete("s", &DeleteParams::default()).await.unwrap();
    let released = secrets
        .patch("s", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"finalizers":null}})))
        .await
        .unwrap();
    assert!(released.metadata.finalizers.is_none(), "the writer gets the object it sent");
    let wp = WatchParams::default().timeout(1);
    let stream = secrets.watch(&wp, &rv(&created).to_string()).await.unwrap();
    let events: Vec<_> = stream.try_collect().await.unwrap();
    let last = events.iter().find_map(|e| match e {
        WatchEvent::Deleted(o) => Some(o.clone()),
        _ => None,
    });
    let last = last.expect("a DELETED event");
    assert_eq!(
        last.metadata.finalizers,
        Some(vec!["example.com/keep".to_string()]),
        "state before the release"
    );
    assert!(last.metadata.deletion_timestamp.is_some());
}

#[tokio::test]
async fn terminating_namespace_reports_conditions_and_refuses_new_content() {
    let emu = KubeEmulator::start().await.unwrap();
    let ns: Api<Namespace> = Api::all(emu.client());
    ns.create(&PostParams::default(), &serde_json::from_value(json!({"metadata":{"name":"team"}})).unwrap())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(emu.client(), "team");
    let mut held = secret("held");
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    secrets.create(&PostParams::default(), &held).await.unwrap();
    let answered = ns.delete("team", &DeleteParams::default()).await.unwrap().left().expect("the namespace");
    assert_eq!(answered.status.unwrap().phase.as_deref(), Some("Terminating"));
    let conditions = ns.get("team").await.unwrap().status.unwrap().conditions.unwrap();
    let remaining = conditions.iter().find(|c| c.type_ == "NamespaceFinalizersRemaining").unwrap();
    assert_eq!(
        (remaining.status.as_str(), remaining.reason.as_deref()),
        ("True", Some("SomeFinalizersRemain"))
    );
    assert!(remaining.message.as_deref().unwrap().contains("example.com/hold in 1 resource instances"));
    let err = api_err(secrets.create(&PostParams::default(), &secret("new")).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
    let raw = send(
        &emu.client(),
        "POST",
        "/api/v1/namespaces/team/configmaps",
        "application/json",
        r#"{"metadata":{"name":"c"}}"#,
    )
    .await
    .unwrap_err();
    let cause = match raw {
        kube::Error::Api(s) => s.details.unwrap().causes[0].clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!((cause.reason.as_str(), cause.field.as_str()), ("NamespaceTerminating", "metadata.namespace"));
}

#[tokio::test]
async fn server_side_apply_creates_with_201_and_ignores_empty_maps_and_number_forms() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let widgets = widget_crd(&client).await;
    let apply = |name: &str, manager: &str, body: serde_json::Value| {
        http::Request::builder()
            .method("PATCH")
            .uri(format!("/apis/example.com/v1/namespaces/default/widgets/{name}?fieldManager={manager}"))
            .header("content-type", "application/apply-patch+yaml")
            .body(body.to_string().into_bytes())
            .unwrap()
    };
    let body =
        json!({"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"a"},"spec":{"size":1}});
    let resp = client.send(apply("a", "alice", body.clone()).map(Into::into)).await.unwrap();
    assert_eq!(resp.status(), 201, "apply that creates");
    let resp = client.send(apply("a", "alice", body).map(Into::into)).await.unwrap();
    assert_eq!(resp.status(), 200, "apply that updates");

    // Created with empty maps and a float-formatted number by another manager.
    let created = widget("b", json!({"size": 1, "extra": {"min": 0.0, "opts": {}}}));
    let mut created = created;
    created.metadata.labels = Some(BTreeMap::new());
    widgets
        .create(&PostParams { field_manager: Some("creator".into()), ..Default::default() }, &created)
        .await
        .unwrap();
    let second = widget("b", json!({"extra": {"min": 0, "opts": {"fast": true}}}));
    let mut second = second;
    second.metadata.labels = Some(BTreeMap::from([("team".to_string(), "a".to_string())]));
    let out = widgets
        .patch("b", &PatchParams::apply("second"), &Patch::Apply(&second))
        .await
        .expect("no conflict: the creator owns the empty maps, not fields set in them later, and 0 == 0.0");
    assert_eq!(out.data["spec"]["extra"]["opts"]["fast"], json!(true));
    assert_eq!(out.metadata.labels.unwrap()["team"], "a");
}

/// Sends a raw request and returns the status code, the `Warning` headers and the body.
async fn exchange(
    client: &kube::Client,
    method: &str,
    path: &str,
    ct: &str,
    body: serde_json::Value,
) -> (u16, Vec<String>, serde_json::Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(body.to_string().into_bytes().into())
        .unwrap();
    let resp = client.send(req).await.unwrap();
    let code = resp.status().as_u16();
    let warnings =
        resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap().to_string()).collect();
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (code, warnings, serde_json::from_slice(&bytes).unwrap_or_default())
}

#[tokio::test]
async fn unknown_fields_of_built_ins_warn_by_default_and_fail_strict_validation() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let body = json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","colour":"red"},"bogus":1,"stringData":{"a":"b"}});
    let path = "/api/v1/namespaces/default/secrets";
    let (code, _, status) = exchange(
        &client,
        "POST",
        &format!("{path}?fieldValidation=Strict"),
        "application/json",
        body.clone(),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        status["message"],
        r#"Secret in version "v1" cannot be handled as a Secret: strict decoding error: unknown field "bogus", unknown field "metadata.colour""#
    );
    let (code, warnings, created) = exchange(&client, "POST", path, "application/json", body).await;
    assert_eq!(code, 201);
    assert_eq!(
        warnings,
        [r#"299 - "unknown field \"bogus\"""#, r#"299 - "unknown field \"metadata.colour\"""#]
    );
    assert!(created.get("bogus").is_none() && created["metadata"].get("colour").is_none(), "{created}");
    // Ignore: dropped silently.
    let body = json!({"metadata":{"name":"s2"},"bogus":1});
    let (code, warnings, _) =
        exchange(&client, "POST", &format!("{path}?fieldValidation=Ignore"), "application/json", body).await;
    assert_eq!((code, warnings.len()), (201, 0));
}

#[tokio::test]
async fn dry_run_and_field_validation_values_are_validated() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let body = json!({"metadata":{"name":"c"}});
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, _, status) =
        exchange(&client, "POST", &format!("{path}?dryRun=Bogus"), "application/json", body.clone()).await;
    assert_eq!(code, 422);
    assert_eq!(
        status["message"],
        r#"CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Bogus"}: supported values: "All""#
    );
    assert_eq!(
        status["details"]["causes"][0]["message"],
        r#"Unsupported value: []string{"Bogus"}: supported values: "All""#
    );
    let (code, _, _) =
        exchange(&client, "POST", &format!("{path}?fieldValidation=Loose"), "application/json", body).await;
    assert_eq!(code, 422);
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::default_namespaced(client.clone());
    assert_eq!(api_err(cms.get("c").await.unwrap_err()).code, 404, "nothing was created");
    let (code, _, status) =
        exchange(&client, "DELETE", &format!("{path}/c?dryRun=Bogus"), "application/json", json!({})).await;
    assert_eq!((code, status["details"]["kind"].as_str()), (422, Some("DeleteOptions")));
}

#[tokio::test]
async fn config_map_immutable_and_duplicate_keys_are_invalid() {
    let emu = KubeEmulator::start().await.unwrap();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::default_namespaced(emu.client());
    let dup =
        serde_json::from_value(json!({"metadata":{"name":"dup"},"data":{"k":"v"},"binaryData":{"k":"dg=="}}))
            .unwrap();
    let err = api_err(cms.create(&PostParams::default(), &dup).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains(r#"data[k]: Invalid value: "k": duplicate of key present in binaryData"#),
        "{}",
        err.message
    );
    let frozen =
        serde_json::from_value(json!({"metadata":{"name":"frozen"},"data":{"k":"v"},"immutable":true}))
            .unwrap();
    cms.create(&PostParams::default(), &frozen).await.unwrap();
    let err = api_err(
        cms.patch("frozen", &PatchParams::default(), &Patch::Merge(json!({"data":{"k":"changed"}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 422);
    assert!(
        err.message.contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{}",
        err.message
    );
    let err = api_err(
        cms.patch("frozen", &PatchParams::default(), &Patch::Merge(json!({"immutable":false})))
            .await
            .unwrap_err(),
    );
    assert!(err.message.contains("immutable: Forbidden"), "{}", err.message);
    // Labels may still change.
    cms.patch("frozen", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"labels":{"a":"b"}}})))
        .await
        .unwrap();
}

#[tokio::test]
async fn crd_with_unrecognized_formats_is_accepted_with_warnings() {
    let emu = KubeEmulator::start().await.unwrap();
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "count": {"type": "integer", "format": "uint32"},
                    "big": {"type": "integer", "format": "int64"},
                    "ratio": {"type": "number", "format": "double"},
                    "at": {"type": "string", "format": "date-time"},
                    "items": {"type": "array", "items": {"type": "integer", "format": "uint64"}}
                }}}}}}]}
    });
    let path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let (code, warnings, _) = exchange(&emu.client(), "POST", path, "application/json", crd).await;
    assert_eq!(code, 201);
    assert_eq!(
        warnings,
        [r#"299 - "unrecognized format \"uint32\"""#, r#"299 - "unrecognized format \"uint64\"""#]
    );
    // An update that adds no new unrecognized format warns about nothing.
    let patch = json!({"metadata": {"labels": {"a": "b"}}});
    let (code, warnings, _) = exchange(
        &emu.client(),
        "PATCH",
        &format!("{path}/gadgets.example.com"),
        "application/merge-patch+json",
        patch,
    )
    .await;
    assert_eq!((code, warnings.len()), (200, 0));
}
