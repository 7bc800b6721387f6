//! The credentials Secret: the one place rotation state lives.
//!
//! A refresh token works once, so the newest one must be durable before anything else happens.
//! It is kept in the user's credentials Secret together with the access token it came with and
//! that token's expiry and issue time; the output Secret and the SlackToken status are only
//! derived from it and can always be rebuilt.

use crate::{
    error::{CredentialsError, MAX_VALUE_BYTES},
    resource::{ManualKind, EXPIRY_ASSUMED_ANNOTATION, HANDOVER_ANNOTATION, ISSUED_AT_ANNOTATION},
    slack::Issued,
};
use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta, ByteString};
use secrecy::{ExposeSecret, SecretString};

pub const CLIENT_ID: &str = "clientId";
pub const CLIENT_SECRET: &str = "clientSecret";
pub const REFRESH_TOKEN: &str = "refreshToken";
pub const ACCESS_TOKEN: &str = "accessToken";
pub const EXPIRES_AT: &str = "expiresAt";
pub const LEGACY_TOKEN: &str = "legacyToken";
pub const PENDING_TOKEN: &str = "pendingToken";

/// What the credentials Secret holds, parsed. Tokens stay redacted.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    pub access_token: Option<SecretString>,
    pub expires_at: Option<Timestamp>,
    pub issued_at: Option<Timestamp>,
    /// `expires_at` is Slack's 12 hours assumed, not a lifetime Slack reported.
    pub expiry_assumed: bool,
    pub legacy_token: Option<SecretString>,
    pub pending_token: Option<SecretString>,
    /// Which hand-over by `kubectl slacktoken handover` put `pendingToken` there, if one did.
    pub handover: Option<String>,
    /// The names of the keys the Secret has (never their values), to explain a missing one.
    pub keys: Vec<String>,
}

impl Credentials {
    /// Reads the Secret's keys. Every value is checked before it can reach Slack: not too large,
    /// UTF-8, and for tokens nothing but the token (no whitespace or control characters inside;
    /// around it they are trimmed). Which kind of token a key holds is checked where it is used,
    /// since that depends on the SlackToken's type (see [`refresh_token_problem`]).
    pub fn from_secret(secret: &Secret) -> Result<Self, CredentialsError> {
        let expires_at = match text(secret, EXPIRES_AT)? {
            Some(t) => Some(t.parse::<Timestamp>().map_err(|_| CredentialsError::BadExpiry)?),
            None => None,
        };
        let annotations = secret.metadata.annotations.as_ref();
        let issued_at =
            annotations.and_then(|a| a.get(ISSUED_AT_ANNOTATION)).and_then(|t| t.parse::<Timestamp>().ok());
        let expiry_assumed = annotations.is_some_and(|a| a.contains_key(EXPIRY_ASSUMED_ANNOTATION));
        Ok(Self {
            client_id: secret_text(secret, CLIENT_ID)?.map(|id| id.expose_secret().to_owned()),
            client_secret: secret_text(secret, CLIENT_SECRET)?,
            refresh_token: secret_text(secret, REFRESH_TOKEN)?,
            access_token: secret_text(secret, ACCESS_TOKEN)?,
            expires_at,
            issued_at,
            expiry_assumed: expiry_assumed && expires_at.is_some(),
            legacy_token: secret_text(secret, LEGACY_TOKEN)?,
            pending_token: secret_text(secret, PENDING_TOKEN)?,
            handover: secret.metadata.annotations.as_ref().and_then(|a| a.get(HANDOVER_ANNOTATION)).cloned(),
            keys: secret.data.iter().flat_map(|d| d.keys().cloned()).collect(),
        })
    }

    /// Whether there is no usable access token yet, so the first one must come from a rotation:
    /// none at all, or one whose expiry is unknown (put there by a person, or saved by an older
    /// version of the operator when Slack gave no lifetime). Every token saved now has an expiry
    /// (Slack's, or its 12 hours assumed), so this cannot turn into a loop of rotations.
    pub fn needs_first_token(&self) -> bool {
        self.access_token.is_none() || self.expires_at.is_none()
    }

    pub fn require_client(&self) -> Result<(&str, &SecretString), CredentialsError> {
        let id = self.client_id.as_deref().ok_or_else(|| self.missing(CLIENT_ID))?;
        let secret = self.client_secret.as_ref().ok_or_else(|| self.missing(CLIENT_SECRET))?;
        Ok((id, secret))
    }

    /// `key` is needed but missing (or empty), said with the keys the Secret does have.
    pub fn missing(&self, key: &'static str) -> CredentialsError {
        CredentialsError::Missing { key, present: self.keys.clone() }
    }
}

/// Why the value of `refreshToken` cannot be a refresh token, if it plainly cannot: Slack would
/// refuse it, and its refusal (`invalid_refresh_token`) would send people to reinstall the app.
pub fn refresh_token_problem(token: &SecretString) -> Option<CredentialsError> {
    let problem = match kind_of(token.expose_secret()) {
        Kind::Refresh => return None,
        Kind::LongLived => "holds a long-lived bot or user token (`xoxb-`/`xoxp-`), not a refresh token (`xoxe-`): to move it onto token rotation put it in key `legacyToken` instead (type OAuth), or keep it long-lived with type Manual and key `accessToken`",
        Kind::RotatingAccess => "holds a rotating access token (`xoxe.xoxb-`/`xoxe.xoxp-`), not a refresh token: put the refresh token (`xoxe-1-…`) that came with it there",
        Kind::AppLevel => "holds an app-level token (`xapp-`), which Slack cannot rotate; a refresh token starts with `xoxe-`",
        Kind::Other => "is not a Slack refresh token (those start with `xoxe-`): put the refresh token from the app's OAuth install there",
    };
    Some(CredentialsError::WrongToken { key: REFRESH_TOKEN, problem })
}

/// Why the value of `legacyToken` cannot be exchanged (only long-lived `xoxb-`/`xoxp-` can).
pub fn legacy_token_problem(token: &SecretString) -> Option<CredentialsError> {
    let problem = match kind_of(token.expose_secret()) {
        Kind::LongLived => return None,
        Kind::Refresh => {
            "holds a refresh token (`xoxe-`), not a long-lived token: put it in key `refreshToken` instead"
        }
        Kind::RotatingAccess => "holds a rotating access token (`xoxe.`), which is on rotation already: put the refresh token (`xoxe-1-…`) that came with it in key `refreshToken` instead",
        Kind::AppLevel => "holds an app-level token (`xapp-`), which Slack cannot rotate; `legacyToken` takes a long-lived bot or user token (`xoxb-`/`xoxp-`)",
        Kind::Other => "is not a long-lived Slack bot or user token (those start with `xoxb-` or `xoxp-`)",
    };
    Some(CredentialsError::WrongToken { key: LEGACY_TOKEN, problem })
}

/// Why `token` cannot be a re-issued token for a Manual SlackToken of `kind`, if it plainly
/// cannot: `kubectl slacktoken handover` asks this before anything is sent, so a wrong paste
/// (the refresh token of another app, a token with the `pass` entry's next line stuck to it)
/// never reaches the cluster. The operator's own check (auth.test, same team and user) follows.
/// The answer names prefixes, never the token.
pub fn hand_over_problem(kind: ManualKind, token: &SecretString) -> Option<String> {
    let token = token.expose_secret();
    if token.is_empty() {
        return Some("no token was given".into());
    }
    if token.len() > MAX_VALUE_BYTES {
        return Some(format!("{} bytes is not a token (at most {MAX_VALUE_BYTES})", token.len()));
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("a token is one word: this has spaces, line breaks or control characters inside".into());
    }
    // Legacy test tokens are user tokens; custom-integration and Hubot/Lita bots are bot
    // tokens; an app without rotation has either (Slack help: "Token types").
    let (wanted, expected): (&[&str], &str) = match kind {
        ManualKind::LegacyTestToken => (&["xoxp-"], "a legacy test token is a user token (`xoxp-`)"),
        ManualKind::CustomIntegrationBot => {
            (&["xoxb-"], "a custom-integration bot token starts with `xoxb-`")
        }
        ManualKind::HubotLita => (&["xoxb-"], "a Hubot/Lita bot token starts with `xoxb-`"),
        ManualKind::App => {
            (&["xoxb-", "xoxp-"], "an app's long-lived token is a bot or user token (`xoxb-`/`xoxp-`)")
        }
    };
    if wanted.iter().any(|p| token.starts_with(p)) {
        return None;
    }
    let found = match kind_of(token) {
        Kind::LongLived => "a long-lived token of the other kind (bot instead of user, or the reverse)",
        Kind::Refresh => "a refresh token (`xoxe-`), which belongs to a rotating app (type OAuth)",
        Kind::RotatingAccess => {
            "a rotating access token (`xoxe.`), which expires within 12 hours: its SlackToken should be type OAuth"
        }
        Kind::AppLevel => "an app-level token (`xapp-`)",
        Kind::Other => "not a Slack token",
    };
    Some(format!("this is {found}; {expected}"))
}

/// Slack's token kinds, by prefix ("Token types" in Slack's docs).
enum Kind {
    Refresh,
    LongLived,
    RotatingAccess,
    AppLevel,
    Other,
}

fn kind_of(token: &str) -> Kind {
    let starts = |prefixes: &[&str]| prefixes.iter().any(|p| token.starts_with(p));
    if starts(&["xoxe-"]) {
        Kind::Refresh
    } else if starts(&["xoxb-", "xoxp-"]) {
        Kind::LongLived
    } else if starts(&["xoxe.xoxb-", "xoxe.xoxp-"]) {
        Kind::RotatingAccess
    } else if starts(&["xapp-"]) {
        Kind::AppLevel
    } else {
        Kind::Other
    }
}

/// Writes a rotation's result into the credentials Secret object (not yet to the API server).
/// The previous long-lived token is dropped: after an exchange it must never be used again.
/// The expiry is always written, Slack's 12 hours assumed if its answer gave no lifetime: a
/// token without one would never be scheduled and die unrotated. An assumed one is marked as
/// such (`EXPIRY_ASSUMED_ANNOTATION`) until auth.test tells the real one.
pub fn record_issued(secret: &mut Secret, issued: &Issued, now: Timestamp) {
    let data = secret.data.get_or_insert_with(Default::default);
    put(data, REFRESH_TOKEN, issued.refresh_token.expose_secret());
    put(data, ACCESS_TOKEN, issued.access_token.expose_secret());
    data.remove(LEGACY_TOKEN);
    set_issued_at(secret, now);
    set_expiry(secret, now.checked_add(issued.lifetime()).ok(), issued.expires_in.is_none());
}

/// Records the current access token's expiry; `assumed` marks one Slack did not report.
pub fn set_expiry(secret: &mut Secret, expires_at: Option<Timestamp>, assumed: bool) {
    let data = secret.data.get_or_insert_with(Default::default);
    match expires_at {
        Some(expiry) => put(data, EXPIRES_AT, &crate::clock::format_time(expiry)),
        None => {
            data.remove(EXPIRES_AT);
        }
    }
    let annotations = secret.metadata.annotations.get_or_insert_with(Default::default);
    match assumed && expires_at.is_some() {
        true => annotations.insert(EXPIRY_ASSUMED_ANNOTATION.to_owned(), "true".to_owned()),
        false => annotations.remove(EXPIRY_ASSUMED_ANNOTATION),
    };
}

/// The token that continues a Secret's chain: its refresh token, or the long-lived token an
/// exchange replaces. A pair is saved only over the one it replaces (see `store::save_pair`).
pub fn chain_token(secret: &Secret) -> Option<SecretString> {
    [REFRESH_TOKEN, LEGACY_TOKEN].into_iter().find_map(|key| secret_text(secret, key).ok().flatten())
}

pub fn set_issued_at(secret: &mut Secret, at: Timestamp) {
    secret
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(ISSUED_AT_ANNOTATION.to_owned(), crate::clock::format_time(at));
}

/// The credentials Secret a user creates for an `OAuth` SlackToken: the app's client id and
/// secret and the installation's refresh token (the demo, benches and tests make theirs here).
pub fn oauth_secret(name: &str, client_id: &str, client_secret: &str, refresh_token: &str) -> Secret {
    let data = [(CLIENT_ID, client_id), (CLIENT_SECRET, client_secret), (REFRESH_TOKEN, refresh_token)];
    Secret {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        string_data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        ..Default::default()
    }
}

fn put(data: &mut std::collections::BTreeMap<String, ByteString>, key: &str, value: &str) {
    data.insert(key.to_owned(), ByteString(value.as_bytes().to_vec()));
}

fn text(secret: &Secret, key: &'static str) -> Result<Option<String>, CredentialsError> {
    let Some(bytes) = secret.data.as_ref().and_then(|d| d.get(key)) else {
        return Ok(None);
    };
    // Checked before anything else is done with it (a 1 MiB value is not even decoded).
    if bytes.0.len() > MAX_VALUE_BYTES {
        return Err(CredentialsError::TooLarge { key, bytes: bytes.0.len() });
    }
    let value = std::str::from_utf8(&bytes.0).map_err(|_| CredentialsError::NotUtf8(key))?;
    // `echo token | base64` leaves a newline behind; tokens never contain whitespace.
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

/// A token or client credential: one word, no whitespace or control characters inside (a
/// second token pasted after the first, a line break in the middle).
fn secret_text(secret: &Secret, key: &'static str) -> Result<Option<SecretString>, CredentialsError> {
    let value = text(secret, key)?;
    if value.as_deref().is_some_and(|v| v.chars().any(|c| c.is_whitespace() || c.is_control())) {
        return Err(CredentialsError::NotAToken(key));
    }
    Ok(value.map(SecretString::from))
}

#[cfg(test)]
mod tests;
