//! What a request to the operator comes to: `--wait` watches the SlackToken for the answer
//! [`verdict`](super::verdict) finds in it, prints it, and the exit code says which.

use super::verdict::Verdict;
use crate::resource::SlackToken;
use futures::TryStreamExt;
use kube::{
    api::Api,
    runtime::{watcher, watcher::Event},
};
use std::{pin::pin, time::Duration};

/// The operator did what was asked (or, for `status`, every SlackToken is Ready).
pub const DONE: i32 = 0;
/// The operator refused or failed (or, for `status`, a SlackToken is not Ready).
pub const FAILED: i32 = 1;
/// Nothing was asked of the operator, or its answer could not be read: bad input, no access.
pub const ERROR: i32 = 2;
/// `--wait` ran out of time without an answer; the request stands.
pub const TIMED_OUT: i32 = 3;

/// What `--wait` came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Waited {
    Verdict(Verdict),
    Deleted,
    TimedOut,
}

/// Watches SlackToken `name` until `verdict` finds an answer in it (the current state counts:
/// the watch starts with a list), it is deleted, or `timeout` has passed. A watch, not a poll:
/// the answer is seen the moment the operator writes it.
pub async fn watch_for(
    api: Api<SlackToken>,
    name: &str,
    timeout: Duration,
    verdict: impl Fn(&SlackToken) -> Option<Verdict>,
) -> anyhow::Result<Waited> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = pin!(watcher(api, config));
    let wait = async {
        while let Some(event) = events.try_next().await? {
            match event {
                Event::Apply(stk) | Event::InitApply(stk) => {
                    if let Some(v) = verdict(&stk) {
                        return Ok(Waited::Verdict(v));
                    }
                }
                Event::Delete(_) => return Ok(Waited::Deleted),
                Event::Init | Event::InitDone => {}
            }
        }
        anyhow::bail!("the watch of SlackToken {name} ended")
    };
    match tokio::time::timeout(timeout, wait).await {
        Ok(result) => result.map_err(|e: anyhow::Error| e.context(format!("watching SlackToken {name}"))),
        Err(_) => Ok(Waited::TimedOut),
    }
}

/// Prints what `--wait` came to; returns the exit code.
pub fn report(waited: Waited, what: &str, ns: &str, name: &str, timeout: Duration) -> i32 {
    match waited {
        Waited::Verdict(Verdict::Done(message)) => {
            println!("{message}");
            DONE
        }
        Waited::Verdict(Verdict::Failed(message)) => {
            println!("{message}");
            FAILED
        }
        Waited::Deleted => {
            println!("SlackToken {ns}/{name} was deleted before the operator answered");
            FAILED
        }
        Waited::TimedOut => {
            println!(
                "no answer from the operator within {}; {what} stands: see `kubectl slacktoken status {name} -n {ns}` (is the operator running?)",
                crate::GoDuration(timeout)
            );
            TIMED_OUT
        }
    }
}
