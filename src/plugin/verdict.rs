//! The operator's answer to a request, read from the SlackToken's status: pure functions of the
//! status seen when the request was made ([`Before`]) and the status now.
//!
//! A rotation request is done when `status.lastRotateRequest` holds its value (the operator
//! writes it with the rotation's result). A hand-over is accepted when `rotationCount` grows (a
//! Manual token is only ever rotated by a hand-over) and rejected when the `PendingToken`
//! condition says `PendingTokenRejected` with a message or time other than before. Either fails
//! when a failed attempt is recorded after the request (`failedAttempts` grows, or
//! `lastFailureTime` moves).

use crate::{
    overview::human,
    resource::{find_condition, Condition, SlackToken, SlackTokenStatus, TokenType, PENDING_TOKEN, READY},
};
use jiff::Timestamp;
use kube::ResourceExt;

/// The reason of the `PendingToken` condition while a handed-over token is refused.
const REJECTED: &str = "PendingTokenRejected";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Done; what to tell the person.
    Done(String),
    /// Refused or failed; why.
    Failed(String),
}

/// What the status said when the request was made.
#[derive(Debug, Clone, Default)]
pub struct Before {
    failed_attempts: u32,
    last_failure_time: Option<String>,
    rotation_count: u64,
    pending_token: Option<Condition>,
}

impl Before {
    pub fn of(stk: &SlackToken) -> Self {
        let status = stk.status.clone().unwrap_or_default();
        Self {
            failed_attempts: status.failed_attempts,
            last_failure_time: status.last_failure_time.clone(),
            rotation_count: status.rotation_count,
            pending_token: find_condition(&status.conditions, PENDING_TOKEN).cloned(),
        }
    }

    /// The rejection of an earlier hand-over still on the SlackToken, if any.
    pub fn rejection(&self) -> Option<&str> {
        self.pending_token.as_ref().filter(|c| c.reason == REJECTED).map(|c| c.message.as_str())
    }

    /// A failed attempt recorded since: what Ready says about it.
    fn failure_since(&self, status: &SlackTokenStatus) -> Option<String> {
        let new_failure = status.failed_attempts > self.failed_attempts
            || (status.failed_attempts > 0 && status.last_failure_time != self.last_failure_time);
        if !new_failure {
            return None;
        }
        let (reason, message) = find_condition(&status.conditions, READY)
            .map_or(("Unknown", "no Ready condition"), |c| (c.reason.as_str(), c.message.as_str()));
        Some(format!("{reason}: {message} (failed attempt {})", status.failed_attempts))
    }
}

/// The answer to rotate request `request`, if there is one yet.
pub fn rotation(request: &str, before: &Before, stk: &SlackToken, now: Timestamp) -> Option<Verdict> {
    let status = stk.status.clone().unwrap_or_default();
    let name = stk.name_any();
    if status.last_rotate_request.as_deref() == Some(request) {
        let expiry = match status.expiration_time.as_deref() {
            Some(at) => match at.parse::<Timestamp>() {
                Ok(t) => format!("expires {at} (in {})", human(t.as_second() - now.as_second())),
                Err(_) => format!("expires {at}"),
            },
            None => "does not expire".to_owned(),
        };
        let secret = &stk.spec.secret_ref.name;
        return Some(Verdict::Done(format!(
            "rotated: SlackToken {name} published a new token to Secret {secret}; it {expiry}"
        )));
    }
    before
        .failure_since(&status)
        .map(|why| Verdict::Failed(format!("rotation of SlackToken {name} failed: {why}")))
}

/// The operator's verdict on the token handed over as `handover` (the value of
/// `slack.rotator.dev/handover` written with it), if there is one yet.
pub fn hand_over(handover: &str, before: &Before, stk: &SlackToken) -> Option<Verdict> {
    let status = stk.status.clone().unwrap_or_default();
    let name = stk.name_any();
    if status.rotation_count > before.rotation_count {
        let revoke = stk.spec.manual.as_ref().is_none_or(|m| m.revoke_replaced);
        let replaced = match revoke {
            true => "the replaced token is revoked",
            false => "the replaced token was left valid (revokeReplaced: false)",
        };
        let who = status
            .identity
            .as_ref()
            .map(|i| {
                let user = i.user_id.as_deref().unwrap_or("?");
                format!(" (team {}, user {user})", i.team_id.as_deref().unwrap_or("?"))
            })
            .unwrap_or_default();
        let secret = &stk.spec.secret_ref.name;
        return Some(Verdict::Done(format!(
            "accepted: SlackToken {name} published the new token{who} to Secret {secret}; {replaced}"
        )));
    }
    let pending = find_condition(&status.conditions, PENDING_TOKEN);
    if let Some(c) = pending.filter(|c| c.reason == REJECTED) {
        // The operator names the hand-over it refused; one that does not (older) is judged
        // by the condition having changed.
        let ours = c.message.contains(&format!("(hand-over {handover})"));
        let same_as_before = before
            .pending_token
            .as_ref()
            .is_some_and(|b| b.message == c.message && b.last_transition_time == c.last_transition_time);
        if ours || !same_as_before {
            return Some(Verdict::Failed(format!("rejected: {}", c.message)));
        }
    }
    before
        .failure_since(&status)
        .map(|why| Verdict::Failed(format!("hand-over to SlackToken {name} failed: {why}")))
}

/// Why the operator would not act on a rotate request for `stk`, if it would not: asking would
/// only wait out the timeout.
pub fn no_rotation(stk: &SlackToken) -> Option<String> {
    let name = stk.name_any();
    match (stk.spec.token_type, stk.spec.suspend) {
        (TokenType::Manual, _) => Some(format!(
            "SlackToken {name} is type Manual: Slack cannot rotate a long-lived token. Re-issue it in Slack (`kubectl describe slacktoken {name}` shows how) and hand it over with `kubectl slacktoken handover {name}`"
        )),
        (_, true) => Some(format!(
            "SlackToken {name} is suspended (spec.suspend: true): the operator does not rotate it until that is turned off"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Identity, SlackTokenSpec};

    const NOW: &str = "2026-01-01T10:00:00Z";

    fn ready(status: &str, reason: &str, message: &str) -> Condition {
        condition(READY, status, reason, message, "2026-01-01T09:00:00Z")
    }

    fn condition(type_: &str, status: &str, reason: &str, message: &str, at: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: at.into(),
        }
    }

    fn stk(type_: TokenType, status: SlackTokenStatus) -> SlackToken {
        let mut stk = SlackToken::new("bot", SlackTokenSpec::new(type_, "bot-creds", "bot-token"));
        stk.status = Some(status);
        stk
    }

    fn failing(attempts: u32, at: &str) -> SlackTokenStatus {
        SlackTokenStatus {
            conditions: vec![ready("False", "InvalidRefreshToken", "Slack refused the refresh token")],
            failed_attempts: attempts,
            last_failure_time: Some(at.into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_rotate_request_is_done_when_status_names_it_and_failed_by_a_failure_after_it() {
        let now: Timestamp = NOW.parse().unwrap();
        let done = SlackTokenStatus {
            last_rotate_request: Some("r2".into()),
            expiration_time: Some("2026-01-01T22:00:00Z".into()),
            conditions: vec![ready("True", "TokenPublished", "m")],
            ..Default::default()
        };
        let earlier = SlackTokenStatus { last_rotate_request: Some("r1".into()), ..done.clone() };
        let failed_before = failing(2, "2026-01-01T09:59:00Z");
        // (status before the request, status now, verdict: None, Some(true) done, Some(false) failed)
        let table = [
            (SlackTokenStatus::default(), done.clone(), Some(true)),
            (SlackTokenStatus::default(), earlier.clone(), None),
            (SlackTokenStatus::default(), failing(1, "2026-01-01T10:00:00Z"), Some(false)),
            (failed_before.clone(), failed_before.clone(), None), // an old failure is not the answer
            (failed_before.clone(), failing(3, "2026-01-01T10:00:01Z"), Some(false)),
            // The count restarted (a success in between), then failed again at another time.
            (failed_before.clone(), failing(1, "2026-01-01T10:00:01Z"), Some(false)),
            (failed_before, done.clone(), Some(true)),
        ];
        for (i, (before, now_status, want)) in table.into_iter().enumerate() {
            let before = Before::of(&stk(TokenType::OAuth, before));
            let got = rotation("r2", &before, &stk(TokenType::OAuth, now_status), now);
            match (want, &got) {
                (None, None) => {}
                (Some(true), Some(Verdict::Done(m))) => {
                    assert!(m.contains("expires 2026-01-01T22:00:00Z (in 12h0m)"), "{m}")
                }
                (Some(false), Some(Verdict::Failed(m))) => {
                    assert!(m.contains("InvalidRefreshToken: Slack refused"), "{m}")
                }
                _ => panic!("row {i}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_hand_over_is_accepted_by_a_rotation_and_rejected_by_a_new_rejection() {
        let rejected = |message: &str, at: &str| SlackTokenStatus {
            conditions: vec![
                condition(PENDING_TOKEN, "False", "PendingTokenRejected", message, at),
                ready("True", "TokenPublished", "m"),
            ],
            rotation_count: 1,
            ..Default::default()
        };
        let first = rejected("was not used: team T2 is not team T1", "2026-01-01T09:00:00Z");
        let accepted = SlackTokenStatus {
            rotation_count: 2,
            identity: Some(Identity {
                team_id: Some("T1".into()),
                user_id: Some("U1".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let fresh = SlackTokenStatus { rotation_count: 1, ..Default::default() };
        let named = |handover: &str| {
            rejected(
                &format!("was not used: Slack rejected it (invalid_auth) (hand-over {handover})"),
                "2026-01-01T09:00:00Z",
            )
        };
        // (before, now, verdict: None, Some(true) accepted, Some(false) refused/failed)
        let table = [
            (fresh.clone(), fresh.clone(), None),
            (fresh.clone(), accepted.clone(), Some(true)),
            (fresh.clone(), first.clone(), Some(false)),
            (first.clone(), first.clone(), None), // the earlier token's rejection
            // Named: this hand-over's, though nothing else changed (an earlier one had the same).
            (named("h1"), named("h1"), None),
            (named("h1"), named("h2"), Some(false)),
            (named("h2"), named("h2"), Some(false)),
            (
                first.clone(),
                rejected("was not used: Slack rejected it (invalid_auth)", "2026-01-01T09:00:00Z"),
                Some(false),
            ),
            (
                first.clone(),
                rejected("was not used: team T2 is not team T1", "2026-01-01T10:00:00Z"),
                Some(false),
            ),
            (first.clone(), accepted.clone(), Some(true)),
            (fresh.clone(), SlackTokenStatus { rotation_count: 1, ..failing(1, NOW) }, Some(false)),
        ];
        for (i, (before, now_status, want)) in table.into_iter().enumerate() {
            let before = Before::of(&stk(TokenType::Manual, before));
            let got = hand_over("h2", &before, &stk(TokenType::Manual, now_status));
            match (want, &got) {
                (None, None) => {}
                (Some(true), Some(Verdict::Done(m))) => assert!(m.contains("(team T1, user U1)"), "{m}"),
                (Some(false), Some(Verdict::Failed(m))) => {
                    assert!(m.contains("was not used") || m.contains("failed"), "{m}")
                }
                _ => panic!("row {i}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn manual_and_suspended_tokens_take_no_rotate_request() {
        let suspended = |type_| {
            let mut stk = stk(type_, SlackTokenStatus::default());
            stk.spec.suspend = true;
            stk
        };
        let table = [
            (stk(TokenType::OAuth, SlackTokenStatus::default()), None),
            (stk(TokenType::AppConfiguration, SlackTokenStatus::default()), None),
            (stk(TokenType::Manual, SlackTokenStatus::default()), Some("kubectl slacktoken handover bot")),
            (suspended(TokenType::OAuth), Some("suspended")),
            (suspended(TokenType::Manual), Some("handover")),
        ];
        for (stk, why) in table {
            let got = no_rotation(&stk);
            assert_eq!(got.is_some(), why.is_some(), "{:?}: {got:?}", stk.spec.token_type);
            if let (Some(why), Some(got)) = (why, got) {
                assert!(got.contains(why), "{got}");
            }
        }
    }
}
