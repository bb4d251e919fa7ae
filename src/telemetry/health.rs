//! Component health: readiness per component (`/readyz`) and liveness (`/healthz`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The daemon's health: named components that are each ready or not (served by `/readyz`),
/// plus a liveness flag (served by `/healthz`), which starts true.
#[derive(Debug)]
pub struct Health {
    live: AtomicBool,
    components: Mutex<BTreeMap<String, Arc<AtomicBool>>>,
}

/// Updates one component's readiness. Cloning shares the component.
#[derive(Debug, Clone)]
pub struct HealthHandle {
    name: Arc<str>,
    ready: Arc<AtomicBool>,
}

impl HealthHandle {
    /// Lock-free. A change (not a repeat) is logged at info level.
    pub fn set_ready(&self, ready: bool) {
        // Release: what a component did before declaring itself ready is visible to readers
        // that see it ready.
        if self.ready.swap(ready, Ordering::AcqRel) != ready {
            tracing::info!(component = %self.name, ready, "component readiness changed");
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            live: AtomicBool::new(true),
            components: Mutex::new(BTreeMap::new()),
        })
    }

    /// Declares a component, initially not ready, and returns a handle to update it. Declaring
    /// a name that exists returns a handle to the same component, with its state unchanged.
    /// Components cannot be removed.
    pub fn component(&self, name: &str) -> HealthHandle {
        let mut components = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ready = components
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(AtomicBool::new(false)))
            .clone();
        HealthHandle {
            name: Arc::from(name),
            ready,
        }
    }

    /// A handle that is not part of readiness (for components whose state is reported
    /// elsewhere, e.g. as a metric).
    pub fn detached(name: &str) -> HealthHandle {
        HealthHandle {
            name: Arc::from(name),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// True if and only if at least one component is declared and every component is ready.
    pub fn is_ready(&self) -> bool {
        let components = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        !components.is_empty() && components.values().all(|r| r.load(Ordering::Acquire))
    }

    /// The names of the components that are not ready, sorted.
    pub fn not_ready(&self) -> Vec<String> {
        let components = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        components
            .iter()
            .filter(|(_, r)| !r.load(Ordering::Acquire))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Marks the process as wedged (`false`) so that `/healthz` fails and the kubelet restarts
    /// it, or as alive again (`true`). Lock-free.
    pub fn set_live(&self, live: bool) {
        if self.live.swap(live, Ordering::AcqRel) != live {
            tracing::warn!(live, "liveness changed");
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_every_declared_component() {
        let health = Health::new();
        assert!(!health.is_ready(), "no components declared");
        assert!(health.not_ready().is_empty());

        let source = health.component("source");
        let sink = health.component("sink");
        assert!(!health.is_ready());
        assert_eq!(health.not_ready(), ["sink", "source"]);

        source.set_ready(true);
        assert!(source.is_ready());
        assert_eq!(health.not_ready(), ["sink"]);
        assert!(!health.is_ready());

        sink.set_ready(true);
        sink.set_ready(true);
        assert!(health.is_ready());
        assert!(health.not_ready().is_empty());

        // A later component makes the whole not ready again until it is.
        let rules = health.component("rules");
        assert!(!health.is_ready());
        rules.clone().set_ready(true);
        assert!(health.is_ready());

        source.set_ready(false);
        assert_eq!(health.not_ready(), ["source"]);

        // Declaring an existing name shares the component and keeps its state.
        let source_again = health.component("source");
        assert!(!source_again.is_ready());
        source_again.set_ready(true);
        assert!(source.is_ready());
        assert!(health.is_ready());
        assert_eq!(source_again.name(), "source");
    }

    #[test]
    fn liveness_starts_true_and_can_be_withdrawn() {
        let health = Health::new();
        assert!(health.is_live());
        health.set_live(false);
        assert!(!health.is_live());
        health.set_live(true);
        assert!(health.is_live());
    }
}
