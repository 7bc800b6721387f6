//! kube-runtime (watcher, Controller, event Recorder) against the emulator.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::Resource;
use kube_emulator::KubeEmulator;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Bound for waiting on a condition over real time (the clock is not paused here).
const WAIT: Duration = Duration::from_secs(30);

fn secret(name: &str) -> Secret {
    serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"k": "v"}})).unwrap()
}

async fn widgets(client: &kube::Client) -> Api<DynamicObject> {
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk(&GroupVersionKind::gvk(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
        )),
    );
    let crd = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    crds.create(&PostParams::default(), &crd).await.unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    Api::namespaced_with(client.clone(), "default", &ar)
}

fn widget(name: &str) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name}, "spec": {"size": 1}}))
    .unwrap()
}

#[tokio::test]
async fn controller_reconciles_objects_from_watch() {
    controller_scenario(Duration::ZERO).await;
}

/// Same scenario on tokio's paused clock: time only moves when everything is idle.
#[tokio::test(start_paused = true)]
async fn controller_reconciles_objects_from_watch_on_paused_clock() {
    // An hour of idle time (watch timeouts, re-watches, bookmarks) in between.
    controller_scenario(Duration::from_secs(3600)).await;
}

async fn controller_scenario(idle: Duration) {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let api = widgets(&client).await;
    api.create(&PostParams::default(), &widget("a")).await.unwrap();

    async fn reconcile(obj: Arc<DynamicObject>, api: Arc<Api<DynamicObject>>) -> Result<Action, kube::Error> {
        let name = obj.meta().name.clone().unwrap_or_default();
        let generation = obj.meta().generation.unwrap_or_default();
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Reconciled", "observedGeneration": generation}})),
        )
        .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<DynamicObject>, _: &kube::Error, _: Arc<Api<DynamicObject>>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("example.com", "v1", "Widget"));
    let ctx = Arc::new(api.clone());
    let controller = Controller::new_with(api.clone(), watcher::Config::default(), ar)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    api.create(&PostParams::default(), &widget("b")).await.unwrap();
    let reconciled = |o: Option<&DynamicObject>| o.is_some_and(|o| o.data["status"]["phase"] == "Reconciled");
    for name in ["a", "b"] {
        tokio::time::timeout(WAIT, kube::runtime::wait::await_condition(api.clone(), name, reconciled))
            .await
            .expect("reconciled in time")
            .unwrap();
    }
    if !idle.is_zero() {
        tokio::time::sleep(idle).await;
    }
    // A spec change is seen and reconciled again.
    api.patch("b", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}}))).await.unwrap();
    tokio::time::timeout(
        WAIT,
        kube::runtime::wait::await_condition(api.clone(), "b", |o: Option<&DynamicObject>| {
            o.is_some_and(|o| o.data["status"]["observedGeneration"] == 2)
        }),
    )
    .await
    .expect("reconciled in time")
    .unwrap();
    handle.abort();
}

#[tokio::test]
async fn watcher_recovers_from_cut_watch_and_compaction() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    secrets.create(&PostParams::default(), &secret("before")).await.unwrap();
    let mut stream = watcher(secrets.clone(), watcher::Config::default()).boxed();
    // Consume the initial list.
    loop {
        if let Ok(watcher::Event::InitDone) = stream.next().await.unwrap() {
            break;
        }
    }
    emu.faults().compact();
    emu.faults().cut_watches();
    secrets.create(&PostParams::default(), &secret("after")).await.unwrap();
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(watcher::Event::Apply(s))) | Some(Ok(watcher::Event::InitApply(s)))
                    if s.metadata.name.as_deref() == Some("after") =>
                {
                    return true
                }
                Some(_) => continue,
                None => return false,
            }
        }
    })
    .await
    .expect("watcher recovered in time");
    assert!(seen);
}

#[tokio::test]
async fn watcher_streaming_list_ends_initial_events_with_bookmark() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
    let mut stream = watcher(secrets.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.try_next().await.unwrap().unwrap() {
                watcher::Event::InitApply(s) => initial.push(s.metadata.name.unwrap()),
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
    })
    .await
    .expect("initial events in time");
    assert_eq!(initial, ["a", "b"]);
    assert_eq!(emu.stats().list, 0, "streaming lists use watch only");
}

#[tokio::test]
async fn recorder_events_are_created_and_visible_in_core_v1() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let s = secrets.create(&PostParams::default(), &secret("s")).await.unwrap();
    let recorder =
        Recorder::new(client.clone(), Reporter { controller: "slack-token-operator".into(), instance: None });
    let ev = Event {
        type_: EventType::Normal,
        reason: "Rotated".into(),
        note: Some("token rotated".into()),
        action: "Rotate".into(),
        secondary: None,
    };
    let reference = s.object_ref(&());
    recorder.publish(&ev, &reference).await.unwrap();
    // Second publish of the same event becomes a series (merge patch).
    recorder.publish(&ev, &reference).await.unwrap();

    let core: Api<k8s_openapi::api::core::v1::Event> = Api::default_namespaced(client.clone());
    let lp = ListParams::default().fields("involvedObject.name=s,involvedObject.kind=Secret");
    let list = core.list(&lp).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Rotated"));
    assert_eq!(e.message.as_deref(), Some("token rotated"));
    assert_eq!(e.series.as_ref().and_then(|s| s.count), Some(2));

    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::default_namespaced(client);
    let list = v1.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items[0].note.as_deref(), Some("token rotated"));
    assert_eq!(list.items[0].regarding.as_ref().and_then(|r| r.name.as_deref()), Some("s"));
}

#[tokio::test]
async fn finalizer_helper_adds_and_removes_its_finalizer() {
    use kube::runtime::finalizer::{finalizer, Event as Fin};
    let emu = KubeEmulator::start().await.unwrap();
    let api = widgets(&emu.client()).await;
    api.create(&PostParams::default(), &widget("w")).await.unwrap();
    let name = "example.com/cleanup";
    let run = |obj: DynamicObject| {
        let api = api.clone();
        async move {
            finalizer(&api, name, Arc::new(obj), |ev| async move {
                match ev {
                    Fin::Apply(_) | Fin::Cleanup(_) => Ok::<_, kube::Error>(Action::await_change()),
                }
            })
            .await
        }
    };
    // First pass adds the finalizer (JSON patch with a `test` of null finalizers).
    run(api.get("w").await.unwrap()).await.unwrap();
    let with = api.get("w").await.unwrap();
    assert_eq!(with.metadata.finalizers, Some(vec![name.to_string()]));
    api.delete("w", &Default::default()).await.unwrap();
    // Cleanup pass removes it, and the object goes away.
    run(api.get("w").await.unwrap()).await.unwrap();
    assert!(api.get_opt("w").await.unwrap().is_none());
}

#[tokio::test]
async fn metadata_api_and_metadata_watcher_get_partial_object_metadata() {
    let emu = KubeEmulator::start().await.unwrap();
    let secrets: Api<Secret> = Api::default_namespaced(emu.client());
    secrets.create(&PostParams::default(), &secret("a")).await.unwrap();
    let meta = secrets.get_metadata("a").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("a"));
    let list = secrets.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let metas: Api<kube::core::PartialObjectMeta<Secret>> = Api::default_namespaced(emu.client());
    let mut stream = watcher(metas, watcher::Config::default()).boxed();
    let mut names = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.try_next().await.unwrap().unwrap() {
                watcher::Event::InitApply(m) => names.push(m.metadata.name.unwrap()),
                watcher::Event::InitDone => break,
                _ => {}
            }
        }
        secrets.create(&PostParams::default(), &secret("b")).await.unwrap();
        loop {
            if let watcher::Event::Apply(m) = stream.try_next().await.unwrap().unwrap() {
                names.push(m.metadata.name.unwrap());
                break;
            }
        }
    })
    .await
    .expect("metadata events in time");
    assert_eq!(names, ["a", "b"]);
}

#[tokio::test]
async fn discovery_finds_builtin_and_custom_resources() {
    let emu = KubeEmulator::start().await.unwrap();
    let client = emu.client();
    widgets(&client).await;
    let discovery = kube::discovery::Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in ["", "apiextensions.k8s.io", "coordination.k8s.io", "events.k8s.io", "example.com"] {
        assert!(groups.contains(&g.to_string()), "{g} missing from {groups:?}");
    }
    let gvk = kube::api::GroupVersionKind::gvk("example.com", "v1", "Widget");
    let (ar, caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    assert!(caps
        .subresources
        .iter()
        .any(|(sub, _)| sub.plural == "widgets/status" || sub.plural == "status"));
    let info = client.apiserver_version().await.unwrap();
    assert_eq!(info.major, "1");
}
