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
fn values_are_checked_before_they_can_reach_slack() {
    let big = "x".repeat(MAX_VALUE_BYTES + 1);
    let at_limit = format!("xoxe-{}", "x".repeat(MAX_VALUE_BYTES - 5));
    // (key, value, the error)
    let table: Vec<(&str, &[u8], Option<CredentialsError>)> = vec![
        (REFRESH_TOKEN, b"  xoxe-1-abc\n", None),
        (REFRESH_TOKEN, at_limit.as_bytes(), None),
        (
            REFRESH_TOKEN,
            big.as_bytes(),
            Some(CredentialsError::TooLarge { key: REFRESH_TOKEN, bytes: big.len() }),
        ),
        (REFRESH_TOKEN, b"\xff\xfe", Some(CredentialsError::NotUtf8(REFRESH_TOKEN))),
        (REFRESH_TOKEN, b"xoxe-1-abc xoxe-1-def", Some(CredentialsError::NotAToken(REFRESH_TOKEN))),
        (ACCESS_TOKEN, b"xoxb-1\n2", Some(CredentialsError::NotAToken(ACCESS_TOKEN))),
        (CLIENT_SECRET, b"abc\x00def", Some(CredentialsError::NotAToken(CLIENT_SECRET))),
        (CLIENT_ID, b"123.456\t789", Some(CredentialsError::NotAToken(CLIENT_ID))),
        (
            PENDING_TOKEN,
            big.as_bytes(),
            Some(CredentialsError::TooLarge { key: PENDING_TOKEN, bytes: big.len() }),
        ),
        (EXPIRES_AT, big.as_bytes(), Some(CredentialsError::TooLarge { key: EXPIRES_AT, bytes: big.len() })),
        ("somethingElse", big.as_bytes(), None),
    ];
    for (key, value, expected) in table {
        let secret = Secret {
            data: Some([(key.to_owned(), ByteString(value.to_vec()))].into()),
            ..Default::default()
        };
        assert_eq!(Credentials::from_secret(&secret).err(), expected, "{key}");
    }
}

#[test]
fn a_missing_key_is_explained_with_the_keys_that_are_there() {
    let creds = |pairs: &[(&str, &str)]| Credentials::from_secret(&secret_with(pairs)).unwrap();
    let table = [
        (creds(&[]), REFRESH_TOKEN, "key `refreshToken` is missing (the Secret has no keys)"),
        (
            creds(&[("refresh_token", "xoxe-1-r"), ("client_id", "1.2")]),
            REFRESH_TOKEN,
            "key `refreshToken` is missing (the Secret has keys `client_id`, `refresh_token`): rename `refresh_token` to `refreshToken`",
        ),
        (
            creds(&[("token", "xoxe-1-r")]),
            REFRESH_TOKEN,
            "key `refreshToken` is missing (the Secret has keys `token`)",
        ),
        (creds(&[(REFRESH_TOKEN, " \n")]), REFRESH_TOKEN, "key `refreshToken` is empty"),
    ];
    for (creds, key, message) in table {
        assert_eq!(creds.missing(key).to_string(), message);
    }
    let err = creds(&[("client_secret", "s")]).require_client().unwrap_err();
    assert_eq!(err.to_string(), "key `clientId` is missing (the Secret has keys `client_secret`)");
}

#[test]
fn a_token_of_the_wrong_kind_is_named_and_sent_where_it_belongs() {
    let secret = |s: &str| SecretString::from(s.to_owned());
    // (value, problem as refreshToken, problem as legacyToken)
    let table = [
        ("xoxe-1-abc", None, Some("not a long-lived token: put it in key `refreshToken`")),
        (
            "xoxb-1-abc",
            Some("put it in key `legacyToken` instead (type OAuth), or keep it long-lived with type Manual"),
            None,
        ),
        ("xoxp-1-abc", Some("long-lived bot or user token"), None),
        (
            "xoxe.xoxb-1-abc",
            Some("put the refresh token (`xoxe-1-…`) that came with it there"),
            Some("on rotation already"),
        ),
        ("xapp-1-abc", Some("app-level token"), Some("app-level token")),
        (
            "https://hooks.slack.com/services/T0/B0/abc",
            Some("is not a Slack refresh token"),
            Some("is not a long-lived Slack bot or user token"),
        ),
        ("XOXE-1-ABC", Some("is not a Slack refresh token"), Some("is not a long-lived")),
    ];
    for (value, as_refresh, as_legacy) in table {
        let problems = [refresh_token_problem(&secret(value)), legacy_token_problem(&secret(value))];
        for (problem, expected) in problems.iter().zip([as_refresh, as_legacy]) {
            let text = problem.as_ref().map(ToString::to_string);
            match expected {
                None => assert_eq!(text, None, "{value}"),
                Some(fragment) => {
                    let text = text.unwrap_or_default();
                    assert!(text.contains(fragment), "{value}: {text}");
                    assert!(!text.contains(value), "the value is never shown: {text}");
                }
            }
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Key names: ours, misspellings of ours, anything.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                CLIENT_ID,
                CLIENT_SECRET,
                REFRESH_TOKEN,
                ACCESS_TOKEN,
                EXPIRES_AT,
                LEGACY_TOKEN,
                PENDING_TOKEN,
                "refresh_token",
                "token",
            ])
            .prop_map(str::to_owned),
            "[-._a-zA-Z0-9]{1,20}",
        ]
    }

    /// Values: token-like (with a distinctive secret part, padded or broken up), any bytes,
    /// large ones.
    fn value() -> impl Strategy<Value = Vec<u8>> {
        let token = (
            prop::sample::select(vec![
                "xoxe-1-",
                "xoxb-",
                "xoxp-",
                "xoxe.xoxb-1-",
                "xapp-1-",
                "https://",
                "",
            ]),
            "[A-Za-z0-9]{12,40}",
            prop::sample::select(vec!["", " ", "\n", "\t", "\u{0}", " x"]),
            prop::sample::select(vec!["", "  ", "\n"]),
        )
            .prop_map(|(prefix, body, inside, around)| {
                format!("{around}{prefix}{body}{inside}{body}{around}").into_bytes()
            });
        prop_oneof![
            4 => token,
            2 => prop::collection::vec(any::<u8>(), 0..64),
            1 => (MAX_VALUE_BYTES - 2..MAX_VALUE_BYTES + 2).prop_map(|n| vec![b'x'; n]),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn any_secret_parses_or_says_why_and_never_shows_a_value(
            data in prop::collection::btree_map(key(), value(), 0..8)
        ) {
            let secret = Secret {
                data: Some(data.iter().map(|(k, v)| (k.clone(), ByteString(v.clone()))).collect()),
                ..Default::default()
            };
            let mut messages = Vec::new();
            match Credentials::from_secret(&secret) {
                Err(e) => messages.push(e.to_string()),
                Ok(creds) => {
                    messages.extend(creds.require_client().err().map(|e| e.to_string()));
                    messages.push(creds.missing(REFRESH_TOKEN).to_string());
                    for token in [&creds.refresh_token, &creds.legacy_token].into_iter().flatten() {
                        prop_assert!(!token.expose_secret().chars().any(char::is_whitespace));
                        messages.extend(refresh_token_problem(token).map(|e| e.to_string()));
                        messages.extend(legacy_token_problem(token).map(|e| e.to_string()));
                    }
                }
            }
            // Every generated token carries a secret part of 12+ characters: none may show.
            for value in data.values().filter_map(|v| std::str::from_utf8(v).ok()) {
                for part in value.split(|c: char| !c.is_ascii_alphanumeric()).filter(|p| p.len() >= 12) {
                    for message in &messages {
                        prop_assert!(!message.contains(part), "{} shows a value", message);
                    }
                }
            }
        }
    }
}

#[test]
fn a_saved_token_without_a_reported_lifetime_gets_slacks_12_hours() {
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
    let saved = Credentials::from_secret(&secret).unwrap();
    assert_eq!(saved.expires_at, Some("2026-01-01T12:00:00Z".parse().unwrap()));
    assert!(!saved.needs_first_token(), "saved by us, with the lifetime assumed");
    assert!(saved.expiry_assumed, "and marked as assumed");

    // auth.test tells the real expiry later: the mark goes.
    let learned = "2026-01-01T01:00:00Z".parse().unwrap();
    set_expiry(&mut secret, Some(learned), false);
    let known = Credentials::from_secret(&secret).unwrap();
    assert_eq!((known.expires_at, known.expiry_assumed), (Some(learned), false));

    // A rotation whose answer does give the lifetime leaves no mark either.
    let reported = Issued { expires_in: Some(Duration::from_secs(3600)), ..issued.clone() };
    record_issued(&mut secret, &issued, "2026-01-01T00:00:00Z".parse().unwrap());
    assert!(Credentials::from_secret(&secret).unwrap().expiry_assumed);
    record_issued(&mut secret, &reported, "2026-01-01T00:00:00Z".parse().unwrap());
    assert!(!Credentials::from_secret(&secret).unwrap().expiry_assumed);
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
    assert!(!creds.expiry_assumed, "Slack reported the lifetime");
}

#[test]
fn a_hand_over_must_look_like_a_token_of_the_kind() {
    use ManualKind::*;
    // (kind, token, refused because (part of the reason), or accepted)
    let long = format!("xoxb-{}", "1".repeat(MAX_VALUE_BYTES));
    let table: [(ManualKind, &str, Option<&str>); 14] = [
        (LegacyTestToken, "xoxp-1-2-3-abc", None),
        (CustomIntegrationBot, "xoxb-1-2-abc", None),
        (HubotLita, "xoxb-1-2-abc", None),
        (App, "xoxb-1-2-abc", None),
        (App, "xoxp-1-2-abc", None),
        (LegacyTestToken, "xoxb-1-2-abc", Some("other kind")),
        (HubotLita, "xoxp-1-2-abc", Some("other kind")),
        (HubotLita, "xoxe-1-abc", Some("refresh token")),
        (CustomIntegrationBot, "xoxe.xoxb-1-abc", Some("12 hours")),
        (App, "xapp-1-abc", Some("app-level")),
        (App, "hunter2", Some("not a Slack token")),
        (HubotLita, "", Some("no token")),
        (HubotLita, "xoxb-1-2-abc\nfolder: slack", Some("one word")),
        (HubotLita, long.as_str(), Some("bytes is not a token")),
    ];
    for (kind, token, refused) in table {
        let problem = hand_over_problem(kind, &SecretString::from(token));
        match (refused, &problem) {
            (None, None) => {}
            (Some(why), Some(problem)) => {
                assert!(problem.contains(why), "{kind:?} {token}: {problem}");
                assert!(token.len() < 5 || !problem.contains(token), "the reason never holds the token");
            }
            _ => panic!("{kind:?} {token:?}: expected {refused:?}, got {problem:?}"),
        }
    }
}
