//! Prometheus metrics (OpenMetrics text on `/metrics`).
//!
//! Per SlackToken: gauges labelled `namespace`, `name` and `type` only, so that alerts can name
//! the token, and cardinality stays bounded by the number of SlackTokens: a token's series go
//! when the SlackToken goes ([`Metrics::forget_token`]). Totals carry kinds, methods and reasons
//! from fixed sets, never free text. No label ever holds a token or anything derived from one.

use crate::slack::{CallObserver, SlackError};
use prometheus_client::{
    encoding::{EncodeLabelSet, LabelSetEncoder},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{exponential_buckets, Histogram},
    },
    registry::Registry,
};
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

/// The labels of one SlackToken's series (`namespace`, `name`, `type`): one allocation that its
/// series and the index of SlackTokens share. With thousands of SlackTokens, three Strings per
/// series of each family and their own copies in the index were most of what metrics cost.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct TokenLabels(Arc<TokenName>);

#[derive(Debug, Hash, PartialEq, Eq)]
struct TokenName {
    namespace: Box<str>,
    name: Box<str>,
    type_: Box<str>,
}

impl TokenLabels {
    pub fn new(namespace: &str, name: &str, type_: &str) -> Self {
        Self(Arc::new(TokenName { namespace: namespace.into(), name: name.into(), type_: type_.into() }))
    }
}

impl EncodeLabelSet for TokenLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let t = &self.0;
        [("namespace", &*t.namespace), ("name", &*t.name), ("type", &*t.type_)].encode(encoder)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeReasonLabels {
    pub r#type: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodResultLabels {
    pub method: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// What the per-token gauges show for one SlackToken; computed from its status by
/// `reconcile::report::token_gauges`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenGauges {
    /// Slack's expiry of the current token, seconds since the epoch (as `status.expirationTime`).
    pub expiration: Option<i64>,
    /// When the operator rotates next (Manual: when rotation is due).
    pub next_rotation: Option<i64>,
    pub ready: bool,
    /// Manual tokens only: whether a person should re-issue the token.
    pub rotation_due: Option<bool>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    pub expiration: Family<TokenLabels, Gauge>,
    pub next_rotation: Family<TokenLabels, Gauge>,
    pub ready: Family<TokenLabels, Gauge>,
    pub rotation_due: Family<TokenLabels, Gauge>,
    /// Rotations by token type and trigger (`FirstToken`, `Due`, `Requested`, …).
    pub rotations: Family<TypeReasonLabels, Counter>,
    /// Failed reconciles by token type and condition reason.
    pub failures: Family<TypeReasonLabels, Counter>,
    pub slack_requests: Family<MethodResultLabels, Counter>,
    pub slack_duration: HistogramFamily<MethodLabels>,
    pub slack_rate_limited: Family<MethodLabels, Counter>,
    /// Rollout restarts of consumers, by result (`Restarted`, `NotFound`, `Forbidden`, `Failed`).
    pub rollout_restarts: Family<ResultLabels, Counter>,
    pub reconciles: Counter,
    pub reconcile_duration: Histogram,
    /// Token pairs Slack issued that could not be saved yet (should be 0 almost always).
    pub unsaved_tokens: Gauge,
    /// The labels each SlackToken's series carry (by a hash of its namespace and name), to
    /// remove them when it goes or changes type.
    tokens: Mutex<HashMap<u64, TokenLabels>>,
    registry: Registry,
}

fn latency_histogram() -> Histogram {
    // 5ms .. ~41s: Slack answers in well under a second; the client gives up after 30s.
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            expiration: Family::default(),
            next_rotation: Family::default(),
            ready: Family::default(),
            rotation_due: Family::default(),
            rotations: Family::default(),
            failures: Family::default(),
            slack_requests: Family::default(),
            slack_duration: Family::new_with_constructor(latency_histogram),
            slack_rate_limited: Family::default(),
            rollout_restarts: Family::default(),
            reconciles: Counter::default(),
            reconcile_duration: latency_histogram(),
            unsaved_tokens: Gauge::default(),
            tokens: Mutex::default(),
            registry: Registry::default(),
        };
        let m = &metrics;
        let r = &mut registry;
        r.register(
            "slacktoken_expiration_timestamp_seconds",
            "When Slack expires the current token of the SlackToken (status.expirationTime), Unix seconds",
            m.expiration.clone(),
        );
        r.register(
            "slacktoken_next_rotation_timestamp_seconds",
            "When the operator rotates the token next (Manual: when a person should re-issue it), Unix seconds",
            m.next_rotation.clone(),
        );
        r.register("slacktoken_ready", "1 if the SlackToken's Ready condition is True", m.ready.clone());
        r.register(
            "slacktoken_rotation_due",
            "Manual tokens: 1 if a person should re-issue the token (RotationDue=True)",
            m.rotation_due.clone(),
        );
        r.register("slacktoken_rotations", "Rotations, by token type and trigger", m.rotations.clone());
        r.register(
            "slacktoken_rotation_failures",
            "Failed reconciles, by token type and condition reason",
            m.failures.clone(),
        );
        r.register(
            "slacktoken_rollout_restarts",
            "Rollout restarts of workloads named in spec.rolloutRestartTargets, by result",
            m.rollout_restarts.clone(),
        );
        r.register(
            "slack_api_requests",
            "Slack Web API calls, by method and result",
            m.slack_requests.clone(),
        );
        r.register(
            "slack_api_request_duration_seconds",
            "Duration of Slack Web API calls, by method",
            m.slack_duration.clone(),
        );
        r.register(
            "slack_api_rate_limited",
            "Slack Web API answers that were rate limits (HTTP 429 or `ratelimited`), by method",
            m.slack_rate_limited.clone(),
        );
        r.register("slack_token_operator_reconciles", "Reconciles run", m.reconciles.clone());
        r.register(
            "slack_token_operator_reconcile_duration_seconds",
            "Duration of reconciles",
            m.reconcile_duration.clone(),
        );
        r.register(
            "slack_token_operator_unsaved_tokens",
            "Issued token pairs not yet saved to their Secret",
            m.unsaved_tokens.clone(),
        );
        Self { registry, ..metrics }
    }
}

impl Metrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Sets the per-token series of one SlackToken. A series without a value (no expiry, say)
    /// is removed rather than left at a stale value.
    pub fn set_token(&self, namespace: &str, name: &str, type_: &str, gauges: &TokenGauges) {
        let l = {
            let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            let known = tokens
                .entry(token_key(namespace, name))
                .or_insert_with(|| TokenLabels::new(namespace, name, type_));
            let same = |t: &TokenName| (&*t.namespace, &*t.name, &*t.type_) == (namespace, name, type_);
            if !same(&known.0) {
                let previous = std::mem::replace(known, TokenLabels::new(namespace, name, type_));
                self.remove_series(&previous);
            }
            known.clone()
        };
        set_or_remove(&self.expiration, &l, gauges.expiration);
        set_or_remove(&self.next_rotation, &l, gauges.next_rotation);
        self.ready.get_or_create(&l).set(i64::from(gauges.ready));
        set_or_remove(&self.rotation_due, &l, gauges.rotation_due.map(i64::from));
    }

    /// Removes every series of a SlackToken that is gone.
    pub fn forget_token(&self, namespace: &str, name: &str) {
        let known = self.tokens.lock().unwrap_or_else(|e| e.into_inner()).remove(&token_key(namespace, name));
        if let Some(l) = known {
            self.remove_series(&l);
        }
    }

    /// Removes the series of every SlackToken in `namespace` (all namespaces if `None`) that
    /// `keep` does not name: after a re-list, for SlackTokens deleted while the watch was down.
    pub fn forget_tokens_except(
        &self,
        namespace: Option<&str>,
        keep: &std::collections::HashSet<(String, String)>,
    ) {
        let gone: Vec<TokenLabels> = {
            let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            tokens
                .values()
                .filter(|l| namespace.is_none_or(|n| n == &*l.0.namespace))
                .filter(|l| !keep.contains(&(l.0.namespace.to_string(), l.0.name.to_string())))
                .cloned()
                .collect()
        };
        for l in gone {
            self.forget_token(&l.0.namespace, &l.0.name);
        }
    }

    fn remove_series(&self, l: &TokenLabels) {
        for family in [&self.expiration, &self.next_rotation, &self.ready, &self.rotation_due] {
            family.remove(l);
        }
    }

    pub fn count_rotation(&self, type_: &str, trigger: &str) {
        self.rotations
            .get_or_create(&TypeReasonLabels { r#type: type_.into(), reason: trigger.into() })
            .inc();
    }

    pub fn count_failure(&self, type_: &str, reason: &str) {
        self.failures.get_or_create(&TypeReasonLabels { r#type: type_.into(), reason: reason.into() }).inc();
    }

    pub fn count_rollout_restart(&self, result: &str) {
        self.rollout_restarts.get_or_create(&ResultLabels { result: result.into() }).inc();
    }
}

/// The index's key of a SlackToken: a hash of its namespace and name. Two SlackTokens colliding on
/// 64 bits would at worst take turns removing each other's series until their next reconcile;
/// a series never carries another SlackToken's name.
fn token_key(namespace: &str, name: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (namespace, name).hash(&mut h);
    h.finish()
}

fn set_or_remove(family: &Family<TokenLabels, Gauge>, l: &TokenLabels, value: Option<i64>) {
    match value {
        Some(v) => {
            family.get_or_create(l).set(v);
        }
        None => {
            family.remove(l);
        }
    }
}

impl CallObserver for Metrics {
    fn observe(&self, method: &'static str, outcome: Result<(), &SlackError>, elapsed: Duration) {
        let result = match outcome {
            Ok(()) => "ok",
            Err(e) => e.reason(),
        };
        if outcome.is_err_and(SlackError::is_rate_limit) {
            self.slack_rate_limited.get_or_create(&MethodLabels { method: method.into() }).inc();
        }
        let labels = MethodResultLabels { method: method.into(), result: result.into() };
        self.slack_requests.get_or_create(&labels).inc();
        self.slack_duration
            .get_or_create(&MethodLabels { method: method.into() })
            .observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauges(expiration: Option<i64>, due: Option<bool>) -> TokenGauges {
        TokenGauges { expiration, next_rotation: Some(5), ready: true, rotation_due: due }
    }

    #[test]
    fn a_tokens_series_follow_it_and_go_with_it() {
        let m = Metrics::default();
        m.set_token("ns", "bot", "OAuth", &gauges(Some(100), None));
        m.set_token("ns", "old", "Manual", &gauges(None, Some(true)));
        let text = m.encode();
        assert!(
            text.contains(
                r#"slacktoken_expiration_timestamp_seconds{namespace="ns",name="bot",type="OAuth"} 100"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"slacktoken_rotation_due{namespace="ns",name="old",type="Manual"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"slacktoken_expiration_timestamp_seconds{namespace="ns",name="old""#),
            "no expiry, no series"
        );

        // A change of type moves the series; deletion removes them all.
        m.set_token("ns", "bot", "AppConfiguration", &gauges(Some(100), None));
        assert!(!m.encode().contains(r#"type="OAuth""#));
        m.forget_token("ns", "bot");
        m.forget_tokens_except(None, &[("ns".to_owned(), "other".to_owned())].into_iter().collect());
        let text = m.encode();
        assert!(!text.contains(r#"name="bot""#) && !text.contains(r#"name="old""#), "{text}");
    }

    #[test]
    fn slack_calls_are_counted_by_method_and_result() {
        let m = Metrics::default();
        m.observe("auth.test", Ok(()), Duration::from_millis(20));
        let limited =
            SlackError::RateLimited { method: "oauth.v2.access", retry_after: Duration::from_secs(1) };
        m.observe("oauth.v2.access", Err(&limited), Duration::from_millis(20));
        let text = m.encode();
        assert!(text.contains(r#"slack_api_requests_total{method="auth.test",result="ok"} 1"#), "{text}");
        assert!(
            text.contains(r#"slack_api_requests_total{method="oauth.v2.access",result="RateLimited"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"slack_api_rate_limited_total{method="oauth.v2.access"} 1"#), "{text}");
        assert!(text.contains(r#"slack_api_request_duration_seconds_count{method="auth.test"} 1"#), "{text}");
    }
}
