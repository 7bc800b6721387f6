//! Prometheus metrics. Labels carry kinds and reasons, never names of tokens or their values.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabels {
    pub r#type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    pub rotations: Family<TypeLabels, Counter>,
    pub failures: Family<ReasonLabels, Counter>,
    pub reconciles: Counter,
    /// Token pairs Slack issued that could not be saved yet (should be 0 almost always).
    pub unsaved_tokens: Gauge,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("slack_token_operator");
        let rotations = Family::<TypeLabels, Counter>::default();
        let failures = Family::<ReasonLabels, Counter>::default();
        let reconciles = Counter::default();
        let unsaved_tokens = Gauge::default();
        registry.register("rotations", "Rotations performed, by token type", rotations.clone());
        registry.register("failures", "Failed reconciles, by condition reason", failures.clone());
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "unsaved_tokens",
            "Issued token pairs not yet saved to their Secret",
            unsaved_tokens.clone(),
        );
        Self { rotations, failures, reconciles, unsaved_tokens, registry }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
