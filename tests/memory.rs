//! The daemon's memory is bounded by its configuration, not by its input: the real `tripline run`
//! binary follows a file that receives RequestResponse events of about 14 MB with an events sink,
//! and its peak RSS (`VmHWM`) stays well inside the file DaemonSet's 256Mi limit.

mod support;
use support::daemon;

use std::path::Path;
use std::time::Duration;

use daemon::{append, free_port, wait_until, Daemon};

/// The bound asserted on the daemon's peak RSS, well inside the shipped DaemonSet's 256Mi limit
/// (the debug build measures about 111 MiB here; before the bounds, well over 400 MiB).
const PEAK_RSS_BOUND: u64 = 160 << 20;

fn start(dir: &Path) -> Daemon {
    let (cfg, port) = config(dir);
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let d = Daemon::spawn(dir, &cfg, port);
    d.wait_ready(Duration::from_secs(20));
    d
}

/// The daemon's config under `dir` (alerts and events to files, four workers) and its telemetry
/// port.
fn config(dir: &Path) -> (String, u16) {
    let port = free_port();
    let cfg = format!(
        r#"cluster_name: test
state_dir: {dir}/state
sources:
  - type: file
    name: audit
    paths: ["{dir}/logs/*.log"]
    read_from: beginning
    poll_interval: 100ms
    checkpoint_interval: 200ms
sinks:
  - type: file
    name: alerts
    path: {dir}/out/alerts.jsonl
    flows: [alerts]
  - type: file
    name: events
    path: {dir}/out/events.jsonl
    flows: [events]
pipeline:
  workers: 4
{pipeline}
telemetry:
  listen: 127.0.0.1:{port}
  log_format: json
"#,
        dir = dir.display(),
        pipeline = std::env::var("TRIPLINE_MEASURE_PIPELINE").unwrap_or_default(),
    );
    (cfg, port)
}

/// The peak resident set size of process `pid` (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    status_bytes(pid, "VmHWM:")
}

/// A size from `/proc/<pid>/status` (`VmHWM:`, `VmRSS:`), in bytes.
fn status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .expect("the key in /proc/<pid>/status");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb << 10
}

/// A RequestResponse `list` event of `resource` whose response holds items until the line is
/// at least `size` bytes.
fn big_list(id: &str, resource: &str, size: usize) -> String {
    let head = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/{resource}","verb":"list","user":{{"username":"mallory@example.com","groups":["system:authenticated"]}},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"{resource}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.050000Z","annotations":{{"authorization.k8s.io/decision":"allow"}},"responseObject":{{"kind":"List","apiVersion":"v1","metadata":{{"resourceVersion":"1"}},"items":["#
    );
    let mut line = head;
    let mut i = 0;
    while line.len() < size {
        if i > 0 {
            line.push(',');
        }
        // A pod as `kubectl get pods` lists it, in short: many small members, as in a real
        // list, which is what makes a parsed copy of it many times its size.
        line.push_str(&format!(
            r#"{{"metadata":{{"name":"web-{i}","namespace":"prod","uid":"0d1e2f3a-{i:08}","labels":{{"app":"web","tier":"frontend"}}}},"data":{{"key":"c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhdmU="}},"spec":{{"containers":[{{"name":"web","image":"registry.example.com/web:1.2.3","ports":[{{"containerPort":8080,"protocol":"TCP"}}],"resources":{{"limits":{{"cpu":"1","memory":"1Gi"}}}}}}]}},"status":{{"phase":"Running","podIP":"10.0.{}.{}","conditions":[{{"type":"Ready","status":"True"}}]}}}}"#,
            i / 256 % 256,
            i % 256
        ));
        i += 1;
    }
    line.push_str("]}}\n");
    line
}

/// The complete documents of `path` whose `kubernetes.audit.auditID` is `id` (a line the sink
/// is still writing is not one yet).
fn events_with_id(path: &Path, id: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter(|l| l.contains(id))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["kubernetes"]["audit"]["auditID"] == id)
        .collect()
}

#[test]
fn events_of_14_mb_are_forwarded_reduced_within_the_memory_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir);
    let log = dir.join("logs/audit.log");
    let events = dir.join("out/events.jsonl");
    let alerts = dir.join("out/alerts.jsonl");
    let pid = d.child.id();

    // One event, then a burst of several, then a secret list that a rule alerts on.
    append(&log, &big_list("big-0", "pods", 14 << 20));
    wait_until(
        Duration::from_secs(60),
        || !events_with_id(&events, "big-0").is_empty(),
        || d.logs(),
    );
    eprintln!("peak RSS after one event: {} MiB", peak_rss(pid) >> 20);
    let burst: String = (1..=5)
        .map(|i| big_list(&format!("big-{i}"), "pods", 14 << 20))
        .collect();
    append(&log, &burst);
    wait_until(
        Duration::from_secs(120),
        || !events_with_id(&events, "big-5").is_empty(),
        || d.logs(),
    );
    eprintln!(
        "peak RSS after a burst of five: {} MiB",
        peak_rss(pid) >> 20
    );
    append(&log, &big_list("secrets-0", "secrets", 14 << 20));
    wait_until(
        Duration::from_secs(120),
        || !events_with_id(&events, "secrets-0").is_empty(),
        || d.logs(),
    );
    let peak = peak_rss(pid);
    eprintln!("peak RSS (VmHWM): {} MiB", peak >> 20);
    std::thread::sleep(Duration::from_secs(1));
    eprintln!(
        "RSS kept afterwards: {} MiB",
        status_bytes(pid, "VmRSS:") >> 20
    );
    assert!(
        peak < PEAK_RSS_BOUND,
        "peak RSS {} MiB, bound {} MiB",
        peak >> 20,
        PEAK_RSS_BOUND >> 20
    );

    // Every event is forwarded once, reduced: its body replaced by a marker with its size.
    for id in [
        "big-0",
        "big-1",
        "big-2",
        "big-3",
        "big-4",
        "big-5",
        "secrets-0",
    ] {
        let docs = events_with_id(&events, id);
        assert_eq!(docs.len(), 1, "{id} forwarded once");
        let audit = &docs[0]["kubernetes"]["audit"];
        let body = &audit["responseObject"];
        assert_eq!(
            body["tripline"].as_str(),
            Some("omitted-too-big"),
            "{id}: {body}"
        );
        assert!(body["bytes"].as_u64().unwrap() > 14_000_000, "{id}: {body}");
        assert_eq!(audit["verb"], "list");
    }
    // The rules still saw the whole event; the alert carries it reduced too.
    wait_until(
        Duration::from_secs(10),
        || !events_with_id(&alerts, "secrets-0").is_empty(),
        || d.logs(),
    );
    let alert = &events_with_id(&alerts, "secrets-0")[0];
    assert_eq!(alert["rule"]["name"], "Secret Read By Non-System User");
    assert_eq!(
        alert["kubernetes"]["audit"]["responseObject"]["tripline"],
        "omitted-too-big"
    );
    assert!(!std::fs::read_to_string(&alerts)
        .unwrap()
        .contains("c2VjcmV0LXZhbHVl"));
    // No secret value leaves.
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(!text.contains("c2VjcmV0LXZhbHVl"));
    assert_eq!(
        d.metric("tripline_events_reduced_total{source=\"audit\"}"),
        Some(7.0)
    );
    d.stop();
}

/// The README's table of peak RSS per input: `cargo test --release --test memory -- --ignored
/// --nocapture`; `TRIPLINE_BIN` measures another build of the binary instead, and
/// `TRIPLINE_MEASURE_PIPELINE` adds keys under `pipeline:` (e.g. `  max_event_bytes: 67108864`).
#[test]
#[ignore = "a measurement, not a check"]
fn peak_rss_per_input() {
    let bin = std::env::var("TRIPLINE_BIN").unwrap_or(env!("CARGO_BIN_EXE_tripline").into());
    eprintln!("| input | peak RSS (VmHWM) | RSS afterwards |");
    eprintln!("|---|---|---|");
    for (what, size, count) in [
        ("idle", 0, 0),
        ("one 100 KB event", 100 << 10, 1),
        ("one 1 MB event", 1 << 20, 1),
        ("one 4 MB event", 4 << 20, 1),
        ("one 14 MB event", 14 << 20, 1),
        ("ten 14 MB events at once", 14 << 20, 10),
    ] {
        if std::env::var("TRIPLINE_MEASURE_ONLY").is_ok_and(|only| !what.contains(&only)) {
            continue;
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (cfg, port) = config(dir);
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("tripline.yaml"), cfg).unwrap();
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        let child = std::process::Command::new(&bin)
            .args(["run", "--config"])
            .arg(dir.join("tripline.yaml"))
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            dir: dir.to_path_buf(),
            port,
        };
        d.wait_ready(Duration::from_secs(20));
        let text: String = (0..count)
            .map(|i| big_list(&format!("e-{i}"), "pods", size))
            .collect();
        append(&dir.join("logs/audit.log"), &text);
        // Workers finish out of order: wait for every document.
        wait_until(
            Duration::from_secs(300),
            || {
                d.metric("tripline_sink_records_delivered_total{sink=\"events\"}")
                    .unwrap_or(0.0)
                    >= f64::from(count)
            },
            || d.logs(),
        );
        std::thread::sleep(Duration::from_secs(1));
        let pid = d.child.id();
        eprintln!(
            "| {what} | {} MiB | {} MiB |",
            peak_rss(pid) >> 20,
            status_bytes(pid, "VmRSS:") >> 20
        );
        let events = std::fs::read_to_string(dir.join("out/events.jsonl")).unwrap_or_default();
        eprintln!(
            "   ({} documents, {} MiB forwarded)",
            events.lines().count(),
            events.len() >> 20
        );
        d.stop();
    }
}
