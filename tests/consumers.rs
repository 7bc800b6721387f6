//! End-to-end: getting a rotated token to the apps that use it. Workloads named in
//! `spec.rolloutRestartTargets` are restarted (one pod-template patch each, as `kubectl rollout
//! restart` makes) after a rotation changes the published token; a target that is missing never
//! fails or repeats the rotation.

mod support;

use kube::api::{Api, DynamicObject, PostParams};
use kube::ResourceExt;
use slack_token_operator::{RESTARTED_AT_ANNOTATION, RESTART_PENDING_ANNOTATION};
use support::{e2e, TestEnv};

const TARGETS: &str = "rolloutRestartTargets:
- {kind: Deployment, name: web}
- {kind: StatefulSet, name: db}
- {kind: DaemonSet, name: missing}";

fn workloads(env: &TestEnv, kind: &str) -> Api<DynamicObject> {
    let gvk = kube::api::GroupVersionKind::gvk("apps", "v1", kind);
    let plural = format!("{}s", kind.to_lowercase());
    Api::namespaced_with(
        env.client.clone(),
        &env.ns,
        &kube::api::ApiResource::from_gvk_with_plural(&gvk, &plural),
    )
}

/// A workload a real API server accepts (selector, labelled template, one container).
async fn create_workload(env: &TestEnv, kind: &str, name: &str) {
    let mut spec = serde_json::json!({
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
        }
    });
    if kind == "StatefulSet" {
        spec["serviceName"] = name.into();
    }
    let object: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec
    }))
    .unwrap();
    workloads(env, kind).create(&PostParams::default(), &object).await.expect("workload created");
}

/// The workload's restartedAt annotation and generation.
async fn restarted_at(env: &TestEnv, kind: &str, name: &str) -> (Option<String>, Option<i64>) {
    let object = workloads(env, kind).get(name).await.unwrap();
    let at = object.data["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT_ANNOTATION]
        .as_str()
        .map(String::from);
    (at, object.metadata.generation)
}

async fn rotate_once(env: &TestEnv, output: &str, previous: &str) -> String {
    env.advance(env.until_next_rotation("bot").await).await;
    env.published_token(output, Some(previous)).await
}

#[test]
fn a_rotation_restarts_each_target_once_and_a_missing_target_does_not_fail_it() {
    e2e(|env| async move {
        create_workload(&env, "Deployment", "web").await;
        create_workload(&env, "StatefulSet", "db").await;
        let f = env.oauth_token("bot", TARGETS).await;
        let first = env.published_token(&f.output(), None).await;
        env.ready("bot", "True").await;
        // The first token lands in a new Secret: nobody can hold an older one, nothing restarts.
        assert_eq!(restarted_at(&env, "Deployment", "web").await, (None, Some(1)));

        rotate_once(&env, &f.output(), &first).await;
        let (reason, message) = env.condition("bot", "RolloutRestart", "False").await;
        assert_eq!(reason, "TargetNotFound");
        assert!(
            message.contains("DaemonSet/missing")
                && message.contains("restarted Deployment/web, StatefulSet/db"),
            "{message}"
        );
        let (reason, _) = env.ready("bot", "True").await;
        assert_eq!(reason, "TokenPublished", "a missing target does not fail the rotation");
        for (kind, name) in [("Deployment", "web"), ("StatefulSet", "db")] {
            let (at, generation) = restarted_at(&env, kind, name).await;
            assert!(at.is_some(), "{kind}/{name} restarted");
            assert_eq!(generation, Some(2), "{kind}/{name}: one pod-template change");
        }
        assert!(env.event_reasons("bot").await.contains(&"RolloutRestartFailed".to_owned()));
        let output = env.secrets().get(&f.output()).await.unwrap();
        assert!(!output.annotations().contains_key(RESTART_PENDING_ANNOTATION), "no restart is owed");

        // Nothing is repeated: not the rotation, not the restarts. (Waiting for less than the time
        // to the next scheduled rotation: against a real cluster tokens live 90 s.)
        let quiet = env.patience().min(env.until_next_rotation("bot").await.saturating_sub(env.ttl() / 30));
        env.advance(quiet).await;
        assert_eq!(env.slack.refreshes(&f.installation_id), 2);
        assert_eq!(restarted_at(&env, "Deployment", "web").await.1, Some(2));
        if let Some(kube) = &env.kube {
            assert_eq!(kube.stats_for("deployments").patch, 1, "one patch per target and rotation");
        }
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn a_restart_the_api_server_refused_is_retried_without_rotating_again() {
    e2e(|env| async move {
        let faults = env.fault_injection();
        create_workload(&env, "Deployment", "web").await;
        let f = env.oauth_token("bot", "rolloutRestartTargets: [{kind: Deployment, name: web}]").await;
        let first = env.published_token(&f.output(), None).await;
        env.ready("bot", "True").await;
        faults.fail_next(kube_emulator::Verb::Patch, "deployments", None, 2, 500);

        rotate_once(&env, &f.output(), &first).await;
        let (reason, _) = env.condition("bot", "RolloutRestart", "False").await;
        assert_eq!(reason, "RestartFailed");
        let (reason, message) = env.condition("bot", "RolloutRestart", "True").await;
        assert_eq!(reason, "Restarted", "{message}");
        assert_eq!(restarted_at(&env, "Deployment", "web").await.1, Some(2), "restarted once it worked");
        assert_eq!(env.slack.refreshes(&f.installation_id), 2, "the rotation was not repeated");
        assert!(env.event_reasons("bot").await.contains(&"RolloutRestarted".to_owned()));
    });
}
