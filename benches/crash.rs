//! The crash harness, long form: `cargo bench --bench crash` (env: CRASH_KILLS=1000,
//! CRASH_HELD=250, CRASH_TOKENS=3, CRASH_SEED=<random>, CRASH_JOURNAL=1). The operator runs as
//! its own (release-built) process against the emulators and is SIGKILLed CRASH_KILLS times, at
//! least CRASH_HELD of them while a pair Slack issued is not yet saved; see
//! `crates/testground/src/crash.rs`. The bounded form runs in `cargo test` (tests/crash.rs).

use testground::crash::{self, CrashConfig};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("crash bench: run it with `cargo bench --bench crash`; skipping");
        return Ok(());
    }
    let mut config = CrashConfig::new(
        env!("CARGO_BIN_EXE_slack-token-operator"),
        env_number("CRASH_SEED", rand::random()),
    );
    config.kills = env_number("CRASH_KILLS", 1000) as usize;
    config.held_kills = env_number("CRASH_HELD", 250) as usize;
    config.tokens = env_number("CRASH_TOKENS", 3) as usize;
    config.journal = env_number("CRASH_JOURNAL", 1) == 1;
    println!(
        "slack-token-operator crash harness: {} kills (≥ {} held), {} SlackTokens, journal {}, seed {}",
        config.kills,
        config.held_kills,
        config.tokens,
        if config.journal { "on" } else { "off" },
        config.seed
    );
    let report =
        tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(crash::run(config))?;
    println!("{report}");
    anyhow::ensure!(report.broken_chains.is_empty() && report.not_ready.is_empty(), "refresh chains broke");
    Ok(())
}
