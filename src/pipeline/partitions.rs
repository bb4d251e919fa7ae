//! State that follows Kafka partitions: the stateful rules' state (throttle windows, requests
//! that alerted once, recent deliveries, first-seen baselines, correlation windows) of each
//! partition of a source with `partitioned_by`, kept apart from the daemon's shared state so
//! that it can be handed to the partition's next owner on its own, as Kafka Streams hands a
//! task's store over with its changelog.
//!
//! - **Kept per partition.** A batch from such a partition is detected with the partition's
//!   own [`RuleSet`] (the same compiled rules, [`RuleSet::with_fresh_state`]), correlator and
//!   baselines. Events of one key (the topic's key) are all in one partition, so each window
//!   and baseline sees all of its events.
//! - **Written with the snapshots.** Every snapshot of the stateful rules also encodes the
//!   state of each partition ([`PartitionRecord`]) and writes it to the source's changelog
//!   (a compacted Kafka topic) before the confirmations it covers go back to the source. The
//!   committed offsets therefore never pass what the changelog holds: the record's
//!   `next_offset` is at or after the partition's committed offset.
//! - **Written at revoke, read at assign.** A revoked partition's state is written once more
//!   and dropped; a newly assigned partition's state is read from the changelog before any of
//!   its messages is consumed. Events between the committed offset and the record's
//!   `next_offset` are read again and, already counted, are not counted again (the record
//!   carries the recent deliveries).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::detect::correlate::{Correlator, CorrelatorOptions, CorrelatorSnapshot};
use crate::detect::Detector;
use crate::rules::baseline::Baselines;
use crate::rules::{RuleSet, RuleSetSnapshot};

use super::state::{Inflight, SavedAlert};
use super::SharedRules;
use crate::sink::Record;
pub use crate::source::{Changelog, PartitionHandover, PartitionId};
use crate::telemetry::{ConsumerLagLabels, Metrics, SourceLabels};

/// The format of [`PartitionRecord`] this release writes. It reads this one; a record of
/// another version is ignored with a warning (the partition starts with empty state).
pub const PARTITION_STATE_VERSION: u32 = 1;

/// The state of one partition.
pub struct PartitionState {
    pub rules: Arc<RuleSet>,
    pub correlator: Option<Arc<Mutex<Correlator>>>,
    pub baselines: Arc<Baselines>,
    /// The offset after the last message whose events the state has seen (-1: none yet).
    pub next_offset: AtomicI64,
    /// Alerts restored with the state, to be sent again (taken once).
    pub resend: Mutex<Vec<Arc<Record>>>,
    /// Changed since it was last encoded for the changelog (a batch or the idle clock).
    pub dirty: std::sync::atomic::AtomicBool,
    /// When its last batch was detected (or it was made).
    last_batch: Mutex<std::time::Instant>,
}

impl PartitionState {
    /// The alerts restored with the state that are still to be sent (taken once).
    pub fn take_resend(&self) -> Vec<Arc<Record>> {
        std::mem::take(&mut *lock(&self.resend))
    }

    pub fn resend_is_empty(&self) -> bool {
        lock(&self.resend).is_empty()
    }

    /// A batch of the partition was detected.
    pub fn touched(&self) {
        self.dirty.store(true, Ordering::Relaxed);
        *lock(&self.last_batch) = std::time::Instant::now();
    }

    /// How long since its last batch.
    pub fn quiet_for(&self) -> std::time::Duration {
        lock(&self.last_batch).elapsed()
    }
}

/// A partition's record as [`PartitionStates::encode_all`] encoded it, for the assignment it
/// was encoded under.
pub struct Encoded {
    pub id: PartitionId,
    pub generation: u64,
    pub record: Result<Vec<u8>, String>,
}

/// A partition's state as written to its changelog.
#[derive(Serialize, Deserialize)]
pub struct PartitionRecord {
    pub version: u32,
    pub topic: String,
    pub partition: i32,
    /// The offset after the last message whose events the state reflects (-1: unknown).
    pub next_offset: i64,
    /// Wall time of the write.
    pub written: DateTime<Utc>,
    pub rules: RuleSetSnapshot,
    pub correlations: Option<CorrelatorSnapshot>,
    /// `baselines.json`'s text ([`Baselines::encode`]).
    pub baselines: Box<serde_json::value::RawValue>,
    /// Alerts of the partition's batches that their sinks had not confirmed: sent again by
    /// the next owner (the events that raised them, read again, are already counted).
    #[serde(default)]
    pub alerts: Vec<SavedAlert>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A partition assigned to this instance: which assignment, and its state once it has one.
struct Owned {
    generation: u64,
    state: Option<Arc<PartitionState>>,
}

/// The states of the partitions this instance owns, and the changelogs they are written to.
pub struct PartitionStates {
    /// The partitions assigned to this instance, with their states. Ownership and state are
    /// kept under one lock, so a batch never gives state to a partition being revoked.
    states: Mutex<HashMap<PartitionId, Owned>>,
    /// Held while records are checked against ownership and written: a record encoded before
    /// a revocation is never written after the revocation's own.
    writing: Mutex<()>,
    changelogs: Mutex<HashMap<Arc<str>, Arc<dyn Changelog>>>,
    correlator_options: CorrelatorOptions,
    /// The daemon's current rules (a restored state is made for them).
    rules: SharedRules,
    /// The workers' gate: a revoked partition's state is taken between batches.
    gate: Arc<RwLock<()>>,
    /// Batches in flight: their alerts are saved with their partition's state.
    inflight: Arc<Inflight>,
    metrics: Arc<Metrics>,
}

impl PartitionStates {
    pub fn new(
        correlator_options: CorrelatorOptions,
        rules: SharedRules,
        gate: Arc<RwLock<()>>,
        inflight: Arc<Inflight>,
        metrics: Arc<Metrics>,
    ) -> PartitionStates {
        PartitionStates {
            states: Mutex::default(),
            writing: Mutex::default(),
            changelogs: Mutex::default(),
            correlator_options,
            rules,
            gate,
            inflight,
            metrics,
        }
    }

    /// For `rules` alone (no reload, no workers' gate): tools and tests.
    pub fn for_rules(rules: Arc<RuleSet>) -> PartitionStates {
        PartitionStates::new(
            CorrelatorOptions::default(),
            Arc::new(RwLock::new(rules)),
            Arc::default(),
            Arc::default(),
            Metrics::new(),
        )
    }

    fn current_rules(&self) -> Arc<RuleSet> {
        match self.rules.read() {
            Ok(r) => r.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The changelog of `source`'s partitions.
    pub fn register(&self, source: Arc<str>, changelog: Arc<dyn Changelog>) {
        lock(&self.changelogs).insert(source, changelog);
    }

    /// The state `id`'s batch of assignment `generation` is detected with, for the rules
    /// `rules` (the daemon's current ones): the partition's state, made again for `rules`
    /// (carrying it over) when the rules were reloaded since. `None` for a batch of a partition
    /// this instance does not own, or of an earlier assignment of it (queued before a
    /// revocation): its events are read again by the partition's owner, and the batch is
    /// left alone.
    pub fn state_for(
        &self,
        id: &PartitionId,
        generation: u64,
        rules: &Arc<RuleSet>,
    ) -> Option<Arc<PartitionState>> {
        let mut states = lock(&self.states);
        let owned = states.get_mut(id).filter(|o| o.generation == generation)?;
        if let Some(s) = &owned.state {
            if s.rules.same_rules(rules) {
                return Some(s.clone());
            }
        }
        let fresh = Arc::new(self.carried(rules, owned.state.as_deref()));
        owned.state = Some(fresh.clone());
        Some(fresh)
    }

    /// A state for `rules`, with `old`'s state carried over (as a reload carries the daemon's).
    fn carried(&self, rules: &Arc<RuleSet>, old: Option<&PartitionState>) -> PartitionState {
        let baselines = old.map_or_else(|| Arc::new(Baselines::default()), |o| o.baselines.clone());
        let mut r = partition_rules(rules, &baselines);
        if let Some(o) = old {
            r = r.with_state(o.rules.snapshot());
        }
        let r = Arc::new(r);
        let correlator = Detector::correlator_with(&r, self.correlator_options);
        if let (Some(c), Some(Some(oc))) = (&correlator, old.map(|o| &o.correlator)) {
            let snap = lock(oc).snapshot();
            lock(c).restore(snap);
        }
        PartitionState {
            rules: r,
            correlator,
            baselines,
            next_offset: AtomicI64::new(old.map_or(-1, |o| o.next_offset.load(Ordering::Relaxed))),
            resend: Mutex::new(old.map(|o| o.take_resend()).unwrap_or_default()),
            dirty: std::sync::atomic::AtomicBool::new(true),
            last_batch: Mutex::new(std::time::Instant::now()),
        }
    }

    /// Encodes the state of `id` (`None` when this instance holds none).
    pub fn encode(&self, id: &PartitionId) -> Option<Result<Vec<u8>, String>> {
        let s = lock(&self.states).get(id)?.state.clone()?;
        Some(encode(id, &s, self.inflight.saved_alerts_of(id)))
    }

    /// Encodes the state of every partition that changed since it was last encoded, for
    /// [`PartitionStates::write`].
    pub fn encode_all(&self, alerts: &dyn Fn(&PartitionId) -> Vec<SavedAlert>) -> Vec<Encoded> {
        let states: Vec<(PartitionId, u64, Arc<PartitionState>)> = lock(&self.states)
            .iter()
            .filter_map(|(k, o)| Some((k, o.generation, o.state.clone()?)))
            .filter(|(_, _, s)| s.dirty.swap(false, Ordering::Relaxed))
            .map(|(k, g, s)| (k.clone(), g, s))
            .collect();
        states
            .into_iter()
            .map(|(id, generation, state)| {
                let record = encode(&id, &state, alerts(&id));
                Encoded {
                    id,
                    generation,
                    record,
                }
            })
            .collect()
    }

    /// Writes the records of [`PartitionStates::encode_all`] to their sources' changelogs,
    /// but those of partitions revoked since they were encoded. Returns the partitions whose
    /// record could not be written (their states are marked to be written again), with the
    /// errors.
    pub fn write(&self, records: Vec<Encoded>) -> Result<(), (Vec<PartitionId>, String)> {
        let _writing = lock(&self.writing);
        let current: Vec<(PartitionId, Vec<u8>)> = {
            let states = lock(&self.states);
            records
                .into_iter()
                .filter_map(|e| {
                    let owned = states.get(&e.id)?;
                    if owned.generation != e.generation {
                        return None;
                    }
                    match e.record {
                        Ok(r) => Some((e.id, r)),
                        Err(err) => {
                            tracing::error!(partition = %e.id, error = %err, "cannot encode the partition's state");
                            None
                        }
                    }
                })
                .collect()
        };
        self.write_records(current)
    }

    fn write_records(
        &self,
        records: Vec<(PartitionId, Vec<u8>)>,
    ) -> Result<(), (Vec<PartitionId>, String)> {
        let mut by_source: HashMap<Arc<str>, Vec<(PartitionId, Vec<u8>)>> = HashMap::new();
        for (id, r) in records {
            by_source
                .entry(id.source.clone())
                .or_default()
                .push((id, r));
        }
        let changelogs = lock(&self.changelogs).clone();
        let mut errors = Vec::new();
        let mut failed = Vec::new();
        for (source, records) in by_source {
            let result = match changelogs.get(&source) {
                Some(c) => c.write(&records),
                None => Err("no changelog".to_string()),
            };
            match result {
                Ok(()) => {
                    for (id, r) in &records {
                        self.metrics
                            .partition_state_bytes
                            .get_or_create_owned(&labels(id))
                            .set(i64::try_from(r.len()).unwrap_or(i64::MAX));
                    }
                }
                Err(e) => {
                    self.failure(&source);
                    errors.push(format!("source {source}: {e}"));
                    let states = lock(&self.states);
                    for (id, _) in records {
                        if let Some(s) = states.get(&id).and_then(|o| o.state.as_ref()) {
                            s.dirty.store(true, Ordering::Relaxed);
                        }
                        failed.push(id);
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err((failed, errors.join("; ")))
        }
    }

    /// Whether `id` is assigned to this instance.
    pub fn owns(&self, id: &PartitionId) -> bool {
        lock(&self.states).contains_key(id)
    }

    /// `id` was assigned to this instance (assignment `generation`): reads its state from the
    /// changelog, before any of its messages is read. Returns the restored record's
    /// `next_offset`, or `None` when there was none to restore (or it could not be used: the
    /// partition starts empty).
    pub fn assigned(&self, id: &PartitionId, generation: u64) -> Option<i64> {
        let restored = self.restore(id);
        let next = restored
            .as_ref()
            .map(|s| s.next_offset.load(Ordering::Relaxed));
        lock(&self.states).insert(
            id.clone(),
            Owned {
                generation,
                state: restored.map(Arc::new),
            },
        );
        next
    }

    fn restore(&self, id: &PartitionId) -> Option<PartitionState> {
        let rules = &self.current_rules();
        let changelog = lock(&self.changelogs).get(&id.source).cloned()?;
        let started = std::time::Instant::now();
        // A broker that does not answer now may a moment later: a state given up for lost is
        // overwritten by the next snapshot.
        let mut read = changelog.read(id);
        for _ in 0..2 {
            let Err(e) = &read else { break };
            tracing::warn!(source = %id.source, partition = %id, error = %e, "reading the partition's state from its changelog; trying again");
            std::thread::sleep(std::time::Duration::from_secs(1));
            read = changelog.read(id);
        }
        self.metrics
            .partition_state_restore_seconds
            .get_or_create_owned(&labels(id))
            .set(started.elapsed().as_secs_f64());
        let bytes = match read {
            Ok(Some(b)) => b,
            Ok(None) => return None,
            Err(e) => {
                self.failure(&id.source);
                tracing::error!(source = %id.source, partition = %id, error = %e, "cannot read the partition's state from its changelog; it starts empty");
                return None;
            }
        };
        match self.decode(id, &bytes, rules) {
            Ok(state) => Some(state),
            Err(e) => {
                self.failure(&id.source);
                tracing::error!(source = %id.source, partition = %id, error = %e, "the partition's state in its changelog cannot be used; it starts empty");
                None
            }
        }
    }

    /// `id` was revoked: its state, taken out (to be written to the changelog one last time),
    /// between batches.
    pub fn revoked(&self, id: &PartitionId) -> Option<Arc<PartitionState>> {
        let _cut = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        lock(&self.states).remove(id)?.state
    }

    /// Writes the state of `state` (just revoked) to the changelog.
    pub fn write_one(&self, id: &PartitionId, state: &PartitionState) -> Result<(), String> {
        let bytes = encode(id, state, self.inflight.saved_alerts_of(id))?;
        let _writing = lock(&self.writing);
        self.write_records(vec![(id.clone(), bytes)])
            .map_err(|(_, e)| e)
    }

    /// A state decoded from a changelog record, for `rules`.
    pub fn decode(
        &self,
        id: &PartitionId,
        bytes: &[u8],
        rules: &Arc<RuleSet>,
    ) -> Result<PartitionState, String> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let v: Version = serde_json::from_slice(bytes).map_err(|e| format!("corrupt: {e}"))?;
        if v.version != PARTITION_STATE_VERSION {
            return Err(format!(
                "format version {}; this release reads version {PARTITION_STATE_VERSION}",
                v.version
            ));
        }
        let rec: PartitionRecord =
            serde_json::from_slice(bytes).map_err(|e| format!("corrupt: {e}"))?;
        if rec.topic != *id.topic || rec.partition != id.partition {
            return Err(format!(
                "the record is of {}/{}, not of {id}",
                rec.topic, rec.partition
            ));
        }
        let label = std::path::PathBuf::from(format!("changelog record of {id}"));
        let baselines = Arc::new(
            Baselines::decode(rec.baselines.get().as_bytes(), &label).map_err(|e| e.to_string())?,
        );
        let r = Arc::new(partition_rules(rules, &baselines).with_state(rec.rules));
        let correlator = Detector::correlator_with(&r, self.correlator_options);
        if let (Some(c), Some(snap)) = (&correlator, rec.correlations) {
            lock(c).restore(snap);
        }
        Ok(PartitionState {
            rules: r,
            correlator,
            baselines,
            next_offset: AtomicI64::new(rec.next_offset),
            resend: Mutex::new(
                rec.alerts
                    .into_iter()
                    .map(|a| Arc::new(a.into_record()))
                    .collect(),
            ),
            dirty: std::sync::atomic::AtomicBool::new(false),
            last_batch: Mutex::new(std::time::Instant::now()),
        })
    }

    /// Every partition state held, for the idle clock of the correlations.
    pub fn all(&self) -> Vec<(PartitionId, Arc<PartitionState>)> {
        lock(&self.states)
            .iter()
            .filter_map(|(k, o)| Some((k.clone(), o.state.clone()?)))
            .collect()
    }

    fn failure(&self, source: &Arc<str>) {
        self.metrics
            .partition_state_failures
            .get_or_create_owned(&SourceLabels::new(source.clone()))
            .inc();
    }

    /// Partitions whose state is held.
    pub fn len(&self) -> usize {
        lock(&self.states)
            .values()
            .filter(|o| o.state.is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl PartitionHandover for PartitionStates {
    fn register(&self, source: Arc<str>, changelog: Arc<dyn Changelog>) {
        PartitionStates::register(self, source, changelog);
    }

    fn assigned(&self, id: &PartitionId, generation: u64) -> Option<i64> {
        PartitionStates::assigned(self, id, generation)
    }

    fn lost(&self, id: &PartitionId) {
        PartitionStates::revoked(self, id);
    }

    fn revoked(&self, id: &PartitionId) -> Result<bool, String> {
        match PartitionStates::revoked(self, id) {
            Some(state) => self.write_one(id, &state).map(|()| true),
            None => Ok(false),
        }
    }
}

/// The recent deliveries a partition's state remembers, at most: a restore replays what its
/// source read after the last commit (about one `commit_interval` of the partition's counted
/// events), and every record carries them.
pub const PARTITION_REDELIVERY_WINDOW: usize = 16_384;

/// A rule set for one partition's state: `rules`' compiled rules, `baselines`, and a
/// redelivery window of at most [`PARTITION_REDELIVERY_WINDOW`].
fn partition_rules(rules: &RuleSet, baselines: &Baselines) -> RuleSet {
    let window = rules.redelivery_window().min(PARTITION_REDELIVERY_WINDOW);
    rules
        .with_fresh_state(baselines)
        .with_redelivery_window(window)
}

fn labels(id: &PartitionId) -> ConsumerLagLabels {
    ConsumerLagLabels {
        partition: id.partition,
        source: id.source.clone(),
        topic: id.topic.to_string(),
    }
}

fn encode(
    id: &PartitionId,
    s: &PartitionState,
    alerts: Vec<SavedAlert>,
) -> Result<Vec<u8>, String> {
    let baselines = s.baselines.encode().map_err(|e| e.to_string())?;
    let baselines = String::from_utf8(baselines).map_err(|e| e.to_string())?;
    let rec = PartitionRecord {
        version: PARTITION_STATE_VERSION,
        topic: id.topic.to_string(),
        partition: id.partition,
        next_offset: s.next_offset.load(Ordering::Relaxed),
        written: Utc::now(),
        rules: s.rules.snapshot(),
        correlations: s.correlator.as_ref().map(|c| lock(c).snapshot()),
        baselines: serde_json::value::RawValue::from_string(baselines)
            .map_err(|e| e.to_string())?,
        alerts,
    };
    // Alerts restored with the state and not yet sent stay in flight.
    let mut rec = rec;
    rec.alerts
        .extend(lock(&s.resend).iter().map(|r| SavedAlert::of(r)));
    serde_json::to_vec(&rec).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Alert;
    use crate::event::decode_value_into;

    const RULES: &str = r#"title: Secret get
id: 0b6d1c2e-3f4a-4b5c-8d6e-7f8091a2b3c4
name: secret_get
logsource: {product: kubernetes, service: audit}
detection:
  selection: {verb: get, objectRef.resource: secrets}
  condition: selection
level: low
---
title: Three secret reads
id: 5d0e8f4a-6b7c-4d8e-9f0a-1b2c3d4e5f60
correlation:
  type: event_count
  rules: [secret_get]
  group-by: [user.username]
  timespan: 10m
  condition: {gte: 3}
level: high
"#;

    /// The rules compiled on their own (another instance's: other hash keys).
    fn rules() -> Arc<RuleSet> {
        Arc::new(crate::rules::test_rule_set(RULES).with_redelivery_window(1000))
    }

    fn id() -> PartitionId {
        PartitionId {
            source: Arc::from("keyed"),
            topic: Arc::from("audit"),
            partition: 3,
        }
    }

    /// The correlation alerts of reading `n` secret reads of mallory, from the `first`th on,
    /// with the state `s`; then every window is closed (as the end of input would) when
    /// `last`.
    fn read(s: &PartitionState, first: usize, n: usize, last: bool) -> Vec<String> {
        let mut d = Detector::new(&s.rules, None).with_correlator(s.correlator.clone());
        let mut alerts: Vec<Alert> = Vec::new();
        for i in first..first + n {
            let ev = format!(
                r#"{{"kind":"Event","auditID":"s{i}","stage":"ResponseComplete","verb":"get","requestURI":"/api/v1/namespaces/p/secrets/s{i}","user":{{"username":"mallory"}},"objectRef":{{"resource":"secrets","namespace":"p","name":"s{i}"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-12-05T10:00:0{i}Z"}}"#
            );
            decode_value_into(&ev, &mut |r| {
                if let Ok(ev) = r {
                    d.detect(ev, &mut |a| alerts.push(a));
                }
            });
        }
        if last {
            d.finish(&mut |a| alerts.push(a));
        } else {
            d.flush(&mut |a| alerts.push(a));
        }
        alerts
            .iter()
            .filter(|a| a.rule >= s.rules.len())
            .map(|a| a.message().to_string())
            .collect()
    }

    #[test]
    fn a_partition_state_written_by_one_instance_is_continued_by_another() {
        let (one, two) = (rules(), rules());
        let a = PartitionStates::for_rules(one.clone());
        a.assigned(&id(), 1);
        let s = a.state_for(&id(), 1, &one).expect("owned");
        assert!(read(&s, 0, 2, false).is_empty(), "two reads: no burst yet");
        s.next_offset.store(42, Ordering::Relaxed);
        let record = a.encode(&id()).expect("held").expect("encoded");

        // Another instance, whose rules hash with other keys, restores it.
        let b = PartitionStates::for_rules(two.clone());
        let restored = b.decode(&id(), &record, &two).expect("decoded");
        assert_eq!(restored.next_offset.load(Ordering::Relaxed), 42);
        assert_eq!(
            read(&restored, 2, 1, true).len(),
            1,
            "the third read completes the window"
        );
        // An event read again (the replay from the committed offset) is not counted again.
        let again = b.decode(&id(), &record, &two).expect("decoded");
        assert!(
            read(&again, 1, 1, true).is_empty(),
            "a replayed read is not counted twice"
        );

        // Without the record, the third read alone is not a burst.
        let fresh = PartitionStates::for_rules(two.clone());
        fresh.assigned(&id(), 1);
        assert!(read(&fresh.state_for(&id(), 1, &two).expect("owned"), 2, 1, true).is_empty());
    }

    #[test]
    fn a_record_of_another_version_or_partition_is_refused_with_the_reason() {
        let one = rules();
        let a = PartitionStates::for_rules(one.clone());
        a.assigned(&id(), 1);
        a.state_for(&id(), 1, &one).expect("owned");
        let record = a.encode(&id()).expect("held").expect("encoded");
        let mut v: serde_json::Value = serde_json::from_slice(&record).unwrap();
        v["version"] = 99.into();
        let newer = serde_json::to_vec(&v).unwrap();
        let e = a.decode(&id(), &newer, &one).err().expect("refused");
        assert!(e.contains("format version 99"), "{e}");
        let other = PartitionId {
            partition: 4,
            ..id()
        };
        let e = a.decode(&other, &record, &one).err().expect("refused");
        assert!(e.contains("audit/3"), "{e}");
        let e = a
            .decode(&id(), b"{\"version\": 1", &one)
            .err()
            .expect("refused");
        assert!(e.contains("corrupt"), "{e}");
    }

    #[test]
    fn only_owned_partitions_keep_their_state_and_a_reload_carries_it_over() {
        let one = rules();
        let a = PartitionStates::for_rules(one.clone());
        // Not assigned (a batch queued after its revocation): no state, the batch is left.
        assert!(a.state_for(&id(), 1, &one).is_none());
        assert!(a.is_empty());
        a.assigned(&id(), 1);
        // A batch of an earlier assignment of it: left alone too.
        assert!(a.state_for(&id(), 0, &one).is_none());
        let s = a.state_for(&id(), 1, &one).expect("owned");
        assert!(read(&s, 0, 2, false).is_empty());
        assert!(
            Arc::ptr_eq(&s, &a.state_for(&id(), 1, &one).expect("owned")),
            "kept"
        );
        // The rules are reloaded: the partition's windows go on with the new ones.
        let reloaded = rules();
        let s2 = a.state_for(&id(), 1, &reloaded).expect("owned");
        assert!(s2.rules.same_rules(&reloaded));
        assert_eq!(read(&s2, 2, 1, true).len(), 1);
        // Revoked: gone.
        assert!(a.revoked(&id()).is_some());
        assert!(a.is_empty());
    }

    /// A changelog in memory that can be made to fail (complements the tests against a real
    /// broker in tests/partition_state.rs, which cannot make one write fail).
    #[derive(Default)]
    struct MemoryChangelog {
        fail: std::sync::atomic::AtomicBool,
        records: Mutex<Vec<(PartitionId, Vec<u8>)>>,
    }

    impl Changelog for MemoryChangelog {
        fn write(&self, records: &[(PartitionId, Vec<u8>)]) -> Result<(), String> {
            if self.fail.load(Ordering::Relaxed) {
                return Err("broker down".to_string());
            }
            lock(&self.records).extend(records.iter().cloned());
            Ok(())
        }

        fn read(&self, id: &PartitionId) -> Result<Option<Vec<u8>>, String> {
            Ok(lock(&self.records)
                .iter()
                .rev()
                .find(|(i, _)| i == id)
                .map(|(_, r)| r.clone()))
        }
    }

    fn keeper(
        states: Arc<PartitionStates>,
        inflight: Arc<Inflight>,
    ) -> super::super::state::StateKeeper {
        let dir = tempfile::tempdir().unwrap().keep();
        super::super::state::StateKeeper {
            gate: Arc::default(),
            inflight,
            rules: Arc::new(RwLock::new(rules())),
            correlator: Arc::default(),
            baselines: Arc::default(),
            state_dir: dir,
            metrics: Metrics::new(),
            evictions_seen: 0,
            partitions: states,
        }
    }

    #[test]
    fn a_batch_is_confirmed_to_its_source_only_once_its_partitions_record_is_written() {
        let one = rules();
        let inflight = Arc::new(Inflight::default());
        let states = Arc::new(PartitionStates::new(
            CorrelatorOptions::default(),
            Arc::new(RwLock::new(one.clone())),
            Arc::default(),
            inflight.clone(),
            Metrics::new(),
        ));
        let log = Arc::new(MemoryChangelog::default());
        states.register(Arc::from("keyed"), log.clone());
        states.assigned(&id(), 1);
        let s = states.state_for(&id(), 1, &one).expect("owned");
        assert!(read(&s, 0, 2, false).is_empty());
        s.touched();
        let (tx, rx) = crossbeam_channel::unbounded();
        let held = inflight.hold(crate::ack::Ack::for_batch(7u64, tx), Vec::new(), Some(id()));
        held.done();
        let mut k = keeper(states.clone(), inflight.clone());

        log.fail.store(true, Ordering::Relaxed);
        k.snapshot(false);
        assert!(
            rx.try_recv().is_err(),
            "confirmed while its record is not written"
        );
        assert!(lock(&log.records).is_empty());

        log.fail.store(false, Ordering::Relaxed);
        k.snapshot(false);
        assert_eq!(rx.try_recv(), Ok(7), "confirmed once its record is written");
        let restored = states
            .decode(&id(), &log.read(&id()).unwrap().unwrap(), &rules())
            .expect("decoded");
        assert_eq!(
            read(&restored, 2, 1, true).len(),
            1,
            "the record holds the two reads"
        );
    }

    #[test]
    fn a_record_encoded_before_a_revocation_is_not_written_after_it() {
        let one = rules();
        let states = PartitionStates::for_rules(one.clone());
        let log = Arc::new(MemoryChangelog::default());
        states.register(Arc::from("keyed"), log.clone());
        states.assigned(&id(), 1);
        let s = states.state_for(&id(), 1, &one).expect("owned");
        s.touched();
        let early = states.encode_all(&|_| Vec::new());
        assert_eq!(early.len(), 1);
        // Two more reads, then the revocation writes the state with them.
        assert!(read(&s, 0, 2, false).is_empty());
        let taken = states.revoked(&id()).expect("held");
        states.write_one(&id(), &taken).expect("written");
        // The snapshot's write of what it encoded before comes late: it is dropped.
        states.write(early).expect("nothing to write");
        let records = lock(&log.records);
        assert_eq!(records.len(), 1, "only the revocation's record");
        let last = states.decode(&id(), &records[0].1, &one).expect("decoded");
        assert_eq!(read(&last, 2, 1, true).len(), 1);
    }
}
