//! `kubectl slacktoken handover NAME [--wait]`: the one moment a person holds a token. It is
//! read with echo off from the terminal (or from stdin when that is a pipe: `pass show … |
//! kubectl slacktoken handover NAME`), never from the command line, so it is not in shell
//! history or the process list; checked against the SlackToken's kind before anything is sent;
//! and written to the credentials Secret's `pendingToken` by this process's own request, whose
//! body is logged nowhere. With `--wait`, the operator's verdict (auth.test, same team and
//! user) is printed.

use super::{
    answer::{report, watch_for, Waited, DONE, ERROR},
    verdict,
};
use crate::{
    error::MAX_VALUE_BYTES,
    overview::Connect,
    resource::{SlackToken, TokenType, HANDOVER_ANNOTATION, PLUGIN_MANAGER},
    secrets::{hand_over_problem, PENDING_TOKEN},
    GoDuration,
};
use anyhow::Context as _;
use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::api::{Api, Patch, PatchParams};
use secrecy::{ExposeSecret, SecretString};
use std::io::{IsTerminal, Read};

#[derive(clap::Args)]
pub struct HandoverArgs {
    /// The Manual SlackToken.
    name: String,
    #[command(flatten)]
    connect: Connect,
    /// Wait for the operator's verdict: 0 accepted, 1 rejected or failed, 3 no answer in time.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "2m")]
    timeout: GoDuration,
}

pub async fn handover(args: HandoverArgs) -> anyhow::Result<i32> {
    let (client, ns) = args.connect.client().await?;
    let name = &args.name;
    let tokens: Api<SlackToken> = Api::namespaced(client.clone(), &ns);
    let stk = super::lookup::slacktoken(&tokens, name, &ns).await?;
    let manual = match (stk.spec.token_type, &stk.spec.manual) {
        (TokenType::Manual, Some(manual)) => manual.clone(),
        (type_, _) => anyhow::bail!(
            "SlackToken {ns}/{name} is type {type_:?}: the operator rotates it through Slack, nobody hands tokens over; to rotate it now: `kubectl slacktoken rotate {name}`"
        ),
    };
    let input = read_input(&format!("New {:?} token for SlackToken {ns}/{name} (not shown): ", manual.kind))?;
    let token = match token_from(input)
        .map_err(String::from)
        .and_then(|t| hand_over_problem(manual.kind, &t).map_or(Ok(t), Err))
    {
        Ok(token) => token,
        Err(problem) => {
            eprintln!("refused, nothing was sent: {problem}");
            return Ok(ERROR);
        }
    };
    // Rejections and failures recorded before this token are not its verdict.
    let before = verdict::Before::of(&stk);
    let creds = &stk.spec.credentials_ref.name;
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    // A value of this hand-over's own beside the token: the operator names it in a refusal.
    let handover = jiff::Timestamp::now().to_string();
    let body = serde_json::json!({
        "metadata": {"annotations": {HANDOVER_ANNOTATION: handover}},
        "data": {PENDING_TOKEN: ByteString(token.expose_secret().as_bytes().to_vec())},
    });
    let params = PatchParams { field_manager: Some(PLUGIN_MANAGER.into()), ..Default::default() };
    // The answer is the whole Secret, tokens and all: dropped unread.
    secrets
        .patch(creds, &params, &Patch::Merge(&body))
        .await
        .map(drop)
        .with_context(|| format!("writing key {PENDING_TOKEN} of Secret {ns}/{creds}"))?;
    drop(body);
    eprintln!("handed the new token to the operator (Secret {ns}/{creds} key {PENDING_TOKEN})");
    if !args.wait {
        return Ok(DONE);
    }
    let timeout = args.timeout.as_std();
    let waited = watch_for(tokens, name, timeout, |stk| verdict::hand_over(&handover, &before, stk)).await?;
    if let (Waited::TimedOut, Some(earlier)) = (&waited, before.rejection()) {
        // An operator that does not name hand-overs in refusals (older than this plugin)
        // changes nothing it writes when it refuses a token for the same reason as the last.
        eprintln!("an earlier hand-over was refused ({earlier}); an older operator refusing this token for the same reason would say nothing new");
    }
    Ok(report(waited, "the handed-over token", &ns, name, timeout))
}

/// The token as typed (echo off) or piped in.
fn read_input(prompt: &str) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // rpassword prompts on and reads from the terminal itself, with echo off.
        return Ok(rpassword::prompt_password(prompt).context("reading the token from the terminal")?.into());
    }
    // Enough for any token and then some; more is not a token, and is not read.
    let mut bytes = Vec::new();
    stdin
        .lock()
        .take(MAX_VALUE_BYTES as u64 + 64)
        .read_to_end(&mut bytes)
        .context("reading the token from stdin")?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("stdin is not text (UTF-8), so not a token"))?;
    Ok(text.into())
}

/// The token in what was read: one line, surrounding whitespace dropped (`pass show` and `echo`
/// end with a newline). Several lines are refused rather than guessed at: `pass show` prints
/// the whole entry, and its second line is not the token.
fn token_from(input: SecretString) -> Result<SecretString, &'static str> {
    let text = input.expose_secret().trim();
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    match lines {
        0 => Err("no token was given (stdin was empty)"),
        1 => Ok(SecretString::from(text)),
        _ => Err("the input has several lines; give only the token (e.g. `pass show slack/hubot | head -n1 | kubectl slacktoken handover hubot`)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_the_one_line_given() {
        let table = [
            ("xoxb-1-2-abc\n", Ok("xoxb-1-2-abc")),
            ("  xoxb-1-2-abc\r\n\n", Ok("xoxb-1-2-abc")),
            ("", Err("empty")),
            ("\n \n", Err("empty")),
            ("xoxb-1-2-abc\nurl: slack.com\n", Err("several lines")),
        ];
        for (input, want) in table {
            let got = token_from(SecretString::from(input));
            match (want, got) {
                (Ok(t), Ok(got)) => assert_eq!(got.expose_secret(), t),
                (Err(why), Err(problem)) => assert!(problem.contains(why), "{input:?}: {problem}"),
                (want, got) => {
                    panic!("{input:?}: wanted {want:?}, got {:?}", got.map(|t| t.expose_secret().to_owned()))
                }
            }
        }
    }
}
