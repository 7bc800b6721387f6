//! `slack-token-operator emulate`: both emulators in one process, usable by kubectl and over HTTP.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};
use testground::kubectl;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn emulate_serves_kubectl_and_the_slack_admin_api_after_printing_ready() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let child = Command::new(env!("CARGO_BIN_EXE_slack-token-operator"))
        .args(["emulate", "--kubeconfig"])
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .spawn()
        .expect("emulate starts");
    let mut child = Killed(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("ready"), "first line says ready: {line}");
    let slack_url =
        line.split_whitespace().find(|w| w.contains("/api/")).expect("slack URL printed").to_owned();

    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/slacktoken.yaml");
    let out = kubectl(&kubeconfig, &["apply", "-f", crd]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sample = "apiVersion: slack.rotator.dev/v1alpha1\nkind: SlackToken\nmetadata: {name: bot, namespace: default}\nspec: {type: OAuth, credentialsRef: {name: c}, secretRef: {name: o}}\n";
    let file = dir.path().join("stk.yaml");
    std::fs::write(&file, sample).unwrap();
    let out = kubectl(&kubeconfig, &["apply", "-f", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = kubectl(&kubeconfig, &["get", "stk", "bot", "-o", "jsonpath={.spec.secretRef.key}"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "token", "schema default applied");

    // `kubectl explain` as on a cluster: the CRD's field descriptions, and built-in kinds.
    let out = kubectl(&kubeconfig, &["explain", "slacktoken.spec.credentialsRef"]);
    let explained = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(explained.contains("FIELD: credentialsRef <Object>"), "{explained}");
    assert!(explained.contains("Secret in the same namespace holding the rotation state"), "{explained}");
    let out = kubectl(&kubeconfig, &["explain", "secret"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Secret holds secret data"), "{out:?}");
    // A `kind: List`, validated by kubectl against /openapi/v2 (no --validate=false).
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
      {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "l", "namespace": "default"}, "stringData": {"clientId": "1"}},
      {"apiVersion": "slack.rotator.dev/v1alpha1", "kind": "SlackToken", "metadata": {"name": "l", "namespace": "default"},
       "spec": {"type": "OAuth", "credentialsRef": {"name": "l"}, "secretRef": {"name": "l-token"}}}]}"#;
    let file = dir.path().join("list.json");
    std::fs::write(&file, list).unwrap();
    for verb in ["create", "apply"] {
        let out = kubectl(&kubeconfig, &[verb, "-f", file.to_str().unwrap()]);
        assert!(out.status.success(), "{verb}: {}", String::from_utf8_lossy(&out.stderr));
    }

    // The README's first step, as on a cluster (kubectl sends protobuf here).
    let out = kubectl(&kubeconfig, &["create", "secret", "generic", "c", "--from-literal=client-id=1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // RBAC is on: an impersonated user without bindings is refused, the admin is not.
    let out = kubectl(&kubeconfig, &["--as=alice", "get", "secrets"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Forbidden"));
    let out = kubectl(&kubeconfig, &["--as=alice", "auth", "can-i", "get", "secrets"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let admin = slack_url.replace("/api/", "/admin/");
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let app: serde_json::Value = http
            .post(format!("{admin}apps"))
            .json(&serde_json::json!({"token_rotation": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(app["client_id"].is_string(), "an app was created: {app}");
    });
}
