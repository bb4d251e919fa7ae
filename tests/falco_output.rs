//! Alerts in Falco's JSON shape (`tripline::alert::falco`): alerts of a Falco rule, a Sigma rule
//! and a correlation, made by `tripline scan` (the detector's real path), converted, checked
//! field by field and decoded as falcosidekick decodes its input.

#[path = "support/falco_payload.rs"]
mod falco_payload;
#[path = "support/scan.rs"]
mod scan;

use std::path::Path;

use falco_payload::{FalcoPayload, Priority};
use serde_json::{json, Value};
use tripline::alert::to_falco;

const FALCO_RULES: &str = r#"
- rule: Create Privileged Pod
  desc: Detect an attempt to start a pod with a privileged container
  condition: ka.verb=create and ka.target.resource=pods
  output: Pod started (user=%ka.user.name ns=%ka.target.namespace images=%ka.req.pod.containers.image)
  priority: WARNING
  source: k8s_audit
  tags: [k8s, demo]
"#;

const POD_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"a362d22b-db3c-4590-9505-23782f12925f","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"create","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.30.0","objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"c","image":"nginx","securityContext":{"privileged":true}}]}},"requestReceivedTimestamp":"2018-10-25T14:09:12.572676Z","stageTimestamp":"2018-10-25T14:09:12.581541Z"}"#;

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The Falco shape of `doc`, decoded strictly as falcosidekick does.
fn falco(doc: &Value, uuid: Option<&str>) -> (Value, FalcoPayload) {
    let v = to_falco(doc, uuid, now());
    let bytes = serde_json::to_vec(&v).unwrap();
    (v, FalcoPayload::parse(&bytes))
}

fn sample_alerts() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/audit.log");
    scan::scan_json(&[], &path).0
}

#[test]
fn a_falco_rule_alert_keeps_its_rule_priority_tags_and_output_fields() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, FALCO_RULES).unwrap();
    let log = dir.path().join("audit.log");
    std::fs::write(&log, format!("{POD_CREATE}\n")).unwrap();
    let (alerts, _) = scan::scan_json(
        &["--no-default-rules", "--rules", rules.to_str().unwrap()],
        &log,
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let mut doc = alerts[0].clone();
    assert!(doc["falco"].is_object(), "{doc}");
    let (f, p) = falco(&doc, Some("0123abcd"));
    assert_eq!(
        f,
        json!({
            "uuid": "0123abcd",
            "output": "14:09:12.581541000: Warning Pod started (user=alice ns=default images=(nginx))",
            "priority": "Warning",
            "rule": "Create Privileged Pod",
            "time": "2018-10-25T14:09:12.581541000Z",
            "output_fields": {
                "evt.time": 1_540_476_552_581_541_000_i64,
                "ka.user.name": "alice",
                "ka.target.namespace": "default",
                "ka.req.pod.containers.image": ["nginx"],
            },
            "source": "k8s_audit",
            // Sorted, as Falco keeps them (a set).
            "tags": ["demo", "k8s"],
        })
    );
    assert_eq!(p.priority, Priority::Warning);
    assert_eq!(p.time.timestamp_subsec_nanos(), 581_541_000);
    // The daemon's node name becomes the hostname.
    doc["host"] = json!({"name": "node-1"});
    let (f, p) = falco(&doc, None);
    assert_eq!(f["hostname"], "node-1");
    assert_eq!(p.hostname.as_deref(), Some("node-1"));
    assert!(p.uuid.is_none());
}

#[test]
fn a_sigma_alert_gets_a_priority_from_its_level_and_k8saudit_fields_from_its_event() {
    let alerts = sample_alerts();
    let doc = alerts
        .iter()
        .find(|a| a["rule"]["name"] == "Exec Or Attach Into Pod In Sensitive Namespace")
        .expect("the sample raises it");
    assert!(doc.get("falco").is_none());
    let (f, p) = falco(doc, Some("id-1"));
    assert_eq!(
        f,
        json!({
            "uuid": "id-1",
            "output": format!("09:26:18.004606000: Error {}", doc["message"].as_str().unwrap()),
            "priority": "Error",
            "rule": "Exec Or Attach Into Pod In Sensitive Namespace",
            "time": "2026-11-22T09:26:18.004606000Z",
            "output_fields": {
                "evt.time": 1_795_339_578_004_606_000_i64,
                "ka.auditid": "074a7715-b5ca-4fa7-8bdd-95b2c2949803",
                "ka.user.name": "svc-reporting",
                "ka.verb": "create",
                "ka.uri": "/api/v1/namespaces/prod/pods/payments-api-7c9d8f6b5-42bth/exec?command=sh&container=api&stdin=true&stdout=true&tty=true",
                "ka.target.resource": "pods",
                "ka.target.namespace": "prod",
                "ka.target.name": "payments-api-7c9d8f6b5-42bth",
                "ka.target.subresource": "exec",
                "ka.response.code": "101",
                "ka.useragent": "kubectl/v1.28.1 (linux/amd64) kubernetes/8dc49c4",
                "ka.sourceips": ["203.0.113.45"],
            },
            "source": "k8s_audit",
            "tags": ["attack.execution", "attack.t1609"],
        })
    );
    assert_eq!(p.priority, Priority::Error);
    // Every alert of the sample converts to a payload falcosidekick takes, with the priority of
    // its level; a field the event lacks is null.
    for a in &alerts {
        let (f, p) = falco(a, None);
        let want = match a["tripline"]["rule"]["level"].as_str().unwrap() {
            "critical" => Priority::Critical,
            "high" => Priority::Error,
            "medium" => Priority::Warning,
            "low" => Priority::Notice,
            _ => Priority::Informational,
        };
        assert_eq!(p.priority, want, "{f}");
        assert_eq!(p.rule, a["rule"]["name"].as_str().unwrap());
        if a["kubernetes"]["audit"].is_object() {
            assert_eq!(p.output_fields.len(), 12, "{f}");
        }
    }
    let anonymous = alerts
        .iter()
        .find(|a| a["kubernetes"]["audit"]["objectRef"]["name"].is_null())
        .expect("an alert on an event without objectRef.name");
    assert_eq!(
        falco(anonymous, None).0["output_fields"]["ka.target.name"],
        Value::Null
    );
}

#[test]
fn a_correlation_alert_gets_the_fields_of_its_group() {
    let alerts = sample_alerts();
    let doc = alerts
        .iter()
        .find(|a| a["tripline"]["correlation"].is_object())
        .expect("the sample raises a correlation");
    assert!(doc["kubernetes"].is_null());
    let (f, p) = falco(doc, None);
    assert_eq!(
        f,
        json!({
            "output": format!("09:34:02.006578000: Error {}", doc["message"].as_str().unwrap()),
            "priority": "Error",
            "rule": "RBAC Binding Change Followed By Exec Or Pod By The Same Identity",
            "time": "2026-11-22T09:34:02.006578000Z",
            "output_fields": {
                "evt.time": 1_795_340_042_006_578_000_i64,
                "ka.user.name": "svc-reporting",
                "tripline.correlation.type": "temporal_ordered",
                "tripline.correlation.count": 2,
            },
            "source": "k8s_audit",
            "tags": ["attack.privilege-escalation", "attack.t1098.006", "attack.execution", "attack.t1609"],
        })
    );
    assert_eq!(p.priority, Priority::Error);
}

#[test]
fn the_strict_payload_refuses_what_falcosidekick_refuses() {
    let ok = json!({"output": "o", "priority": "warning", "rule": "r", "time": "2024-01-01T00:00:00.000000001Z", "output_fields": {"a": 1}, "source": "k8s_audit"});
    let parse = |v: &Value| {
        std::panic::catch_unwind(|| FalcoPayload::parse(&serde_json::to_vec(v).unwrap())).is_ok()
    };
    assert!(parse(&ok));
    for (key, bad) in [
        ("priority", json!("Info")),
        ("priority", json!("")),
        ("time", json!("2024-01-01T00:00:00Z")),
        ("time", json!("2024-01-01T00:00:00.000001Z")),
        ("rule", json!("")),
        ("output_fields", json!({})),
        ("extra", json!(1)),
    ] {
        let mut v = ok.clone();
        v[key] = bad;
        assert!(!parse(&v), "{v}");
    }
}
