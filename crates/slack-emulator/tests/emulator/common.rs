//! A tiny Slack client for the tests: form posts, Basic and Bearer auth, and the bits of the reply we check.

use reqwest::StatusCode;
use serde_json::Value;
use slack_emulator::{App, Config, SlackEmulator};

pub struct Slack {
    pub emu: SlackEmulator,
    pub http: reqwest::Client,
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<String>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn ok(&self) -> Value {
        let v = self.json();
        assert_eq!(self.status, StatusCode::OK, "{v}");
        assert_eq!(v["ok"], true, "{v}");
        v
    }

    /// The `error` of an `ok:false` answer.
    pub fn error(&self) -> String {
        let v = self.json();
        assert_eq!(v["ok"], false, "{v}");
        v["error"].as_str().unwrap_or_default().to_string()
    }
}

impl Slack {
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> Self {
        let emu = SlackEmulator::start_with(config)
            .await
            .expect("emulator starts");
        // No pooled connections: their idle timers would let a paused clock jump between requests.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client");
        Slack { emu, http }
    }

    pub fn url(&self, method: &str) -> String {
        format!("{}{method}", self.emu.base_url())
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request answered");
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let text = resp.text().await.expect("body");
        Reply {
            status,
            retry_after,
            text,
        }
    }

    /// A form post with everything in the form.
    pub async fn call(&self, method: &str, form: &[(&str, &str)]) -> Reply {
        self.send(self.http.post(self.url(method)).form(form)).await
    }

    pub async fn call_bearer(&self, method: &str, token: &str, form: &[(&str, &str)]) -> Reply {
        self.send(
            self.http
                .post(self.url(method))
                .bearer_auth(token)
                .form(form),
        )
        .await
    }

    /// `oauth.v2.access` refresh with the client credentials in the form.
    pub async fn refresh(&self, app: &App, refresh_token: &str) -> Reply {
        self.call(
            "oauth.v2.access",
            &[
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    pub async fn exchange(&self, app: &App, token: &str) -> Reply {
        self.call(
            "oauth.v2.exchange",
            &[
                ("client_id", &app.client_id),
                ("client_secret", &app.client_secret),
                ("token", token),
            ],
        )
        .await
    }

    pub async fn auth_test(&self, token: &str) -> Reply {
        self.call("auth.test", &[("token", token)]).await
    }
}

pub fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}
