//! Retry timing after a failed reconcile.
//!
//! Transient failures back off exponentially with jitter, capped so that a failing rotation is
//! still retried several times before the current token expires. Permanent failures (a person
//! must fix something) are retried rarely: the watch on the SlackToken and its credentials Secret
//! brings the controller back at once when someone does.

use crate::{error::Error, expiring::Expiring};
use std::{
    hash::{DefaultHasher, Hash, Hasher},
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
/// `pending` says a pair Slack issued still waits to be saved: that is retried on the transient
/// schedule whatever the error, since the pair is the only copy of the new refresh token.
pub fn delay(
    error: &Error,
    attempts: u32,
    time_left: Option<Duration>,
    seed: &str,
    pending: bool,
) -> Duration {
    let retry_after = match error {
        Error::Slack(e) => e.retry_after(),
        _ => None,
    }
    .unwrap_or(Duration::ZERO);
    if !error.is_transient() && !pending {
        return PERMANENT.max(retry_after);
    }
    let cap = time_left.map_or(MAX, |left| (left / 4).clamp(MIN_CAP, MAX));
    let exp = BASE.saturating_mul(1u32 << attempts.saturating_sub(1).min(16)).min(cap);
    let mut h = DefaultHasher::new();
    (seed, attempts).hash(&mut h);
    let jitter = 0.8 + (h.finish() % 400) as f64 / 1000.0; // 0.8 ..= 1.2
    exp.mul_f64(jitter).max(retry_after)
}

/// What a failure depended on: a change to either makes a held failure worth retrying at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    pub generation: Option<i64>,
    pub credentials_version: Option<String>,
}

/// A failure being held: how long is left, and what it failed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub left: Duration,
    pub inputs: Inputs,
}

/// Remembers, per SlackToken (by uid), until when not to retry and what the inputs were at the
/// failure, so an unrelated wake-up does not turn into a retry storm while a real change retries
/// at once. A hold that has run out no longer gates anything and is dropped in time: the
/// controller is not told when a SlackToken without finalizer is deleted.
#[derive(Default)]
pub struct Gate(Expiring<String, Inputs>);

impl Gate {
    /// Holds retries of `uid` for `delay`, or until `inputs` change.
    pub fn hold(&self, uid: &str, delay: Duration, inputs: Inputs) {
        self.0.insert(uid.to_owned(), Instant::now() + delay, inputs, false);
    }

    /// The hold on `uid`, if one has time left.
    pub fn get(&self, uid: &str) -> Option<Hold> {
        let (left, inputs) = self.0.get(uid)?;
        Some(Hold { left, inputs })
    }

    pub fn clear(&self, uid: &str) {
        self.0.remove(uid);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
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
        let d1 = delay(&transient(), 1, None, "uid", false);
        let d4 = delay(&transient(), 4, None, "uid", false);
        assert!(d1 >= Duration::from_secs(4) && d1 <= Duration::from_secs(6), "{d1:?}");
        assert!(d4 >= Duration::from_secs(32) && d4 <= Duration::from_secs(48), "{d4:?}");
        assert!(delay(&transient(), 30, None, "uid", false) <= MAX.mul_f64(1.2));
    }

    #[test]
    fn backoff_cap_leaves_retries_before_expiry() {
        let d = delay(&transient(), 20, Some(Duration::from_secs(120)), "uid", false);
        assert!(d <= Duration::from_secs(36), "{d:?}");
    }

    #[test]
    fn rate_limit_waits_at_least_retry_after() {
        let e = Error::Slack(SlackError::RateLimited { method: "m", retry_after: Duration::from_secs(90) });
        assert!(delay(&e, 1, None, "uid", false) >= Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn run_out_holds_are_forgotten() {
        let gate = Gate::default();
        gate.hold("deleted-while-failing", Duration::from_secs(10), Inputs::default());
        assert_eq!(gate.get("deleted-while-failing").map(|h| h.left), Some(Duration::from_secs(10)));
        // That SlackToken is deleted: no reconcile ever clears it. Another token's failure later prunes it.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(gate.get("deleted-while-failing"), None, "run out");
        // Nor do the holds of a thousand such SlackTokens pile up: run-out ones are swept as the
        // map grows (see `expiring`), live ones never.
        for i in 0..1_000 {
            gate.hold(&format!("gone-{i}"), Duration::from_secs(10), Inputs::default());
            tokio::time::advance(Duration::from_secs(11)).await;
        }
        gate.hold("other", Duration::from_secs(10), Inputs::default());
        assert!(gate.len() < 100, "{} holds kept, one live", gate.len());
        assert!(gate.get("other").is_some());
    }

    #[test]
    fn a_pair_waiting_to_be_saved_is_retried_soon_whatever_the_error() {
        let forbidden = Error::kube("update", "secrets", "creds")(kube::Error::Api(
            kube::core::Status::failure("forbidden", "Forbidden").with_code(403).boxed(),
        ));
        assert_eq!(delay(&forbidden, 1, None, "uid", false), PERMANENT);
        assert!(delay(&forbidden, 1, None, "uid", true) <= Duration::from_secs(6));
    }

    #[test]
    fn permanent_failures_are_retried_rarely() {
        let e = Error::Slack(SlackError::Api { method: "m", code: "invalid_refresh_token".into() });
        assert_eq!(delay(&e, 1, None, "uid", false), PERMANENT);
    }
}
