//! `kubectl slacktoken rotate NAME [--wait]`: sets `slack.rotator.dev/rotate` to a value never
//! used before, so the operator rotates once now; with `--wait`, waits for its answer.

use super::{
    answer::{report, watch_for, DONE},
    verdict,
};
use crate::{
    overview::Connect,
    resource::{SlackToken, PLUGIN_MANAGER, ROTATE_ANNOTATION},
    GoDuration,
};
use anyhow::Context as _;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};

#[derive(clap::Args)]
pub struct RotateArgs {
    /// The SlackToken.
    name: String,
    #[command(flatten)]
    connect: Connect,
    /// Wait for the rotation and print its outcome: 0 rotated, 1 failed, 3 no answer in time.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "2m")]
    timeout: GoDuration,
}

pub async fn rotate(args: RotateArgs) -> anyhow::Result<i32> {
    let (client, ns) = args.connect.client().await?;
    let name = &args.name;
    let api: Api<SlackToken> = Api::namespaced(client, &ns);
    let stk = super::lookup::slacktoken(&api, name, &ns).await?;
    if let Some(why) = verdict::no_rotation(&stk) {
        anyhow::bail!("{why}; nothing was asked");
    }
    let taken = [
        stk.metadata.annotations.as_ref().and_then(|a| a.get(ROTATE_ANNOTATION)).cloned(),
        stk.status.as_ref().and_then(|s| s.last_rotate_request.clone()),
    ];
    let request = fresh_request(Timestamp::now(), &taken);
    let patch = serde_json::json!({"metadata": {"annotations": {ROTATE_ANNOTATION: request}}});
    let params = PatchParams { field_manager: Some(PLUGIN_MANAGER.into()), ..Default::default() };
    let asked = api.patch(name, &params, &Patch::Merge(&patch)).await.context("annotating the SlackToken")?;
    eprintln!("asked for a rotation of SlackToken {ns}/{name} ({ROTATE_ANNOTATION}={request})");
    if !args.wait {
        return Ok(DONE);
    }
    // Failures already recorded when the request was made are not its answer.
    let before = verdict::Before::of(&asked);
    let timeout = args.timeout.as_std();
    let waited =
        watch_for(api, name, timeout, |stk| verdict::rotation(&request, &before, stk, Timestamp::now()))
            .await?;
    Ok(report(waited, "the rotate request", &ns, name, timeout))
}

/// A rotate request no earlier one used: the time to the nanosecond, made unique against the
/// values in use (a clock that went backwards, two requests in the same nanosecond).
fn fresh_request(now: Timestamp, taken: &[Option<String>]) -> String {
    let base = now.to_string();
    let is_taken = |v: &str| taken.iter().flatten().any(|t| t == v);
    (0..)
        .map(|n| if n == 0 { base.clone() } else { format!("{base}-{n}") })
        .find(|v| !is_taken(v))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_a_value_not_in_use() {
        let now: Timestamp = "2026-01-01T10:00:00.123456789Z".parse().unwrap();
        let at = "2026-01-01T10:00:00.123456789Z".to_owned();
        let table = [
            (vec![None, None], at.clone()),
            (vec![Some("x".into()), Some("y".into())], at.clone()),
            (vec![Some(at.clone()), None], format!("{at}-1")),
            (vec![Some(at.clone()), Some(format!("{at}-1"))], format!("{at}-2")),
        ];
        for (taken, want) in table {
            assert_eq!(fresh_request(now, &taken), want, "{taken:?}");
        }
    }
}
