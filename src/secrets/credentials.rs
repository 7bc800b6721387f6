//! The credentials Secret: the one place rotation state lives.
//!
//! A refresh token works once, so the newest one must be durable before anything else happens.
//! It is kept in the user's credentials Secret together with the access token it came with and
//! that token's expiry and issue time; the output Secret and the SlackToken status are only
//! derived from it and can always be rebuilt.

use crate::{error::CredentialsError, resource::ISSUED_AT_ANNOTATION, slack::Issued};
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
    pub legacy_token: Option<SecretString>,
    pub pending_token: Option<SecretString>,
}

impl Credentials {
    pub fn from_secret(secret: &Secret) -> Result<Self, CredentialsError> {
        let expires_at = match text(secret, EXPIRES_AT)? {
            Some(t) => Some(t.parse::<Timestamp>().map_err(|_| CredentialsError::BadExpiry)?),
            None => None,
        };
        let issued_at = secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ISSUED_AT_ANNOTATION))
            .and_then(|t| t.parse::<Timestamp>().ok());
        Ok(Self {
            client_id: text(secret, CLIENT_ID)?,
            client_secret: secret_text(secret, CLIENT_SECRET)?,
            refresh_token: secret_text(secret, REFRESH_TOKEN)?,
            access_token: secret_text(secret, ACCESS_TOKEN)?,
            expires_at,
            issued_at,
            legacy_token: secret_text(secret, LEGACY_TOKEN)?,
            pending_token: secret_text(secret, PENDING_TOKEN)?,
        })
    }

    /// Whether there is no usable access token yet, so the first one must come from a rotation.
    /// An access token without `expiresAt` counts as unusable only if a person put it there (we
    /// would not know when it expires). One the operator saved has its issue time recorded: if
    /// Slack gave no expiry for it, rotating again would only get another token without one, and
    /// do so on every write of ours, in a loop.
    pub fn needs_first_token(&self) -> bool {
        self.access_token.is_none() || (self.expires_at.is_none() && self.issued_at.is_none())
    }

    pub fn require_client(&self) -> Result<(&str, &SecretString), CredentialsError> {
        let id = self.client_id.as_deref().ok_or(CredentialsError::Missing(CLIENT_ID))?;
        let secret = self.client_secret.as_ref().ok_or(CredentialsError::Missing(CLIENT_SECRET))?;
        Ok((id, secret))
    }
}

/// Writes a rotation's result into the credentials Secret object (not yet to the API server).
/// The previous long-lived token is dropped: after an exchange it must never be used again.
pub fn record_issued(secret: &mut Secret, issued: &Issued, now: Timestamp) {
    let data = secret.data.get_or_insert_with(Default::default);
    put(data, REFRESH_TOKEN, issued.refresh_token.expose_secret());
    put(data, ACCESS_TOKEN, issued.access_token.expose_secret());
    match issued.expires_in.and_then(|d| now.checked_add(d).ok()) {
        Some(expiry) => put(data, EXPIRES_AT, &crate::clock::format_time(expiry)),
        None => {
            data.remove(EXPIRES_AT);
        }
    }
    data.remove(LEGACY_TOKEN);
    set_issued_at(secret, now);
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
    let value = std::str::from_utf8(&bytes.0).map_err(|_| CredentialsError::NotUtf8(key))?;
    // `echo token | base64` leaves a newline behind; tokens never contain whitespace.
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_owned()))
}

fn secret_text(secret: &Secret, key: &'static str) -> Result<Option<SecretString>, CredentialsError> {
    Ok(text(secret, key)?.map(SecretString::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secret_with(pairs: &[(&str, &str)]) -> Secret {
        let mut s = Secret::default();
        let data = s.data.get_or_insert_with(Default::default);
        for (k, v) in pairs {
            put(data, k, v);
        }
        s
    }

    #[test]
    fn trailing_newlines_in_values_are_ignored() {
        let creds = Credentials::from_secret(&secret_with(&[(CLIENT_ID, "123.456\n")])).unwrap();
        assert_eq!(creds.client_id.as_deref(), Some("123.456"));
    }

    #[test]
    fn a_saved_token_without_expiry_is_not_fetched_again() {
        let issued = Issued {
            access_token: SecretString::from("xoxe.xoxb-1-new".to_owned()),
            refresh_token: SecretString::from("xoxe-1-new".to_owned()),
            expires_in: None,
            identity: Default::default(),
        };
        let mut secret = secret_with(&[(REFRESH_TOKEN, "old")]);
        assert!(Credentials::from_secret(&secret).unwrap().needs_first_token(), "no access token");
        let by_hand = secret_with(&[(ACCESS_TOKEN, "xoxe.xoxb-1-pasted")]);
        assert!(Credentials::from_secret(&by_hand).unwrap().needs_first_token(), "expiry unknown");
        record_issued(&mut secret, &issued, "2026-01-01T00:00:00Z".parse().unwrap());
        assert!(!Credentials::from_secret(&secret).unwrap().needs_first_token(), "saved by us");
    }

    #[test]
    fn malformed_expiry_is_reported_not_ignored() {
        let err = Credentials::from_secret(&secret_with(&[(EXPIRES_AT, "tomorrow")])).unwrap_err();
        assert_eq!(err, CredentialsError::BadExpiry);
    }

    #[test]
    fn recording_a_rotation_replaces_tokens_and_drops_the_legacy_token() {
        let mut secret = secret_with(&[(REFRESH_TOKEN, "old"), (LEGACY_TOKEN, "xoxb-old"), (CLIENT_ID, "c")]);
        let issued = Issued {
            access_token: SecretString::from("xoxe.xoxb-1-new".to_owned()),
            refresh_token: SecretString::from("xoxe-1-new".to_owned()),
            expires_in: Some(Duration::from_secs(43200)),
            identity: Default::default(),
        };
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        record_issued(&mut secret, &issued, now);
        let creds = Credentials::from_secret(&secret).unwrap();
        assert_eq!(creds.refresh_token.unwrap().expose_secret(), "xoxe-1-new");
        assert_eq!(creds.access_token.unwrap().expose_secret(), "xoxe.xoxb-1-new");
        assert_eq!(creds.expires_at, Some("2026-01-01T12:00:00Z".parse().unwrap()));
        assert_eq!(creds.issued_at, Some(now));
        assert!(creds.legacy_token.is_none());
        assert_eq!(creds.client_id.as_deref(), Some("c"));
    }
}
