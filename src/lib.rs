//! slack-token-operator: keeps Slack tokens fresh in Kubernetes Secrets.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod clock;
pub mod controller;
pub mod crd;
pub mod credentials;
#[cfg(feature = "emulator")]
pub mod demo;
pub mod duration;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod rotation;
pub mod schedule;
pub mod slack;
