//! Runs the emulator until Ctrl-C, writing a kubeconfig to the path given as the first
//! argument (default ./kube-emulator.kubeconfig) so that kubectl can be pointed at it.

use kube_emulator::{Config, KubeEmulator};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "kube-emulator.kubeconfig".into());
    let port = std::env::var("KUBE_EMULATOR_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(0);
    let emu = KubeEmulator::start_with(Config { port, ..Config::default() }).await?;
    emu.write_kubeconfig(std::path::Path::new(&path))?;
    println!("kube-emulator listening on {}; KUBECONFIG={path}", emu.url());
    tokio::signal::ctrl_c().await?;
    emu.shutdown().await;
    Ok(())
}
