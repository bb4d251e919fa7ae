//! End-to-end measurement of the push and queue sources (a benchmark binary, not a test):
//!
//! 1. Webhook: a local load generator posts `EventList`s of 400 Metadata events over TLS with a
//!    client certificate (as the API server does) from 4 concurrent connections; reported:
//!    sustained events/s accepted (spooled and fsynced) and p50/p99 response times, then the
//!    time until the pipeline has processed them all.
//! 2. Kafka: a topic on the tansu broker (from the test virtualenv) is pre-filled; reported:
//!    events/s consumed and processed by a fresh consumer group.
//!
//! Run: `cargo bench --bench sources` (`TRIPLINE_BENCH_ONLY=webhook|kafka` runs one part;
//! `TRIPLINE_BENCH_EVENTS` sets the events per part, default 200000).

#[path = "../tests/support/mod.rs"]
mod support;
use support::{daemon, servers};

use std::path::Path;
use std::time::{Duration, Instant};

use daemon::{free_port, Daemon};

fn event(i: usize) -> serde_json::Value {
    let verb = ["get", "list", "watch", "update", "create"][i % 5];
    serde_json::json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": format!("bench-{i}"), "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/ns-{}/configmaps/cm-{}", i % 50, i % 1000),
        "verb": verb,
        "user": {"username": format!("system:serviceaccount:ns-{}:app", i % 50), "groups": ["system:serviceaccounts", "system:authenticated"]},
        "sourceIPs": ["10.0.0.7"], "userAgent": "app/v1.2.3 (linux/amd64) kubernetes/abcdef",
        "objectRef": {"resource": "configmaps", "namespace": format!("ns-{}", i % 50), "name": format!("cm-{}", i % 1000), "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.002000Z",
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by RoleBinding"}
    })
}

fn wait_processed(d: &Daemon, source: &str, n: usize, limit: Duration) -> f64 {
    let started = Instant::now();
    let metric = format!("tripline_events_received_total{{source=\"{source}\"}}");
    while (d.metric(&metric).unwrap_or(0.0) as usize) < n {
        assert!(
            started.elapsed() < limit,
            "not all events processed:\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed().as_secs_f64()
}

fn config(dir: &Path, source: &str, port: u16) -> String {
    format!(
        "state_dir: {d}/state\nsources:\n{source}sinks:\n  - type: file\n    path: {d}/out/alerts.jsonl\n    flows: [alerts]\ntelemetry:\n  listen: 127.0.0.1:{port}\n  log_format: json\n",
        d = dir.display()
    )
}

fn webhook(n: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf = |name: &str, usage| {
        let mut p = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = vec![usage];
        let k = rcgen::KeyPair::generate().unwrap();
        (p.signed_by(&k, &ca).unwrap().pem(), k.serialize_pem())
    };
    let (scert, skey) = leaf("localhost", rcgen::ExtendedKeyUsagePurpose::ServerAuth);
    let (ccert, ckey) = leaf("kube-apiserver", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), scert).unwrap();
    std::fs::write(dir.join("tls.key"), skey).unwrap();
    let hook_port = free_port();
    let port = free_port();
    let source = format!(
        "  - type: webhook\n    name: hook\n    listen: 127.0.0.1:{hook_port}\n    tls: {{ cert: {d}/tls.crt, key: {d}/tls.key, client_ca: {d}/ca.pem }}\n    spool_max_bytes: 4294967296\n",
        d = dir.display()
    );
    let d = Daemon::spawn(dir, &config(dir, &source, port), port);
    d.wait_ready(Duration::from_secs(30));
    // The bodies, built before timing.
    let bodies: Vec<String> = (0..n.div_ceil(400))
        .map(|b| {
            let items: Vec<_> = (b * 400..((b + 1) * 400).min(n)).map(event).collect();
            serde_json::json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
                .to_string()
        })
        .collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(format!("{ccert}{ckey}").as_bytes()).unwrap())
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = format!("https://localhost:{hook_port}/audit");
    let started = Instant::now();
    let mut latencies: Vec<f64> = rt.block_on(async {
        let bodies = std::sync::Arc::new(bodies);
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (client, url, bodies, next) =
                (client.clone(), url.clone(), bodies.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { break };
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let accepted_secs = started.elapsed().as_secs_f64();
    let processed_secs = wait_processed(&d, "hook", n, Duration::from_secs(600)) + accepted_secs;
    latencies.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "webhook: {n} events in {} EventLists of 400 over TLS (client certificate, 4 connections): accepted at {:.0} events/s (spooled, fsynced), response p50 {:.1} ms / p99 {:.1} ms / max {:.1} ms; all processed after {processed_secs:.2} s ({:.0} events/s end to end)",
        latencies.len(),
        n as f64 / accepted_secs,
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        n as f64 / processed_secs,
    );
    d.stop();
}

#[cfg(feature = "kafka")]
fn kafka(n: usize) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    if !servers::available(&[servers::TANSU]) {
        println!("kafka: skipped (tansu not installed; run scripts/test.sh)");
        return;
    }
    let broker = servers::Server::tansu();
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.kafka_addr())
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in 0..n {
        let payload = event(i).to_string();
        let key = format!("k{}", i % 50);
        loop {
            match producer.send(BaseRecord::to("audit").key(&key).payload(&payload)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = free_port();
    let source = format!(
        "  - type: kafka\n    name: kafka\n    brokers: [\"{}\"]\n    topics: [audit]\n    group_id: bench\n",
        broker.kafka_addr()
    );
    let started = Instant::now();
    let d = Daemon::spawn(dir, &config(dir, &source, port), port);
    // The group join (slow on tansu) is not consumption: time from the first event on.
    let metric = "tripline_events_received_total{source=\"kafka\"}";
    while d.metric(metric).unwrap_or(0.0) < 1.0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "nothing consumed:\n{}",
            d.logs()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let join = started.elapsed().as_secs_f64();
    let first = d.metric(metric).unwrap_or(0.0) as usize;
    let secs = wait_processed(&d, "kafka", n, Duration::from_secs(600));
    println!(
        "kafka: {n} events pre-filled in a 4-partition topic (tansu): consumed and processed at {:.0} events/s ({secs:.2} s from the first event; start-up and group join took {join:.2} s)",
        (n - first) as f64 / secs,
    );
    d.stop();
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n = std::env::var("TRIPLINE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let only = std::env::var("TRIPLINE_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    if run("webhook") {
        webhook(n);
    }
    #[cfg(feature = "kafka")]
    if run("kafka") {
        kafka(n);
    }
}
