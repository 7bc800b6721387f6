use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use slack_token_operator::crd::SlackToken;

#[derive(Parser)]
#[command(
    name = "slack-token-operator",
    version,
    about = "Keeps Slack tokens fresh in Kubernetes Secrets"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print the SlackToken CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd) | None => print!("{}", serde_yaml::to_string(&SlackToken::crd())?),
    }
    Ok(())
}
