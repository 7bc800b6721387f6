use super::*;

#[test]
fn the_slack_url_must_be_https_unless_it_stays_on_this_machine() {
    // (url, allow_insecure, accepted)
    let table = [
        ("https://slack.com/api/", false, true),
        ("https://slack-gov.com/api/", false, true),
        ("http://127.0.0.1:8080/api/", false, true),
        ("http://localhost:8080/api/", false, true),
        ("http://[::1]:8080/api/", false, true),
        ("http://slack.internal/api/", false, false),
        ("http://10.0.0.5/api/", false, false),
        ("http://slack.internal/api/", true, true),
        ("ftp://slack.com/api/", true, false),
        ("slack.com/api", false, false),
    ];
    for (url, allow, accepted) in table {
        assert_eq!(check_slack_url(url, allow).is_ok(), accepted, "{url} allow_insecure={allow}");
    }
}

#[test]
fn redacted_token_shows_only_its_kind() {
    let token = SecretString::from("xoxe.xoxb-1-SECRETPART".to_owned());
    assert_eq!(redacted(&token), "xoxe.xoxb-1-…");
    assert_eq!(redacted(&SecretString::from("weird".to_owned())), "…");
}

#[test]
fn oauth_answer_yields_tokens_and_identity() {
    let body = serde_json::json!({
        "ok": true, "access_token": "xoxe.xoxb-1-a", "refresh_token": "xoxe-1-r", "expires_in": 43200,
        "token_type": "bot", "scope": "chat:write", "bot_user_id": "U1", "app_id": "A1",
        "team": {"id": "T1", "name": "Team"}, "enterprise": null
    });
    let issued = issued_from_oauth("oauth.v2.access", &body).unwrap();
    assert_eq!(issued.expires_in, Some(Duration::from_secs(43200)));
    assert_eq!(issued.identity.team_id.as_deref(), Some("T1"));
    assert_eq!(issued.identity.bot_user_id.as_deref(), Some("U1"));
    assert_eq!(issued.identity.enterprise_id, None);
    assert!(!format!("{issued:?}").contains("xoxe-1-r"), "Debug must not show tokens");
}

#[test]
fn a_lifetime_that_makes_no_sense_is_not_believed_and_12h_assumed() {
    use serde_json::json;
    let h = |hours: u64| Some(Duration::from_secs(hours * 3600));
    // (expires_in, exp, iat, believed lifetime)
    let table = [
        (json!(43200), json!(1_043_200), json!(1_000_000), h(12)),
        (json!(60), json!(1_000_060), json!(1_000_000), Some(Duration::from_secs(60))),
        (json!(7 * 24 * 3600), json!(1_604_800), json!(1_000_000), h(7 * 24)),
        (Value::Null, Value::Null, json!(1_000_000), None),
        (json!(0), json!(1_000_000), json!(1_000_000), None),
        (json!(-5), json!(999_995), json!(1_000_000), None),
        (json!(7 * 24 * 3600 + 1), json!(1_604_801), json!(1_000_000), None),
        (json!(u64::MAX), json!(i64::MAX), json!(i64::MIN), None),
        (json!("43200"), json!("1043200"), json!(1_000_000), None),
        (json!(43200.5), json!(1_043_200.5), json!(1_000_000), None),
    ];
    for (expires_in, exp, iat, lifetime) in table {
        let mut oauth = json!({"ok": true, "access_token": "xoxe.xoxb-1-a", "refresh_token": "xoxe-1-r"});
        if !expires_in.is_null() {
            oauth["expires_in"] = expires_in.clone();
        }
        let issued = issued_from_oauth("oauth.v2.access", &oauth).unwrap();
        assert_eq!(issued.expires_in, lifetime, "expires_in {expires_in}");
        assert_eq!(issued.lifetime(), lifetime.unwrap_or(ROTATING_TOKEN_LIFETIME));
        let mut config =
            json!({"ok": true, "token": "xoxe.xoxp-1-a", "refresh_token": "xoxe-1-r", "iat": iat});
        if !exp.is_null() {
            config["exp"] = exp.clone();
        }
        let issued = issued_from_config("tooling.tokens.rotate", &config).unwrap();
        assert_eq!(issued.expires_in, lifetime, "exp {exp} iat {}", config["iat"]);
    }
}

#[test]
fn an_answer_without_either_token_is_unreadable() {
    use serde_json::json;
    for (missing, body) in [
        ("refresh_token", json!({"ok": true, "access_token": "xoxe.xoxb-1-a", "expires_in": 43200})),
        ("access_token", json!({"ok": true, "refresh_token": "xoxe-1-r", "expires_in": 43200})),
        ("access_token", json!({"ok": true, "access_token": "", "refresh_token": "xoxe-1-r"})),
        ("refresh_token", json!({"ok": true, "access_token": "a", "refresh_token": 5})),
    ] {
        let err = issued_from_oauth("oauth.v2.access", &body).unwrap_err();
        assert_eq!(err.kind(), crate::slack::SlackErrorKind::Unreadable, "{body}");
        assert!(err.to_string().contains(missing), "{err}");
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    /// Any JSON value, nested a few levels, with the keys Slack's answers use among others.
    fn any_json() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("ok".to_owned()),
            Just("error".to_owned()),
            Just("access_token".to_owned()),
            Just("refresh_token".to_owned()),
            Just("token".to_owned()),
            Just("expires_in".to_owned()),
            Just("exp".to_owned()),
            Just("iat".to_owned()),
            Just("team".to_owned()),
            Just("authed_user".to_owned()),
            Just("id".to_owned()),
            "[a-z_]{1,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,12}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(key.clone(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Reads an answer the way the client does, to the end: every outcome is either the
    /// fields or a classified error.
    fn read_all(text: &str) -> Vec<Result<(), SlackError>> {
        match read_answer("oauth.v2.access", text) {
            Ok(body) => vec![
                issued_from_oauth("oauth.v2.access", &body).map(drop),
                issued_from_config("tooling.tokens.rotate", &body).map(drop),
            ],
            Err(e) => vec![Err(e)],
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_bytes_are_an_answer_or_a_classified_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            for result in read_all(&String::from_utf8_lossy(&bytes)) {
                if let Err(e) = result {
                    let classified = matches!(
                        e,
                        SlackError::Decode { .. } | SlackError::Api { .. } | SlackError::RateLimited { .. }
                    );
                    prop_assert!(classified, "{:?}", e);
                }
            }
        }

        #[test]
        fn any_json_is_an_answer_or_a_classified_error(mut body in any_json(), field in 0usize..3) {
            // A token-looking value in whatever answer: never repeated by an error.
            const TOKEN: &str = "xoxe-1-NEVERSHOWN";
            if let Some(map) = body.as_object_mut() {
                map.insert(["access_token", "refresh_token", "token"][field].into(), Value::from(TOKEN));
            }
            for result in read_all(&body.to_string()) {
                if let Err(e) = result {
                    let classified = matches!(
                        e,
                        SlackError::Decode { .. } | SlackError::Api { .. } | SlackError::RateLimited { .. }
                    );
                    prop_assert!(classified, "{:?}", e);
                    let text = format!("{e} {e:?}");
                    prop_assert!(!text.contains("NEVERSHOWN"), "an error repeats the token: {}", text);
                }
            }
        }

        #[test]
        fn an_ok_answer_without_a_token_is_unreadable_never_accepted(mut body in any_json()) {
            if let Some(map) = body.as_object_mut() {
                map.insert("ok".into(), Value::Bool(true));
                map.remove("refresh_token");
            }
            if let Ok(body) = read_answer("oauth.v2.access", &body.to_string()) {
                let e = issued_from_oauth("oauth.v2.access", &body).unwrap_err();
                prop_assert_eq!(e.kind(), crate::slack::SlackErrorKind::Unreadable);
            }
        }

        #[test]
        fn a_well_formed_answer_round_trips(
            access in "xoxe\\.xox[bp]-1-[A-Za-z0-9-]{1,150}",
            refresh in "xoxe-1-[A-Za-z0-9-]{1,150}",
            expires_in in 1u64..=MAX_REPORTED_LIFETIME.as_secs(),
            team in "T[A-Z0-9]{1,10}",
            user in proptest::option::of("U[A-Z0-9]{1,10}"),
            app in "A[A-Z0-9]{1,10}",
            scope in "[a-z:,]{1,40}",
        ) {
            let text = json!({
                "ok": true, "access_token": access, "refresh_token": refresh, "expires_in": expires_in,
                "token_type": "bot", "scope": scope, "app_id": app, "team": {"id": team, "name": "x"},
                "authed_user": {"id": user}, "enterprise": null,
            }).to_string();
            let issued = issued_from_oauth("oauth.v2.access", &read_answer("oauth.v2.access", &text).unwrap()).unwrap();
            prop_assert_eq!(issued.access_token.expose_secret(), access.as_str());
            prop_assert_eq!(issued.refresh_token.expose_secret(), refresh.as_str());
            prop_assert_eq!(issued.expires_in, Some(Duration::from_secs(expires_in)));
            prop_assert_eq!(issued.identity.team_id, Some(team));
            prop_assert_eq!(issued.identity.user_id, user);
            prop_assert_eq!(issued.identity.app_id, Some(app));
            prop_assert_eq!(issued.identity.scopes, Some(scope));
        }
    }
}
