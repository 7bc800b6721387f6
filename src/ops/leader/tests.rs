use super::*;

#[test]
fn a_lease_is_taken_when_free_or_run_out_and_renewed_when_ours() {
    let s = Duration::from_secs;
    // (holder, seen unchanged for, its duration, what to do)
    let table = [
        (None, s(0), s(15), Next::Take),
        (Some(""), s(0), s(15), Next::Take),
        (Some("me"), s(0), s(15), Next::Renew),
        (Some("me"), s(60), s(15), Next::Renew),
        (Some("other"), s(0), s(15), Next::Wait),
        (Some("other"), s(14), s(15), Next::Wait),
        (Some("other"), s(15), s(15), Next::Take),
        // Released the client-go way: duration 1 s, holder kept by some other tool.
        (Some("other"), s(1), s(1), Next::Take),
    ];
    for (holder, unchanged_for, duration, expected) in table {
        assert_eq!(next("me", holder, unchanged_for, duration), expected, "{holder:?} {unchanged_for:?}");
    }
}

#[test]
fn the_leader_gives_up_before_its_lease_can_be_taken() {
    for secs in [2, 4, 15, 60] {
        let t = LeaseTimes::lasting(Duration::from_secs(secs));
        assert!(t.retry_period < t.renew_deadline && t.renew_deadline < t.duration, "{t:?}");
    }
    let t = LeaseTimes::default();
    assert_eq!(
        (t.duration, t.renew_deadline, t.retry_period),
        (Duration::from_secs(15), Duration::from_secs(10), Duration::from_secs(2))
    );
    assert_eq!(LeaseTimes::lasting(Duration::from_millis(500)).duration, Duration::from_secs(2));
}

#[test]
fn each_selector_has_its_own_lease() {
    assert_eq!(lease_name(None), "slack-token-operator");
    assert_eq!(lease_name(Some(" ")), "slack-token-operator");
    // (selector, the readable part before the hash)
    let table = [
        ("shard=a", "slack-token-operator-shard-a-"),
        ("tier in (gold, silver),!legacy", "slack-token-operator-tierin-gold-silver-legacy-"),
        ("!!", "slack-token-operator-"),
    ];
    for (selector, readable) in table {
        let name = lease_name(Some(selector));
        let hash = name.strip_prefix(readable).unwrap_or_else(|| panic!("{selector:?}: {name}"));
        assert!(hash.len() == 8 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{selector:?}: {name}");
    }
    let names: std::collections::HashSet<String> =
        ["shard=a", "shard=b", "shard-a", "shard in (a,b)", "!shard", "team=x,shard=a"]
            .iter()
            .map(|s| lease_name(Some(s)))
            .collect();
    assert_eq!(names.len(), 6, "distinct selectors, distinct Leases: {names:?}");
    assert_eq!(lease_name(Some("a=1, b=2")), lease_name(Some("a=1,b=2")));
    let long = lease_name(Some(&"x".repeat(500)));
    assert!(long.len() <= 63 && long.starts_with("slack-token-operator-x"), "{long}");
}
