//! Running the operator: its Kubernetes client, its HTTP endpoints (probes, metrics), its metrics,
//! logs and leader election.

pub mod health;
pub mod http;
pub mod kube_client;
pub mod leader;
pub mod logs;
pub mod metrics;
