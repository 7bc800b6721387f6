//! Slack's `Retry-After`, honoured per app and workspace.
//!
//! Slack rate-limits a method per app per workspace. A 429 for one installation says nothing of
//! the others, so only the SlackTokens of that same app in that same workspace wait out its
//! `Retry-After`; every other keeps rotating on time. Entries go when they run out.

use crate::expiring::Expiring;
use std::time::Duration;
use tokio::time::Instant;

/// An app (its client id; the app configuration token's own user for `tooling.tokens.rotate`)
/// in a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Installation {
    pub app: String,
    pub team: String,
}

impl Installation {
    /// Known only once both are: a first token's workspace is not known before Slack answers,
    /// and a limit must never spill over onto another workspace's installations.
    pub fn new(app: Option<&str>, team: Option<&str>) -> Option<Self> {
        Some(Self { app: app?.to_owned(), team: team?.to_owned() })
    }
}

/// Until when each installation must wait. Entries go when they run out.
#[derive(Default)]
pub struct RateLimits(Expiring<Installation, ()>);

impl RateLimits {
    /// Slack said to wait `retry_after` before calling again for `installation`.
    pub fn limited(&self, installation: &Installation, retry_after: Duration) {
        self.0.insert(installation.clone(), Instant::now() + retry_after, (), true);
    }

    /// How long `installation` must still wait, if at all.
    pub fn wait(&self, installation: &Installation) -> Option<Duration> {
        self.0.get(installation).map(|(left, ())| left)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_limit_holds_only_its_own_app_in_its_own_workspace() {
        let limits = RateLimits::default();
        let at = |app: &str, team: &str| Installation::new(Some(app), Some(team)).unwrap();
        limits.limited(&at("A", "T1"), Duration::from_secs(30));
        // (installation, still waiting)
        let table =
            [(at("A", "T1"), Some(Duration::from_secs(30))), (at("A", "T2"), None), (at("B", "T1"), None)];
        for (installation, wait) in table {
            assert_eq!(limits.wait(&installation), wait, "{installation:?}");
        }
        assert_eq!(Installation::new(Some("A"), None), None, "no workspace known: nothing shared");
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(limits.wait(&at("A", "T1")), None);
        // Run-out limits are swept as the map grows (see `expiring`): a thousand of them later,
        // a few dozen at most are kept.
        for i in 0..1_000 {
            limits.limited(&at(&format!("app-{i}"), "T1"), Duration::from_secs(5));
            tokio::time::advance(Duration::from_secs(6)).await;
        }
        assert!(limits.len() < 100, "{} limits kept, none live", limits.len());
    }
}
