//! Every row of the operator's behaviour, decided without a server.

use super::*;
use crate::{
    error::CredentialsError,
    reconcile::{backoff::Hold, observe::CredentialsSecret},
    resource::{
        GoDuration, ManualKind, ManualSpec, RolloutRestartTarget, SlackTokenStatus,
        EXPIRY_ASSUMED_ANNOTATION, ISSUED_AT_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL,
        RESTART_PENDING_ANNOTATION,
    },
    secrets::{fingerprint, legacy_token_problem, refresh_token_problem, Entry},
    slack::{AuthTest, Issued},
};
use jiff::Timestamp;
use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::OwnerReference, ByteString};
use kube::api::ObjectMeta;
use secrecy::{ExposeSecret, SecretString};

const T0: &str = "2026-01-01T00:00:00Z";
const H: u64 = 3600;

fn at(hours: f64) -> Timestamp {
    let t0: Timestamp = T0.parse().unwrap();
    t0.checked_add(Duration::from_secs_f64(hours * H as f64)).unwrap()
}

/// The world one reconcile sees, built up by chaining. Starts as an OAuth bot token issued at T0,
/// expiring 12h later, labelled and published, one hour after issue.
struct World {
    stk: SlackToken,
    creds: Option<Secret>,
    output: Option<Secret>,
    pending: bool,
    hold: Option<(u64, bool)>,
    now: Timestamp,
}

fn secret(name: &str, pairs: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            resource_version: Some("10".into()),
            ..Default::default()
        },
        data: Some(pairs.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
        ..Default::default()
    }
}

fn oauth() -> World {
    let mut stk = SlackToken::new("bot", SlackTokenSpec::new(TokenType::OAuth, "bot-creds", "bot-token"));
    stk.metadata.namespace = Some("team-a".into());
    stk.metadata.uid = Some("uid-1".into());
    stk.metadata.generation = Some(1);
    stk.status = Some(SlackTokenStatus { observed_generation: Some(1), ..Default::default() });
    let mut creds = secret(
        "bot-creds",
        &[
            ("clientId", "123.456"),
            ("clientSecret", "s3cret"),
            ("refreshToken", "xoxe-1-r"),
            ("accessToken", "xoxe.xoxb-1-a"),
            ("expiresAt", "2026-01-01T12:00:00Z"),
        ],
    );
    creds.metadata.labels = Some([(SLACKTOKEN_LABEL.to_owned(), "bot".to_owned())].into());
    creds.metadata.annotations = Some([(ISSUED_AT_ANNOTATION.to_owned(), T0.to_owned())].into());
    let mut output = secret("bot-token", &[("token", "xoxe.xoxb-1-a")]);
    output.metadata.owner_references =
        Some(vec![OwnerReference { uid: "uid-1".into(), controller: Some(true), ..Default::default() }]);
    World { stk, creds: Some(creds), output: Some(output), pending: false, hold: None, now: at(1.0) }
}

fn manual() -> World {
    let mut w = oauth().spec(|s| {
        s.token_type = TokenType::Manual;
        s.manual = Some(ManualSpec {
            kind: ManualKind::HubotLita,
            allow_identity_change: false,
            revoke_replaced: true,
        });
        s.rotation_period = Some(GoDuration(Duration::from_secs(90 * 24 * H)));
    });
    w.creds = Some(secret("bot-creds", &[("accessToken", "xoxb-long-lived")]));
    w.creds_meta(|m| {
        m.labels = Some([(SLACKTOKEN_LABEL.to_owned(), "bot".to_owned())].into());
        m.annotations = Some([(ISSUED_AT_ANNOTATION.to_owned(), T0.to_owned())].into());
    })
    .status(|s| s.last_check_time = Some(T0.into()))
}

impl World {
    /// The credentials Secret's expiry is Slack's 12 hours assumed (its answer gave none).
    fn expiry_assumed(self) -> Self {
        self.creds_meta(|m| {
            m.annotations
                .get_or_insert_with(Default::default)
                .insert(EXPIRY_ASSUMED_ANNOTATION.into(), "true".into());
        })
    }
    fn last_check(self, hours: f64) -> Self {
        self.status(|s| s.last_check_time = Some(crate::clock::format_time(at(hours))))
    }
    fn at(mut self, hours: f64) -> Self {
        self.now = at(hours);
        self
    }
    fn spec(mut self, f: impl FnOnce(&mut SlackTokenSpec)) -> Self {
        f(&mut self.stk.spec);
        self
    }
    fn status(mut self, f: impl FnOnce(&mut SlackTokenStatus)) -> Self {
        f(self.stk.status.get_or_insert_with(Default::default));
        self
    }
    fn annotate(mut self, key: &str, value: &str) -> Self {
        self.stk.metadata.annotations.get_or_insert_with(Default::default).insert(key.into(), value.into());
        self
    }
    fn finalizer(mut self) -> Self {
        self.stk.metadata.finalizers = Some(vec![REVOKE_FINALIZER.into()]);
        self
    }
    fn deleting(mut self) -> Self {
        self.stk.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(at(1.0)));
        self
    }
    fn generation(mut self, generation: i64) -> Self {
        self.stk.metadata.generation = Some(generation);
        self
    }
    fn creds_data(mut self, key: &str, value: Option<&str>) -> Self {
        let data = self.creds.as_mut().unwrap().data.get_or_insert_with(Default::default);
        match value {
            Some(v) => data.insert(key.into(), ByteString(v.as_bytes().to_vec())),
            None => data.remove(key),
        };
        self
    }
    fn creds_meta(mut self, f: impl FnOnce(&mut ObjectMeta)) -> Self {
        f(&mut self.creds.as_mut().unwrap().metadata);
        self
    }
    fn output_meta(mut self, f: impl FnOnce(&mut ObjectMeta)) -> Self {
        f(&mut self.output.as_mut().unwrap().metadata);
        self
    }
    fn no_output(mut self) -> Self {
        self.output = None;
        self
    }
    fn no_credentials(mut self) -> Self {
        self.creds = None;
        self
    }
    fn output_of_someone_else(mut self) -> Self {
        self.output.as_mut().unwrap().metadata.owner_references = None;
        self
    }
    fn pending(mut self) -> Self {
        self.pending = true;
        self
    }
    /// A failure held for `left_secs`, decided on the current inputs (`same`) or older ones.
    fn held(mut self, left_secs: u64, same: bool) -> Self {
        self.hold = Some((left_secs, same));
        self
    }

    fn snapshot(self) -> Snapshot {
        let mut s = Snapshot {
            slacktoken: self.stk,
            credentials: self.creds.map(CredentialsSecret::new),
            output: self.output,
            known_output: None,
            pending: self.pending.then(|| Entry {
                namespace: "team-a".into(),
                name: "bot-creds".into(),
                replaces: fingerprint(&SecretString::from("xoxe-1-r")),
                issued: Issued {
                    access_token: SecretString::from("xoxe.xoxb-1-new"),
                    refresh_token: SecretString::from("xoxe-1-new"),
                    expires_in: Some(Duration::from_secs(12 * H)),
                    identity: Default::default(),
                },
                issued_at: at(1.0),
                slacktoken: "bot".into(),
                rotate_request: None,
            }),
            hold: None,
            now: self.now,
        };
        if let Some((left, same)) = self.hold {
            let mut inputs = inputs(&s);
            if !same {
                inputs.credentials_version = Some("older".into());
            }
            s.hold = Some(Hold { left: Duration::from_secs(left), inputs });
        }
        s
    }

    fn decide(self) -> Plan {
        decide(&self.snapshot(), &Settings::default())
    }
}

/// The plan of a rotating token that changes nothing but what is listed.
fn rotating(rotate: Option<(Trigger, Option<Call>)>) -> Converge {
    Converge {
        finalizer: None,
        claim: None,
        release_stale: false,
        token: Some(TokenPlan::Rotating(Rotating {
            rotate: rotate.map(|(trigger, call)| Rotate { trigger, call }),
            check_expiry: None,
            publish: true,
            handled_request: None,
        })),
        restart: None,
        invalid: None,
        warnings: Vec::new(),
    }
}

fn keep() -> Converge {
    rotating(None)
}

fn rotate(trigger: Trigger, call: Call) -> Converge {
    rotating(Some((trigger, Some(call))))
}

fn refused(invalid: Invalid) -> Converge {
    Converge {
        finalizer: None,
        claim: None,
        release_stale: false,
        token: None,
        restart: None,
        invalid: Some(invalid),
        warnings: Vec::new(),
    }
}

/// A missing key; the tables leave out which keys were there (see `without_messages`).
fn missing(key: &'static str) -> Invalid {
    credentials_problem(CredentialsError::Missing { key, present: Vec::new() })
}

fn credentials_problem(problem: CredentialsError) -> Invalid {
    Invalid::Credentials { name: "bot-creds".into(), problem }
}

fn wrong_refresh_token(value: &str) -> Invalid {
    credentials_problem(refresh_token_problem(&SecretString::from(value)).expect("a wrong kind"))
}

fn spec_error(text: &str) -> Invalid {
    Invalid::Spec(text.into())
}

impl Converge {
    /// Ask auth.test for the real expiry; rotate with `call` if the token is dead.
    fn check_expiry(mut self, call: Call) -> Self {
        if let Some(TokenPlan::Rotating(r)) = &mut self.token {
            r.check_expiry = Some(call);
        }
        self
    }
    fn handled(mut self, request: &str) -> Self {
        if let Some(TokenPlan::Rotating(r)) = &mut self.token {
            r.handled_request = Some(request.into());
        }
        self
    }
    fn claim(mut self, label: bool, hold: Option<bool>) -> Self {
        self.claim = Some(Claim { label, hold });
        self
    }
    fn finalizer(mut self, add: bool) -> Self {
        self.finalizer = Some(add);
        self
    }
    fn release_stale(mut self) -> Self {
        self.release_stale = true;
        self
    }
    fn unpublished(mut self, invalid: Invalid) -> Self {
        if let Some(TokenPlan::Rotating(r)) = &mut self.token {
            r.publish = false;
        }
        self.invalid = Some(invalid);
        self
    }
    fn restart(mut self, targets: Vec<RolloutRestartTarget>, pending: bool) -> Self {
        self.restart = Some(Restart { targets, pending });
        self
    }
    fn warning(mut self, reason: EventReason) -> Self {
        self.warnings.push(Warning { reason, message: String::new() });
        self
    }
}

fn manual_plan(stamp_issued_at: bool, hand_over: Option<HandOver>, health_check: bool) -> Converge {
    Converge {
        finalizer: None,
        claim: None,
        release_stale: false,
        token: Some(TokenPlan::Manual(Manual {
            kind: ManualKind::HubotLita,
            period: Duration::from_secs(90 * 24 * H),
            stamp_issued_at,
            hand_over,
            health_check,
        })),
        restart: None,
        invalid: None,
        warnings: Vec::new(),
    }
}

/// Warning messages are long prose; the tables compare their reasons only. Likewise the keys
/// listed with a missing one.
fn without_messages(plan: Plan) -> Plan {
    match plan {
        Plan::Converge(mut c) => {
            c.warnings.iter_mut().for_each(|w| w.message.clear());
            if let Some(Invalid::Credentials { problem: CredentialsError::Missing { present, .. }, .. }) =
                &mut c.invalid
            {
                present.clear();
            }
            Plan::Converge(c)
        }
        other => other,
    }
}

fn check(table: Vec<(&str, World, Plan)>) {
    for (row, world, expected) in table {
        assert_eq!(without_messages(world.decide()), expected, "{row}");
    }
}

use Plan::Converge as C;

#[test]
fn rotating_tokens_rotate_when_due_asked_or_needed_and_not_otherwise() {
    check(vec![
        ("fresh token, not due: keep and publish", oauth(), C(keep())),
        ("just before the due time (expiry − 2h)", oauth().at(9.99), C(keep())),
        ("at the due time", oauth().at(10.0), C(rotate(Trigger::Due, Call::RefreshOAuth))),
        (
            "no access token yet: the first one",
            oauth().creds_data("accessToken", None),
            C(rotate(Trigger::FirstToken, Call::RefreshOAuth)),
        ),
        (
            "an access token saved without an expiry (by an older version): rotated to learn one",
            oauth().creds_data("expiresAt", None),
            C(rotate(Trigger::FirstToken, Call::RefreshOAuth)),
        ),
        (
            "an access token of unknown age and expiry (put there by a person)",
            oauth().creds_data("expiresAt", None).creds_meta(|m| m.annotations = None),
            C(rotate(Trigger::FirstToken, Call::RefreshOAuth)),
        ),
        (
            "rotationPeriod shorter than the token's life",
            oauth().spec(|s| s.rotation_period = Some(GoDuration(Duration::from_secs(H)))).at(1.0),
            C(rotate(Trigger::Due, Call::RefreshOAuth)),
        ),
        (
            "app configuration token at the due time",
            oauth().spec(|s| s.token_type = TokenType::AppConfiguration).at(10.0),
            C(rotate(Trigger::Due, Call::RotateConfigToken)),
        ),
        (
            "a long-lived token to move onto rotation: exchanged once",
            oauth().creds_data("refreshToken", None).creds_data("legacyToken", Some("xoxb-old")),
            C(rotate(Trigger::Exchange, Call::Exchange)),
        ),
        ("suspended and due: nothing but publish", oauth().spec(|s| s.suspend = true).at(11.0), C(keep())),
    ]);
}

#[test]
fn an_assumed_expiry_is_checked_with_slack_at_once_and_every_few_minutes_until_known() {
    let checked = |call| C(keep().check_expiry(call));
    check(vec![
        ("a known expiry is never checked", oauth().at(5.0), C(keep())),
        ("assumed, never checked: check now", oauth().expiry_assumed(), checked(Call::RefreshOAuth)),
        (
            "assumed, checked for the token before (before this one's issue): check now",
            oauth().expiry_assumed().status(|s| s.last_check_time = Some("2025-12-31T23:30:00Z".into())),
            checked(Call::RefreshOAuth),
        ),
        ("assumed, checked a minute ago: wait", oauth().expiry_assumed().last_check(59.0 / 60.0), C(keep())),
        (
            "assumed, checked 5 minutes ago: check",
            oauth().expiry_assumed().last_check(55.0 / 60.0),
            checked(Call::RefreshOAuth),
        ),
        (
            "an app configuration token is rotated its own way if dead",
            oauth().spec(|s| s.token_type = TokenType::AppConfiguration).expiry_assumed(),
            checked(Call::RotateConfigToken),
        ),
        (
            "assumed and half its assumed life gone: rotated, not checked",
            oauth().expiry_assumed().at(6.0),
            C(rotate(Trigger::Due, Call::RefreshOAuth)),
        ),
        (
            "assumed, just before half its life: checked",
            oauth().expiry_assumed().at(5.99),
            checked(Call::RefreshOAuth),
        ),
        (
            "suspended: nothing to do if dead, not checked",
            oauth().expiry_assumed().spec(|s| s.suspend = true),
            C(keep()),
        ),
        (
            "no refresh token to rotate with: not checked (said when due)",
            oauth().expiry_assumed().creds_data("refreshToken", None),
            C(keep()),
        ),
        (
            "Manual tokens have their own health check",
            manual().expiry_assumed().at(0.5),
            C(manual_plan(false, None, false)),
        ),
    ]);
}

#[test]
fn a_rotate_request_fires_once_per_value() {
    check(vec![
        (
            "a new value: rotate now",
            oauth().annotate(ROTATE_ANNOTATION, "1"),
            C(rotate(Trigger::Requested, Call::RefreshOAuth).handled("1")),
        ),
        (
            "the value status records as handled",
            oauth().annotate(ROTATE_ANNOTATION, "1").status(|s| s.last_rotate_request = Some("1".into())),
            C(keep().handled("1")),
        ),
        (
            "handled by a rotation whose status write was lost (saved with the tokens)",
            oauth().annotate(ROTATE_ANNOTATION, "1").creds_meta(|m| {
                drop(
                    m.annotations
                        .get_or_insert_with(Default::default)
                        .insert(ROTATED_FOR_ANNOTATION.into(), "1".into()),
                )
            }),
            C(keep().handled("1")),
        ),
        (
            "a due rotation satisfies a pending request too",
            oauth().annotate(ROTATE_ANNOTATION, "2").at(10.0),
            C(rotate(Trigger::Requested, Call::RefreshOAuth).handled("2")),
        ),
        (
            "Manual tokens have nothing to rotate",
            manual().annotate(ROTATE_ANNOTATION, "1"),
            C(manual_plan(false, None, false)),
        ),
    ]);
}

#[test]
fn a_pair_slack_already_issued_is_saved_before_anything_else() {
    let save = || rotating(Some((Trigger::SavePending, None)));
    let conflict = Invalid::OutputSecretConflict { name: "bot-token".into() };
    check(vec![
        ("not due: saved all the same", oauth().pending(), C(save())),
        ("suspended: saved all the same", oauth().pending().spec(|s| s.suspend = true), C(save())),
        ("while a failure is held", oauth().pending().held(300, true), C(save())),
        (
            "the output Secret is someone else's: saved, not published",
            oauth().pending().output_of_someone_else(),
            C(save().unpublished(conflict)),
        ),
    ]);
}

#[test]
fn a_held_failure_waits_until_its_time_or_a_change() {
    check(vec![
        ("held, nothing changed", oauth().at(10.0).held(42, true), Plan::Wait(Duration::from_secs(42))),
        (
            "held, the credentials Secret changed",
            oauth().at(10.0).held(42, false),
            C(rotate(Trigger::Due, Call::RefreshOAuth)),
        ),
        (
            "held, a new rotate request",
            oauth().held(42, true).annotate(ROTATE_ANNOTATION, "9"),
            C(rotate(Trigger::Requested, Call::RefreshOAuth).handled("9")),
        ),
    ]);
}

#[test]
fn credentials_are_claimed_before_their_content_is_judged() {
    let unlabelled = || oauth().creds_meta(|m| m.labels = None);
    check(vec![
        (
            "no credentials Secret",
            oauth().no_credentials(),
            C(refused(Invalid::CredentialsNotFound { name: "bot-creds".into() })),
        ),
        (
            "labelled for another SlackToken",
            oauth().creds_meta(|m| m.labels = Some([(SLACKTOKEN_LABEL.into(), "other".into())].into())),
            C(refused(Invalid::CredentialsInUse { name: "bot-creds".into(), owner: "other".into() })),
        ),
        ("not labelled yet: label it", unlabelled(), C(keep().claim(true, None))),
        (
            "not labelled, content unusable: label it, then say so",
            unlabelled().creds_data("expiresAt", Some("tomorrow")),
            C(refused(Invalid::Credentials {
                name: "bot-creds".into(),
                problem: CredentialsError::BadExpiry,
            })
            .claim(true, None)),
        ),
        (
            "due, client secret missing: no Slack call",
            oauth().at(10.0).creds_data("clientSecret", None),
            C(refused(missing("clientSecret"))),
        ),
        (
            "due, refresh token missing",
            oauth().at(10.0).creds_data("refreshToken", None),
            C(refused(missing("refreshToken"))),
        ),
        (
            "suspended and never had an access token",
            oauth().spec(|s| s.suspend = true).creds_data("accessToken", None),
            C(refused(missing("accessToken"))),
        ),
        (
            "the spec changed since status was written: release Secrets it held before",
            oauth().generation(2),
            C(keep().release_stale()),
        ),
    ]);
}

#[test]
fn a_value_that_is_not_the_token_its_key_is_for_never_goes_to_slack() {
    let save = || rotating(Some((Trigger::SavePending, None)));
    let legacy = |value: &str| {
        oauth()
            .creds_data("refreshToken", None)
            .creds_data("accessToken", None)
            .creds_data("legacyToken", Some(value))
    };
    check(vec![
        (
            "a bot token as refresh token, due",
            oauth().at(10.0).creds_data("refreshToken", Some("xoxb-1-abc")),
            C(refused(wrong_refresh_token("xoxb-1-abc"))),
        ),
        (
            "a URL as refresh token, first token",
            oauth().creds_data("accessToken", None).creds_data("refreshToken", Some("https://example.com/x")),
            C(refused(wrong_refresh_token("https://example.com/x"))),
        ),
        (
            "an access token as refresh token, not due yet: said at once",
            oauth().creds_data("refreshToken", Some("xoxe.xoxb-1-abc")),
            C(refused(wrong_refresh_token("xoxe.xoxb-1-abc"))),
        ),
        (
            "an app configuration token's refresh token is checked the same",
            oauth()
                .spec(|s| s.token_type = TokenType::AppConfiguration)
                .creds_data("refreshToken", Some("xoxp-1")),
            C(refused(wrong_refresh_token("xoxp-1"))),
        ),
        (
            "a refresh token as legacyToken",
            legacy("xoxe-1-abc"),
            C(refused(credentials_problem(legacy_token_problem(&SecretString::from("xoxe-1-abc")).unwrap()))),
        ),
        (
            "a long-lived bot token as legacyToken: exchanged",
            legacy("xoxb-1-abc"),
            C(rotate(Trigger::Exchange, Call::Exchange)),
        ),
        (
            "a pair Slack already gave is saved whatever the Secret holds",
            oauth().pending().creds_data("refreshToken", Some("xoxb-1-abc")),
            C(save()),
        ),
        (
            "suspended: not rotated, so not judged",
            oauth().spec(|s| s.suspend = true).creds_data("refreshToken", Some("xoxb-1-abc")),
            C(keep()),
        ),
        (
            "a value too large to be a token: claimed, then refused",
            oauth().creds_meta(|m| m.labels = None).creds_data("refreshToken", Some(&"x".repeat(1 << 20))),
            C(refused(credentials_problem(CredentialsError::TooLarge {
                key: "refreshToken",
                bytes: 1 << 20,
            }))
            .claim(true, None)),
        ),
    ]);
}

#[test]
fn an_output_secret_of_someone_else_stops_a_rotation_before_slack_is_called() {
    let conflict = Invalid::OutputSecretConflict { name: "bot-token".into() };
    check(vec![
        ("due", oauth().at(10.0).output_of_someone_else(), C(refused(conflict.clone()))),
        (
            "first token",
            oauth().creds_data("accessToken", None).output_of_someone_else(),
            C(refused(conflict.clone())),
        ),
        ("Manual", manual().output_of_someone_else(), C(refused(conflict))),
        (
            "made by us for a SlackToken of the same name (deleted and created again)",
            oauth().at(10.0).output_of_someone_else().spec(|_| {}).with_output_labels(),
            C(rotate(Trigger::Due, Call::RefreshOAuth)),
        ),
    ]);
}

impl World {
    fn with_output_labels(mut self) -> Self {
        self.output.as_mut().unwrap().metadata.labels = Some(
            [
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (SLACKTOKEN_LABEL.to_owned(), "bot".to_owned()),
            ]
            .into(),
        );
        self
    }
}

#[test]
fn revoke_on_delete_adds_and_removes_finalizers_on_both_objects() {
    let held = |w: World| w.creds_meta(|m| m.finalizers = Some(vec![REVOKE_FINALIZER.into()]));
    check(vec![
        (
            "turned on",
            oauth().spec(|s| s.revoke_on_delete = true),
            C(keep().finalizer(true).claim(false, Some(true))),
        ),
        ("on, both held", held(oauth().spec(|s| s.revoke_on_delete = true).finalizer()), C(keep())),
        ("turned off", held(oauth().finalizer()), C(keep().finalizer(false).claim(false, Some(false)))),
    ]);
}

#[test]
fn a_deleted_slacktoken_is_revoked_only_when_it_asked_and_can_be() {
    check(vec![
        ("no finalizer of ours", oauth().deleting(), Plan::Nothing),
        ("revokeOnDelete", oauth().finalizer().deleting(), Plan::Finalize(Finalize::Revoke)),
        (
            "skip-revoke annotation",
            oauth().finalizer().deleting().annotate(SKIP_REVOKE_ANNOTATION, "true"),
            Plan::Finalize(Finalize::Skip(format!(
                "{SKIP_REVOKE_ANNOTATION} is set: the token was not revoked"
            ))),
        ),
        (
            "credentials no longer readable",
            oauth().finalizer().deleting().creds_data("accessToken", Some("a b")),
            Plan::Finalize(Finalize::Skip(
                "credentials Secret bot-creds cannot be read (key `accessToken` has whitespace or control characters inside its value, which a Slack token never has (around it they are ignored); put the token alone there): nothing was revoked".into(),
            )),
        ),
        (
            "credentials already gone",
            oauth().finalizer().deleting().no_credentials(),
            Plan::Finalize(Finalize::Skip(
                "credentials Secret bot-creds holds no token any more (deleted first?): nothing was revoked"
                    .into(),
            )),
        ),
    ]);
}

#[test]
fn an_unusable_spec_is_refused_with_what_is_wrong() {
    check(vec![
        (
            "output and credentials the same Secret",
            oauth().spec(|s| s.secret_ref.name = "bot-creds".into()),
            C(refused(spec_error(
                "credentialsRef and secretRef name the same Secret; the output Secret must be a separate one",
            ))),
        ),
        (
            "zero rotationPeriod",
            oauth().spec(|s| s.rotation_period = Some(GoDuration(Duration::ZERO))),
            C(refused(spec_error("rotationPeriod must be greater than zero"))),
        ),
        (
            "Manual without manual settings",
            manual().spec(|s| s.manual = None),
            C(refused(spec_error("type Manual needs spec.manual.kind"))),
        ),
        (
            "Manual without rotationPeriod",
            manual().spec(|s| s.rotation_period = None),
            C(refused(spec_error(
                "type Manual needs rotationPeriod: how often a person should re-issue the token",
            ))),
        ),
        (
            "a short rotationPeriod works, with a warning",
            oauth().spec(|s| s.rotation_period = Some(GoDuration(Duration::from_secs(1800)))).at(0.25),
            C(keep().warning(EventReason::ShortRotationPeriod)),
        ),
    ]);
}

#[test]
fn long_lived_tokens_are_checked_taken_over_and_timed_but_never_rotated() {
    let hand_over = HandOver { revoke_replaced: true, allow_identity_change: false };
    check(vec![
        ("checked within the interval", manual(), C(manual_plan(false, None, false))),
        ("health check due", manual().at(6.0), C(manual_plan(false, None, true))),
        ("never checked", manual().status(|s| s.last_check_time = None), C(manual_plan(false, None, true))),
        (
            "first seen: its period starts now",
            manual().creds_meta(|m| m.annotations = None),
            C(manual_plan(true, None, false)),
        ),
        (
            "a person supplied pendingToken",
            manual().creds_data("pendingToken", Some("xoxb-new")),
            C(manual_plan(false, Some(hand_over), false)),
        ),
        ("no accessToken", manual().creds_data("accessToken", None), C(refused(missing("accessToken")))),
        (
            "past its rotation period: still published, never rotated",
            manual().at(91.0 * 24.0),
            C(manual_plan(false, None, true)),
        ),
    ]);
}

#[test]
fn a_replacement_must_belong_to_the_same_team_and_unless_allowed_the_same_user() {
    let who = |team: &str, user: &str| AuthTest {
        team_id: Some(team.into()),
        user_id: Some(user.into()),
        ..Default::default()
    };
    let id = |team: &str, user: &str| crate::resource::Identity {
        team_id: Some(team.into()),
        user_id: Some(user.into()),
        ..Default::default()
    };
    let table: Vec<(&str, Option<crate::resource::Identity>, AuthTest, bool, bool)> = vec![
        ("same team, same user", Some(id("T1", "U1")), who("T1", "U1"), false, true),
        ("another team", Some(id("T1", "U1")), who("T2", "U1"), true, false),
        ("same team, another user", Some(id("T1", "U1")), who("T1", "U2"), false, false),
        ("same team, another user, allowed", Some(id("T1", "U1")), who("T1", "U2"), true, true),
        ("nothing to compare with", None, who("T1", "U1"), true, false),
    ];
    for (row, reference, new, allow, accepted) in table {
        assert_eq!(accept_replacement(reference.as_ref(), &new, allow).is_ok(), accepted, "{row}");
    }
}

fn web() -> Vec<RolloutRestartTarget> {
    vec![RolloutRestartTarget { kind: crate::resource::WorkloadKind::Deployment, name: "web".into() }]
}

fn marked(w: World) -> World {
    w.output_meta(|m| {
        m.annotations
            .get_or_insert_with(Default::default)
            .insert(RESTART_PENDING_ANNOTATION.into(), T0.into());
    })
}

#[test]
fn rollout_restart_targets_are_restarted_after_publishing_and_a_pending_restart_is_not_lost() {
    check(vec![
        ("no targets, no mark: no restart step", oauth(), C(keep())),
        (
            "targets: restarted if publishing changes the token",
            oauth().spec(|s| s.rollout_restart_targets = web()),
            C(keep().restart(web(), false)),
        ),
        (
            "targets and a mark: a restart is owed",
            marked(oauth().spec(|s| s.rollout_restart_targets = web())),
            C(keep().restart(web(), true)),
        ),
        ("a mark but no targets any more: cleared", marked(oauth()), C(keep().restart(vec![], true))),
        (
            "targets at the due time: rotated, then restarted",
            oauth().spec(|s| s.rollout_restart_targets = web()).at(10.0),
            C(rotate(Trigger::Due, Call::RefreshOAuth).restart(web(), false)),
        ),
        (
            "nothing can be published: nothing to restart",
            oauth().spec(|s| s.rollout_restart_targets = web()).creds_data("clientId", None).at(10.0),
            C(refused(missing("clientId"))),
        ),
    ]);
}

#[test]
fn targets_are_restarted_when_the_token_changed_or_a_restart_is_owed() {
    let restart = |targets, pending| Restart { targets, pending };
    // (restart step, token changed by this publish, restart now, leave the mark when publishing)
    let table = [
        (restart(web(), false), false, false, true),
        (restart(web(), false), true, true, true),
        (restart(web(), true), false, true, true),
        (restart(vec![], true), true, false, false),
    ];
    for (step, changed, now, mark) in table {
        assert_eq!((step.now(changed), step.mark()), (now, mark), "{step:?} changed={changed}");
    }
}

#[test]
fn the_restart_mark_goes_once_the_restarts_it_owes_are_made_or_cannot_be() {
    use crate::error::RestartFailure::{Failed, Forbidden, NotFound};
    let restart = |targets, pending| Restart { targets, pending };
    let made = |failure| web().into_iter().map(|t| (t, failure)).collect::<Vec<_>>();
    // (row, restart step, token changed by this publish, restarts made, clear the mark)
    let table = [
        ("nothing changed, nothing owed", restart(web(), false), false, vec![], false),
        ("changed and restarted", restart(web(), false), true, made(None), true),
        ("owed and restarted", restart(web(), true), false, made(None), true),
        ("restart failed: retried, mark kept", restart(web(), true), false, made(Some(Failed)), false),
        ("target not found: not retried", restart(web(), true), false, made(Some(NotFound)), true),
        ("forbidden: not retried", restart(web(), false), true, made(Some(Forbidden)), true),
        ("targets removed: a mark left is cleared", restart(vec![], true), false, vec![], true),
        ("no targets, token changed: never marked", restart(vec![], false), true, vec![], false),
    ];
    for (row, step, changed, restarts, clear) in table {
        assert_eq!(step.clear_mark(changed, &restarts), clear, "{row}");
    }
}

#[test]
fn a_refused_refresh_token_is_a_broken_chain_only_if_we_saved_it_and_it_is_still_there() {
    let config = || oauth().spec(|s| s.token_type = TokenType::AppConfiguration);
    let chain_broken = |config_token| Refused::ChainBroken { app_id: Some("A1".into()), config_token };
    let holding = |refresh: &str| secret("bot-creds", &[("refreshToken", refresh)]);
    // (row, world, the credentials Secret read again after the refusal, what the refusal means)
    let table = [
        ("saved by us, still there", oauth(), Some(holding("xoxe-1-r")), chain_broken(false)),
        ("an app configuration token's", config(), Some(holding("xoxe-1-r")), chain_broken(true)),
        (
            "put in by a person (no issue time): maybe simply wrong",
            oauth().creds_meta(|m| m.annotations = None),
            Some(holding("xoxe-1-r")),
            Refused::Rejected,
        ),
        ("another replica saved its successor", oauth(), Some(holding("xoxe-1-next")), Refused::Superseded),
        (
            "the Secret holds no refresh token now",
            oauth(),
            Some(secret("bot-creds", &[])),
            Refused::Superseded,
        ),
        ("the Secret is gone", oauth(), None, Refused::Superseded),
    ];
    for (row, world, now_held, expected) in table {
        let s = world
            .status(|st| {
                st.identity =
                    Some(crate::resource::Identity { app_id: Some("A1".into()), ..Default::default() })
            })
            .snapshot();
        let Some(Ok(creds)) = s.credentials.as_ref().map(|c| &c.parsed) else {
            panic!("{row}: credentials parse")
        };
        let presented = creds.refresh_token.clone().expect("a refresh token was presented");
        assert_eq!(
            refused_refresh_token(&s.slacktoken, creds, &presented, now_held.as_ref()),
            expected,
            "{row}"
        );
    }
}

#[test]
fn the_output_secret_may_be_written_when_absent_or_ours() {
    let conflict = Some(Invalid::OutputSecretConflict { name: "bot-token".into() });
    // (row, world, whether the output Secret is someone else's)
    let table = [
        ("owned by this SlackToken", oauth(), None),
        ("absent", oauth().no_output(), None),
        ("someone else's", oauth().output_of_someone_else(), conflict.clone()),
        (
            "made by us for a SlackToken of this name",
            oauth().output_of_someone_else().with_output_labels(),
            None,
        ),
        (
            "labelled for another SlackToken",
            oauth().output_of_someone_else().with_output_labels().output_meta(|m| {
                m.labels.as_mut().unwrap().insert(SLACKTOKEN_LABEL.into(), "other".into());
            }),
            conflict,
        ),
    ];
    for (row, world, expected) in table {
        let s = world.snapshot();
        assert_eq!(output_conflict(&s.slacktoken, s.output.as_ref()), expected, "{row}");
    }
}

#[test]
fn a_call_presents_what_decide_checked_it_needs_and_spends_the_chain_token() {
    // (row, world, call, the token the call spends, or the key that is missing)
    let table = [
        ("refresh", oauth(), Call::RefreshOAuth, Ok("xoxe-1-r")),
        (
            "refresh without client secret",
            oauth().creds_data("clientSecret", None),
            Call::RefreshOAuth,
            Err("clientSecret"),
        ),
        (
            "refresh without refresh token",
            oauth().creds_data("refreshToken", None),
            Call::RefreshOAuth,
            Err("refreshToken"),
        ),
        (
            "config token: no client needed",
            oauth().creds_data("clientId", None),
            Call::RotateConfigToken,
            Ok("xoxe-1-r"),
        ),
        (
            "exchange",
            oauth().creds_data("refreshToken", None).creds_data("legacyToken", Some("xoxb-1-l")),
            Call::Exchange,
            Ok("xoxb-1-l"),
        ),
        (
            "exchange without legacy token",
            oauth().creds_data("refreshToken", None),
            Call::Exchange,
            Err("legacyToken"),
        ),
    ];
    for (row, world, call, expected) in table {
        let s = world.snapshot();
        let Some(Ok(creds)) = s.credentials.as_ref().map(|c| &c.parsed) else {
            panic!("{row}: credentials parse")
        };
        let got = presented(call, creds).map(|p| p.spent().expose_secret().to_owned()).map_err(|e| match e {
            CredentialsError::Missing { key, .. } => key,
            other => panic!("{row}: {other}"),
        });
        assert_eq!(got, expected.map(str::to_owned), "{row}");
        // The spent token is the one the credentials Secret's chain continues from.
        if let Ok(spent) = &got {
            let chain = crate::secrets::chain_token(&s.credentials.as_ref().unwrap().secret).unwrap();
            assert_eq!(chain.expose_secret(), spent, "{row}");
        }
    }
}
