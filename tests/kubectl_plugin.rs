//! `kubectl slacktoken …` as a person runs it: kubectl finds this binary on PATH under the name
//! `kubectl-slacktoken` and runs it against the Kubernetes emulator, with the real controller
//! (in this process, on the paused clock) and the Slack emulator behind it.
//!
//! Each command runs on tokio's blocking pool: while it runs, the paused clock does not jump
//! ahead (nothing becomes due), and the controller still answers at once, as the emulators are
//! served from this process. `--wait` needs no sleeping: the plugin watches the SlackToken.
//! Every command runs with RUST_LOG=trace, and its whole output is checked for token text.

mod support;

use k8s_openapi::ByteString;
use kube::ResourceExt;
use slack_emulator::{Fault, TokenKind};
use std::{io::Write, path::PathBuf, process::Stdio};
use support::{e2e, TestEnv};

/// A directory on PATH holding the plugin, and the kubeconfig of the test's cluster.
struct Kubectl {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Fails the test if `token` (as text, or base64 as in a Secret's `data`) is anywhere in
    /// the command's output or logs.
    fn assert_no_token(&self, token: &str) {
        let base64 = serde_json::to_string(&ByteString(token.as_bytes().to_vec())).unwrap();
        let base64 = base64.trim_matches('"');
        for (stream, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            assert!(!text.contains(token), "the token is in the command's {stream}:\n{text}");
            assert!(!text.contains(base64), "the token (base64) is in the command's {stream}:\n{text}");
        }
    }
}

impl Kubectl {
    fn new(env: &TestEnv) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // As krew installs it: a link named kubectl-slacktoken to the one binary.
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_slack-token-operator"),
            dir.path().join("kubectl-slacktoken"),
        )
        .unwrap();
        let kubeconfig = match (&env.kube, std::env::var_os("E2E_KUBECONFIG")) {
            (_, Some(real)) => PathBuf::from(real),
            (Some(kube), None) => {
                let path = dir.path().join("kubeconfig");
                kube.write_kubeconfig(&path).unwrap();
                path
            }
            (None, None) => unreachable!("no cluster"),
        };
        Self { dir, kubeconfig }
    }

    /// `kubectl slacktoken ARGS -n <the test's namespace>`, finding the plugin on PATH, logging at
    /// trace level.
    fn command(&self, env: &TestEnv, args: &[&str]) -> std::process::Command {
        let path = std::env::join_paths(
            std::iter::once(self.dir.path().to_owned())
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
        )
        .unwrap();
        let mut command = std::process::Command::new("kubectl");
        command
            .arg("slacktoken")
            .args(args)
            .args(["-n", &env.ns])
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "trace");
        command
    }

    /// `kubectl slacktoken ARGS -n <the test's namespace>`, with `stdin` piped in (or none).
    async fn run(&self, env: &TestEnv, args: &[&str], stdin: Option<&str>) -> Ran {
        let mut command = self.command(env, args);
        command
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let stdin = stdin.map(str::to_owned);
        let out = tokio::task::spawn_blocking(move || {
            let mut child = command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run kubectl ({e}): this test needs kubectl on PATH"));
            if let Some(text) = stdin {
                child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
            }
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let ran = Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert!(
            !ran.stderr.contains("unknown command \"slacktoken\""),
            "kubectl found the plugin:\n{}",
            ran.stderr
        );
        ran
    }
}

/// A command that a failing test does not leave behind, waiting at its prompt.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a person at a terminal sees and what the command printed.
struct AtTerminal {
    ran: Ran,
    /// Everything that appeared on the terminal (the prompt, and any echo of what was typed).
    screen: String,
}

impl Kubectl {
    /// `kubectl slacktoken ARGS -n <ns>` on a terminal of its own (a pseudo-terminal that
    /// `setsid --ctty` makes its controlling terminal; stdout and stderr are pipes): waits for
    /// the prompt, then until the terminal's echo is off, then types `token` and Enter.
    async fn run_on_terminal(&self, env: &TestEnv, args: &[&str], token: &str) -> AtTerminal {
        use rustix::{pty, termios};
        use std::io::Read;
        let command = self.command(env, args);
        let token = token.to_owned();
        tokio::task::spawn_blocking(move || {
            let master = pty::openpt(pty::OpenptFlags::RDWR | pty::OpenptFlags::NOCTTY).unwrap();
            pty::grantpt(&master).unwrap();
            pty::unlockpt(&master).unwrap();
            let name = pty::ptsname(&master, Vec::new()).unwrap();
            let terminal =
                std::fs::File::options().read(true).write(true).open(name.to_str().unwrap()).unwrap();
            let mut setsid = std::process::Command::new("setsid");
            setsid.args(["--ctty", "--wait"]).arg(command.get_program()).args(command.get_args());
            for (key, value) in command.get_envs() {
                if let Some(value) = value {
                    setsid.env(key, value);
                }
            }
            let mut child = Killed(
                setsid.stdin(terminal).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(
                    |e| panic!("cannot run setsid ({e}): this test needs util-linux's setsid"),
                ),
            );
            // The Command holds the terminal's other end too; only the command may, so that
            // reading the terminal ends when the command does.
            drop(setsid);
            let drain = |mut pipe: Box<dyn Read + Send>| {
                std::thread::spawn(move || {
                    let mut text = String::new();
                    let _ = pipe.read_to_string(&mut text);
                    text
                })
            };
            let stdout = drain(Box::new(child.0.stdout.take().unwrap()));
            let stderr = drain(Box::new(child.0.stderr.take().unwrap()));
            let mut master = std::fs::File::from(master);
            let mut screen = Vec::new();
            let mut buf = [0u8; 1024];
            while !String::from_utf8_lossy(&screen).contains("(not shown): ") {
                let n = master.read(&mut buf).expect("the prompt appears on the terminal");
                assert!(n > 0, "the terminal closed before the prompt: {}", String::from_utf8_lossy(&screen));
                screen.extend_from_slice(&buf[..n]);
            }
            // The prompt is written just before echo is turned off: type only once it is off.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while termios::tcgetattr(&master).unwrap().local_modes.contains(termios::LocalModes::ECHO) {
                assert!(std::time::Instant::now() < deadline, "echo was never turned off");
                std::thread::yield_now();
            }
            std::io::Write::write_all(&mut master, format!("{token}\n").as_bytes()).unwrap();
            let status = child.0.wait().unwrap();
            // The command is gone, so the terminal has no other end: reading ends (EIO on Linux).
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                screen.extend_from_slice(&buf[..n]);
            }
            AtTerminal {
                ran: Ran {
                    code: status.code().unwrap_or(-1),
                    stdout: stdout.join().unwrap(),
                    stderr: stderr.join().unwrap(),
                },
                screen: String::from_utf8_lossy(&screen).into_owned(),
            }
        })
        .await
        .unwrap()
    }
}

async fn manual_token(env: &TestEnv, name: &str, kind: &str, token: &str) {
    env.manual_token(name, token, &format!("rotationPeriod: 2160h\nmanual:\n  kind: {kind}")).await;
    env.published_token(&format!("{name}-token"), None).await;
    env.ready(name, "True").await;
}

#[test]
fn a_token_piped_to_handover_is_accepted_and_the_old_one_revoked_without_its_text_anywhere() {
    e2e(|env| async move {
        let kubectl = Kubectl::new(&env);
        let old = env.slack.create_legacy_token("T1", "U1", TokenKind::User);
        manual_token(&env, "legacy", "LegacyTestToken", &old).await;
        let new = env.slack.create_legacy_token("T1", "U1", TokenKind::User);

        // As `pass show slack/legacy | kubectl slacktoken handover legacy --wait`.
        let ran = kubectl
            .run(&env, &["handover", "legacy", "--wait", "--timeout", "60s"], Some(&format!("{new}\n")))
            .await;
        assert_eq!(ran.code, 0, "accepted:\n{}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout.contains("accepted") && ran.stdout.contains("(team T1, user U1)"),
            "{}",
            ran.stdout
        );
        assert!(ran.stdout.contains("the replaced token is revoked"), "{}", ran.stdout);
        // It is true: the operator published the new token, revoked the old and moved it over.
        assert_eq!(env.secret_value("legacy-token", "token").await.as_deref(), Some(new.as_str()));
        assert!(env.slack.is_revoked(&old));
        assert_eq!(env.secret_value("legacy-creds", "accessToken").await.as_deref(), Some(new.as_str()));
        assert_eq!(env.secret_value("legacy-creds", "pendingToken").await, None);
        let creds = env.secrets().get("legacy-creds").await.unwrap();
        assert!(!creds.annotations().contains_key("slack.rotator.dev/handover"), "gone with pendingToken");

        // At trace level the plugin and its Kubernetes client logged their requests (so the
        // check below looked at real logs), and neither token is in any of it.
        assert!(ran.stderr.contains("TRACE"), "trace logs on stderr:\n{}", ran.stderr);
        assert!(
            ran.stderr.contains("/secrets/legacy-creds"),
            "the Secret's PATCH is logged:\n{}",
            ran.stderr
        );
        ran.assert_no_token(&new);
        ran.assert_no_token(&old);
    });
}

#[test]
fn a_token_typed_at_the_prompt_is_not_shown_and_is_handed_over() {
    e2e(|env| async move {
        let kubectl = Kubectl::new(&env);
        let old = env.slack.create_legacy_token("T1", "U1", TokenKind::Bot);
        manual_token(&env, "hubot", "HubotLita", &old).await;
        let new = env.slack.create_legacy_token("T1", "U1", TokenKind::Bot);
        let t =
            kubectl.run_on_terminal(&env, &["handover", "hubot", "--wait", "--timeout", "60s"], &new).await;
        assert_eq!(t.ran.code, 0, "accepted:\n{}\n{}\nterminal: {}", t.ran.stdout, t.ran.stderr, t.screen);
        assert!(
            t.screen.contains("New HubotLita token for SlackToken"),
            "prompted on the terminal: {:?}",
            t.screen
        );
        assert!(!t.screen.contains(&new), "what was typed is not shown: {:?}", t.screen);
        t.ran.assert_no_token(&new);
        assert!(t.ran.stdout.contains("accepted"), "{}", t.ran.stdout);
        assert_eq!(env.secret_value("hubot-token", "token").await.as_deref(), Some(new.as_str()));
    });
}

#[test]
fn a_token_of_the_wrong_kind_is_refused_before_anything_is_sent() {
    e2e(|env| async move {
        let kubectl = Kubectl::new(&env);
        let old = env.slack.create_legacy_token("T1", "U1", TokenKind::Bot);
        manual_token(&env, "hubot", "HubotLita", &old).await;
        let before = env.secrets().get("hubot-creds").await.unwrap().resource_version();
        // A user token for a Hubot bot, and a whole `pass` entry instead of its first line.
        let user_token = env.slack.create_legacy_token("T1", "U1", TokenKind::User);
        let bot_token = env.slack.create_legacy_token("T1", "U1", TokenKind::Bot);
        for (input, why) in [
            (format!("{user_token}\n"), "a Hubot/Lita bot token starts with `xoxb-`"),
            (format!("{bot_token}\nlogin: hubot\n"), "several lines"),
            (String::new(), "no token"),
        ] {
            let ran =
                kubectl.run(&env, &["handover", "hubot", "--wait", "--timeout", "60s"], Some(&input)).await;
            assert_eq!(ran.code, 2, "refused:\n{}\n{}", ran.stdout, ran.stderr);
            assert!(
                ran.stderr.contains("refused, nothing was sent") && ran.stderr.contains(why),
                "{}",
                ran.stderr
            );
            ran.assert_no_token(&user_token);
            ran.assert_no_token(&bot_token);
        }
        let after = env.secrets().get("hubot-creds").await.unwrap().resource_version();
        assert_eq!(before, after, "the credentials Secret was not written");
        assert_eq!(env.secret_value("hubot-creds", "pendingToken").await, None);

        // Nor does a Manual token take a rotate request, nor an OAuth token a hand-over.
        let ran = kubectl.run(&env, &["rotate", "hubot"], None).await;
        assert_eq!(ran.code, 2);
        assert!(ran.stderr.contains("kubectl slacktoken handover hubot"), "{}", ran.stderr);
        env.oauth_token("bot", "").await;
        let ran = kubectl.run(&env, &["handover", "bot"], Some(&bot_token)).await;
        assert_eq!(ran.code, 2);
        assert!(ran.stderr.contains("kubectl slacktoken rotate bot"), "{}", ran.stderr);
        ran.assert_no_token(&bot_token);
    });
}

#[test]
fn a_token_the_operator_rejects_is_reported_with_its_reason() {
    e2e(|env| async move {
        let kubectl = Kubectl::new(&env);
        let old = env.slack.create_legacy_token("T1", "U1", TokenKind::Bot);
        manual_token(&env, "bot", "CustomIntegrationBot", &old).await;
        let foreign = env.slack.create_legacy_token("T2", "U1", TokenKind::Bot);
        let ran = kubectl.run(&env, &["handover", "bot", "--wait", "--timeout", "60s"], Some(&foreign)).await;
        assert_eq!(ran.code, 1, "rejected:\n{}\n{}", ran.stdout, ran.stderr);
        assert!(
            ran.stdout.starts_with("rejected: pendingToken in Secret bot-creds was not used"),
            "{}",
            ran.stdout
        );
        assert!(ran.stdout.contains("T2") && ran.stdout.contains("T1"), "says why: {}", ran.stdout);
        ran.assert_no_token(&foreign);
        assert_eq!(env.secret_value("bot-token", "token").await.as_deref(), Some(old.as_str()));

        // A second token refused for the very same reason still gets its verdict: the operator
        // names the hand-over it refused.
        let (_, first_refusal) = env.condition("bot", "PendingToken", "False").await;
        let again = env.slack.create_legacy_token("T2", "U1", TokenKind::Bot);
        let ran = kubectl.run(&env, &["handover", "bot", "--wait", "--timeout", "20s"], Some(&again)).await;
        assert_eq!(ran.code, 1, "rejected:\n{}\n{}", ran.stdout, ran.stderr);
        let (_, second_refusal) = env.condition("bot", "PendingToken", "False").await;
        assert!(second_refusal.contains("(hand-over "), "{second_refusal}");
        assert_ne!(first_refusal, second_refusal, "each refusal names its hand-over");
        assert_eq!(ran.stdout.trim(), format!("rejected: {second_refusal}"));
        ran.assert_no_token(&again);
    });
}

#[test]
fn rotate_wait_says_rotated_with_the_new_expiry() {
    e2e(|env| async move {
        let kubectl = Kubectl::new(&env);
        let (f, first) = env.ready_bot().await;
        let refreshes = env.slack.refreshes(&f.installation_id);
        let ran = kubectl.run(&env, &["rotate", "bot", "--wait", "--timeout", "60s"], None).await;
        assert_eq!(ran.code, 0, "rotated:\n{}\n{}", ran.stdout, ran.stderr);
        let status = env.status("bot").await;
        let expiry = status.expiration_time.clone().unwrap();
        assert!(
            ran.stdout.starts_with("rotated:") && ran.stdout.contains(&format!("expires {expiry}")),
            "{}",
            ran.stdout
        );
        assert_eq!(env.slack.refreshes(&f.installation_id), refreshes + 1, "one rotation");
        let request = status.last_rotate_request.unwrap();
        assert!(ran.stderr.contains(&format!("slack.rotator.dev/rotate={request}")), "{}", ran.stderr);
        let new = env.published_token(&f.output(), Some(&first)).await;
        ran.assert_no_token(&first);
        ran.assert_no_token(&new);

        // Each run asks anew: a second rotation, not the first one's answer again.
        let ran = kubectl.run(&env, &["rotate", "bot", "--wait", "--timeout", "60s"], None).await;
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        assert_eq!(env.slack.refreshes(&f.installation_id), refreshes + 2);
    });
}

#[test]
fn rotate_wait_reports_a_failure_when_slack_refuses() {
    e2e(|env| async move {
        let kubectl = Kubectl::new(&env);
        let (_f, first) = env.ready_bot().await;
        env.slack.fail_next("oauth.v2.access", 1, Fault::SlackError("invalid_refresh_token".into()));
        let ran = kubectl.run(&env, &["rotate", "bot", "--wait", "--timeout", "60s"], None).await;
        assert_eq!(ran.code, 1, "failed:\n{}\n{}", ran.stdout, ran.stderr);
        // Slack's `invalid_refresh_token`: the chain is broken, and the message says what to do.
        assert!(ran.stdout.starts_with("rotation of SlackToken bot failed: ChainBroken:"), "{}", ran.stdout);
        assert!(ran.stdout.contains("Reinstall to Workspace"), "{}", ran.stdout);
        ran.assert_no_token(&first);
    });
}

#[test]
fn rotate_wait_without_an_operator_gives_up_after_its_timeout() {
    support::e2e_before_start(|env| async move {
        let kubectl = Kubectl::new(&env);
        env.oauth_token("bot", "").await;
        let ran = kubectl.run(&env, &["rotate", "bot", "--wait", "--timeout", "1s"], None).await;
        assert_eq!(ran.code, 3, "timed out:\n{}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.contains("no answer from the operator within 1s"), "{}", ran.stdout);
        let annotations = env.tokens().get("bot").await.unwrap().annotations().clone();
        assert!(annotations.contains_key("slack.rotator.dev/rotate"), "the request stands");
    });
}

#[test]
fn status_through_kubectl_shows_one_or_all() {
    e2e(|env| async move {
        let kubectl = Kubectl::new(&env);
        env.ready_bot().await;
        let ran = kubectl.run(&env, &["status"], None).await;
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        assert!(ran.stdout.starts_with("NAME ") && ran.stdout.contains("\nbot "), "{}", ran.stdout);
        let ran = kubectl.run(&env, &["status", "bot", "-o", "json"], None).await;
        assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
        let rows: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(rows.as_array().map(Vec::len), Some(1));
        assert_eq!(rows[0]["ready"], "True");
        let ran = kubectl.run(&env, &["status", "nobody"], None).await;
        assert_eq!(ran.code, 2);
        assert!(ran.stderr.contains("SlackToken nobody not found"), "{}", ran.stderr);
    });
}
