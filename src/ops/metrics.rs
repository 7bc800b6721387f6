//! Prometheus metrics (OpenMetrics text on `/metrics`).
//!
//! Per SlackToken: gauges labelled `namespace`, `name` and `type` only, so that alerts can name
//! the token, and cardinality stays bounded by the number of SlackTokens: a token's series go
//! when the SlackToken goes ([`Metrics::forget_token`]). Totals carry kinds, methods and reasons
//! from fixed sets, never free text. No label ever holds a token or anything derived from one.

use crate::slack::{CallObserver, SlackError};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::{exponential_buckets, Histogram},
        MetricType,
    },
    registry::Registry,
};
use std::{
    collections::HashMap,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

/// The labels of one SlackToken's series (`namespace`, `name`, `type`).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TokenLabels {
    namespace: Box<str>,
    name: Box<str>,
    type_: Box<str>,
}

impl EncodeLabelSet for TokenLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        [("namespace", &*self.namespace), ("name", &*self.name), ("type", &*self.type_)].encode(encoder)
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

/// The per-SlackToken gauges: one entry per SlackToken, written out at each scrape. (As four
/// gauge families they cost a series object, a map entry and a label set per family and
/// SlackToken: some 2.5 MiB of the operator's heap at ten thousand SlackTokens.)
#[derive(Debug, Default)]
struct TokenSeries(Mutex<HashMap<u64, TokenEntry>>);

#[derive(Debug)]
struct TokenEntry {
    labels: TokenLabels,
    gauges: TokenGauges,
}

/// The per-token families: name, help, and the value of a SlackToken's series (none: no series).
type TokenFamily = (&'static str, &'static str, fn(&TokenGauges) -> Option<i64>);
const TOKEN_FAMILIES: [TokenFamily; 4] = [
    (
        "slacktoken_expiration_timestamp_seconds",
        "When Slack expires the current token of the SlackToken (status.expirationTime), Unix seconds",
        |g| g.expiration,
    ),
    (
        "slacktoken_next_rotation_timestamp_seconds",
        "When the operator rotates the token next (Manual: when a person should re-issue it), Unix seconds",
        |g| g.next_rotation,
    ),
    ("slacktoken_ready", "1 if the SlackToken's Ready condition is True", |g| Some(i64::from(g.ready))),
    (
        "slacktoken_rotation_due",
        "Manual tokens: 1 if a person should re-issue the token (RotationDue=True)",
        |g| g.rotation_due.map(i64::from),
    ),
];

impl Collector for TokenSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tokens = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for (name, help, value) in TOKEN_FAMILIES {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for entry in tokens.values() {
                if let Some(v) = value(&entry.gauges) {
                    ConstGauge::new(v).encode(family.encode_family(&entry.labels)?)?;
                }
            }
        }
        Ok(())
    }
}

pub struct Metrics {
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
    /// 1 while this replica holds the leader-election Lease (or runs without leader election).
    pub leader: Gauge,
    /// Each SlackToken's series, by a hash of its namespace and name.
    tokens: Arc<TokenSeries>,
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
            rotations: Family::default(),
            failures: Family::default(),
            slack_requests: Family::default(),
            slack_duration: Family::new_with_constructor(latency_histogram),
            slack_rate_limited: Family::default(),
            rollout_restarts: Family::default(),
            reconciles: Counter::default(),
            reconcile_duration: latency_histogram(),
            unsaved_tokens: Gauge::default(),
            leader: Gauge::default(),
            tokens: Arc::default(),
            registry: Registry::default(),
        };
        metrics.register(&mut registry);
        Self { registry, ..metrics }
    }
}

impl Metrics {
    /// Every series, with its help text, in `r`.
    fn register(&self, r: &mut Registry) {
        let m = self;
        r.register_collector(Box::new(m.tokens.clone()));
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
        r.register(
        "slack_token_operator_leader",
        "1 while this replica leads (holds the leader-election Lease, or runs without leader election), else 0",
        m.leader.clone(),
    );
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
    /// is left out rather than left at a stale value.
    pub fn set_token(&self, namespace: &str, name: &str, type_: &str, gauges: &TokenGauges) {
        let labels = || TokenLabels { namespace: namespace.into(), name: name.into(), type_: type_.into() };
        let mut tokens = self.tokens.0.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tokens
            .entry(token_key(namespace, name))
            .or_insert_with(|| TokenEntry { labels: labels(), gauges: TokenGauges::default() });
        let l = &entry.labels;
        if (&*l.namespace, &*l.name, &*l.type_) != (namespace, name, type_) {
            entry.labels = labels();
        }
        entry.gauges = gauges.clone();
    }

    /// Removes every series of a SlackToken that is gone.
    pub fn forget_token(&self, namespace: &str, name: &str) {
        self.tokens.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&token_key(namespace, name));
    }

    /// Removes the series of every SlackToken in `namespace` (all namespaces if `None`) that
    /// `keep` does not name: after a re-list, for SlackTokens deleted while the watch was down.
    pub fn forget_tokens_except(
        &self,
        namespace: Option<&str>,
        keep: &std::collections::HashSet<(String, String)>,
    ) {
        let mut tokens = self.tokens.0.lock().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, e| {
            let l = &e.labels;
            namespace.is_some_and(|n| n != &*l.namespace)
                || keep.contains(&(l.namespace.to_string(), l.name.to_string()))
        });
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
