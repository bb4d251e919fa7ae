//! State that follows Kafka partitions (`partitioned_by`): instances of one consumer group
//! hand each partition's correlation windows, baselines and throttles over through the
//! changelog topic, so that a window whose events straddle a rebalance still fires, and the
//! group raises the alerts one instance reading the whole topic raises. Against the tansu
//! broker.

mod support;
use support::kafka::{assigned, create_topic};
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

/// An exec into a pod by user `u` (alerts on its own, from stateless rules), the `i`th.
fn exec(u: usize, i: usize) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x-{u}-{i}","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/prod/pods/web-{i}/exec?command=sh","verb":"create","user":{{"username":"{name}","groups":["system:authenticated"]}},"sourceIPs":["203.0.113.{u}"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"pods","namespace":"prod","name":"web-{i}","apiVersion":"v1","subresource":"exec"}},"responseStatus":{{"code":101}},"requestReceivedTimestamp":"2026-12-05T10:00:0{i}.000000Z","stageTimestamp":"2026-12-05T10:00:0{i}.050000Z","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#,
        name = user(u),
    )
}

/// Writes `(user, event)` pairs to `topic`, keyed by user, user `u` on partition
/// `u % partitions`.
fn send(addr: &str, topic: &str, partitions: i32, events: &[(usize, String)]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for (u, payload) in events {
        let key = user(*u);
        p.send(
            BaseRecord::to(topic)
                .partition((*u as i32) % partitions)
                .key(&key)
                .payload(payload),
        )
        .map_err(|(e, _)| e)
        .expect("produce");
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// Writes refusals `from..to` of every user to [`TOPIC`].
fn produce(addr: &str, from: usize, to: usize) {
    let events: Vec<(usize, String)> = (from..to)
        .flat_map(|i| (0..USERS).map(move |u| (u, refusal(u, i))))
        .collect();
    send(addr, TOPIC, PARTITIONS, &events);
}

/// A detection-tier instance in `group` reading [`TOPIC`], its state following the partitions.
fn instance(dir: &std::path::Path, addr: &str, group: &str) -> Daemon {
    instance_of(dir, addr, group, TOPIC)
}

fn instance_of(dir: &std::path::Path, addr: &str, group: &str, topic: &str) -> Daemon {
    instance_with(dir, addr, group, topic, "")
}

/// [`instance_of`], with `extra` top-level settings.
fn instance_with(
    dir: &std::path::Path,
    addr: &str,
    group: &str,
    topic: &str,
    extra: &str,
) -> Daemon {
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
    topics: [{topic}]
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
      "fetch.wait.max.ms": "20"
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
{extra}"#,
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

/// The burst correlation's alerts among [`alerts`].
fn bursts(dirs: &[&std::path::Path]) -> Vec<(String, String, String)> {
    alerts(dirs)
        .into_iter()
        .filter(|(r, _, _)| r == BURST)
        .collect()
}

/// The users with a burst alert under `dirs`.
fn burst_users(dirs: &[&std::path::Path]) -> BTreeSet<String> {
    bursts(dirs).into_iter().map(|(_, u, _)| u).collect()
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
        || burst_users(&dirs).len() >= USERS,
        || {
            format!(
                "alerts {:?}\nA:\n{}\nB:\n{}",
                alerts(&dirs),
                a.logs(),
                b.logs()
            )
        },
    );
    let fired = bursts(&dirs);
    let users: BTreeSet<String> = fired.iter().map(|(_, u, _)| u.clone()).collect();
    assert_eq!(users.len(), USERS, "{fired:?}");
    assert_eq!(fired.len(), USERS, "one burst per user: {fired:?}");

    // One instance reading the whole topic alone raises the same alerts.
    let r = instance(dr.path(), &addr, &format!("{group}-alone"));
    wait_until(
        Duration::from_secs(60),
        || bursts(&[dr.path()]).len() >= USERS,
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

/// Two, then three instances over six partitions; one is stopped, then another killed with
/// SIGKILL, each between two parts of every user's burst, which reaches its threshold only
/// after the kill: the windows survive every move, each burst fires once, and the group's
/// alerts (execs, alerted by stateless rules, among them) are those of one instance alone.
#[test]
fn windows_survive_a_join_a_stop_and_a_kill_9_and_the_group_alerts_as_one_instance() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    const TOPIC6: &str = "tl-partitioned-6";
    const USERS6: usize = 12;
    let kafka = Server::tansu();
    let addr = kafka.kafka_addr();
    create_topic(&addr, TOPIC6, 6);
    let group = format!("tl-group6-{}", std::process::id());
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths: Vec<&std::path::Path> = dirs.iter().map(|d| d.path()).collect();
    // Wave `w` (0..4): refusals 6w..6w+6 of every user, and one exec of each.
    let wave = |w: usize| -> Vec<(usize, String)> {
        let mut v = Vec::new();
        for i in 6 * w..6 * w + 6 {
            for u in 0..USERS6 {
                v.push((u, refusal(u, i)));
            }
        }
        for u in 0..USERS6 {
            v.push((u, exec(u, w)));
        }
        v
    };
    let per_wave = USERS6 * 7;
    let read = |n: usize, ds: &[&std::path::Path]| -> bool { events_read(ds) >= n };
    let show = |ds: &[&Daemon]| -> String {
        ds.iter()
            .enumerate()
            .map(|(i, d)| format!("--- instance {i}\n{}", d.logs()))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Each instance has read all it owns once the snapshots after it are written: a short
    // pause covers the 200 ms snapshot interval.
    let settle = || std::thread::sleep(Duration::from_millis(1500));

    let a = instance_of(paths[0], &addr, &group, TOPIC6);
    let b = instance_of(paths[1], &addr, &group, TOPIC6);
    a.wait_ready(Duration::from_secs(30));
    b.wait_ready(Duration::from_secs(30));
    wait_until(
        Duration::from_secs(60),
        || assigned(&a).is_some_and(|n| n > 0) && assigned(&b).is_some_and(|n| n > 0),
        || show(&[&a, &b]),
    );
    send(&addr, TOPIC6, 6, &wave(0));
    wait_until(
        Duration::from_secs(60),
        || read(per_wave, &paths[..2]),
        || show(&[&a, &b]),
    );
    settle();

    // A third instance joins.
    let c = instance_of(paths[2], &addr, &group, TOPIC6);
    wait_until(
        Duration::from_secs(60),
        || {
            [&a, &b, &c]
                .iter()
                .all(|d| assigned(d).is_some_and(|n| n > 0))
        },
        || show(&[&a, &b, &c]),
    );
    c.wait_ready(Duration::from_secs(30));
    send(&addr, TOPIC6, 6, &wave(1));
    wait_until(
        Duration::from_secs(60),
        || read(2 * per_wave, &paths[..3]),
        || show(&[&a, &b, &c]),
    );
    settle();

    // B stops (its partitions' state written at revoke).
    let status = b.stop();
    assert!(status.success(), "{status:?}");
    wait_until(
        Duration::from_secs(60),
        || {
            assigned(&a).is_some_and(|n| n > 0)
                && assigned(&c).is_some_and(|n| n > 0)
                && assigned(&a).unwrap_or(0) + assigned(&c).unwrap_or(0) == 6
        },
        || show(&[&a, &c]),
    );
    send(&addr, TOPIC6, 6, &wave(2));
    wait_until(
        Duration::from_secs(60),
        || read(3 * per_wave, &paths[..3]),
        || show(&[&a, &c]),
    );
    settle();
    assert!(
        alerts(&paths[..3]).iter().all(|(r, _, _)| r != BURST),
        "no burst before the last wave"
    );

    // C is killed: A takes its partitions from the last snapshot's records.
    c.kill9();
    wait_until(
        Duration::from_secs(60),
        || assigned(&a) == Some(6),
        || show(&[&a]),
    );
    a.wait_ready(Duration::from_secs(30));
    send(&addr, TOPIC6, 6, &wave(3));
    wait_until(
        Duration::from_secs(90),
        || burst_users(&paths[..3]).len() >= USERS6,
        || format!("alerts {:?}\n{}", alerts(&paths[..3]), show(&[&a])),
    );
    settle();
    let fired = bursts(&paths[..3]);
    // One per user; a copy only from the kill's replay (the same alert sent again).
    let distinct: BTreeSet<_> = fired.iter().cloned().collect();
    assert_eq!(distinct.len(), USERS6, "{fired:?}");

    // One instance alone, over the whole topic.
    let r = instance_of(paths[3], &addr, &format!("{group}-alone"), TOPIC6);
    wait_until(
        Duration::from_secs(90),
        || read(4 * per_wave, &paths[3..]),
        || r.logs(),
    );
    wait_until(
        Duration::from_secs(30),
        || bursts(&paths[3..]).len() >= USERS6,
        || format!("alerts {:?}\n{}", alerts(&paths[3..]), r.logs()),
    );
    settle();
    let group_alerts: BTreeSet<_> = alerts(&paths[..3]).into_iter().collect();
    let alone: BTreeSet<_> = alerts(&paths[3..]).into_iter().collect();
    let execs = alone
        .iter()
        .filter(|(r, _, id)| r != BURST && id.starts_with("x-"))
        .count();
    assert!(
        execs >= 4 * USERS6,
        "the execs alert on their own: {alone:?}"
    );
    assert_eq!(
        group_alerts.difference(&alone).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "alerts of the group that one instance does not raise"
    );
    assert_eq!(
        alone.difference(&group_alerts).collect::<Vec<_>>(),
        Vec::<&(String, String, String)>::new(),
        "alerts of one instance that the group does not raise"
    );
    for d in [a, r] {
        let status = d.stop();
        assert!(status.success(), "{status:?}");
    }
}

/// A partition that goes quiet has its windows closed by the clock even while the instance
/// stays busy with other partitions: its burst is reported without waiting for the others to
/// stop.
#[test]
fn a_quiet_partitions_burst_is_reported_while_other_partitions_stay_busy() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    const TOPIC2: &str = "tl-partitioned-busy";
    let kafka = Server::tansu();
    let addr = kafka.kafka_addr();
    create_topic(&addr, TOPIC2, 2);
    let dir = tempfile::tempdir().unwrap();
    // One worker, which is never idle while partition 1 streams.
    let d = instance_with(
        dir.path(),
        &addr,
        "tl-busy",
        TOPIC2,
        "pipeline: {workers: 1}\n",
    );
    d.wait_ready(Duration::from_secs(30));
    // User 0 (partition 0): a burst of 20 refusals, then nothing.
    let burst: Vec<(usize, String)> = (0..20).map(|i| (0, refusal(0, i))).collect();
    send(&addr, TOPIC2, 2, &burst);
    // User 1 (partition 1): a steady stream, a batch more often than the workers' idle tick,
    // until the burst is reported (or 30 s).
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let started = std::time::Instant::now();
    let mut i = 0;
    let reported = loop {
        if alerts(&[dir.path()])
            .iter()
            .any(|(r, u, _)| r == BURST && u == &user(0))
        {
            break true;
        }
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
        // Allowed reads of user 1, one a second of event time, a few a second of wall time.
        let ok = refusal(1, i % 50).replace("\"code\":403", "\"code\":200");
        let key = user(1);
        p.send(BaseRecord::to(TOPIC2).partition(1).key(&key).payload(&ok))
            .map_err(|(e, _)| e)
            .expect("produce");
        p.poll(Duration::ZERO);
        i += 1;
        std::thread::sleep(Duration::from_millis(40));
    };
    assert!(
        reported,
        "no burst for user 0 while partition 1 stayed busy: {:?}\n{}",
        alerts(&[dir.path()]),
        d.logs()
    );
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}

/// The detection tier needs no volume of its own: an instance killed with SIGKILL and started
/// again on an empty `state_dir` (a new pod) takes its partitions' state from the changelog,
/// and the bursts it was counting fire.
#[test]
fn an_instance_restarted_on_an_empty_state_dir_continues_from_the_changelog() {
    if !servers::available(&[servers::TANSU]) {
        return;
    }
    const TOPIC3: &str = "tl-partitioned-restart";
    let kafka = Server::tansu();
    let addr = kafka.kafka_addr();
    create_topic(&addr, TOPIC3, PARTITIONS);
    let group = format!("tl-restart-{}", std::process::id());
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let wave = |from: usize, to: usize| -> Vec<(usize, String)> {
        (from..to)
            .flat_map(|i| (0..USERS).map(move |u| (u, refusal(u, i))))
            .collect()
    };
    let a = instance_of(first.path(), &addr, &group, TOPIC3);
    a.wait_ready(Duration::from_secs(30));
    send(&addr, TOPIC3, PARTITIONS, &wave(0, 12));
    wait_until(
        Duration::from_secs(60),
        || events_read(&[first.path()]) >= USERS * 12,
        || a.logs(),
    );
    // The snapshots after the last batch are written (200 ms apart).
    std::thread::sleep(Duration::from_millis(1500));
    a.kill9();

    let b = instance_of(second.path(), &addr, &group, TOPIC3);
    b.wait_ready(Duration::from_secs(60));
    send(&addr, TOPIC3, PARTITIONS, &wave(12, PER_USER));
    wait_until(
        Duration::from_secs(60),
        || burst_users(&[second.path()]).len() >= USERS,
        || format!("alerts {:?}\n{}", alerts(&[second.path()]), b.logs()),
    );
    assert!(
        b.logs()
            .contains("partition state restored from the changelog"),
        "{}",
        b.logs()
    );
    let status = b.stop();
    assert!(status.success(), "{status:?}");
}

/// With no broker answering, an instance whose state follows its partitions starts, is alive
/// and not ready, and stops cleanly (its changelog topic is made at its first use).
#[test]
fn an_instance_starts_without_a_broker_and_is_alive_but_not_ready() {
    let closed = format!("127.0.0.1:{}", support::free_port());
    let dir = tempfile::tempdir().unwrap();
    let d = instance_of(dir.path(), &closed, "tl-nobroker", TOPIC);
    wait_until(
        Duration::from_secs(20),
        || {
            d.get("/healthz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        },
        || d.logs(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let ready = d.get("/readyz").unwrap_or_default();
    assert!(!ready.starts_with("HTTP/1.1 200"), "{ready}\n{}", d.logs());
    let status = d.stop();
    assert!(status.success(), "{status:?}\n");
}
