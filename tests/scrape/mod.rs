//! The operator's `/metrics` text with one series in every family, from its own registry: what the
//! chart's queries, the book's tables and the generated metrics page are checked against.

use slack_token_operator::{CallObserver, Metrics, SlackError, TokenGauges};
use std::time::Duration;

/// `/metrics` once each kind of series exists (a token of each gauge, a rotation, a failure, a
/// rollout restart, a rate-limited Slack call).
pub fn every_family() -> String {
    let metrics = Metrics::default();
    let all =
        TokenGauges { expiration: Some(1), next_rotation: Some(1), ready: true, rotation_due: Some(true) };
    metrics.set_token("ns", "name", "Manual", &all);
    metrics.count_rotation("OAuth", "Due");
    metrics.count_failure("OAuth", "SlackUnavailable");
    metrics.count_rollout_restart("Restarted");
    let limited = SlackError::RateLimited { method: "auth.test", retry_after: Duration::from_secs(1) };
    metrics.observe("auth.test", Err(&limited), Duration::from_millis(1));
    metrics.encode()
}
