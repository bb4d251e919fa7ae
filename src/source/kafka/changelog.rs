//! The changelog of a Kafka source whose state follows its partitions: a compacted topic with
//! one record per input partition (key `<topic>/<partition>`, the latest record wins), in the
//! changelog partition of the same number (modulo the changelog's partition count), so that a
//! new owner reads one changelog partition to restore one input partition.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::source::{Changelog, PartitionId};

use super::KafkaSourceConfig;

/// How long a write waits for the broker, and a metadata request for an answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest record of a partition's state written and read (64 MiB).
const MAX_RECORD_BYTES: &str = "67108864";

/// Delivery failures of the changelog's producer, gathered until the next write looks.
#[derive(Default)]
struct Deliveries {
    failed: Mutex<Vec<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((e, _)) = result {
            self.failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(e.to_string());
        }
    }
}

pub struct KafkaChangelog {
    topic: String,
    /// The source's settings, to create the topic.
    cfg: KafkaSourceConfig,
    /// The topic's partition count once it is known to exist (checked, or created, at its
    /// first use; read again at each restore); 0 before.
    partitions: std::sync::atomic::AtomicI32,
    producer: BaseProducer<Deliveries>,
    /// The settings of the consumers that read a partition's record back.
    read_config: ClientConfig,
    restore_timeout: Duration,
}

/// The clients' common settings: brokers and the source's options (TLS, SASL; the consumer
/// group's own are ignored by the clients they do not apply to).
fn base_config(cfg: &KafkaSourceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","));
    for (k, v) in &cfg.options {
        if is_consumer_group_option(k) {
            continue;
        }
        c.set(k, v.expose());
    }
    c
}

/// Options of the source's consumer group that the changelog's clients must not take.
fn is_consumer_group_option(k: &str) -> bool {
    matches!(
        k,
        "group.id"
            | "auto.offset.reset"
            | "session.timeout.ms"
            | "heartbeat.interval.ms"
            | "max.poll.interval.ms"
            | "partition.assignment.strategy"
            | "group.instance.id"
            | "enable.auto.commit"
            | "auto.commit.interval.ms"
            | "isolation.level"
    )
}

impl KafkaChangelog {
    /// The changelog of `cfg`'s partitions in `topic`, created (compacted) when absent with as
    /// many partitions as the source's largest topic.
    pub fn open(
        source: &str,
        cfg: &KafkaSourceConfig,
        topic: &str,
    ) -> Result<KafkaChangelog, String> {
        let mut pc = base_config(cfg);
        pc.set("client.id", format!("tripline-{source}-changelog"));
        pc.set("acks", "all");
        // Records of one partition stay in the order they were written, retries included.
        pc.set("enable.idempotence", "true");
        pc.set("compression.type", "lz4");
        pc.set("message.max.bytes", MAX_RECORD_BYTES);
        let producer: BaseProducer<Deliveries> = pc
            .create_with_context(Deliveries::default())
            .map_err(|e| format!("changelog producer: {e}"))?;
        let mut rc = base_config(cfg);
        rc.set("client.id", format!("tripline-{source}-restore"));
        rc.set("group.id", format!("{}-restore", cfg.group_id));
        rc.set("enable.auto.commit", "false");
        rc.set("enable.partition.eof", "true");
        rc.set("auto.offset.reset", "earliest");
        rc.set("fetch.message.max.bytes", MAX_RECORD_BYTES);
        let log = KafkaChangelog {
            topic: topic.to_string(),
            producer,
            read_config: rc,
            restore_timeout: cfg.restore_timeout.0,
            cfg: cfg.clone(),
            partitions: std::sync::atomic::AtomicI32::new(0),
        };
        // The topic is checked (and made) at its first use, the first restore: the brokers
        // need not answer when the daemon starts.
        Ok(log)
    }

    /// Partitions of `topic` (0 when it does not exist).
    fn partitions_of(&self, topic: &str) -> Result<i32, String> {
        let md = self
            .producer
            .client()
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| format!("metadata of {topic}: {e}"))?;
        let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
            return Ok(0);
        };
        match t.error() {
            None => {}
            Some(e) if RDKafkaErrorCode::from(e) == RDKafkaErrorCode::UnknownTopicOrPartition => {
                return Ok(0)
            }
            Some(e) => {
                return Err(format!(
                    "metadata of {topic}: {}",
                    RDKafkaErrorCode::from(e)
                ))
            }
        }
        Ok(i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
    }

    /// Makes sure the topic exists, and returns its partition count (known once it does, a
    /// snapshot's write asks the brokers nothing).
    fn ensure(&self) -> Result<i32, String> {
        let known = self.partitions.load(std::sync::atomic::Ordering::Relaxed);
        if known > 0 {
            return Ok(known);
        }
        self.ensure_topic(&self.cfg)?;
        self.refresh()
    }

    /// Reads the topic's partition count again.
    fn refresh(&self) -> Result<i32, String> {
        let n = self.partitions_of(&self.topic)?;
        self.partitions
            .store(n, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }

    fn ensure_topic(&self, cfg: &KafkaSourceConfig) -> Result<(), String> {
        if self.partitions_of(&self.topic)? > 0 {
            return Ok(());
        }
        let mut partitions = 1;
        for t in &cfg.topics {
            partitions = partitions.max(self.partitions_of(t)?);
        }
        let admin: AdminClient<DefaultClientContext> = base_config(cfg)
            .create()
            .map_err(|e| format!("admin client: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("runtime: {e}"))?;
        let opts = AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT));
        // The broker's default replication first (Kafka 2.4 and later), else one replica.
        let mut last = String::new();
        for replication in [-1, 1] {
            let topic = NewTopic::new(
                &self.topic,
                partitions,
                TopicReplication::Fixed(replication),
            )
            .set("cleanup.policy", "compact")
            // As large as the producer writes (a broker's default is 1 MB).
            .set("max.message.bytes", MAX_RECORD_BYTES)
            // Segments roll every 10 minutes, so that compaction keeps what a restore reads to
            // about that much history.
            .set("segment.ms", "600000");
            let result = rt
                .block_on(admin.create_topics(&[topic], &opts))
                .map_err(|e| format!("creating changelog topic {}: {e}", self.topic))?;
            match result.into_iter().next() {
                Some(Ok(_)) => {
                    tracing::info!(topic = %self.topic, partitions, replication, "changelog topic created");
                    return Ok(());
                }
                Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => return Ok(()),
                // A broker without a default replication (before Kafka 2.4): one replica.
                Some(Err((_, e @ RDKafkaErrorCode::InvalidReplicationFactor))) => {
                    last = e.to_string()
                }
                Some(Err((_, e))) => {
                    return Err(format!("creating changelog topic {}: {e}", self.topic))
                }
                None => last = "no answer".to_string(),
            }
        }
        Err(format!("creating changelog topic {}: {last}", self.topic))
    }
}

fn key_of(id: &PartitionId) -> String {
    format!("{}/{}", id.topic, id.partition)
}

impl Changelog for KafkaChangelog {
    fn write(&self, records: &[(PartitionId, Vec<u8>)]) -> Result<(), String> {
        let n = self.ensure()?.max(1);
        // Failures of an earlier write that timed out were reported with it.
        self.producer
            .context()
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        for (id, bytes) in records {
            let key = key_of(id);
            let record = BaseRecord::to(&self.topic)
                .partition(id.partition.rem_euclid(n))
                .key(&key)
                .payload(bytes);
            if let Err((e, _)) = self.producer.send(record) {
                return Err(format!("writing the state of {id}: {e}"));
            }
        }
        self.producer
            .flush(Timeout::After(WRITE_TIMEOUT))
            .map_err(|e| format!("flushing the changelog: {e}"))?;
        let failed = std::mem::take(
            &mut *self
                .producer
                .context()
                .failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        match failed.first() {
            None => Ok(()),
            Some(e) => Err(format!("{} records not written: {e}", failed.len())),
        }
    }

    fn read(&self, id: &PartitionId) -> Result<Option<Vec<u8>>, String> {
        self.ensure()?;
        let n = self.refresh()?;
        if n == 0 {
            return Ok(None);
        }
        let cp = id.partition.rem_euclid(n);
        let consumer: BaseConsumer = self
            .read_config
            .create()
            .map_err(|e| format!("changelog reader: {e}"))?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, cp, METADATA_TIMEOUT)
            .map_err(|e| format!("watermarks of {}/{cp}: {e}", self.topic))?;
        if high <= low {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, cp, Offset::Offset(low))
            .map_err(|e| e.to_string())?;
        consumer.assign(&tpl).map_err(|e| e.to_string())?;
        let want = key_of(id);
        let mut last = None;
        let deadline = Instant::now() + self.restore_timeout;
        loop {
            if Instant::now() >= deadline {
                return Err(format!(
                    "reading {}/{cp} up to offset {high} took longer than restore_timeout",
                    self.topic
                ));
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    if m.key() == Some(want.as_bytes()) {
                        // A tombstone (no payload) clears the state.
                        last = m.payload().map(<[u8]>::to_vec);
                    }
                    if m.offset() + 1 >= high {
                        return Ok(last);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(last),
                Some(Err(e)) => return Err(format!("reading {}/{cp}: {e}", self.topic)),
                None => {}
            }
        }
    }
}
