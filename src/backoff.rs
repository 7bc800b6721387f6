//! Retry timing after a failed reconcile.
//!
//! Transient failures back off exponentially with jitter, capped so that a failing rotation is
//! still retried several times before the current token expires. Permanent failures (a person
//! must fix something) are retried rarely: the watch on the SlackToken and its credentials Secret
//! brings the controller back at once when someone does.

use crate::error::Error;
use kube::ResourceExt;
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::Mutex,
    time::Duration,
};
use tokio::time::Instant;

const BASE: Duration = Duration::from_secs(5);
const MAX: Duration = Duration::from_secs(5 * 60);
const MIN_CAP: Duration = Duration::from_secs(5);
const PERMANENT: Duration = Duration::from_secs(60 * 60);

/// Delay before attempt `attempts + 1`.
///
/// `time_left` is how long the current token still works; the cap shrinks to a quarter of it so
/// that at least a few retries happen before expiry. The jitter is derived from `seed` (the
/// object's uid) so that tests are reproducible while many tokens still spread out.
pub fn delay(error: &Error, attempts: u32, time_left: Option<Duration>, seed: &str) -> Duration {
    let retry_after = match error {
        Error::Slack(e) => e.retry_after(),
        _ => None,
    }
    .unwrap_or(Duration::ZERO);
    if !error.is_transient() {
        return PERMANENT.max(retry_after);
    }
    let cap = time_left.map_or(MAX, |left| (left / 4).clamp(MIN_CAP, MAX));
    let exp = BASE.saturating_mul(1u32 << attempts.saturating_sub(1).min(16)).min(cap);
    let mut h = DefaultHasher::new();
    (seed, attempts).hash(&mut h);
    let jitter = 0.8 + (h.finish() % 400) as f64 / 1000.0; // 0.8 ..= 1.2
    exp.mul_f64(jitter).max(retry_after)
}

/// Remembers, per SlackToken, until when not to retry and what the inputs were at the failure,
/// so an unrelated wake-up does not turn into a retry storm while a real change retries at once.
#[derive(Default)]
pub struct Gate(Mutex<HashMap<String, Held>>);

struct Held {
    until: Option<Instant>,
    generation: Option<i64>,
    credentials_version: Option<String>,
}

impl Gate {
    fn key(stk: &crate::crd::SlackToken) -> String {
        stk.uid().unwrap_or_else(|| stk.name_any())
    }

    /// Records the inputs a reconcile saw; a later failure holds retries until they change.
    pub fn observe(&self, stk: &crate::crd::SlackToken, credentials_version: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.entry(Self::key(stk)).or_insert(Held {
            until: None,
            generation: None,
            credentials_version: None,
        });
        held.generation = stk.metadata.generation;
        held.credentials_version = credentials_version;
    }

    pub fn hold(&self, stk: &crate::crd::SlackToken, delay: Duration) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // A hold that has run out no longer gates anything, and the controller is not told when
        // a SlackToken without finalizer is deleted; dropping run-out holds here keeps entries of
        // deleted SlackTokens from piling up.
        map.retain(|_, held| held.until.is_none_or(|until| until > now));
        if let Some(held) = map.get_mut(&Self::key(stk)) {
            held.until = Some(now + delay);
        }
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self, stk: &crate::crd::SlackToken) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&Self::key(stk));
    }

    /// Time left to wait, if a failure is being held and nothing relevant changed since.
    pub fn remaining(
        &self,
        stk: &crate::crd::SlackToken,
        credentials_version: Option<&str>,
    ) -> Option<Duration> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.get(&Self::key(stk))?;
        let until = held.until?;
        let unchanged = held.generation == stk.metadata.generation
            && held.credentials_version.as_deref() == credentials_version;
        let left = until.saturating_duration_since(Instant::now());
        (unchanged && !left.is_zero()).then_some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slack::SlackError;

    fn transient() -> Error {
        Error::Slack(SlackError::Http { method: "oauth.v2.access", status: 503 })
    }

    #[test]
    fn transient_failures_back_off_exponentially_up_to_the_cap() {
        let d1 = delay(&transient(), 1, None, "uid");
        let d4 = delay(&transient(), 4, None, "uid");
        assert!(d1 >= Duration::from_secs(4) && d1 <= Duration::from_secs(6), "{d1:?}");
        assert!(d4 >= Duration::from_secs(32) && d4 <= Duration::from_secs(48), "{d4:?}");
        assert!(delay(&transient(), 30, None, "uid") <= MAX.mul_f64(1.2));
    }

    #[test]
    fn backoff_cap_leaves_retries_before_expiry() {
        let d = delay(&transient(), 20, Some(Duration::from_secs(120)), "uid");
        assert!(d <= Duration::from_secs(36), "{d:?}");
    }

    #[test]
    fn rate_limit_waits_at_least_retry_after() {
        let e = Error::Slack(SlackError::RateLimited { method: "m", retry_after: Duration::from_secs(90) });
        assert!(delay(&e, 1, None, "uid") >= Duration::from_secs(90));
    }

    fn slacktoken(uid: &str) -> crate::crd::SlackToken {
        let spec = crate::crd::SlackTokenSpec::new(crate::crd::TokenType::OAuth, "creds", "out");
        let mut stk = crate::crd::SlackToken::new(uid, spec);
        stk.metadata.uid = Some(uid.to_owned());
        stk
    }

    #[tokio::test(start_paused = true)]
    async fn run_out_holds_are_forgotten() {
        let gate = Gate::default();
        let (gone, other) = (slacktoken("deleted-while-failing"), slacktoken("other"));
        gate.observe(&gone, None);
        gate.hold(&gone, Duration::from_secs(10));
        assert_eq!(gate.remaining(&gone, None), Some(Duration::from_secs(10)));
        // `gone` is deleted: no reconcile ever clears it. Another token's failure later prunes it.
        tokio::time::advance(Duration::from_secs(11)).await;
        gate.observe(&other, None);
        gate.hold(&other, Duration::from_secs(10));
        assert_eq!(gate.len(), 1, "only the live hold is kept");
        assert!(gate.remaining(&other, None).is_some());
    }

    #[test]
    fn permanent_failures_are_retried_rarely() {
        let e = Error::Slack(SlackError::Api { method: "m", code: "invalid_refresh_token".into() });
        assert_eq!(delay(&e, 1, None, "uid"), PERMANENT);
    }
}
