//! Runs the emulator until Ctrl-C, writing a kubeconfig to the path given as the first
//! argument (default ./kube-emulator.kubeconfig) so that kubectl can be pointed at it.
//! RBAC is on (set KUBE_EMULATOR_RBAC=false to turn it off).

use kube_emulator::{Config, KubeEmulator};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "kube-emulator.kubeconfig".into());
    let port = std::env::var("KUBE_EMULATOR_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    // RBAC on unless KUBE_EMULATOR_RBAC=false: the admin kubeconfig bypasses it, and
    // `kubectl --as` / `kubectl auth can-i` behave as on a cluster.
    let rbac = std::env::var("KUBE_EMULATOR_RBAC").map_or(true, |v| v != "false");
    let emu = KubeEmulator::start_with(Config { port, rbac, ..Config::default() }).await?;
    emu.write_kubeconfig(std::path::Path::new(&path))?;
    println!("kube-emulator listening on {}; KUBECONFIG={path}", emu.url());
    tokio::signal::ctrl_c().await?;
    emu.shutdown().await;
    Ok(())
}
