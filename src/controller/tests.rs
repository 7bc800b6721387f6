use super::*;
use crate::{clock::SystemClock, slack::SlackClient};
use kube::api::ObjectMeta;

fn token(name: &str, uid: &str, generation: i64, annotation: Option<&str>) -> CachedToken {
    let json = serde_json::json!({
        "metadata": {
            "name": name, "namespace": "ns", "uid": uid, "generation": generation,
            "annotations": annotation.map(|v| serde_json::json!({"slack.rotator.dev/rotate": v})),
        },
        "status": {"expirationTime": "2026-01-01T12:00:00Z"},
    });
    serde_json::from_value(json).unwrap()
}

#[test]
fn a_slacktoken_wakes_a_reconcile_when_what_reconcile_acts_on_changes_or_it_is_new() {
    let wakes = Wakes::default();
    // (event, news?) in the order the watch shows them
    let table = [
        (token("bot", "u1", 1, None), true, "first sight"),
        (token("bot", "u1", 1, None), false, "the same again (a status write: status is not an input)"),
        (token("bot", "u1", 2, None), true, "spec changed (generation)"),
        (token("bot", "u1", 2, Some("now")), true, "rotate-now annotation"),
        (token("bot", "u1", 2, Some("now")), false, "unchanged"),
        (token("other", "u2", 2, Some("now")), true, "another SlackToken with the same inputs"),
        (token("bot", "u3", 2, Some("now")), true, "recreated under the same name (new uid)"),
    ];
    for (stk, news, what) in table {
        assert_eq!(wakes.is_news(&stk), news, "{what}");
    }
    wakes.forget("ns", "bot");
    assert!(wakes.is_news(&token("bot", "u3", 2, Some("now"))), "after its deletion: news");
    wakes.forget_all_except(&[("ns".to_owned(), "bot".to_owned())].into());
    assert!(!wakes.is_news(&token("bot", "u3", 2, Some("now"))), "listed again: kept");
    assert!(wakes.is_news(&token("other", "u2", 2, Some("now"))), "not listed again: forgotten");
    assert_eq!(wakes.seen().len(), 2);
}

fn context() -> Arc<Context> {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    Context::new(client, SlackClient::new("http://127.0.0.1:9/api/").unwrap(), Arc::new(SystemClock))
}

fn output_secret(rv: &str) -> PartialObjectMeta<Secret> {
    PartialObjectMeta {
        metadata: ObjectMeta {
            name: Some("bot-token".into()),
            namespace: Some("ns".into()),
            resource_version: Some(rv.into()),
            labels: Some([(SLACKTOKEN_LABEL.to_owned(), "bot".to_owned())].into()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn as_secret(meta: &PartialObjectMeta<Secret>) -> Secret {
    Secret { metadata: meta.metadata.clone(), ..Default::default() }
}

#[tokio::test]
async fn a_slot_kept_for_a_slacktoken_gone_from_the_cache_goes_on() {
    let ctx = context();
    let key = |name: &str| turns::Key::new("ns", name);
    let mut held: Vec<_> = (0..MAX_CONCURRENT_RECONCILES)
        .map(|i| ctx.turns.take(&key(&format!("t{i}")), turns::Urgency::MOST).unwrap())
        .collect();
    assert!(ctx.turns.take(&key("gone"), turns::Urgency::MOST).is_none(), "parked");
    let (summoner, mut summoned) = futures::channel::mpsc::unbounded();
    ctx.turns.connect(None, summoner);
    drop(held.pop());
    let asked = summoned.next().await.unwrap();
    assert_eq!(asked.name, "gone", "a slot is kept for it and its reconcile asked for");

    // The SlackToken was deleted meanwhile: kube-runtime does not run its reconcile.
    let gone: Result<(), controller::Error<std::io::Error, watcher::Error>> =
        Err(controller::Error::ObjectNotFound(Box::new(asked.erase())));
    after_reconcile(&ctx, gone);
    assert!(ctx.turns.take(&key("next"), turns::Urgency::MOST).is_some(), "the kept slot went on");
}

#[tokio::test(start_paused = true)]
async fn our_write_seen_before_its_answer_wakes_nothing() {
    let ctx = context();
    let turn = ctx.turns.take(&turns::Key::new("ns", "bot"), turns::Urgency::MOST).unwrap();
    // The watch shows version 10 while the reconcile that wrote it still waits for the answer.
    let event = Ok(watcher::Event::Apply(output_secret("10")));
    let judged = tokio::spawn({
        let ctx = ctx.clone();
        async move { news(&ctx, event).await.is_some() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!judged.is_finished(), "judged only once the reconcile has ended");
    ctx.own_writes.wrote(&as_secret(&output_secret("10")));
    drop(turn);
    assert!(!judged.await.unwrap(), "our own write is no news");

    // Someone else's version is news, after the reconcile (or the patience) ends.
    let again = ctx.turns.take(&turns::Key::new("ns", "bot"), turns::Urgency::MOST).unwrap();
    let started = tokio::time::Instant::now();
    assert!(news(&ctx, Ok(watcher::Event::Apply(output_secret("11")))).await.is_some());
    assert_eq!(started.elapsed(), OWN_WRITE_PATIENCE);
    // With no reconcile running, at once.
    drop(again);
    assert!(news(&ctx, Ok(watcher::Event::Apply(output_secret("12")))).await.is_some());
}

#[tokio::test(start_paused = true)]
async fn an_event_waiting_for_its_reconcile_holds_back_no_other_slacktokens_event() {
    let ctx = context();
    let _turn = ctx.turns.take(&turns::Key::new("ns", "bot"), turns::Urgency::MOST).unwrap();
    let mut other = output_secret("21");
    other.metadata.name = Some("other-token".into());
    other.metadata.labels = Some([(SLACKTOKEN_LABEL.to_owned(), "other".to_owned())].into());
    // First an unknown version of bot's Secret (its reconcile is running), then other's.
    let events = futures::stream::iter([
        Ok(watcher::Event::Apply(output_secret("20"))),
        Ok(watcher::Event::Apply(other)),
    ])
    .chain(futures::stream::pending());
    let mut news = std::pin::pin!(only_news(ctx.clone(), events));
    let started = tokio::time::Instant::now();
    let first = news.next().await.unwrap().unwrap();
    assert_eq!(first.metadata.name.as_deref(), Some("other-token"));
    assert_eq!(started.elapsed(), Duration::ZERO, "other's event did not wait for bot's reconcile");
    let second = news.next().await.unwrap().unwrap();
    assert_eq!(second.metadata.name.as_deref(), Some("bot-token"));
    assert_eq!(started.elapsed(), OWN_WRITE_PATIENCE);
}
