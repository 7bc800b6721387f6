//! Fault injection and request statistics, shared between the HTTP layer and the test
//! through cheap clone handles.

use crate::error::ApiError;
use crate::verbs::State;
use rand::{rngs::StdRng, RngExt, SeedableRng};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// API verbs as the real server's audit/RBAC layer names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Verb::Get | Verb::List | Verb::Watch)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Requests served per verb (discovery and other non-resource requests are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub get: u64,
    pub list: u64,
    pub watch: u64,
    pub create: u64,
    pub update: u64,
    pub patch: u64,
    pub delete: u64,
}

impl Stats {
    /// create + update + patch + delete.
    pub fn writes(&self) -> u64 {
        self.create + self.update + self.patch + self.delete
    }

    pub(crate) fn record(&mut self, verb: Verb) {
        match verb {
            Verb::Get => self.get += 1,
            Verb::List => self.list += 1,
            Verb::Watch => self.watch += 1,
            Verb::Create => self.create += 1,
            Verb::Update => self.update += 1,
            Verb::Patch => self.patch += 1,
            Verb::Delete | Verb::DeleteCollection => self.delete += 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Failure {
    verb: Verb,
    resource: String,
    subresource: Option<String>,
    remaining: u32,
    code: u16,
}

#[derive(Debug)]
struct Latency {
    verb: Option<Verb>,
    resource: Option<String>,
    delay: Duration,
    /// Up to this much more, drawn for each request.
    spread: Option<(Duration, StdRng)>,
}

impl Latency {
    fn draw(&mut self) -> Duration {
        match &mut self.spread {
            Some((spread, rng)) if !spread.is_zero() => {
                self.delay + Duration::from_nanos(rng.random_range(0..=spread.as_nanos() as u64))
            }
            _ => self.delay,
        }
    }
}

#[derive(Default)]
pub(crate) struct FaultRules {
    failures: Vec<Failure>,
    latencies: Vec<Latency>,
}

/// Handle for injecting faults into a running emulator.
#[derive(Clone)]
pub struct Faults {
    pub(crate) rules: Arc<Mutex<FaultRules>>,
    pub(crate) state: Arc<Mutex<State>>,
}

fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    }
}

impl Faults {
    /// Fails the next `times` requests matching `verb` on `resource` (plural, e.g. "secrets")
    /// and `subresource` (None = main resource only) with `code` and a proper Status body.
    pub fn fail_next(&self, verb: Verb, resource: &str, subresource: Option<&str>, times: u32, code: u16) {
        if let Ok(mut r) = self.rules.lock() {
            r.failures.push(Failure {
                verb,
                resource: resource.to_string(),
                subresource: subresource.map(String::from),
                remaining: times,
                code,
            });
        }
    }

    /// Delays matching requests (None matches any verb / resource) by `delay` of tokio time.
    pub fn add_latency(&self, verb: Option<Verb>, resource: Option<&str>, delay: Duration) {
        if let Ok(mut r) = self.rules.lock() {
            r.latencies.push(Latency { verb, resource: resource.map(String::from), delay, spread: None });
        }
    }

    /// Delays matching requests (None matches any verb / resource) by a time drawn evenly
    /// from `least..=most` for each request, as a loaded API server and network do: concurrent
    /// requests overtake one another. Seeded: the same seed draws the same delays in the same
    /// order of requests.
    pub fn add_latency_between(
        &self,
        verb: Option<Verb>,
        resource: Option<&str>,
        least: Duration,
        most: Duration,
        seed: u64,
    ) {
        if let Ok(mut r) = self.rules.lock() {
            r.latencies.push(Latency {
                verb,
                resource: resource.map(String::from),
                delay: least,
                spread: Some((most.saturating_sub(least), StdRng::seed_from_u64(seed))),
            });
        }
    }

    /// Removes all failure and latency rules.
    pub fn clear(&self) {
        if let Ok(mut r) = self.rules.lock() {
            *r = FaultRules::default();
        }
    }

    /// Ends every open watch stream (clients see the connection end and must re-watch).
    pub fn cut_watches(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.store.cut_watches();
        }
    }

    /// Forgets the event history: watching or exact-listing from any resourceVersion older
    /// than the current one now gets 410 Gone.
    pub fn compact(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.store.compact();
        }
    }

    /// The latency to add and the error to return (if any) for a request.
    pub(crate) fn check(
        &self,
        verb: Verb,
        resource: &str,
        subresource: Option<&str>,
    ) -> (Duration, Option<ApiError>) {
        let Ok(mut r) = self.rules.lock() else {
            return (Duration::ZERO, None);
        };
        let delay = r
            .latencies
            .iter_mut()
            .filter(|l| {
                l.verb.is_none_or(|v| v == verb) && l.resource.as_deref().is_none_or(|x| x == resource)
            })
            .map(Latency::draw)
            .sum();
        let mut error = None;
        if let Some(f) = r.failures.iter_mut().find(|f| {
            f.remaining > 0
                && f.verb == verb
                && f.resource == resource
                && f.subresource.as_deref() == subresource
        }) {
            f.remaining -= 1;
            error = Some(ApiError::new(
                f.code,
                reason_for(f.code),
                format!("injected fault: {verb} {resource} failed with {}", f.code),
            ));
        }
        r.failures.retain(|f| f.remaining > 0);
        (delay, error)
    }
}
