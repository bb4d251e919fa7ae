//! Telemetry: the daemon's logs (`tracing` to stderr, JSON lines or text), its Prometheus
//! metrics, component health, and the HTTP endpoint that serves `/metrics`, `/healthz` and
//! `/readyz`.
//!
//! - [`metrics`]: every metric family, defined once with typed label sets, on the
//!   `prometheus-client` crate, rendered as OpenMetrics text. Components resolve their handles
//!   once, at build time, and keep them: updating a counter or a gauge never takes a lock.
//! - `health`: readiness per component and liveness ([`Health`], [`HealthHandle`]).
//! - `server`: the HTTP endpoint on its own thread, behind a listener that bounds connections
//!   ([`TelemetryServer`]).
//! - `logging`: the global `tracing` subscriber ([`init_logging`]).
//!
//! Metric names follow the style guide: nouns plus past-tense verbs (`events_received_total`,
//! `lines_skipped_total{reason="too_long"}`), label values from small fixed sets.

mod health;
mod logging;
pub mod metrics;
mod server;

pub use health::{Health, HealthHandle};
pub use logging::{
    init_logging, LogFormat, Warn, WarnLimiter, LOG_FILTER_VAR, SKIPPED_LINE_WARNINGS,
    WARNINGS_PER_WINDOW, WARNING_WINDOW,
};
pub use metrics::{
    AlertLabels, ConsumerLagLabels, Counter, Gauge, Histogram, HistogramFamily, Metrics,
    ReloadLabels, ReloadResult, SinkLabels, SkipLabels, SourceLabels, WebhookRequestLabels,
    WebhookRequests, LATENCY_BUCKETS,
};
pub use server::{TelemetryError, TelemetryServer};
