//! RBAC: service-account clients are authorized against stored Roles/ClusterRoles and
//! bindings, so a test can prove a chart's RBAC is enough and no broader.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::discovery::ApiResource;
use kube_emulator::{Config, KubeEmulator};
use serde_json::json;

fn ar(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

async fn create(client: &kube::Client, ns: Option<&str>, r: &ApiResource, body: serde_json::Value) {
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, r),
        None => Api::all_with(client.clone(), r),
    };
    api.create(&PostParams::default(), &serde_json::from_value(body).unwrap()).await.unwrap();
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected API error, got {other:?}"),
    }
}

#[tokio::test]
async fn rbac_role_binding_grants_only_listed_verbs() {
    let emu = KubeEmulator::start_with(Config { rbac: true, ..Config::default() }).await.unwrap();
    let admin = emu.client();
    let rbac = "rbac.authorization.k8s.io";
    create(&admin, Some("default"), &ar(rbac, "Role", "roles"), json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "secrets-rw"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch", "patch"]}]
    })).await;
    create(
        &admin,
        Some("default"),
        &ar(rbac, "RoleBinding", "rolebindings"),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "op"},
            "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "secrets-rw"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": "ops"}]
        }),
    )
    .await;
    create(&admin, None, &ar(rbac, "ClusterRole", "clusterroles"), json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "ns-reader"},
        "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"], "resourceNames": ["default"]}]
    })).await;
    create(
        &admin,
        None,
        &ar(rbac, "ClusterRoleBinding", "clusterrolebindings"),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "op-ns"},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "ns-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "operator", "namespace": "ops"}]
        }),
    )
    .await;
    let secrets_admin: Api<Secret> = Api::default_namespaced(admin.clone());
    secrets_admin
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata":{"name":"s"}})).unwrap())
        .await
        .unwrap();

    let sa = emu.service_account_client("ops", "operator");
    let secrets: Api<Secret> = Api::default_namespaced(sa.clone());
    secrets.list(&ListParams::default()).await.unwrap();
    secrets.get("s").await.unwrap();
    secrets
        .patch("s", &PatchParams::default(), &Patch::Merge(json!({"metadata":{"labels":{"a":"b"}}})))
        .await
        .unwrap();
    let err = secrets
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata":{"name":"t"}})).unwrap())
        .await
        .unwrap_err();
    match &err {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (403, "Forbidden"));
            assert!(s.message.contains("User \"system:serviceaccount:ops:operator\" cannot create resource \"secrets\" in API group \"\" in the namespace \"default\""), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    let other_ns: Api<Secret> = Api::namespaced(sa.clone(), "kube-system");
    assert_eq!(code(other_ns.list(&ListParams::default()).await.unwrap_err()), 403);
    let namespaces: Api<Namespace> = Api::all(sa.clone());
    namespaces.get("default").await.unwrap();
    assert_eq!(code(namespaces.get("kube-system").await.unwrap_err()), 403);
    assert_eq!(code(namespaces.list(&ListParams::default()).await.unwrap_err()), 403);

    // A different service account gets nothing.
    let stranger: Api<Secret> = Api::default_namespaced(emu.service_account_client("ops", "other"));
    assert_eq!(code(stranger.get("s").await.unwrap_err()), 403);
}
