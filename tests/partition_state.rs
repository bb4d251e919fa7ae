//! State that follows Kafka partitions (`partitioned_by`): instances of one consumer group
//! hand each partition's correlation windows, baselines and throttles over through the
//! changelog topic, so that a window whose events straddle a rebalance still fires, and the
//! group raises the alerts one instance reading the whole topic raises. Against the tansu
//! broker.

mod support;
use support::{daemon, servers};

use std::collections::BTreeSet;
use std::time::Duration;

use daemon::{read_lines, wait_until, Daemon};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use servers::Server;

const TOPIC: &str = "tl-partitioned";
const PARTITIONS: i32 = 4;
const USERS: usize = 8;
/// Refusals per user: the burst correlation fires at 20 within 10 minutes.
const PER_USER: usize = 24;
const BURST: &str = "Burst Of Forbidden Requests From One Identity";

fn create_topic(addr: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = rt
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topics");
    for r in done {
        r.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

fn user(u: usize) -> String {
    format!("mallory-{u}@example.com")
}

/// A refused request (403) of user `u`, the `i`th, ten seconds apart.
fn refusal(u: usize, i: usize) -> String {
    let secs = i * 10;
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"f-{u}-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns{i}/configmaps","verb":"list","user":{{"username":"{name}","groups":["system:authenticated"]}},"sourceIPs":["203.0.113.{u}"],"userAgent":"kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819","objectRef":{{"resource":"configmaps","namespace":"ns{i}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":403}},"requestReceivedTimestamp":"2026-12-05T10:{m:02}:{s:02}.000000Z","stageTimestamp":"2026-12-05T10:{m:02}:{s:02}.000000Z"}}"#,
        name = user(u),
        m = secs / 60,
        s = secs % 60,
    )
}

/// Writes refusals `from..to` of every user, keyed by user, user `u` on partition `u % 4`.
fn produce(addr: &str, from: usize, to: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for i in from..to {
        for u in 0..USERS {
            let payload = refusal(u, i);
            let key = user(u);
            p.send(
                BaseRecord::to(TOPIC)
                    .partition((u as i32) % PARTITIONS)
                    .key(&key)
                    .payload(&payload),
            )
            .map_err(|(e, _)| e)
            .expect("produce");
        }
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// A detection-tier instance in `group`, its state following the partitions.
fn instance(dir: &std::path::Path, addr: &str, group: &str) -> Daemon {
    let port = support::free_port();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let cfg = format!(
        r#"cluster_name: central
state_dir: {d}/state
stateful:
  snapshot_interval: 200ms
  idle_timeout: 1s
sources:
  - type: kafka
    name: keyed
    brokers: ["{addr}"]
    topics: [{TOPIC}]
    group_id: {group}
    commit_interval: 200ms
    revoke_timeout: 5s
    batch_linger: 50ms
    silence_alert_after: 1h
    partitioned_by: [user.username]
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
    );
    Daemon::spawn(dir, &cfg, port)
}

fn events_read(dirs: &[&std::path::Path]) -> usize {
    dirs.iter()
        .map(|d| read_lines(&d.join("out/events.jsonl")).len())
        .sum()
}

/// (rule, user, auditID) of every alert written under `dirs`.
fn alerts(dirs: &[&std::path::Path]) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for d in dirs {
        for a in read_lines(&d.join("out/alerts.jsonl")) {
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
            out.push((
                s(&a["rule"]["name"]),
                s(&a["user"]["name"]),
                s(&a["kubernetes"]["audit"]["auditID"]),
            ));
        }
    }
    out
}

fn assigned(d: &Daemon) -> Option<i64> {
    let mut last = None;
    for l in d.logs().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        match v["fields"]["message"].as_str() {
            Some("partitions assigned") => last = v["fields"]["partitions"].as_i64(),
            Some("partitions revoked") => last = Some(0),
            _ => {}
        }
    }
    last
}

#[test]
fn a_burst_whose_events_straddle_a_rebalance_fires_once_and_the_group_alerts_as_one_instance() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    let kafka = Server::tansu();
    let addr = kafka.kafka_addr();
    create_topic(&addr, TOPIC, PARTITIONS);
    let group = format!("tl-group-{}", std::process::id());
    let (da, db, dr) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );

    // Instance A alone reads the first half of every user's refusals: 12 each, no burst yet.
    let a = instance(da.path(), &addr, &group);
    a.wait_ready(Duration::from_secs(30));
    let half = PER_USER / 2;
    produce(&addr, 0, half);
    wait_until(
        Duration::from_secs(60),
        || events_read(&[da.path()]) >= USERS * half,
        || a.logs(),
    );
    assert!(
        alerts(&[da.path()]).iter().all(|(r, _, _)| r != BURST),
        "no burst before the second half: {:?}",
        alerts(&[da.path()])
    );

    // Instance B joins: partitions move, each with its windows (written by A at revoke, read
    // by the new owner at assign).
    let b = instance(db.path(), &addr, &group);
    wait_until(
        Duration::from_secs(60),
        || {
            assigned(&a).is_some_and(|n| n > 0 && n < i64::from(PARTITIONS))
                && assigned(&b).is_some_and(|n| n > 0)
        },
        || format!("A:\n{}\nB:\n{}", a.logs(), b.logs()),
    );
    b.wait_ready(Duration::from_secs(30));
    a.wait_ready(Duration::from_secs(30));
    assert!(
        b.logs()
            .contains("partition state restored from the changelog"),
        "B restored no partition state:\n{}",
        b.logs()
    );

    // The second half: each user's burst reaches 20 on whichever instance owns it now.
    produce(&addr, half, PER_USER);
    let dirs = [da.path(), db.path()];
    wait_until(
        Duration::from_secs(60),
        || {
            alerts(&dirs)
                .iter()
                .filter(|(r, _, _)| r == BURST)
                .map(|(_, u, _)| u.clone())
                .collect::<BTreeSet<_>>()
                .len()
                >= USERS
        },
        || {
            format!(
                "alerts {:?}\nA:\n{}\nB:\n{}",
                alerts(&dirs),
                a.logs(),
                b.logs()
            )
        },
    );
    let bursts: Vec<_> = alerts(&dirs)
        .into_iter()
        .filter(|(r, _, _)| r == BURST)
        .collect();
    let users: BTreeSet<String> = bursts.iter().map(|(_, u, _)| u.clone()).collect();
    assert_eq!(users.len(), USERS, "{bursts:?}");
    assert_eq!(bursts.len(), USERS, "one burst per user: {bursts:?}");

    // One instance reading the whole topic alone raises the same alerts.
    let r = instance(dr.path(), &addr, &format!("{group}-alone"));
    wait_until(
        Duration::from_secs(60),
        || {
            alerts(&[dr.path()])
                .iter()
                .filter(|(r, _, _)| r == BURST)
                .count()
                >= USERS
        },
        || format!("alerts {:?}\n{}", alerts(&[dr.path()]), r.logs()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let group_alerts: BTreeSet<_> = alerts(&dirs).into_iter().collect();
    let alone: BTreeSet<_> = alerts(&[dr.path()]).into_iter().collect();
    assert_eq!(group_alerts, alone);
    for d in [a, b, r] {
        let status = d.stop();
        assert!(status.success(), "{status:?}");
    }
}
