//! tripline: a Kubernetes audit-log analyzer. Decodes kube-apiserver audit events, matches them
//! against Sigma detection rules and renders alerts as Elastic Common Schema documents.

// Input must never panic the daemon, and the library never prints (the command line and the
// logs do). Tests may.
#![warn(
    clippy::unwrap_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::print_stdout,
        clippy::print_stderr,
        reason = "a failing test fails loudly"
    )
)]

pub mod ack;
pub mod alert;
pub mod config;
pub mod detect;
pub mod event;
pub mod fsutil;
pub mod pipeline;
pub mod policy;
pub mod rules;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod tls;
