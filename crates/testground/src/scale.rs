//! Many SlackTokens at once: what the rotation bench measures and the scale test checks.
//!
//! A fleet is N bot installations whose credentials already hold a published-ready token that
//! falls due at one chosen second, so a whole round of rotations can be made to come due at
//! once. The operator runs in this process on the ground's clients; [`Tally`] counts what it
//! asked of the Kubernetes API (the emulator's per-verb counters), of Slack and of itself
//! (reconciles), and [`PerRotation`] divides a window's counts by the rotations in it.
//! Benchmarks print the figures; tests check only [`PerRotation::broken_invariants`].

use super::{Bot, Ground};
use anyhow::Context as _;
use futures::{stream, StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::ByteString;
use kube::api::PostParams;
use slack_token_operator::{format_time, oauth_secret, Context, SlackToken, SlackTokenSpec, TokenType};
use std::sync::Arc;

/// The Slack methods that issue tokens; a rotation makes exactly one call of one of them.
pub const ISSUING_METHODS: [&str; 3] = ["oauth.v2.access", "oauth.v2.exchange", "tooling.tokens.rotate"];
/// Every Slack method the operator may call.
pub const SLACK_METHODS: [&str; 5] =
    ["oauth.v2.access", "oauth.v2.exchange", "tooling.tokens.rotate", "auth.test", "auth.revoke"];

/// The default `renewBefore` of a token whose issue time is unknown (Slack's 12 hours / 3,
/// capped at 2h): a credentials Secret whose `expiresAt` is this after a time falls due then.
const RENEW_BEFORE_UNKNOWN_ISSUE: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

impl Ground {
    /// Bot `name` in `ns` as [`super::Apis::bot`] makes it, but when `due` is given its credentials
    /// also hold the installation's access token with an expiry that makes its first scheduled
    /// rotation fall due at `due` (it is published as it is until then).
    pub async fn bot_due(&self, ns: &str, name: &str, due: Option<Timestamp>) -> anyhow::Result<Bot> {
        let app = self.slack.create_app(true);
        let installation = self.slack.install(&app, "T0GROUND", slack_emulator::TokenKind::Bot);
        let refresh =
            installation.refresh_token.clone().context("a rotating installation has a refresh token")?;
        let bot = Bot { ns: ns.to_owned(), name: name.to_owned(), installation_id: installation.id, app };
        let mut creds = oauth_secret(&bot.creds(), &bot.app.client_id, &bot.app.client_secret, &refresh);
        if let Some(due) = due {
            let expires = due.checked_add(RENEW_BEFORE_UNKNOWN_ISSUE)?;
            let data = creds.data.get_or_insert_with(Default::default);
            data.insert("accessToken".into(), ByteString(installation.access_token.into_bytes()));
            data.insert("expiresAt".into(), ByteString(format_time(expires).into_bytes()));
        }
        self.secrets(ns).create(&PostParams::default(), &creds).await?;
        let token = SlackToken::new(name, SlackTokenSpec::new(TokenType::OAuth, &bot.creds(), &bot.output()));
        self.tokens(ns).create(&PostParams::default(), &token).await?;
        Ok(bot)
    }

    /// `n` bots `stk-0` … in `ns` (see [`Ground::bot_due`]), created `concurrency` at a time.
    pub async fn fleet(
        &self,
        ns: &str,
        n: usize,
        due: Option<Timestamp>,
        concurrency: usize,
    ) -> anyhow::Result<Vec<Bot>> {
        self.namespace(ns).await?;
        stream::iter(0..n)
            .map(|i| async move { self.bot_due(ns, &format!("stk-{i}"), due).await })
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    /// What the operator with `ctx` has asked of the API server, Slack and itself so far.
    pub fn tally(&self, ctx: Option<&Context>) -> Tally {
        Tally {
            kube: self.kube.stats(),
            events: self.kube.stats_for("events"),
            slack: SLACK_METHODS.map(|m| self.slack.calls(m)),
            reconciles: ctx.map_or(0, |c| c.metrics().reconciles.get()),
        }
    }

    /// Installations whose refresh chain broke (a refresh token spent twice): must be none.
    pub fn broken_chains(&self) -> usize {
        self.slack.broken_chains().len()
    }
}

/// Counters at one moment (see [`Ground::tally`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub kube: kube_emulator::Stats,
    /// The Event writes among `kube`'s.
    pub events: kube_emulator::Stats,
    /// Calls per method of [`SLACK_METHODS`].
    pub slack: [usize; 5],
    pub reconciles: u64,
}

/// A window's counts divided by the rotations in it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PerRotation {
    pub rotations: usize,
    /// GET and LIST requests.
    pub reads: f64,
    /// Writes of objects (not Events): create, update, patch, delete.
    pub object_writes: f64,
    pub event_writes: f64,
    /// Calls of the methods that issue tokens.
    pub slack_calls: f64,
    /// Calls of every other Slack method.
    pub other_slack_calls: f64,
    pub reconciles: f64,
    pub watch_requests: f64,
}

impl PerRotation {
    pub fn between(a: &Tally, b: &Tally, rotations: usize) -> Self {
        let per = |x: u64| x as f64 / rotations.max(1) as f64;
        let (s, t) = (&a.kube, &b.kube);
        let events = b.events.writes() - a.events.writes();
        let issuing: usize = (0..3).map(|i| b.slack[i] - a.slack[i]).sum::<usize>();
        let other: usize = (3..5).map(|i| b.slack[i] - a.slack[i]).sum::<usize>();
        Self {
            rotations,
            reads: per((t.get + t.list) - (s.get + s.list)),
            object_writes: per(t.writes() - s.writes() - events),
            event_writes: per(events),
            slack_calls: per(issuing as u64),
            other_slack_calls: per(other as u64),
            reconciles: per(b.reconciles - a.reconciles),
            watch_requests: per(t.watch - s.watch),
        }
    }

    /// The invariants of a scheduled rotation (not its timings): one Slack call, at most three
    /// object writes and one Event, at most two reads, one reconcile.
    pub fn broken_invariants(&self) -> Vec<String> {
        let mut broken = Vec::new();
        let mut check = |ok: bool, what: String| {
            if !ok {
                broken.push(what);
            }
        };
        check(self.slack_calls == 1.0, format!("Slack calls per rotation {} (must be 1)", self.slack_calls));
        check(
            self.object_writes + self.event_writes <= 4.0,
            format!("writes per rotation {} (at most 4)", self.object_writes + self.event_writes),
        );
        check(
            self.object_writes <= 3.0,
            format!("object writes per rotation {} (at most 3)", self.object_writes),
        );
        check(
            self.event_writes <= 1.0,
            format!("Event writes per rotation {} (at most 1)", self.event_writes),
        );
        check(self.reads <= 2.0, format!("reads per rotation {} (at most 2)", self.reads));
        check(self.reconciles <= 1.0, format!("reconciles per rotation {} (at most 1)", self.reconciles));
        broken
    }

    /// The table the benches print.
    pub fn table(&self) -> String {
        let rows = [
            ("k8s API reads (get + list)", self.reads),
            ("k8s API object writes", self.object_writes),
            ("k8s API Event writes", self.event_writes),
            ("Slack calls that issue tokens", self.slack_calls),
            ("other Slack calls", self.other_slack_calls),
            ("reconciles", self.reconciles),
            ("watch requests", self.watch_requests),
        ];
        let mut out = format!("    {:<32} {:>12}   ({} rotations)\n", "", "per rotation", self.rotations);
        for (label, value) in rows {
            out.push_str(&format!("    {label:<32} {value:>12.2}\n"));
        }
        out
    }
}

/// Requests of the idle window (nothing due): must all be zero.
pub fn idle_requests(a: &Tally, b: &Tally) -> (u64, u64) {
    let (s, t) = (&a.kube, &b.kube);
    (t.writes() - s.writes(), (t.get + t.list) - (s.get + s.list))
}

/// Waits (on whatever clock tokio runs) until the counters have not moved for `quiet`, checking
/// every `every`: the operator's follow-up work is done.
pub async fn settle(
    ground: &Ground,
    ctx: Option<&Arc<Context>>,
    quiet: std::time::Duration,
    every: std::time::Duration,
) {
    let mut last = ground.tally(ctx.map(|c| &**c));
    let mut quiet_since = tokio::time::Instant::now();
    while quiet_since.elapsed() < quiet {
        tokio::time::sleep(every).await;
        let now = ground.tally(ctx.map(|c| &**c));
        if now != last {
            last = now;
            quiet_since = tokio::time::Instant::now();
        }
    }
}
