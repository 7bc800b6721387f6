//! Reading the SlackToken a command names.

use crate::resource::SlackToken;
use anyhow::Context as _;
use kube::Api;

/// SlackToken `name` in `namespace`, or an error that says it is not there.
pub async fn slacktoken(api: &Api<SlackToken>, name: &str, namespace: &str) -> anyhow::Result<SlackToken> {
    api.get_opt(name)
        .await
        .context("reading the SlackToken")?
        .with_context(|| format!("SlackToken {name} not found in namespace {namespace}"))
}
