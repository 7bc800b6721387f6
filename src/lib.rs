//! slack-token-operator: keeps Slack tokens fresh in Kubernetes Secrets.
//!
//! # How it fits together
//!
//! ```text
//!  Kubernetes API                          this process                                  Slack
//!  ──────────────                          ────────────                                  ─────
//!  SlackTokens ──watch──┐
//!                       ├─► controller ──► reconcile(one SlackToken)
//!  labelled Secrets ────┘   (which changes      │
//!  (metadata only)           wake us)           ├─ observe: SlackToken, credentials Secret,
//!                                               │           output Secret  ◄── GET (never a cache)
//!                                               │           + pending pair, retry hold (memory)
//!                                               ├─ decide:  Snapshot ─► Plan   (pure, table-tested)
//!                                               ├─ act:     the Plan, in one fixed order:
//!                                               │    1-3 finalizers and labels           ──► PATCH
//!                                               │    4   new pair from Slack  ◄──────────────────► oauth.v2.access /
//!                                               │        kept pending, then saved                   tooling.tokens.rotate
//!                                               │        into the credentials Secret     ──► PUT (resourceVersion-guarded)
//!                                               │    5   output Secret                   ──► PUT/POST (only if changed)
//!                                               │    6   rolloutRestartTargets            ──► PATCH apps/v1 pod templates
//!                                               │        (only when 5 changed the token)
//!                                               └─ report:  status, Events, next wake-up ──► PATCH status (only if changed)
//!                                                           (an alarm: `reconcile::alarms` asks the
//!                                                            controller again when it rings)
//!
//!  /healthz /readyz /metrics ◄── ops: probes (watches synced? leader?) and metrics (per token, totals)
//! ```
//!
//! Where state lives:
//! - **credentials Secret** (the user's): the refresh token, access token, expiry and issue time.
//!   The only durable rotation state; everything else is derived from it and can be rebuilt.
//! - **output Secret** (ours, owned by the SlackToken): the access token applications mount.
//! - **SlackToken status**: what people read (conditions, times, identity); never a token.
//! - **memory**: pairs Slack issued whose save has not succeeded yet (`secrets`' pending
//!   pairs: the refresh token they replace is spent, so they are the only copy; with
//!   `--journal-dir` also on disk until saved), retry holds, and when each SlackToken is next due.
//!
//! Modules, from the bottom up (none imports one above it): `clock`, `expiring` (a map whose
//! entries run out), `resource` (the CRD types
//! and the names we put on objects), `slack` (the client and what its errors mean), `error`
//! (every failure, classified once), `secrets` (credentials format and writes, the output
//! Secret, pending pairs), `ops` (the Kubernetes client, metrics, probes, leader election), `reconcile`
//! (observe → decide → act → report), `controller` (watches and the work queue), and beside
//! them `overview` (the `status` command, a client of the API like kubectl) and `plugin` (the
//! `kubectl slacktoken` plugin: status, rotate, hand-over). With the `emulator` feature, `demo`
//! (the `demo` and `emulate` commands, and `demo::ground`, which starts both emulators) sits on
//! top.
//!
//! The modules are private; what is re-exported below is what `main.rs`, the test ground
//! (`crates/testground`, a dev-dependency: the fixtures, the operator as a process, the crash
//! and scale harnesses), the tests and the benches use.
#![forbid(unsafe_code)]

mod clock;
mod conflict;
mod controller;
#[cfg(feature = "emulator")]
pub mod demo;
mod error;
mod expiring;
mod ops;
pub mod overview;
pub mod plugin;
mod reconcile;
mod resource;
mod secrets;
mod slack;

pub use clock::{format_time, SharedClock, SystemClock, TokioClock};
pub use controller::{run, run_scoped, Scope};
pub use ops::{
    health, http, kube_client, leader, logs,
    metrics::{Metrics, TokenGauges},
};
pub use reconcile::{
    schedule::{default_renew_before, until},
    Context, Settings, MAX_CONCURRENT_RECONCILES,
};
pub use resource::{
    crd, crd_yaml, Condition, EventReason, GoDuration, SlackToken, SlackTokenSpec, SlackTokenStatus,
    TokenType, KNOWN_FORMATS, MANAGED_BY, MANAGED_BY_LABEL, RESTARTED_AT_ANNOTATION,
    RESTART_PENDING_ANNOTATION, ROTATE_ANNOTATION,
};
pub use secrets::{oauth_secret, Journal, PendingPairs, Replayed};
pub use slack::{check_slack_url, CallObserver, SlackClient, SlackError};
