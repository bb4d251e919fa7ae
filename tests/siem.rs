//! The Elasticsearch and OpenSearch sinks end to end: the real tripline binary tails a file of
//! audit events into real servers (noida-db speaks the Elasticsearch 8 API, osmem-server the
//! OpenSearch 3 API), installed by `scripts/test.sh` from pinned PyPI wheels. Faults come from
//! stopping the servers and from a fault-injecting proxy.

mod support;
use support::{daemon, events, proxy, servers};

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use daemon::{append, read_lines, start_tailing as start, wait_until, Daemon};
use events::{exec_event, pod_event, quiet_lines, secret_event, SECRET};
use servers::Server;

fn es_sink(name: &str, url: &str, extra: &str) -> String {
    format!(
        "  - type: elasticsearch\n    name: {name}\n    endpoints: [\"{url}\"]\n    flows: [alerts, events]\n    batch: {{ flush_interval: 200ms }}\n{extra}"
    )
}

const EVENTS: &str = "kubernetes-audit-2026.03.01";
const ALERTS: &str = "tripline-alerts-2026.03.01";

/// Refreshes and counts; 0 when the index does not exist yet.
fn count(base: &str, index: &str) -> u64 {
    let (status, _) = servers::http("POST", &format!("{base}/{index}/_refresh"), "");
    if status == 404 {
        return 0;
    }
    servers::count(base, index)
}

/// `auditID` -> number of documents in `index`.
fn audit_ids(base: &str, index: &str) -> HashMap<String, usize> {
    servers::refresh(base, index);
    let mut ids = HashMap::new();
    for hit in servers::search_all(base, index) {
        let id = hit["_source"]["kubernetes"]["audit"]["auditID"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

fn wait_count(d: &Daemon, base: &str, index: &str, n: u64, limit: Duration) {
    wait_until(
        limit,
        || count(base, index) >= n,
        || format!("{index}: {} documents\n{}", count(base, index), d.logs()),
    );
}

/// The type of the field at `path` (dotted, through `properties`) in the mapping of `index`.
fn mapped_type(base: &str, index: &str, path: &str) -> String {
    let (status, body) = servers::http("GET", &format!("{base}/{index}/_mapping"), "");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut m = &v[index]["mappings"];
    for part in path.split('.') {
        m = &m["properties"][part];
    }
    m["type"].as_str().unwrap_or("object").to_string()
}

#[test]
fn events_and_alerts_reach_elasticsearch_and_opensearch_with_mappings_and_no_secrets() {
    if !servers::available(&[servers::NOIDA, servers::OSMEM]) {
        return;
    }
    let es = Server::noida_temp();
    let os = Server::osmem();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sinks = es_sink("es", &es.base_url(), "") + &es_sink("os", &os.base_url(), "");
    let d = start(dir, &sinks);
    d.wait_ready(Duration::from_secs(20));
    let mut text = String::new();
    text += &(exec_event("exec-1") + "\n");
    text += &(pod_event("pod-1") + "\n");
    text += &(secret_event("secret-1") + "\n");
    text += &quiet_lines(0, 50);
    append(&dir.join("logs/audit.log"), &text);

    for (name, base) in [("es", es.base_url()), ("os", os.base_url())] {
        wait_count(&d, &base, EVENTS, 53, Duration::from_secs(30));
        wait_count(&d, &base, ALERTS, 1, Duration::from_secs(30));
        let ids = audit_ids(&base, EVENTS);
        assert_eq!(ids.len(), 53, "{name}: {ids:?}");
        assert!(ids.values().all(|&n| n == 1), "{name}: duplicates {ids:?}");
        let alerts = servers::search_all(&base, ALERTS);
        assert!(
            alerts.iter().any(
                |a| a["_source"]["kubernetes"]["audit"]["auditID"] == "exec-1"
                    && a["_source"]["event"]["kind"] == "alert"
                    && a["_source"]["host"]["name"] == "cp-1"
            ),
            "{name}: {alerts:?}"
        );
        // Types that make Kibana / Dashboards work, and bodies with dotted keys indexable.
        let flat = if name == "es" {
            "flattened"
        } else {
            "flat_object"
        };
        for index in [EVENTS, ALERTS] {
            assert_eq!(
                mapped_type(&base, index, "@timestamp"),
                "date",
                "{name} {index}"
            );
            assert_eq!(
                mapped_type(&base, index, "source.ip"),
                "ip",
                "{name} {index}"
            );
            assert_eq!(
                mapped_type(&base, index, "user.name"),
                "keyword",
                "{name} {index}"
            );
            assert_eq!(
                mapped_type(&base, index, "kubernetes.audit.verb"),
                "keyword",
                "{name} {index}"
            );
            assert_eq!(
                mapped_type(&base, index, "kubernetes.audit.requestObject"),
                flat,
                "{name} {index}"
            );
        }
        // The event's time, not the wall clock, named the index; `@timestamp` is stageTimestamp.
        let pod = servers::search_all(&base, EVENTS)
            .into_iter()
            .find(|h| h["_source"]["kubernetes"]["audit"]["auditID"] == "pod-1")
            .unwrap();
        assert_eq!(pod["_source"]["@timestamp"], "2026-03-01T10:00:01.010000Z");
        assert_eq!(
            pod["_source"]["kubernetes"]["audit"]["requestObject"]["metadata"]["labels"]
                ["app.kubernetes.io/name"],
            "cart"
        );
        // The secret's value is nowhere in either index, in any form.
        for index in [EVENTS, ALERTS] {
            let all = serde_json::to_string(&servers::search_all(&base, index)).unwrap();
            assert!(!all.contains(SECRET), "{name} {index} holds the secret");
            assert!(all.contains("secret-1") || index == ALERTS);
        }
    }
    assert_eq!(
        d.metric("tripline_sink_rejected_total{sink=\"es\"}"),
        Some(0.0)
    );
    let status = d.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_server_down_at_start_and_stopped_mid_run_loses_nothing_and_duplicates_nothing() {
    if !servers::available(&[servers::NOIDA]) {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mut es = Server::noida(data.path());
    let base = es.base_url();
    // Down at start: the proxy drops every connection until it is told otherwise.
    let proxy = proxy::Proxy::start(&base);
    proxy.with(|f| f.down = true);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &es_sink("es", &proxy.url(), ""));
    append(&dir.join("logs/audit.log"), &quiet_lines(0, 300));
    std::thread::sleep(Duration::from_secs(2));
    let ready = d.get("/readyz").unwrap_or_default();
    assert!(
        ready.starts_with("HTTP/1.1 503"),
        "unreachable cluster but ready: {ready}"
    );
    assert!(ready.contains("sink:es"), "{ready}");
    assert_eq!(count(&base, EVENTS), 0);
    proxy.with(|f| f.down = false);
    wait_count(&d, &base, EVENTS, 300, Duration::from_secs(60));
    d.wait_ready(Duration::from_secs(30));

    // Stopped mid-run (noida keeps its data) while events keep coming, then restarted.
    es.stop();
    append(&dir.join("logs/audit.log"), &quiet_lines(300, 300));
    std::thread::sleep(Duration::from_secs(2));
    es.start_again();
    assert_eq!(es.base_url(), base, "restarted on another port");
    wait_count(&d, &base, EVENTS, 600, Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(500));
    let ids = audit_ids(&base, EVENTS);
    assert_eq!(ids.len(), 600);
    assert!(ids.values().all(|&n| n == 1), "duplicates: {ids:?}");
    assert!(
        d.metric("tripline_sink_failures_total{sink=\"es\"}")
            .unwrap_or(0.0)
            >= 1.0
    );

    // A restart of tripline after a kill -9 sends the unconfirmed tail again: 409s, no
    // duplicates.
    d.kill9();
    std::fs::remove_file(dir.join("state/audit.checkpoint.json")).ok();
    for entry in std::fs::read_dir(dir.join("state")).unwrap().flatten() {
        if entry.file_name().to_string_lossy().contains("checkpoint") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let d = start(dir, &es_sink("es", &proxy.url(), ""));
    wait_until(
        Duration::from_secs(30),
        || {
            d.metric("tripline_sink_records_delivered_total{sink=\"es\"}")
                .unwrap_or(0.0)
                >= 600.0
        },
        || d.logs(),
    );
    let ids = audit_ids(&base, EVENTS);
    assert_eq!(ids.len(), 600);
    assert!(
        ids.values().all(|&n| n == 1),
        "duplicates after re-reading: {ids:?}"
    );
    d.stop();
}

#[test]
fn only_rejected_items_and_requests_are_retried() {
    if !servers::available(&[servers::NOIDA]) {
        return;
    }
    let es = Server::noida_temp();
    let base = es.base_url();
    let proxy = proxy::Proxy::start(&base);
    // Two whole bulk requests answered 429, then every 4th item of the next request.
    proxy.with(|f| {
        f.reject_bulk = 2;
        f.reject_every = 4;
        f.item_fault_bulks = 1;
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(
        dir,
        &es_sink("es", &proxy.url(), "    flows: [events]\n")
            .replace("    flows: [alerts, events]\n", ""),
    );
    append(&dir.join("logs/audit.log"), &quiet_lines(0, 40));
    wait_count(&d, &base, EVENTS, 40, Duration::from_secs(60));
    let (forwarded, rejected, bulks, gzip) = proxy.with(|f| {
        (
            f.forwarded.clone(),
            f.rejected_items.clone(),
            f.rejected_bulks,
            f.gzip_seen,
        )
    });
    assert_eq!(bulks, 2);
    assert!(gzip, "bulk bodies are gzip-compressed by default");
    assert_eq!(rejected.len(), 10, "{rejected:?}");
    // The request after the item faults carried exactly the rejected items.
    let first = forwarded
        .iter()
        .position(|r| r.len() == 30)
        .expect("the partial request");
    assert_eq!(
        forwarded[first + 1]
            .iter()
            .collect::<std::collections::BTreeSet<_>>(),
        rejected.iter().collect::<std::collections::BTreeSet<_>>(),
        "{forwarded:?}"
    );
    let ids = audit_ids(&base, EVENTS);
    assert_eq!(ids.len(), 40);
    assert!(ids.values().all(|&n| n == 1));
    assert!(
        d.metric("tripline_sink_retries_total{sink=\"es\"}")
            .unwrap_or(0.0)
            >= 10.0
    );
    d.stop();
}

#[test]
fn a_mapping_conflict_goes_to_the_dead_letter_file() {
    if !servers::available(&[servers::NOIDA]) {
        return;
    }
    let es = Server::noida_temp();
    let base = es.base_url();
    // An index created beforehand by someone else, where `verb` is a number.
    servers::put_json(
        &base,
        &format!("/{EVENTS}"),
        &serde_json::json!({"mappings": {"properties": {"kubernetes": {"properties": {"audit": {"properties": {"verb": {"type": "long"}}}}}}}}),
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = start(dir, &es_sink("es", &base, ""));
    append(
        &dir.join("logs/audit.log"),
        &(quiet_lines(0, 3) + &exec_event("exec-1") + "\n"),
    );
    let dl = dir.join("state/dead-letter.jsonl");
    wait_until(
        Duration::from_secs(30),
        || read_lines(&dl).len() >= 4,
        || d.logs(),
    );
    let records = read_lines(&dl);
    for r in &records {
        assert_eq!(r["reason"], "sink_rejected", "{r}");
        assert_eq!(r["sink"], "es");
        assert!(r["message"].as_str().unwrap().starts_with("400"), "{r}");
        assert!(r["raw"].as_str().unwrap().contains("kubernetes"), "{r}");
    }
    // The alert went to its own index, unaffected.
    wait_count(&d, &base, ALERTS, 1, Duration::from_secs(30));
    wait_until(
        Duration::from_secs(10),
        || d.metric("tripline_sink_rejected_total{sink=\"es\"}") == Some(4.0),
        || d.get("/metrics").unwrap_or_default(),
    );
    // Rejected records are confirmed: the checkpoint moves past them.
    let st = d.stop();
    assert!(st.success());
}

#[test]
fn data_streams_and_credentials_from_files() {
    if !servers::available(&[servers::NOIDA]) {
        return;
    }
    let es = Server::noida_temp();
    let base = es.base_url();
    let proxy = proxy::Proxy::start(&base);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let password = "s3cr3t-from-a-mounted-file";
    std::fs::write(dir.join("es-password"), format!("{password}\n")).unwrap();
    let extra = format!(
        "    data_stream: true\n    alerts_index: logs-tripline.alerts-default\n    events_index: logs-kubernetes.audit-default\n    auth: {{ username: tripline, password_file: {}/es-password }}\n",
        dir.display()
    );
    let d = start(dir, &es_sink("es", &proxy.url(), &extra));
    append(
        &dir.join("logs/audit.log"),
        &(exec_event("exec-1") + "\n" + &quiet_lines(0, 5)),
    );
    wait_count(
        &d,
        &base,
        "logs-kubernetes.audit-default",
        6,
        Duration::from_secs(30),
    );
    wait_count(
        &d,
        &base,
        "logs-tripline.alerts-default",
        1,
        Duration::from_secs(30),
    );
    // The template declares the data streams.
    let (status, t) = servers::http("GET", &format!("{base}/_index_template/tripline"), "");
    assert_eq!(status, 200, "{t}");
    let t: serde_json::Value = serde_json::from_str(&t).unwrap();
    let tpl = &t["index_templates"][0]["index_template"];
    assert!(tpl["data_stream"].is_object(), "{t}");
    assert_eq!(
        tpl["index_patterns"],
        serde_json::json!([
            "logs-tripline.alerts-default*",
            "logs-kubernetes.audit-default*"
        ])
    );
    // Basic auth from the file (trailing newline removed), and the password is never logged.
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("tripline:{password}"))
    );
    assert_eq!(proxy.with(|f| f.authorization.clone()), Some(expected));
    d.signal("-TERM");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!d.logs().contains(password), "password in the logs");
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files in `dir`;
/// returns the TLS server configuration that requires the client certificate.
fn tls_files(dir: &Path) -> std::sync::Arc<rustls::ServerConfig> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa,
        KeyPair,
    };
    use rustls_pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str, usage| {
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.extended_key_usages = vec![usage];
        let k = KeyPair::generate().unwrap();
        (p.signed_by(&k, &ca).unwrap().pem(), k.serialize_pem())
    };
    let (scert, skey) = leaf("localhost", ExtendedKeyUsagePurpose::ServerAuth);
    let (ccert, ckey) = leaf("tripline", ExtendedKeyUsagePurpose::ClientAuth);
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("client.crt"), ccert).unwrap();
    std::fs::write(dir.join("client.key"), ckey).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
        .build()
        .unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![rustls_pki_types::CertificateDer::from_pem_slice(scert.as_bytes()).unwrap()],
            rustls_pki_types::PrivateKeyDer::from_pem_slice(skey.as_bytes()).unwrap(),
        )
        .unwrap();
    std::sync::Arc::new(cfg)
}

#[test]
fn https_with_a_custom_ca_and_a_client_certificate() {
    if !servers::available(&[servers::NOIDA]) {
        return;
    }
    let es = Server::noida_temp();
    let base = es.base_url();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let front = proxy::Proxy::start_tls(&base, tls_files(dir));
    let url = format!("https://localhost:{}", front.port);
    // One sink with the client certificate, one without: only the first gets through.
    let tls = format!(
        "    tls: {{ ca: {d}/ca.pem, cert: {d}/client.crt, key: {d}/client.key }}\n",
        d = dir.display()
    );
    let no_cert = format!(
        "    tls: {{ ca: {d}/ca.pem }}\n    events_index: \"nocert-%Y.%m.%d\"\n    alerts_index: \"nocert-alerts-%Y.%m.%d\"\n    required: false\n",
        d = dir.display()
    );
    let d = start(
        dir,
        &(es_sink("es", &url, &tls) + &es_sink("nocert", &url, &no_cert)),
    );
    append(&dir.join("logs/audit.log"), &quiet_lines(0, 20));
    wait_count(&d, &base, EVENTS, 20, Duration::from_secs(30));
    wait_until(
        Duration::from_secs(20),
        || {
            d.metric("tripline_sink_failures_total{sink=\"nocert\"}")
                .unwrap_or(0.0)
                >= 1.0
        },
        || d.logs(),
    );
    assert_eq!(count(&base, "nocert-*"), 0);
    d.stop();
}

/// Falco rules' alerts index in both servers: their output fields (`ka.uri` beside
/// `ka.uri.param[command]`, `ka.req.pod.containers.image` beside its `.repository`) would be a
/// field and an object of one name to dynamic mapping; the template maps them flattened.
#[test]
fn falco_rule_alerts_index_with_their_output_fields() {
    if !servers::available(&[servers::NOIDA, servers::OSMEM]) {
        return;
    }
    let es = Server::noida_temp();
    let os = Server::osmem();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let rules = dir.join("falco_rules.yaml");
    std::fs::write(
        &rules,
        r#"- rule: Exec Into Pod
  desc: A shell in a pod.
  condition: ka.target.subresource in (exec, attach)
  output: Exec (uri=%ka.uri command=%ka.uri.param[command] user=%ka.user.name)
  priority: NOTICE
  source: k8s_audit
- rule: Pod Created
  desc: A pod was created.
  condition: ka.verb=create and ka.target.resource=pods and not ka.target.subresource exists
  output: Pod (images=%ka.req.pod.containers.image repositories=%ka.req.pod.containers.image.repository)
  priority: INFO
  source: k8s_audit
"#,
    )
    .unwrap();
    let alerts_only = |name: &str, url: &str| {
        es_sink(name, url, "").replace("flows: [alerts, events]", "flows: [alerts]")
    };
    let sinks = alerts_only("es", &es.base_url())
        + &alerts_only("os", &os.base_url())
        + &format!(
            "rules:\n  builtin: false\n  paths: [\"{}\"]\n  falco:\n    rule_matching: all\n",
            rules.display()
        );
    let d = start(dir, &sinks);
    d.wait_ready(Duration::from_secs(20));
    let text = exec_event("exec-1") + "\n" + &pod_event("pod-1") + "\n" + &quiet_lines(0, 5);
    append(&dir.join("logs/audit.log"), &text);
    for (name, base) in [("es", es.base_url()), ("os", os.base_url())] {
        wait_count(&d, &base, ALERTS, 2, Duration::from_secs(30));
        let alerts = servers::search_all(&base, ALERTS);
        let exec = alerts
            .iter()
            .find(|a| a["_source"]["rule"]["name"] == "Exec Into Pod")
            .unwrap_or_else(|| panic!("{name}: {alerts:?}"));
        assert_eq!(exec["_source"]["falco"]["priority"], "Notice");
        assert!(exec["_source"]["falco"]["output_fields"]["ka.uri"].is_string());
        let flat = if name == "es" {
            "flattened"
        } else {
            "flat_object"
        };
        assert_eq!(
            mapped_type(&base, ALERTS, "falco.output_fields"),
            flat,
            "{name}"
        );
        assert_eq!(
            mapped_type(&base, ALERTS, "falco.rule"),
            "keyword",
            "{name}"
        );
    }
    for sink in ["es", "os"] {
        assert_eq!(
            d.metric(&format!("tripline_sink_rejected_total{{sink=\"{sink}\"}}")),
            Some(0.0),
            "{sink}: {}",
            d.logs()
        );
    }
    assert!(d.stop().success());
}
