//! End-to-end tests of the Slack emulator over real HTTP; each test is named after the Slack behaviour
//! it pins. One test binary (with modules) keeps link time down.

mod common;

mod admin;
mod auth;
mod exchange;
mod faults;
mod rotation;
