//! kubectl (a real client-go client) against the emulator. kubectl must be on PATH (the
//! project's machines have it): without it these tests fail, saying so. Uses real time with
//! bounded waits.

use kube_emulator::KubeEmulator;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: slacktokens.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: slacktokens
    singular: slacktoken
    kind: SlackToken
    shortNames: [st]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Secret
      type: string
      jsonPath: .spec.secretName
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [secretName]
            properties:
              secretName: {type: string}
          status:
            type: object
            x-kubernetes-preserve-unknown-fields: true
"#;

const CR: &str = r#"
apiVersion: example.com/v1
kind: SlackToken
metadata:
  name: team-a
  namespace: default
spec:
  secretName: team-a-token
"#;

struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    async fn run(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run kubectl ({e}): these tests need kubectl on PATH"));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(input.as_bytes()).await.unwrap();
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finished in time")
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, stdout, stderr) = self.run(args, stdin).await;
        assert!(ok, "kubectl {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}");
        stdout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_get_describe_annotate_delete_work() {
    let emu = KubeEmulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl { kubeconfig };

    let out = k.ok(&["apply", "-f", "-"], Some(CRD)).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/slacktokens.example.com created"),
        "{out}"
    );
    // With validation on (the default), kubectl finds fieldValidation support in the
    // OpenAPI v3 documents and lets the server validate strictly.
    let bogus = CR.replace("spec:\n", "spec:\n  bogus: 1\n");
    let (ok, _, stderr) = k.run(&["apply", "-f", "-"], Some(&bogus)).await;
    assert!(!ok && stderr.contains("strict decoding error: unknown field \"spec.bogus\""), "{stderr}");
    let out = k.ok(&["apply", "-f", "-"], Some(CR)).await;
    assert!(out.contains("slacktoken.example.com/team-a created"), "{out}");
    // Re-applying an unchanged manifest is a no-op.
    let out = k.ok(&["apply", "-f", "-"], Some(CR)).await;
    assert!(out.contains("unchanged"), "{out}");
    // `apply --server-side` after a client-side apply takes the client-side applier's
    // fields over, even with a changed value (they still hold what it last applied).
    let changed = CR.replace("team-a-token", "other");
    let out = k.ok(&["apply", "--server-side", "-f", "-"], Some(&changed)).await;
    assert!(out.contains("serverside-applied"), "{out}");
    // A value someone else changed since is a conflict.
    k.ok(
        &["patch", "slacktoken", "team-a", "--type=merge", "-p", r#"{"spec":{"secretName":"patched"}}"#],
        None,
    )
    .await;
    let (ok, _, stderr) = k.run(&["apply", "--server-side", "-f", "-"], Some(CR)).await;
    assert!(
        !ok && stderr.contains("Apply failed with 1 conflict") && stderr.contains("kubectl-patch"),
        "{stderr}"
    );
    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(CR)).await;

    let table = k.ok(&["get", "slacktokens"], None).await;
    assert!(table.contains("SECRET") && table.contains("team-a-token"), "{table}");
    let short = k.ok(&["get", "st", "team-a", "-o", "name"], None).await;
    assert_eq!(short.trim(), "slacktoken.example.com/team-a");
    let yaml = k.ok(&["get", "slacktoken", "team-a", "-o", "yaml"], None).await;
    assert!(yaml.contains("secretName: team-a-token") && yaml.contains("resourceVersion:"), "{yaml}");

    k.ok(&["annotate", "slacktoken", "team-a", "example.com/rotated=yes"], None).await;
    let ann = k
        .ok(
            &["get", "slacktoken", "team-a", "-o", "jsonpath={.metadata.annotations.example\\.com/rotated}"],
            None,
        )
        .await;
    assert_eq!(ann, "yes");

    // An event recorded by kube-runtime (events.k8s.io/v1) shows in `get events` and `describe`.
    {
        use kube::runtime::events::{Event, EventType, Recorder, Reporter};
        let client = emu.client();
        let ar = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
            "example.com",
            "v1",
            "SlackToken",
        ));
        let api: kube::Api<kube::core::DynamicObject> =
            kube::Api::namespaced_with(client.clone(), "default", &ar);
        let obj = api.get("team-a").await.unwrap();
        let reference = kube::Resource::object_ref(&obj, &ar);
        let recorder =
            Recorder::new(client, Reporter { controller: "slack-token-operator".into(), instance: None });
        let ev = Event {
            type_: EventType::Normal,
            reason: "Rotated".into(),
            note: Some("token rotated".into()),
            action: "Rotate".into(),
            secondary: None,
        };
        recorder.publish(&ev, &reference).await.unwrap();
    }
    let events = k.ok(&["get", "events"], None).await;
    assert!(
        events.contains("Rotated")
            && events.contains("slacktoken/team-a")
            && events.contains("token rotated"),
        "{events}"
    );
    let described = k.ok(&["describe", "slacktoken", "team-a"], None).await;
    assert!(
        described.contains("team-a-token") && described.contains("Name:") && described.contains("Rotated"),
        "{described}"
    );

    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: tok\nstringData:\n  token: xoxb-1\n";
    k.ok(&["apply", "-f", "-"], Some(secret)).await;
    k.ok(&["annotate", "secret", "tok", "a=b"], None).await;
    let secrets = k.ok(&["get", "secrets"], None).await;
    assert!(secrets.contains("tok") && secrets.contains("Opaque"), "{secrets}");
    let described = k.ok(&["describe", "secret", "tok"], None).await;
    assert!(described.contains("token:"), "{described}");

    let (ok, _, stderr) = k.run(&["get", "slacktoken", "missing"], None).await;
    assert!(!ok && stderr.contains("NotFound"), "{stderr}");

    k.ok(&["delete", "slacktoken", "team-a", "--timeout=30s"], None).await;
    let (ok, _, _) = k.run(&["get", "slacktoken", "team-a"], None).await;
    assert!(!ok);
    k.ok(&["delete", "-f", "-", "--timeout=30s"], Some(CRD)).await;
    let (ok, _, stderr) = k.run(&["get", "slacktokens"], None).await;
    assert!(!ok, "{stderr}");
    let ns = k.ok(&["get", "namespaces"], None).await;
    assert!(ns.contains("kube-system") && ns.contains("Active"), "{ns}");
}

/// A CRD and a Secret with its instance in one `kind: List`.
const LIST: &str = r#"{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c1", "namespace": "default"},
   "stringData": {"clientId": "1"}},
  {"apiVersion": "example.com/v1", "kind": "SlackToken", "metadata": {"name": "b1", "namespace": "default"},
   "spec": {"secretName": "b1-token"}}
]}"#;

/// `kubectl explain` reads the kinds' schemas from the OpenAPI v3 documents (found by their
/// `x-kubernetes-group-version-kind`), `--output=plaintext-openapiv2` from `/openapi/v2`; a
/// `kind: List` is validated by kubectl itself against `/openapi/v2` (the server cannot be asked
/// to validate a List), with kubectl's own messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explains_kinds_and_validates_a_list_as_against_a_cluster() {
    let emu = KubeEmulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl { kubeconfig };
    let documented = CRD.replace(
        "secretName: {type: string}",
        "secretName: {type: string, description: Name of the Secret the token is published to.}",
    );
    k.ok(&["apply", "-f", "-"], Some(&documented)).await;

    let out = k.ok(&["explain", "slacktoken.spec.secretName"], None).await;
    assert!(out.contains("KIND:       SlackToken") && out.contains("VERSION:    v1"), "{out}");
    assert!(out.contains("Name of the Secret the token is published to."), "{out}");
    let out = k.ok(&["explain", "slacktoken.spec"], None).await;
    assert!(out.contains("secretName\t<string> -required-"), "{out}");
    let out = k.ok(&["explain", "slacktoken.metadata.labels"], None).await;
    assert!(out.contains("Map of string keys and values"), "ObjectMeta's own description: {out}");
    let out = k.ok(&["explain", "secret"], None).await;
    assert!(out.contains("Secret holds secret data of a certain type"), "{out}");
    assert!(out.contains("stringData\t<map[string]string>"), "{out}");
    let out = k.ok(&["explain", "deployment.spec.template.spec.containers.image"], None).await;
    assert!(out.contains("Container image name"), "{out}");
    let out = k.ok(&["explain", "secret", "--output=plaintext-openapiv2"], None).await;
    assert!(out.contains("Secret holds secret data of a certain type"), "{out}");
    let out = k.ok(&["explain", "slacktoken.spec", "--output=plaintext-openapiv2"], None).await;
    assert!(out.contains("secretName\t<string> -required-"), "{out}");

    let out = k.ok(&["create", "-f", "-"], Some(LIST)).await;
    assert!(out.contains("secret/c1 created") && out.contains("slacktoken.example.com/b1 created"), "{out}");
    let changed = LIST.replace("b1-token", "b1-other");
    let out = k.ok(&["apply", "-f", "-"], Some(&changed)).await;
    assert!(out.contains("slacktoken.example.com/b1 configured"), "{out}");
    let secret_name = k.ok(&["get", "slacktoken", "b1", "-o", "jsonpath={.spec.secretName}"], None).await;
    assert_eq!(secret_name, "b1-other");

    // What kubectl refuses on a real cluster before anything is sent, it refuses here.
    let unknown = LIST.replace(r#""stringData""#, r#""bogus": 1, "stringData""#);
    let (ok, _, stderr) = k.run(&["create", "-f", "-"], Some(&unknown)).await;
    assert!(
        !ok && stderr
            .contains(r#"ValidationError(Secret): unknown field "bogus" in io.k8s.api.core.v1.Secret"#),
        "{stderr}"
    );
    let missing = LIST.replace(r#""secretName": "b1-token""#, r#""secretNam": "b1-token""#);
    let (ok, _, stderr) = k.run(&["apply", "-f", "-"], Some(&missing)).await;
    assert!(
        !ok && stderr.contains(r#"missing required field "secretName" in com.example.v1.SlackToken.spec"#),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_impersonation_is_authorized_by_rbac() {
    let emu =
        KubeEmulator::start_with(kube_emulator::Config { rbac: true, ..Default::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl { kubeconfig };
    let rbac = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: secrets-reader, namespace: default}
rules:
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: operator, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: secrets-reader}
subjects:
- {kind: ServiceAccount, name: operator, namespace: ops}
"#;
    k.ok(&["apply", "-f", "-"], Some(rbac)).await;
    let as_sa = "--as=system:serviceaccount:ops:operator";
    k.ok(&[as_sa, "get", "secrets"], None).await;
    let (ok, _, stderr) = k.run(&[as_sa, "get", "namespaces"], None).await;
    assert!(!ok && stderr.contains("Forbidden"), "{stderr}");
    assert!(stderr.contains("cannot list resource \"namespaces\""), "{stderr}");

    // `kubectl auth can-i` (SelfSubjectAccessReview) and `whoami` (SelfSubjectReview).
    assert_eq!(k.ok(&[as_sa, "auth", "can-i", "list", "secrets"], None).await.trim(), "yes");
    let (ok, stdout, _) = k.run(&[as_sa, "auth", "can-i", "delete", "secrets"], None).await;
    assert!(!ok && stdout.trim() == "no", "{stdout}");
    let (ok, stdout, _) = k.run(&["--as=alice", "auth", "can-i", "get", "secrets"], None).await;
    assert!(!ok && stdout.trim() == "no", "{stdout}");
    assert_eq!(k.ok(&["auth", "can-i", "delete", "namespaces"], None).await.trim(), "yes", "the admin");
    let who = k.ok(&[as_sa, "auth", "whoami"], None).await;
    assert!(
        who.contains("system:serviceaccount:ops:operator") && who.contains("system:serviceaccounts:ops"),
        "{who}"
    );
    let list = k.ok(&[as_sa, "auth", "can-i", "--list", "-n", "default"], None).await;
    assert!(list.contains("secrets") && list.contains("[get list watch]"), "{list}");
    // A user bound by name through `kubectl create clusterrolebinding` (protobuf bodies).
    k.ok(&["create", "clusterrole", "ns-reader", "--verb=get,list", "--resource=namespaces"], None).await;
    k.ok(&["create", "clusterrolebinding", "alice", "--clusterrole=ns-reader", "--user=alice"], None).await;
    assert_eq!(k.ok(&["--as=alice", "auth", "can-i", "list", "namespaces"], None).await.trim(), "yes");
    k.ok(&["--as=alice", "get", "namespaces"], None).await;
    let (ok, _, stderr) = k.run(&["--as=alice", "delete", "namespace", "kube-public"], None).await;
    assert!(!ok && stderr.contains("User \"alice\" cannot delete resource \"namespaces\""), "{stderr}");
}

/// `kubectl create …` uses client-go's typed clients, which send protobuf bodies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_commands_send_protobuf_and_work() {
    let emu = KubeEmulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl { kubeconfig };

    let out = k.ok(&["create", "namespace", "bots"], None).await;
    assert!(out.contains("namespace/bots created"), "{out}");
    let out = k
        .ok(
            &[
                "create",
                "secret",
                "generic",
                "bot-creds",
                "-n",
                "bots",
                "--from-literal=client-id=123",
                "--from-literal=client-secret=s3cr3t",
            ],
            None,
        )
        .await;
    assert!(out.contains("secret/bot-creds created"), "{out}");
    let id =
        k.ok(&["get", "secret", "bot-creds", "-n", "bots", "-o", "jsonpath={.data.client-id}"], None).await;
    assert_eq!(id, "MTIz", "base64 of 123");
    let file = dir.path().join("refresh-token");
    std::fs::write(&file, "xoxe-1-abc\n").unwrap();
    let from_file = format!("--from-file=token={}", file.display());
    k.ok(&["create", "secret", "generic", "from-file", &from_file], None).await;
    let data = k.ok(&["get", "secret", "from-file", "-o", "jsonpath={.data.token}"], None).await;
    assert_eq!(data, "eG94ZS0xLWFiYwo=");
    let out = k.ok(&["create", "configmap", "settings", "--from-literal=channel=#ops"], None).await;
    assert!(out.contains("configmap/settings created"), "{out}");
    let ch = k.ok(&["get", "configmap", "settings", "-o", "jsonpath={.data.channel}"], None).await;
    assert_eq!(ch, "#ops");
    let out = k.ok(&["create", "serviceaccount", "operator"], None).await;
    assert!(out.contains("serviceaccount/operator created"), "{out}");
    let out = k.ok(&["create", "role", "reader", "--verb=get,list", "--resource=secrets"], None).await;
    assert!(out.contains("role.rbac.authorization.k8s.io/reader created"), "{out}");
    let groups = k.ok(&["get", "role", "reader", "-o", "jsonpath={.rules[0].apiGroups}"], None).await;
    assert_eq!(groups, r#"[""]"#, "the core group is an empty string, not left out");
    let out = k
        .ok(
            &["create", "rolebinding", "operator", "--role=reader", "--serviceaccount=default:operator"],
            None,
        )
        .await;
    assert!(out.contains("rolebinding.rbac.authorization.k8s.io/operator created"), "{out}");
    let token = k.ok(&["create", "token", "operator", "--duration=20m"], None).await;
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    let (ok, _, stderr) = k.run(&["create", "token", "missing"], None).await;
    assert!(!ok && stderr.contains("serviceaccounts \"missing\" not found"), "{stderr}");
    // The same name again: the real AlreadyExists message.
    let (ok, _, stderr) = k.run(&["create", "configmap", "settings"], None).await;
    assert!(!ok && stderr.contains("configmaps \"settings\" already exists"), "{stderr}");

    let out = k.ok(&["delete", "secret", "from-file"], None).await;
    assert!(out.contains("secret \"from-file\" deleted"), "{out}");
    let out = k.ok(&["delete", "namespace", "bots", "--timeout=30s"], None).await;
    assert!(out.contains("namespace \"bots\" deleted"), "{out}");
    let (ok, _, _) = k.run(&["get", "secret", "bot-creds", "-n", "bots"], None).await;
    assert!(!ok);
}

/// What kubectl shows of managedFields: nothing by default, each writer's entry with
/// `--show-managed-fields` (kubectl's own managers: `kubectl-create`, `kubectl-label`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_shows_each_writer_s_managed_fields_when_asked() {
    let emu = KubeEmulator::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    emu.write_kubeconfig(&kubeconfig).unwrap();
    let k = Kubectl { kubeconfig };

    k.ok(&["create", "secret", "generic", "mf", "--from-literal=a=b"], None).await;
    k.ok(&["label", "secret", "mf", "team=x"], None).await;
    let hidden = k.ok(&["get", "secret", "mf", "-o", "yaml"], None).await;
    assert!(!hidden.contains("managedFields"), "{hidden}");
    let shown = k.ok(&["get", "secret", "mf", "-o", "json", "--show-managed-fields"], None).await;
    let obj: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let entries = obj["metadata"]["managedFields"].as_array().unwrap_or_else(|| panic!("{shown}"));
    let by =
        |m: &str| entries.iter().find(|e| e["manager"] == m).unwrap_or_else(|| panic!("no {m}: {shown}"));
    assert_eq!(by("kubectl-create")["operation"], "Update");
    assert_eq!(
        by("kubectl-create")["fieldsV1"],
        serde_json::json!({"f:data": {".": {}, "f:a": {}}, "f:type": {}})
    );
    assert_eq!(
        by("kubectl-label")["fieldsV1"],
        serde_json::json!({"f:metadata": {"f:labels": {".": {}, "f:team": {}}}})
    );
    assert_eq!(entries.len(), 2, "{shown}");
}
