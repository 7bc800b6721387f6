//! Scale on tokio's paused clock: the small form of the rotation bench (its invariants, never
//! its timings), the order of work when more is due than can run at once, Slack's Retry-After
//! per app and workspace, Events that read right, and sharding by label selector.

use futures::{stream, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::{
    api::{Api, ListParams, Patch, PatchParams},
    ResourceExt,
};
use slack_emulator::Fault;
use slack_token_operator::{Context, Scope, SharedClock, SlackClient, SlackToken, TokioClock};
use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};
use testground::{
    scale::{idle_requests, settle, PerRotation},
    Bot, Ground, GroundConfig,
};
use tracing::span;
use tracing_subscriber::{
    layer::{self, SubscriberExt},
    registry::LookupSpan,
    Layer,
};

const NS: &str = "scale";

/// Runs `body` on a paused clock that starts on a whole second (status times are seconds).
fn paused<F, Fut>(body: F)
where
    F: FnOnce(Ground, SharedClock) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    runtime
        .block_on(async {
            let start = Timestamp::now().round(jiff::Unit::Second)?;
            let clock: SharedClock = Arc::new(TokioClock::starting_at(start));
            let ground =
                Ground::start(GroundConfig { clock: Some(clock.clone()), ..Default::default() }).await?;
            ground.namespace(NS).await?;
            body(ground, clock).await
        })
        .unwrap();
}

fn operator(ground: &Ground, clock: &SharedClock, selector: Option<&str>) -> Arc<Context> {
    start_operator(ground, clock, selector).0
}

fn start_operator(
    ground: &Ground,
    clock: &SharedClock,
    selector: Option<&str>,
) -> (Arc<Context>, tokio::task::JoinHandle<()>) {
    let slack = SlackClient::new(&ground.slack.base_url()).unwrap();
    let ctx = Context::new(ground.client.clone(), slack, clock.clone());
    let scope = Scope { namespaces: vec![], selector: selector.map(Into::into) };
    let task = tokio::spawn(slack_token_operator::run_scoped(ctx.clone(), scope));
    (ctx, task)
}

fn later(clock: &SharedClock, d: Duration) -> Timestamp {
    clock.now().checked_add(d).unwrap()
}

async fn statuses(ground: &Ground) -> HashMap<String, slack_token_operator::SlackTokenStatus> {
    let list = ground.tokens(NS).list(&ListParams::default()).await.unwrap();
    list.items.into_iter().map(|t| (t.name_any(), t.status.unwrap_or_default())).collect()
}

fn ready(status: &slack_token_operator::SlackTokenStatus) -> bool {
    status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn all_ready(ground: &Ground, n: usize) {
    for _ in 0..600 {
        if statuses(ground).await.values().filter(|s| ready(s)).count() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("not all {n} SlackTokens Ready");
}

/// Lets the operator finish what it is doing (quiet for 5 s of paused time).
async fn quiet(ground: &Ground, ctx: &Arc<Context>) {
    settle(ground, Some(ctx), Duration::from_secs(5), Duration::from_secs(1)).await;
}

#[test]
fn three_hundred_tokens_due_at_once_rotate_with_one_reconcile_two_reads_and_four_writes_each() {
    paused(|ground, clock| async move {
        const N: usize = 300;
        let due = later(&clock, Duration::from_secs(3600));
        let bots = ground.fleet(NS, N, Some(due), 32).await?;
        let ctx = operator(&ground, &clock, None);
        all_ready(&ground, N).await;
        quiet(&ground, &ctx).await;

        let before = ground.tally(Some(&ctx));
        tokio::time::sleep(slack_token_operator::until(clock.now(), due) + Duration::from_secs(1)).await;
        quiet(&ground, &ctx).await;
        let after = ground.tally(Some(&ctx));
        let refreshed = bots.iter().filter(|b| ground.slack.refreshes(&b.installation_id) == 1).count();
        assert_eq!(refreshed, N, "every installation refreshed exactly once in the round");
        let per = PerRotation::between(&before, &after, N);
        assert_eq!(per.broken_invariants(), Vec::<String>::new(), "\n{}", per.table());

        // Nothing is due for hours: nothing is read or written.
        let idle_start = ground.tally(Some(&ctx));
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let (writes, reads) = idle_requests(&idle_start, &ground.tally(Some(&ctx)));
        assert_eq!((writes, reads), (0, 0), "idle: writes, reads");
        assert_eq!(ground.broken_chains(), 0);
        assert!(statuses(&ground).await.values().all(|s| ready(s) && s.rotation_count == 1));
        Ok(())
    });
}

#[test]
fn when_more_is_due_than_can_run_tokens_without_a_token_go_first_then_the_nearest_expiry() {
    paused(|ground, clock| async move {
        // An operator publishes OLD tokens (about four times its slots) that fall due over the
        // next two hours, and stops. Hours later a new one starts: all are due, their tokens
        // expiring up to 120 minutes apart, and NEW SlackTokens created meanwhile (fewer than the
        // slots) have no token at all. Names in list order are the reverse of urgency, so list
        // order alone would get it wrong.
        let slots = slack_token_operator::MAX_CONCURRENT_RECONCILES as u64;
        let (old, new) = (4 * slots - 8, slots * 5 / 8);
        let mut expiries: HashMap<String, Timestamp> = HashMap::new();
        let mut bots = Vec::new();
        let two_hours = Duration::from_secs(2 * 3600);
        for i in 0..old {
            let due = later(&clock, Duration::from_secs(7200 * (old - i) / old));
            let name = format!("a-{i:03}");
            bots.push(ground.bot_due(NS, &name, Some(due)).await?);
            expiries.insert(name, due.checked_add(two_hours)?);
        }
        let (ctx, first) = start_operator(&ground, &clock, None);
        all_ready(&ground, bots.len()).await;
        quiet(&ground, &ctx).await;
        first.abort();
        let _ = first.await;
        tokio::time::sleep(Duration::from_secs(125 * 60)).await;
        // Fewer than the slots: whatever the first wave took, the rest fit in the second.
        for i in 0..new {
            bots.push(ground.bot_due(NS, &format!("b-{i:03}"), None).await?);
        }
        // A slow Slack: each call takes 10 s, so the new operator's slots fill up.
        ground.slack.fail_next("*", 10_000, Fault::Delay(Duration::from_secs(10)));
        let started = clock.now();
        let ctx = operator(&ground, &clock, None);
        tokio::time::sleep(Duration::from_secs(120)).await;
        all_ready(&ground, bots.len()).await;
        quiet(&ground, &ctx).await;

        // Each wave of calls (one per slot) ends 10 s after the one before: a token's wave is when it got its
        // new token. The first wave is whatever arrived first; from then on, the most urgent.
        let status = statuses(&ground).await;
        let wave = |name: &str| {
            let at: Timestamp = status[name].last_rotation_time.as_deref().unwrap().parse().unwrap();
            (at.duration_since(started).as_secs() + 5) / 10
        };
        let new_waves: Vec<i64> = (0..new).map(|i| wave(&format!("b-{i:03}"))).collect();
        assert!(new_waves.iter().all(|w| *w <= 2), "tokens without a token go first: waves {new_waves:?}");
        let mut due: Vec<(Timestamp, i64)> =
            expiries.iter().map(|(name, expires)| (*expires, wave(name))).collect();
        due.sort();
        let later_waves: Vec<i64> = due.iter().map(|(_, w)| *w).filter(|w| *w > 1).collect();
        assert!(
            later_waves.windows(2).all(|w| w[0] <= w[1]),
            "after the first wave, nearest expiry first: {later_waves:?}"
        );
        assert!(*later_waves.last().unwrap() >= 4, "the slots were full: {later_waves:?}");
        assert_eq!(ground.broken_chains(), 0);
        Ok(())
    });
}

/// Counts the `reconcile` spans that exist (created, not yet closed), per thread: each test runs
/// its runtime on its own thread. A subscriber for the whole process, because a thread's own
/// (`set_default`) is not reliably asked about a span while other tests run: tracing caches per
/// call site whether any subscriber wants it.
#[derive(Clone, Default)]
struct LiveReconcileSpans(Arc<std::sync::Mutex<HashMap<std::thread::ThreadId, usize>>>);

impl LiveReconcileSpans {
    /// The process's (installed on first use).
    fn installed() -> Self {
        static LIVE: std::sync::OnceLock<LiveReconcileSpans> = std::sync::OnceLock::new();
        LIVE.get_or_init(|| {
            let live = Self::default();
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(live.clone()))
                .expect("no other global subscriber in this test binary");
            live
        })
        .clone()
    }

    /// Spans of this thread's reconciles alive now.
    fn here(&self) -> usize {
        self.0.lock().unwrap().get(&std::thread::current().id()).copied().unwrap_or(0)
    }
}

impl<S> Layer<S> for LiveReconcileSpans
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: layer::Context<'_, S>) {
        if attrs.metadata().name() == "reconcile" {
            let thread = std::thread::current().id();
            *self.0.lock().unwrap().entry(thread).or_default() += 1;
            if let Some(span) = ctx.span(id) {
                span.extensions_mut().insert(thread);
            }
        }
    }

    fn on_close(&self, id: span::Id, ctx: layer::Context<'_, S>) {
        let Some(span) = ctx.span(&id).filter(|s| s.name() == "reconcile") else { return };
        let Some(thread) = span.extensions().get::<std::thread::ThreadId>().copied() else { return };
        if let Some(live) = self.0.lock().unwrap().get_mut(&thread) {
            *live -= 1;
        }
    }
}

#[test]
fn a_slacktoken_waiting_for_its_turn_holds_no_task_and_no_log_span() {
    // Ten thousand SlackTokens at start-up wait for a few dozen slots. Each waiting one is a few bytes in
    // the turn queue: not a task in kube-runtime's runner (whose table of futures never shrinks)
    // nor a span in the subscriber's registry (kept, fields formatted, while the span exists).
    let live = LiveReconcileSpans::installed();
    paused(|ground, clock| async move {
        const N: usize = 400;
        const SLOTS: usize = slack_token_operator::MAX_CONCURRENT_RECONCILES;
        // A running reconcile costs tasks: its connection to Slack, the Slack emulator's side of
        // it (the emulator runs on this runtime), the timer of Slack's delay. A waiting one none.
        const TASKS_PER_RUNNING: usize = 6;
        ground.fleet(NS, N, None, 16).await?;
        // Slack answers each first refresh only after 10 s: meanwhile the reconciles that called
        // it hold every slot, and the others can only wait for a turn.
        ground.slack.fail_next("oauth.v2.access", N, Fault::Delay(Duration::from_secs(10)));
        let tasks = || tokio::runtime::Handle::current().metrics().num_alive_tasks();
        let before = tasks();
        let ctx = operator(&ground, &clock, None);
        for _ in 0..50 {
            if ground.slack.calls("oauth.v2.access") >= SLOTS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Long enough for the controller to hand over every SlackToken, short of Slack's answer.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(ground.slack.calls("oauth.v2.access"), SLOTS, "a reconcile for each slot, no more");
        assert_eq!(live.here(), SLOTS, "spans: only the running reconciles'");
        assert!(
            tasks() < before + TASKS_PER_RUNNING * SLOTS + (N - SLOTS) / 4,
            "tasks: {} before the operator, {} with {SLOTS} running and {} waiting",
            before,
            tasks(),
            N - SLOTS
        );
        all_ready(&ground, N).await;
        assert!(statuses(&ground).await.values().all(ready));
        assert_eq!(ground.slack.calls("oauth.v2.access"), N, "each waiting SlackToken had its turn, once");
        quiet(&ground, &ctx).await;
        assert_eq!(live.here(), 0, "spans left");
        Ok(())
    });
}

#[test]
fn a_rate_limit_holds_only_the_same_app_in_the_same_workspace() {
    paused(|ground, clock| async move {
        // Two SlackTokens of one app in one workspace, and one of another app.
        let limited = ground.bot_due(NS, "limited", None).await?;
        let sibling = sibling_of(&ground, &limited, "sibling").await?;
        let other = ground.bot_due(NS, "other", None).await?;
        let ctx = operator(&ground, &clock, None);
        all_ready(&ground, 3).await;
        quiet(&ground, &ctx).await;
        let calls = || ground.slack.calls("oauth.v2.access");
        let before = calls();

        ground.slack.fail_next("oauth.v2.access", 1, Fault::RateLimited { retry_after_secs: 120 });
        ground.rotate_now(&limited, "1").await?;
        quiet(&ground, &ctx).await;
        assert_eq!(calls(), before + 1, "the 429");
        ground.rotate_now(&sibling, "1").await?;
        ground.rotate_now(&other, "1").await?;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(calls(), before + 2, "only the other app was called");
        assert_eq!(ground.slack.refreshes(&other.installation_id), 2);
        assert_eq!(ground.slack.refreshes(&sibling.installation_id), 1, "the sibling waits out Retry-After");
        tokio::time::sleep(Duration::from_secs(240)).await;
        for bot in [&limited, &sibling] {
            assert_eq!(
                ground.slack.refreshes(&bot.installation_id),
                2,
                "{} rotated after Retry-After",
                bot.name
            );
        }
        assert_eq!(ground.broken_chains(), 0);
        Ok(())
    });
}

/// A second installation of `bot`'s app in its workspace, with its own SlackToken.
async fn sibling_of(ground: &Ground, bot: &Bot, name: &str) -> anyhow::Result<Bot> {
    let installation = ground.slack.install(&bot.app, "T0GROUND", slack_emulator::TokenKind::User);
    let sibling =
        Bot { ns: NS.into(), name: name.into(), installation_id: installation.id, app: bot.app.clone() };
    let creds = slack_token_operator::oauth_secret(
        &sibling.creds(),
        &bot.app.client_id,
        &bot.app.client_secret,
        installation.refresh_token.as_deref().unwrap_or_default(),
    );
    ground.secrets(NS).create(&Default::default(), &creds).await?;
    let spec = slack_token_operator::SlackTokenSpec::new(
        slack_token_operator::TokenType::OAuth,
        &sibling.creds(),
        &sibling.output(),
    );
    ground.tokens(NS).create(&Default::default(), &SlackToken::new(name, spec)).await?;
    Ok(sibling)
}

#[test]
fn the_latest_rotated_event_tells_the_current_expiry() {
    paused(|ground, clock| async move {
        let bot = ground.bot_due(NS, "bot", None).await?;
        let ctx = operator(&ground, &clock, None);
        all_ready(&ground, 1).await;
        for request in ["1", "2", "3"] {
            tokio::time::sleep(Duration::from_secs(60)).await;
            ground.rotate_now(&bot, request).await?;
            quiet(&ground, &ctx).await;
        }
        let status = &statuses(&ground).await["bot"];
        assert_eq!(status.rotation_count, 4);
        let events: Api<Event> = Api::namespaced(ground.client.clone(), NS);
        let mut rotated: Vec<Event> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("Rotated"))
            .collect();
        let last_seen = |e: &Event| {
            e.series.as_ref().map(|s| s.last_observed_time.0).or(e.event_time.as_ref().map(|t| t.0)).unwrap()
        };
        rotated.sort_by_key(last_seen);
        let latest = rotated.last().unwrap().note.clone().unwrap_or_default();
        let expiry = status.expiration_time.clone().unwrap();
        assert!(latest.contains(&expiry), "latest Rotated note {latest:?} tells expiry {expiry}");
        // Every note is true of every occurrence it counts.
        for e in &rotated {
            let count = e.series.as_ref().map_or(1, |s| s.count);
            assert_eq!(count, 1, "a different expiry is a different note: {:?}", e.note);
        }
        Ok(())
    });
}

#[test]
fn an_operator_with_a_selector_looks_after_only_the_matching_slacktokens() {
    paused(|ground, clock| async move {
        let bots: Vec<Bot> = stream::iter(0..6)
            .then(|i| {
                let ground = &ground;
                async move { ground.bot_due(NS, &format!("stk-{i}"), None).await }
            })
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        for (i, bot) in bots.iter().enumerate() {
            let shard = if i % 2 == 0 { "even" } else { "odd" };
            let patch = serde_json::json!({"metadata": {"labels": {"shard": shard}}});
            ground.tokens(NS).patch(&bot.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        let even = operator(&ground, &clock, Some("shard=even"));
        tokio::time::sleep(Duration::from_secs(30)).await;
        quiet(&ground, &even).await;
        let status = statuses(&ground).await;
        for (i, bot) in bots.iter().enumerate() {
            assert_eq!(ready(&status[&bot.name]), i % 2 == 0, "{}: only the even shard's", bot.name);
        }
        let odd = operator(&ground, &clock, Some("shard=odd"));
        all_ready(&ground, 6).await;
        quiet(&ground, &odd).await;
        for bot in &bots {
            assert_eq!(
                ground.slack.refreshes(&bot.installation_id),
                1,
                "{} rotated by one operator",
                bot.name
            );
        }
        assert_eq!(ground.broken_chains(), 0);
        Ok(())
    });
}
