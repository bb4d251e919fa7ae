//! Reloads: on SIGHUP and when the config file or a rule file changes, the config file is read
//! again and its rules swapped in. What cannot change live (sources, sinks, ...) is refused
//! with a clear log and a `failed` count, and so is a rule set that does not load.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{Config, ConfigFile};
use crate::detect::Detector;
use crate::rules::baseline::Baselines;
use crate::rules::RuleSet;
use crate::telemetry::{Metrics, ReloadLabels, ReloadResult};

use super::SharedRules;

/// Loads the configured rules; every problem is an error (a daemon does not start half-armed).
pub fn load_rules(cfg: &Config) -> Result<RuleSet, Vec<String>> {
    let loaded = cfg.rules.load_for_detection(&[], true);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    for w in crate::source::partition_warnings(&cfg.sources, &loaded.rules, &loaded.correlations) {
        tracing::warn!("{w}");
    }
    if !loaded.errors.is_empty() {
        return Err(loaded.errors.iter().map(|e| e.to_string()).collect());
    }
    let set = loaded.into_rule_set(&cfg.rules);
    set.compile_regexes_in_background();
    Ok(set)
}

/// The sections of the config file that change while the daemon runs; any other change needs
/// a restart.
const LIVE_SECTIONS: &[&str] = &["rules"];

/// Reloads the config file's rules on SIGHUP and when the config file or a rule file changes
/// (Kubernetes updates ConfigMap volumes by swapping a symlink, so modification times are read
/// through links). A reload is all or nothing: a file that does not load, rules that do not
/// compile, or a change to a section that needs a restart (sources, sinks, ...) leave the
/// running config and rules in place, are logged with the reason and counted as `failed`.
pub(super) struct Reloader {
    rules: SharedRules,
    /// The config file as last applied.
    current: ConfigFile,
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
    last_poll: Instant,
    metrics: Arc<Metrics>,
    carry: Carry,
}

/// What a reload carries from the running rule set to the next: the state of every rule and
/// correlation whose definition is unchanged.
pub(super) struct Carry {
    /// The daemon's first-seen baselines: a reloaded rule keeps its baseline while its id and
    /// `first_seen` are unchanged.
    pub(super) baselines: Arc<Baselines>,
    /// Taken exclusively while the state moves, so that no batch is half in the old set.
    pub(super) gate: Arc<std::sync::RwLock<()>>,
    pub(super) correlator: Arc<std::sync::Mutex<super::worker::SharedCorrelator>>,
    pub(super) correlator_options: crate::detect::correlate::CorrelatorOptions,
    pub(super) redelivery_window: usize,
}

impl Reloader {
    pub(super) fn new(
        current: ConfigFile,
        rules: SharedRules,
        metrics: Arc<Metrics>,
        carry: Carry,
    ) -> Reloader {
        Reloader {
            rules,
            carry,
            stamp: stamp(&current),
            current,
            last_poll: Instant::now(),
            metrics,
        }
    }

    pub(super) fn poll(&mut self) {
        if self.last_poll.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last_poll = Instant::now();
        if stamp(&self.current) != self.stamp {
            tracing::info!("the config or a rule file changed: reloading");
            self.reload();
        }
    }

    pub(super) fn reload(&mut self) {
        let outcome = self.try_reload();
        // Whatever the outcome, the files as they are now were looked at: a refused change is
        // not retried until they change again.
        self.stamp = stamp(&self.current);
        let result = match outcome {
            Ok(n) => {
                self.metrics.rules_loaded.set(n as i64);
                tracing::info!(rules = n, "config and rules reloaded");
                ReloadResult::Ok
            }
            Err(problems) => {
                for e in &problems {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    problems = problems.len(),
                    "reload refused; the running config and rules stay"
                );
                ReloadResult::Failed
            }
        };
        self.metrics
            .rule_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// Reads the config file again and, when only live sections changed and its rules load,
    /// swaps the rule set in; the number of rules now running.
    fn try_reload(&mut self) -> Result<usize, Vec<String>> {
        let next = ConfigFile::load(&self.current.path).map_err(|e| vec![e.to_string()])?;
        let fixed: Vec<String> = next
            .changed_sections(&self.current)
            .into_iter()
            .filter(|s| !LIVE_SECTIONS.contains(&s.as_str()))
            .collect();
        if !fixed.is_empty() {
            return Err(vec![format!(
                "{}: changes to `{}` take effect only when tripline restarts (only `{}` changes live); nothing was reloaded",
                next.path.display(),
                fixed.join("`, `"),
                LIVE_SECTIONS.join("`, `"),
            )]);
        }
        let c = &self.carry;
        let set = load_rules(&next.config)?
            .with_baselines(&c.baselines)
            .with_redelivery_window(c.redelivery_window);
        let n = set.len();
        {
            let _cut = c.gate.write().unwrap_or_else(PoisonError::into_inner);
            let old = match self.rules.read() {
                Ok(r) => r.clone(),
                Err(p) => p.into_inner().clone(),
            };
            let set = Arc::new(set.with_state(old.snapshot()));
            let correlator = Detector::correlator_with(&set, c.correlator_options);
            let mut slot = c.correlator.lock().unwrap_or_else(PoisonError::into_inner);
            if let (Some(new), Some((r, Some(prev)))) = (&correlator, slot.as_ref()) {
                if Arc::ptr_eq(r, &old) {
                    let snap = prev
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .snapshot();
                    let kept = new
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .restore(snap);
                    tracing::info!(
                        correlations = kept,
                        "correlation windows kept across the reload"
                    );
                }
            }
            *slot = Some((set.clone(), correlator));
            match self.rules.write() {
                Ok(mut w) => *w = set,
                Err(p) => *p.into_inner() = set,
            }
        }
        self.current = next;
        Ok(n)
    }
}

/// What a reload looks at: the config file and every rule file it names.
fn stamp(file: &ConfigFile) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = file.config.rules.paths.clone();
    stack.push(file.path.clone());
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
