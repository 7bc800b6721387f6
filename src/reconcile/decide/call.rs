//! Which Slack call a rotation makes, and what it presents to Slack.

use super::plan::{Call, Trigger};
use crate::{
    error::CredentialsError,
    resource::TokenType,
    secrets::{Credentials, LEGACY_TOKEN, REFRESH_TOKEN},
};
use secrecy::SecretString;

/// What a Slack call presents, taken from the credentials the call was planned on.
pub enum Presented<'c> {
    RefreshOAuth { client_id: &'c str, client_secret: &'c SecretString, refresh_token: &'c SecretString },
    Exchange { client_id: &'c str, client_secret: &'c SecretString, legacy_token: &'c SecretString },
    RotateConfigToken { refresh_token: &'c SecretString },
}

impl Presented<'_> {
    /// The token the call spends: the credentials Secret's chain continues from it (see
    /// `secrets::chain_token`), and the new pair is saved only over it.
    pub fn spent(&self) -> &SecretString {
        match self {
            Self::RefreshOAuth { refresh_token, .. } | Self::RotateConfigToken { refresh_token } => {
                refresh_token
            }
            Self::Exchange { legacy_token, .. } => legacy_token,
        }
    }
}

/// What `call` presents, or what is missing for it. The one rule for both decide (a rotation is
/// planned only when this answers) and act (which presents what this gives).
pub fn presented(call: Call, creds: &Credentials) -> Result<Presented<'_>, CredentialsError> {
    let refresh_token = || creds.refresh_token.as_ref().ok_or_else(|| creds.missing(REFRESH_TOKEN));
    Ok(match call {
        Call::RefreshOAuth => {
            let (client_id, client_secret) = creds.require_client()?;
            Presented::RefreshOAuth { client_id, client_secret, refresh_token: refresh_token()? }
        }
        Call::Exchange => {
            let (client_id, client_secret) = creds.require_client()?;
            let legacy_token = creds.legacy_token.as_ref().ok_or_else(|| creds.missing(LEGACY_TOKEN))?;
            Presented::Exchange { client_id, client_secret, legacy_token }
        }
        Call::RotateConfigToken => Presented::RotateConfigToken { refresh_token: refresh_token()? },
    })
}

/// The Slack method a rotation for `trigger` calls, if what the call needs is there; `None`
/// when Slack has answered already (a pending pair is only saved).
pub fn call_for(
    trigger: Trigger,
    token_type: TokenType,
    creds: &Credentials,
) -> Result<Option<Call>, CredentialsError> {
    let call = match (trigger, token_type) {
        (Trigger::SavePending, _) => return Ok(None),
        (Trigger::Exchange, _) => Call::Exchange,
        (_, TokenType::AppConfiguration) => Call::RotateConfigToken,
        _ => Call::RefreshOAuth,
    };
    presented(call, creds).map(|_| Some(call))
}
