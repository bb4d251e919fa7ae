//! Telemetry: the daemon's logs (`tracing` to stderr, JSON lines or text), a small Prometheus
//! metrics registry, component health, and the HTTP endpoint that serves `/metrics`, `/healthz`
//! and `/readyz`.
//!
//! The registry is deliberately small: counters, gauges and histograms with fixed label names,
//! rendered in the Prometheus text exposition format 0.0.4. A handle is an atomic behind an `Arc`:
//! updating it never takes a lock. The registry's lock is taken only to create a handle and to
//! render, so components create their handles once, at build time, and keep them.
//!
//! Metric names follow the style guide: nouns plus past-tense verbs (`events_received_total`,
//! `lines_skipped_total{reason="too_long"}`), label values from small fixed sets.

mod health;
mod logging;
mod metrics;
mod server;

pub use health::{Health, HealthHandle};
pub use logging::{init_logging, LogFormat, LOG_FILTER_VAR};
pub use metrics::{Counter, Gauge, Histogram, Metrics, LATENCY_BUCKETS};
pub use server::{TelemetryError, TelemetryServer};
