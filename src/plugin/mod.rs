//! `kubectl slacktoken`: the commands people run against SlackTokens, as a kubectl plugin.
//!
//! kubectl runs any executable named `kubectl-slacktoken` on PATH for `kubectl slacktoken …`.
//! That executable is this binary under that name (a copy or a symlink; the krew archive holds a
//! copy): `main` looks at the name it was started as ([`invoked_as_plugin`]) and parses
//! [`Cli`] instead of the operator's command line. One binary means one build, one release
//! artifact and one version; a second `[[bin]]` target would link the whole crate a second time
//! in every build for the sake of a different name.
//!
//! - `status [NAME]`: [`crate::overview`], as `slack-token-operator status`.
//! - `rotate NAME [--wait]`: [`rotate`]; sets the rotate-now annotation.
//! - `handover NAME [--wait]`: [`handover`]; the new long-lived token of a Manual SlackToken,
//!   read with echo off or from stdin, never from the command line.
//!
//! `--wait` watches the SlackToken ([`answer`]) until [`verdict`] finds the operator's answer
//! in its status. Exit codes: [`DONE`], [`FAILED`], [`ERROR`], [`TIMED_OUT`].

mod answer;
mod handover;
mod lookup;
mod rotate;
mod verdict;

pub use answer::{DONE, ERROR, FAILED, TIMED_OUT};
pub use handover::HandoverArgs;
pub use rotate::RotateArgs;

use crate::overview::StatusArgs;
use std::{ffi::OsStr, path::Path};

/// The name kubectl looks for on PATH.
pub const PLUGIN_NAME: &str = "kubectl-slacktoken";

/// Whether this process was started as `kubectl-slacktoken` (as kubectl starts plugins: argv[0]
/// is the path it found), not as the operator.
pub fn invoked_as_plugin(argv0: Option<&OsStr>) -> bool {
    argv0.map(Path::new).and_then(Path::file_stem).is_some_and(|name| name == PLUGIN_NAME)
}

/// `kubectl slacktoken …`
#[derive(clap::Parser)]
#[command(
    name = "kubectl-slacktoken",
    bin_name = "kubectl slacktoken",
    version,
    about = "Status, rotation and hand-over of SlackTokens (slack-token-operator)",
    after_help = "Exit codes: 0 done (status: all Ready), 1 the operator refused or failed (status: \
                  one is not Ready), 2 nothing was done (bad input, no access), 3 no answer \
                  within --timeout."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Show SlackTokens: Ready and why, expiry, next rotation, last failure.
    Status(StatusArgs),
    /// Ask the operator to rotate a SlackToken now (OAuth and AppConfiguration tokens).
    Rotate(RotateArgs),
    /// Hand a re-issued long-lived token to a Manual SlackToken (read with echo off, or from stdin).
    Handover(HandoverArgs),
}

/// Runs the plugin's command; returns the process's exit code.
pub async fn main(cli: Cli) -> i32 {
    init_logging();
    let result = match cli.command {
        Command::Status(args) => crate::overview::status(args).await,
        Command::Rotate(args) => rotate::rotate(args).await,
        Command::Handover(args) => handover::handover(args).await,
    };
    exit_code(result)
}

/// `rotate` for `slack-token-operator rotate`.
pub async fn rotate(args: RotateArgs) -> i32 {
    init_logging();
    exit_code(rotate::rotate(args).await)
}

/// `handover` for `slack-token-operator handover`.
pub async fn handover(args: HandoverArgs) -> i32 {
    init_logging();
    exit_code(handover::handover(args).await)
}

fn exit_code(result: anyhow::Result<i32>) -> i32 {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ERROR
    })
}

/// Logs go to stderr (stdout is the command's answer), warnings only unless RUST_LOG says more.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_known_by_the_name_kubectl_runs_it_as() {
        let table = [
            (Some("kubectl-slacktoken"), true),
            (Some("/home/u/.krew/bin/kubectl-slacktoken"), true),
            (Some("C:\\krew\\bin\\kubectl-slacktoken.exe"), cfg!(windows)),
            (Some("kubectl-slacktoken.exe"), true),
            (Some("/usr/local/bin/slack-token-operator"), false),
            (Some("kubectl-slacktokens"), false),
            (None, false),
        ];
        for (argv0, plugin) in table {
            assert_eq!(invoked_as_plugin(argv0.map(OsStr::new)), plugin, "{argv0:?}");
        }
    }
}
