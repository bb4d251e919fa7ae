//! Test support shared by the integration tests and the end-to-end benchmarks: the daemon
//! harness (`daemon`), audit events (`events`), a fault-injecting proxy (`proxy`) and the
//! launcher of the pinned test servers (`servers`).
//!
//! Each test file is its own crate and uses a part of this: `mod support;` then
//! `use support::{daemon, servers};`. Benchmarks include it with
//! `#[path = "../tests/support/mod.rs"] mod support;`.

pub mod daemon;
pub mod events;
pub mod proxy;
pub mod servers;
pub mod slow_endpoint;
