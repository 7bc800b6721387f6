//! What it means when Slack refuses a refresh token (`invalid_refresh_token`).

use crate::{
    resource::{SlackToken, TokenType},
    secrets::{chain_token, fingerprint, Credentials},
};
use k8s_openapi::api::core::v1::Secret;
use secrecy::SecretString;

/// What a refused refresh token means, given the credentials Secret as read again after the
/// refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The Secret no longer holds the token presented: another replica has just used it and
    /// saved its successor (or a person put in another). Start again from what is there.
    Superseded,
    /// It still holds it, and the operator saved it itself (it records the issue time with it):
    /// it was good when saved, so its chain broke. Only reinstalling the app mends that.
    ChainBroken { app_id: Option<String>, config_token: bool },
    /// It still holds it, and a person put it in: it may simply be wrong. Slack's answer stands.
    Rejected,
}

/// Classifies Slack's refusal of `presented`, taken from credentials `creds`; `now_held` is the
/// credentials Secret read again after the refusal (`None`: gone).
pub fn refused_refresh_token(
    stk: &SlackToken,
    creds: &Credentials,
    presented: &SecretString,
    now_held: Option<&Secret>,
) -> Refused {
    let held = now_held.and_then(chain_token);
    if held.is_none_or(|held| fingerprint(&held) != fingerprint(presented)) {
        return Refused::Superseded;
    }
    match creds.issued_at {
        Some(_) => Refused::ChainBroken {
            app_id: stk.status.as_ref().and_then(|st| st.identity.as_ref()).and_then(|i| i.app_id.clone()),
            config_token: stk.spec.token_type == TokenType::AppConfiguration,
        },
        None => Refused::Rejected,
    }
}
