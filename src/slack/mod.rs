//! Slack's Web API: the client for the few methods the operator calls, and what their failures mean.

mod client;
mod error;
mod limits;

pub use client::{
    check_slack_url, redacted, AuthTest, CallObserver, Issued, SlackClient, ROTATING_TOKEN_LIFETIME,
};
pub use error::{SlackError, SlackErrorKind};
pub use limits::{Installation, RateLimits};
