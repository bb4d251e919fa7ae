//! The audit webhook source end to end: the real binary, a real HTTPS client presenting client
//! certificates made for the test (a CA, a server and client certificate, and a client
//! certificate from another CA), the spool on disk, `kill -9` right after a 200.

mod support;
use support::daemon;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon::{free_port, read_lines, wait_until, Daemon};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    /// PEM of a client certificate and key signed by `ca`.
    client: Vec<u8>,
    /// PEM of a client certificate and key from another CA.
    stranger: Vec<u8>,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, name: &str, client: bool) -> (String, String) {
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki(dir: &Path) -> Pki {
    let ca1 = ca("tripline test CA");
    let ca2 = ca("another CA");
    let (scert, skey) = leaf(&ca1, "localhost", false);
    let (ccert, ckey) = leaf(&ca1, "kube-apiserver", true);
    let (xcert, xkey) = leaf(&ca2, "kube-apiserver", true);
    let p = Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("tls.crt"),
        server_key: dir.join("tls.key"),
        client: format!("{ccert}{ckey}").into_bytes(),
        stranger: format!("{xcert}{xkey}").into_bytes(),
    };
    std::fs::write(&p.ca, ca1.pem()).unwrap();
    std::fs::write(&p.server_cert, scert).unwrap();
    std::fs::write(&p.server_key, skey).unwrap();
    p
}

struct Hook {
    daemon: Daemon,
    url: String,
}

/// Starts the daemon with a webhook source (`extra` adds keys to it) and file sinks for alerts
/// and events; `sink_path` replaces the events file (e.g. `/dev/full`).
fn start(dir: &Path, pki: &Pki, extra: &str, events_path: Option<&str>) -> Hook {
    let port = free_port();
    let hook_port = free_port();
    let events = events_path
        .map(String::from)
        .unwrap_or_else(|| format!("{}/out/events.jsonl", dir.display()));
    let cfg = format!(
        r#"state_dir: {d}/state
sources:
  - type: webhook
    name: hook
    listen: 127.0.0.1:{hook_port}
    path: /audit
    tls: {{ cert: {cert}, key: {key}, client_ca: {ca} }}
{extra}
sinks:
  - type: file
    name: alerts
    path: {d}/out/alerts.jsonl
    flows: [alerts]
  - type: file
    name: events
    path: {events}
    flows: [events]
telemetry:
  listen: 127.0.0.1:{port}
  log_format: json
"#,
        d = dir.display(),
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        ca = pki.ca.display(),
    );
    let daemon = Daemon::spawn(dir, &cfg, port);
    wait_until(
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", hook_port)).is_ok(),
        || daemon.logs(),
    );
    Hook {
        daemon,
        url: format!("https://localhost:{hook_port}/audit"),
    }
}

fn event(id: &str, exec: bool) -> serde_json::Value {
    let (uri, sub, verb, user) = if exec {
        (
            "/api/v1/namespaces/prod/pods/web-0/exec?command=sh",
            "exec",
            "create",
            "mallory@example.com",
        )
    } else {
        (
            "/api/v1/namespaces/kube-system/configmaps/x",
            "",
            "get",
            "system:kube-controller-manager",
        )
    };
    let mut v = serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": id,
        "stage": "ResponseComplete", "requestURI": uri, "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        // The controller manager's quiet read comes from the control plane's own address.
        "sourceIPs": [if exec {"203.0.113.7"} else {"10.0.0.2"}], "userAgent": "kubectl/v1.29.0",
        "objectRef": {"resource": if exec {"pods"} else {"configmaps"}, "namespace": "prod", "name": "web-0", "apiVersion": "v1"},
        "responseStatus": {"code": if exec {101} else {200}},
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.050000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"}
    });
    if exec {
        v["objectRef"]["subresource"] = "exec".into();
        // The pack alerts on an exec once, at ResponseStarted.
        v["stage"] = "ResponseStarted".into();
    }
    let _ = sub;
    v
}

fn event_list(ids: &[String], exec_every: usize) -> String {
    let items: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| event(id, exec_every > 0 && i % exec_every == 0))
        .collect();
    serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items})
        .to_string()
}

fn client(pki: &Pki, identity: Option<&[u8]>) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap(),
        )
        .timeout(Duration::from_secs(30));
    if let Some(id) = identity {
        b = b.identity(reqwest::Identity::from_pem(id).unwrap());
    }
    b.build().unwrap()
}

/// POSTs `body`; the status, or the error text when no HTTP answer came.
fn post(
    rt: &tokio::runtime::Runtime,
    c: &reqwest::Client,
    url: &str,
    body: String,
    token: Option<&str>,
) -> Result<u16, String> {
    rt.block_on(async {
        let mut r = c
            .post(url)
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// auditID -> deliveries in a JSON-lines file of events.
fn delivered(path: &Path) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for v in read_lines(path) {
        if let Some(id) = v["kubernetes"]["audit"]["auditID"].as_str() {
            *m.entry(id.to_string()).or_default() += 1;
        }
    }
    m
}

#[test]
fn client_certificates_tokens_and_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = pki(dir);
    std::fs::write(dir.join("token"), "s3cret-token\n").unwrap();
    let extra = format!(
        "    token_file: {}/token\n    max_body_bytes: 100000\n",
        dir.display()
    );
    let h = start(dir, &pki, &extra, None);
    let rt = runtime();
    let good = client(&pki, Some(&pki.client));

    // A certificate from the configured CA and the token: accepted and detected.
    let batch = event_list(&ids("a", 10), 5);
    assert_eq!(
        post(&rt, &good, &h.url, batch, Some("s3cret-token")),
        Ok(200)
    );
    let events = dir.join("out/events.jsonl");
    wait_until(
        Duration::from_secs(20),
        || delivered(&events).len() == 10,
        || h.daemon.logs(),
    );
    wait_until(
        Duration::from_secs(10),
        // Two execs into a pod in a sensitive namespace: two alerts.
        || read_lines(&dir.join("out/alerts.jsonl")).len() == 2,
        || {
            format!(
                "alerts: {:?}\n{}",
                read_lines(&dir.join("out/alerts.jsonl")),
                h.daemon.logs()
            )
        },
    );

    // No certificate, or one from another CA: the handshake fails, no HTTP answer.
    let none = post(
        &rt,
        &client(&pki, None),
        &h.url,
        event_list(&ids("x", 1), 0),
        Some("s3cret-token"),
    );
    assert!(none.is_err(), "no client certificate accepted: {none:?}");
    let stranger = post(
        &rt,
        &client(&pki, Some(&pki.stranger)),
        &h.url,
        event_list(&ids("y", 1), 0),
        Some("s3cret-token"),
    );
    assert!(
        stranger.is_err(),
        "foreign client certificate accepted: {stranger:?}"
    );

    // The right certificate but a wrong or missing token: 401.
    assert_eq!(
        post(
            &rt,
            &good,
            &h.url,
            event_list(&ids("z", 1), 0),
            Some("wrong")
        ),
        Ok(401)
    );
    assert_eq!(
        post(&rt, &good, &h.url, event_list(&ids("z", 1), 0), None),
        Ok(401)
    );
    // Too large: 413. Not JSON: 400.
    assert_eq!(
        post(
            &rt,
            &good,
            &h.url,
            event_list(&ids("big", 200), 0),
            Some("s3cret-token")
        ),
        Ok(413)
    );
    assert_eq!(
        post(&rt, &good, &h.url, "{nope".into(), Some("s3cret-token")),
        Ok(400)
    );

    // A replayed batch: its events are delivered once.
    let batch = event_list(&ids("r", 20), 0);
    assert_eq!(
        post(&rt, &good, &h.url, batch.clone(), Some("s3cret-token")),
        Ok(200)
    );
    assert_eq!(
        post(&rt, &good, &h.url, batch, Some("s3cret-token")),
        Ok(200)
    );
    wait_until(
        Duration::from_secs(20),
        || delivered(&events).len() == 30,
        || h.daemon.logs(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let d = delivered(&events);
    assert!(d.values().all(|&n| n == 1), "{d:?}");
    assert_eq!(
        h.daemon
            .metric("tripline_webhook_duplicates_total{source=\"hook\"}"),
        Some(20.0)
    );
    // Every answer is counted, including those given before the handler (401, 413).
    let requests = |code: &str| {
        h.daemon
            .metric(&format!(
                "tripline_webhook_requests_total{{code=\"{code}\",source=\"hook\"}}"
            ))
            .or_else(|| {
                h.daemon.metric(&format!(
                    "tripline_webhook_requests_total{{source=\"hook\",code=\"{code}\"}}"
                ))
            })
            .unwrap_or(0.0)
    };
    let metrics = h.daemon.get("/metrics").unwrap_or_default();
    assert_eq!(requests("401"), 2.0, "{metrics}");
    assert_eq!(requests("413"), 1.0, "{metrics}");
    assert_eq!(requests("400"), 1.0, "{metrics}");
    let st = h.daemon.stop();
    assert!(st.success());
}

#[test]
fn a_full_spool_answers_429_and_a_batch_acknowledged_before_a_kill_is_delivered_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = pki(dir);
    // The events sink cannot write (/dev/full): nothing is confirmed, the spool only grows.
    let extra = "    spool_max_bytes: 40000\n    max_body_bytes: 8000\n";
    let h = start(dir, &pki, extra, Some("/dev/full"));
    let rt = runtime();
    let c = client(&pki, Some(&pki.client));
    let mut accepted = Vec::new();
    let mut refused = false;
    for b in 0..40 {
        let batch_ids = ids(&format!("b{b}"), 10);
        match post(&rt, &c, &h.url, event_list(&batch_ids, 0), None) {
            Ok(200) => accepted.extend(batch_ids),
            Ok(429) => {
                refused = true;
                break;
            }
            other => panic!("unexpected answer {other:?}\n{}", h.daemon.logs()),
        }
    }
    assert!(refused, "the spool never filled");
    assert!(!accepted.is_empty());
    let ready = h.daemon.get("/readyz").unwrap_or_default();
    wait_until(
        Duration::from_secs(5),
        || {
            h.daemon
                .get("/readyz")
                .is_some_and(|r| r.contains("webhook:hook"))
        },
        || ready.clone(),
    );
    // kill -9 right after the 200s: nothing was delivered, everything is on disk.
    h.daemon.kill9();
    let events = dir.join("out/events.jsonl");
    assert!(delivered(&events).is_empty());
    let h = start(dir, &pki, extra, None);
    wait_until(
        Duration::from_secs(30),
        || delivered(&events).len() == accepted.len(),
        || {
            format!(
                "{} of {}\n{}",
                delivered(&events).len(),
                accepted.len(),
                h.daemon.logs()
            )
        },
    );
    let d = delivered(&events);
    assert!(accepted.iter().all(|id| d.get(id) == Some(&1)));
    // Confirmed segments are deleted: the spool shrinks back.
    wait_until(
        Duration::from_secs(10),
        || {
            h.daemon
                .metric("tripline_spool_bytes{source=\"hook\"}")
                .is_some_and(|b| b < 20000.0)
        },
        || h.daemon.get("/metrics").unwrap_or_default(),
    );
    // And it accepts again.
    assert_eq!(
        post(&rt, &c, &h.url, event_list(&ids("after", 5), 0), None),
        Ok(200)
    );
    h.daemon.stop();
}

/// (rule id, auditID) of each alert document.
fn alert_keys(alerts: &[serde_json::Value]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["rule"]["id"].as_str().unwrap_or("?").to_string(),
                a["kubernetes"]["audit"]["auditID"]
                    .as_str()
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect();
    k.sort();
    k
}

#[test]
fn real_events_replayed_as_event_lists_alert_like_tripline_scan() {
    let data = std::env::var_os("TRIPLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let log = data.join("real/openshift/audit_in.log");
    if !log.is_file() {
        eprintln!(
            "SKIPPED: {} not found (set TRIPLINE_SHARED_DATA); webhook replay not checked",
            log.display()
        );
        return;
    }
    // What `tripline scan` finds in the file.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["scan", "--format", "json", "--no-progress"])
        .arg(&log)
        .output()
        .unwrap();
    let expected: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!expected.is_empty(), "the capture has an alert to compare");

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = pki(dir);
    let h = start(dir, &pki, "", None);
    let rt = runtime();
    let c = client(&pki, Some(&pki.client));
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for chunk in events.chunks(25) {
        let body = serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": chunk});
        assert_eq!(post(&rt, &c, &h.url, body.to_string(), None), Ok(200));
    }
    let events_out = dir.join("out/events.jsonl");
    wait_until(
        Duration::from_secs(30),
        || read_lines(&events_out).len() >= events.len(),
        || h.daemon.logs(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = read_lines(&dir.join("out/alerts.jsonl"));
    assert_eq!(alert_keys(&got), alert_keys(&expected));
    h.daemon.stop();
}

/// A 100 KB `RequestResponse`-sized event: few events carry many bytes.
fn big_event(id: &str) -> serde_json::Value {
    let mut v = event(id, false);
    v["level"] = "RequestResponse".into();
    v["requestObject"] =
        serde_json::json!({"kind": "ConfigMap", "data": {"blob": "x".repeat(100_000)}});
    v
}

/// POSTs `body`; the status and the `Retry-After` header, or the error text.
fn post_full(
    rt: &tokio::runtime::Runtime,
    c: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
) -> Result<(u16, Option<String>), String> {
    rt.block_on(async {
        c.post(url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map(|r| {
                let retry = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                (r.status().as_u16(), retry)
            })
            .map_err(|e| format!("{e:?}"))
    })
}

/// auditID -> deliveries, by a plain text scan (the files here are large for a JSON parse).
fn delivered_fast(path: &Path) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut m = HashMap::new();
    for line in text.lines() {
        let Some(at) = line.find("\"auditID\":\"") else {
            continue;
        };
        let rest = &line[at + 11..];
        let id = &rest[..rest.find('"').unwrap()];
        *m.entry(id.to_string()).or_default() += 1;
    }
    m
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Regression: bodies were held whole in memory (a 60 MiB `EventList` cost 372 MB, 16 at once
/// 2.28 GB), and an oversized body was read to the limit and dropped without a 413.
#[test]
fn large_bodies_stream_to_the_spool_within_the_memory_budget() {
    const MIB: usize = 1 << 20;
    const BUDGET: usize = 24 * MIB;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let pki = pki(dir);
    let extra = format!(
        "    max_body_bytes: {}\n    max_in_flight_bytes: {BUDGET}\n    spool_max_bytes: {}\n",
        16 * MIB,
        1024 * MIB
    );
    let h = start(dir, &pki, &extra, None);
    let pid = h.daemon.child.id();
    let idle_kib = vm_hwm_kib(pid);

    // Too large by its Content-Length: 413 before the body is read.
    let rt = runtime();
    let c = client(&pki, Some(&pki.client));
    let huge = vec![b' '; 40 * MIB];
    let answer = post_full(&rt, &c, &h.url, huge);
    assert_eq!(answer.as_ref().map(|a| a.0), Ok(413), "{answer:?}");

    // Three bodies of about 12 MiB (120 events of 100 KB) at once: 36 MiB does not fit the
    // 24 MiB budget, so some get 429 with Retry-After and are retried, as the API server does.
    let batches: Vec<Vec<String>> = (0..3).map(|b| ids(&format!("big{b}"), 120)).collect();
    let bodies: Vec<Vec<u8>> = batches
        .iter()
        .map(|ids| {
            let items: Vec<_> = ids.iter().map(|id| big_event(id)).collect();
            serde_json::to_vec(&serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})).unwrap()
        })
        .collect();
    assert!(bodies
        .iter()
        .all(|b| b.len() > 11 * MIB && b.len() < 16 * MIB));
    let started = std::time::Instant::now();
    let outcomes: Vec<(usize, Vec<Option<String>>)> = std::thread::scope(|s| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|body| {
                let (pki, url) = (&pki, &h.url);
                s.spawn(move || {
                    let rt = runtime();
                    let c = client(pki, Some(&pki.client));
                    let mut refusals = Vec::new();
                    loop {
                        match post_full(&rt, &c, url, body.clone()) {
                            Ok((200, _)) => return (refusals.len(), refusals),
                            Ok((429, retry)) => {
                                refusals.push(retry);
                                std::thread::sleep(Duration::from_millis(100));
                            }
                            other => panic!("unexpected answer {other:?}"),
                        }
                        assert!(refusals.len() < 200, "never accepted");
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let refusals: Vec<Option<String>> = outcomes.into_iter().flat_map(|o| o.1).collect();
    assert!(!refusals.is_empty(), "36 MiB at once fit a 24 MiB budget");
    assert!(
        refusals.iter().all(|r| r.as_deref() == Some("1")),
        "{refusals:?}"
    );
    // A retried batch (the same bytes again) is absorbed.
    assert_eq!(
        post_full(&rt, &c, &h.url, bodies[0].clone()).map(|a| a.0),
        Ok(200)
    );
    let accepted_in = started.elapsed();

    let events = dir.join("out/events.jsonl");
    let total = 3 * 120;
    wait_until(
        Duration::from_secs(60),
        || {
            std::fs::read(&events)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count() >= total)
                .unwrap_or(false)
        },
        || h.daemon.logs(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let d = delivered_fast(&events);
    assert_eq!(d.len(), total);
    assert!(
        batches.iter().flatten().all(|id| d.get(id) == Some(&1)),
        "not every event exactly once"
    );
    let hwm_kib = vm_hwm_kib(pid);
    eprintln!(
        "webhook: 3 x {} MiB bodies accepted in {accepted_in:?}; VmHWM {} MiB (idle {} MiB)",
        bodies[0].len() / MIB,
        hwm_kib / 1024,
        idle_kib / 1024
    );
    // The budget plus a fixed overhead (the daemon at rest, the pipeline's bounded batches).
    let bound_kib = (BUDGET / 1024) as u64 + 48 * 1024;
    assert!(
        hwm_kib < bound_kib,
        "peak RSS {} MiB over the bound {} MiB",
        hwm_kib / 1024,
        bound_kib / 1024
    );
    h.daemon.stop();
}

/// Regression: authenticated clients trickling their bodies held every request slot until
/// `request_timeout` (27 s of refused batches); clients trickling headers held connections.
#[test]
fn slow_clients_do_not_keep_a_batch_out() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (port, hook_port) = (free_port(), free_port());
    let cfg = format!(
        r#"state_dir: {d}/state
sources:
  - type: webhook
    name: hook
    listen: 127.0.0.1:{hook_port}
    allow_insecure: true
    token: t0ken
    max_concurrent_requests: 2
    max_body_bytes: 8192
    header_read_timeout: 1s
    body_read_timeout: 1s
sinks:
  - type: file
    name: events
    path: {d}/out/events.jsonl
    flows: [events]
telemetry:
  listen: 127.0.0.1:{port}
  log_format: json
"#,
        d = dir.display()
    );
    let daemon = Daemon::spawn(dir, &cfg, port);
    wait_until(
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", hook_port)).is_ok(),
        || daemon.logs(),
    );
    let trickle = |head: String, body: bool| {
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", hook_port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let started = std::time::Instant::now();
            let bytes: Vec<u8> = if body {
                s.write_all(head.as_bytes()).unwrap();
                vec![b' '; 100]
            } else {
                head.into_bytes()
            };
            // A byte every 100 ms, until the server stops listening or 8 s have passed.
            for b in bytes {
                if s.write_all(&[b]).is_err() || started.elapsed() > Duration::from_secs(8) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            (started.elapsed(), answer)
        })
    };
    let body_head = "POST /audit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t0ken\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n".to_string();
    let header_head = "POST /audit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t0ken\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n".to_string();
    let slow: Vec<_> = (0..4)
        .map(|_| trickle(body_head.clone(), true))
        .chain((0..4).map(|_| trickle(header_head.clone(), false)))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let rt = runtime();
    let c = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let answer = post(
        &rt,
        &c,
        &format!("http://127.0.0.1:{hook_port}/audit"),
        event_list(&ids("legit", 5), 0),
        Some("t0ken"),
    );
    let took = started.elapsed();
    assert_eq!(answer, Ok(200), "{}", daemon.logs());
    assert!(
        took < Duration::from_secs(3),
        "a batch waited {took:?} behind slow clients"
    );
    let events = dir.join("out/events.jsonl");
    wait_until(
        Duration::from_secs(20),
        || delivered(&events).len() == 5,
        || daemon.logs(),
    );
    // A chunked body (no Content-Length) is stopped at the limit with 413.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", hook_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /audit HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer t0ken\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
    for _ in 0..5 {
        let _ = s.write_all(format!("{:x}\r\n{}\r\n", 4000, " ".repeat(4000)).as_bytes());
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    // The slow ones were cut off: bodies with 408, headers by closing the connection.
    for (i, t) in slow.into_iter().enumerate() {
        let (took, answer) = t.join().unwrap();
        assert!(
            took < Duration::from_secs(6),
            "slow client {i} kept for {took:?}"
        );
        if i < 4 {
            assert!(answer.starts_with("HTTP/1.1 408"), "{i}: {answer}");
        }
    }
    daemon.stop();
}
