//! End-to-end: bad input, one row each. Credentials Secrets whose values are not what their keys
//! are for, Slack answers that are not what Slack documents, a SlackToken changed or deleted
//! while Slack answers, two SlackTokens on one credentials Secret. For each: a clear condition,
//! no Slack call where none can succeed, and nothing lost (no refresh token presented twice, and
//! the refresh token that was good is good still).

mod support;

use k8s_openapi::{api::core::v1::Secret, ByteString};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use slack_emulator::{Fault, TokenKind};
use std::{sync::Arc, time::Duration};
use support::{e2e, token_yaml, Captured, TestEnv};

const OAUTH: &str = "oauth.v2.access";
const ROTATE: &str = "tooling.tokens.rotate";

/// The real credentials of the row's token, for rows to put (or not) into the Secret.
struct Real {
    client_id: String,
    client_secret: String,
    refresh: String,
}

type Data = Vec<(&'static str, Vec<u8>)>;

/// The usual OAuth credentials Secret.
fn good(real: &Real) -> Data {
    vec![
        ("clientId", real.client_id.clone().into_bytes()),
        ("clientSecret", real.client_secret.clone().into_bytes()),
        ("refreshToken", real.refresh.clone().into_bytes()),
    ]
}

/// The usual credentials with `key` set to `value`.
fn with(real: &Real, key: &'static str, value: impl Into<Vec<u8>>) -> Data {
    let mut data: Data = good(real).into_iter().filter(|(k, _)| *k != key).collect();
    data.push((key, value.into()));
    data
}

/// What a row expects of the Ready condition.
struct Expect {
    status: &'static str,
    reason: &'static str,
    /// A piece of the condition's message.
    message: &'static str,
    /// Calls of the row's Slack method by then.
    calls: usize,
}

struct Row {
    name: &'static str,
    type_: &'static str,
    extra_spec: &'static str,
    /// The credentials Secret's data.
    secret: fn(&Real) -> Data,
    /// Answers Slack gives the next calls of the row's method instead of its usual ones.
    faults: Vec<Fault>,
    /// An output Secret of that name exists already, made by someone else.
    output_taken: bool,
    expect: Expect,
    /// Transient failures: then Ready=True, with this many calls in all.
    recovers_after: Option<usize>,
    /// A Warning Event the row must record.
    event: Option<&'static str>,
    /// The condition must be there this soon after the SlackToken is created.
    within: Option<Duration>,
}

impl Row {
    fn new(name: &'static str, secret: fn(&Real) -> Data, expect: Expect) -> Self {
        Row {
            name,
            type_: "OAuth",
            extra_spec: "",
            secret,
            faults: Vec::new(),
            output_taken: false,
            expect,
            recovers_after: None,
            event: None,
            within: None,
        }
    }
    fn within(mut self, d: Duration) -> Self {
        self.within = Some(d);
        self
    }
    fn config_token(mut self) -> Self {
        self.type_ = "AppConfiguration";
        self
    }
    fn spec(mut self, extra: &'static str) -> Self {
        self.extra_spec = extra;
        self
    }
    fn slack(mut self, fault: Fault) -> Self {
        self.faults.push(fault);
        self
    }
    fn output_taken(mut self) -> Self {
        self.output_taken = true;
        self
    }
    fn recovers_after(mut self, calls: usize) -> Self {
        self.recovers_after = Some(calls);
        self
    }
    fn event(mut self, reason: &'static str) -> Self {
        self.event = Some(reason);
        self
    }
    fn method(&self) -> &'static str {
        if self.type_ == "AppConfiguration" {
            ROTATE
        } else {
            OAUTH
        }
    }
}

fn refused(reason: &'static str, message: &'static str) -> Expect {
    Expect { status: "False", reason, message, calls: 0 }
}

fn failed_once(reason: &'static str, message: &'static str) -> Expect {
    Expect { status: "False", reason, message, calls: 1 }
}

fn published(message: &'static str) -> Expect {
    Expect { status: "True", reason: "TokenPublished", message, calls: 1 }
}

fn amend(changes: serde_json::Value) -> Fault {
    Fault::Amend(changes.as_object().cloned().unwrap_or_default())
}

/// Just under the API server's limit of 1 MiB for a whole Secret.
const NEARLY_1_MIB: usize = (1 << 20) - 1024;

fn credentials_rows() -> Vec<Row> {
    const INVALID: &str = "InvalidCredentials";
    vec![
        Row::new("empty refreshToken", |r| with(r, "refreshToken", ""), refused(INVALID, "key `refreshToken` is empty")),
        Row::new(
            "a 1 MiB refreshToken",
            |r| with(r, "refreshToken", vec![b'x'; NEARLY_1_MIB]),
            refused(INVALID, "key `refreshToken` holds 1047552 bytes, but a Slack token is about 200"),
        ),
        Row::new(
            "a refreshToken that is not UTF-8",
            |r| with(r, "refreshToken", b"xoxe-1-\xff\xfe".to_vec()),
            refused(INVALID, "key `refreshToken` is not valid UTF-8"),
        ),
        Row::new(
            "whitespace around every value",
            |r| {
                good(r)
                    .into_iter()
                    .map(|(k, v)| (k, [b" \t".as_slice(), &v, b"\n".as_slice()].concat()))
                    .collect()
            },
            published("token published"),
        ),
        Row::new(
            "two tokens pasted into refreshToken",
            |r| with(r, "refreshToken", format!("{} {}", r.refresh, r.refresh)),
            refused(INVALID, "has whitespace or control characters inside its value"),
        ),
        Row::new(
            "a bot token (xoxb-) in refreshToken",
            |r| with(r, "refreshToken", "xoxb-1234-5678-abcdefghijkl"),
            refused(INVALID, "to move it onto token rotation put it in key `legacyToken` instead (type OAuth)"),
        ),
        Row::new(
            "a URL in refreshToken",
            |r| with(r, "refreshToken", "https://hooks.slack.com/services/T0/B0/abcdefghijkl"),
            refused(INVALID, "key `refreshToken` is not a Slack refresh token (those start with `xoxe-`)"),
        ),
        Row::new(
            "a refresh token in legacyToken",
            |r| {
                let mut data = with(r, "legacyToken", r.refresh.clone());
                data.retain(|(k, _)| *k != "refreshToken");
                data
            },
            refused(INVALID, "key `legacyToken` holds a refresh token (`xoxe-`), not a long-lived token: put it in key `refreshToken` instead"),
        ),
        Row::new(
            "keys spelt as in Slack's answers (client_id, client_secret, refresh_token)",
            |r| {
                good(r)
                    .into_iter()
                    .map(|(k, v)| {
                        let k = match k {
                            "clientId" => "client_id",
                            "clientSecret" => "client_secret",
                            _ => "refresh_token",
                        };
                        (k, v)
                    })
                    .collect()
            },
            refused(
                INVALID,
                "key `clientId` is missing (the Secret has keys `client_id`, `client_secret`, `refresh_token`): rename `client_id` to `clientId`",
            ),
        ),
        Row::new(
            "an app configuration token under `token`",
            |r| vec![("token", r.refresh.clone().into_bytes())],
            refused(INVALID, "key `refreshToken` is missing (the Secret has keys `token`)"),
        )
        .config_token(),
        Row::new(
            "an output Secret that belongs to someone else",
            good,
            refused("OutputSecretConflict", "already exists and is not managed by this SlackToken"),
        )
        .output_taken(),
        Row::new(
            "a rotationPeriod too large to represent",
            good,
            published("token published"),
        )
        .spec("rotationPeriod: 99999999999999999999h"),
    ]
}

fn answer_rows() -> Vec<Row> {
    const UNREADABLE: &str = "SlackUnreadableAnswer";
    vec![
        Row::new("an answer that is not JSON", good, failed_once(UNREADABLE, "not JSON"))
            .slack(Fault::MalformedJson)
            .recovers_after(2),
        Row::new(
            "an answer without refresh_token",
            good,
            failed_once(UNREADABLE, "Slack sent an unreadable answer to oauth.v2.access: no `refresh_token` in the answer: will retry with backoff"),
        )
        .slack(Fault::Body(json!({"ok": true, "access_token": "xoxe.xoxb-1-made-up", "expires_in": 43200})))
        .recovers_after(2),
        Row::new("an answer without access_token", good, failed_once(UNREADABLE, "no `access_token` in the answer"))
            .slack(Fault::Body(json!({"ok": true, "refresh_token": "xoxe-1-made-up", "expires_in": 43200})))
            .recovers_after(2),
        Row::new(
            "an HTML 502 page",
            good,
            failed_once("SlackUnavailable", "Slack answered oauth.v2.access with HTTP 502: will retry with backoff"),
        )
        .slack(Fault::Http(502))
        .recovers_after(2),
        Row::new(
            "a hung connection",
            good,
            failed_once("SlackTimeout", "Slack did not answer oauth.v2.access within 15s: will retry with backoff"),
        )
        .slack(Fault::Hang)
        .recovers_after(2)
        .within(Duration::from_secs(20)),
        Row::new("an answer without expires_in", good, published("token published"))
            .slack(amend(json!({"expires_in": null})))
            .event("ExpiryAssumed"),
        Row::new("expires_in negative", good, published("token published"))
            .slack(amend(json!({"expires_in": -5})))
            .event("ExpiryAssumed"),
        Row::new("expires_in zero", good, published("token published"))
            .slack(amend(json!({"expires_in": 0})))
            .event("ExpiryAssumed"),
        Row::new("expires_in absurd (30 000 years)", good, published("token published"))
            .slack(amend(json!({"expires_in": 1_000_000_000_000u64})))
            .event("ExpiryAssumed"),
        Row::new(
            "an app configuration token's answer without exp",
            |r| vec![("refreshToken", r.refresh.clone().into_bytes())],
            published("token published"),
        )
        .config_token()
        .slack(amend(json!({"exp": null})))
        .event("ExpiryAssumed"),
    ]
}

async fn run(env: &TestEnv, row: &Row) {
    let name = "bot";
    let (real, chain) = match row.type_ {
        "AppConfiguration" => {
            let config = env.slack.create_config_token(support::TEAM, "U0E2E");
            let chain = env.slack.installation_of(&config.refresh_token).expect("a chain");
            let real = Real {
                client_id: String::new(),
                client_secret: String::new(),
                refresh: config.refresh_token,
            };
            (real, chain)
        }
        _ => {
            let app = env.slack.create_app(true);
            let installation = env.slack.install(&app, support::TEAM, TokenKind::Bot);
            let refresh = installation.refresh_token.expect("a rotating installation");
            let real = Real { client_id: app.client_id, client_secret: app.client_secret, refresh };
            (real, installation.id)
        }
    };
    let method = row.method();
    for fault in &row.faults {
        env.slack.fail_next(method, 1, fault.clone());
    }
    let data = (row.secret)(&real);
    let mut secret = Secret::default();
    secret.metadata.name = Some(format!("{name}-creds"));
    secret.data = Some(data.iter().map(|(k, v)| (k.to_string(), ByteString(v.clone()))).collect());
    env.secrets().create(&PostParams::default(), &secret).await.expect("credentials Secret created");
    if row.output_taken {
        env.create_secret(&format!("{name}-token"), &[("token", "someone else's")]).await;
    }
    env.create_token(&token_yaml(name, row.type_, row.extra_spec)).await;
    let created = tokio::time::Instant::now();

    let expect = &row.expect;
    let (reason, message) = env
        .eventually(&format!("Ready={} {}", expect.status, expect.reason), env.patience(), || async {
            let status = env.tokens().get_opt(name).await.ok()??.status?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == expect.status && ready.reason == expect.reason)
                .then(|| (ready.reason.clone(), ready.message.clone()))
        })
        .await;
    eprintln!("  Ready={} {reason}: {message}", expect.status);
    if let Some(within) = row.within {
        assert!(created.elapsed() <= within, "the condition came after {:?}", created.elapsed());
    }
    assert_eq!(reason, expect.reason);
    assert!(message.contains(expect.message), "the message says what happened: {message}");
    assert_eq!(env.slack.calls(method), expect.calls, "calls of {method}");
    match row.recovers_after {
        Some(calls) => {
            env.ready(name, "True").await;
            assert_eq!(env.slack.calls(method), calls, "calls of {method} until it worked");
        }
        None => {
            // Nothing changes by waiting: no call is made that cannot succeed.
            env.advance(env.ttl() / 24).await;
            assert_eq!(env.slack.calls(method), expect.calls, "no further calls of {method}");
        }
    }
    if let Some(event) = row.event {
        env.eventually(&format!("a {event} Event"), env.patience(), || async {
            env.event_reasons(name).await.iter().any(|r| r == event).then_some(())
        })
        .await;
    }

    // Nothing of any value in the Secret shows in status or Events.
    let status = serde_json::to_string(&env.status(name).await).unwrap();
    let events = env.event_reasons(name).await.join(" ");
    for (_, value) in &data {
        let value = String::from_utf8_lossy(value);
        let value = value.trim();
        if value.len() >= 8 {
            assert!(!status.contains(value) && !events.contains(value), "a value shows in status or Events");
        }
    }
    // Nothing lost: no refresh token was presented after it was spent, and the chain's newest
    // refresh token is still good (the one put in, or the one saved after a rotation).
    assert!(env.slack.broken_chains().is_empty(), "a spent refresh token was presented");
    if env.slack.refreshes(&chain) == 0 {
        assert!(env.slack.token_is_valid(&real.refresh), "the refresh token put in still works");
    } else {
        let saved = env.secret_value(&format!("{name}-creds"), "refreshToken").await.expect("saved");
        assert!(env.slack.token_is_valid(&saved), "the saved refresh token works");
    }
    if expect.status == "True" {
        let times = env.times(name).await;
        let expires = times.expiration.expect("an expiry");
        let next = times.next_rotation.expect("a rotation scheduled");
        assert!(next < expires, "rotated before it expires");
        if row.event == Some("ExpiryAssumed") {
            // Assumed at first (the Event says so); auth.test tells the real expiry moments later,
            // and the Ready message no longer speaks of an assumption.
            let (_, message) = env
                .eventually("the real expiry learned", env.patience(), || async {
                    let (_, message) = env.ready(name, "True").await;
                    (!message.contains("expiry assumed")).then_some(((), message))
                })
                .await;
            assert!(env.slack.calls("auth.test") >= 1, "auth.test asked: {message}");
            let times = env.times(name).await;
            let (issued, expires) =
                (times.last_rotation.expect("a last rotation"), times.expiration.unwrap());
            let lived = expires.duration_since(issued).as_secs_f64();
            assert!((lived - env.ttl().as_secs_f64()).abs() <= 2.0, "the emulator's lifetime, {lived}s");
            let next = times.next_rotation.expect("a rotation scheduled");
            // And it is rotated then, as any token.
            let calls = env.slack.calls(method);
            env.advance(slack_token_operator::until(env.clock.now(), next) + Duration::from_secs(60)).await;
            env.eventually("the next rotation", env.patience(), || async {
                (env.slack.calls(method) > calls).then_some(())
            })
            .await;
        }
    }
}

fn run_table(rows: Vec<Row>) {
    for row in rows {
        eprintln!("row: {}", row.name);
        let row = Arc::new(row);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let row = row.clone();
            e2e(|env| async move { run(&env, &row).await })
        }));
        if let Err(panic) = result {
            eprintln!("row failed: {}", row.name);
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn credentials_that_cannot_work_are_refused_before_slack_is_called() {
    run_table(credentials_rows());
}

#[test]
fn slack_answers_that_are_not_what_slack_documents() {
    run_table(answer_rows());
}

/// Slack's answer says nothing of the new token's lifetime, and the token lives an hour, not the
/// 12 hours assumed: the Ready message says the expiry is assumed until auth.test, asked at once,
/// tells the real one; the token is then rotated before it dies.
#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn an_answer_without_a_lifetime_learns_the_real_expiry_from_auth_test() {
    e2e(|env| async move {
        let lifetime = env.ttl() / 12;
        env.slack.set_access_token_ttl(lifetime);
        env.slack.fail_next(OAUTH, 1, amend(json!({"expires_in": null})));
        let f = env.oauth_token("bot", "").await;
        let first = env.published_token(&f.output(), None).await;
        env.eventually("the real expiry learned", env.patience(), || async {
            let times = env.times("bot").await;
            let lived = times.expiration?.duration_since(times.last_rotation?);
            (lived.as_secs_f64() <= lifetime.as_secs_f64() + 1.0).then_some(())
        })
        .await;
        let (_, message) = env.ready("bot", "True").await;
        assert!(!message.contains("assumed"), "{message}");
        let reasons = env.event_reasons("bot").await;
        assert!(reasons.iter().any(|r| r == "ExpiryAssumed"), "the assumption was announced: {reasons:?}");

        let next = env.times("bot").await.next_rotation.expect("a rotation scheduled");
        env.advance(slack_token_operator::until(env.clock.now(), next) + Duration::from_secs(1)).await;
        let second = env.published_token(&f.output(), Some(&first)).await;
        assert!(env.slack.token_is_valid(&first), "rotated before the first token died");
        assert!(env.slack.token_is_valid(&second));
        assert_eq!(env.slack.calls(OAUTH), 2);
        assert!(env.slack.broken_chains().is_empty());
    });
}

/// Neither Slack's answer nor auth.test tells the token's lifetime, and the token dies after an
/// hour: Ready=True does not outlast it by more than the next check, minutes later (not the
/// 12 hours assumed); that check finds it dead and rotates at once.
#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn a_token_dead_before_its_assumed_expiry_is_replaced_at_the_next_check() {
    e2e(|env| async move {
        let lifetime = env.ttl() / 12;
        env.slack.set_access_token_ttl(lifetime);
        env.slack.fail_next(OAUTH, 1, amend(json!({"expires_in": null})));
        env.slack.fail_next("auth.test", 10_000, amend(json!({"expires_in": null})));
        let f = env.oauth_token("bot", "").await;
        let first = env.published_token(&f.output(), None).await;
        let (_, message) = env.ready("bot", "True").await;
        assert!(message.contains("expiry assumed"), "the Ready message says so: {message}");
        let issued = env.times("bot").await.last_rotation.expect("a last rotation");
        let died = issued.checked_add(lifetime).unwrap();
        env.advance(slack_token_operator::until(env.clock.now(), died)).await;
        assert!(!env.slack.token_is_valid(&first), "the first token is dead at Slack now");

        // Minute by minute: Ready=True over the dead token no longer than a few minutes.
        let longest = Duration::from_secs(6 * 60);
        let step = Duration::from_secs(30);
        let mut waited = Duration::ZERO;
        let second = loop {
            let (status, published) = (
                env.tokens().get("bot").await.unwrap().status.unwrap_or_default(),
                env.secret_value(&f.output(), "token").await.unwrap_or_default(),
            );
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
            if published != first && ready.as_deref() == Some("True") {
                break published;
            }
            assert!(waited <= longest, "Ready={ready:?} over a dead token {waited:?} after it died");
            env.advance(step).await;
            waited += step;
        };
        assert!(env.slack.token_is_valid(&second), "the new token works");
        assert_eq!(env.slack.calls(OAUTH), 2, "rotated once more");
        assert!(env.slack.calls("auth.test") >= 2, "checked more than once");
        assert!(env.slack.broken_chains().is_empty());
    });
}

/// A rotation Slack takes a few seconds to answer, for changes to land while it is in flight.
async fn rotation_in_flight(env: &TestEnv) -> support::Fixture {
    env.slack.fail_next(OAUTH, 1, Fault::Delay(Duration::from_secs(5)));
    let f = env.oauth_token("bot", "").await;
    env.eventually("Slack called", env.patience(), || async { (env.slack.calls(OAUTH) == 1).then_some(()) })
        .await;
    f
}

#[test]
fn a_slacktoken_deleted_while_slack_answers_loses_no_refresh_token() {
    e2e(|env| async move {
        let f = rotation_in_flight(&env).await;
        env.tokens().delete("bot", &DeleteParams::default()).await.unwrap();
        env.eventually("the new pair saved", env.patience(), || async {
            let saved = env.saved_refresh_token(&f).await?;
            env.slack.token_is_valid(&saved).then_some(())
        })
        .await;
        env.advance(env.patience()).await;
        assert!(env.ctx.pending().is_empty(), "nothing left unsaved");
        assert_eq!(env.slack.refreshes(&f.installation_id), 1);
        assert!(env.slack.broken_chains().is_empty());

        // Made again, it goes on from the saved pair without calling Slack.
        env.create_token(&token_yaml("bot", "OAuth", "")).await;
        env.ready("bot", "True").await;
        let published = env.published_token(&f.output(), None).await;
        assert!(env.slack.token_is_valid(&published));
        assert_eq!(env.slack.calls(OAUTH), 1);
    });
}

#[test]
fn a_slacktoken_edited_while_slack_answers_publishes_where_it_now_says() {
    e2e(|env| async move {
        let f = rotation_in_flight(&env).await;
        let patch = json!({"spec": {"secretRef": {"name": "moved-token"}}});
        env.tokens().patch("bot", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
        let moved = env.published_token("moved-token", None).await;
        assert!(env.slack.token_is_valid(&moved));
        env.eventually("Ready for the new spec", env.patience(), || async {
            let stk = env.tokens().get("bot").await.ok()?;
            let status = stk.status?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready")?;
            (ready.status == "True" && status.observed_generation == stk.metadata.generation).then_some(())
        })
        .await;
        assert_eq!(env.slack.calls(OAUTH), 1, "one rotation");
        assert!(env.slack.broken_chains().is_empty());
        let saved = env.saved_refresh_token(&f).await.unwrap();
        assert!(env.slack.token_is_valid(&saved));
    });
}

#[test]
#[cfg_attr(e2e_real_cluster, ignore = "needs the emulator's fault injection")]
fn of_two_slacktokens_on_one_credentials_secret_one_wins_and_the_other_never_calls_slack() {
    e2e(|env| async move {
        // Metadata patches of Secrets (the claim) take a second: both SlackTokens have read the
        // unlabelled Secret before either claim lands, as when two reconciles run side by side.
        let faults = env.fault_injection();
        faults.add_latency(Some(kube_emulator::Verb::Patch), Some("secrets"), Duration::from_secs(1));
        for round in 0..5 {
            let app = env.slack.create_app(true);
            let installation = env.slack.install(&app, support::TEAM, TokenKind::Bot);
            let refresh = installation.refresh_token.clone().unwrap();
            let creds = format!("shared{round}-creds");
            env.create_secret(
                &creds,
                &[
                    ("clientId", &app.client_id),
                    ("clientSecret", &app.client_secret),
                    ("refreshToken", &refresh),
                ],
            )
            .await;
            let names = [format!("a{round}"), format!("b{round}")];
            for name in &names {
                let yaml = token_yaml(name, "OAuth", "")
                    .replace(&format!("name: {name}-creds"), &format!("name: {creds}"));
                env.create_token(&yaml).await;
            }
            let (winner, loser) = env
                .eventually("one Ready, the other CredentialsInUse", env.patience(), || async {
                    let mut ready = Vec::new();
                    for name in &names {
                        let status = env.tokens().get(name).await.ok()?.status?;
                        let c = status.conditions.iter().find(|c| c.type_ == "Ready")?.clone();
                        ready.push((name.clone(), c.status, c.reason));
                    }
                    match (&ready[0], &ready[1]) {
                        ((a, s, _), (b, _, r)) if s == "True" && r == "CredentialsInUse" => {
                            Some((a.clone(), b.clone()))
                        }
                        ((a, _, r), (b, s, _)) if s == "True" && r == "CredentialsInUse" => {
                            Some((b.clone(), a.clone()))
                        }
                        _ => None,
                    }
                })
                .await;
            let (_, message) = env.ready(&loser, "False").await;
            assert!(message.contains(&format!("already used by SlackToken `{winner}`")), "{message}");
            assert_eq!(env.slack.refreshes(&installation.id), 1, "round {round}: Slack called once");
            assert!(env.slack.broken_chains().is_empty(), "round {round}: a refresh token presented twice");
            let loser_output = env.secrets().get_opt(&format!("{loser}-token")).await.unwrap();
            assert!(loser_output.is_none(), "round {round}: the loser published a token");
            let saved = env.secret_value(&creds, "refreshToken").await.unwrap();
            assert!(env.slack.token_is_valid(&saved), "round {round}: the saved refresh token works");
            assert!(
                env.secret_value(&format!("{winner}-token"), "token").await.is_some(),
                "round {round}: published"
            );
        }
    });
}

/// Counts the keys called `message` in a JSON text, at any depth. A parsed `Value` would keep only
/// one of two equal keys, hiding exactly what is looked for.
struct MessageKeys(usize);

impl<'de> serde::de::DeserializeSeed<'de> for &mut MessageKeys {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for &mut MessageKeys {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            self.0 += usize::from(key == "message");
            map.next_value_seed(&mut *self)?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(&mut *self)?.is_some() {}
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[test]
fn a_failed_reconcile_logs_a_json_line_with_one_message_key() {
    let captured = Captured::default();
    let writer = captured.clone();
    let filter = tracing_subscriber::EnvFilter::new("warn");
    let subscriber = slack_token_operator::logs::json(filter, move || writer.clone()).finish();
    // The e2e runtime is single-threaded, so every task logs through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    e2e(|env| async move {
        env.create_secret(
            "bot-creds",
            &[("clientId", "1.2"), ("clientSecret", "s"), ("refreshToken", "xoxb-1-2")],
        )
        .await;
        env.create_token(&token_yaml("bot", "OAuth", "")).await;
        env.ready("bot", "False").await;
    });
    let logs = captured.text();
    let line =
        logs.lines().find(|l| l.contains("reconcile failed")).expect("a line for the failed reconcile");
    let mut keys = MessageKeys(0);
    serde::de::DeserializeSeed::deserialize(&mut keys, &mut serde_json::Deserializer::from_str(line))
        .unwrap();
    assert_eq!(keys.0, 1, "one `message` key: {line}");
    let parsed: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(parsed["fields"]["message"], "reconcile failed");
    assert_eq!(parsed["fields"]["reason"], "InvalidCredentials");
    let detail = parsed["fields"]["detail"].as_str().expect("the detail");
    assert!(detail.contains("legacyToken"), "{detail}");
}

/// A SlackToken sent as the user wrote it (untyped: the Rust types would not even hold some of
/// these), and the API server's answer.
async fn apply_untyped(env: &TestEnv, yaml: &str) -> Result<kube::api::DynamicObject, kube::Error> {
    let object: kube::api::DynamicObject = serde_saphyr::from_str(yaml).unwrap();
    tokens_untyped(env).create(&PostParams::default(), &object).await
}

fn tokens_untyped(env: &TestEnv) -> kube::Api<kube::api::DynamicObject> {
    let resource = kube::api::ApiResource::erase::<slack_token_operator::SlackToken>(&());
    kube::Api::namespaced_with(env.client.clone(), &env.ns, &resource)
}

/// The 422 a refused write gets: its message, and its one cause's field and reason.
fn refusal(result: Result<kube::api::DynamicObject, kube::Error>) -> (String, String, String) {
    let err = match result {
        Ok(stored) => panic!("accepted: {:?}", stored.data["spec"]),
        Err(err) => err,
    };
    let kube::Error::Api(status) = err else { panic!("expected an API error, got {err}") };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"), "{}", status.message);
    let causes = status.details.map(|d| d.causes).unwrap_or_default();
    assert_eq!(causes.len(), 1, "one cause: {causes:?}");
    let cause = &causes[0];
    (status.message, cause.field.clone(), cause.reason.clone())
}

#[test]
fn specs_that_can_never_work_are_refused_at_apply_with_the_field_named() {
    // (type, extra spec, field, reason, message after `<field>: `)
    let rows = [
        (
            "Manual",
            "manual: {kind: App}",
            "spec.rotationPeriod",
            "FieldValueRequired",
            "Required value: type Manual needs rotationPeriod: how often a person should re-issue the token (e.g. 2160h for 90 days)",
        ),
        (
            "Manual",
            "rotationPeriod: 2160h",
            "spec.manual",
            "FieldValueRequired",
            "Required value: type Manual needs manual.kind: one of LegacyTestToken, CustomIntegrationBot, HubotLita, App",
        ),
        (
            "OAuth",
            "manual: {kind: App}",
            "spec.manual",
            "FieldValueForbidden",
            "Forbidden: manual is only for type Manual: remove it, or set type: Manual",
        ),
        (
            "OAuth",
            "rotationPeriod: 0h0m",
            "spec.rotationPeriod",
            "FieldValueInvalid",
            "Invalid value: \"0h0m\": rotationPeriod must be greater than zero (e.g. 24h)",
        ),
        (
            "OAuth",
            "rolloutRestartTargets: [{kind: Deployment, name: web}, {kind: StatefulSet, name: web}, {kind: Deployment, name: web}]",
            "spec.rolloutRestartTargets[2]",
            "FieldValueDuplicate",
            "Duplicate value: {\"kind\":\"Deployment\",\"name\":\"web\"}",
        ),
    ];
    e2e(|env| async move {
        for (i, (type_, extra, field, reason, message)) in rows.into_iter().enumerate() {
            let name = format!("bad-{i}");
            let result = apply_untyped(&env, &token_yaml(&name, type_, extra)).await;
            let expected = format!("SlackToken.slack.rotator.dev \"{name}\" is invalid: {field}: {message}");
            assert_eq!(refusal(result), (expected, field.to_owned(), reason.to_owned()), "{type_} {extra}");
            assert!(env.tokens().get_opt(&name).await.unwrap().is_none(), "nothing stored");
        }
        // One Secret for both: the output Secret would overwrite the credentials.
        let yaml = token_yaml("same", "OAuth", "").replace("name: same-token", "name: same-creds");
        let (message, field, reason) = refusal(apply_untyped(&env, &yaml).await);
        assert_eq!((field.as_str(), reason.as_str()), ("spec.secretRef.name", "FieldValueInvalid"));
        assert_eq!(
            message,
            "SlackToken.slack.rotator.dev \"same\" is invalid: spec.secretRef.name: Invalid value: secretRef.name must differ from credentialsRef.name: the operator creates and owns the output Secret, so name a Secret of its own (e.g. <name>-token)"
        );
    });
}

#[test]
fn specs_near_the_refused_ones_are_accepted() {
    let rows = [
        ("Manual", "rotationPeriod: 2160h\nmanual: {kind: LegacyTestToken}"),
        ("OAuth", "rotationPeriod: 0.5s"),
        ("OAuth", "rolloutRestartTargets: [{kind: Deployment, name: web}, {kind: StatefulSet, name: web}]"),
        ("AppConfiguration", "renewBefore: 0s"),
    ];
    e2e(|env| async move {
        for (i, (type_, extra)) in rows.into_iter().enumerate() {
            let result = apply_untyped(&env, &token_yaml(&format!("good-{i}"), type_, extra)).await;
            assert!(result.is_ok(), "{type_} {extra}: {result:?}");
        }
    });
}

#[test]
fn the_type_of_a_slacktoken_cannot_be_changed_by_update_patch_or_apply() {
    e2e(|env| async move {
        let created = apply_untyped(&env, &token_yaml("bot", "OAuth", "")).await.unwrap();
        let api = tokens_untyped(&env);
        let expected = (
            "SlackToken.slack.rotator.dev \"bot\" is invalid: spec.type: Invalid value: \"AppConfiguration\": type cannot be changed: it decides which credentials the operator reads; create a new SlackToken with the other type instead".to_owned(),
            "spec.type".to_owned(),
            "FieldValueInvalid".to_owned(),
        );
        let mut changed = created.clone();
        changed.data["spec"]["type"] = json!("AppConfiguration");
        let update = api.replace("bot", &PostParams::default(), &changed).await;
        assert_eq!(refusal(update), expected, "update");
        let patch = json!({"spec": {"type": "AppConfiguration"}});
        let merge = api.patch("bot", &PatchParams::default(), &Patch::Merge(&patch)).await;
        assert_eq!(refusal(merge), expected, "merge patch");
        let applied = json!({
            "apiVersion": "slack.rotator.dev/v1alpha1", "kind": "SlackToken", "metadata": {"name": "bot"},
            "spec": {"type": "AppConfiguration", "credentialsRef": {"name": "bot-creds"}, "secretRef": {"name": "bot-token"}},
        });
        let apply = api.patch("bot", &PatchParams::apply("test").force(), &Patch::Apply(&applied)).await;
        assert_eq!(refusal(apply), expected, "server-side apply");
        let stored = api.get("bot").await.unwrap();
        assert_eq!(stored.data["spec"]["type"], "OAuth");
        // Other fields still change.
        let suspend = json!({"spec": {"suspend": true}});
        api.patch("bot", &PatchParams::default(), &Patch::Merge(&suspend)).await.expect("suspend");
    });
}

#[test]
fn kubectl_apply_prints_the_refusal_with_the_field_and_what_to_write() {
    // kubectl is a process of its own: the emulator runs on a multi-threaded runtime meanwhile.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ground =
        runtime.block_on(testground::Ground::start(Default::default())).expect("the test ground starts");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stk.yaml");
    let apply = |yaml: String| {
        std::fs::write(&file, yaml).unwrap();
        let out = testground::kubectl(
            &ground.kubeconfig(),
            &["apply", "-n", "default", "-f", file.to_str().unwrap()],
        );
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (ok, stderr) = apply(token_yaml("bot", "Manual", "manual: {kind: App}"));
    assert!(!ok);
    assert!(
        stderr.contains(
            "The SlackToken \"bot\" is invalid: spec.rotationPeriod: Required value: type Manual needs rotationPeriod"
        ),
        "{stderr}"
    );
    let (ok, stderr) = apply(token_yaml("bot", "Manual", "manual: {kind: App}\nrotationPeriod: 2160h"));
    assert!(ok, "{stderr}");
    let (ok, stderr) = apply(token_yaml("bot", "OAuth", "rotationPeriod: 2160h"));
    assert!(!ok);
    assert!(
        stderr.contains(
            "The SlackToken \"bot\" is invalid: spec.type: Invalid value: \"OAuth\": type cannot be changed"
        ),
        "{stderr}"
    );
}
