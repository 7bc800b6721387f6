//! Wall-clock time, injectable so tests can control it.
//!
//! Rotation schedules are wall-clock facts (Slack's `expires_in`, timestamps in status), while
//! waiting is done with tokio timers. `TokioClock` ties the two together: it reports the wall time
//! at start plus the tokio time elapsed since, so a test that pauses and advances tokio's clock
//! moves every timestamp the controller sees by exactly the same amount.

use jiff::Timestamp;
use std::sync::Arc;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub type SharedClock = Arc<dyn Clock>;

/// The system clock, for production.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Wall time derived from tokio's (possibly paused) clock.
pub struct TokioClock {
    start_wall: Timestamp,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        Self::starting_at(Timestamp::now())
    }

    pub fn starting_at(start_wall: Timestamp) -> Self {
        Self { start_wall, start: tokio::time::Instant::now() }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now().duration_since(self.start);
        // Saturate rather than panic: a clock must never bring the controller down.
        self.start_wall.checked_add(elapsed).unwrap_or(Timestamp::MAX)
    }
}

/// Timestamps in status are RFC 3339 with second precision, like metav1.Time.
pub fn format_time(t: Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = TokioClock::starting_at(start);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(format_time(clock.now()), "2026-01-01T01:00:00Z");
    }
}
