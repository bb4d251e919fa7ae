//! Rule reloads: on SIGHUP and when a rule file changes. A rule set that does not load
//! leaves the running one in place.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::config::Config;
use crate::rules::RuleSet;
use crate::telemetry::{Metrics, ReloadLabels, ReloadResult};

use super::SharedRules;

/// Loads the configured rules; every problem is an error (a daemon does not start half-armed).
pub fn load_rules(cfg: &Config) -> Result<RuleSet, Vec<String>> {
    let loaded = cfg.rules.load(&[], true);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if !loaded.errors.is_empty() {
        return Err(loaded.errors.iter().map(|e| e.to_string()).collect());
    }
    Ok(RuleSet::new(loaded.rules).with_throttle_max_keys(cfg.rules.throttle_max_keys))
}

/// Reloads rules on SIGHUP and when a rule file changes (Kubernetes updates ConfigMap volumes
/// by swapping a symlink, so modification times are read through links).
pub(super) struct Reloader {
    rules: SharedRules,
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
    last_poll: Instant,
    metrics: Arc<Metrics>,
}

impl Reloader {
    pub(super) fn new(cfg: &Config, rules: SharedRules, metrics: Arc<Metrics>) -> Reloader {
        Reloader {
            rules,
            stamp: stamp(cfg),
            last_poll: Instant::now(),
            metrics,
        }
    }

    pub(super) fn poll(&mut self, cfg: &Config) {
        if self.last_poll.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last_poll = Instant::now();
        let now = stamp(cfg);
        if now != self.stamp {
            tracing::info!("rule files changed: reloading rules");
            self.reload(cfg);
        }
    }

    pub(super) fn reload(&mut self, cfg: &Config) {
        self.stamp = stamp(cfg);
        match load_rules(cfg) {
            Ok(set) => {
                let n = set.len();
                if let Ok(mut w) = self.rules.write() {
                    *w = Arc::new(set);
                }
                self.metrics
                    .rule_reloads
                    .get_or_create(&ReloadLabels {
                        result: ReloadResult::Ok,
                    })
                    .inc();
                self.metrics.rules_loaded.set(n as i64);
                tracing::info!(rules = n, "rules reloaded");
            }
            Err(errors) => {
                self.metrics
                    .rule_reloads
                    .get_or_create(&ReloadLabels {
                        result: ReloadResult::Failed,
                    })
                    .inc();
                for e in &errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    problems = errors.len(),
                    "rule reload failed; the previous rules keep running"
                );
            }
        }
    }
}

fn stamp(cfg: &Config) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = cfg.rules.paths.clone();
    while let Some(p) = stack.pop() {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.filter_map(Result::ok).map(|e| e.path()));
                }
            }
            Ok(m) => out.push((p, m.modified().ok(), m.len())),
            Err(_) => out.push((p, None, 0)),
        }
    }
    out.sort();
    out
}
