//! The real SIEM test servers (tests/support/servers.rs) start, take documents, keep
//! noida's data across a restart, and their Kafka ports are real Kafka brokers. These pin
//! down the server behaviour the Elasticsearch / OpenSearch / Kafka sinks are written for.

mod support;
use support::servers;

use serde_json::{json, Value};
use servers::{bulk, count, http, http_with, refresh, search_all, Server};
use std::io::Write;

fn two_docs(index: &str) -> String {
    format!(
        concat!(
            "{{\"create\":{{\"_index\":\"{i}\",\"_id\":\"a1\"}}}}\n",
            "{{\"@timestamp\":\"2026-01-01T00:00:00Z\",\"src_ip\":\"10.0.0.1\",\"rule\":\"r1\",\"event\":{{\"verb\":\"get\",\"user\":{{\"name\":\"bob\"}}}}}}\n",
            "{{\"create\":{{\"_index\":\"{i}\",\"_id\":\"a2\"}}}}\n",
            "{{\"@timestamp\":\"2026-01-01T00:00:01Z\",\"src_ip\":\"10.0.0.2\",\"rule\":\"r2\",\"event\":{{\"verb\":\"list\"}}}}\n",
        ),
        i = index
    )
}

fn template(flat_type: &str) -> Value {
    json!({
        "index_patterns": ["tl-alerts-*"],
        "template": {"mappings": {"properties": {
            "@timestamp": {"type": "date"},
            "src_ip": {"type": "ip"},
            "rule": {"type": "keyword"},
            "event": {"type": flat_type}
        }}}
    })
}

fn statuses(resp: &Value) -> Vec<u64> {
    resp["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["create"]["status"].as_u64().unwrap())
        .collect()
}

/// Template, two docs, duplicate -> 409, mapping conflict -> 400, refresh, count, search.
fn exercise(base: &str, flat_type: &str, parse_error: &str) {
    servers::put_json(base, "/_index_template/tl-alerts", &template(flat_type));
    let r = bulk(base, &two_docs("tl-alerts-1"));
    assert_eq!(r["errors"], false, "{r}");
    assert_eq!(statuses(&r), [201, 201]);

    let r = bulk(
        base,
        concat!(
            "{\"create\":{\"_index\":\"tl-alerts-1\",\"_id\":\"a1\"}}\n{\"rule\":\"dup\"}\n",
            "{\"create\":{\"_index\":\"tl-alerts-1\",\"_id\":\"a3\"}}\n{\"@timestamp\":\"not a date\"}\n",
        ),
    );
    assert_eq!(r["errors"], true, "{r}");
    assert_eq!(statuses(&r), [409, 400], "{r}");
    assert_eq!(
        r["items"][0]["create"]["error"]["type"],
        "version_conflict_engine_exception"
    );
    assert_eq!(r["items"][1]["create"]["error"]["type"], parse_error, "{r}");

    refresh(base, "tl-alerts-1");
    assert_eq!(count(base, "tl-alerts-1"), 2);
    let hits = search_all(base, "tl-alerts-1");
    let mut ids: Vec<&str> = hits.iter().map(|h| h["_id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["a1", "a2"]);
    assert!(hits[0]["_source"]["event"].is_object());

    let (status, mapping) = http("GET", &format!("{base}/tl-alerts-1/_mapping"), "");
    assert_eq!(status, 200);
    let mapping: Value = serde_json::from_str(&mapping).unwrap();
    let props = &mapping["tl-alerts-1"]["mappings"]["properties"];
    assert_eq!(props["event"]["type"], flat_type);
    assert_eq!(props["src_ip"]["type"], "ip");
    assert_eq!(props["@timestamp"]["type"], "date");

    // A gzip request body is accepted.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(two_docs("tl-alerts-gz").as_bytes()).unwrap();
    let r = http_with(
        "POST",
        &format!("{base}/_bulk?refresh=wait_for"),
        &[
            ("Content-Type", "application/x-ndjson"),
            ("Content-Encoding", "gzip"),
        ],
        &gz.finish().unwrap(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["errors"], false, "{}", r.text());
    assert_eq!(count(base, "tl-alerts-gz"), 2);
}

fn es8_vendor_bulk(base: &str) -> u16 {
    http_with(
        "POST",
        &format!("{base}/_bulk"),
        &[(
            "Content-Type",
            "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
        )],
        two_docs("tl-vendor").as_bytes(),
    )
    .status
}

#[test]
fn noida_is_elasticsearch_8_and_keeps_data_across_a_restart() {
    if !servers::available(&[servers::NOIDA]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut es = Server::noida(dir.path());
    let base = es.base_url();

    let (status, root) = http("GET", &format!("{base}/"), "");
    assert_eq!(status, 200);
    let root: Value = serde_json::from_str(&root).unwrap();
    assert_eq!(root["version"]["number"], "8.15.3", "{root}");
    assert!(root["version"].get("distribution").is_none(), "{root}");

    exercise(&base, "flattened", "document_parsing_exception");
    assert_eq!(es8_vendor_bulk(&base), 200);

    let (http_port, kafka_port) = (es.http_port, es.kafka_port);
    let status = es.stop().unwrap();
    assert!(status.success(), "{status}");
    es.restart();
    assert_eq!((es.http_port, es.kafka_port), (http_port, kafka_port));
    assert_eq!(count(&base, "tl-alerts-1"), 2);
    assert_eq!(search_all(&base, "tl-alerts-1").len(), 2);
    let (status, _) = http("GET", &format!("{base}/_index_template/tl-alerts"), "");
    assert_eq!(status, 200, "the template survives too");
}

#[test]
fn osmem_is_opensearch_3_and_rejects_the_es8_vendor_type() {
    if !servers::available(&[servers::OSMEM]) {
        return;
    }
    let os = Server::osmem();
    let base = os.base_url();

    let (status, root) = http("GET", &format!("{base}/"), "");
    assert_eq!(status, 200);
    let root: Value = serde_json::from_str(&root).unwrap();
    assert_eq!(root["version"]["distribution"], "opensearch", "{root}");
    assert_eq!(root["version"]["number"], "3.8.0", "{root}");

    exercise(&base, "flat_object", "mapper_parsing_exception");
    assert_eq!(es8_vendor_bulk(&base), 406);
}

#[test]
fn restarting_osmem_keeps_its_port_and_loses_its_data() {
    if !servers::available(&[servers::OSMEM]) {
        return;
    }
    let mut os = Server::osmem();
    let base = os.base_url();
    bulk(&base, &two_docs("tl-mem"));
    refresh(&base, "tl-mem");
    assert_eq!(count(&base, "tl-mem"), 2);
    os.restart();
    assert_eq!(os.base_url(), base);
    let (status, _) = http("GET", &format!("{base}/tl-mem/_count"), "");
    assert_eq!(status, 404, "memory only");
}

#[test]
fn kafka_ports_of_tansu_and_noida_are_kafka_brokers() {
    if !servers::available(&[servers::TANSU, servers::NOIDA]) {
        return;
    }
    let tansu = Server::tansu();
    let noida = Server::noida_temp();
    for (name, addr) in [("tansu", tansu.kafka_addr()), ("noida", noida.kafka_addr())] {
        std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("{name} {addr}: {e}"));
        let apis = servers::kafka_api_versions(&addr).unwrap_or_else(|e| panic!("{name}: {e}"));
        // Produce (0), Fetch (1), Metadata (3), ApiVersions (18), CreateTopics (19).
        for key in [0, 1, 3, 18, 19] {
            assert!(
                apis.iter().any(|&(k, _, _)| k == key),
                "{name} lacks API {key}: {apis:?}"
            );
        }
    }
}
