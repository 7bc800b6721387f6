//! Checks of the Helm chart in `charts/slack-token-operator` and of the plain
//! manifests in `deploy/install.yaml` rendered from it.
//!
//! There is no `helm` binary: `scripts/helm` drives Helm's Go SDK through the
//! PyPI package `helm-python-sdk`, which it installs into `.venv/helm` on first
//! use (the only network access these tests need). Every rendered object is
//! parsed into its k8s-openapi type, and must serialise back to exactly what
//! was rendered, so a misspelt field fails here instead of being dropped by
//! the API server. The last tests run the real operator as the chart's
//! ServiceAccount, holding only the rendered RBAC, against the Kubernetes
//! emulator (which enforces RBAC) and the Slack emulator.

mod markdown;
mod scrape;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

const CHART: &str = "charts/slack-token-operator";
const RELEASE: &str = "sto";
const RELEASE_NAMESPACE: &str = "operators";
/// The full name the chart gives objects of release `sto`.
const FULLNAME: &str = "sto-slack-token-operator";
const LEASE_NAME: &str = "slack-token-operator";
/// The default of `metrics.prometheusRule.runbookBaseUrl`: the book's runbooks page.
const RUNBOOKS: &str =
    "https://github.com/slack-token-operator/slack-token-operator/blob/main/docs/src/operations/runbooks.md";

/// The repository root. Read at run time: the shared target directory can hand one worktree a
/// test binary compiled in another, whose compile-time `env!("CARGO_MANIFEST_DIR")` would point
/// at the other worktree's files.
fn repo() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        std::env::var_os("CARGO_MANIFEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
    })
}

/// Installs the Helm SDK once per test run (`scripts/helm bootstrap`), so that
/// a failed install is reported once, clearly, instead of retried by every test.
fn bootstrap() {
    static BOOTSTRAP: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BOOTSTRAP.get_or_init(|| {
        let output = Command::new(repo().join("scripts/helm"))
            .arg("bootstrap")
            .current_dir(repo())
            .output()
            .map_err(|e| format!("cannot run scripts/helm (is python3 on PATH?): {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "installing the Helm SDK failed ({}): the chart tests need Python 3.10+ and, once, network \
                 access to PyPI for helm-python-sdk (installed into .venv/helm).\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// Runs `scripts/helm` with `args`; panics with its output unless it exits 0.
fn helm(args: &[&str]) -> String {
    let output = run_helm(args);
    assert!(
        output.status.success(),
        "`scripts/helm {}` failed ({}).\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    String::from_utf8(output.stdout).expect("scripts/helm prints UTF-8")
}

fn run_helm(args: &[&str]) -> std::process::Output {
    bootstrap();
    Command::new(repo().join("scripts/helm"))
        .args(args)
        .current_dir(repo())
        // No test ever talks to a cluster, whatever the developer's kubeconfig says.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/helm (is python3 on PATH?): {e}"))
}

/// Writes `values` to a temporary values file (JSON is YAML).
fn values_file(values: &Value) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().expect("temp values file");
    serde_json::to_writer_pretty(&mut file, values).expect("write values");
    file
}

/// Every object of one render, in output order.
struct Rendered {
    objects: Vec<Value>,
}

impl Rendered {
    fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    /// All objects of `kind`, typed.
    fn all<T: DeserializeOwned + Serialize>(&self, kind: &str) -> Vec<T> {
        self.of_kind(kind).into_iter().map(typed).collect()
    }

    /// The single object of `kind`, typed.
    fn one<T: DeserializeOwned + Serialize>(&self, kind: &str) -> T {
        let mut all = self.all(kind);
        assert_eq!(all.len(), 1, "expected exactly one {kind}");
        all.remove(0)
    }

    fn deployment(&self) -> Deployment {
        self.one("Deployment")
    }

    fn container(&self) -> Container {
        let pod = self.deployment().spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers.len(), 1, "the operator pod has one container");
        assert!(pod.init_containers.is_none(), "no init containers");
        pod.containers.into_iter().next().unwrap()
    }

    fn args(&self) -> Vec<String> {
        self.container().args.expect("container args")
    }

    fn env(&self, name: &str) -> Option<k8s_openapi::api::core::v1::EnvVar> {
        self.container().env.unwrap_or_default().into_iter().find(|e| e.name == name)
    }

    fn kinds(&self) -> Vec<String> {
        self.objects.iter().map(|o| o["kind"].as_str().unwrap().to_owned()).collect()
    }
}

fn parse_stream(yaml: &str) -> Vec<Value> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(yaml).expect("rendered YAML parses");
    documents.into_iter().filter(|v| !v.is_null()).collect()
}

/// Renders the chart as release `sto` in namespace `operators` with `values`.
fn render(values: Value) -> Rendered {
    render_in(RELEASE_NAMESPACE, values)
}

/// Renders the chart as release `sto` in `namespace` with `values`.
fn render_in(namespace: &str, values: Value) -> Rendered {
    let file = values_file(&values);
    let yaml = helm(&[
        "template",
        CHART,
        "--name",
        RELEASE,
        "--namespace",
        namespace,
        "-f",
        file.path().to_str().unwrap(),
    ]);
    let objects = parse_stream(&yaml);
    assert!(!objects.is_empty(), "the chart renders objects");
    Rendered { objects }
}

/// Parses `value` into `T` and requires that `T` serialises back to the same
/// JSON: k8s-openapi ignores unknown fields, so this catches misspelt ones.
fn typed<T: DeserializeOwned + Serialize>(value: &Value) -> T {
    let object: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{} {} does not parse: {e}", value["kind"], value["metadata"]["name"]));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(
        &back, value,
        "{} {} has fields its Kubernetes type does not know (or wrongly typed values)",
        value["kind"], value["metadata"]["name"]
    );
    object
}

macro_rules! scenario {
    ($name:ident, $values:expr) => {
        fn $name() -> &'static Rendered {
            static RENDERED: OnceLock<Rendered> = OnceLock::new();
            RENDERED.get_or_init(|| render($values))
        }
    };
}

scenario!(defaults, json!({}));
scenario!(namespaced, json!({ "watchNamespaces": ["team-a", "team-b"] }));
scenario!(two_replicas, json!({ "replicaCount": 2 }));
scenario!(metrics_off, json!({ "metrics": { "enabled": false, "serviceMonitor": { "enabled": true } } }));
scenario!(
    service_monitor_on,
    json!({ "metrics": { "serviceMonitor": { "enabled": true, "labels": { "release": "prometheus" } } } })
);
scenario!(everything_on, everything_on_values());
scenario!(
    monitoring_on,
    json!({ "metrics": { "prometheusRule": { "enabled": true, "labels": { "release": "prometheus" } },
                         "grafanaDashboard": { "enabled": true } } })
);
scenario!(restarts_on, json!({ "rolloutRestart": { "enabled": true } }));
scenario!(
    restarts_on_namespaced,
    json!({ "rolloutRestart": { "enabled": true }, "watchNamespaces": ["team-a"] })
);

/// Every optional feature on, namespaced mode including the release namespace.
fn everything_on_values() -> Value {
    json!({
        "replicaCount": 3,
        "watchNamespaces": ["team-a", RELEASE_NAMESPACE],
        "metrics": { "serviceMonitor": { "enabled": true } },
        "networkPolicy": { "enabled": true },
        "slackApiUrl": "https://slack-gov.com/api/",
        "logFormat": "text",
        "logLevel": "debug",
        "healthCheckInterval": "30m",
        "extraEnv": [{ "name": "HTTPS_PROXY", "value": "http://proxy.internal:3128" }],
        "image": { "repository": "registry.example/sto", "tag": "1.2.3", "pullPolicy": "Always" },
        "imagePullSecrets": [{ "name": "regcred" }],
        "podAnnotations": { "example.com/a": "b" },
        "podLabels": { "team": "platform" },
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": { "kubernetes.io/os": "linux" },
        "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule" }],
        "serviceAccount": { "annotations": { "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x" } },
        "rolloutRestart": { "enabled": true },
    })
}

fn all_scenarios() -> Vec<(&'static str, &'static Rendered)> {
    vec![
        ("defaults", defaults()),
        ("namespaced", namespaced()),
        ("two replicas", two_replicas()),
        ("metrics off", metrics_off()),
        ("service monitor on", service_monitor_on()),
        ("everything on", everything_on()),
        ("monitoring on", monitoring_on()),
        ("restarts on", restarts_on()),
        ("restarts on, namespaced", restarts_on_namespaced()),
    ]
}

// ---------------------------------------------------------------------------
// RBAC

/// One permission: (apiGroup, resource, verb, resourceName).
type Grant = (String, String, String, Option<String>);

fn grants(rules: &[PolicyRule]) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none(), "no nonResourceURLs: {rule:?}");
        let names: Vec<Option<String>> = match &rule.resource_names {
            Some(names) => names.iter().cloned().map(Some).collect(),
            None => vec![None],
        };
        for group in rule.api_groups.as_deref().expect("apiGroups set") {
            for resource in rule.resources.as_deref().expect("resources set") {
                for verb in &rule.verbs {
                    for name in &names {
                        for part in [group, resource, verb].into_iter().chain(name) {
                            assert!(!part.contains('*'), "wildcard in RBAC rule: {rule:?}");
                        }
                        out.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

fn expand(group: &str, resources: &[&str], verbs: &[&str], name: Option<&str>) -> Vec<Grant> {
    let mut out = Vec::new();
    for resource in resources {
        for verb in verbs {
            out.push((group.into(), (*resource).into(), (*verb).into(), name.map(Into::into)));
        }
    }
    out
}

/// What the operator needs wherever it watches SlackTokens.
fn watch_grants() -> BTreeSet<Grant> {
    [
        // patch: the revokeOnDelete finalizer lives in the SlackToken's metadata.
        expand("slack.rotator.dev", &["slacktokens"], &["get", "list", "watch", "patch"], None),
        expand("slack.rotator.dev", &["slacktokens/status"], &["patch"], None),
        // Checked by the OwnerReferencesPermissionEnforcement admission plugin (e.g. OpenShift)
        // when an output Secret names its SlackToken as owner with blockOwnerDeletion.
        expand("slack.rotator.dev", &["slacktokens/finalizers"], &["update"], None),
        expand("", &["secrets"], &["get", "list", "watch", "create", "update", "patch"], None),
        // kube-runtime's Recorder writes events.k8s.io/v1 only.
        expand("events.k8s.io", &["events"], &["create", "patch"], None),
    ]
    .concat()
    .into_iter()
    .collect()
}

/// What `rolloutRestart.enabled` adds wherever the operator watches SlackTokens: one pod-template
/// patch per workload.
fn restart_grants() -> BTreeSet<Grant> {
    expand("apps", &["deployments", "statefulsets", "daemonsets"], &["patch"], None).into_iter().collect()
}

/// What leader election needs, in the release namespace only. The operator creates the Lease if
/// missing, then reads it and takes, renews and releases it with resourceVersion-guarded updates.
fn lease_grants() -> BTreeSet<Grant> {
    [
        expand("coordination.k8s.io", &["leases"], &["create"], None),
        expand("coordination.k8s.io", &["leases"], &["get", "update"], Some(LEASE_NAME)),
    ]
    .concat()
    .into_iter()
    .collect()
}

fn role_in<'a>(roles: &'a [Role], namespace: &str, name: &str) -> &'a Role {
    roles
        .iter()
        .find(|r| {
            r.metadata.namespace.as_deref() == Some(namespace) && r.metadata.name.as_deref() == Some(name)
        })
        .unwrap_or_else(|| panic!("no Role {namespace}/{name}"))
}

fn assert_bound_to_operator(
    subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>,
    role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
    kind: &str,
    name: &str,
) {
    assert_eq!(role_ref.kind, kind);
    assert_eq!(role_ref.name, name);
    assert_eq!(role_ref.api_group, "rbac.authorization.k8s.io");
    let subjects = subjects.as_deref().expect("subjects");
    assert_eq!(subjects.len(), 1, "bound to the operator's ServiceAccount only");
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, FULLNAME);
    assert_eq!(subjects[0].namespace.as_deref(), Some(RELEASE_NAMESPACE));
}

#[test]
fn rendered_rbac_grants_exactly_the_rules_the_operator_needs() {
    let r = defaults();
    let cluster_role: ClusterRole = r.one("ClusterRole");
    assert_eq!(cluster_role.metadata.name.as_deref(), Some(FULLNAME));
    assert!(cluster_role.aggregation_rule.is_none());
    assert_eq!(grants(cluster_role.rules.as_deref().unwrap()), watch_grants());

    let binding: ClusterRoleBinding = r.one("ClusterRoleBinding");
    assert_bound_to_operator(&binding.subjects, &binding.role_ref, "ClusterRole", FULLNAME);

    // One replica: no leader election, so no Lease permissions at all.
    assert!(r.of_kind("Role").is_empty(), "no Roles with default values");
    assert!(r.of_kind("RoleBinding").is_empty(), "no RoleBindings with default values");
}

#[test]
fn namespaced_mode_grants_one_role_per_watched_namespace_and_nothing_cluster_wide() {
    let r = namespaced();
    assert!(r.of_kind("ClusterRole").is_empty(), "no ClusterRole in namespaced mode");
    assert!(r.of_kind("ClusterRoleBinding").is_empty(), "no ClusterRoleBinding in namespaced mode");

    let roles: Vec<Role> = r.all("Role");
    assert_eq!(roles.len(), 2, "one Role per watched namespace");
    let bindings: Vec<RoleBinding> = r.all("RoleBinding");
    assert_eq!(bindings.len(), 2, "one RoleBinding per watched namespace");
    for namespace in ["team-a", "team-b"] {
        let role = role_in(&roles, namespace, FULLNAME);
        assert_eq!(grants(role.rules.as_deref().unwrap()), watch_grants());
        let binding = bindings
            .iter()
            .find(|b| b.metadata.namespace.as_deref() == Some(namespace))
            .unwrap_or_else(|| panic!("no RoleBinding in {namespace}"));
        assert_bound_to_operator(&binding.subjects, &binding.role_ref, "Role", FULLNAME);
    }

    let args = r.args();
    let namespace_flags: Vec<&String> = args.iter().filter(|a| a.starts_with("--namespace")).collect();
    assert_eq!(namespace_flags, ["--namespace=team-a", "--namespace=team-b"]);
    assert!(
        defaults().args().iter().all(|a| !a.starts_with("--namespace")),
        "cluster-wide mode passes no --namespace flag"
    );
}

#[test]
fn lease_permissions_are_a_role_in_the_release_namespace_only_with_leader_election() {
    let r = two_replicas();
    let roles: Vec<Role> = r.all("Role");
    assert_eq!(roles.len(), 1, "only the leader-election Role in cluster-wide mode");
    let lease_role_name = format!("{FULLNAME}-leader-election");
    let role = role_in(&roles, RELEASE_NAMESPACE, &lease_role_name);
    assert_eq!(grants(role.rules.as_deref().unwrap()), lease_grants());
    let binding: RoleBinding = r.one("RoleBinding");
    assert_eq!(binding.metadata.namespace.as_deref(), Some(RELEASE_NAMESPACE));
    assert_bound_to_operator(&binding.subjects, &binding.role_ref, "Role", &lease_role_name);

    // Leases never appear in a ClusterRole, in any combination of values.
    for (scenario, r) in all_scenarios() {
        for cluster_role in r.all::<ClusterRole>("ClusterRole") {
            let leases = grants(cluster_role.rules.as_deref().unwrap())
                .into_iter()
                .filter(|g| g.1 == "leases")
                .count();
            assert_eq!(leases, 0, "{scenario}: Lease permissions in a ClusterRole");
        }
    }

    // Namespaced mode watching the release namespace too: the lease Role stays separate.
    let roles: Vec<Role> = everything_on().all("Role");
    assert_eq!(roles.len(), 3);
    assert_eq!(
        grants(role_in(&roles, RELEASE_NAMESPACE, &lease_role_name).rules.as_deref().unwrap()),
        lease_grants()
    );
    assert_eq!(
        grants(role_in(&roles, RELEASE_NAMESPACE, FULLNAME).rules.as_deref().unwrap()),
        watch_grants().union(&restart_grants()).cloned().collect(),
        "the watch rules, and the rollout restarts everything_on turns on"
    );
}

#[test]
fn workload_patch_rights_are_rendered_only_when_rollout_restarts_are_enabled() {
    for (scenario, r) in all_scenarios() {
        let mut rules: Vec<PolicyRule> = Vec::new();
        for role in r.all::<ClusterRole>("ClusterRole") {
            rules.extend(role.rules.unwrap_or_default());
        }
        for role in r.all::<Role>("Role") {
            rules.extend(role.rules.unwrap_or_default());
        }
        let apps: BTreeSet<Grant> = grants(&rules).into_iter().filter(|g| g.0 == "apps").collect();
        let enabled = scenario.starts_with("restarts on") || scenario == "everything on";
        let expected = if enabled { restart_grants() } else { BTreeSet::new() };
        assert_eq!(apps, expected, "{scenario}");
    }
    let cluster_role: ClusterRole = restarts_on().one("ClusterRole");
    let expected: BTreeSet<Grant> = watch_grants().union(&restart_grants()).cloned().collect();
    assert_eq!(grants(cluster_role.rules.as_deref().unwrap()), expected, "with the rest, cluster-wide");
    let role = role_in(&restarts_on_namespaced().all::<Role>("Role"), "team-a", FULLNAME).clone();
    assert_eq!(grants(role.rules.as_deref().unwrap()), expected, "per watched namespace when namespaced");
}

#[test]
fn no_combination_of_values_grants_more_than_the_operator_needs() {
    let allowed: BTreeSet<Grant> =
        watch_grants().union(&lease_grants()).chain(&restart_grants()).cloned().collect();
    for (scenario, r) in all_scenarios() {
        let mut rules: Vec<PolicyRule> = Vec::new();
        for role in r.all::<ClusterRole>("ClusterRole") {
            rules.extend(role.rules.unwrap_or_default());
        }
        for role in r.all::<Role>("Role") {
            rules.extend(role.rules.unwrap_or_default());
        }
        let extra: Vec<Grant> = grants(&rules).difference(&allowed).cloned().collect();
        assert!(extra.is_empty(), "{scenario}: unexpected permissions {extra:?}");
    }
}

// ---------------------------------------------------------------------------
// Deployment

#[test]
fn deployment_runs_as_non_root_with_read_only_root_filesystem() {
    for (scenario, r) in all_scenarios() {
        let pod = r.deployment().spec.unwrap().template.spec.unwrap();
        let pod_security = pod.security_context.expect("pod securityContext");
        assert_eq!(pod_security.run_as_non_root, Some(true), "{scenario}");
        assert_eq!(pod_security.run_as_user, Some(65532), "{scenario}");
        assert_eq!(pod_security.run_as_group, Some(65532), "{scenario}");
        assert_eq!(pod_security.seccomp_profile.unwrap().type_, "RuntimeDefault", "{scenario}");
        assert_ne!(pod.host_network, Some(true), "{scenario}");
        assert_ne!(pod.host_pid, Some(true), "{scenario}");
        // The only volume is the crash journal, in memory; the root filesystem stays read-only.
        for volume in pod.volumes.iter().flatten() {
            assert_eq!(volume.name, "journal", "{scenario}");
            assert_eq!(
                volume.empty_dir.as_ref().and_then(|e| e.medium.as_deref()),
                Some("Memory"),
                "{scenario}"
            );
        }

        let security = r.container().security_context.expect("container securityContext");
        assert_eq!(security.read_only_root_filesystem, Some(true), "{scenario}");
        assert_eq!(security.allow_privilege_escalation, Some(false), "{scenario}");
        assert_ne!(security.privileged, Some(true), "{scenario}");
        assert_eq!(security.run_as_non_root, Some(true), "{scenario}");
        let capabilities = security.capabilities.expect("capabilities");
        assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]), "{scenario}");
        assert!(capabilities.add.is_none(), "{scenario}: no capability added");
    }
}

#[test]
fn the_crash_journal_is_a_memory_emptydir_mounted_where_the_operator_writes_it() {
    let r = defaults();
    let pod = r.deployment().spec.unwrap().template.spec.unwrap();
    let volumes = pod.volumes.expect("volumes");
    assert_eq!(volumes.len(), 1);
    let empty_dir = volumes[0].empty_dir.clone().expect("an emptyDir: it outlives container restarts");
    assert_eq!(empty_dir.medium.as_deref(), Some("Memory"));
    assert_eq!(empty_dir.size_limit.map(|q| q.0).as_deref(), Some("8Mi"));
    let mounts = r.container().volume_mounts.expect("volumeMounts");
    assert_eq!(
        (mounts[0].name.as_str(), mounts[0].mount_path.as_str()),
        ("journal", "/run/slack-token-operator/journal")
    );
    assert!(r.args().contains(&"--journal-dir=/run/slack-token-operator/journal".to_owned()));
    // The pod may take its grace period; the operator stops well within it.
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert!(r.args().contains(&"--shutdown-timeout=20s".to_owned()));

    let off = render(json!({ "journal": { "enabled": false, "sizeLimit": "8Mi" } }));
    assert!(off.deployment().spec.unwrap().template.spec.unwrap().volumes.is_none());
    assert!(!off.args().iter().any(|a| a.starts_with("--journal-dir")));
}

#[test]
fn deployment_sets_resource_requests_and_limits_by_default() {
    let resources = defaults().container().resources.expect("resources");
    let requests = resources.requests.expect("requests");
    let limits = resources.limits.expect("limits");
    assert_eq!(requests["cpu"].0, "50m");
    assert_eq!(requests["memory"].0, "64Mi");
    assert_eq!(limits["memory"].0, "128Mi");
}

#[test]
fn deployment_probes_healthz_and_readyz_on_the_http_port() {
    let container = defaults().container();
    let ports = container.ports.as_deref().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    assert_eq!(ports[0].container_port, 8080);

    let liveness = container.liveness_probe.expect("livenessProbe").http_get.expect("httpGet");
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    assert_eq!(liveness.port, IntOrString::String("http".into()));
    let readiness = container.readiness_probe.expect("readinessProbe").http_get.expect("httpGet");
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    assert_eq!(readiness.port, IntOrString::String("http".into()));
    assert!(defaults().args().contains(&"--http-addr=0.0.0.0:8080".to_owned()));
}

#[test]
fn deployment_passes_the_documented_flags_and_pod_identity_env() {
    let r = defaults();
    assert_eq!(
        r.args(),
        [
            "run",
            "--slack-api-url=https://slack.com/api/",
            "--http-addr=0.0.0.0:8080",
            "--log-format=json",
            "--health-check-interval=6h",
            "--shutdown-timeout=20s",
            "--journal-dir=/run/slack-token-operator/journal",
        ]
    );
    assert!(r.container().command.is_none(), "the image entrypoint is used as is");
    assert_eq!(r.env("RUST_LOG").unwrap().value.as_deref(), Some("info"));
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        let source = r.env(name).unwrap_or_else(|| panic!("{name} is set")).value_from;
        assert_eq!(source.unwrap().field_ref.unwrap().field_path, field, "{name} from the downward API");
    }
}

#[test]
fn user_settings_reach_the_container_and_pod() {
    let r = everything_on();
    let args = r.args();
    for expected in [
        "--slack-api-url=https://slack-gov.com/api/",
        "--log-format=text",
        "--health-check-interval=30m",
        "--namespace=team-a",
        "--namespace=operators",
        "--leader-elect",
    ] {
        assert!(args.contains(&expected.to_owned()), "missing {expected} in {args:?}");
    }
    assert_eq!(r.env("RUST_LOG").unwrap().value.as_deref(), Some("debug"));
    assert_eq!(r.env("HTTPS_PROXY").unwrap().value.as_deref(), Some("http://proxy.internal:3128"));

    let container = r.container();
    assert_eq!(container.image.as_deref(), Some("registry.example/sto:1.2.3"));
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    let template = r.deployment().spec.unwrap().template;
    let metadata = template.metadata.unwrap();
    assert_eq!(metadata.annotations.unwrap()["example.com/a"], "b");
    assert_eq!(metadata.labels.unwrap()["team"], "platform");
    let pod = template.spec.unwrap();
    assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "regcred");
    assert_eq!(pod.priority_class_name.as_deref(), Some("system-cluster-critical"));
    assert_eq!(pod.node_selector.unwrap()["kubernetes.io/os"], "linux");
    assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("dedicated"));
    let sa: ServiceAccount = r.one("ServiceAccount");
    assert!(sa.metadata.annotations.unwrap().contains_key("eks.amazonaws.com/role-arn"));
}

#[test]
fn image_tag_defaults_to_the_chart_app_version_which_matches_the_crate_version() {
    let chart: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(repo().join(CHART).join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    let crate_version =
        std::env::var("CARGO_PKG_VERSION").unwrap_or_else(|_| env!("CARGO_PKG_VERSION").into());
    assert_eq!(chart["appVersion"], crate_version.as_str(), "Chart.yaml appVersion = crate version");
    let expected = format!("ghcr.io/slack-token-operator/slack-token-operator:{crate_version}");
    assert_eq!(defaults().container().image.as_deref(), Some(expected.as_str()));
}

#[test]
fn service_account_token_is_mounted_only_into_the_operator_pod() {
    let r = defaults();
    let sa: ServiceAccount = r.one("ServiceAccount");
    assert_eq!(sa.metadata.name.as_deref(), Some(FULLNAME));
    assert_eq!(sa.automount_service_account_token, Some(false));
    let pod = r.deployment().spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(FULLNAME));
    assert_eq!(pod.automount_service_account_token, Some(true), "the operator needs the API");
}

// ---------------------------------------------------------------------------
// Replicas

#[test]
fn leader_election_is_enabled_only_with_more_than_one_replica() {
    for (replicas, r) in [(1, defaults()), (2, two_replicas()), (3, everything_on())] {
        let spec = r.deployment().spec.unwrap();
        assert_eq!(spec.replicas, Some(replicas));
        let leader_elect = r.args().iter().any(|a| a == "--leader-elect");
        assert_eq!(leader_elect, replicas > 1, "replicas {replicas}");
        // Without leader election a rolling update would run two operators at once.
        let strategy = spec.strategy.unwrap().type_.unwrap();
        let expected = if replicas > 1 { "RollingUpdate" } else { "Recreate" };
        assert_eq!(strategy, expected, "replicas {replicas}");
    }
    let zero = render(json!({ "replicaCount": 0 }));
    assert!(zero.args().iter().all(|a| a != "--leader-elect"));
}

#[test]
fn pod_disruption_budget_exists_only_with_more_than_one_replica() {
    assert!(defaults().of_kind("PodDisruptionBudget").is_empty());
    let pdb: PodDisruptionBudget = two_replicas().one("PodDisruptionBudget");
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.min_available, Some(IntOrString::Int(1)));
    let selector = spec.selector.unwrap().match_labels.unwrap();
    let pod_labels = two_replicas().deployment().spec.unwrap().template.metadata.unwrap().labels.unwrap();
    for (key, value) in &selector {
        assert_eq!(pod_labels.get(key), Some(value), "PDB selects the operator pods");
    }
}

// ---------------------------------------------------------------------------
// Metrics

#[test]
fn metrics_service_exposes_the_http_port_and_can_be_turned_off() {
    let service: Service = defaults().one("Service");
    assert_eq!(service.metadata.name.as_deref(), Some("sto-slack-token-operator-metrics"));
    let spec = service.spec.unwrap();
    let ports = spec.ports.unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].name.as_deref(), Some("metrics"));
    assert_eq!(ports[0].port, 8080);
    assert_eq!(ports[0].target_port, Some(IntOrString::String("http".into())));
    let pod_labels = defaults().deployment().spec.unwrap().template.metadata.unwrap().labels.unwrap();
    for (key, value) in spec.selector.unwrap() {
        assert_eq!(pod_labels.get(&key), Some(&value), "the Service selects the operator pods");
    }
    assert!(defaults().of_kind("ServiceMonitor").is_empty(), "no ServiceMonitor by default");

    let off = metrics_off();
    assert!(off.of_kind("Service").is_empty(), "metrics.enabled=false: no Service");
    assert!(off.of_kind("ServiceMonitor").is_empty(), "no ServiceMonitor without the Service");
    assert!(off.container().liveness_probe.is_some(), "the HTTP server still serves the probes");
}

#[test]
fn service_monitor_scrapes_the_metrics_service_when_enabled() {
    let r = service_monitor_on();
    let monitors = r.of_kind("ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    let monitor = monitors[0];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["namespace"], RELEASE_NAMESPACE);
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["namespaceSelector"]["matchNames"], json!([RELEASE_NAMESPACE]));
    let endpoints = monitor["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "metrics");
    assert_eq!(endpoints[0]["path"], "/metrics");
    // The per-SlackToken series' `namespace` is the SlackToken's, not the operator's.
    assert_eq!(endpoints[0]["honorLabels"], true);

    let service: Service = r.one("Service");
    let service_labels = service.metadata.labels.unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(service_labels.get(key).map(String::as_str), value.as_str(), "selects the Service");
    }
}

// ---------------------------------------------------------------------------
// Alerts and dashboard

/// Every series name the operator exposes, from its own registry with a sample in every family
/// (a counter `x` is scraped as `x_total`, a histogram as `x_bucket`, `x_sum`, `x_count`), plus
/// Prometheus' `up`.
fn exposed_series() -> BTreeSet<String> {
    let text = scrape::every_family();
    let mut names: BTreeSet<String> = ["up".to_owned()].into();
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = line.split_once(' ').unwrap();
        match kind {
            "counter" => drop(names.insert(format!("{name}_total"))),
            "histogram" => names.extend(["_bucket", "_sum", "_count"].map(|s| format!("{name}{s}"))),
            _ => drop(names.insert(name.to_owned())),
        }
    }
    names
}

/// The metric names a PromQL expression reads.
fn series_read(expr: &promql_parser::parser::Expr, out: &mut BTreeSet<String>) {
    use promql_parser::parser::Expr;
    match expr {
        Expr::VectorSelector(v) => out.extend(v.name.clone()),
        Expr::MatrixSelector(m) => out.extend(m.vs.name.clone()),
        Expr::Aggregate(a) => {
            series_read(&a.expr, out);
            if let Some(p) = &a.param {
                series_read(p, out);
            }
        }
        Expr::Unary(u) => series_read(&u.expr, out),
        Expr::Binary(b) => {
            series_read(&b.lhs, out);
            series_read(&b.rhs, out);
        }
        Expr::Paren(p) => series_read(&p.expr, out),
        Expr::Subquery(q) => series_read(&q.expr, out),
        Expr::Call(c) => c.args.args.iter().for_each(|a| series_read(a, out)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

/// Parses `expr` (a typo fails here) and checks that every series it reads is one the operator
/// exposes (a misspelt metric name would parse, and never fire).
fn check_query(what: &str, expr: &str) {
    let parsed =
        promql_parser::parser::parse(expr).unwrap_or_else(|e| panic!("{what}: {expr:?} does not parse: {e}"));
    let mut read = BTreeSet::new();
    series_read(&parsed, &mut read);
    assert!(!read.is_empty(), "{what}: {expr:?} reads no series");
    let exposed = exposed_series();
    let unknown: Vec<&String> = read.difference(&exposed).collect();
    assert!(unknown.is_empty(), "{what}: {expr:?} reads series the operator does not expose: {unknown:?}");
}

#[test]
fn the_check_of_queries_catches_typos_and_unknown_metrics() {
    for bad in ["slacktoken_ready ==", "rate(slacktoken_rotations_total[5m]", "slacktoken_redy == 0"] {
        assert!(std::panic::catch_unwind(|| check_query("test", bad)).is_err(), "{bad} was accepted");
    }
    check_query("test", "slacktoken_ready == 0");
}

#[test]
fn runbook_urls_follow_the_runbook_base_url_value_and_the_default_is_a_page_of_the_book() {
    let page = RUNBOOKS.split_once("/blob/main/").expect("a GitHub URL of a file on main").1;
    assert!(repo().join(page).is_file(), "{page} exists");
    let r = render(json!({ "metrics": { "prometheusRule": { "enabled": true,
        "runbookBaseUrl": "https://docs.example/sto/operations/runbooks.html" } } }));
    let rule = r.of_kind("PrometheusRule")[0];
    let urls: Vec<&str> = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| rule["annotations"]["runbook_url"].as_str().unwrap())
        .collect();
    assert_eq!(urls.len(), 4);
    for url in urls {
        assert!(url.starts_with("https://docs.example/sto/operations/runbooks.html#slacktoken"), "{url}");
    }
}

#[test]
fn monitoring_objects_are_off_by_default() {
    for (scenario, r) in all_scenarios().into_iter().filter(|(s, _)| *s != "monitoring on") {
        assert!(r.of_kind("PrometheusRule").is_empty(), "{scenario}");
        assert!(r.of_kind("ConfigMap").is_empty(), "{scenario}");
    }
}

#[test]
fn prometheus_rule_alerts_on_expiry_failing_rotation_due_manual_tokens_and_a_down_operator() {
    let rules = monitoring_on().of_kind("PrometheusRule");
    assert_eq!(rules.len(), 1);
    let rule = rules[0];
    assert_eq!(rule["metadata"]["namespace"], RELEASE_NAMESPACE);
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let mut alerts = BTreeSet::new();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().expect("alerting rules only").to_owned();
            let expr = rule["expr"].as_str().unwrap();
            check_query(&alert, expr);
            assert!(rule["labels"]["severity"].is_string(), "{alert} has a severity");
            let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
            assert!(!summary.is_empty(), "{alert} has a summary");
            if expr.contains("slacktoken_") {
                assert!(
                    summary.contains("{{ $labels.namespace }}/{{ $labels.name }}"),
                    "{alert} names the token"
                );
            }
            alerts.insert((alert, expr.to_owned(), rule["for"].as_str().unwrap_or("0s").to_owned()));
        }
    }
    let expected: BTreeSet<(String, String, String)> = [
        ("SlackTokenExpiringSoon", "(slacktoken_expiration_timestamp_seconds - time()) < 3600", "5m"),
        ("SlackTokenRotationFailing", "slacktoken_ready == 0", "30m"),
        ("SlackTokenRotationDue", "slacktoken_rotation_due == 1", "0s"),
        (
            "SlackTokenOperatorDown",
            "absent(up{job=\"sto-slack-token-operator-metrics\", namespace=\"operators\"} == 1)",
            "10m",
        ),
    ]
    .into_iter()
    .map(|(a, e, f)| (a.to_owned(), e.to_owned(), f.to_owned()))
    .collect();
    assert_eq!(alerts, expected);
    // The book's Alerts table lists them, and each has a runbook: its `runbook_url` is the
    // runbooks page (chart value `metrics.prometheusRule.runbookBaseUrl`) and a heading there.
    let page = markdown::read(&repo().join("docs/src/operations/observability.md"));
    let documented: BTreeSet<String> =
        markdown::first_cells(&markdown::section(&page, "## Alerts")).into_iter().map(|(a, _)| a).collect();
    let names: BTreeSet<String> = alerts.iter().map(|(a, _, _)| a.clone()).collect();
    assert_eq!(documented, names, "the book's Alerts table and the PrometheusRule disagree");
    let runbooks = markdown::parse(&markdown::read(&repo().join("docs/src/operations/runbooks.md")));
    let headings: BTreeSet<String> = runbooks.headings.iter().map(|h| h.anchor.clone()).collect();
    for group in rule["spec"]["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_default();
            let (base, anchor) =
                url.split_once('#').unwrap_or_else(|| panic!("{alert}: runbook_url {url:?} has an anchor"));
            assert_eq!(base, RUNBOOKS, "{alert}: runbook_url points at the runbooks page");
            assert!(
                headings.contains(anchor),
                "{alert}: runbook_url {url} names no heading of runbooks.md ({headings:?})"
            );
            assert_eq!(
                runbooks.headings.iter().find(|h| h.anchor == anchor).unwrap().text,
                alert,
                "{alert}: its runbook is the section named after it"
            );
        }
    }
    // The Service the `up` of the last alert comes from has the name its job is given.
    let service: Service = monitoring_on().one("Service");
    assert_eq!(service.metadata.name.as_deref(), Some("sto-slack-token-operator-metrics"));
}

#[test]
fn grafana_dashboard_configmap_holds_a_dashboard_whose_queries_parse() {
    let map: k8s_openapi::api::core::v1::ConfigMap = monitoring_on().one("ConfigMap");
    assert_eq!(map.metadata.labels.as_ref().unwrap()["grafana_dashboard"], "1", "found by Grafana's sidecar");
    let data = map.data.unwrap();
    let dashboard: Value =
        serde_json::from_str(&data["slack-token-operator.json"]).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "slack-token-operator");
    let mut read = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap();
        titles.push(title.to_owned());
        for target in panel["targets"].as_array().unwrap() {
            // Grafana's range variable is not PromQL; what it stands for is.
            let expr = target["expr"].as_str().unwrap().replace("$__rate_interval", "5m");
            check_query(title, &expr);
            series_read(&promql_parser::parser::parse(&expr).unwrap(), &mut read);
        }
    }
    for shown in [
        "slacktoken_expiration_timestamp_seconds",
        "slacktoken_rotations_total",
        "slacktoken_rotation_failures_total",
        "slack_api_request_duration_seconds_bucket",
        "slack_api_rate_limited_total",
    ] {
        assert!(read.contains(shown), "the dashboard shows {shown}: {titles:?}");
    }
}

// ---------------------------------------------------------------------------
// NetworkPolicy

#[test]
fn network_policy_is_off_by_default_and_allows_only_dns_and_https_egress_when_on() {
    assert!(defaults().of_kind("NetworkPolicy").is_empty());
    let policy: NetworkPolicy = everything_on().one("NetworkPolicy");
    let spec = policy.spec.unwrap();
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_owned(), "Egress".to_owned()][..]));
    let mut egress_ports = BTreeSet::new();
    for rule in spec.egress.unwrap() {
        for port in rule.ports.unwrap() {
            let number = match port.port.unwrap() {
                IntOrString::Int(number) => number,
                IntOrString::String(name) => panic!("egress to a named port {name}"),
            };
            egress_ports.insert((port.protocol.unwrap(), number));
        }
    }
    let expected: BTreeSet<(String, i32)> = [("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6443)]
        .into_iter()
        .map(|(protocol, port)| (protocol.to_owned(), port))
        .collect();
    assert_eq!(egress_ports, expected);
    let ingress = spec.ingress.unwrap();
    assert_eq!(ingress.len(), 1);
    let ports = ingress[0].ports.as_deref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].port, Some(IntOrString::String("http".into())));
}

// ---------------------------------------------------------------------------
// Whole-chart checks

#[test]
fn chart_passes_helm_lint_strict() {
    let report = helm(&["lint", CHART, "--namespace", RELEASE_NAMESPACE]);
    assert!(report.contains("1 chart(s) linted, no failures"), "{report}");
    let file = values_file(&json!({
        "replicaCount": 2,
        "watchNamespaces": ["team-a", "team-b"],
        "metrics": { "serviceMonitor": { "enabled": true }, "prometheusRule": { "enabled": true },
                     "grafanaDashboard": { "enabled": true } },
        "networkPolicy": { "enabled": true },
        "rolloutRestart": { "enabled": true },
    }));
    let report =
        helm(&["lint", CHART, "--namespace", RELEASE_NAMESPACE, "-f", file.path().to_str().unwrap()]);
    assert!(report.contains("1 chart(s) linted, no failures"), "{report}");
}

#[test]
fn helm_install_dry_run_produces_the_same_objects_as_template_and_prints_notes() {
    let file = values_file(&everything_on_values());
    let output = helm(&[
        "install",
        CHART,
        "--name",
        RELEASE,
        "--namespace",
        RELEASE_NAMESPACE,
        "-f",
        file.path().to_str().unwrap(),
        "--dry-run",
        "client",
    ]);
    let (_, rest) = output.split_once("\nMANIFEST:\n").expect("a MANIFEST section");
    let (manifest, notes) = rest.split_once("\nNOTES:\n").expect("a NOTES section");
    assert!(
        parse_stream(manifest) == everything_on().objects,
        "Helm's install manifest differs from scripts/helm template (objects or order)"
    );
    for expected in [
        "installed as release \"sto\" in namespace \"operators\"",
        "It watches SlackTokens in: team-a, operators.",
        "Slack API: https://slack-gov.com/api/",
        "Leader election is on (3 replicas)",
        "kubectl apply --server-side --force-conflicts -f",
    ] {
        assert!(notes.contains(expected), "NOTES lack {expected:?}:\n{notes}");
    }
}

#[test]
fn values_schema_rejects_invalid_values() {
    for (values, complaint) in [
        (json!({ "replicaCount": "two" }), "/replicaCount"),
        (json!({ "logFormat": "xml" }), "/logFormat"),
        (json!({ "watchNamespaces": ["Not_A_Namespace"] }), "/watchNamespaces/0"),
        (json!({ "slackApiUrl": "slack.com" }), "/slackApiUrl"),
        (json!({ "replicas": 2 }), "replicas"),
        (json!({ "image": { "pullPolicy": "Sometimes" } }), "/image/pullPolicy"),
    ] {
        let file = values_file(&values);
        let output = run_helm(&["template", CHART, "-f", file.path().to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{values} was accepted");
        assert!(stderr.contains(complaint), "{values}: error does not name {complaint}: {stderr}");
    }
}

#[test]
fn every_rendered_object_parses_into_its_kubernetes_type_without_unknown_fields() {
    for (scenario, r) in all_scenarios() {
        for object in &r.objects {
            match object["kind"].as_str().unwrap() {
                "Deployment" => drop(typed::<Deployment>(object)),
                "ServiceAccount" => drop(typed::<ServiceAccount>(object)),
                "Service" => drop(typed::<Service>(object)),
                "ClusterRole" => drop(typed::<ClusterRole>(object)),
                "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(object)),
                "Role" => drop(typed::<Role>(object)),
                "RoleBinding" => drop(typed::<RoleBinding>(object)),
                "PodDisruptionBudget" => drop(typed::<PodDisruptionBudget>(object)),
                "NetworkPolicy" => drop(typed::<NetworkPolicy>(object)),
                "ServiceMonitor" => assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1"),
                "PrometheusRule" => assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1"),
                "ConfigMap" => drop(typed::<k8s_openapi::api::core::v1::ConfigMap>(object)),
                other => panic!("{scenario}: unexpected kind {other}"),
            }
        }
    }
}

#[test]
fn every_object_carries_the_conventional_labels_and_an_explicit_namespace() {
    let cluster_scoped = ["ClusterRole", "ClusterRoleBinding"];
    for (scenario, r) in all_scenarios() {
        for object in &r.objects {
            let kind = object["kind"].as_str().unwrap();
            let labels = &object["metadata"]["labels"];
            assert_eq!(labels["app.kubernetes.io/name"], "slack-token-operator", "{scenario} {kind}");
            assert_eq!(labels["app.kubernetes.io/instance"], RELEASE, "{scenario} {kind}");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{scenario} {kind}");
            assert!(labels["app.kubernetes.io/version"].is_string(), "{scenario} {kind}");
            assert!(
                labels["helm.sh/chart"].as_str().unwrap().starts_with("slack-token-operator-"),
                "{scenario} {kind}"
            );
            // `kubectl apply -f deploy/install.yaml` must not depend on the current namespace.
            let namespace = &object["metadata"]["namespace"];
            if cluster_scoped.contains(&kind) {
                assert!(namespace.is_null(), "{scenario}: {kind} is cluster-scoped");
            } else {
                assert!(namespace.is_string(), "{scenario}: {kind} has no namespace");
            }
        }
    }
    assert_eq!(
        defaults().kinds(),
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment"],
        "default install, in install order"
    );
}

#[test]
fn chart_crds_are_identical_to_the_top_level_crds() {
    let names = |dir: PathBuf| -> BTreeSet<String> {
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect()
    };
    let top = repo().join("crds");
    let chart = repo().join(CHART).join("crds");
    assert_eq!(names(chart.clone()), names(top.clone()), "same files in crds/ and the chart's crds/");
    for name in names(top.clone()) {
        let a = std::fs::read(top.join(&name)).unwrap();
        let b = std::fs::read(chart.join(&name)).unwrap();
        assert!(a == b, "{CHART}/crds/{name} differs from crds/{name}: cp crds/{name} {CHART}/crds/");
    }
    let crd: CustomResourceDefinition =
        serde_saphyr::from_slice(&std::fs::read(chart.join("slacktoken.yaml")).unwrap()).unwrap();
    assert_eq!(crd.spec.group, "slack.rotator.dev");
    assert_eq!(crd.spec.names.plural, "slacktokens");
}

#[test]
fn deploy_install_yaml_matches_a_fresh_render() {
    bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let fresh = dir.path().join("install.yaml");
    let status = Command::new(repo().join("scripts/render-manifests"))
        .arg(&fresh)
        .current_dir(repo())
        .status()
        .expect("run scripts/render-manifests");
    assert!(status.success(), "scripts/render-manifests failed");
    let fresh = std::fs::read_to_string(fresh).unwrap();
    let committed = std::fs::read_to_string(repo().join("deploy/install.yaml")).unwrap();
    assert!(fresh == committed, "deploy/install.yaml is stale: run scripts/render-manifests");

    let objects = parse_stream(&committed);
    let namespace: Namespace = typed(&objects[0]);
    assert_eq!(namespace.metadata.name.as_deref(), Some("slack-token-operator"), "Namespace first");
    let crd: CustomResourceDefinition = serde_json::from_value(objects[1].clone()).unwrap();
    assert_eq!(crd.metadata.name.as_deref(), Some("slacktokens.slack.rotator.dev"), "then the CRD");
    for object in &objects[2..] {
        if let Some(namespace) = object["metadata"]["namespace"].as_str() {
            assert_eq!(namespace, "slack-token-operator", "{}", object["kind"]);
        }
    }
    let deployment: Deployment = typed(objects.iter().find(|o| o["kind"] == "Deployment").unwrap());
    assert_eq!(deployment.metadata.name.as_deref(), Some("slack-token-operator"));
}

#[test]
fn an_image_digest_pins_the_image_instead_of_the_tag() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    let r = render(json!({ "image": { "tag": "9.9.9", "digest": digest } }));
    let expected = format!("ghcr.io/slack-token-operator/slack-token-operator@{digest}");
    assert_eq!(r.container().image.as_deref(), Some(expected.as_str()));
}

#[test]
fn an_existing_service_account_can_be_used_and_gets_the_bindings() {
    let r = render(json!({ "serviceAccount": { "create": false, "name": "platform-operator" } }));
    assert!(r.of_kind("ServiceAccount").is_empty(), "no ServiceAccount is created");
    let pod = r.deployment().spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("platform-operator"));
    let binding: ClusterRoleBinding = r.one("ClusterRoleBinding");
    assert_eq!(binding.subjects.unwrap()[0].name, "platform-operator");

    let output = run_helm(&["template", CHART, "--set", "serviceAccount.create=false"]);
    assert!(!output.status.success(), "serviceAccount.create=false without a name is refused");
    assert!(String::from_utf8_lossy(&output.stderr).contains("serviceAccount.name is required"));
}

// ---------------------------------------------------------------------------
// The rendered RBAC against the real operator

/// One verb of one rendered rule, to take away: (Role or ClusterRole name, rule index, verb).
type Permission = (String, usize, String);

/// Every single verb the chart grants in `rendered`, except `slacktokens/finalizers`, which only the
/// OwnerReferencesPermissionEnforcement admission plugin checks (not modelled by the emulator).
fn each_permission(rendered: &Rendered) -> Vec<Permission> {
    let mut rules: Vec<(String, Vec<PolicyRule>)> = Vec::new();
    for role in rendered.all::<ClusterRole>("ClusterRole") {
        rules.push((role.metadata.name.unwrap_or_default(), role.rules.unwrap_or_default()));
    }
    for role in rendered.all::<Role>("Role") {
        rules.push((role.metadata.name.unwrap_or_default(), role.rules.unwrap_or_default()));
    }
    let mut out = Vec::new();
    for (name, rules) in rules {
        for (i, rule) in rules.iter().enumerate() {
            if rule.resources.iter().flatten().any(|r| r == "slacktokens/finalizers") {
                continue;
            }
            for verb in &rule.verbs {
                out.push((name.clone(), i, verb.clone()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn without(mut rules: Vec<PolicyRule>, name: Option<&str>, drop: &Option<Permission>) -> Vec<PolicyRule> {
    if let Some((role, index, verb)) = drop {
        if Some(role.as_str()) == name {
            rules[*index].verbs.retain(|v| v != verb);
        }
    }
    rules
}

/// Runs the operator authenticated as the chart's ServiceAccount, holding only the rendered RBAC
/// (less `drop`), against the Kubernetes emulator (which enforces RBAC) and the Slack emulator, on
/// tokio's paused clock. It must take (and renew) the leader-election Lease if the chart turns
/// leader election on, add the revokeOnDelete finalizer, publish a token, write status, record and
/// update Events, rotate on request, restore a deleted output Secret, and on deletion revoke the
/// token and release the finalizer.
async fn operator_scenario(
    rendered: &Rendered,
    watch: Vec<String>,
    taken_away: Option<Permission>,
) -> Result<(), String> {
    use kube::api::{Api, DeleteParams, PostParams};
    use std::time::Duration;
    use testground::{spawn_controller, Ground, GroundConfig};

    // The operator takes its Lease in $POD_NAMESPACE (default "default"): the release lives there.
    let release_ns = std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into());
    let crd = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join(CHART).join("crds/slacktoken.yaml")).unwrap(),
    )
    .unwrap();
    let ground = Ground::start(GroundConfig { rbac: true, crd: Some(crd), ..Default::default() })
        .await
        .expect("ground");
    let admin = ground.client.clone();
    let pp = PostParams::default();

    let token_ns = watch.first().cloned().unwrap_or_else(|| "apps".into());
    for ns in [release_ns.as_str(), token_ns.as_str()] {
        ground.namespace(ns).await.unwrap();
    }
    for mut role in rendered.all::<ClusterRole>("ClusterRole") {
        role.rules =
            Some(without(role.rules.take().unwrap_or_default(), role.metadata.name.as_deref(), &taken_away));
        Api::<ClusterRole>::all(admin.clone()).create(&pp, &role).await.unwrap();
    }
    for binding in rendered.all::<ClusterRoleBinding>("ClusterRoleBinding") {
        Api::<ClusterRoleBinding>::all(admin.clone()).create(&pp, &binding).await.unwrap();
    }
    for mut role in rendered.all::<Role>("Role") {
        role.rules =
            Some(without(role.rules.take().unwrap_or_default(), role.metadata.name.as_deref(), &taken_away));
        let ns = role.metadata.namespace.clone().unwrap();
        Api::<Role>::namespaced(admin.clone(), &ns).create(&pp, &role).await.unwrap();
    }
    for binding in rendered.all::<RoleBinding>("RoleBinding") {
        let ns = binding.metadata.namespace.clone().unwrap();
        Api::<RoleBinding>::namespaced(admin.clone(), &ns).create(&pp, &binding).await.unwrap();
    }

    // With rollout restarts granted, one workload of each kind to restart after each rotation.
    let restarts = rendered.objects.iter().any(|o| o.to_string().contains("\"daemonsets\""));
    let workload_kinds = if restarts { vec!["Deployment", "StatefulSet", "DaemonSet"] } else { vec![] };
    let workloads = |kind: &str| {
        let gvk = kube::api::GroupVersionKind::gvk("apps", "v1", kind);
        let resource =
            kube::api::ApiResource::from_gvk_with_plural(&gvk, &format!("{}s", kind.to_lowercase()));
        Api::<kube::api::DynamicObject>::namespaced_with(admin.clone(), &token_ns, &resource)
    };
    let mut targets = Vec::new();
    for kind in &workload_kinds {
        let object = serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "app"},
            "spec": {"selector": {"matchLabels": {"app": "app"}}, "template": {"metadata": {"labels": {"app": "app"}}}}
        }))
        .unwrap();
        workloads(kind).create(&pp, &object).await.unwrap();
        targets.push(format!("{{kind: {kind}, name: app}}"));
    }
    let spec = format!("revokeOnDelete: true\nrolloutRestartTargets: [{}]", targets.join(", "));
    // A rotating Slack installation and its SlackToken, created by the user (admin).
    let bot = ground.oauth_token(&token_ns, "bot", &spec).await.unwrap();
    let (tokens, secrets) = (ground.tokens(&token_ns), ground.secrets(&token_ns));

    // The operator, as the chart's ServiceAccount.
    let operator = ground.kube.service_account_client(&release_ns, FULLNAME);
    let leader_elect = rendered.args().iter().any(|a| a == "--leader-elect");
    let mut leadership = None;
    // The leader gauge says whether the Lease is still held.
    let metrics = slack_token_operator::Metrics::default();
    if leader_elect {
        let acquired = tokio::time::timeout(
            Duration::from_secs(60),
            slack_token_operator::leader::acquire(
                operator.clone(),
                slack_token_operator::leader::Candidate::from_env(
                    slack_token_operator::leader::LEASE_NAME,
                    Default::default(),
                ),
                &Default::default(),
                metrics.leader.clone(),
            ),
        )
        .await
        .map_err(|_| "no leadership within 60s: the Lease could not be taken".to_owned())?;
        leadership = Some(acquired);
    }
    let ctx = ground.context(operator, Default::default(), None);
    let controller = spawn_controller(ctx, watch);
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), &token_ns);

    let output = bot.output();
    let published = || ground.secret_value(&token_ns, &output, "token");
    within_a_minute("the revokeOnDelete finalizer", || async {
        tokens.get("bot").await.unwrap().metadata.finalizers.is_some_and(|f| !f.is_empty())
    })
    .await?;
    within_a_minute("publishing a token", || async {
        published().await.is_some_and(|t| ground.slack.token_is_valid(&t))
    })
    .await?;
    within_a_minute("Ready written through slacktokens/status", || async {
        ground.condition(&token_ns, "bot", "Ready").await.is_some_and(|c| c.status == "True")
    })
    .await?;
    within_a_minute("recording an Event", || async {
        !events.list(&Default::default()).await.unwrap().items.is_empty()
    })
    .await?;

    // A second rotation, after Slack failed it twice in the same way: the repeated Event (same
    // reason, same note) is patched into a series.
    let first = published().await.unwrap_or_default();
    ground.slack.fail_next("oauth.v2.access", 2, slack_emulator::Fault::Http(503));
    ground.rotate_now(&bot, "1").await.unwrap();
    within_a_minute("rotating on request", || async { published().await.is_some_and(|t| t != first) })
        .await?;
    for kind in &workload_kinds {
        within_a_minute(&format!("restarting the {kind}"), || async {
            let object = workloads(kind).get("app").await.unwrap();
            object.data["spec"]["template"]["metadata"]["annotations"]
                [slack_token_operator::RESTARTED_AT_ANNOTATION]
                .is_string()
        })
        .await?;
    }
    within_a_minute("counting the repeated Event in a series", || async {
        events.list(&Default::default()).await.unwrap().items.iter().any(|e| e.series.is_some())
    })
    .await?;

    // A deleted output Secret comes back: the operator watches the Secrets it labelled.
    secrets.delete(&bot.output(), &DeleteParams::default()).await.unwrap();
    within_a_minute("restoring the deleted output Secret", || async { published().await.is_some() }).await?;

    if leadership.is_some() {
        // Hold the Lease through renewals.
        let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(admin.clone(), &release_ns);
        let renewed = |l: k8s_openapi::api::coordination::v1::Lease| l.spec.and_then(|s| s.renew_time);
        let before = renewed(leases.get(slack_token_operator::leader::LEASE_NAME).await.unwrap());
        tokio::time::sleep(Duration::from_secs(40)).await;
        let after = renewed(leases.get(slack_token_operator::leader::LEASE_NAME).await.unwrap());
        if after == before || metrics.leader.get() != 1 {
            return Err("the Lease was not renewed".into());
        }
    }

    let current = published().await.unwrap_or_default();
    tokens.delete("bot", &DeleteParams::default()).await.unwrap();
    within_a_minute("revoking on delete and releasing the finalizer", || async {
        tokens.get_opt("bot").await.unwrap().is_none()
    })
    .await?;
    let revoked = ground.slack.is_revoked(&current);
    controller.stop().await;
    drop(leadership);
    ground.shutdown().await;
    revoked.then_some(()).ok_or_else(|| "the token was not revoked".into())
}

/// Polls `check` every 100ms of (paused) time for up to a minute.
async fn within_a_minute<F, Fut>(what: &str, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let every = std::time::Duration::from_millis(100);
    testground::eventually(what, std::time::Duration::from_secs(60), every, || {
        let done = check();
        async move { done.await.then_some(()) }
    })
    .await
    .map_err(|e| e.to_string())
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap()
}

#[test]
fn the_operator_rotates_and_elects_a_leader_with_only_the_rendered_cluster_wide_rbac() {
    let rendered = render_in(
        &std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
        json!({ "replicaCount": 2 }),
    );
    paused_runtime().block_on(operator_scenario(&rendered, vec![], None)).unwrap();
}

#[test]
fn the_operator_rotates_with_only_the_rendered_namespaced_rbac() {
    let rendered = render_in(
        &std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
        json!({ "watchNamespaces": ["team-a"] }),
    );
    paused_runtime().block_on(operator_scenario(&rendered, vec!["team-a".into()], None)).unwrap();
}

#[test]
fn the_operator_restarts_workloads_with_only_the_rendered_rbac_when_enabled() {
    let rendered = render_in(
        &std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
        json!({ "watchNamespaces": ["team-a"], "rolloutRestart": { "enabled": true } }),
    );
    paused_runtime().block_on(operator_scenario(&rendered, vec!["team-a".into()], None)).unwrap();
}

#[test]
fn taking_away_any_single_rendered_permission_breaks_the_operator() {
    let rendered = render_in(
        &std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
        json!({ "replicaCount": 2, "rolloutRestart": { "enabled": true } }),
    );
    let permissions = each_permission(&rendered);
    assert!(permissions.len() >= 15, "every verb is tried: {permissions:?}");
    let mut unneeded = Vec::new();
    for permission in permissions {
        if paused_runtime().block_on(operator_scenario(&rendered, vec![], Some(permission.clone()))).is_ok() {
            unneeded.push(permission);
        }
    }
    assert!(
        unneeded.is_empty(),
        "the operator works without these, so the chart should not grant them: {unneeded:?}"
    );
}

#[test]
fn a_selector_reaches_the_operator_and_its_lease_rules_follow_the_lease_name() {
    for selector in ["shard=a", "tier in (gold, silver),!legacy", "!!"] {
        let r = render(json!({ "replicaCount": 2, "selector": selector }));
        assert!(r.args().contains(&format!("--selector={selector}")), "{selector}: {:?}", r.args());
        let lease = slack_token_operator::leader::lease_name(Some(selector));
        let role: Role = r.one("Role");
        let named: Vec<String> = role
            .rules
            .unwrap_or_default()
            .into_iter()
            .flat_map(|rule| rule.resource_names.unwrap_or_default())
            .collect();
        assert_eq!(named, vec![lease.clone()], "{selector}: the Role names the operator's own Lease");
    }
    assert!(!render(json!({ "replicaCount": 2 })).args().iter().any(|a| a.starts_with("--selector")));
}
