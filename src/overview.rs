//! `slack-token-operator status` (and `kubectl slacktoken status`): every SlackToken at a glance, for people and scripts, in the
//! spirit of `cmctl status certificate`. Reads SlackTokens with the user's kubeconfig, like
//! kubectl; exits 1 if any is not Ready, so `status && deploy` works in scripts.

use crate::resource::{find_condition, SlackToken, READY};
use anyhow::Context as _;
use jiff::Timestamp;
use kube::{api::Api, ResourceExt};
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only this SlackToken (default: all in the namespace).
    name: Option<String>,
    #[command(flatten)]
    connect: Connect,
    /// List SlackTokens in all namespaces.
    #[arg(short = 'A', long, conflicts_with = "name")]
    all_namespaces: bool,
    /// `table` for people, `json` for machines.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// Where to find the cluster and which namespace, as kubectl takes them.
#[derive(clap::Args, Clone)]
pub struct Connect {
    /// Namespace (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config or in-cluster, as kubectl).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
}

impl Connect {
    /// A client with the user's credentials, and the namespace to work in.
    pub async fn client(&self) -> anyhow::Result<(kube::Client, String)> {
        let options = kube::config::KubeConfigOptions { context: self.context.clone(), ..Default::default() };
        let config = match &self.kubeconfig {
            Some(path) => {
                let kubeconfig = kube::config::Kubeconfig::read_from(path)
                    .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?
            }
            None if self.context.is_some() => kube::Config::from_kubeconfig(&options).await?,
            None => kube::Config::infer().await?,
        };
        let client = kube::Client::try_from(config).context("connecting to the Kubernetes API")?;
        let namespace = self.namespace.clone().unwrap_or_else(|| client.default_namespace().to_owned());
        Ok((client, namespace))
    }
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Output {
    Table,
    Json,
}

/// Exit codes: everything Ready, something not Ready; listing failed is `main`'s error (2).
pub const ALL_READY: i32 = 0;
pub const NOT_READY: i32 = 1;

/// One SlackToken, as the status command shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub namespace: String,
    pub name: String,
    /// `True`, `False`, or `Unknown` before the operator has reported.
    pub ready: String,
    pub reason: String,
    pub message: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub expiration_time: Option<String>,
    /// Seconds until expiry (negative once expired).
    pub time_left_seconds: Option<i64>,
    pub next_rotation_time: Option<String>,
    pub last_failure_time: Option<String>,
    pub failed_attempts: u32,
}

impl Row {
    pub fn is_ready(&self) -> bool {
        self.ready == "True"
    }
}

/// The rows for `tokens` at `now`, soonest next rotation first (none last).
pub fn rows(tokens: &[SlackToken], now: Timestamp) -> Vec<Row> {
    let mut rows: Vec<Row> = tokens
        .iter()
        .map(|stk| {
            let status = stk.status.clone().unwrap_or_default();
            let ready = find_condition(&status.conditions, READY);
            let expires = status.expiration_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
            Row {
                namespace: stk.namespace().unwrap_or_default(),
                name: stk.name_any(),
                ready: ready.map_or("Unknown", |c| c.status.as_str()).to_owned(),
                reason: ready.map_or_else(|| "NotReconciled".to_owned(), |c| c.reason.clone()),
                message: ready.map_or_else(
                    || "the operator has not reported on this SlackToken yet: is it running?".to_owned(),
                    |c| c.message.clone(),
                ),
                type_: stk.spec.token_type.as_str().to_owned(),
                expiration_time: status.expiration_time.clone(),
                time_left_seconds: expires.map(|e| e.as_second() - now.as_second()),
                next_rotation_time: status.next_rotation_time.clone(),
                last_failure_time: status.last_failure_time.clone(),
                failed_attempts: status.failed_attempts,
            }
        })
        .collect();
    let next = |r: &Row| r.next_rotation_time.as_deref().and_then(|t| t.parse::<Timestamp>().ok());
    rows.sort_by(|a, b| {
        let key = |r: &Row| (next(r).is_none(), next(r), r.namespace.clone(), r.name.clone());
        key(a).cmp(&key(b))
    });
    rows
}

/// 0 if every SlackToken is Ready, 1 otherwise.
pub fn exit_code(rows: &[Row]) -> i32 {
    if rows.iter().all(Row::is_ready) {
        ALL_READY
    } else {
        NOT_READY
    }
}

/// A duration as people read it: `45s`, `12m`, `9h58m`, `3d4h`; `expired` when negative.
pub fn human(seconds: i64) -> String {
    match seconds {
        s if s < 0 => "expired".to_owned(),
        s if s < 120 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// The table: kubectl's layout (columns three spaces apart, as wide as their widest cell).
pub fn table(rows: &[Row], all_namespaces: bool) -> String {
    let mut header =
        vec!["NAME", "READY", "REASON", "TYPE", "EXPIRES", "TIME LEFT", "NEXT ROTATION", "LAST FAILURE"];
    if all_namespaces {
        header.insert(0, "NAMESPACE");
    }
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".to_owned());
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let failure = match (&r.last_failure_time, r.failed_attempts) {
            (Some(at), n) if n > 0 => format!("{at} ({n} attempts)"),
            (Some(at), _) => at.clone(),
            (None, _) => "-".to_owned(),
        };
        let mut line = vec![
            r.name.clone(),
            r.ready.clone(),
            r.reason.clone(),
            r.type_.clone(),
            dash(&r.expiration_time),
            r.time_left_seconds.map_or_else(|| "-".to_owned(), human),
            dash(&r.next_rotation_time),
            failure,
        ];
        if all_namespaces {
            line.insert(0, r.namespace.clone());
        }
        lines.push(line);
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|i| lines.iter().map(|l| l[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(cells.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// What the SlackTokens not Ready say, one paragraph each, for the table's reader.
pub fn problems(rows: &[Row]) -> String {
    rows.iter()
        .filter(|r| !r.is_ready())
        .map(|r| format!("{}/{}: {}: {}\n", r.namespace, r.name, r.reason, r.message))
        .collect()
}

/// Prints the SlackTokens' status; returns the exit code.
pub async fn status(args: StatusArgs) -> anyhow::Result<i32> {
    let (client, namespace) = args.connect.client().await?;
    let api: Api<SlackToken> =
        if args.all_namespaces { Api::all(client) } else { Api::namespaced(client, &namespace) };
    let tokens = match &args.name {
        Some(name) => match api.get_opt(name).await.context("reading the SlackToken")? {
            Some(stk) => vec![stk],
            None => anyhow::bail!("SlackToken {name} not found in namespace {namespace}"),
        },
        None => api.list(&Default::default()).await.context("listing SlackTokens")?.items,
    };
    let rows = rows(&tokens, Timestamp::now());
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Output::Table if rows.is_empty() => match args.all_namespaces {
            true => eprintln!("No SlackTokens found."),
            false => eprintln!("No SlackTokens found in namespace {namespace}."),
        },
        Output::Table => {
            print!("{}", table(&rows, args.all_namespaces));
            let problems = problems(&rows);
            if !problems.is_empty() {
                println!("\n{problems}");
            }
        }
    }
    Ok(exit_code(&rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Condition, SlackTokenSpec, SlackTokenStatus, TokenType};

    fn token(ns: &str, name: &str, ready: Option<&str>, next: Option<&str>) -> SlackToken {
        let mut stk = SlackToken::new(name, SlackTokenSpec::new(TokenType::OAuth, "c", "o"));
        stk.metadata.namespace = Some(ns.into());
        stk.status = Some(SlackTokenStatus {
            conditions: ready
                .map(|status| Condition {
                    type_: READY.into(),
                    status: status.into(),
                    reason: if status == "True" { "TokenPublished" } else { "SlackUnavailable" }.into(),
                    message: "m".into(),
                    observed_generation: None,
                    last_transition_time: "2026-01-01T00:00:00Z".into(),
                })
                .into_iter()
                .collect(),
            expiration_time: Some("2026-01-01T12:00:00Z".into()),
            next_rotation_time: next.map(Into::into),
            ..Default::default()
        });
        stk
    }

    #[test]
    fn rows_come_soonest_rotation_first_and_any_not_ready_fails_the_exit_code() {
        let now: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let tokens = [
            token("b", "later", Some("True"), Some("2026-01-01T11:00:00Z")),
            token("a", "none", Some("True"), None),
            token("a", "sooner", Some("True"), Some("2026-01-01T10:30:00Z")),
        ];
        let r = rows(&tokens, now);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["sooner", "later", "none"]);
        assert_eq!(r[0].time_left_seconds, Some(2 * 3600));
        assert_eq!(exit_code(&r), ALL_READY);
        // (one more SlackToken, exit code)
        let table = [
            (token("a", "x", Some("False"), None), NOT_READY),
            (token("a", "x", None, None), NOT_READY), // not reconciled yet
            (token("a", "x", Some("True"), None), ALL_READY),
        ];
        for (extra, code) in table {
            let mut all = tokens.to_vec();
            all.push(extra);
            assert_eq!(exit_code(&rows(&all, now)), code);
        }
        assert_eq!(exit_code(&[]), ALL_READY);
    }

    #[test]
    fn durations_read_like_kubectl_ages() {
        let table = [
            (-5, "expired"),
            (0, "0s"),
            (90, "90s"),
            (600, "10m"),
            (35_880, "9h58m"),
            (3 * 86400 + 4 * 3600, "3d4h"),
        ];
        for (seconds, text) in table {
            assert_eq!(human(seconds), text, "{seconds}");
        }
    }

    #[test]
    fn the_table_lines_up_and_names_what_is_wrong() {
        let now: Timestamp = "2026-01-01T10:00:00Z".parse().unwrap();
        let r = rows(&[token("team-a", "bot", Some("False"), Some("2026-01-01T10:00:01Z"))], now);
        let text = table(&r, true);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAMESPACE   NAME   READY   REASON "), "{text}");
        assert!(
            lines[1].starts_with(
                "team-a      bot    False   SlackUnavailable   OAuth   2026-01-01T12:00:00Z   2h0m "
            ),
            "{text}"
        );
        assert_eq!(problems(&r), "team-a/bot: SlackUnavailable: m\n");
    }
}
