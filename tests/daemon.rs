//! `tripline run` end to end: the real binary follows files that are really appended to,
//! renamed, truncated and deleted, and is really signalled and killed.

#[path = "support/falco_payload.rs"]
mod falco_payload;
mod support;
use support::daemon;
use support::slow_endpoint::SlowEndpoint;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{append, free_port, read_lines, truncate, wait_until, Daemon};

/// Writes a config under `dir` and starts the daemon with it.
fn start(dir: &Path, extra_sinks: &str, extra: &str) -> Daemon {
    start_with(dir, extra_sinks, extra, "1h")
}

fn start_with(dir: &Path, extra_sinks: &str, extra: &str, silence: &str) -> Daemon {
    start_edit(dir, extra_sinks, extra, silence, &|c| c)
}

/// Like `start_with`, with a last edit of the config text.
fn start_edit(
    dir: &Path,
    extra_sinks: &str,
    extra: &str,
    silence: &str,
    edit: &dyn Fn(String) -> String,
) -> Daemon {
    let port = free_port();
    let cfg = format!(
        r#"cluster_name: test
state_dir: {dir}/state
input:
  max_line_bytes: 4096
sources:
  - type: file
    name: audit
    paths: ["{dir}/logs/*.log"]
    read_from: beginning
    poll_interval: 100ms
    checkpoint_interval: 200ms
    silence_alert_after: {silence}
sinks:
  - type: file
    name: alerts
    path: {dir}/out/alerts.jsonl
    flows: [alerts]
{extra_sinks}
telemetry:
  listen: 127.0.0.1:{port}
  log_format: json
{extra}
"#,
        dir = dir.display()
    );
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let d = Daemon::spawn(dir, &edit(cfg), port);
    wait_until(
        Duration::from_secs(20),
        || {
            d.get("/readyz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        },
        || d.logs(),
    );
    d
}

/// Waits (10 s at most) until the alerts file has an alert.
fn wait_for_alerts(d: &Daemon, alerts: &Path) {
    wait_until(
        Duration::from_secs(10),
        || !read_lines(alerts).is_empty(),
        || d.logs(),
    );
}

/// Waits (10 s at most) until the metric sample starting with `prefix` is at least 1.
fn wait_for_metric(d: &Daemon, prefix: &str) {
    wait_until(
        Duration::from_secs(10),
        || d.metric(prefix).is_some_and(|v| v >= 1.0),
        || format!("{}\n{}", d.get("/metrics").unwrap_or_default(), d.logs()),
    );
}

fn event(id: &str, verb: &str, subresource: Option<&str>) -> String {
    let sub = subresource
        .map(|s| format!(r#","subresource":"{s}""#))
        .unwrap_or_default();
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/prod/pods/web-0/exec?command=sh","verb":"{verb}","user":{{"username":"mallory@example.com","groups":["system:authenticated"]}},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"pods","namespace":"prod","name":"web-0","apiVersion":"v1"{sub}}},"responseStatus":{{"code":101}},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.050000Z","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
    )
}

fn quiet_event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/configmaps/x","verb":"get","user":{{"username":"system:kube-controller-manager"}},"sourceIPs":["10.0.0.2"],"objectRef":{{"resource":"configmaps","namespace":"kube-system","name":"x","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-03-01T10:00:00.050000Z"}}"#
    )
}

/// auditID -> how many times it was delivered in the events file. A last line without its
/// newline is being written while the file is read (the sink writes a batch in large writes):
/// it is not delivered yet, and is left out. Every whole line must be JSON.
fn delivered_ids(path: &Path) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    for line in whole.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line ({e}): {line}"));
        if let Some(id) = v["kubernetes"]["audit"]["auditID"].as_str() {
            *ids.entry(id.to_string()).or_default() += 1;
        }
    }
    ids
}

const EVENTS_SINK: &str =
    "  - type: file\n    name: events\n    path: OUT/events.jsonl\n    flows: [events]\n";

fn events_sink(dir: &Path) -> String {
    EVENTS_SINK.replace("OUT", &dir.join("out").display().to_string())
}

#[test]
fn appended_lines_alert_and_a_partial_line_waits_for_its_newline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, "", "");
    let log = dir.join("logs/audit.log");
    let alerts = dir.join("out/alerts.jsonl");
    let line = event("exec-1", "create", Some("exec"));
    let (head, tail) = line.split_at(100);
    append(&log, head);
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        read_lines(&alerts).is_empty(),
        "a partial line must not be read"
    );
    append(&log, &format!("{tail}\n"));
    wait_for_alerts(&d, &alerts);
    let a = read_lines(&alerts);
    assert!(
        a.iter()
            .any(|a| a["kubernetes"]["audit"]["auditID"] == "exec-1"),
        "{a:?}"
    );
    assert_eq!(a[0]["orchestrator"]["cluster"]["name"], "test");
    assert!(
        d.metric("tripline_events_received_total{source=\"audit\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    let st = d.stop();
    assert!(st.success(), "SIGTERM exits 0: {st:?}");
    assert!(dir.join("state/checkpoints-audit.json").exists());
}

/// A bare HTTP/1.1 receiver for the daemon's `template: falco` sink: answers 200 to every
/// request (keep-alive) and keeps each body.
fn body_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let got = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let got = got.clone();
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + 4 + len {
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    assert!(head.starts_with("post / "), "{head}");
                    assert!(head.contains("content-type: application/json"), "{head}");
                    got.lock()
                        .unwrap()
                        .push(buf[end + 4..end + 4 + len].to_vec());
                    buf.drain(..end + 4 + len);
                    if conn
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

/// Falco-shaped outputs in the daemon: a file sink with `format: falco` and an HTTP sink with
/// `template: falco` (falcosidekick's `POST /`) get one falcosidekick payload per alert, with
/// the node name as hostname, beside the ECS file sink.
#[test]
fn falco_format_and_template_deliver_falcosidekick_payloads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (url, bodies) = body_receiver();
    let sinks = format!(
        "  - type: file\n    name: falco-file\n    path: {}/out/falco.jsonl\n    format: falco\n  - type: http\n    name: sidekick\n    url: {url}\n    template: falco\n    batch: {{ flush_interval: 20ms }}\n",
        dir.display()
    );
    let d = start(dir, &sinks, "node_name: node-1\n");
    let _g = KillOnDrop(d.child.id());
    append(
        &dir.join("logs/audit.log"),
        &format!("{}\n", event("exec-1", "create", Some("exec"))),
    );
    let falco_file = dir.join("out/falco.jsonl");
    // Every sink has had the alerts of the event.
    wait_until(
        Duration::from_secs(10),
        || {
            let n = read_lines(&dir.join("out/alerts.jsonl")).len();
            n > 0 && read_lines(&falco_file).len() == n && bodies.lock().unwrap().len() == n
        },
        || d.logs(),
    );
    let ecs = read_lines(&dir.join("out/alerts.jsonl"));
    let lines = std::fs::read_to_string(&falco_file).unwrap();
    let posted = bodies.lock().unwrap().clone();
    assert_eq!(lines.lines().count(), ecs.len());
    assert_eq!(posted.len(), ecs.len());
    for (line, body) in lines.lines().zip(&posted) {
        for bytes in [line.as_bytes(), body.as_slice()] {
            let p = falco_payload::FalcoPayload::parse(bytes);
            assert_eq!(p.hostname.as_deref(), Some("node-1"));
            assert_eq!(p.source, "k8s_audit");
            assert_eq!(p.output_fields["ka.auditid"], "exec-1");
            assert_eq!(p.output_fields["ka.target.subresource"], "exec");
            assert!(p.uuid.as_deref().is_some_and(|u| !u.is_empty()));
            assert!(
                ecs.iter().any(|a| a["rule"]["name"] == p.rule.as_str()),
                "{}",
                p.rule
            );
        }
    }
    assert!(d.stop().success());
}

#[test]
fn rotation_by_rename_while_writing_loses_nothing_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &events_sink(dir), "");
    let log = dir.join("logs/audit.log");
    let total = 6000;
    let mut rotations = 0;
    for i in 0..total {
        append(&log, &format!("{}\n", quiet_event(&format!("ev-{i}"))));
        if i % 250 == 249 {
            // What the API server does: rename, then write a new file. The rotated name still
            // matches the glob.
            std::fs::rename(
                &log,
                dir.join(format!(
                    "logs/audit-2026-03-01T10-00-{rotations:02}.000.log"
                )),
            )
            .unwrap();
            rotations += 1;
        }
    }
    let events = dir.join("out/events.jsonl");
    wait_until(
        Duration::from_secs(30),
        || delivered_ids(&events).len() >= total,
        || d.logs(),
    );
    let ids = delivered_ids(&events);
    assert_eq!(ids.len(), total, "every event delivered");
    let dups: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "{} duplicated, e.g. {:?}",
        dups.len(),
        dups.first()
    );
    assert!(rotations >= 20);
    assert!(d.stop().success());
}

#[test]
fn copy_truncate_deletion_and_late_files_are_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &events_sink(dir), "");
    let events = dir.join("out/events.jsonl");
    let log = dir.join("logs/audit.log");
    for i in 0..100 {
        append(&log, &format!("{}\n", quiet_event(&format!("a-{i}"))));
    }
    wait_until(
        Duration::from_secs(10),
        || delivered_ids(&events).len() >= 100,
        || d.logs(),
    );
    // Copy-truncate: the copy goes where the glob does not look; the original restarts at 0.
    std::fs::copy(&log, dir.join("logs/audit.log.1")).unwrap();
    truncate(&log);
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..50 {
        append(&log, &format!("{}\n", quiet_event(&format!("b-{i}"))));
    }
    // A file that appears later is read from its beginning.
    let late = dir.join("logs/late.log");
    for i in 0..30 {
        append(&late, &format!("{}\n", quiet_event(&format!("c-{i}"))));
    }
    wait_until(
        Duration::from_secs(10),
        || delivered_ids(&events).len() >= 180,
        || d.logs(),
    );
    // Deleted after being read: released, and nothing else happens.
    std::fs::remove_file(&late).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ids = delivered_ids(&events);
    assert_eq!(ids.len(), 180);
    assert!(ids.values().all(|n| *n == 1), "no duplicates");
    assert!(
        d.metric("tripline_file_truncations_total{source=\"audit\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(d.stop().success());
}

/// Regression (reliability report): logrotate's copytruncate with `dateext` names that match
/// the glob (`audit-<date>.log` under `*.log`): every copy was read again in full. A copy
/// continues the reading of the content it copied; each event is delivered exactly once.
#[test]
fn copy_truncate_with_copies_under_the_glob_delivers_each_event_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &events_sink(dir), "");
    let _g = KillOnDrop(d.child.id());
    let events = dir.join("out/events.jsonl");
    let log = dir.join("logs/audit.log");
    let (rounds, per_round) = (8, 250);
    for r in 0..rounds {
        let mut text = String::new();
        for i in 0..per_round {
            text.push_str(&format!("{}\n", quiet_event(&format!("ct-{r}-{i}"))));
        }
        append(&log, &text);
        // Sometimes the source has read it all before the copy, sometimes not.
        std::thread::sleep(Duration::from_millis(if r % 2 == 0 { 300 } else { 0 }));
        std::fs::copy(&log, dir.join(format!("logs/audit-2026030{r}.log"))).unwrap();
        truncate(&log);
        // Let the source see the truncation before the file grows past what it read.
        std::thread::sleep(Duration::from_millis(300));
    }
    let total = rounds * per_round;
    wait_until(
        Duration::from_secs(20),
        || delivered_ids(&events).len() >= total,
        || d.logs(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let ids = delivered_ids(&events);
    let dups: usize = ids.values().map(|n| n - 1).sum();
    eprintln!(
        "copytruncate under the glob: {} events, {dups} duplicates",
        ids.len()
    );
    assert_eq!(ids.len(), total, "every event delivered");
    assert_eq!(dups, 0, "no event delivered twice");
    // Seen at least in the rounds where the source had read the file before the copy.
    assert!(
        d.metric("tripline_file_truncations_total{source=\"audit\"}")
            .unwrap_or(0.0)
            >= (rounds / 2) as f64
    );
    // A restart reads none of the copies again.
    assert!(d.stop().success());
    let d = start(dir, &events_sink(dir), "");
    let _g = KillOnDrop(d.child.id());
    std::thread::sleep(Duration::from_millis(800));
    assert!(d.stop().success());
    let ids = delivered_ids(&events);
    assert_eq!(
        ids.values().map(|n| n - 1).sum::<usize>(),
        0,
        "read again after a restart"
    );
}

#[test]
fn kill_9_then_restart_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("logs/audit.log");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let d = start(dir, &events_sink(dir), "");
    let events = dir.join("out/events.jsonl");
    for i in 0..3000 {
        append(&log, &format!("{}\n", quiet_event(&format!("k-{i}"))));
    }
    // Kill while it is working, with no chance to checkpoint.
    wait_until(
        Duration::from_secs(10),
        || !delivered_ids(&events).is_empty(),
        || d.logs(),
    );
    d.kill9();
    for i in 3000..4000 {
        append(&log, &format!("{}\n", quiet_event(&format!("k-{i}"))));
    }
    let d = start(dir, &events_sink(dir), "");
    wait_until(
        Duration::from_secs(20),
        || delivered_ids(&events).len() >= 4000,
        || d.logs(),
    );
    let ids = delivered_ids(&events);
    assert_eq!(ids.len(), 4000, "no event lost");
    let dup = ids.values().filter(|n| **n > 1).count();
    eprintln!("kill -9: {dup} events delivered twice");
    // At least once: what was read but not yet checkpointed (at most one checkpoint interval
    // before the kill) is delivered again, once; what came after the restart exactly once.
    assert!(
        ids.values().all(|n| *n <= 2),
        "an event delivered more than twice"
    );
    assert!((3000..4000).all(|i| ids[&format!("k-{i}")] == 1));
    assert!(d.stop().success());
}

#[test]
fn bad_lines_are_counted_and_dead_lettered_and_the_daemon_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, "", "");
    let log = dir.join("logs/audit.log");
    let mut body = String::new();
    body.push_str("this is not json\n");
    body.push_str("{\"kind\": 0}\n");
    body.push_str(&"x".repeat(10_000));
    body.push('\n');
    body.push_str(&event("after-bad", "create", Some("exec")));
    body.push('\n');
    append(&log, &body);
    let alerts = dir.join("out/alerts.jsonl");
    wait_for_alerts(&d, &alerts);
    wait_for_metric(
        &d,
        "tripline_lines_skipped_total{reason=\"too_long\",source=\"audit\"}",
    );
    assert!(
        d.metric("tripline_lines_skipped_total{reason=\"malformed_json\",source=\"audit\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    assert!(
        d.metric("tripline_lines_skipped_total{reason=\"not_an_event\",source=\"audit\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    let dl = read_lines(&dir.join("state/dead-letter.jsonl"));
    let reasons: Vec<&str> = dl.iter().filter_map(|r| r["reason"].as_str()).collect();
    assert_eq!(reasons, ["malformed_json", "not_an_event"], "{dl:?}");
    assert_eq!(dl[0]["line"], 1);
    assert!(d.stop().success());
}

#[test]
fn sighup_with_a_broken_rule_keeps_the_old_rules_running() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let rule = "title: Any Get\nid: 6a1e2f3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b\nlogsource: {product: kubernetes, service: audit}\ndetection:\n  s:\n    verb: get\n    objectRef.resource: configmaps\n  condition: s\nlevel: low\n";
    std::fs::write(rules.join("custom.yml"), rule).unwrap();
    let extra = format!("rules:\n  builtin: false\n  paths: [{}]\n", rules.display());
    let d = start(dir, "", &extra);
    std::fs::write(
        rules.join("custom.yml"),
        rule.replace("verb: get", "verb|nonsense: get"),
    )
    .unwrap();
    d.signal("-HUP");
    wait_for_metric(&d, "tripline_rule_reloads_total{result=\"failed\"}");
    append(
        &dir.join("logs/audit.log"),
        &format!("{}\n", quiet_event("still-alerting")),
    );
    let alerts = dir.join("out/alerts.jsonl");
    wait_for_alerts(&d, &alerts);
    assert_eq!(read_lines(&alerts)[0]["rule"]["name"], "Any Get");
    assert!(d.logs().contains("nonsense"), "the broken rule is logged");
    assert!(d.stop().success());
}

/// SIGHUP reads the config file again: an edit of `rules` applies at once; an edit that also
/// touches a section that needs a restart is refused whole, logged and counted as failed.
#[test]
fn sighup_applies_rule_settings_of_the_config_and_refuses_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let rule = |title: &str, id: &str| {
        format!("title: {title}\nid: {id}\nlogsource: {{product: kubernetes, service: audit}}\ndetection:\n  s:\n    verb: get\n    objectRef.resource: configmaps\n  condition: s\nlevel: low\n")
    };
    let (first, second) = (
        "6a1e2f3b-4c5d-4e6f-8a9b-0c1d2e3f4a51",
        "6a1e2f3b-4c5d-4e6f-8a9b-0c1d2e3f4a52",
    );
    std::fs::write(rules.join("a.yml"), rule("First Get", first)).unwrap();
    std::fs::write(rules.join("b.yml"), rule("Second Get", second)).unwrap();
    let extra = format!("rules:\n  builtin: false\n  paths: [{}]\n", rules.display());
    let d = start(dir, "", &extra);
    let config = dir.join("tripline.yaml");
    let original = std::fs::read_to_string(&config).unwrap();
    let log = dir.join("logs/audit.log");
    let alerts = dir.join("out/alerts.jsonl");
    let fired = |id: &str| {
        read_lines(&alerts)
            .iter()
            .filter(|a| a["kubernetes"]["audit"]["auditID"] == id)
            .map(|a| a["rule"]["name"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };

    // 1. Disabling a rule in the config applies on SIGHUP.
    let disabled = original.replace(
        "  builtin: false\n",
        &format!("  builtin: false\n  disable: [{first}]\n"),
    );
    assert_ne!(disabled, original, "the edit applies");
    std::fs::write(&config, &disabled).unwrap();
    d.signal("-HUP");
    wait_for_metric(&d, "tripline_rule_reloads_total{result=\"ok\"}");
    append(&log, &format!("{}\n", quiet_event("after-disable")));
    wait_until(
        Duration::from_secs(10),
        || !fired("after-disable").is_empty(),
        || d.logs(),
    );
    assert_eq!(fired("after-disable"), ["Second Get"]);

    // 2. The same file with a sink changed too: refused whole, the rules stay as they are.
    let refused = disabled
        .replace(
            &format!("disable: [{first}]"),
            &format!("disable: [{first}, {second}]"),
        )
        .replace("out/alerts.jsonl", "out/elsewhere.jsonl");
    std::fs::write(&config, refused).unwrap();
    d.signal("-HUP");
    wait_for_metric(&d, "tripline_rule_reloads_total{result=\"failed\"}");
    assert!(
        d.logs()
            .contains("changes to `sinks` take effect only when tripline restarts"),
        "{}",
        d.logs()
    );
    append(&log, &format!("{}\n", quiet_event("after-refusal")));
    wait_until(
        Duration::from_secs(10),
        || !fired("after-refusal").is_empty(),
        || d.logs(),
    );
    assert_eq!(fired("after-refusal"), ["Second Get"]);
    assert!(!dir.join("out/elsewhere.jsonl").exists());
    assert!(d.stop().success());
}

#[test]
fn silence_raises_an_alert_and_a_metric() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start_with(dir, "", "", "1s");
    let alerts = dir.join("out/alerts.jsonl");
    wait_for_alerts(&d, &alerts);
    let a = read_lines(&alerts);
    assert_eq!(a[0]["rule"]["name"], "Audit Events Stopped");
    assert_eq!(a[0]["tripline"]["source"], "audit");
    assert_eq!(
        d.metric("tripline_source_silent{source=\"audit\"}"),
        Some(1.0)
    );
    // Events again: the metric clears.
    append(
        &dir.join("logs/audit.log"),
        &format!("{}\n", quiet_event("back")),
    );
    wait_until(
        Duration::from_secs(10),
        || d.metric("tripline_source_silent{source=\"audit\"}") == Some(0.0),
        || d.logs(),
    );
    assert!(d.stop().success());
}

#[test]
fn a_failing_optional_sink_drops_to_dead_letters_without_stalling() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // /dev/full accepts the open and fails every write (ENOSPC).
    let sink = "  - type: file\n    name: chat\n    path: /dev/full\n    flows: [alerts]\n    required: false\n";
    let d = start(dir, sink, "stateful:\n  snapshot_interval: 200ms\n");
    append(
        &dir.join("logs/audit.log"),
        &format!("{}\n", event("exec-9", "create", Some("exec"))),
    );
    let alerts = dir.join("out/alerts.jsonl");
    wait_for_alerts(&d, &alerts);
    wait_for_metric(&d, "tripline_sink_dropped_total{sink=\"chat\"}");
    let dl = read_lines(&dir.join("state/dead-letter.jsonl"));
    assert!(
        dl.iter()
            .any(|r| r["reason"] == "sink_dropped" && r["sink"] == "chat"),
        "{dl:?}"
    );
    // The checkpoint still advances past the batch: the required sink confirmed it.
    std::thread::sleep(Duration::from_millis(500));
    let cp = std::fs::read_to_string(dir.join("state/checkpoints-audit.json")).unwrap();
    assert!(!cp.contains("\"offset\": 0"), "{cp}");
    assert!(d.stop().success());
}

/// Reads 100 events with the daemon, stops it, then (while it is down) appends 50 more, rotates
/// the file the way `--audit-log-compress` does (rename, gzip, delete) and starts a new file with
/// 10 events. Returns the new file.
fn rotate_compressed_while_stopped(dir: &Path, prefix: &str) -> PathBuf {
    let log = dir.join("logs/audit.log");
    let events = dir.join("out/events.jsonl");
    let d = start(dir, &events_sink(dir), "");
    for i in 0..100 {
        append(
            &log,
            &format!("{}\n", quiet_event(&format!("{prefix}-{i}"))),
        );
    }
    wait_until(
        Duration::from_secs(10),
        || delivered_ids(&events).len() >= 100,
        || d.logs(),
    );
    assert!(d.stop().success());
    for i in 100..150 {
        append(
            &log,
            &format!("{}\n", quiet_event(&format!("{prefix}-{i}"))),
        );
    }
    let rotated = dir.join("logs/audit-2026-03-01T10-00-00.000.log");
    std::fs::rename(&log, &rotated).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&std::fs::read(&rotated).unwrap()).unwrap();
    std::fs::write(rotated.with_extension("log.gz"), gz.finish().unwrap()).unwrap();
    std::fs::remove_file(&rotated).unwrap();
    for i in 150..160 {
        append(
            &log,
            &format!("{}\n", quiet_event(&format!("{prefix}-{i}"))),
        );
    }
    log
}

/// Restarts the daemon and checks that all 160 events were delivered exactly once.
fn restart_and_expect_each_of_160_once(dir: &Path) -> Daemon {
    let events = dir.join("out/events.jsonl");
    let d = start(dir, &events_sink(dir), "");
    wait_until(
        Duration::from_secs(10),
        || delivered_ids(&events).len() >= 160,
        || d.logs(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let ids = delivered_ids(&events);
    assert_eq!(ids.len(), 160, "the tail inside the .gz was read");
    assert!(ids.values().all(|n| *n == 1), "nothing read twice");
    d
}

#[test]
fn a_rotated_file_compressed_while_stopped_is_resumed_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    rotate_compressed_while_stopped(tmp.path(), "g");
    let d = restart_and_expect_each_of_160_once(tmp.path());
    assert!(d.stop().success());
}

/// Regression: the deleted file's inode is often reused at once by the new `audit.log`; the
/// checkpoint then names the new file's inode with the old file's fingerprint. Forced here by
/// editing the checkpoint, since filesystems reuse inodes only sometimes.
#[test]
fn a_compressed_backup_is_resumed_even_when_its_inode_was_reused() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = rotate_compressed_while_stopped(dir, "r");
    let cp_path = dir.join("state/checkpoints-audit.json");
    let mut cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cp_path).unwrap()).unwrap();
    cp["files"][0]["ino"] = std::fs::metadata(&log).unwrap().ino().into();
    std::fs::write(&cp_path, serde_json::to_string(&cp).unwrap()).unwrap();
    let d = restart_and_expect_each_of_160_once(dir);
    assert!(d.logs().contains("inode reused"), "the reuse path ran");
    assert!(d.stop().success());
}

/// Kills a daemon that a failing assertion would otherwise leave running.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// Regression (review): during the very first run with `read_from: end`, a file created after
/// start must be read from its beginning.
#[test]
fn on_the_first_run_files_created_later_are_read_from_the_beginning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start_edit(dir, &events_sink(dir), "", "1h", &|c| {
        c.replace("read_from: beginning", "read_from: end")
    });
    let _g = KillOnDrop(d.child.id());
    std::thread::sleep(Duration::from_millis(500));
    let mut text = String::new();
    for i in 0..5 {
        text.push_str(&format!("{}\n", quiet_event(&format!("late-{i}"))));
    }
    append(&dir.join("logs/audit.log"), &text);
    std::thread::sleep(Duration::from_millis(300));
    append(
        &dir.join("logs/audit.log"),
        &format!("{}\n", quiet_event("late-5")),
    );
    let events = dir.join("out/events.jsonl");
    wait_until(
        Duration::from_secs(10),
        || delivered_ids(&events).len() >= 6,
        || d.logs(),
    );
    assert!(d.stop().success());
}

/// Regression (review): a required sink that keeps failing must not hold shutdown past
/// `pipeline.shutdown_timeout`; the undelivered batches stay unconfirmed.
#[test]
fn sigterm_with_a_failing_required_sink_exits_after_the_shutdown_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sink = "  - type: file\n    name: stuck\n    path: /dev/full\n    flows: [alerts]\n";
    let d = start(
        dir,
        sink,
        "pipeline:\n  workers: 1\n  queue_batches: 1\n  shutdown_timeout: 2s\n",
    );
    let _g = KillOnDrop(d.child.id());
    for i in 0..6 {
        append(
            &dir.join("logs/audit.log"),
            &format!("{}\n", event(&format!("x-{i}"), "create", Some("exec"))),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    assert!(d.stop().success());
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    // Nothing was confirmed by the stuck sink: the checkpoint did not move past the alerts.
    let cp = std::fs::read_to_string(dir.join("state/checkpoints-audit.json")).unwrap();
    assert!(cp.contains("\"offset\": 0"), "{cp}");
}

/// Regression (review): a checkpoint whose inode now belongs to another file (no backup
/// exists) must not make the live file be read again at every restart.
#[test]
fn a_reused_inode_without_backup_is_read_once_across_restarts() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("logs/audit.log");
    let events = dir.join("out/events.jsonl");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    for i in 0..20 {
        append(&log, &format!("{}\n", quiet_event(&format!("n-{i}"))));
    }
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let m = std::fs::metadata(&log).unwrap();
    let cp = serde_json::json!({"version": 1, "files": [{
        "dev": m.dev(), "ino": m.ino(), "fingerprint": 12345u64, "fingerprint_len": 1024,
        "offset": 100, "line": 1, "path": log.display().to_string()}]});
    std::fs::write(dir.join("state/checkpoints-audit.json"), cp.to_string()).unwrap();
    for _ in 0..3 {
        let d = start(dir, &events_sink(dir), "");
        let _g = KillOnDrop(d.child.id());
        wait_until(
            Duration::from_secs(10),
            || delivered_ids(&events).len() >= 20,
            || d.logs(),
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(d.stop().success());
    }
    let ids = delivered_ids(&events);
    assert!(
        ids.values().all(|n| *n == 1),
        "read again on restart: {ids:?}"
    );
}

/// Regression (review): a file first seen empty must not be "resumed" from an unrelated
/// compressed backup.
#[test]
fn a_file_first_seen_empty_is_not_resumed_from_an_unrelated_backup() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("logs/audit.log");
    let events = dir.join("out/events.jsonl");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let d = start(dir, &events_sink(dir), "");
    let _g = KillOnDrop(d.child.id());
    std::fs::File::create(&log).unwrap();
    let cp_path = dir.join("state/checkpoints-audit.json");
    wait_until(
        Duration::from_secs(10),
        || std::fs::read_to_string(&cp_path).is_ok_and(|c| c.contains("audit.log")),
        || d.logs(),
    );
    for i in 0..10 {
        append(&log, &format!("{}\n", quiet_event(&format!("e-{i}"))));
    }
    wait_until(
        Duration::from_secs(10),
        || delivered_ids(&events).len() >= 10,
        || d.logs(),
    );
    assert!(d.stop().success());
    let gz = |text: &[u8], to: &Path| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(text).unwrap();
        std::fs::write(to, e.finish().unwrap()).unwrap();
    };
    let mut old = String::new();
    for i in 0..50 {
        old.push_str(&format!("{}\n", quiet_event(&format!("old-{i}"))));
    }
    gz(
        old.as_bytes(),
        &dir.join("logs/audit-2020-01-01T00-00-00.000.log.gz"),
    );
    for i in 10..15 {
        append(&log, &format!("{}\n", quiet_event(&format!("e-{i}"))));
    }
    gz(
        &std::fs::read(&log).unwrap(),
        &dir.join("logs/audit-2026-03-01T10-00-00.000.log.gz"),
    );
    std::fs::remove_file(&log).unwrap();
    let d = start(dir, &events_sink(dir), "");
    let _g2 = KillOnDrop(d.child.id());
    wait_until(
        Duration::from_secs(10),
        || delivered_ids(&events).len() >= 15,
        || d.logs(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let ids = delivered_ids(&events);
    assert!(d.stop().success());
    let olds = ids.keys().filter(|k| k.starts_with("old-")).count();
    let news = ids.keys().filter(|k| k.starts_with("e-")).count();
    assert_eq!((olds, news), (0, 15), "{ids:?}");
}

/// Regression (review): state that cannot be kept is an error at start, and a source whose
/// checkpoints start failing later is not ready.
#[test]
fn an_unwritable_state_dir_fails_start_and_failing_checkpoints_clear_readiness() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("not-a-dir"), "x").unwrap();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::write(
        dir.join("bad.yaml"),
        format!(
            "state_dir: {}/not-a-dir/state\nsources:\n  - type: file\n    paths: [\"{}/logs/*.log\"]\nsinks:\n  - type: stdout\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["run", "--config"])
        .arg(dir.join("bad.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("state_dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let d = start(dir, "", "");
    let _g = KillOnDrop(d.child.id());
    // The state directory disappears and a file takes its place.
    std::fs::remove_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state"), "x").unwrap();
    append(
        &dir.join("logs/audit.log"),
        &format!("{}\n", quiet_event("after")),
    );
    wait_until(
        Duration::from_secs(10),
        || {
            d.get("/readyz")
                .is_some_and(|r| r.starts_with("HTTP/1.1 503"))
        },
        || d.logs(),
    );
    assert!(
        d.metric("tripline_checkpoint_write_failures_total{source=\"audit\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    d.kill9();
}

/// A line of exactly `input.max_line_bytes` (newline not counted) is accepted; one byte more
/// is skipped.
#[test]
fn a_line_of_exactly_the_limit_is_read_and_one_byte_more_is_skipped() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &events_sink(dir), "");
    let _g = KillOnDrop(d.child.id());
    let pad = |id: &str, len: usize| {
        let e = quiet_event(id);
        let e = e.strip_suffix('}').unwrap().to_string();
        let filler = len - e.len() - r#","x":""}"#.len();
        format!("{e},\"x\":\"{}\"}}", "a".repeat(filler))
    };
    let (a, b) = (pad("exact", 4096), pad("over", 4097));
    append(
        &dir.join("logs/audit.log"),
        &format!("{a}\n{b}\n{}\n", quiet_event("after")),
    );
    let events = dir.join("out/events.jsonl");
    // Batches are delivered in any order (parallel workers): wait for both lines that must
    // arrive, then check that the one between them did not.
    wait_until(
        Duration::from_secs(10),
        || {
            let ids = delivered_ids(&events);
            ids.contains_key("after") && ids.contains_key("exact")
        },
        || format!("{:?}\n{}", delivered_ids(&events), d.logs()),
    );
    let ids = delivered_ids(&events);
    assert!(!ids.contains_key("over"), "{ids:?}");
    assert!(d.stop().success());
}

/// Unmounts a test's tmpfs when the test ends, however it ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Regression (reliability report): a record torn by a full disk before a SIGTERM was glued to
/// the record sent again after the restart, leaving an invalid JSON line in the file sink. The
/// sink's directory is a 1 MiB tmpfs that really fills up; needs root to mount it (CI runs as
/// root), and is skipped with a message otherwise.
#[test]
fn a_full_disk_then_sigterm_and_restart_leaves_only_whole_lines_in_the_file_sink() {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|v| v.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false);
    if !uid {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount -t tmpfs failed (running as root)");
    let _unmount = Unmount(out.clone());
    // Leave about 100 KiB free: room for some records, not for all.
    let filler = out.join("filler");
    std::fs::write(&filler, vec![b'f'; 900 * 1024]).unwrap();
    let log = dir.join("logs/audit.log");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let events = out.join("events.jsonl");
    let n = 300;
    let mut body = String::new();
    for i in 0..n {
        body.push_str(&quiet_event(&format!("f-{i}")));
        body.push('\n');
    }
    let pipeline = "pipeline:\n  shutdown_timeout: 1s\n";
    let d = start(dir, &events_sink(dir), pipeline);
    append(&log, &body);
    wait_for_metric(&d, "tripline_sink_failures_total{sink=\"events\"}");
    assert!(d.stop().success());
    let before = std::fs::read(&events).unwrap();
    assert!(
        !before.is_empty() && !before.ends_with(b"\n"),
        "the disk filled up in the middle of a record"
    );
    std::fs::remove_file(&filler).unwrap();

    let d = start(dir, &events_sink(dir), pipeline);
    // Every record is written again or for the first time: at least `n` lines.
    wait_until(
        Duration::from_secs(20),
        || {
            std::fs::read(&events)
                .unwrap_or_default()
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                >= n
        },
        || d.logs(),
    );
    wait_until(
        Duration::from_secs(10),
        || {
            d.metric("tripline_sink_records_delivered_total{sink=\"events\"}")
                .is_some_and(|v| v >= n as f64)
        },
        || d.logs(),
    );
    assert!(d.stop().success());
    let text = std::fs::read_to_string(&events).unwrap();
    assert!(text.ends_with('\n'));
    let mut ids: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("an invalid line ({e}) in the file sink: {line}"));
        let id = v["kubernetes"]["audit"]["auditID"].as_str().unwrap();
        *ids.entry(id.to_string()).or_default() += 1;
    }
    // Nothing lost; what was written whole before the stop but never confirmed is written
    // again once, and nothing else twice.
    let whole_before: std::collections::HashSet<String> = before
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            v["kubernetes"]["audit"]["auditID"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(ids.len(), n, "lost records");
    for (id, count) in &ids {
        assert!(
            *count == 1 || (*count == 2 && whole_before.contains(id)),
            "{id} written {count} times"
        );
    }
    let dup = ids.values().filter(|c| **c == 2).count();
    assert_eq!(text.lines().count(), n + dup);
    eprintln!(
        "full disk: {} whole records before the stop, {dup} written twice",
        whole_before.len()
    );
}

/// Regression (reliability report): every bad line wrote a WARN line (1 MiB of garbage gave
/// 1.1 MB of logs). The warnings are rate-limited per source, with a summary of how many were
/// suppressed; the counters and the dead-letter file still get every line.
#[test]
fn a_flood_of_bad_lines_is_counted_and_dead_lettered_line_by_line_but_logged_in_bounded_volume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, "", "");
    let log = dir.join("logs/audit.log");
    let (bad, long) = (3000, 40);
    let mut body = String::new();
    for i in 0..bad {
        body.push_str(&format!("garbage line {i}\n"));
        if i % (bad / long) == 0 {
            body.push_str(&"y".repeat(5000));
            body.push('\n');
        }
    }
    append(&log, &body);
    let malformed = "tripline_lines_skipped_total{reason=\"malformed_json\",source=\"audit\"}";
    let too_long = "tripline_lines_skipped_total{reason=\"too_long\",source=\"audit\"}";
    wait_until(
        Duration::from_secs(20),
        || d.metric(malformed) == Some(bad as f64) && d.metric(too_long) == Some(long as f64),
        || format!("{}\n{}", d.get("/metrics").unwrap_or_default(), d.logs()),
    );
    let dl = read_lines(&dir.join("state/dead-letter.jsonl"));
    assert_eq!(
        dl.len(),
        bad,
        "one dead letter per line that is not an event"
    );
    let warnings = |logs: &str| {
        logs.lines()
            .filter(|l| l.contains("skipped: ") || l.contains("line longer than"))
            .count()
    };
    let logged = warnings(&d.logs());
    assert!(
        logged <= 20,
        "{logged} warnings logged for {} bad lines",
        bad + long
    );
    // The next window's first warning says how many were suppressed.
    std::thread::sleep(Duration::from_secs(6));
    append(&log, "one more garbage line\n");
    wait_until(
        Duration::from_secs(10),
        || d.logs().contains("suppressed"),
        || d.logs(),
    );
    let logs = d.logs();
    let summary: serde_json::Value =
        serde_json::from_str(logs.lines().find(|l| l.contains("suppressed")).unwrap()).unwrap();
    assert_eq!(
        summary["fields"]["suppressed"].as_u64(),
        Some((bad + long - logged) as u64),
        "{summary}"
    );
    assert_eq!(
        read_lines(&dir.join("state/dead-letter.jsonl")).len(),
        bad + 1
    );
    assert!(d.stop().success());
}

/// Regression (reliability report): behind a slow sink, with a backlog, the file source sat
/// blocked on the full pipeline and wrote no checkpoint for as long as the backlog lasted, so
/// `kill -9` sent everything delivered so far again. The checkpoint follows the confirmations
/// while the source is blocked: what is sent again is about one `checkpoint_interval` of
/// throughput, not the backlog.
#[test]
fn kill_9_behind_a_slow_sink_sends_again_about_one_checkpoint_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("logs/audit.log");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let total = 4000;
    let mut text = String::new();
    for i in 0..total {
        text.push_str(&format!("{}\n", quiet_event(&format!("s-{i}"))));
    }
    append(&log, &text);
    // About 10 events per 40 ms: 250 events a second, a backlog of 16 s.
    let endpoint = SlowEndpoint::start(Duration::from_millis(40));
    let sink = format!(
        "  - type: http\n    name: events\n    url: {}\n    mode: batch\n    timeout: 30s\n    flows: [events]\n    batch: {{ max_records: 10, flush_interval: 20ms }}\n",
        endpoint.url("events")
    );
    let pipeline = "pipeline: { workers: 1, queue_batches: 1, batch_max_bytes: 4096 }\nstateful: { snapshot_interval: 200ms }\n";
    let d = start(dir, &sink, pipeline);
    let _g = KillOnDrop(d.child.id());
    wait_until(
        Duration::from_secs(20),
        || !endpoint.delivered(None).is_empty(),
        || d.logs(),
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let before = endpoint.delivered(None).len();
    let rate = before as f64 / started.elapsed().as_secs_f64();
    // Held back, the source still reports the backlog it has not read (it read a chunk or
    // two of 256 KiB).
    let lag = d
        .metric("tripline_source_lag_bytes{source=\"audit\"}")
        .unwrap_or(0.0);
    let len = text.len() as f64;
    d.kill9();
    assert!(lag >= len / 2.0 && lag < len, "lag {lag} of {len}");
    assert!(before < total / 2, "the backlog was still there: {before}");

    endpoint.set_delay(Duration::ZERO);
    let d = start(dir, &sink, pipeline);
    let _g = KillOnDrop(d.child.id());
    wait_until(
        Duration::from_secs(30),
        || endpoint.delivered(None).len() >= total,
        || d.logs(),
    );
    let ids = endpoint.delivered(None);
    assert_eq!(ids.len(), total, "no event lost");
    let again = ids.values().filter(|n| **n > 1).count();
    eprintln!(
        "kill -9 behind a slow sink: {before} delivered ({rate:.0}/s), {again} sent again \
         (checkpoint_interval 200ms)"
    );
    assert!(ids.values().all(|n| *n <= 2), "an event sent three times");
    // One interval (200 ms) of confirmations not yet written, one snapshot interval (200 ms)
    // they wait for the stateful rules' snapshot, the wait before the source looks again
    // (100 ms), and the batch that was being confirmed: twice that, for slack.
    let bound = (rate * 1.0) as usize + 20;
    assert!(
        again <= bound,
        "{again} of {before} delivered events sent again (bound {bound})"
    );
    assert!(d.stop().success());
}

/// A correlation in the daemon: 403s of one identity, appended as they happen, raise one
/// "Burst Of Forbidden Requests From One Identity" alert once the watermark (event time minus
/// the 10 s lateness) has passed them, whichever worker took which batch.
#[test]
fn a_burst_of_refusals_raises_one_correlation_alert() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, "", "pipeline:\n  workers: 2\n");
    let log = dir.join("logs/audit.log");
    let alerts = dir.join("out/alerts.jsonl");
    let refused = |i: u32| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"r-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns{i}/configmaps","verb":"list","user":{{"username":"mallory@example.com","groups":["system:authenticated"]}},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"configmaps","namespace":"ns{i}","apiVersion":"v1"}},"responseStatus":{{"code":403}},"stageTimestamp":"2026-03-01T10:00:{i:02}.000000Z"}}"#
        )
    };
    // 30 refusals over 30 s, in several appends (several batches).
    for chunk in (0..30).collect::<Vec<u32>>().chunks(7) {
        let text: String = chunk.iter().map(|&i| refused(i) + "\n").collect();
        append(&log, &text);
        std::thread::sleep(Duration::from_millis(150));
    }
    // A later event moves the watermark past all of them.
    append(
        &log,
        &(quiet_event("q-late").replace("10:00:00.050000Z", "10:01:30.000000Z") + "\n"),
    );
    let title = "Burst Of Forbidden Requests From One Identity";
    wait_until(
        Duration::from_secs(15),
        || {
            read_lines(&alerts)
                .iter()
                .any(|a| a["rule"]["name"] == title)
        },
        || format!("{:?}\n{}", read_lines(&alerts), d.logs()),
    );
    std::thread::sleep(Duration::from_millis(500));
    let found: Vec<serde_json::Value> = read_lines(&alerts)
        .into_iter()
        .filter(|a| a["rule"]["name"] == title)
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let c = &found[0]["tripline"]["correlation"];
    assert_eq!(c["group"]["user.username"], "mallory@example.com");
    assert_eq!(c["count"], 20);
    assert_eq!(c["first"], "2026-03-01T10:00:00.000000Z");
    assert_eq!(c["last"], "2026-03-01T10:00:19.000000Z");
    assert_eq!(found[0]["orchestrator"]["cluster"]["name"], "test");
    assert!(d.stop().success());
}

/// One identity per alert, as the alert id is made: a rule and its event, or a correlation,
/// its group and the event that made it fire.
fn alert_keys(path: &Path) -> std::collections::BTreeMap<String, usize> {
    let mut keys = std::collections::BTreeMap::new();
    for a in read_lines(path) {
        let rule = a["rule"]["name"].as_str().unwrap_or("?").to_string();
        let c = &a["tripline"]["correlation"];
        let key = if c.is_object() {
            format!("{rule} / {} / {}", c["group"], c["trigger"])
        } else {
            format!(
                "{rule} / {}",
                a["kubernetes"]["audit"]["auditID"].as_str().unwrap_or("?")
            )
        };
        *keys.entry(key).or_default() += 1;
    }
    keys
}

/// Events of one story told across a crash: a burst of refusals that reaches the
/// correlation's 20 only with events from both sides, and Secret reads throttled per person
/// and namespace for 10 minutes.
fn straddling_events() -> (Vec<String>, Vec<String>) {
    let at = |s: u32| format!("2026-03-01T10:{:02}:{:02}.000000Z", s / 60, s % 60);
    let refused = |i: u32| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"r-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns{i}/configmaps","verb":"list","user":{{"username":"mallory@example.com","groups":["system:authenticated"]}},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"configmaps","namespace":"ns{i}","apiVersion":"v1"}},"responseStatus":{{"code":403}},"stageTimestamp":"{}"}}"#,
            at(i + 1)
        )
    };
    let secret = |i: u32, s: u32| {
        format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"s-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/prod/secrets/db-{i}","verb":"get","user":{{"username":"alice@example.com","groups":["system:authenticated"]}},"sourceIPs":["10.0.0.5"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"secrets","namespace":"prod","name":"db-{i}","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"{}"}}"#,
            at(s)
        )
    };
    let quiet = |id: &str, s: u32| quiet_event(id).replace("2026-03-01T10:00:00.050000Z", &at(s));
    let mut before = vec![secret(0, 0)];
    before.extend((0..12).map(refused));
    before.push(secret(1, 13));
    before.push(quiet("q-a", 14));
    let mut after: Vec<String> = (12..20).map(refused).collect();
    after.push(secret(2, 23));
    after.push(quiet("q-b", 120));
    (before, after)
}

/// The alerts of one run over the whole story, without a crash.
fn alerts_without_a_crash() -> std::collections::BTreeMap<String, usize> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (before, after) = straddling_events();
    let d = start(dir, "", "pipeline:\n  workers: 2\n");
    let log = dir.join("logs/audit.log");
    let text: String = before
        .iter()
        .chain(&after)
        .map(|l| format!("{l}\n"))
        .collect();
    append(&log, &text);
    let alerts = dir.join("out/alerts.jsonl");
    wait_until(
        Duration::from_secs(15),
        || {
            alert_keys(&alerts)
                .keys()
                .any(|k| k.starts_with("Burst Of Forbidden"))
        },
        || d.logs(),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.stop().success());
    alert_keys(&alerts)
}

/// `kill -9` after the first part of the story was processed and snapshotted, then a
/// restart; with `lose_checkpoint`, the checkpoint is deleted as well, as if the crash came
/// between the snapshot and the checkpoint write, so the restart reads everything again.
fn alerts_across_a_kill_9(lose_checkpoint: bool) -> std::collections::BTreeMap<String, usize> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (before, after) = straddling_events();
    let extra = "pipeline:\n  workers: 2\nstateful:\n  snapshot_interval: 200ms\n";
    let d = start(dir, "", extra);
    let log = dir.join("logs/audit.log");
    let text: String = before.iter().map(|l| format!("{l}\n")).collect();
    append(&log, &text);
    let state = dir.join("state/state.json");
    wait_until(
        Duration::from_secs(10),
        || {
            d.metric("tripline_events_received_total{source=\"audit\"}")
                .unwrap_or(0.0)
                >= before.len() as f64
        },
        || d.logs(),
    );
    // A snapshot after the last batch, and the checkpoint it lets through.
    std::thread::sleep(Duration::from_millis(1000));
    assert!(state.exists(), "no snapshot written:\n{}", d.logs());
    d.kill9();
    if lose_checkpoint {
        std::fs::remove_file(dir.join("state/checkpoints-audit.json")).unwrap();
    }
    let d = start(dir, "", extra);
    let text: String = after.iter().map(|l| format!("{l}\n")).collect();
    append(&log, &text);
    let alerts = dir.join("out/alerts.jsonl");
    wait_until(
        Duration::from_secs(15),
        || {
            alert_keys(&alerts)
                .keys()
                .any(|k| k.starts_with("Burst Of Forbidden"))
        },
        || format!("{:?}\n{}", alert_keys(&alerts), d.logs()),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.stop().success());
    alert_keys(&alerts)
}

/// A correlation whose events straddle a `kill -9`, and a throttle window opened before it,
/// give after the restart exactly the alerts of a run without the crash: with the checkpoint
/// (the windows come from the snapshot) and without it (everything is read again, and the
/// snapshot already counted the first part). Removing the redelivery window makes the second
/// case fire early, at another event.
#[test]
fn stateful_rules_resume_after_kill_9_with_the_alerts_of_a_run_without_it() {
    let want = alerts_without_a_crash();
    let burst = want
        .keys()
        .filter(|k| k.starts_with("Burst Of Forbidden"))
        .count();
    assert_eq!(burst, 1, "{want:#?}");
    let secret_reads = want.keys().filter(|k| k.contains("/ s-")).count();
    assert_eq!(secret_reads, 1, "throttled to one alert: {want:#?}");

    let got = alerts_across_a_kill_9(false);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "kill -9, restart from the checkpoint"
    );
    let got = alerts_across_a_kill_9(true);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "kill -9, checkpoint lost, everything read again"
    );
    assert!(
        got.values().all(|n| *n <= 2),
        "an alert delivered more than twice: {got:#?}"
    );
}

/// A reload keeps the windows of the correlations it does not change: a burst that straddles
/// a SIGHUP (which disables an unrelated rule) still fires, at the 20th refusal.
#[test]
fn a_reload_keeps_the_windows_of_unchanged_correlations() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (before, after) = straddling_events();
    let d = start(dir, "", "pipeline:\n  workers: 2\n");
    let log = dir.join("logs/audit.log");
    append(
        &log,
        &before.iter().map(|l| format!("{l}\n")).collect::<String>(),
    );
    wait_until(
        Duration::from_secs(10),
        || {
            d.metric("tripline_events_received_total{source=\"audit\"}")
                .unwrap_or(0.0)
                >= before.len() as f64
        },
        || d.logs(),
    );
    let config = dir.join("tripline.yaml");
    let original = std::fs::read_to_string(&config).unwrap();
    // Any rule change reloads the whole set; this one touches no correlation.
    std::fs::write(
        &config,
        format!("{original}\nrules:\n  disable: [00000000-0000-0000-0000-000000000000]\n"),
    )
    .unwrap();
    d.signal("-HUP");
    wait_for_metric(&d, "tripline_rule_reloads_total{result=\"ok\"}");
    append(
        &log,
        &after.iter().map(|l| format!("{l}\n")).collect::<String>(),
    );
    let alerts = dir.join("out/alerts.jsonl");
    wait_until(
        Duration::from_secs(15),
        || {
            alert_keys(&alerts)
                .keys()
                .any(|k| k.starts_with("Burst Of Forbidden"))
        },
        || format!("{:?}\n{}", alert_keys(&alerts), d.logs()),
    );
    let burst: Vec<serde_json::Value> = read_lines(&alerts)
        .into_iter()
        .filter(|a| a["tripline"]["correlation"].is_object())
        .collect();
    assert_eq!(burst.len(), 1, "{burst:?}");
    assert_eq!(burst[0]["tripline"]["correlation"]["count"], 20);
    assert_eq!(
        burst[0]["tripline"]["correlation"]["first"],
        "2026-03-01T10:00:01.000000Z"
    );
    assert!(d.stop().success());
}

/// On a quiet stream, event time moves on with the clock after `stateful.idle_timeout`: the
/// burst's last refusal is released without a later event.
#[test]
fn a_quiet_stream_still_closes_its_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (before, after) = straddling_events();
    let d = start(dir, "", "stateful:\n  idle_timeout: 1s\n  lateness: 1s\n");
    let log = dir.join("logs/audit.log");
    // The burst and nothing after it that would move time past its last refusal.
    let text: String = before
        .iter()
        .chain(after.iter().filter(|l| l.contains("\"auditID\":\"r-")))
        .map(|l| format!("{l}\n"))
        .collect();
    append(&log, &text);
    let alerts = dir.join("out/alerts.jsonl");
    wait_until(
        Duration::from_secs(15),
        || {
            alert_keys(&alerts)
                .keys()
                .any(|k| k.starts_with("Burst Of Forbidden"))
        },
        || format!("{:?}\n{}", alert_keys(&alerts), d.logs()),
    );
    assert!(d.stop().success());
}

/// An audit event at `t` seconds after 10:00: `user` from `ip` gets `code` for a `verb` on
/// `resource`.
fn timed_event(
    n: usize,
    t: f64,
    user: &str,
    ip: &str,
    verb: &str,
    resource: &str,
    code: u16,
) -> String {
    let at = |s: f64| {
        let micros = (s * 1e6) as u64;
        format!(
            "2026-03-01T10:{:02}:{:02}.{:06}Z",
            micros / 60_000_000,
            (micros / 1_000_000) % 60,
            micros % 1_000_000
        )
    };
    let decision = if code < 400 { "allow" } else { "forbid" };
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"ord-{n}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/{resource}","verb":"{verb}","user":{{"username":"{user}","groups":["system:authenticated"]}},"sourceIPs":["{ip}"],"userAgent":"kubectl/v1.30.0 (linux/amd64) kubernetes/7c48c2b","objectRef":{{"resource":"{resource}","namespace":"shop","apiVersion":"v1"}},"responseStatus":{{"code":{code}}},"annotations":{{"authorization.k8s.io/decision":"{decision}"}},"requestReceivedTimestamp":"{}","stageTimestamp":"{}"}}"#,
        at(t),
        at(t + 0.01)
    )
}

/// Batches are read in parallel by the workers, but the stateful step (throttles,
/// once-per-request, correlations) takes them in the order they were read: several workers
/// raise exactly the alerts of one worker, on the same events, whatever the batches' timing.
#[test]
fn several_workers_raise_the_alerts_of_one_worker_on_the_same_events() {
    // Anonymous requests allowed (throttled per address, verb and resource for 10 minutes:
    // which request of a key alerts depends on order), 403 bursts (a correlation), and noise,
    // over 4 minutes of event time.
    let mut lines = String::new();
    let resources = ["pods", "secrets", "configmaps"];
    for n in 0..3000 {
        let t = n as f64 * 0.08;
        let line = match n % 10 {
            0..=3 => timed_event(
                n,
                t,
                "system:anonymous",
                &format!("203.0.113.{}", n % 7),
                "get",
                resources[n % 3],
                200,
            ),
            4 | 5 => timed_event(
                n,
                t,
                &format!("mallory{}@example.com", n % 3),
                "198.51.100.7",
                "list",
                resources[(n / 10) % 3],
                403,
            ),
            _ => quiet_event(&format!("ord-{n}")),
        };
        lines.push_str(&line);
        lines.push('\n');
    }
    let run = |workers: usize| -> std::collections::BTreeMap<String, usize> {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("logs/audit.log"), &lines).unwrap();
        let d = start(
            dir,
            "",
            &format!("pipeline:\n  workers: {workers}\n  batch_max_bytes: 4096\n"),
        );
        let _g = KillOnDrop(d.child.id());
        wait_until(
            Duration::from_secs(30),
            || {
                d.metric("tripline_events_received_total{source=\"audit\"}")
                    .unwrap_or(0.0)
                    >= 3000.0
            },
            || d.logs(),
        );
        // Stopping flushes what the last batches released.
        assert!(d.stop().success());
        alert_keys(&dir.join("out/alerts.jsonl"))
    };
    let one = run(1);
    let anonymous = one
        .keys()
        .filter(|k| k.starts_with("Anonymous Access To API Resource Allowed /"))
        .count();
    assert_eq!(
        anonymous, 21,
        "one alert per address, verb and resource: {one:#?}"
    );
    assert!(
        one.keys().any(|k| k.matches(" / ").count() == 2),
        "a correlation fired: {one:#?}"
    );
    assert!(one.values().all(|&n| n == 1), "no alert twice: {one:#?}");
    for workers in [3, 4] {
        assert_eq!(run(workers), one, "{workers} workers");
    }
}
