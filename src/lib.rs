//! slack-token-operator: keeps Slack tokens fresh in Kubernetes Secrets.
#![forbid(unsafe_code)]

pub mod clock;
pub mod crd;
pub mod duration;
