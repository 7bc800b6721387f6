//! When to rotate: pure functions of the token's issue time, its expiry and the spec.

use jiff::Timestamp;
use std::time::Duration;

/// Slack's SDKs rotate 2h before expiry; we do the same unless the token lives shorter.
const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(2 * 3600);
/// Slack's access tokens live 12h; assumed when the issue time is unknown (adopted tokens).
const SLACK_TOKEN_LIFETIME: Duration = crate::slack::ROTATING_TOKEN_LIFETIME;
/// Below this, consumers may not pick up a token before Slack revokes the one before last.
pub const SHORT_ROTATION_PERIOD: Duration = Duration::from_secs(3600);
/// While a token's expiry is assumed, how often auth.test is asked for the real one (and whether
/// the token still works): a token that dies sooner than assumed is found dead within this.
pub const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The default `renewBefore`: min(2h, lifetime / 3).
pub fn default_renew_before(lifetime: Option<Duration>) -> Duration {
    DEFAULT_RENEW_BEFORE.min(lifetime.unwrap_or(SLACK_TOKEN_LIFETIME) / 3)
}

/// The current token's facts that scheduling depends on.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenTimes {
    pub issued_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    /// `expires_at` is Slack's 12 hours assumed, not what Slack reported.
    pub expiry_assumed: bool,
}

impl TokenTimes {
    pub fn lifetime(&self) -> Option<Duration> {
        let (issued, expires) = (self.issued_at?, self.expires_at?);
        Duration::try_from(expires.duration_since(issued)).ok()
    }
}

/// The `renewBefore` actually used. A value as long as the token's whole lifetime would make
/// every new token due the moment it is issued: the operator would rotate in a loop, and since
/// Slack keeps only two access tokens per installation, every consumer would lose its token at
/// once. Like cert-manager with a `renewBefore` over the certificate's duration, fall back to the
/// default then (and say so: see [`renew_before_too_long`]).
pub fn effective_renew_before(renew_before: Option<Duration>, lifetime: Option<Duration>) -> Duration {
    match renew_before {
        Some(before) if !renew_before_too_long(Some(before), lifetime) => before,
        _ => default_renew_before(lifetime),
    }
}

/// Whether `renewBefore` is at least the token's known lifetime.
pub fn renew_before_too_long(renew_before: Option<Duration>, lifetime: Option<Duration>) -> bool {
    renew_before.zip(lifetime).is_some_and(|(before, life)| before >= life)
}

/// next rotation = min(issued + rotationPeriod, expiry − renewBefore); `None` when neither applies
/// (a long-lived token with no period).
pub fn next_rotation(
    times: TokenTimes,
    rotation_period: Option<Duration>,
    renew_before: Option<Duration>,
) -> Option<Timestamp> {
    let by_period =
        times.issued_at.zip(rotation_period).and_then(|(issued, period)| issued.checked_add(period).ok());
    let by_expiry = times.expires_at.and_then(|expiry| {
        let mut before = effective_renew_before(renew_before, times.lifetime());
        if times.expiry_assumed {
            // A guessed lifetime may be too long: spend at most half of it.
            before = before.max(times.lifetime().unwrap_or(SLACK_TOKEN_LIFETIME) / 2);
        }
        expiry.checked_sub(before).ok()
    });
    match (by_period, by_expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// When to ask auth.test for the expiry of a token whose expiry is assumed: at once if it was
/// not asked since the token was issued, else [`EXPIRY_CHECK_INTERVAL`] after the last time.
/// `None` when the expiry is known.
pub fn next_expiry_check(times: TokenTimes, last_check: Option<Timestamp>) -> Option<Timestamp> {
    if !times.expiry_assumed {
        return None;
    }
    let since_issue = |checked: &Timestamp| times.issued_at.is_none_or(|issued| *checked >= issued);
    match last_check.filter(since_issue) {
        Some(checked) => Some(checked.checked_add(EXPIRY_CHECK_INTERVAL).unwrap_or(Timestamp::MAX)),
        None => Some(times.issued_at.unwrap_or(Timestamp::MIN)),
    }
}

/// How long until `at`, zero if it has passed.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }
    const H: u64 = 3600;

    fn slack_token() -> TokenTimes {
        TokenTimes {
            issued_at: Some(t("2026-01-01T00:00:00Z")),
            expires_at: Some(t("2026-01-01T12:00:00Z")),
            expiry_assumed: false,
        }
    }

    #[test]
    fn twelve_hour_token_rotates_two_hours_before_expiry() {
        assert_eq!(next_rotation(slack_token(), None, None), Some(t("2026-01-01T10:00:00Z")));
    }

    #[test]
    fn short_lived_token_rotates_a_third_of_its_life_before_expiry() {
        let times = TokenTimes {
            issued_at: Some(t("2026-01-01T00:00:00Z")),
            expires_at: Some(t("2026-01-01T00:01:00Z")),
            ..Default::default()
        };
        assert_eq!(next_rotation(times, None, None), Some(t("2026-01-01T00:00:40Z")));
    }

    #[test]
    fn rotation_period_wins_when_sooner() {
        let next = next_rotation(slack_token(), Some(Duration::from_secs(6 * H)), None);
        assert_eq!(next, Some(t("2026-01-01T06:00:00Z")));
    }

    #[test]
    fn renew_before_overrides_the_default() {
        let next = next_rotation(slack_token(), None, Some(Duration::from_secs(4 * H)));
        assert_eq!(next, Some(t("2026-01-01T08:00:00Z")));
    }

    #[test]
    fn renew_before_as_long_as_the_lifetime_falls_back_to_the_default() {
        for before in [12 * H, 24 * H] {
            let next = next_rotation(slack_token(), None, Some(Duration::from_secs(before)));
            assert_eq!(next, Some(t("2026-01-01T10:00:00Z")), "renewBefore {before}s");
        }
        let just_under = next_rotation(slack_token(), None, Some(Duration::from_secs(12 * H - 60)));
        assert_eq!(just_under, Some(t("2026-01-01T00:01:00Z")), "a shorter one is taken as given");
    }

    #[test]
    fn long_lived_token_without_period_is_never_due() {
        let times = TokenTimes { issued_at: Some(t("2026-01-01T00:00:00Z")), ..Default::default() };
        assert_eq!(next_rotation(times, None, None), None);
    }

    #[test]
    fn an_assumed_expiry_is_rotated_at_half_the_assumed_lifetime() {
        let assumed = TokenTimes { expiry_assumed: true, ..slack_token() };
        // (rotationPeriod, renewBefore, next rotation)
        let table = [
            (None, None, "2026-01-01T06:00:00Z"),
            (None, Some(8 * H), "2026-01-01T04:00:00Z"),
            (Some(3 * H), None, "2026-01-01T03:00:00Z"),
            (Some(9 * H), None, "2026-01-01T06:00:00Z"),
        ];
        for (period, before, next) in table {
            let secs = |h: Option<u64>| h.map(Duration::from_secs);
            let got = next_rotation(assumed, secs(period), secs(before));
            assert_eq!(got, Some(t(next)), "period {period:?} renewBefore {before:?}");
        }
        assert_eq!(next_rotation(slack_token(), None, None), Some(t("2026-01-01T10:00:00Z")), "known: 2h");
    }

    #[test]
    fn an_assumed_expiry_is_checked_at_once_then_every_few_minutes() {
        let assumed = TokenTimes { expiry_assumed: true, ..slack_token() };
        // (last check, next check)
        let table = [
            (None, Some("2026-01-01T00:00:00Z")),
            (Some("2025-12-31T23:59:00Z"), Some("2026-01-01T00:00:00Z")), // the token before
            (Some("2026-01-01T00:00:00Z"), Some("2026-01-01T00:05:00Z")),
            (Some("2026-01-01T03:01:00Z"), Some("2026-01-01T03:06:00Z")),
        ];
        for (last, next) in table {
            assert_eq!(next_expiry_check(assumed, last.map(t)), next.map(t), "last check {last:?}");
        }
        assert_eq!(next_expiry_check(slack_token(), None), None, "a known expiry is not checked");
        assert!(EXPIRY_CHECK_INTERVAL <= Duration::from_secs(10 * 60), "minutes, not hours");
    }

    #[test]
    fn adopted_token_with_unknown_issue_time_assumes_slack_lifetime() {
        let times = TokenTimes { expires_at: Some(t("2026-01-01T12:00:00Z")), ..Default::default() };
        assert_eq!(next_rotation(times, None, None), Some(t("2026-01-01T10:00:00Z")));
    }
}
