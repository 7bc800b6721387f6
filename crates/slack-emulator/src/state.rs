//! Apps, installations and every token the emulator has issued, with Slack's rotation rules.
//!
//! All operations take `now` as an argument instead of reading a clock, so the rules are plain functions of
//! the stored state and time; the HTTP layer supplies `now` from the configured clock.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rand::distr::{Alphanumeric, SampleString};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::SlackError;

/// Which side of an installation a token acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A bot token (`xoxb-`, rotating `xoxe.xoxb-1-`).
    Bot,
    /// A user token (`xoxp-`, rotating `xoxe.xoxp-1-`).
    User,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Bot => "bot",
            TokenKind::User => "user",
        }
    }
}

/// A Slack app as its developer sees it on the app settings page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    pub app_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub token_rotation: bool,
}

/// What an OAuth install hands the app: one access token, plus a refresh token when rotation is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    pub id: String,
    pub team_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

/// An app configuration token (`xoxe.xoxp-1-`) with its refresh token; `exp` is Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigToken {
    pub token: String,
    pub refresh_token: String,
    pub exp: i64,
}

/// Who a token belongs to; refresh chains are tracked per owner.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Installation(String),
    /// App configuration tokens have their own chain, keyed by an emulator-made id (`CFG…`).
    Config(String),
    /// Legacy test tokens and custom-integration bot tokens: no app, no chain.
    Legacy,
}

#[derive(Debug)]
struct AccessRec {
    owner: Owner,
    kind: TokenKind,
    team_id: String,
    user_id: String,
    bot_id: Option<String>,
    /// Issued by a refresh/exchange/rotate (expiring) rather than long-lived.
    rotating: bool,
    expires_at: Option<Timestamp>,
    revoked: bool,
}

#[derive(Debug)]
struct RefreshRec {
    owner: Owner,
    spent_at: Option<Timestamp>,
    /// The installation was removed (its long-lived token was revoked).
    revoked: bool,
}

#[derive(Debug)]
struct InstallRec {
    app_id: String,
    team_id: String,
    kind: TokenKind,
    /// The installing user; for user tokens also the token's user.
    user_id: String,
    bot_user_id: Option<String>,
    bot_id: Option<String>,
    /// The long-lived `xoxb-`/`xoxp-` token of an install made while rotation was off.
    long_lived: Option<String>,
    exchanged: bool,
    /// Rotating access tokens in issue order; used to keep at most two active.
    rotating_access: VecDeque<String>,
    refreshes: usize,
}

#[derive(Debug)]
struct ConfigRec {
    team_id: String,
    user_id: String,
}

/// How a token looks right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Active,
    Revoked,
    Expired,
}

/// Everything the emulated Slack knows.
pub(crate) struct Store {
    ttl: Duration,
    grace: Duration,
    apps: HashMap<String, App>,
    installations: HashMap<String, InstallRec>,
    configs: HashMap<String, ConfigRec>,
    access: HashMap<String, AccessRec>,
    refresh: HashMap<String, RefreshRec>,
    refreshes_by_owner: HashMap<String, usize>,
    broken: Vec<String>,
    seq: u64,
}

fn random_alnum(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

fn random_digits(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
}

fn team_name(team_id: &str) -> String {
    format!("Team {team_id}")
}

fn add(now: Timestamp, d: Duration) -> Timestamp {
    // Durations beyond jiff's range are configuration mistakes; saturate instead of panicking.
    SignedDuration::try_from(d).ok().and_then(|d| now.checked_add(d).ok()).unwrap_or(Timestamp::MAX)
}

impl Store {
    pub(crate) fn new(ttl: Duration, grace: Duration) -> Self {
        Store {
            ttl,
            grace,
            apps: HashMap::new(),
            installations: HashMap::new(),
            configs: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            refreshes_by_owner: HashMap::new(),
            broken: Vec::new(),
            seq: 0,
        }
    }

    /// Tokens issued from now on live `ttl`; those issued before keep their expiry.
    pub(crate) fn set_ttl(&mut self, ttl: Duration) {
        self.ttl = ttl;
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}{:08}", self.seq)
    }

    // ---------------------------------------------------------------- seeding

    pub(crate) fn create_app(&mut self, token_rotation: bool) -> App {
        let app = App {
            app_id: self.next_id("A"),
            client_id: format!("{}.{}", random_digits(12), random_digits(13)),
            client_secret: random_alnum(32).to_lowercase(),
            token_rotation,
        };
        self.apps.insert(app.app_id.clone(), app.clone());
        app
    }

    /// Turns token rotation on, as the app settings page does; it can never be turned off again.
    pub(crate) fn enable_token_rotation(&mut self, app_id: &str) -> Option<App> {
        let app = self.apps.get_mut(app_id)?;
        app.token_rotation = true;
        Some(app.clone())
    }

    pub(crate) fn app_by_client_id(&self, client_id: &str) -> Option<App> {
        self.apps.values().find(|a| a.client_id == client_id).cloned()
    }

    pub(crate) fn app(&self, app_id: &str) -> Option<App> {
        self.apps.get(app_id).cloned()
    }

    /// Registers an app made elsewhere (e.g. a hand-written `App` in a test) unless it is already known.
    pub(crate) fn ensure_app(&mut self, app: &App) {
        self.apps.entry(app.app_id.clone()).or_insert_with(|| app.clone());
    }

    /// Installs an app; the stored app's rotation setting decides the kind of token.
    pub(crate) fn install(
        &mut self,
        app: &App,
        team_id: &str,
        kind: TokenKind,
        now: Timestamp,
    ) -> Installation {
        self.ensure_app(app);
        let app_id = app.app_id.as_str();
        let rotation = self.apps.get(app_id).is_some_and(|a| a.token_rotation);
        let id = self.next_id("I");
        let user_id = self.next_id("U");
        let (bot_user_id, bot_id) = match kind {
            TokenKind::Bot => (Some(self.next_id("U")), Some(self.next_id("B"))),
            TokenKind::User => (None, None),
        };
        self.installations.insert(
            id.clone(),
            InstallRec {
                app_id: app_id.to_string(),
                team_id: team_id.to_string(),
                kind,
                user_id,
                bot_user_id,
                bot_id,
                long_lived: None,
                exchanged: false,
                rotating_access: VecDeque::new(),
                refreshes: 0,
            },
        );
        if rotation {
            let (access, refresh) = self.issue_rotating_pair(&id, now);
            Installation {
                id,
                team_id: team_id.to_string(),
                access_token: access,
                refresh_token: Some(refresh),
                expires_in: Some(self.ttl.as_secs()),
            }
        } else {
            let token = Self::long_lived_token(kind);
            let inst = &self.installations[&id];
            let rec = AccessRec {
                owner: Owner::Installation(id.clone()),
                kind,
                team_id: team_id.to_string(),
                user_id: inst.token_user_id(),
                bot_id: inst.bot_id.clone(),
                rotating: false,
                expires_at: None,
                revoked: false,
            };
            self.access.insert(token.clone(), rec);
            if let Some(inst) = self.installations.get_mut(&id) {
                inst.long_lived = Some(token.clone());
            }
            Installation {
                id,
                team_id: team_id.to_string(),
                access_token: token,
                refresh_token: None,
                expires_in: None,
            }
        }
    }

    pub(crate) fn create_config_token(
        &mut self,
        team_id: &str,
        user_id: &str,
        now: Timestamp,
    ) -> ConfigToken {
        let id = self.next_id("CFG");
        self.configs
            .insert(id.clone(), ConfigRec { team_id: team_id.to_string(), user_id: user_id.to_string() });
        let (token, refresh_token, exp) = self.issue_config_pair(&id, now);
        ConfigToken { token, refresh_token, exp }
    }

    pub(crate) fn create_legacy_token(&mut self, team_id: &str, user_id: &str, kind: TokenKind) -> String {
        let token = Self::long_lived_token(kind);
        let bot_id = match kind {
            TokenKind::Bot => Some(self.next_id("B")),
            TokenKind::User => None,
        };
        self.access.insert(
            token.clone(),
            AccessRec {
                owner: Owner::Legacy,
                kind,
                team_id: team_id.to_string(),
                user_id: user_id.to_string(),
                bot_id,
                rotating: false,
                expires_at: None,
                revoked: false,
            },
        );
        token
    }

    fn long_lived_token(kind: TokenKind) -> String {
        let prefix = match kind {
            TokenKind::Bot => "xoxb",
            TokenKind::User => "xoxp",
        };
        format!("{prefix}-{}-{}-{}", random_digits(12), random_digits(13), random_alnum(24))
    }

    // ---------------------------------------------------------------- issuing

    /// Issues a new expiring access token and refresh token for an installation and enforces the
    /// two-active-access-tokens rule.
    fn issue_rotating_pair(&mut self, inst_id: &str, now: Timestamp) -> (String, String) {
        let Some(inst) = self.installations.get(inst_id) else {
            // Callers always pass a stored id; an empty pair can never be presented successfully.
            return (String::new(), String::new());
        };
        let kind = inst.kind;
        let access = format!(
            "xoxe.{}-1-{}",
            match kind {
                TokenKind::Bot => "xoxb",
                TokenKind::User => "xoxp",
            },
            random_alnum(48)
        );
        let rec = AccessRec {
            owner: Owner::Installation(inst_id.to_string()),
            kind,
            team_id: inst.team_id.clone(),
            user_id: inst.token_user_id(),
            bot_id: inst.bot_id.clone(),
            rotating: true,
            expires_at: Some(add(now, self.ttl)),
            revoked: false,
        };
        self.access.insert(access.clone(), rec);
        let refresh = self.new_refresh(Owner::Installation(inst_id.to_string()));

        // At most two active access tokens: drop dead ones from the queue, then revoke the oldest extras.
        let mut queue = self
            .installations
            .get_mut(inst_id)
            .map(|i| std::mem::take(&mut i.rotating_access))
            .unwrap_or_default();
        queue.push_back(access.clone());
        queue.retain(|t| self.liveness(t, now) == Some(Liveness::Active));
        while queue.len() > 2 {
            if let Some(oldest) = queue.pop_front() {
                if let Some(rec) = self.access.get_mut(&oldest) {
                    rec.revoked = true;
                }
                tracing::debug!(installation = inst_id, "revoked oldest access token (two-active rule)");
            }
        }
        if let Some(inst) = self.installations.get_mut(inst_id) {
            inst.rotating_access = queue;
        }
        (access, refresh)
    }

    fn issue_config_pair(&mut self, config_id: &str, now: Timestamp) -> (String, String, i64) {
        let (team_id, user_id) = match self.configs.get(config_id) {
            Some(c) => (c.team_id.clone(), c.user_id.clone()),
            None => (String::new(), String::new()),
        };
        let token = format!("xoxe.xoxp-1-{}", random_alnum(48));
        let expires_at = add(now, self.ttl);
        self.access.insert(
            token.clone(),
            AccessRec {
                owner: Owner::Config(config_id.to_string()),
                kind: TokenKind::User,
                team_id,
                user_id,
                bot_id: None,
                rotating: true,
                expires_at: Some(expires_at),
                revoked: false,
            },
        );
        let refresh = self.new_refresh(Owner::Config(config_id.to_string()));
        (token, refresh, expires_at.as_second())
    }

    fn new_refresh(&mut self, owner: Owner) -> String {
        let token = format!("xoxe-1-{}", random_alnum(64));
        self.refresh.insert(token.clone(), RefreshRec { owner, spent_at: None, revoked: false });
        token
    }

    // ---------------------------------------------------------------- token checks

    fn liveness(&self, token: &str, now: Timestamp) -> Option<Liveness> {
        let rec = self.access.get(token)?;
        Some(if rec.revoked {
            Liveness::Revoked
        } else if rec.expires_at.is_some_and(|at| now >= at) {
            Liveness::Expired
        } else {
            Liveness::Active
        })
    }

    /// The access token's record if it may be used now, else the error Slack answers with.
    fn authorize(&self, token: Option<&str>, now: Timestamp) -> Result<&AccessRec, SlackError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(SlackError::NotAuthed)?;
        match self.liveness(token, now) {
            None => Err(SlackError::InvalidAuth),
            Some(Liveness::Revoked) => Err(SlackError::TokenRevoked),
            Some(Liveness::Expired) => Err(SlackError::TokenExpired),
            Some(Liveness::Active) => self.access.get(token).ok_or(SlackError::InvalidAuth),
        }
    }

    /// Checks a presented refresh token and spends it. A spent token still works within the grace
    /// period; after that it is rejected and its chain is recorded as broken.
    fn spend_refresh(&mut self, token: Option<&str>, now: Timestamp) -> Result<Owner, SlackError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(SlackError::InvalidRefreshToken)?;
        let grace = self.grace;
        let rec = self.refresh.get_mut(token).ok_or(SlackError::InvalidRefreshToken)?;
        if rec.revoked {
            return Err(SlackError::InvalidRefreshToken);
        }
        if let Some(spent) = rec.spent_at {
            if now >= add(spent, grace) {
                let owner = match &rec.owner {
                    Owner::Installation(id) | Owner::Config(id) => id.clone(),
                    Owner::Legacy => String::new(),
                };
                if !owner.is_empty() && !self.broken.contains(&owner) {
                    self.broken.push(owner.clone());
                }
                tracing::warn!(owner = %owner, "spent refresh token presented again: refresh chain broken");
                return Err(SlackError::InvalidRefreshToken);
            }
        } else {
            rec.spent_at = Some(now);
        }
        Ok(rec.owner.clone())
    }

    fn check_client(&self, client_id: Option<&str>, client_secret: Option<&str>) -> Result<App, SlackError> {
        let app = client_id.and_then(|id| self.app_by_client_id(id)).ok_or(SlackError::InvalidClientId)?;
        if client_secret != Some(app.client_secret.as_str()) {
            return Err(SlackError::BadClientSecret);
        }
        Ok(app)
    }

    // ---------------------------------------------------------------- methods

    /// `oauth.v2.access`.
    pub(crate) fn oauth_v2_access(
        &mut self,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        grant_type: Option<&str>,
        refresh_token: Option<&str>,
        now: Timestamp,
    ) -> Result<Value, SlackError> {
        let app = self.check_client(client_id, client_secret)?;
        match grant_type {
            Some("refresh_token") => {}
            None | Some("") | Some("authorization_code") => return Err(SlackError::InvalidCode),
            Some(_) => return Err(SlackError::InvalidGrantType),
        }
        // Look before spending: a refresh token of another app must not be spent by this one.
        let owner = refresh_token
            .and_then(|t| self.refresh.get(t))
            .map(|r| r.owner.clone())
            .ok_or(SlackError::InvalidRefreshToken)?;
        let Owner::Installation(inst_id) = owner else {
            return Err(SlackError::InvalidRefreshToken);
        };
        if self.installations.get(&inst_id).map(|i| i.app_id.as_str()) != Some(app.app_id.as_str()) {
            return Err(SlackError::InvalidRefreshToken);
        }
        self.spend_refresh(refresh_token, now)?;
        let (access, refresh) = self.issue_rotating_pair(&inst_id, now);
        if let Some(inst) = self.installations.get_mut(&inst_id) {
            inst.refreshes += 1;
            // Slack expires the original long-lived token itself on the first refresh of an exchanged chain.
            if inst.exchanged {
                if let Some(long) = inst.long_lived.clone() {
                    if let Some(rec) = self.access.get_mut(&long) {
                        if rec.expires_at.is_none() {
                            rec.expires_at = Some(now);
                        }
                    }
                }
            }
        }
        tracing::debug!(method = "oauth.v2.access", installation = %inst_id, "refreshed");
        Ok(self.token_response(&app, &inst_id, access, refresh))
    }

    /// `oauth.v2.exchange`.
    pub(crate) fn oauth_v2_exchange(
        &mut self,
        client_id: Option<&str>,
        client_secret: Option<&str>,
        token: Option<&str>,
        now: Timestamp,
    ) -> Result<Value, SlackError> {
        let app = self.check_client(client_id, client_secret)?;
        let rec = token.and_then(|t| self.access.get(t)).ok_or(SlackError::InvalidToken)?;
        let inst_id = match &rec.owner {
            Owner::Installation(id) if !rec.rotating => id.clone(),
            _ => return Err(SlackError::InvalidToken),
        };
        let revoked = rec.revoked;
        let inst = self.installations.get(&inst_id).ok_or(SlackError::InvalidToken)?;
        if inst.app_id != app.app_id {
            return Err(SlackError::InvalidToken);
        }
        if revoked {
            return Err(SlackError::AuthorizationNotFound);
        }
        if !app.token_rotation {
            return Err(SlackError::TokenRotationNotEnabled);
        }
        if inst.exchanged {
            return Err(SlackError::TokenAlreadyExchanged);
        }
        if let Some(inst) = self.installations.get_mut(&inst_id) {
            inst.exchanged = true;
        }
        let (access, refresh) = self.issue_rotating_pair(&inst_id, now);
        tracing::debug!(method = "oauth.v2.exchange", installation = %inst_id, "exchanged long-lived token");
        Ok(self.token_response(&app, &inst_id, access, refresh))
    }

    /// The body shared by a refresh and an exchange.
    fn token_response(&self, app: &App, inst_id: &str, access: String, refresh: String) -> Value {
        let Some(inst) = self.installations.get(inst_id) else {
            return json!({"ok": false, "error": "internal_error"});
        };
        let mut body = json!({
            "ok": true,
            "app_id": app.app_id,
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.ttl.as_secs(),
            "token_type": inst.kind.as_str(),
            "scope": inst.scope(),
            "team": {"id": inst.team_id, "name": team_name(&inst.team_id)},
            "enterprise": null,
            "is_enterprise_install": false,
        });
        match inst.kind {
            TokenKind::Bot => {
                body["bot_user_id"] = json!(inst.bot_user_id);
                body["authed_user"] = json!({"id": inst.user_id});
            }
            TokenKind::User => {
                body["user_id"] = json!(inst.user_id);
                body["authed_user"] = json!({"id": inst.user_id});
            }
        }
        body
    }

    /// `tooling.tokens.rotate`.
    pub(crate) fn tooling_tokens_rotate(
        &mut self,
        refresh_token: Option<&str>,
        now: Timestamp,
    ) -> Result<Value, SlackError> {
        let owner = refresh_token
            .and_then(|t| self.refresh.get(t))
            .map(|r| r.owner.clone())
            .ok_or(SlackError::InvalidRefreshToken)?;
        let Owner::Config(config_id) = owner else {
            return Err(SlackError::InvalidRefreshToken);
        };
        self.spend_refresh(refresh_token, now)?;
        let (token, refresh, exp) = self.issue_config_pair(&config_id, now);
        *self.refreshes_by_owner.entry(config_id.clone()).or_default() += 1;
        let cfg = self.configs.get(&config_id);
        tracing::debug!(method = "tooling.tokens.rotate", config = %config_id, "rotated");
        Ok(json!({
            "ok": true,
            "token": token,
            "refresh_token": refresh,
            "team_id": cfg.map(|c| c.team_id.as_str()),
            "user_id": cfg.map(|c| c.user_id.as_str()),
            "iat": now.as_second(),
            "exp": exp,
        }))
    }

    /// `auth.test`.
    pub(crate) fn auth_test(&self, token: Option<&str>, now: Timestamp) -> Result<Value, SlackError> {
        let rec = self.authorize(token, now)?;
        let inst = match &rec.owner {
            Owner::Installation(id) => self.installations.get(id),
            _ => None,
        };
        let user = match rec.kind {
            TokenKind::Bot => "emulated-bot".to_string(),
            TokenKind::User => format!("user-{}", rec.user_id.to_lowercase()),
        };
        let mut body = json!({
            "ok": true,
            "url": format!("https://{}.slack.com/", rec.team_id.to_lowercase()),
            "team": team_name(&rec.team_id),
            "user": user,
            "team_id": rec.team_id,
            "user_id": rec.user_id,
            "enterprise_id": null,
            "is_enterprise_install": false,
        });
        if let Some(bot_id) = &rec.bot_id {
            body["bot_id"] = json!(bot_id);
        }
        if let Some(inst) = inst {
            body["app_id"] = json!(inst.app_id);
        }
        if rec.rotating {
            if let Some(at) = rec.expires_at {
                body["expires_in"] = json!(now.duration_until(at).as_secs().max(0));
            }
        }
        Ok(body)
    }

    /// `auth.revoke`. Revoking a rotating token revokes just that token. Revoking the long-lived token of an
    /// app installation removes the installation (every token and refresh token of it stops working), which
    /// is why the operator must never revoke the original token after an exchange.
    pub(crate) fn auth_revoke(
        &mut self,
        token: Option<&str>,
        test: bool,
        now: Timestamp,
    ) -> Result<Value, SlackError> {
        let rec = self.authorize(token, now)?;
        if test {
            return Ok(json!({"ok": true, "revoked": false}));
        }
        let uninstall = match (&rec.owner, rec.rotating) {
            (Owner::Installation(id), false) => Some(id.clone()),
            _ => None,
        };
        if let Some(rec) = token.and_then(|t| self.access.get_mut(t)) {
            rec.revoked = true;
        }
        if let Some(inst_id) = uninstall {
            let owner = Owner::Installation(inst_id.clone());
            for rec in self.access.values_mut().filter(|r| r.owner == owner) {
                rec.revoked = true;
            }
            for rec in self.refresh.values_mut().filter(|r| r.owner == owner) {
                rec.revoked = true;
            }
            tracing::info!(method = "auth.revoke", installation = %inst_id, "installation removed");
        }
        Ok(json!({"ok": true, "revoked": true}))
    }

    // ---------------------------------------------------------------- introspection

    pub(crate) fn refreshes(&self, owner_id: &str) -> usize {
        self.installations
            .get(owner_id)
            .map(|i| i.refreshes)
            .or_else(|| self.refreshes_by_owner.get(owner_id).copied())
            .unwrap_or(0)
    }

    pub(crate) fn all_refreshes(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> =
            self.installations.iter().map(|(id, i)| (id.clone(), i.refreshes)).collect();
        out.extend(self.refreshes_by_owner.iter().map(|(k, v)| (k.clone(), *v)));
        out
    }

    pub(crate) fn broken_chains(&self) -> Vec<String> {
        self.broken.clone()
    }

    /// An access token that works now, or a refresh token that may be presented now.
    pub(crate) fn token_is_valid(&self, token: &str, now: Timestamp) -> bool {
        if let Some(l) = self.liveness(token, now) {
            return l == Liveness::Active;
        }
        self.refresh
            .get(token)
            .is_some_and(|r| !r.revoked && r.spent_at.is_none_or(|s| now < add(s, self.grace)))
    }

    pub(crate) fn is_revoked(&self, token: &str) -> bool {
        self.access
            .get(token)
            .map(|r| r.revoked)
            .or_else(|| self.refresh.get(token).map(|r| r.revoked))
            .unwrap_or(false)
    }

    pub(crate) fn installation_of(&self, token: &str) -> Option<String> {
        let owner =
            self.access.get(token).map(|r| &r.owner).or_else(|| self.refresh.get(token).map(|r| &r.owner))?;
        match owner {
            Owner::Installation(id) | Owner::Config(id) => Some(id.clone()),
            Owner::Legacy => None,
        }
    }
}

impl InstallRec {
    /// The user a token of this installation acts as: the bot user for bot tokens.
    fn token_user_id(&self) -> String {
        match self.kind {
            TokenKind::Bot => self.bot_user_id.clone().unwrap_or_else(|| self.user_id.clone()),
            TokenKind::User => self.user_id.clone(),
        }
    }

    fn scope(&self) -> &'static str {
        match self.kind {
            TokenKind::Bot => "chat:write,channels:read",
            TokenKind::User => "chat:write,users:read",
        }
    }
}
