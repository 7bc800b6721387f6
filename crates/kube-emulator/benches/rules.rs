//! What the CRD validation rules cost a write: N SlackTokens created, then each patched once
//! (a transition rule runs on update), against the emulator with the repository's SlackToken
//! CRD as it is and with its `x-kubernetes-validations` removed. Prints the time per write.
//!
//! Run: `cargo bench -p kube-emulator --bench rules` (env: BENCH_OBJECTS=500).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube_emulator::KubeEmulator;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn crd(with_rules: bool) -> CustomResourceDefinition {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../crds/slacktoken.yaml");
    let text = std::fs::read_to_string(path).expect("crds/slacktoken.yaml");
    let mut crd: Value = serde_saphyr::from_str(&text).expect("the CRD parses");
    if !with_rules {
        strip_rules(&mut crd);
    }
    serde_json::from_value(crd).expect("a CRD")
}

fn strip_rules(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("x-kubernetes-validations");
            m.values_mut().for_each(strip_rules);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_rules),
        _ => {}
    }
}

/// (time per create, time per patch)
async fn run(with_rules: bool, n: usize) -> (Duration, Duration) {
    let emu = KubeEmulator::start().await.expect("emulator");
    let client = emu.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd(with_rules)).await.expect("CRD installed");
    let resource = ApiResource {
        group: "slack.rotator.dev".into(),
        version: "v1alpha1".into(),
        api_version: "slack.rotator.dev/v1alpha1".into(),
        kind: "SlackToken".into(),
        plural: "slacktokens".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &resource);
    // The CRD is served once established; the first create may come too early.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    for i in 0..n {
        let object: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "slack.rotator.dev/v1alpha1", "kind": "SlackToken",
            "metadata": {"name": format!("t{i}")},
            "spec": {
                "type": "Manual", "rotationPeriod": "2160h", "manual": {"kind": "App"},
                "credentialsRef": {"name": format!("t{i}-creds")}, "secretRef": {"name": format!("t{i}-token")},
                "rolloutRestartTargets": [{"kind": "Deployment", "name": "web"}, {"kind": "StatefulSet", "name": "db"}],
            },
        }))
        .unwrap();
        api.create(&PostParams::default(), &object).await.expect("created");
    }
    let create = started.elapsed() / n as u32;
    let started = Instant::now();
    let patch = json!({"spec": {"suspend": true}});
    for i in 0..n {
        api.patch(&format!("t{i}"), &PatchParams::default(), &Patch::Merge(&patch)).await.expect("patched");
    }
    let update = started.elapsed() / n as u32;
    emu.shutdown().await;
    (create, update)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = std::env::var("BENCH_OBJECTS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    // Warm-up (allocator, connection pool), not measured.
    run(true, 20).await;
    println!("SlackToken writes to the kube emulator, {n} objects, time per write:");
    for with_rules in [false, true, false, true] {
        let (create, update) = run(with_rules, n).await;
        let label = if with_rules { "with the CRD's rules   " } else { "rules removed          " };
        println!("  {label} create {:>7.1} µs   merge patch {:>7.1} µs", micros(create), micros(update));
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
