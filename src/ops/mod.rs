//! Running the operator: its HTTP endpoints (probes, metrics), its metrics and leader election.

pub mod health;
pub mod http;
pub mod leader;
pub mod metrics;
