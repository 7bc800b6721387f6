//! Kubeconfig for the emulator: one cluster, an admin token user, namespace `default`.

pub fn render(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-emulator
  cluster:
    server: {server}
contexts:
- name: kube-emulator
  context:
    cluster: kube-emulator
    user: admin
    namespace: default
current-context: kube-emulator
preferences: {{}}
users:
- name: admin
  user:
    token: {token}
"
    )
}
