//! Differential conformance: the requests in `tests/conformance/cases.yaml`, in order,
//! against the emulator (their recorded expectations must hold) and, when E2E_KUBECONFIG
//! names a cluster, against that cluster too: every expectation it does not meet is
//! reported as a difference (and fails the test), so the emulator and a real API server
//! can be compared request by request. Adding a case is adding an entry to the file.

use kube_emulator::KubeEmulator;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    method: String,
    path: String,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default, rename = "contentType")]
    content_type: Option<String>,
    #[serde(default)]
    accept: Option<String>,
    #[serde(default)]
    save: Option<String>,
    #[serde(default)]
    wait: bool,
    #[serde(default, rename = "userAgent")]
    user_agent: Option<String>,
    expect: Expect,
}

#[derive(Debug, Default, Deserialize)]
struct Expect {
    code: u16,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, Value>,
    #[serde(default)]
    present: Vec<String>,
    #[serde(default)]
    absent: Vec<String>,
    #[serde(default, rename = "rvChanged")]
    rv_changed: Option<String>,
    #[serde(default, rename = "rvSame")]
    rv_same: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default, rename = "managedFields")]
    managed_fields: Option<Vec<Value>>,
}

fn cases() -> Vec<Case> {
    let text = include_str!("conformance/cases.yaml");
    serde_saphyr::from_str(text).expect("tests/conformance/cases.yaml parses")
}

/// `a.b.0.c`; a final `#` is the length of the array reached.
fn lookup<'a>(v: &'a Value, path: &str) -> Option<Value> {
    let mut cur: &'a Value = v;
    for seg in path.split('.') {
        if seg == "#" {
            return cur.as_array().map(|a| Value::from(a.len()));
        }
        cur = match (cur, seg.parse::<usize>()) {
            (Value::Array(a), Ok(i)) => a.get(i)?,
            _ => cur.get(seg)?,
        };
    }
    Some(cur.clone())
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

struct Run {
    ns: String,
    future: String,
    saved: HashMap<String, Value>,
}

impl Run {
    fn fill(&self, s: &str) -> String {
        let mut out = s.replace("{ns}", &self.ns).replace("{future}", &self.future);
        for (name, v) in &self.saved {
            let rv = v["metadata"]["resourceVersion"].as_str().unwrap_or_default();
            let uid = v["metadata"]["uid"].as_str().unwrap_or_default();
            out = out.replace(&format!("{{rv:{name}}}"), rv).replace(&format!("{{uid:{name}}}"), uid);
        }
        out
    }

    fn fill_value(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => Value::String(self.fill(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.fill_value(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (k.clone(), self.fill_value(x))).collect())
            }
            other => other.clone(),
        }
    }
}

struct Response {
    code: u16,
    warnings: Vec<String>,
    body: Value,
    raw: String,
}

async fn send(client: &kube::Client, run: &Run, case: &Case) -> Response {
    let ct = case.content_type.clone().unwrap_or_else(|| "application/json".into());
    let body = case.body.as_ref().map(|b| run.fill_value(b).to_string()).unwrap_or_default();
    let mut req = http::Request::builder().method(case.method.as_str()).uri(run.fill(&case.path));
    if !body.is_empty() {
        req = req.header("content-type", ct);
    }
    if let Some(a) = &case.accept {
        req = req.header("accept", a);
    }
    if let Some(ua) = &case.user_agent {
        req = req.header("user-agent", ua);
    }
    let req = req.body(body.into_bytes().into()).unwrap();
    let resp = client.send(req).await.expect("the request reached the server");
    let code = resp.status().as_u16();
    let warnings =
        resp.headers().get_all("warning").iter().map(|v| v.to_str().unwrap_or("").to_string()).collect();
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Response { code, warnings, body, raw }
}

/// Runs every case; returns the differences from the expectations, one line each.
async fn run_cases(client: &kube::Client, ns: &str) -> Vec<String> {
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24))
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut run = Run { ns: ns.to_string(), future, saved: HashMap::new() };
    let mut diffs = Vec::new();
    for case in cases() {
        let mut resp = send(client, &run, &case).await;
        if case.wait {
            for _ in 0..100 {
                if resp.code == case.expect.code {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                resp = send(client, &run, &case).await;
            }
        }
        let mut problems = Vec::new();
        let e = &case.expect;
        if resp.code != e.code {
            problems.push(format!("code {} (expected {})", resp.code, e.code));
        }
        if let Some(reason) = &e.reason {
            if resp.body["reason"].as_str() != Some(reason) {
                problems.push(format!("reason {} (expected {reason})", resp.body["reason"]));
            }
        }
        for (path, want) in &e.fields {
            let want = run.fill_value(want);
            match lookup(&resp.body, path) {
                Some(got) if same(&got, &want) => {}
                got => problems.push(format!("{path} = {} (expected {want})", got.unwrap_or(Value::Null))),
            }
        }
        for path in &e.present {
            if lookup(&resp.body, path).is_none_or(|v| v.is_null()) {
                problems.push(format!("{path} missing"));
            }
        }
        for path in &e.absent {
            if let Some(v) = lookup(&resp.body, path).filter(|v| !v.is_null()) {
                problems.push(format!("{path} = {v} (expected absent)"));
            }
        }
        let rv = |v: &Value| v["metadata"]["resourceVersion"].as_str().map(String::from);
        if let Some(name) = &e.rv_changed {
            if run.saved.get(name).and_then(rv) == rv(&resp.body) {
                problems.push(format!("resourceVersion did not change since {name}"));
            }
        }
        if let Some(name) = &e.rv_same {
            if run.saved.get(name).and_then(rv) != rv(&resp.body) {
                problems.push(format!("resourceVersion changed since {name}"));
            }
        }
        for w in &e.warnings {
            let w = w.replace("\\\"", "\"");
            if !resp.warnings.iter().any(|h| h.replace("\\\"", "\"").contains(&w)) {
                problems.push(format!("no warning {w:?} in {:?}", resp.warnings));
            }
        }
        if let Some(want) = &e.events {
            let got: Vec<String> = resp
                .raw
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|ev| ev["type"].as_str().map(String::from))
                .filter(|t| t != "BOOKMARK")
                .collect();
            if &got != want {
                problems.push(format!("watch events {got:?} (expected {want:?})"));
            }
        }
        if let Some(want) = &e.managed_fields {
            problems.extend(managed_fields_problems(&resp.body, want));
        }
        if let Some(name) = &case.save {
            run.saved.insert(name.clone(), resp.body.clone());
        }
        for p in problems {
            diffs.push(format!("{} {} [{}]: {p}", case.method, run.fill(&case.path), case.name));
        }
    }
    diffs
}

/// The response's managedFields against the expected entries: the same entries, in any order,
/// each equal to one expected but for its `time`, which every entry has.
fn managed_fields_problems(body: &Value, want: &[Value]) -> Vec<String> {
    let got = body["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let mut untimed = Vec::new();
    for mut entry in got {
        match entry.as_object_mut().and_then(|m| m.remove("time")) {
            Some(Value::String(t)) if t.parse::<jiff::Timestamp>().is_ok() => {}
            t => problems.push(format!("managedFields entry {entry} has time {t:?}")),
        }
        untimed.push(entry);
    }
    let mut missing: Vec<&Value> = Vec::new();
    for w in want {
        match untimed.iter().position(|g| g == w) {
            Some(i) => {
                untimed.remove(i);
            }
            None => missing.push(w),
        }
    }
    if !missing.is_empty() || !untimed.is_empty() {
        let show = |v: &[&Value]| v.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ");
        problems.push(format!(
            "managedFields: expected but not found [{}]; found but not expected [{}]",
            show(&missing),
            show(&untimed.iter().collect::<Vec<_>>())
        ));
    }
    problems
}

async fn cleanup(client: &kube::Client, ns: &str) {
    for path in [
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/confwidgets.conformance.example.com"
            .to_string(),
        format!("/api/v1/namespaces/{ns}"),
    ] {
        let req = http::Request::builder().method("DELETE").uri(path).body(Vec::new().into()).unwrap();
        let _ = client.send(req).await;
    }
    // A finalizer left on s1 by a failed run would hold the namespace: release it.
    let req = http::Request::builder()
        .method("PATCH")
        .uri(format!("/api/v1/namespaces/{ns}/secrets/s1"))
        .header("content-type", "application/merge-patch+json")
        .body(br#"{"metadata":{"finalizers":null}}"#.to_vec().into())
        .unwrap();
    let _ = client.send(req).await;
}

#[tokio::test]
async fn conformance_cases_hold_on_the_emulator() {
    let emu = KubeEmulator::start().await.unwrap();
    let diffs = run_cases(&emu.client(), "conformance").await;
    assert!(diffs.is_empty(), "the emulator differs from the recorded expectations:\n{}", diffs.join("\n"));
}

/// With E2E_KUBECONFIG set (when building and running): the same cases against that cluster;
/// each difference is printed.
#[tokio::test]
#[cfg_attr(not(e2e_real_cluster), ignore = "needs a real cluster: build and run with E2E_KUBECONFIG")]
async fn conformance_cases_against_a_real_cluster() {
    let path = std::env::var("E2E_KUBECONFIG").expect("E2E_KUBECONFIG names the cluster's kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("E2E_KUBECONFIG readable");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kubeconfig usable");
    let client = kube::Client::try_from(config).unwrap();
    let ns = format!("conformance-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let diffs = run_cases(&client, &ns).await;
    cleanup(&client, &ns).await;
    eprintln!("{} conformance cases against {path}: {} differences", cases().len(), diffs.len());
    for d in &diffs {
        eprintln!("  {d}");
    }
    assert!(diffs.is_empty(), "{} differences from the recorded expectations (listed above)", diffs.len());
}
