//! First-seen baselines end to end: `tripline scan` over ten days of generated traffic (the
//! learning period passes in event time), and the daemon keeping its baselines across a restart
//! and setting a corrupt baselines file aside.

mod support;
use support::daemon;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use daemon::{append, read_lines, wait_until, Daemon};

const NEW_USER_AGENT: &str = "Service Account Used With A New User Agent";
const NEW_NETWORK: &str = "Service Account Used From A New Network";
const NEW_SECRET_READER: &str = "New Identity Reading Secrets In kube-system";
const ADMIN_NETWORK: &str = "Cluster Admin Used From A New Network";

/// `event` by an identity with cluster-admin rights: through a binding (the authorization
/// annotation names the ClusterRole), or as a member of `system:masters` (no RBAC reason).
fn admin_event(
    id: &str,
    time: DateTime<Utc>,
    user: &str,
    ip: &str,
    masters: bool,
    what: [&str; 3],
) -> String {
    let mut v: Value = serde_json::from_str(&event(
        id,
        time,
        user,
        ip,
        "kubectl/v1.30.1 (linux/amd64) kubernetes/6911225",
        what,
    ))
    .unwrap();
    if masters {
        v["user"]["groups"] = serde_json::json!(["system:masters", "system:authenticated"]);
        v["annotations"]["authorization.k8s.io/reason"] = "".into();
    } else {
        v["user"]["groups"] = serde_json::json!(["platform-admins", "system:authenticated"]);
        v["annotations"]["authorization.k8s.io/reason"] = "RBAC: allowed by ClusterRoleBinding \"platform-admins\" of ClusterRole \"cluster-admin\" to Group \"platform-admins\"".into();
    }
    v.to_string()
}

/// One audit event (a successful request) as a JSON line.
fn event(
    id: &str,
    time: DateTime<Utc>,
    user: &str,
    ip: &str,
    ua: &str,
    [verb, resource, namespace]: [&str; 3],
) -> String {
    let t = time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    serde_json::json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": id,
        "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/namespaces/{namespace}/{resource}"),
        "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": [ip],
        "userAgent": ua,
        "objectRef": {"resource": resource, "namespace": namespace, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": t,
        "stageTimestamp": t,
        "annotations": {"authorization.k8s.io/decision": "allow"},
    })
    .to_string()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

/// Ten days of routine traffic, hour by hour: workloads with their client libraries, pods
/// rescheduled to other addresses of the same /24s (day 4), an external CI runner whose NAT
/// address changes within its /24 and whose kubectl is upgraded from 1.29 to 1.30 (day 8), an
/// administrator who reads kube-system secrets every day.
fn routine() -> Vec<(DateTime<Utc>, String)> {
    let mut out = Vec::new();
    for hour in 0..240i64 {
        let t = t0() + chrono::Duration::hours(hour);
        let day = hour / 24;
        let n = hour % 200 + 20;
        let cart_ip = if day < 4 {
            format!("10.244.1.{n}")
        } else {
            format!("10.244.2.{n}")
        };
        let kubectl = if day < 8 {
            "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819"
        } else {
            "kubectl/v1.30.1 (linux/amd64) kubernetes/6911225"
        };
        let mut push = |who: &str, line: String| out.push((t, line.replace("ID", who)));
        push(
            &format!("cart-{hour}"),
            event(
                "ID",
                t,
                "system:serviceaccount:shop:cart",
                &cart_ip,
                "cart/1.4.0 (linux/amd64) kubernetes/client-go",
                ["get", "configmaps", "shop"],
            ),
        );
        push(
            &format!("prom-{hour}"),
            event(
                "ID",
                t + chrono::Duration::minutes(5),
                "system:serviceaccount:monitoring:prometheus",
                &format!("10.244.{}.7", 3 + day % 2),
                "Prometheus/2.48.1",
                ["list", "pods", "shop"],
            ),
        );
        push(
            &format!("ci-{hour}"),
            event(
                "ID",
                t + chrono::Duration::minutes(10),
                "system:serviceaccount:ci:deployer",
                &format!("198.51.100.{}", 10 + hour % 50),
                kubectl,
                ["patch", "deployments", "shop"],
            ),
        );
        push(
            &format!("argo-{hour}"),
            event(
                "ID",
                t + chrono::Duration::minutes(15),
                "system:serviceaccount:argocd:argocd-application-controller",
                if day < 8 { "192.0.2.10" } else { "192.0.2.77" },
                "argocd-application-controller/v2.9.3+6eba5be",
                ["list", "services", "shop"],
            ),
        );
        // An administrator bound to cluster-admin, from a VPN pool whose addresses change
        // within its /24 (a private range: for people, in-cluster ranges count), and the
        // kubeadm admin certificate (system:masters) used by automation on the control-plane
        // nodes.
        if hour % 24 == 14 {
            push(
                &format!("bob-{hour}"),
                admin_event(
                    "ID",
                    t + chrono::Duration::minutes(25),
                    "bob@example.com",
                    &format!("100.64.20.{}", 2 + hour % 100),
                    false,
                    ["list", "pods", "prod"],
                ),
            );
        }
        if hour % 24 == 3 {
            push(
                &format!("kubeadm-{hour}"),
                admin_event(
                    "ID",
                    t + chrono::Duration::minutes(25),
                    "kubernetes-admin",
                    &format!("10.0.0.{}", 10 + day % 3),
                    true,
                    ["get", "configmaps", "kube-system"],
                ),
            );
        }
        if hour % 24 == 9 {
            push(
                &format!("alice-{hour}"),
                event(
                    "ID",
                    t + chrono::Duration::minutes(20),
                    "alice@example.com",
                    "198.51.100.200",
                    kubectl,
                    ["get", "secrets", "kube-system"],
                ),
            );
        }
    }
    out
}

/// `tripline scan --format json` with the default pack over `lines`; the first-seen alerts as
/// (rule name, auditID).
fn scan_first_seen(dir: &Path, lines: &[String]) -> Vec<(String, String)> {
    let p = dir.join("audit.log");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["scan", "--no-progress", "--format", "json"])
        .arg(&p)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|a| {
            let name = a["rule"]["name"].as_str()?.to_string();
            [
                NEW_USER_AGENT,
                NEW_NETWORK,
                NEW_SECRET_READER,
                ADMIN_NETWORK,
            ]
            .contains(&name.as_str())
            .then(|| {
                let id = a["kubernetes"]["audit"]["auditID"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (name, id)
            })
        })
        .collect()
}

#[test]
fn a_scan_over_ten_days_is_quiet_for_routine_change_and_alerts_on_new_clients_and_networks() {
    let tmp = tempfile::tempdir().unwrap();
    let mut events = routine();
    let day9 = t0() + chrono::Duration::days(9) + chrono::Duration::minutes(30);
    // The cart workload's token replayed with curl from inside the cluster.
    events.push((
        day9,
        event(
            "attack-curl",
            day9,
            "system:serviceaccount:shop:cart",
            "10.244.2.50",
            "curl/8.5.0",
            ["list", "secrets", "shop"],
        ),
    ));
    // The CI token used from a network it never came from.
    events.push((
        day9,
        event(
            "attack-network",
            day9 + chrono::Duration::minutes(1),
            "system:serviceaccount:ci:deployer",
            "203.0.113.9",
            "kubectl/v1.30.1 (linux/amd64) kubernetes/6911225",
            ["get", "pods", "shop"],
        ),
    ));
    // Someone who never read kube-system secrets does.
    events.push((
        day9,
        event(
            "attack-secrets",
            day9 + chrono::Duration::minutes(2),
            "mallory@example.com",
            "198.51.100.201",
            "kubectl/v1.30.1 (linux/amd64) kubernetes/6911225",
            ["list", "secrets", "kube-system"],
        ),
    ));
    // The administrator's credentials used from an internet address, and the kubeadm
    // certificate used from a pod (a /24 it never came from).
    events.push((
        day9,
        admin_event(
            "attack-admin-network",
            day9 + chrono::Duration::minutes(3),
            "bob@example.com",
            "203.0.113.77",
            false,
            ["list", "deployments", "prod"],
        ),
    ));
    events.push((
        day9,
        admin_event(
            "attack-admin-pod",
            day9 + chrono::Duration::minutes(4),
            "kubernetes-admin",
            "10.244.2.99",
            true,
            ["list", "pods", "prod"],
        ),
    ));
    events.sort_by_key(|(t, _)| *t);
    let lines: Vec<String> = events.into_iter().map(|(_, l)| l).collect();
    let alerts = scan_first_seen(tmp.path(), &lines);
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (rule, id) in &alerts {
        by.entry(rule.clone()).or_default().push(id.clone());
    }
    assert_eq!(
        by.get(NEW_USER_AGENT).cloned().unwrap_or_default(),
        vec!["attack-curl"],
        "{alerts:?}"
    );
    assert_eq!(
        by.get(NEW_NETWORK).cloned().unwrap_or_default(),
        vec!["attack-network"],
        "{alerts:?}"
    );
    assert_eq!(
        by.get(NEW_SECRET_READER).cloned().unwrap_or_default(),
        vec!["attack-secrets"],
        "{alerts:?}"
    );
    assert_eq!(
        by.get(ADMIN_NETWORK).cloned().unwrap_or_default(),
        vec!["attack-admin-network", "attack-admin-pod"],
        "{alerts:?}"
    );

    // The same attack on day 3 is still learned, not alerted: the baseline is learning.
    let early: Vec<String> = lines
        .iter()
        .filter(|l| !l.contains("attack-"))
        .cloned()
        .chain(std::iter::once(event(
            "early-curl",
            t0() + chrono::Duration::days(3),
            "system:serviceaccount:shop:cart",
            "203.0.113.9",
            "curl/8.5.0",
            ["list", "secrets", "shop"],
        )))
        .collect();
    assert!(scan_first_seen(tmp.path(), &early).is_empty());
}

/// Starts the daemon on `dir/logs/*.log` with the default pack, alerts to `dir/out/alerts.jsonl`.
fn start(dir: &Path) -> Daemon {
    let sink = format!(
        "  - type: file\n    name: alerts\n    path: {}\n    flows: [alerts]\n",
        dir.join("out/alerts.jsonl").display()
    );
    let d = daemon::start_tailing(dir, &sink);
    d.wait_ready(Duration::from_secs(20));
    d
}

/// The auditIDs of the alerts of `rule` delivered so far.
fn alerted(dir: &Path, rule: &str) -> Vec<String> {
    read_lines(&dir.join("out/alerts.jsonl"))
        .iter()
        .filter(|a| a["rule"]["name"] == rule)
        .filter_map(|a| {
            a["kubernetes"]["audit"]["auditID"]
                .as_str()
                .map(String::from)
        })
        .collect()
}

fn sa_event(id: &str, day: i64, ua: &str) -> String {
    event(
        id,
        t0() + chrono::Duration::days(day),
        "system:serviceaccount:shop:cart",
        "10.244.1.20",
        ua,
        ["get", "configmaps", "shop"],
    ) + "\n"
}

#[test]
fn the_daemon_keeps_its_baselines_across_a_restart_and_sets_a_corrupt_file_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = dir.join("logs/audit.log");
    let client_go = "cart/1.4.0 (linux/amd64) kubernetes/client-go";
    let d = start(dir);
    append(&log, &sa_event("learn-1", 0, client_go));
    append(&log, &sa_event("new-curl", 8, "curl/8.5.0"));
    wait_until(
        Duration::from_secs(10),
        || alerted(dir, NEW_USER_AGENT) == ["new-curl"],
        || d.logs(),
    );
    assert!(d.stop().success());
    let saved = dir.join("state/baselines.json");
    assert!(saved.exists(), "baselines are written at shutdown");

    // After the restart the key learned before it is known, and the baseline is past learning:
    // a client never seen before still alerts.
    let d = start(dir);
    // Two keys of the new-user-agent rule (client-go and curl) came back from the file.
    assert_eq!(d.metric("tripline_first_seen_keys"), Some(2.0));
    append(&log, &sa_event("known-curl", 9, "curl/8.6.0"));
    append(&log, &sa_event("new-python", 9, "python-requests/2.31.0"));
    wait_until(
        Duration::from_secs(10),
        || alerted(dir, NEW_USER_AGENT).contains(&"new-python".to_string()),
        || d.logs(),
    );
    assert_eq!(alerted(dir, NEW_USER_AGENT), ["new-curl", "new-python"]);
    assert!(d.stop().success());

    // A corrupt file: moved aside with a warning, the daemon runs with empty baselines (learning
    // again, so a new client does not alert).
    std::fs::write(&saved, b"{\"version\": 1, \"baselines\": [tru").unwrap();
    let d = start(dir);
    let aside: Vec<String> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("baselines.json.unreadable-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(d.logs().contains("moved aside"), "{}", d.logs());
    append(&log, &sa_event("relearn-ruby", 10, "ruby/3.2"));
    wait_until(
        Duration::from_secs(10),
        || {
            d.metric("tripline_events_received_total{source=\"audit\"}")
                .is_some_and(|v| v >= 1.0)
        },
        || d.logs(),
    );
    assert!(d.stop().success());
    assert_eq!(alerted(dir, NEW_USER_AGENT), ["new-curl", "new-python"]);
    assert!(saved.exists(), "a fresh file is written");
}
