//! The `ok:false` answers of the Slack Web API.

/// An error code Slack puts in `{"ok": false, "error": "<code>"}`.
///
/// `Display` prints exactly the wire code, so a variant can be written straight into a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    #[error("not_authed")]
    NotAuthed,
    #[error("invalid_auth")]
    InvalidAuth,
    #[error("token_revoked")]
    TokenRevoked,
    #[error("token_expired")]
    TokenExpired,
    #[error("invalid_refresh_token")]
    InvalidRefreshToken,
    #[error("invalid_client_id")]
    InvalidClientId,
    #[error("bad_client_secret")]
    BadClientSecret,
    #[error("invalid_grant_type")]
    InvalidGrantType,
    /// `oauth.v2.access` without `grant_type=refresh_token` is the authorization-code flow, which the
    /// emulator does not run: every code is unknown.
    #[error("invalid_code")]
    InvalidCode,
    #[error("invalid_token")]
    InvalidToken,
    #[error("token_already_exchanged")]
    TokenAlreadyExchanged,
    #[error("token_rotation_not_enabled")]
    TokenRotationNotEnabled,
    #[error("authorization_not_found")]
    AuthorizationNotFound,
    #[error("unknown_method")]
    UnknownMethod,
    #[error("invalid_json")]
    InvalidJson,
    #[error("ratelimited")]
    RateLimited,
    /// A code chosen by an injected fault (`Fault::SlackError`).
    #[error("{0}")]
    Other(String),
}

impl SlackError {
    /// The wire code, e.g. `invalid_auth`.
    pub fn code(&self) -> String {
        self.to_string()
    }
}
