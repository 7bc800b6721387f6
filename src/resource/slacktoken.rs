//! The `SlackToken` custom resource. `crds/slacktoken.yaml` is generated from these types
//! (`slack-token-operator crd`), so doc comments here are what `kubectl explain` shows.

use super::{conditions::Condition, duration::GoDuration};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Desired state of a Slack token kept fresh in a Kubernetes Secret.
// Each printcolumn repeats `type_ = ...`; clippy reads the derive's arguments as duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "slack.rotator.dev",
    version = "v1alpha1",
    kind = "SlackToken",
    plural = "slacktokens",
    shortname = "stk",
    namespaced,
    status = "SlackTokenStatus",
    derive = "PartialEq",
    doc = "A Slack token that the operator keeps fresh in a Kubernetes Secret.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretRef.name"),
    // Absolute times, as `string`: kubectl renders a `date` column as an age, and a time in the
    // future as `<invalid>`. Age is in the past, so it stays `date`.
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expirationTime"),
    printcolumn(name = "Next Rotation", type_ = "string", json_path = ".status.nextRotationTime"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
// Checks the API server makes at `kubectl apply`, so that a spec that can never work is refused
// with a message naming the field instead of being stored and reported later by a condition.
// `reconcile::decide` keeps the same checks as a second line of defence (for objects stored
// before the CRD carried these rules). Each message names the field and says what to write.
#[x_kube(
    validation = Rule::new("self.type != 'Manual' || has(self.rotationPeriod)")
        .message("type Manual needs rotationPeriod: how often a person should re-issue the token (e.g. 2160h for 90 days)")
        .field_path(".rotationPeriod")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type != 'Manual' || has(self.manual)")
        .message("type Manual needs manual.kind: one of LegacyTestToken, CustomIntegrationBot, HubotLita, App")
        .field_path(".manual")
        .reason(Reason::FieldValueRequired),
    validation = Rule::new("self.type == 'Manual' || !has(self.manual)")
        .message("manual is only for type Manual: remove it, or set type: Manual")
        .field_path(".manual")
        .reason(Reason::FieldValueForbidden),
    validation = Rule::new("self.secretRef.name != self.credentialsRef.name")
        .message("secretRef.name must differ from credentialsRef.name: the operator creates and owns the output Secret, so name a Secret of its own (e.g. <name>-token)")
        .field_path(".secretRef.name")
        .reason(Reason::FieldValueInvalid),
)]
#[serde(rename_all = "camelCase")]
pub struct SlackTokenSpec {
    /// How the token is rotated. `OAuth`: bot or user token of an app with token rotation on
    /// (oauth.v2.access). `AppConfiguration`: app configuration token (tooling.tokens.rotate).
    /// `Manual`: long-lived token that only a person can re-issue; the operator tracks its age and
    /// publishes the replacement a person supplies.
    #[serde(rename = "type")]
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "type cannot be changed: it decides which credentials the operator reads; create a new SlackToken with the other type instead"
    ))]
    pub token_type: TokenType,

    /// Secret in the same namespace holding the rotation state. OAuth: `clientId`, `clientSecret`
    /// and `refreshToken` (or `legacyToken` to move a long-lived token onto rotation).
    /// AppConfiguration: `refreshToken`. Manual: `accessToken`. The operator writes
    /// `refreshToken`, `accessToken` and `expiresAt` back into it on every rotation.
    pub credentials_ref: CredentialsRef,

    /// Secret in the same namespace that applications mount. The operator creates and owns it.
    pub secret_ref: OutputSecretRef,

    /// Rotate at least this often (Go duration, e.g. `6h`). Required for `Manual` tokens.
    /// Slack keeps at most two access tokens per installation active, so consumers must reload
    /// the Secret within one period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(format!("!self.matches('{}')", super::duration::ZERO_PATTERN))
        .message("rotationPeriod must be greater than zero (e.g. 24h)"))]
    pub rotation_period: Option<GoDuration>,

    /// Rotate this long before Slack's expiry (Go duration). Default: the smaller of 2h and a
    /// third of the token's lifetime; also used when this is not shorter than the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_before: Option<GoDuration>,

    /// Labels and annotations put on the output Secret (for example for Reloader).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<SecretTemplate>,

    /// Stop rotating while true. The current token stays published.
    #[serde(default)]
    pub suspend: bool,

    /// Settings for `type: Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<ManualSpec>,

    /// Workloads in the same namespace to restart when the published token changes, as
    /// `kubectl rollout restart` does (the pod-template annotation `slack.rotator.dev/restartedAt`),
    /// for apps that read the token from an environment variable once at start. A target that
    /// does not exist is reported in the `RolloutRestart` condition and a Warning Event; it never
    /// fails or repeats a rotation. The operator needs the chart value `rolloutRestart.enabled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["kind".into(), "name".into()]))]
    pub rollout_restart_targets: Vec<RolloutRestartTarget>,

    /// Revoke the current token with auth.revoke when this SlackToken is deleted. Adds the finalizer
    /// slack.rotator.dev/revoke-on-delete to the SlackToken and its credentials Secret (so the token
    /// is still there to revoke when a whole namespace is deleted); annotate the SlackToken with
    /// slack.rotator.dev/skip-revoke to let go without revoking.
    #[serde(default)]
    pub revoke_on_delete: bool,
}

impl SlackTokenSpec {
    /// A spec with every optional field at its default: the type and the two Secrets' names.
    pub fn new(token_type: TokenType, credentials: &str, secret: &str) -> Self {
        Self {
            token_type,
            credentials_ref: CredentialsRef { name: credentials.to_owned() },
            secret_ref: OutputSecretRef { name: secret.to_owned(), key: default_key() },
            rotation_period: None,
            renew_before: None,
            secret_template: None,
            suspend: false,
            manual: None,
            rollout_restart_targets: Vec::new(),
            revoke_on_delete: false,
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TokenType {
    OAuth,
    AppConfiguration,
    Manual,
}

impl TokenType {
    /// `spec.type` as written in a SlackToken, for labels and output: spelled out, so that
    /// renaming a variant cannot change a metric series.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OAuth => "OAuth",
            Self::AppConfiguration => "AppConfiguration",
            Self::Manual => "Manual",
        }
    }
}

/// A workload (same namespace) restarted when the published token changes.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct RolloutRestartTarget {
    pub kind: WorkloadKind,
    /// Name of the workload.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// The kinds of workload (`apps/v1`) that can be restarted.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    /// The kind as the API spells it (`Deployment`), for the API and for labels: spelled out,
    /// so that renaming a variant cannot change an API call or a metric series.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }

    /// The resource (plural) in `apps/v1`.
    pub fn plural(self) -> &'static str {
        match self {
            Self::Deployment => "deployments",
            Self::StatefulSet => "statefulsets",
            Self::DaemonSet => "daemonsets",
        }
    }
}

impl std::fmt::Display for RolloutRestartTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}/{}", self.kind, self.name)
    }
}

/// Reference to the credentials Secret (same namespace).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct CredentialsRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Reference to the output Secret (same namespace).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct OutputSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key under which the token is written.
    #[serde(default = "default_key")]
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

fn default_key() -> String {
    "token".to_owned()
}

/// Metadata copied onto the output Secret.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct SecretTemplate {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Settings for long-lived tokens that only a person can re-issue.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManualSpec {
    /// Which kind of long-lived token this is; decides the re-issue steps the operator shows.
    pub kind: ManualKind,
    /// Accept a replacement token that belongs to another user or bot of the same team.
    #[serde(default)]
    pub allow_identity_change: bool,
    /// Revoke the replaced token with auth.revoke once the new one is published.
    #[serde(default = "default_true")]
    pub revoke_replaced: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ManualKind {
    LegacyTestToken,
    CustomIntegrationBot,
    HubotLita,
    App,
}

/// Observed state. Never contains a token.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlackTokenStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the current token was issued or adopted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotation_time: Option<String>,
    /// When the operator will rotate next (or, for Manual tokens, when rotation is due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation_time: Option<String>,
    /// When Slack expires the current token; empty for tokens that do not expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_time: Option<String>,
    /// Rotations performed by the operator.
    #[serde(default)]
    pub rotation_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<String>,
    /// Consecutive failed attempts; reset by a success. Drives the retry backoff.
    #[serde(default)]
    pub failed_attempts: u32,
    /// Who the token belongs to, as Slack reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// When a long-lived token was last checked with auth.test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<String>,
    /// The last value of the `slack.rotator.dev/rotate` annotation that was handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rotate_request: Option<String>,
}

/// Identity of the token's owner, as Slack reports it. Never a token.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enterprise_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::{TokenType, WorkloadKind};

    /// The spelled-out names are the ones the API and the CRD use (serde's).
    #[test]
    fn kinds_spell_themselves_as_the_api_does() {
        for t in [TokenType::OAuth, TokenType::AppConfiguration, TokenType::Manual] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        for k in [WorkloadKind::Deployment, WorkloadKind::StatefulSet, WorkloadKind::DaemonSet] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
