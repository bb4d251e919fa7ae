//! Test support shared by the integration tests and the end-to-end benchmarks: the daemon
//! harness (`daemon`), audit events (`events`), a fault-injecting proxy (`proxy`) and the
//! launcher of the pinned test servers (`servers`).
//!
//! Each test file is its own crate and uses a part of this: `mod support;` then
//! `use support::{daemon, servers};`. Benchmarks include it with
//! `#[path = "../tests/support/mod.rs"] mod support;`.

pub mod daemon;
pub mod events;
pub mod kafka;
pub mod proxy;
pub mod servers;
pub mod slow_endpoint;

/// A port on 127.0.0.1 that no other caller in this process was given and that was free a moment
/// ago, for a server a test starts (the daemon's telemetry, a test server). Ports come from below
/// the kernel's ephemeral range (32768 and up), so that the outgoing connections of the tests do
/// not take one between this check and the server's bind, and from a counter, so that two tests
/// running at once are never handed the same one (a port asked of the kernel with `:0` and
/// released can be handed out again at once).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Each test binary starts at its own place in 10000..30000, by process id.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        10_000 + (std::process::id() % 400) as u16 * 50,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        if !(10_000..30_000).contains(&port) {
            NEXT.store(10_000, Ordering::Relaxed);
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
