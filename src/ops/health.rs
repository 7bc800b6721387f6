//! What `/readyz` and `/healthz` answer.
//!
//! Ready means "this pod does its job": the leader (or the only replica) once its SlackToken and
//! Secret watches have listed everything once, so that no SlackToken is missed; a standby once it
//! knows it is one (it has nothing to watch, and must be Ready for a rolling update to go on).
//! Live means the controller is still running; the probes are served on the same runtime as the
//! controller, so a wedged runtime fails them too.

use std::sync::Mutex;

/// Where leader election stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `--leader-elect` is off: this replica is the only one.
    Only,
    /// The Lease has not been read yet.
    Unknown,
    /// Another replica holds the Lease; this one waits.
    Standby,
    Leader,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub role: Role,
    /// Whether the controller started its watches.
    pub started: bool,
    /// Watches that have not yet listed everything once.
    pub unsynced_watches: usize,
    /// Whether the controller has stopped (shutdown, or a fatal error).
    pub stopped: bool,
}

impl Default for State {
    fn default() -> Self {
        Self { role: Role::Only, started: false, unsynced_watches: 0, stopped: false }
    }
}

/// `Ok` if ready, else why not (the body of the 503).
pub fn readiness(s: &State) -> Result<(), &'static str> {
    match s.role {
        Role::Unknown => return Err("leader election: the Lease has not been read yet"),
        Role::Standby => return Ok(()),
        Role::Only | Role::Leader => {}
    }
    if s.stopped {
        Err("the controller has stopped")
    } else if !s.started {
        Err("the controller has not started its watches")
    } else if s.unsynced_watches > 0 {
        Err("the SlackToken and Secret watches have not synced yet")
    } else {
        Ok(())
    }
}

/// `Ok` while the process can make progress.
pub fn liveness(s: &State) -> Result<(), &'static str> {
    if s.stopped {
        Err("the controller has stopped")
    } else {
        Ok(())
    }
}

/// The shared state, updated by the controller and leader election, read by the probes.
#[derive(Debug, Default)]
pub struct Health {
    state: Mutex<State>,
}

impl Health {
    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_role(&self, role: Role) {
        self.update(|s| s.role = role);
    }

    /// The controller starts `watches` watches; each reports [`Health::watch_synced`] once.
    pub fn watches_started(&self, watches: usize) {
        self.update(|s| {
            s.started = true;
            s.unsynced_watches += watches;
        });
    }

    pub fn watch_synced(&self) {
        self.update(|s| s.unsynced_watches = s.unsynced_watches.saturating_sub(1));
    }

    pub fn stopped(&self) {
        self.update(|s| s.stopped = true);
    }

    pub fn readiness(&self) -> Result<(), &'static str> {
        readiness(&self.state())
    }

    pub fn liveness(&self) -> Result<(), &'static str> {
        liveness(&self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_once_the_watches_synced_or_as_a_known_standby() {
        let s =
            |role, started, unsynced, stopped| State { role, started, unsynced_watches: unsynced, stopped };
        // (state, ready, live)
        let table = [
            (s(Role::Only, false, 0, false), false, true),
            (s(Role::Only, true, 2, false), false, true),
            (s(Role::Only, true, 1, false), false, true),
            (s(Role::Only, true, 0, false), true, true),
            (s(Role::Only, true, 0, true), false, false),
            (s(Role::Unknown, false, 0, false), false, true),
            (s(Role::Standby, false, 0, false), true, true),
            (s(Role::Leader, true, 2, false), false, true),
            (s(Role::Leader, true, 0, false), true, true),
        ];
        for (state, ready, live) in table {
            assert_eq!((readiness(&state).is_ok(), liveness(&state).is_ok()), (ready, live), "{state:?}");
        }
    }
}
