//! Benign traffic: two hours of a working cluster (control plane, kubelets, add-ons with their
//! real RBAC and list/watch patterns, Helm releases, CI deploys, administrators) scanned with the
//! default pack. Budget: no high or critical alert (at most 1 per 10,000 benign events), at
//! most 3 alerts of any level per 1,000 events. The same scan with a few attack events appended
//! must raise high alerts, so the quiet is not a scan that detects nothing.

#[path = "support/cluster_traffic.rs"]
mod cluster_traffic;
#[path = "support/scan.rs"]
mod scan;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use cluster_traffic::ClusterTraffic;

const SEED: u64 = 0x7219_11ae_5c3d_0b14;

/// Runs `tripline scan --format json` on `path`; returns the alerts.
fn scan(path: &Path) -> Vec<Value> {
    let (alerts, stderr) = scan::scan_json(&["--no-progress"], path);
    eprintln!("{}", stderr.trim_end());
    alerts
}

fn level(alert: &Value) -> &str {
    alert["tripline"]["rule"]["level"].as_str().unwrap_or("?")
}

fn is_high(alert: &Value) -> bool {
    matches!(level(alert), "high" | "critical")
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("temp file"));
    for l in lines {
        f.write_all(l.as_bytes()).expect("write");
        f.write_all(b"\n").expect("write");
    }
    f.flush().expect("flush");
}

/// Attacks that must not go unnoticed: a person lists every Secret from outside the cluster
/// with kubectl, then binds themselves to cluster-admin.
fn attack_lines() -> Vec<String> {
    let who = json!({"username": "mallory@example.com", "groups": ["system:authenticated"]});
    let base = |id: &str, verb: &str, uri: &str, oref: Value, code: u16| {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": id, "stage": "ResponseComplete", "requestURI": uri, "verb": verb,
            "user": who, "sourceIPs": ["203.0.113.5"],
            "userAgent": "kubectl/v1.29.3 (linux/amd64) kubernetes/6813625",
            "objectRef": oref, "responseStatus": {"metadata": {}, "code": code},
            "requestReceivedTimestamp": "2026-11-30T10:59:00.000000Z",
            "stageTimestamp": "2026-11-30T10:59:00.020000Z",
            "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
        })
    };
    let list = base(
        "0d7f5a2e-1b3c-4d5e-8f60-7a8b9c0d1e2f",
        "list",
        "/api/v1/secrets?limit=500",
        json!({"resource": "secrets", "apiVersion": "v1"}),
        200,
    );
    let mut bind = base(
        "1e8a6b3f-2c4d-4e6f-9a71-8b9c0d1e2f30",
        "create",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        json!({"resource": "clusterrolebindings", "apiGroup": "rbac.authorization.k8s.io",
            "apiVersion": "v1", "name": "mallory-admin"}),
        201,
    );
    bind["level"] = json!("Request");
    bind["requestObject"] = json!({
        "kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "mallory-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}]
    });
    [list, bind].iter().map(|e| e.to_string()).collect()
}

#[test]
fn generator_is_deterministic() {
    let (a, _) = ClusterTraffic::generate(SEED);
    let (b, _) = ClusterTraffic::generate(SEED);
    assert_eq!(a, b);
}

#[test]
fn benign_cluster_traffic_raises_no_high_alert_and_few_others() {
    let (lines, mix) = ClusterTraffic::generate(SEED);
    let n = lines.len();

    eprintln!("benign traffic: {n} events over 2 h");
    for (class, count) in &mix.by_class {
        eprintln!(
            "  {class:<20} {count:>6} ({:.1}%)",
            100.0 * *count as f64 / n as f64
        );
    }
    eprintln!("  {mix:?}");

    // The traffic is what it claims to be.
    assert!((25_000..=40_000).contains(&n), "{n} events");
    assert!(mix.ksm_cluster_secret_watches >= 10, "{mix:?}");
    assert!(mix.ksm_cluster_secret_lists >= 1, "{mix:?}");
    assert!(
        mix.helm_installs >= 1 && mix.helm_upgrades >= 1 && mix.helm_uninstalls >= 1,
        "{mix:?}"
    );
    assert!(mix.ci_deploys >= 5 && mix.admin_sessions >= 20, "{mix:?}");
    assert!(mix.admin_execs >= 1 && mix.port_forwards >= 1, "{mix:?}");
    for class in [
        "control plane",
        "kubelets",
        "add-on controllers",
        "workload churn",
        "helm",
        "ci",
        "administrators",
    ] {
        assert!(
            mix.by_class.get(class).copied().unwrap_or(0) > 0,
            "no {class} events"
        );
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let benign = dir.path().join("benign.log");
    write_lines(&benign, &lines);
    // For tuning the pack: `BENIGN_TRAFFIC_OUT=/tmp/benign.log` keeps a copy to scan by hand.
    if let Some(out) = std::env::var_os("BENIGN_TRAFFIC_OUT") {
        std::fs::copy(&benign, out).expect("copy the generated traffic");
    }
    let alerts = scan(&benign);

    let mut by_rule: BTreeMap<(String, String), (usize, String)> = BTreeMap::new();
    for a in &alerts {
        let key = (
            level(a).to_string(),
            a["rule"]["name"].as_str().unwrap_or("?").to_string(),
        );
        let e = by_rule
            .entry(key)
            .or_insert_with(|| (0, a["message"].as_str().unwrap_or("").to_string()));
        e.0 += 1;
    }
    eprintln!("\n{:<9} {:>5}  rule / example", "level", "count");
    for ((lvl, rule), (count, example)) in &by_rule {
        eprintln!("{lvl:<9} {count:>5}  {rule}\n                 e.g. {example}");
    }
    let high = alerts.iter().filter(|a| is_high(a)).count();
    let per_10k = high as f64 * 10_000.0 / n as f64;
    let per_1k = alerts.len() as f64 * 1_000.0 / n as f64;
    eprintln!(
        "\nhigh+critical: {high} ({per_10k:.2} per 10,000 events, budget 1); \
         all levels: {} ({per_1k:.2} per 1,000 events, budget 3)",
        alerts.len()
    );

    assert_eq!(high, 0, "high or critical alerts on benign traffic");
    assert!(per_1k <= 3.0, "{per_1k:.2} alerts per 1,000 benign events");

    // The same traffic with an attack in it is not quiet.
    let mut attacked = lines.clone();
    attacked.extend(attack_lines());
    let path = dir.path().join("attacked.log");
    write_lines(&path, &attacked);
    let alerts = scan(&path);
    let mallory: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["user"]["name"] == "mallory@example.com" && is_high(a))
        .collect();
    let rules: Vec<&str> = mallory
        .iter()
        .filter_map(|a| a["rule"]["name"].as_str())
        .collect();
    eprintln!("attack: {rules:?}");
    assert!(
        rules.iter().any(|r| r.contains("Secrets Listed")),
        "{rules:?}"
    );
    assert!(
        rules.iter().any(|r| r.contains("Cluster-Admin")),
        "{rules:?}"
    );
}
