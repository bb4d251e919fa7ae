//! The Kafka consumer behind a `kafka` source (cargo feature `kafka`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaResult, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{KafkaSourceConfig, FIXED};
use crate::ack::Ack;
use crate::source::Batch;
use crate::source::{PartitionHandover, PartitionId};
use crate::source::{Source, SourceEvent};
use crate::telemetry::{ConsumerLagLabels, Counter, HealthHandle, Metrics, SourceLabels};

/// Batches of one partition handed on and not yet all confirmed.
struct Partition {
    /// (topic index, partition).
    key: (usize, i32),
    /// Bumped at each assignment: a confirmation from before a revocation is ignored.
    instance: u64,
    /// By batch sequence number: the last message offset of the batch, and whether confirmed.
    pending: BTreeMap<u64, (i64, bool)>,
    next_seq: u64,
    /// Messages read and not yet handed on.
    buf: Vec<u8>,
    /// Byte position in `buf` -> message offset, for dead letters.
    offsets: Vec<(u64, u64)>,
    first_offset: i64,
    last_offset: i64,
    buf_started: Option<Instant>,
}

/// Completion of one batch of a partition, sent back once every sink that took it confirmed:
/// the partition (topic index, partition), which assignment of it, and the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Completion {
    topic: usize,
    partition: i32,
    /// Which assignment of the partition, so that a confirmation arriving after a rebalance
    /// never counts for a later assignment.
    instance: u64,
    seq: u64,
}

/// What the consumer thread and the rebalance callback share.
struct Tracker {
    source: Arc<str>,
    /// Interned topic names: a partition is keyed by its topic's index here.
    topics: Vec<String>,
    parts: HashMap<(usize, i32), Partition>,
    instances: u64,
    acks_tx: Sender<Completion>,
    acks_rx: Receiver<Completion>,
    revoke_timeout: Duration,
    commit_failures: Counter,
    /// Set once the source stops: the drain has waited for confirmations already.
    stopping: bool,
    /// Set at each assignment: the group was joined (the source is ready, even on an idle topic
    /// or with no partitions).
    joined: bool,
    /// Where the partitions' state is handed over (`partitioned_by` set), else `None`.
    states: Option<Arc<dyn PartitionHandover>>,
    /// The source's readiness, false while partitions' state is restored.
    health: Option<HealthHandle>,
}

impl Tracker {
    fn partition_id(&self, topic: &str, partition: i32) -> PartitionId {
        PartitionId {
            source: self.source.clone(),
            topic: Arc::from(topic),
            partition,
        }
    }

    /// Reads the state of newly assigned partitions from the changelog, not ready meanwhile.
    fn restore(&mut self, tpl: &TopicPartitionList) {
        let Some(states) = self.states.clone() else {
            return;
        };
        if let Some(h) = &self.health {
            h.set_ready(false);
        }
        for e in tpl.elements() {
            let id = self.partition_id(e.topic(), e.partition());
            let key = (self.topic_id(e.topic()), e.partition());
            let generation = self.parts.get(&key).map_or(0, |p| p.instance);
            let started = Instant::now();
            match states.assigned(&id, generation) {
                Some(next_offset) => tracing::info!(
                    source = %self.source,
                    partition = %id,
                    next_offset,
                    seconds = started.elapsed().as_secs_f64(),
                    "partition state restored from the changelog"
                ),
                None => {
                    tracing::info!(source = %self.source, partition = %id, "no state for the partition in the changelog; it starts empty")
                }
            }
        }
    }

    /// Writes the state of revoked partitions to the changelog one last time and drops it.
    /// With `lost` (the group went on without this instance: another owner may have moved
    /// the partition's state on), the state is dropped unwritten.
    fn hand_over(&self, keys: &[(usize, i32)], lost: bool) {
        let Some(states) = &self.states else { return };
        for (t, part) in keys {
            let id = self.partition_id(&self.topics[*t], *part);
            if lost {
                states.lost(&id);
                tracing::warn!(source = %self.source, partition = %id, "partition lost (this instance left the group); its state is dropped unwritten, its owner has the changelog's");
                continue;
            }
            match states.revoked(&id) {
                Ok(true) => {
                    tracing::info!(source = %self.source, partition = %id, "partition state written to the changelog")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(source = %self.source, partition = %id, error = %e, "cannot write the revoked partition's state; its next owner restores the last snapshot's")
                }
            }
        }
    }
}

impl Tracker {
    fn topic_id(&mut self, topic: &str) -> usize {
        match self.topics.iter().position(|t| t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() - 1
            }
        }
    }

    fn assign(&mut self, topic: &str, partition: i32) {
        let t = self.topic_id(topic);
        self.instances += 1;
        let instance = self.instances;
        self.parts.insert(
            (t, partition),
            Partition {
                key: (t, partition),
                instance,
                pending: BTreeMap::new(),
                next_seq: 0,
                buf: Vec::new(),
                offsets: Vec::new(),
                first_offset: -1,
                last_offset: -1,
                buf_started: None,
            },
        );
    }

    fn complete(&mut self, c: Completion) {
        let key = (c.topic, c.partition);
        if let Some(p) = self.parts.get_mut(&key) {
            if p.instance == c.instance {
                if let Some(e) = p.pending.get_mut(&c.seq) {
                    e.1 = true;
                }
            }
        }
    }

    fn take_completions(&mut self) {
        while let Ok(c) = self.acks_rx.try_recv() {
            self.complete(c);
        }
    }

    /// Stores the offsets of the confirmed prefix of every partition (or of `only`).
    fn store<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        only: Option<&[(usize, i32)]>,
    ) {
        for ((t, part), p) in self.parts.iter_mut() {
            if only.is_some_and(|o| !o.contains(&(*t, *part))) {
                continue;
            }
            let mut last = None;
            while let Some((&seq, &(offset, done))) = p.pending.iter().next() {
                if !done {
                    break;
                }
                p.pending.remove(&seq);
                last = Some(offset);
            }
            if let Some(offset) = last {
                // Stores `offset + 1`: the next message to read.
                if let Err(e) = consumer.store_offset(&self.topics[*t], *part, offset) {
                    tracing::warn!(source = %self.source, topic = %self.topics[*t], partition = part, error = %e, "storing an offset");
                }
            }
        }
    }

    /// Waits (up to `revoke_timeout`) for the batches of `revoked` partitions, stores and commits
    /// their confirmed offsets, and forgets them.
    fn revoke<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        revoked: &TopicPartitionList,
    ) {
        let keys: Vec<(usize, i32)> = revoked
            .elements()
            .iter()
            .map(|e| (self.topic_id(e.topic()), e.partition()))
            .collect();
        // At shutdown the drain already waited: closing the consumer revokes without waiting.
        let wait = if self.stopping {
            Duration::ZERO
        } else {
            self.revoke_timeout
        };
        let deadline = Instant::now() + wait;
        loop {
            self.take_completions();
            let waiting = keys.iter().any(|k| {
                self.parts
                    .get(k)
                    .is_some_and(|p| p.pending.values().any(|(_, done)| !done))
            });
            if !waiting || Instant::now() >= deadline {
                if waiting {
                    tracing::warn!(source = %self.source, "partitions revoked with unconfirmed batches; the new owner reads them again");
                }
                break;
            }
            if let Ok(c) = self.acks_rx.recv_timeout(Duration::from_millis(20)) {
                self.complete(c);
            }
        }
        self.store(consumer, Some(&keys));
        self.hand_over(&keys, consumer.assignment_lost());
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last commit is reported as an error too.
            if !matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::NoOffset)) {
                self.commit_failures.inc();
                tracing::warn!(source = %self.source, error = %e, "commit at revocation failed");
            }
        }
        for k in keys {
            // Messages read but not handed on are dropped: the new owner reads them.
            self.parts.remove(&k);
        }
    }
}

struct Context {
    tracker: Arc<Mutex<Tracker>>,
}

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut t = lock(&self.tracker);
        match rebalance {
            Rebalance::Revoke(tpl) => {
                tracing::info!(source = %t.source, partitions = tpl.count(), "partitions revoked");
                t.revoke(consumer, tpl);
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                tracing::warn!(source = %t.source, error = %e, "rebalance error")
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut t = lock(&self.tracker);
            tracing::info!(source = %t.source, partitions = tpl.count(), "partitions assigned");
            // With the eager protocol an assignment is the whole set: partitions not in it are
            // no longer ours, even if their revocation was not seen (their late confirmations
            // are then ignored). The cooperative protocol assigns increments.
            if !matches!(
                consumer.rebalance_protocol(),
                rdkafka::consumer::RebalanceProtocol::Cooperative
            ) {
                let keep: Vec<(usize, i32)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (t.topic_id(e.topic()), e.partition()))
                    .collect();
                t.parts.retain(|k, _| keep.contains(k));
            }
            for e in tpl.elements() {
                t.assign(e.topic(), e.partition());
            }
            // Before any of their messages is polled.
            t.restore(tpl);
            t.joined = true;
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            if !matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::NoOffset)) {
                let t = lock(&self.tracker);
                t.commit_failures.inc();
                tracing::warn!(source = %t.source, error = %e, "offset commit failed");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("kafka source `{source_name}`: {message}")]
pub struct KafkaSourceError {
    pub source_name: String,
    pub message: String,
}

pub struct KafkaSource {
    name: Arc<str>,
    cfg: KafkaSourceConfig,
    consumer: BaseConsumer<Context>,
    tracker: Arc<Mutex<Tracker>>,
    batch_max: usize,
    out: Sender<Batch>,
    events: Sender<SourceEvent>,
    messages: Counter,
    bytes: Counter,
    metrics: Arc<Metrics>,
}

/// The consumer's librdkafka settings: the configured ones, then tripline's fixed ones.
pub(crate) fn client_config(name: &str, cfg: &KafkaSourceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","));
    c.set("group.id", &cfg.group_id);
    c.set("client.id", format!("tripline-{name}"));
    c.set("auto.offset.reset", "earliest");
    c.set(
        "auto.commit.interval.ms",
        cfg.commit_interval.0.as_millis().to_string(),
    );
    for (k, v) in &cfg.options {
        c.set(k, v.expose());
    }
    for (k, v) in FIXED {
        c.set(*k, *v);
    }
    c
}

impl Source for KafkaSource {
    fn run(self: Box<Self>, stop: Arc<AtomicBool>, drain_timeout: Duration, health: HealthHandle) {
        self.consume(stop, drain_timeout, health);
    }
}

impl KafkaSource {
    pub fn new(
        name: &str,
        cfg: &KafkaSourceConfig,
        batch_max: usize,
        out: Sender<Batch>,
        events: Sender<SourceEvent>,
        metrics: Arc<Metrics>,
        states: Arc<dyn PartitionHandover>,
    ) -> Result<KafkaSource, KafkaSourceError> {
        let err = |message: String| KafkaSourceError {
            source_name: name.to_string(),
            message,
        };
        let problems = cfg.validate();
        if !problems.is_empty() {
            return Err(err(problems.join("; ")));
        }
        let (acks_tx, acks_rx) = crossbeam_channel::unbounded();
        let l = SourceLabels::new(name);
        let tracker = Arc::new(Mutex::new(Tracker {
            source: Arc::from(name),
            topics: Vec::new(),
            parts: HashMap::new(),
            instances: 0,
            acks_tx,
            acks_rx,
            revoke_timeout: cfg.revoke_timeout.0,
            joined: false,
            states: None,
            health: None,
            stopping: false,
            commit_failures: metrics.kafka_commit_failures.get_or_create_owned(&l),
        }));
        if let Some(topic) = cfg.changelog() {
            let log = super::changelog::KafkaChangelog::open(name, cfg, &topic).map_err(err)?;
            states.register(Arc::from(name), Arc::new(log));
            lock(&tracker).states = Some(states);
        }
        let consumer: BaseConsumer<Context> = client_config(name, cfg)
            .create_with_context(Context {
                tracker: tracker.clone(),
            })
            .map_err(|e| err(format!("creating the consumer: {e}")))?;
        let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| err(format!("subscribing to {topics:?}: {e}")))?;
        Ok(KafkaSource {
            name: Arc::from(name),
            cfg: cfg.clone(),
            consumer,
            tracker,
            batch_max,
            out,
            events,
            messages: metrics.kafka_messages.get_or_create_owned(&l),
            bytes: metrics.kafka_bytes.get_or_create_owned(&l),
            metrics,
        })
    }

    /// Consumes until `stop`, then drains (up to `drain_timeout`) and commits.
    fn consume(self, stop: Arc<AtomicBool>, drain_timeout: Duration, health: HealthHandle) {
        tracing::info!(source = %self.name, topics = ?self.cfg.topics, group = %self.cfg.group_id, changelog = ?self.cfg.changelog(), "kafka source started");
        lock(&self.tracker).health = Some(health.clone());
        let mut last_message = Instant::now();
        let mut silent = false;
        let mut last_lag = Instant::now();
        let mut last_store = Instant::now();
        // Not ready since a consumer error: the brokers are probed until they answer (an idle
        // topic brings no message that would say so).
        let mut failed = false;
        let mut last_probe = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if std::mem::take(&mut lock(&self.tracker).joined) {
                failed = false;
                health.set_ready(true);
            }
            match self.consumer.poll(Duration::from_millis(50)) {
                Some(Ok(m)) => {
                    failed = false;
                    health.set_ready(true);
                    last_message = Instant::now();
                    if silent {
                        silent = false;
                        let _ = self.events.try_send(SourceEvent::Silent {
                            source: self.name.clone(),
                            silent: false,
                            for_secs: 0,
                        });
                    }
                    self.take(&m);
                }
                Some(Err(e)) => {
                    tracing::warn!(source = %self.name, error = %e, "consumer error");
                    health.set_ready(false);
                    failed = true;
                    last_probe = Instant::now();
                }
                None => {}
            }
            if failed && last_probe.elapsed() >= Duration::from_secs(5) {
                last_probe = Instant::now();
                if self.brokers_answer() {
                    failed = false;
                    health.set_ready(true);
                }
            }
            self.flush(false);
            if last_store.elapsed() >= Duration::from_millis(200) {
                let mut t = lock(&self.tracker);
                t.take_completions();
                t.store(&self.consumer, None);
                last_store = Instant::now();
            }
            if last_lag.elapsed() >= Duration::from_secs(10) {
                self.report_lag();
                last_lag = Instant::now();
            }
            let quiet = last_message.elapsed();
            if !silent && quiet >= self.cfg.silence_alert_after.0 {
                // Tried again at the next turn if the control loop is busy.
                silent = self
                    .events
                    .try_send(SourceEvent::Silent {
                        source: self.name.clone(),
                        silent: true,
                        for_secs: quiet.as_secs(),
                    })
                    .is_ok();
            }
        }
        health.set_ready(false);
        // Drain: hand on what was read, wait for confirmations, commit.
        self.flush(true);
        lock(&self.tracker).stopping = true;
        let deadline = Instant::now() + drain_timeout;
        loop {
            let mut t = lock(&self.tracker);
            t.take_completions();
            let waiting = t
                .parts
                .values()
                .any(|p| p.pending.values().any(|(_, done)| !done));
            if !waiting || Instant::now() >= deadline {
                t.store(&self.consumer, None);
                break;
            }
            drop(t);
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            if !matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::NoOffset)) {
                tracing::warn!(source = %self.name, error = %e, "final commit failed");
            }
        }
        tracing::info!(source = %self.name, "kafka source stopped");
    }

    /// Adds a message to its partition's batch, as complete lines.
    fn take(&self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let Some(payload) = m.payload() else { return };
        self.messages.inc();
        self.bytes.inc_by(payload.len() as u64);
        let mut t = lock(&self.tracker);
        let topic = t.topic_id(m.topic());
        let Some(p) = t.parts.get_mut(&(topic, m.partition())) else {
            // Not (or no longer) ours: the owner reads it.
            return;
        };
        if p.buf.is_empty() {
            p.first_offset = m.offset();
            p.buf_started = Some(Instant::now());
        }
        p.offsets.push((p.buf.len() as u64, m.offset() as u64));
        p.last_offset = m.offset();
        append_lines(&mut p.buf, payload);
    }

    /// Hands on the batches that are full or old enough (all of them with `all`).
    fn flush(&self, all: bool) {
        let linger = self.cfg.batch_linger.0;
        let mut t = lock(&self.tracker);
        let acks_tx = t.acks_tx.clone();
        let topics = t.topics.clone();
        let follows = t.states.is_some();
        for ((topic, partition), p) in t.parts.iter_mut() {
            let due = p.buf_started.is_some_and(|s| s.elapsed() >= linger)
                || p.buf.len() >= self.batch_max;
            if p.buf.is_empty() || !(all || due) {
                continue;
            }
            let seq = p.next_seq;
            p.next_seq += 1;
            p.pending.insert(seq, (p.last_offset, false));
            let batch = Batch {
                source: self.name.clone(),
                path: Arc::from(format!("{}/{partition}", topics[*topic])),
                data: std::mem::take(&mut p.buf),
                first_line: 1,
                start_offset: 0,
                message_offsets: std::mem::take(&mut p.offsets),
                state_partition: follows
                    .then(|| (Arc::from(topics[*topic].as_str()), *partition, p.instance)),
                ack: Ack::for_batch(
                    Completion {
                        topic: p.key.0,
                        partition: p.key.1,
                        instance: p.instance,
                        seq,
                    },
                    acks_tx.clone(),
                ),
            };
            p.buf_started = None;
            // Backpressure: a full queue blocks here, and the consumer stops polling (librdkafka
            // keeps the group membership alive in its own threads).
            if self.out.send(batch).is_err() {
                return;
            }
        }
    }

    /// Whether the brokers answer a metadata request for the topics.
    fn brokers_answer(&self) -> bool {
        self.cfg.topics.iter().all(|topic| {
            self.consumer
                .fetch_metadata(Some(topic), Duration::from_secs(2))
                .is_ok_and(|md| md.topics().iter().all(|t| t.error().is_none()))
        })
    }

    fn report_lag(&self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        for e in positions.elements() {
            let Offset::Offset(pos) = e.offset() else {
                continue;
            };
            if let Ok((_, high)) =
                self.consumer
                    .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(1))
            {
                let labels = ConsumerLagLabels {
                    partition: e.partition(),
                    source: self.name.clone(),
                    topic: e.topic().to_owned(),
                };
                let g = self.metrics.kafka_consumer_lag.get_or_create_owned(&labels);
                g.set((high - pos).max(0));
            }
        }
    }
}

/// Appends a message's payload as complete lines: JSON lines as they are, a pretty-printed
/// document as one line (re-serialized), and a final newline if missing.
fn append_lines(buf: &mut Vec<u8>, payload: &[u8]) {
    let body = crate::event::trim_ascii(payload);
    let multi_line_doc = memchr::memchr(b'\n', body).is_some()
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok();
    if multi_line_doc {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
            if serde_json::to_writer(&mut *buf, &v).is_ok() {
                buf.push(b'\n');
                return;
            }
        }
    }
    buf.extend_from_slice(body);
    buf.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_become_complete_lines() {
        let mut buf = Vec::new();
        append_lines(&mut buf, b"{\"a\":1}");
        append_lines(&mut buf, b"{\"b\":1}\n{\"c\":2}\n");
        append_lines(&mut buf, b"{\n  \"d\": [1,\n 2]\n}\n");
        append_lines(&mut buf, b"not json\nat all");
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"a\":1}\n{\"b\":1}\n{\"c\":2}\n{\"d\":[1,2]}\nnot json\nat all\n"
        );
    }
}
