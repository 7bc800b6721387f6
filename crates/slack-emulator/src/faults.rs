//! Injected failures: one-shot faults per method, outage mode and per-method rate limits.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// A failure to answer the next request(s) with, instead of the method's normal answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer with this HTTP status and a small HTML body, as a load balancer in front of Slack would.
    Http(u16),
    /// HTTP 429 with `Retry-After` and `{"ok":false,"error":"ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// HTTP 200 with `{"ok":false,"error":"<code>"}`, e.g. `internal_error`.
    SlackError(String),
    /// HTTP 200, `Content-Type: application/json`, body that is not JSON.
    MalformedJson,
    /// Wait this long (tokio time), then answer normally.
    Delay(#[serde(with = "millis")] Duration),
    /// Never answer (until the emulator shuts down); the client must time out.
    Hang,
    /// HTTP 200 with exactly this JSON body, as something between the client and Slack might
    /// answer; the call itself is not made (no token is spent or issued).
    Body(serde_json::Value),
    /// Make the call as usual (tokens are spent and issued), then change its successful answer:
    /// each key of this object replaces the answer's, `null` removes it. For answers Slack might
    /// give but the emulator does not, e.g. `{"expires_in": null}` or `{"expires_in": -5}`.
    Amend(serde_json::Map<String, serde_json::Value>),
}

/// `Delay` travels as whole milliseconds in admin JSON: `{"delay": 1500}`.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Slack counts calls in one-minute windows per method.
#[derive(Debug)]
struct Window {
    per_minute: u32,
    start: Option<Timestamp>,
    used: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    queues: HashMap<String, VecDeque<Fault>>,
    outage: bool,
    limits: HashMap<String, Window>,
}

const MINUTE: SignedDuration = SignedDuration::from_secs(60);

impl Faults {
    pub(crate) fn fail_next(&mut self, method: &str, n: usize, fault: Fault) {
        let q = self.queues.entry(method.to_string()).or_default();
        q.extend(std::iter::repeat_n(fault, n));
    }

    /// The next fault for this method: one queued for the method itself first, then one for `"*"`.
    pub(crate) fn take(&mut self, method: &str) -> Option<Fault> {
        for key in [method, "*"] {
            if let Some(f) = self.queues.get_mut(key).and_then(VecDeque::pop_front) {
                return Some(f);
            }
        }
        None
    }

    pub(crate) fn set_outage(&mut self, down: bool) {
        self.outage = down;
    }

    pub(crate) fn outage(&self) -> bool {
        self.outage
    }

    /// `per_minute == 0` removes the limit.
    pub(crate) fn set_rate_limit(&mut self, method: &str, per_minute: u32) {
        if per_minute == 0 {
            self.limits.remove(method);
        } else {
            self.limits.insert(method.to_string(), Window { per_minute, start: None, used: 0 });
        }
    }

    /// Counts a call against the method's limit; `Err(retry_after_secs)` when over it.
    pub(crate) fn admit(&mut self, method: &str, now: Timestamp) -> Result<(), u64> {
        let Some(w) = self.limits.get_mut(method) else {
            return Ok(());
        };
        let start = match w.start {
            Some(s) if now < end_of(s) => s,
            _ => {
                w.start = Some(now);
                w.used = 0;
                now
            }
        };
        if w.used < w.per_minute {
            w.used += 1;
            return Ok(());
        }
        // Whole seconds until the window ends, at least one, as Slack's Retry-After is.
        let left = now.duration_until(end_of(start));
        let secs = left.as_secs() + i64::from(left.subsec_nanos() > 0);
        Err(u64::try_from(secs.max(1)).unwrap_or(1))
    }
}

fn end_of(window_start: Timestamp) -> Timestamp {
    window_start.checked_add(MINUTE).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The admin endpoint's documented fault spellings.
    #[test]
    fn faults_parse_from_admin_json() {
        let cases = [
            (r#"{"http":503}"#, Fault::Http(503)),
            (r#"{"rate_limited":{"retry_after_secs":30}}"#, Fault::RateLimited { retry_after_secs: 30 }),
            (r#"{"slack_error":"internal_error"}"#, Fault::SlackError("internal_error".into())),
            (r#""malformed_json""#, Fault::MalformedJson),
            (r#"{"delay":1500}"#, Fault::Delay(Duration::from_millis(1500))),
            (r#""hang""#, Fault::Hang),
            (r#"{"body":{"ok":true}}"#, Fault::Body(serde_json::json!({"ok": true}))),
            (
                r#"{"amend":{"expires_in":null}}"#,
                Fault::Amend([("expires_in".to_owned(), serde_json::Value::Null)].into_iter().collect()),
            ),
        ];
        for (text, fault) in cases {
            assert_eq!(serde_json::from_str::<Fault>(text).unwrap(), fault, "{text}");
        }
    }

    #[test]
    fn retry_after_counts_whole_seconds_left_in_the_window() {
        let mut f = Faults::default();
        f.set_rate_limit("auth.test", 1);
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        assert_eq!(f.admit("auth.test", t0), Ok(()));
        let t1 = t0 + SignedDuration::from_millis(59_500);
        assert_eq!(f.admit("auth.test", t1), Err(1));
        let t2 = t0 + SignedDuration::from_secs(10);
        assert_eq!(f.admit("auth.test", t2), Err(50));
        assert_eq!(f.admit("auth.test", t0 + MINUTE), Ok(()));
        assert_eq!(f.admit("other", t0), Ok(()));
    }
}
