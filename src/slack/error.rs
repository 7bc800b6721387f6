//! Every way a Slack call can fail, classified once.
//!
//! [`SlackError`] says what happened on the wire; [`SlackErrorKind`] says what it means for the
//! operator, and from the kind alone come the condition reason users see, the hint that tells
//! them what to do, whether retrying can help, and whether the token itself is dead. Nothing else
//! in the operator matches on Slack's error codes.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    #[error("Slack answered {method} with error `{code}`")]
    Api { method: &'static str, code: String },
    #[error("Slack rate-limited {method}; retry after {}s", retry_after.as_secs())]
    RateLimited { method: &'static str, retry_after: Duration },
    #[error("Slack answered {method} with HTTP {status}")]
    Http { method: &'static str, status: u16 },
    #[error("Slack did not answer {method} within {}s", after.as_secs())]
    Timeout { method: &'static str, after: Duration },
    #[error("could not reach Slack for {method}: {source}")]
    Transport {
        method: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("Slack sent an unreadable answer to {method}: {detail}")]
    Decode { method: &'static str, detail: String },
}

/// What a Slack failure means for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlackErrorKind {
    /// The refresh token was already used or revoked (`invalid_refresh_token`).
    InvalidRefreshToken,
    /// `invalid_client_id`, `bad_client_secret`.
    InvalidClientCredentials,
    /// `invalid_grant_type`: the app does not have token rotation on.
    RotationNotEnabled,
    /// The token no longer works: `token_revoked`, `invalid_auth`, `not_authed`, `account_inactive`.
    TokenRevoked,
    /// `token_expired`.
    TokenExpired,
    /// `oauth.v2.exchange` refused: `token_already_exchanged`.
    AlreadyExchanged,
    /// `oauth.v2.exchange` refused: `token_rotation_not_enabled`.
    ExchangeNeedsRotation,
    /// `oauth.v2.exchange` refused: `invalid_token`, `authorization_not_found`.
    ExchangeUnknownToken,
    /// HTTP 429 or `ratelimited`.
    RateLimited,
    /// Slack did not answer in time.
    Timeout,
    /// Slack is unwell or unreachable: documented temporary codes, 5xx, 408, transport errors.
    Unavailable,
    /// Slack answered something the operator cannot read (not JSON, fields missing or absurd).
    Unreadable,
    /// Any other error code: needs a person.
    Other,
}

/// Errors Slack's documentation lists as temporary.
const TRANSIENT_CODES: &[&str] = &["internal_error", "fatal_error", "service_unavailable", "request_timeout"];

impl SlackErrorKind {
    /// The one table from Slack's error codes to what they mean.
    pub fn of_code(code: &str) -> Self {
        match code {
            "invalid_refresh_token" => Self::InvalidRefreshToken,
            "invalid_client_id" | "bad_client_secret" => Self::InvalidClientCredentials,
            "invalid_grant_type" => Self::RotationNotEnabled,
            "token_revoked" | "invalid_auth" | "not_authed" | "account_inactive" => Self::TokenRevoked,
            "token_expired" => Self::TokenExpired,
            "token_already_exchanged" => Self::AlreadyExchanged,
            "token_rotation_not_enabled" => Self::ExchangeNeedsRotation,
            "invalid_token" | "authorization_not_found" => Self::ExchangeUnknownToken,
            "ratelimited" => Self::RateLimited,
            c if TRANSIENT_CODES.contains(&c) => Self::Unavailable,
            _ => Self::Other,
        }
    }

    /// The condition reason users see (PascalCase, stable: scripts and alerts match on it).
    pub fn reason(self) -> &'static str {
        match self {
            Self::InvalidRefreshToken => "InvalidRefreshToken",
            Self::InvalidClientCredentials => "InvalidClientCredentials",
            Self::RotationNotEnabled => "RotationNotEnabled",
            Self::TokenRevoked => "TokenRevoked",
            Self::TokenExpired => "TokenExpired",
            Self::AlreadyExchanged | Self::ExchangeNeedsRotation | Self::ExchangeUnknownToken => {
                "ExchangeFailed"
            }
            Self::RateLimited => "RateLimited",
            Self::Timeout => "SlackTimeout",
            Self::Unavailable => "SlackUnavailable",
            Self::Unreadable => "SlackUnreadableAnswer",
            Self::Other => "SlackError",
        }
    }

    /// Whether trying again later can succeed without a person doing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::RateLimited | Self::Timeout | Self::Unavailable | Self::Unreadable)
    }

    /// Whether Slack says the token itself no longer works (as opposed to Slack being unwell).
    pub fn token_is_dead(self) -> bool {
        matches!(self, Self::TokenRevoked | Self::TokenExpired)
    }

    /// What the user should do, for a token whose state lives in credentials Secret `credentials`.
    pub fn hint(self, credentials: &str) -> String {
        match self {
            Self::InvalidRefreshToken => format!(
                "the refresh token was already used or revoked; reinstall the Slack app and put the new refresh token into Secret `{credentials}` key `refreshToken`"
            ),
            Self::InvalidClientCredentials => format!(
                "check `clientId` and `clientSecret` in Secret `{credentials}` against the app's Basic Information page"
            ),
            Self::RotationNotEnabled => {
                "turn on token rotation in the Slack app settings (OAuth & Permissions), then retry".to_owned()
            }
            Self::TokenRevoked | Self::TokenExpired => {
                "the token no longer works; issue a new one and supply it as `pendingToken`".to_owned()
            }
            Self::AlreadyExchanged => format!(
                "this long-lived token was already exchanged; put the refresh token from that exchange into Secret `{credentials}` key `refreshToken`, or reinstall the app"
            ),
            Self::ExchangeNeedsRotation => {
                "turn on token rotation in the Slack app settings (OAuth & Permissions), then retry".to_owned()
            }
            Self::ExchangeUnknownToken => {
                format!("check `legacyToken` in Secret `{credentials}`: Slack does not know it")
            }
            Self::RateLimited | Self::Timeout | Self::Unavailable | Self::Unreadable => {
                "will retry with backoff".to_owned()
            }
            Self::Other => "see Slack's documentation for this error".to_owned(),
        }
    }
}

impl SlackError {
    pub fn kind(&self) -> SlackErrorKind {
        match self {
            SlackError::Api { code, .. } => SlackErrorKind::of_code(code),
            SlackError::RateLimited { .. } => SlackErrorKind::RateLimited,
            SlackError::Http { status, .. } if *status >= 500 || *status == 408 => {
                SlackErrorKind::Unavailable
            }
            SlackError::Http { status: 429, .. } => SlackErrorKind::RateLimited,
            SlackError::Http { .. } => SlackErrorKind::Other,
            SlackError::Timeout { .. } => SlackErrorKind::Timeout,
            SlackError::Transport { .. } => SlackErrorKind::Unavailable,
            SlackError::Decode { .. } => SlackErrorKind::Unreadable,
        }
    }

    /// Whether trying again later can succeed without a person doing anything.
    /// The condition reason of this failure; also the `result` label of Slack call metrics.
    pub fn reason(&self) -> &'static str {
        self.kind().reason()
    }

    pub fn is_rate_limit(&self) -> bool {
        self.kind() == SlackErrorKind::RateLimited
    }

    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// Whether Slack says the token itself no longer works.
    pub fn token_is_dead(&self) -> bool {
        self.kind().token_is_dead()
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SlackError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The Slack error code, when Slack gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            SlackError::Api { code, .. } => Some(code),
            SlackError::RateLimited { .. } => Some("ratelimited"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_slack_documents_has_one_meaning() {
        use SlackErrorKind as K;
        // (code, kind, transient, token dead, reason)
        let table = [
            ("invalid_refresh_token", K::InvalidRefreshToken, false, false, "InvalidRefreshToken"),
            ("invalid_client_id", K::InvalidClientCredentials, false, false, "InvalidClientCredentials"),
            ("bad_client_secret", K::InvalidClientCredentials, false, false, "InvalidClientCredentials"),
            ("invalid_grant_type", K::RotationNotEnabled, false, false, "RotationNotEnabled"),
            ("token_revoked", K::TokenRevoked, false, true, "TokenRevoked"),
            ("invalid_auth", K::TokenRevoked, false, true, "TokenRevoked"),
            ("not_authed", K::TokenRevoked, false, true, "TokenRevoked"),
            ("account_inactive", K::TokenRevoked, false, true, "TokenRevoked"),
            ("token_expired", K::TokenExpired, false, true, "TokenExpired"),
            ("token_already_exchanged", K::AlreadyExchanged, false, false, "ExchangeFailed"),
            ("token_rotation_not_enabled", K::ExchangeNeedsRotation, false, false, "ExchangeFailed"),
            ("invalid_token", K::ExchangeUnknownToken, false, false, "ExchangeFailed"),
            ("authorization_not_found", K::ExchangeUnknownToken, false, false, "ExchangeFailed"),
            ("ratelimited", K::RateLimited, true, false, "RateLimited"),
            ("internal_error", K::Unavailable, true, false, "SlackUnavailable"),
            ("fatal_error", K::Unavailable, true, false, "SlackUnavailable"),
            ("service_unavailable", K::Unavailable, true, false, "SlackUnavailable"),
            ("request_timeout", K::Unavailable, true, false, "SlackUnavailable"),
            ("missing_scope", K::Other, false, false, "SlackError"),
        ];
        for (code, kind, transient, dead, reason) in table {
            let k = SlackErrorKind::of_code(code);
            assert_eq!(
                (k, k.is_transient(), k.token_is_dead(), k.reason()),
                (kind, transient, dead, reason),
                "{code}"
            );
            assert!(!k.hint("creds").is_empty(), "{code} has a hint");
        }
    }

    #[test]
    fn http_failures_are_transient_only_when_slack_is_unwell() {
        let http = |status| SlackError::Http { method: "m", status };
        for (status, transient) in
            [(500, true), (502, true), (503, true), (408, true), (429, true), (404, false), (400, false)]
        {
            assert_eq!(http(status).is_transient(), transient, "HTTP {status}");
        }
        let decode = SlackError::Decode { method: "m", detail: "not JSON".into() };
        assert!(decode.is_transient());
    }
}
