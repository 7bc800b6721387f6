//! Everything a reconcile can fail with, and what each failure tells the user.

use crate::{credentials::CredentialsError, slack::SlackError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(String),

    #[error("credentials Secret `{name}` not found in this namespace")]
    CredentialsNotFound { name: String },

    #[error("credentials Secret `{name}`: {source}")]
    BadCredentials {
        name: String,
        #[source]
        source: CredentialsError,
    },

    #[error(
        "credentials Secret `{name}` is already used by SlackToken `{owner}`; each SlackToken needs its own"
    )]
    CredentialsInUse { name: String, owner: String },

    #[error("output Secret `{name}` already exists and is not managed by this SlackToken")]
    OutputSecretConflict { name: String },

    #[error("{0}")]
    Slack(#[from] SlackError),

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// The condition reason users see (PascalCase, stable: scripts may match on it).
    pub fn reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::CredentialsNotFound { .. } => "CredentialsNotFound",
            Error::BadCredentials { .. } => "InvalidCredentials",
            Error::CredentialsInUse { .. } => "CredentialsInUse",
            Error::OutputSecretConflict { .. } => "OutputSecretConflict",
            Error::Slack(e) => match e.code() {
                Some("invalid_refresh_token") => "InvalidRefreshToken",
                Some("invalid_client_id" | "bad_client_secret") => "InvalidClientCredentials",
                Some("token_revoked" | "invalid_auth" | "account_inactive") => "TokenRevoked",
                Some("token_expired") => "TokenExpired",
                Some("ratelimited") => "RateLimited",
                Some("token_already_exchanged" | "token_rotation_not_enabled" | "invalid_token") => {
                    "ExchangeFailed"
                }
                _ if e.is_transient() => "SlackUnavailable",
                _ => "SlackError",
            },
            Error::Kube(_) => "KubernetesApiError",
        }
    }

    /// Whether retrying soon can help. Permanent errors wait for a person to change something
    /// (the watch brings us back at once) and are retried only rarely in between.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Slack(e) => e.is_transient(),
            Error::Kube(_) | Error::CredentialsNotFound { .. } => true,
            _ => false,
        }
    }

    /// A message that says what happened and what to do about it. Never contains a token.
    pub fn user_message(&self, credentials: &str) -> String {
        let hint = match self {
            Error::CredentialsNotFound { .. } => format!(
                "create it (label it `{}=<this SlackToken>` to have it picked up at once)",
                crate::credentials::SLACKTOKEN_LABEL
            ),
            Error::Slack(e) => match e.code() {
                Some("invalid_refresh_token") => format!(
                    "the refresh token was already used or revoked; reinstall the Slack app and put the new refresh token into Secret `{credentials}` key `refreshToken`"
                ),
                Some("invalid_client_id" | "bad_client_secret") => {
                    format!("check `clientId` and `clientSecret` in Secret `{credentials}` against the app's Basic Information page")
                }
                Some("invalid_grant_type") => "this app may not have token rotation turned on".to_owned(),
                Some("token_revoked" | "invalid_auth" | "account_inactive") => {
                    "the token no longer works; issue a new one and supply it as `pendingToken`".to_owned()
                }
                Some("token_already_exchanged") => format!(
                    "this long-lived token was already exchanged; put the refresh token from that exchange into Secret `{credentials}` key `refreshToken`, or reinstall the app"
                ),
                Some("token_rotation_not_enabled") => {
                    "turn on token rotation in the Slack app settings (OAuth & Permissions), then retry".to_owned()
                }
                Some("invalid_token") => format!("check `legacyToken` in Secret `{credentials}`: Slack does not know it"),
                _ if e.is_transient() => "will retry with backoff".to_owned(),
                _ => "see Slack's documentation for this error".to_owned(),
            },
            Error::Kube(_) => "will retry with backoff".to_owned(),
            _ => String::new(),
        };
        if hint.is_empty() {
            self.to_string()
        } else {
            format!("{self}: {hint}")
        }
    }
}
