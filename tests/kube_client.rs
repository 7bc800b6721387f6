//! The operator's Kubernetes client keeps few connections idle after a burst (`ops::kube_client`).
//!
//! Each test has its own emulator and counts this process's established connections to that
//! emulator's port (from `/proc/self/net/tcp`), so the two can run side by side.

use k8s_openapi::api::core::v1::Namespace;
use kube::{api::Api, Client};
use kube_emulator::{KubeEmulator, Verb};
use slack_token_operator::kube_client;
use std::time::Duration;
use testground::eventually;

/// Requests in flight at once: more than the idle bound, as a start-up burst of reconciles is.
const BURST: usize = 32;

/// Connections from this process to `port` that are open (ESTABLISHED) now.
fn connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/self/net/tcp").expect("Linux: /proc/self/net/tcp");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields.get(2)?.rsplit_once(':')?.1;
            let established = *fields.get(3)? == "01";
            (established && u16::from_str_radix(remote_port, 16).ok()? == port).then_some(())
        })
        .count()
}

/// An emulator whose GETs take a while, so that `BURST` requests overlap; and its client config.
async fn slow_emulator() -> (KubeEmulator, kube::Config, u16) {
    let emulator = KubeEmulator::start().await.expect("the emulator starts");
    emulator.faults().add_latency(Some(Verb::Get), Some("namespaces"), Duration::from_millis(200));
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&emulator.kubeconfig_yaml()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    let port = emulator.url().rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("a port");
    (emulator, config, port)
}

async fn burst(client: &Client) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let gets = (0..BURST).map(|_| namespaces.get_opt("default"));
    for result in futures::future::join_all(gets).await {
        result.expect("GET answered");
    }
}

#[tokio::test(start_paused = true)]
async fn after_a_burst_only_a_few_connections_stay_open_and_those_close_when_idle() {
    let (_emulator, config, port) = slow_emulator().await;
    let client = kube_client::connect(config).expect("client");
    burst(&client).await;
    let open =
        eventually("excess connections closed", Duration::from_secs(5), Duration::from_millis(10), || {
            let open = connections_to(port);
            async move { (open <= kube_client::IDLE_CONNECTIONS).then_some(open) }
        })
        .await
        .expect("at most the idle bound stays open");
    assert!(open > 0, "some stay for the next requests");
    // The pool looks for expired connections once per idle timeout: one idle for a little less
    // than that at a look goes at the next.
    tokio::time::sleep(2 * kube_client::IDLE_TIMEOUT + Duration::from_secs(5)).await;
    eventually("idle connections closed", Duration::from_secs(5), Duration::from_millis(10), || {
        let open = connections_to(port);
        async move { (open == 0).then_some(()) }
    })
    .await
    .expect("idle connections close after the idle timeout");
    // And the client still works.
    burst(&client).await;
}

/// What the bound is for: kube's own builder keeps every connection the burst opened.
#[tokio::test(start_paused = true)]
async fn kubes_default_client_keeps_every_connection_of_a_burst() {
    let (_emulator, config, port) = slow_emulator().await;
    let client = Client::try_from(config).expect("client");
    burst(&client).await;
    tokio::time::sleep(2 * kube_client::IDLE_TIMEOUT + Duration::from_secs(5)).await;
    assert!(connections_to(port) >= BURST / 2, "kube's pool keeps them: {} open", connections_to(port));
}

/// The API server records a write without a field manager under the client's User-Agent up to its
/// first `/`: the operator's patches and Events are `slack-token-operator`'s, not nobody's.
#[tokio::test]
async fn writes_without_a_field_manager_are_recorded_as_the_operators() {
    let emulator = KubeEmulator::start().await.expect("the emulator starts");
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&emulator.kubeconfig_yaml()).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
    let client = kube_client::connect(config).expect("client");
    let namespaces: Api<Namespace> = Api::all(client);
    let patch = serde_json::json!({"metadata": {"labels": {"team": "a"}}});
    let params = kube::api::PatchParams::default();
    let patched =
        namespaces.patch("default", &params, &kube::api::Patch::Merge(&patch)).await.expect("patched");
    let managers: Vec<_> =
        patched.metadata.managed_fields.unwrap_or_default().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.iter().any(|m| m == "slack-token-operator"), "{managers:?}");
}
