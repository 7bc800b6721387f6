//! Slack's Web API: the client for the few methods the operator calls, and what their failures mean.

mod client;
mod error;
mod limits;

#[cfg(feature = "emulator")]
pub use client::redacted;
pub use client::{check_slack_url, AuthTest, CallObserver, Issued, SlackClient, ROTATING_TOKEN_LIFETIME};
pub use error::{SlackError, SlackErrorKind};
pub use limits::{Installation, RateLimits};
