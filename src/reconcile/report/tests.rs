use super::*;

#[test]
fn restarts_are_reported_in_a_condition_and_an_event_that_say_what_to_do() {
    use crate::resource::{SlackTokenSpec, WorkloadKind};
    let mut stk = SlackToken::new("bot", SlackTokenSpec::new(TokenType::OAuth, "c", "o"));
    stk.metadata.namespace = Some("team-a".into());
    let target = |kind, name: &str| RolloutRestartTarget { kind, name: name.into() };
    let (web, db) = (target(WorkloadKind::Deployment, "web"), target(WorkloadKind::StatefulSet, "db"));
    let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    // (restarts, condition status, reason, Event, words in the message)
    let table = [
        (
            vec![(web.clone(), None), (db.clone(), None)],
            "True",
            "Restarted",
            "RolloutRestarted",
            vec!["Deployment/web, StatefulSet/db"],
        ),
        (
            vec![(web.clone(), Some(RestartFailure::NotFound)), (db.clone(), None)],
            "False",
            "TargetNotFound",
            "RolloutRestartFailed",
            vec![
                "Deployment/web: not found in namespace team-a",
                "restarted StatefulSet/db",
                "published all the same",
            ],
        ),
        (
            vec![(web.clone(), Some(RestartFailure::Forbidden))],
            "False",
            "Forbidden",
            "RolloutRestartFailed",
            vec!["may not patch deployments", "rolloutRestart.enabled=true"],
        ),
        (
            vec![(db, Some(RestartFailure::Failed))],
            "False",
            "RestartFailed",
            "RolloutRestartFailed",
            vec!["retrying"],
        ),
    ];
    for (restarts, status, reason, event, words) in table {
        let (c, note) = restart_report(&stk, &restarts, now);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str(), note.reason.as_str()),
            (status, reason, event),
            "{restarts:?}"
        );
        for word in words {
            assert!(c.message.contains(word), "{word:?} not in {:?}", c.message);
        }
    }
}

#[test]
fn token_gauges_follow_status() {
    let cond = |type_: &str, status: &str| Condition {
        type_: type_.into(),
        status: status.into(),
        reason: "R".into(),
        message: String::new(),
        observed_generation: None,
        last_transition_time: String::new(),
    };
    let status = |expires: Option<&str>, conditions: Vec<Condition>| SlackTokenStatus {
        expiration_time: expires.map(Into::into),
        next_rotation_time: Some("1970-01-01T00:01:40Z".into()),
        conditions,
        ..Default::default()
    };
    // (type, status, expected gauges)
    let table = [
        (
            TokenType::OAuth,
            status(Some("1970-01-01T00:02:00Z"), vec![cond(READY, "True")]),
            TokenGauges { expiration: Some(120), next_rotation: Some(100), ready: true, rotation_due: None },
        ),
        (
            TokenType::OAuth,
            status(Some("1970-01-01T00:02:00Z"), vec![cond(READY, "False")]),
            TokenGauges { expiration: Some(120), next_rotation: Some(100), ready: false, rotation_due: None },
        ),
        (
            TokenType::Manual,
            status(None, vec![cond(READY, "True"), cond(ROTATION_DUE, "True")]),
            TokenGauges { expiration: None, next_rotation: Some(100), ready: true, rotation_due: Some(true) },
        ),
        (
            TokenType::Manual,
            status(None, vec![]),
            TokenGauges {
                expiration: None,
                next_rotation: Some(100),
                ready: false,
                rotation_due: Some(false),
            },
        ),
    ];
    for (type_, status, expected) in table {
        assert_eq!(token_gauges(type_, &status), expected, "{type_:?} {status:?}");
    }
}

#[test]
fn every_kind_has_its_own_reissue_steps_that_end_in_the_hand_over() {
    let kinds = [
        ManualKind::LegacyTestToken,
        ManualKind::CustomIntegrationBot,
        ManualKind::HubotLita,
        ManualKind::App,
    ];
    let steps: Vec<String> = kinds.iter().map(|k| reissue_steps(*k, "c")).collect();
    assert!(steps[0].contains("legacy-tokens") && steps[0].contains("auth.revoke"));
    assert!(steps[1].contains("custom-integrations"));
    assert!(steps[2].contains("apps/manage") && steps[2].contains("Regenerate"));
    assert!(steps[3].contains("reinstall"));
    assert!(steps.iter().all(|s| s.contains("pendingToken")));
}
