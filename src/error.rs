//! Everything a reconcile can fail with, classified once: the reason users see, the hint that
//! says what to do, and whether retrying soon can help all come from here.

use crate::slack::SlackError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something in the cluster a person must fix.
    #[error(transparent)]
    Invalid(#[from] Invalid),

    #[error(transparent)]
    Slack(#[from] SlackError),

    /// A Kubernetes API call failed; `verb` and `resource` say which.
    #[error("Kubernetes API: {verb} {resource} `{name}`: {source}")]
    Kube {
        verb: &'static str,
        resource: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },

    /// Slack refused a refresh token the operator itself saved, and the credentials Secret still
    /// holds it: the token was spent without its successor being saved (a crash inside the
    /// write window with the journal lost, a backup restored, another tool using the same
    /// credentials). Only a person can mend it, by reinstalling the app.
    #[error(
        "Slack no longer accepts the refresh token in Secret `{name}`: the chain of refresh tokens is broken"
    )]
    ChainBroken { name: String, app_id: Option<String>, config_token: bool },

    /// The credentials Secret changed while this reconcile worked with it (another replica
    /// saved a newer pair, or a person put in another token); it starts again from what is there.
    #[error("credentials Secret `{name}` changed while its tokens were in use; starting again from what it holds now")]
    CredentialsChanged { name: String },

    /// A write with a resourceVersion precondition kept meeting newer versions.
    #[error("Kubernetes API: {resource} `{name}` kept changing while it was being written")]
    Conflict { resource: &'static str, name: String },
}

/// What a person must fix in the cluster before the SlackToken can work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("invalid spec: {0}")]
    Spec(String),

    #[error("credentials Secret `{name}` not found in this namespace")]
    CredentialsNotFound { name: String },

    #[error("credentials Secret `{name}`: {problem}")]
    Credentials { name: String, problem: CredentialsError },

    #[error(
        "credentials Secret `{name}` is already used by SlackToken `{owner}`; each SlackToken needs its own"
    )]
    CredentialsInUse { name: String, owner: String },

    #[error("output Secret `{name}` already exists and is not managed by this SlackToken")]
    OutputSecretConflict { name: String },
}

/// What can be wrong with the content of a credentials Secret. Each message names keys, sizes
/// and kinds of token, and says what to put where; never a value.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CredentialsError {
    /// `present`: the names of the keys the Secret has, to show a misspelt one.
    #[error("{}", missing(key, present))]
    Missing { key: &'static str, present: Vec<String> },
    #[error("key `{0}` is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error(
        "key `{key}` holds {bytes} bytes, but a Slack token is about 200 (at most {limit} are accepted): it holds something else; put the token alone there",
        limit = MAX_VALUE_BYTES
    )]
    TooLarge { key: &'static str, bytes: usize },
    #[error(
        "key `{0}` has whitespace or control characters inside its value, which a Slack token never has (around it they are ignored); put the token alone there"
    )]
    NotAToken(&'static str),
    /// The value is not the kind of token the key is for; `problem` says what it is and where it goes.
    #[error("key `{key}` {problem}")]
    WrongToken { key: &'static str, problem: &'static str },
    #[error("key `expiresAt` is not an RFC 3339 timestamp")]
    BadExpiry,
}

/// The longest value accepted for one key of a credentials Secret. Slack's tokens are about 200
/// bytes; anything many times that is something else pasted by mistake, and is never sent.
pub const MAX_VALUE_BYTES: usize = 4096;

fn missing(key: &str, present: &[String]) -> String {
    if present.iter().any(|k| k == key) {
        return format!("key `{key}` is empty");
    }
    // `refresh_token`, `RefreshToken`, `refresh-token` are all meant as `refreshToken`.
    let plain =
        |k: &str| k.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    let meant = present.iter().find(|k| plain(k) == plain(key));
    const SHOWN: usize = 12;
    let mut keys: Vec<String> = present.iter().take(SHOWN).map(|k| format!("`{k}`")).collect();
    if present.len() > SHOWN {
        keys.push(format!("and {} more", present.len() - SHOWN));
    }
    let has = match keys.is_empty() {
        true => "no keys".to_owned(),
        false => format!("keys {}", keys.join(", ")),
    };
    match meant {
        Some(k) => format!("key `{key}` is missing (the Secret has {has}): rename `{k}` to `{key}`"),
        None => format!("key `{key}` is missing (the Secret has {has})"),
    }
}

/// What a failed rollout restart of one `rolloutRestartTargets` workload means. It never fails
/// the rotation: the token is published by then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartFailure {
    /// No such workload in the namespace: the spec names the wrong one (not retried).
    NotFound,
    /// RBAC does not let the operator patch that kind (not retried).
    Forbidden,
    /// Anything else (the API server unwell): retried soon.
    Failed,
}

impl RestartFailure {
    /// The `RolloutRestart` condition reason, also the `result` label of the restarts metric.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotFound => "TargetNotFound",
            Self::Forbidden => "Forbidden",
            Self::Failed => "RestartFailed",
        }
    }

    pub fn is_retried(self) -> bool {
        self == Self::Failed
    }

    /// What to do about it, for `kind`'s resource (e.g. `deployments`) in `namespace`.
    pub fn hint(self, resource: &str, namespace: &str) -> String {
        match self {
            Self::NotFound => format!("not found in namespace {namespace}; fix spec.rolloutRestartTargets"),
            Self::Forbidden => format!(
                "the operator may not patch {resource} in namespace {namespace}; install the chart with rolloutRestart.enabled=true"
            ),
            Self::Failed => "the API server refused the patch; retrying soon".to_owned(),
        }
    }
}

impl Error {
    /// What this failure of a rollout restart means.
    pub fn restart_failure(&self) -> RestartFailure {
        match self.api_code() {
            Some(404) => RestartFailure::NotFound,
            Some(403) => RestartFailure::Forbidden,
            _ => RestartFailure::Failed,
        }
    }

    /// Wraps a failed Kubernetes call with what it was doing.
    pub fn kube(verb: &'static str, resource: &'static str, name: &str) -> impl FnOnce(kube::Error) -> Self {
        let name = name.to_owned();
        move |source| Error::Kube { verb, resource, name, source }
    }

    /// The HTTP status of a failed Kubernetes call.
    fn api_code(&self) -> Option<u16> {
        match self {
            Error::Kube { source: kube::Error::Api(e), .. } => Some(e.code),
            _ => None,
        }
    }

    /// The condition reason users see (PascalCase, stable: scripts and alerts match on it).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid(Invalid::Spec(_)) => "InvalidSpec",
            Error::Invalid(Invalid::CredentialsNotFound { .. }) => "CredentialsNotFound",
            Error::Invalid(Invalid::Credentials { .. }) => "InvalidCredentials",
            Error::Invalid(Invalid::CredentialsInUse { .. }) => "CredentialsInUse",
            Error::Invalid(Invalid::OutputSecretConflict { .. }) => "OutputSecretConflict",
            Error::Slack(e) => e.kind().reason(),
            Error::ChainBroken { .. } => "ChainBroken",
            Error::CredentialsChanged { .. } => "CredentialsChanged",
            Error::Kube { .. } if self.api_code() == Some(403) => "Forbidden",
            Error::Kube { .. } if self.api_code() == Some(422) => "RejectedByApiServer",
            Error::Kube { .. } | Error::Conflict { .. } => "KubernetesApiError",
        }
    }

    /// Whether retrying soon can help. Permanent errors wait for a person to change something
    /// (the watch brings us back at once when they change the SlackToken or its credentials)
    /// and are retried only rarely in between.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Invalid(Invalid::CredentialsNotFound { .. }) => true,
            Error::Invalid(_) => false,
            Error::Slack(e) => e.is_transient(),
            Error::ChainBroken { .. } => false,
            Error::CredentialsChanged { .. } => true,
            Error::Kube { .. } => !matches!(self.api_code(), Some(403 | 422)),
            Error::Conflict { .. } => true,
        }
    }

    /// A message that says what happened and what to do about it. Never contains a token.
    pub fn user_message(&self, credentials: &str) -> String {
        let hint = match self {
            Error::Invalid(Invalid::CredentialsNotFound { .. }) => format!(
                "create it (label it `{}=<this SlackToken>` to have it picked up at once)",
                crate::resource::SLACKTOKEN_LABEL
            ),
            Error::Invalid(_) => String::new(),
            Error::Slack(e) => e.kind().hint(credentials),
            Error::ChainBroken { config_token: true, .. } => format!(
                "generate a new app configuration token (api.slack.com/apps, \"Your App Configuration Tokens\", Generate Token) and put its refresh token into Secret `{credentials}` key `refreshToken`"
            ),
            Error::ChainBroken { app_id, .. } => format!(
                "reinstall the Slack app ({}OAuth & Permissions, \"Reinstall to Workspace\"), then put the new refresh token into Secret `{credentials}` key `refreshToken`",
                app_id.as_ref().map(|id| format!("api.slack.com/apps/{id}/oauth, ")).unwrap_or_else(|| "api.slack.com/apps, your app, ".to_owned())
            ),
            Error::CredentialsChanged { .. } => "will retry at once".to_owned(),
            Error::Kube { verb, resource, .. } if self.api_code() == Some(403) => format!(
                "the operator's ServiceAccount may not {verb} {resource} here; grant it (the Helm chart's RBAC does)"
            ),
            Error::Kube { .. } if self.api_code() == Some(422) => {
                "the API server refused the object; see the message above".to_owned()
            }
            Error::Kube { .. } | Error::Conflict { .. } => "will retry with backoff".to_owned(),
        };
        if hint.is_empty() {
            self.to_string()
        } else {
            format!("{self}: {hint}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        let status = kube::core::Status::failure("refused", "Reason").with_code(code);
        Error::kube("patch", "secrets", "creds")(kube::Error::Api(status.boxed()))
    }

    #[test]
    fn kubernetes_errors_are_transient_unless_a_person_must_act() {
        // (code, transient, reason)
        let table = [
            (500, true, "KubernetesApiError"),
            (503, true, "KubernetesApiError"),
            (409, true, "KubernetesApiError"),
            (429, true, "KubernetesApiError"),
            (403, false, "Forbidden"),
            (422, false, "RejectedByApiServer"),
        ];
        for (code, transient, reason) in table {
            let e = api(code);
            assert_eq!((e.is_transient(), e.reason()), (transient, reason), "HTTP {code}");
        }
        let forbidden = api(403).user_message("creds");
        assert!(forbidden.contains("may not patch secrets"), "{forbidden}");
    }

    #[test]
    fn a_missing_or_forbidden_restart_target_is_reported_not_retried() {
        // (code, failure, retried)
        let table = [
            (404, RestartFailure::NotFound, false),
            (403, RestartFailure::Forbidden, false),
            (500, RestartFailure::Failed, true),
            (409, RestartFailure::Failed, true),
        ];
        for (code, failure, retried) in table {
            assert_eq!(api(code).restart_failure(), failure, "HTTP {code}");
            assert_eq!(failure.is_retried(), retried, "HTTP {code}");
        }
        assert!(RestartFailure::Forbidden.hint("deployments", "a").contains("rolloutRestart.enabled"));
    }

    #[test]
    fn problems_a_person_must_fix_are_not_retried_soon_except_a_missing_secret() {
        let missing = Error::from(Invalid::CredentialsNotFound { name: "c".into() });
        assert!(missing.is_transient());
        let in_use = Error::from(Invalid::CredentialsInUse { name: "c".into(), owner: "o".into() });
        assert!(!in_use.is_transient());
        assert_eq!(in_use.reason(), "CredentialsInUse");
    }
}
