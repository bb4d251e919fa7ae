//! The state of the stateful rules (correlation windows, throttle windows, requests that
//! alerted once, first-seen baselines), kept in step with the sources' checkpoints so that a
//! restart, even after `kill -9`, neither loses a window nor counts an event twice.
//!
//! # How state and checkpoints stay consistent
//!
//! - **A cut at batch boundaries.** Workers hold the *gate* (shared) while a batch changes
//!   state and its alerts are registered; a snapshot takes it exclusively, so what it copies
//!   reflects whole batches only.
//! - **Checkpoints wait for a snapshot.** When a batch's sinks have confirmed it, its
//!   confirmation is held here, not passed to its source, until a snapshot taken after it is
//!   written. A source's checkpoint therefore never covers an event the saved state has not
//!   seen: after a restart, nothing between the checkpoint and the snapshot is missing.
//! - **Events read again are not counted again.** A restart re-reads from the checkpoint,
//!   which may be behind the snapshot. Baselines and the once-per-request set see a known key
//!   again and do nothing; throttles and correlations remember the content hashes of the
//!   events they counted ([`crate::rules::RuleSet::with_redelivery_window`]) and skip them.
//! - **Alerts in flight are part of the state.** An alert whose batch was not yet confirmed
//!   at the snapshot is saved with it and sent again after a restart (its id is
//!   deterministic, so a sink that dedupes by id absorbs the copy), because the event that
//!   raised it will be read again but, already counted, will not raise it again.
//!
//! The snapshot is one JSON file, `state.json`, versioned and written atomically; the
//! baselines keep their own file, written at the same moments. An unreadable snapshot is
//! moved aside with a warning and the daemon starts with empty state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ack::Confirm;
use crate::config::types::Flow;
use crate::detect::correlate::CorrelatorSnapshot;
use crate::rules::baseline::Baselines;
use crate::rules::{Level, RuleSetSnapshot};
use crate::sink::Record;
use crate::telemetry::Metrics;

use super::partitions::PartitionId;
use super::worker::SharedCorrelator;
use super::SharedRules;

/// The snapshot's file in `state_dir`.
pub const STATE_FILE: &str = "state.json";

/// The format this release writes and reads.
pub const STATE_VERSION: u32 = 1;

/// `state.json`.
#[derive(Serialize, Deserialize)]
pub struct StateFile {
    pub version: u32,
    /// Wall time of the snapshot.
    pub written: DateTime<Utc>,
    pub rules: RuleSetSnapshot,
    /// `None` when no correlation was loaded.
    pub correlations: Option<CorrelatorSnapshot>,
    /// Alerts of batches not yet confirmed by their sinks.
    pub alerts: Vec<SavedAlert>,
}

/// An alert record, as saved.
#[derive(Serialize, Deserialize)]
pub struct SavedAlert {
    id: String,
    time: Option<DateTime<Utc>>,
    level: Option<Level>,
    rule: Option<(String, String)>,
    user: Option<String>,
    doc: String,
}

impl SavedAlert {
    pub fn of(r: &Record) -> SavedAlert {
        SavedAlert {
            id: r.id.clone(),
            time: r.time,
            level: r.level,
            rule: r.rule.clone(),
            user: r.user.clone(),
            doc: String::from_utf8_lossy(&r.doc).into_owned(),
        }
    }

    pub fn into_record(self) -> Record {
        Record {
            flow: Flow::Alerts,
            id: self.id,
            time: self.time,
            level: self.level,
            rule: self.rule,
            user: self.user,
            doc: self.doc.into_bytes(),
        }
    }
}

/// Reads `state_dir/state.json`: `None` if there is none, or if it cannot be used (then it is
/// moved aside, with a warning).
pub fn load(state_dir: &Path) -> Option<StateFile> {
    let path = state_dir.join(STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the stateful rules' snapshot; starting with empty state");
            return None;
        }
    };
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let problem = match serde_json::from_slice::<Version>(&text) {
        Ok(v) if v.version == STATE_VERSION => match serde_json::from_slice::<StateFile>(&text) {
            Ok(f) => return Some(f),
            Err(e) => format!("corrupt: {e}"),
        },
        Ok(v) => format!(
            "format version {}; this release reads version {STATE_VERSION}",
            v.version
        ),
        Err(e) => format!("corrupt: {e}"),
    };
    let aside = set_aside_path(&path);
    match std::fs::rename(&path, &aside) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            moved_to = %aside.display(),
            "the stateful rules' snapshot is {problem}; moved aside, starting with empty state"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            error = %e,
            "the stateful rules' snapshot is {problem} and could not be moved aside; starting with empty state"
        ),
    }
    None
}

fn set_aside_path(path: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".unreadable-{secs}"));
    PathBuf::from(name)
}

/// A batch's confirmation waiting for a snapshot, and its partition.
type HeldConfirm = (Option<PartitionId>, Arc<dyn Confirm>);

/// A batch's alerts in flight, and the partition whose state they are saved with.
type BatchAlerts = (Option<PartitionId>, Vec<Arc<Record>>);

/// Batches between their worker and the next snapshot: their alerts until their sinks
/// confirm them, then their confirmations until a snapshot is written.
#[derive(Default)]
pub struct Inflight {
    next: AtomicU64,
    /// By batch: the partition whose state follows it (its alerts are saved with that
    /// partition's state, not in `state.json`), and the alerts.
    alerts: Mutex<HashMap<u64, BatchAlerts>>,
    /// Confirmations for the sources, held until the next snapshot is written, with the
    /// partition whose state follows it that the batch is of.
    held: Mutex<Vec<HeldConfirm>>,
    /// Alerts in flight at the last snapshot before a restart, to send again.
    restored: Mutex<Vec<Arc<Record>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inflight {
    /// Registers a batch's `alerts` and returns the confirmation its holders (the worker,
    /// then its sinks) use in place of `inner`: when the last of them confirms, the alerts are
    /// forgotten and `inner` waits for the next snapshot.
    pub fn hold(
        self: &Arc<Self>,
        inner: Arc<dyn Confirm>,
        alerts: Vec<Arc<Record>>,
        partition: Option<PartitionId>,
    ) -> Arc<dyn Confirm> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if !alerts.is_empty() {
            lock(&self.alerts).insert(id, (partition.clone(), alerts));
        }
        Arc::new(Held {
            id,
            remaining: AtomicUsize::new(1),
            inner,
            partition,
            inflight: self.clone(),
        })
    }

    /// The alerts in flight of the batches of `partition`, as saved.
    pub fn saved_alerts_of(&self, partition: &PartitionId) -> Vec<SavedAlert> {
        lock(&self.alerts)
            .values()
            .filter(|(p, _)| p.as_ref() == Some(partition))
            .flat_map(|(_, a)| a)
            .map(|r| SavedAlert::of(r))
            .collect()
    }

    /// The alerts saved before a restart that are still to be sent (taken once).
    pub fn take_restored(&self) -> Vec<Arc<Record>> {
        let mut r = lock(&self.restored);
        if r.is_empty() {
            return Vec::new();
        }
        std::mem::take(&mut *r)
    }

    pub fn has_restored(&self) -> bool {
        !lock(&self.restored).is_empty()
    }
}

/// A batch's confirmation as its worker and sinks hold it.
struct Held {
    id: u64,
    remaining: AtomicUsize,
    inner: Arc<dyn Confirm>,
    partition: Option<PartitionId>,
    inflight: Arc<Inflight>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("id", &self.id)
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}

impl Confirm for Held {
    fn add(&self, n: usize) {
        self.remaining.fetch_add(n, Ordering::AcqRel);
    }

    fn done(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            lock(&self.inflight.alerts).remove(&self.id);
            lock(&self.inflight.held).push((self.partition.clone(), self.inner.clone()));
        }
    }
}

/// A confirmation that notifies nobody: for alerts that belong to no source batch (windows
/// closed by the clock on a quiet stream, alerts sent again after a restart).
pub fn sourceless() -> Arc<dyn Confirm> {
    let (tx, _) = crossbeam_channel::bounded::<()>(1);
    crate::ack::Ack::for_batch((), tx)
}

/// Takes snapshots and hands the held confirmations to their sources.
pub struct StateKeeper {
    pub gate: Arc<RwLock<()>>,
    pub inflight: Arc<Inflight>,
    pub rules: SharedRules,
    pub correlator: Arc<Mutex<SharedCorrelator>>,
    pub baselines: Arc<Baselines>,
    pub state_dir: PathBuf,
    pub metrics: Arc<Metrics>,
    /// Evictions from the baselines already counted in the metric.
    pub evictions_seen: u64,
    /// The states of the Kafka partitions whose state follows them: written to their
    /// changelogs with every snapshot, before the confirmations it covers are released.
    pub partitions: Arc<super::partitions::PartitionStates>,
}

impl StateKeeper {
    /// Restores a snapshot read at start: the rule set and correlator are those the daemon
    /// starts with (the correlator not yet fed).
    pub fn restore(&self, file: StateFile) {
        let alerts: Vec<Arc<Record>> = file
            .alerts
            .into_iter()
            .map(|a| Arc::new(a.into_record()))
            .collect();
        if let (Some(snap), Some((_, Some(c)))) = (file.correlations, &*lock(&self.correlator)) {
            let groups = snap.groups();
            let n = lock(c).restore(snap);
            tracing::info!(
                correlations = n,
                groups,
                "correlation windows restored from the last snapshot"
            );
        }
        tracing::info!(
            alerts_in_flight = alerts.len(),
            throttle_windows = file.rules.throttle_windows(),
            written = %file.written,
            "stateful rules restored from the last snapshot"
        );
        *lock(&self.inflight.restored) = alerts;
    }

    /// Writes a snapshot if anything is waiting for one, then releases the confirmations it
    /// covers. A snapshot that cannot be written is logged and counted, and the confirmations
    /// are released anyway: the sources must not stall on a full disk; a crash before the
    /// next snapshot may then count events read again twice.
    ///
    /// Returns how long the workers waited for it (the state was encoded under the cut).
    pub fn snapshot(&mut self, force: bool) -> std::time::Duration {
        let started = Instant::now();
        let (held, captured, parts) = {
            let _cut = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            let held = std::mem::take(&mut *lock(&self.inflight.held));
            if held.is_empty() && !force && !self.baselines.changed() {
                return started.elapsed();
            }
            (
                held,
                self.capture(),
                self.partitions
                    .encode_all(&|id| self.inflight.saved_alerts_of(id)),
            )
        };
        let paused = started.elapsed();
        // The partitions' records first: the confirmations below let their offsets be
        // committed, which must not pass what the changelogs hold.
        // A partition whose record was not written keeps the confirmations of its batches
        // until one is (its offsets must not pass the changelog); those of partitions no
        // longer assigned here go (their new owner reads from the committed offset).
        let mut held = held;
        if !parts.is_empty() {
            for e in &parts {
                if let Err(err) = &e.record {
                    self.failed(&format!("encoding the state of partition {}: {err}", e.id));
                }
            }
            if let Err((failed, e)) = self.partitions.write(parts) {
                self.failed(&format!(
                    "writing partition states to their changelogs: {e}"
                ));
                let (keep, go): (Vec<_>, Vec<_>) = held.into_iter().partition(|(p, _)| {
                    p.as_ref()
                        .is_some_and(|p| failed.contains(p) && self.partitions.owns(p))
                });
                lock(&self.inflight.held).extend(keep);
                held = go;
            }
        }
        let (state, baselines) = match captured {
            Ok(c) => c,
            Err(e) => {
                self.failed(&e);
                release(held);
                return paused;
            }
        };
        let mut ok = true;
        if let Err(e) = crate::fsutil::write_atomically(&self.state_dir.join(STATE_FILE), &state) {
            ok = false;
            self.failed(&format!("writing {}: {e}", STATE_FILE));
        }
        if let Some(b) = baselines {
            let path = self.state_dir.join(crate::rules::baseline::BASELINES_FILE);
            if let Err(e) = crate::fsutil::write_atomically(&path, &b) {
                ok = false;
                self.failed(&format!("writing {}: {e}", path.display()));
            }
        }
        release(held);
        if ok {
            self.metrics
                .state_snapshot_bytes
                .set(i64::try_from(state.len()).unwrap_or(i64::MAX));
            self.metrics
                .state_snapshot_seconds
                .set(started.elapsed().as_secs_f64());
        }
        self.baseline_metrics();
        paused
    }

    /// Sets the first-seen metrics from the store (a baseline dropped by a reload takes its
    /// evictions with it: the counter never goes back).
    pub fn baseline_metrics(&mut self) {
        self.metrics
            .first_seen_keys
            .set(i64::try_from(self.baselines.entries()).unwrap_or(i64::MAX));
        let now = self.baselines.evictions();
        self.metrics
            .first_seen_evictions
            .inc_by(now.saturating_sub(self.evictions_seen));
        self.evictions_seen = now;
    }

    /// Copies the state (under the gate) and encodes it.
    fn capture(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
        let rules = match self.rules.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let correlations = match &*lock(&self.correlator) {
            Some((r, Some(c))) if Arc::ptr_eq(r, &rules) => {
                let c = lock(c);
                self.metrics
                    .correlation_groups
                    .set(i64::try_from(c.groups()).unwrap_or(i64::MAX));
                let json = c.snapshot_json().map_err(|e| e.to_string())?;
                let json = String::from_utf8(json).map_err(|e| e.to_string())?;
                Some(serde_json::value::RawValue::from_string(json).map_err(|e| e.to_string())?)
            }
            _ => None,
        };
        // Those of partitions whose state follows them are saved with that state.
        let mut alerts: Vec<SavedAlert> = lock(&self.inflight.alerts)
            .values()
            .filter(|(p, _)| p.is_none())
            .flat_map(|(_, a)| a)
            .map(|r| SavedAlert::of(r))
            .collect();
        alerts.extend(
            lock(&self.inflight.restored)
                .iter()
                .map(|r| SavedAlert::of(r)),
        );
        /// [`StateFile`] with the correlations' part already encoded.
        #[derive(Serialize)]
        struct StateFileRef {
            version: u32,
            written: DateTime<Utc>,
            rules: RuleSetSnapshot,
            correlations: Option<Box<serde_json::value::RawValue>>,
            alerts: Vec<SavedAlert>,
        }
        let file = StateFileRef {
            version: STATE_VERSION,
            written: Utc::now(),
            rules: rules.snapshot(),
            correlations,
            alerts,
        };
        let state = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
        let baselines = if self.baselines.changed() {
            Some(self.baselines.encode().map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok((state, baselines))
    }

    fn failed(&self, e: &str) {
        self.metrics.state_snapshot_failures.inc();
        tracing::error!(
            error = %e,
            "snapshot of the stateful rules failed; checkpoints go on, and a crash before the next snapshot may count events read again twice"
        );
    }
}

fn release(held: Vec<HeldConfirm>) {
    for (_, h) in held {
        h.done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_or_newer_snapshot_is_moved_aside_and_an_absent_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_none());
        let path = dir.path().join(STATE_FILE);
        for text in ["{\"version\": 1, \"rules\": ", "{\"version\": 99}"] {
            std::fs::write(&path, text).unwrap();
            assert!(load(dir.path()).is_none());
            assert!(!path.exists(), "left in place: {text}");
            let aside: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains(".unreadable-"))
                .collect();
            assert!(!aside.is_empty());
            for e in aside {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }

    #[test]
    fn a_confirmation_reaches_its_source_only_at_the_snapshot_after_it_and_alerts_stay_until_then()
    {
        let (tx, rx) = crossbeam_channel::unbounded();
        let inflight = Arc::new(Inflight::default());
        let alert = Arc::new(Record {
            flow: Flow::Alerts,
            id: "a1".into(),
            time: None,
            level: Some(Level::High),
            rule: Some(("r".into(), "R".into())),
            user: None,
            doc: b"{}".to_vec(),
        });
        let held = inflight.hold(crate::ack::Ack::for_batch(7u64, tx), vec![alert], None);
        held.add(1); // a sink
        held.done(); // the worker
        assert_eq!(
            lock(&inflight.alerts).len(),
            1,
            "in flight until the sink confirms"
        );
        held.done(); // the sink
        assert!(lock(&inflight.alerts).is_empty());
        assert!(rx.try_recv().is_err(), "released before a snapshot");
        assert_eq!(lock(&inflight.held).len(), 1);

        let dir = tempfile::tempdir().unwrap();
        let rules = Arc::new(crate::rules::RuleSet::new(Vec::new()));
        let mut keeper = StateKeeper {
            gate: Arc::default(),
            inflight: inflight.clone(),
            rules: Arc::new(RwLock::new(rules)),
            correlator: Arc::default(),
            baselines: Arc::default(),
            state_dir: dir.path().to_path_buf(),
            metrics: Metrics::new(),
            evictions_seen: 0,
            partitions: Arc::new(crate::pipeline::PartitionStates::for_rules(Arc::new(
                crate::rules::RuleSet::new(Vec::new()),
            ))),
        };
        keeper.snapshot(false);
        assert_eq!(rx.try_recv(), Ok(7));
        let saved = load(dir.path()).expect("a snapshot");
        assert!(
            saved.alerts.is_empty(),
            "the alert was confirmed before the snapshot"
        );
    }

    #[test]
    fn alerts_in_flight_are_saved_and_sent_again_after_a_restart() {
        let inflight = Arc::new(Inflight::default());
        let alert = Arc::new(Record {
            flow: Flow::Alerts,
            id: "a2".into(),
            time: None,
            level: Some(Level::Low),
            rule: None,
            user: Some("u".into()),
            doc: b"{\"x\":1}".to_vec(),
        });
        let held = inflight.hold(sourceless(), vec![alert], None);
        held.add(1); // a sink that has not confirmed yet
        held.done();
        let dir = tempfile::tempdir().unwrap();
        let mut keeper = StateKeeper {
            gate: Arc::default(),
            inflight: inflight.clone(),
            rules: Arc::new(RwLock::new(Arc::new(
                crate::rules::RuleSet::new(Vec::new()),
            ))),
            correlator: Arc::default(),
            baselines: Arc::default(),
            state_dir: dir.path().to_path_buf(),
            metrics: Metrics::new(),
            evictions_seen: 0,
            partitions: Arc::new(crate::pipeline::PartitionStates::for_rules(Arc::new(
                crate::rules::RuleSet::new(Vec::new()),
            ))),
        };
        keeper.snapshot(true);
        let saved = load(dir.path()).expect("a snapshot");
        assert_eq!(saved.alerts.len(), 1);
        let restarted = Arc::new(Inflight::default());
        keeper.inflight = restarted.clone();
        keeper.restore(saved);
        let again = restarted.take_restored();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, "a2");
        assert_eq!(again[0].doc, b"{\"x\":1}");
        assert!(restarted.take_restored().is_empty(), "sent again once");
    }
}
