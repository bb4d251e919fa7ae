//! The default pack's correlation rules, end to end through `tripline scan`: event sequences
//! with times, written as audit logs, and the correlation alerts they must (and must not) raise.

#[path = "support/scan.rs"]
mod scan;

use std::io::Write as _;

use serde_json::{json, Value};

/// One audit event `secs` after 10:00 of a fixed day, from 203.0.113.5 with kubectl.
#[allow(clippy::too_many_arguments)]
fn event(
    i: usize,
    secs: i64,
    verb: &str,
    uri: &str,
    user: &str,
    object: Value,
    code: u16,
    stage: &str,
) -> String {
    let t = chrono::DateTime::parse_from_rfc3339("2026-12-05T10:00:00Z").unwrap()
        + chrono::Duration::seconds(secs);
    let t = t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": format!("00000000-0000-4000-8000-{i:012}"), "stage": stage,
        "requestURI": uri, "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["203.0.113.5"], "userAgent": "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
        "objectRef": object, "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": t, "stageTimestamp": t,
    })
    .to_string()
}

/// Scans `lines` with the default pack; returns the correlation alerts.
fn correlation_alerts(lines: &[String]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    scan::scan_json(&[], &path)
        .0
        .into_iter()
        .filter(|a| !a["tripline"]["correlation"].is_null())
        .collect()
}

fn titles(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["rule"]["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_burst_of_forbidden_requests_alerts_once_per_window() {
    let mut lines = Vec::new();
    // 30 refusals in 5 minutes: one alert, the rest counted.
    for i in 0..30 {
        lines.push(event(
            i,
            (i * 10) as i64,
            "get",
            &format!("/api/v1/namespaces/ns{i}/secrets"),
            "mallory@example.com",
            json!({"resource": "secrets", "namespace": format!("ns{i}"), "apiVersion": "v1"}),
            403,
            "ResponseComplete",
        ));
    }
    let a = correlation_alerts(&lines);
    assert_eq!(
        titles(&a),
        vec!["Burst Of Forbidden Requests From One Identity"],
        "{a:?}"
    );
    assert_eq!(
        a[0]["tripline"]["correlation"]["group"]["user.username"],
        "mallory@example.com"
    );
    // 19 refusals: below the threshold.
    let a = correlation_alerts(&lines[..19]);
    assert!(a.is_empty(), "{a:?}");
}

#[test]
fn fifteen_distinct_secrets_read_by_one_identity_alert() {
    let read = |i: usize, name: &str| {
        event(
            i,
            i as i64 * 30,
            "get",
            &format!("/api/v1/namespaces/prod/secrets/{name}"),
            "system:serviceaccount:shop:web",
            json!({"resource": "secrets", "namespace": "prod", "name": name, "apiVersion": "v1"}),
            200,
            "ResponseComplete",
        )
    };
    let lines: Vec<String> = (0..15).map(|i| read(i, &format!("secret-{i}"))).collect();
    let a = correlation_alerts(&lines);
    assert_eq!(
        titles(&a),
        vec!["Many Distinct Secrets Read By One Identity"],
        "{a:?}"
    );
    assert_eq!(a[0]["tripline"]["correlation"]["count"], 15);
    // The same secret read fifteen times: one distinct value.
    let same: Vec<String> = (0..15).map(|i| read(i, "db")).collect();
    assert!(correlation_alerts(&same).is_empty());
}

#[test]
fn a_binding_then_an_exec_by_the_same_person_alerts_in_that_order_only() {
    let binding = |i, secs| {
        event(
            i,
            secs,
            "create",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "mallory@example.com",
            json!({"resource": "clusterrolebindings", "name": "pwn", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"}),
            201,
            "ResponseComplete",
        )
    };
    let exec = |i, secs| {
        event(
            i,
            secs,
            "create",
            "/api/v1/namespaces/prod/pods/web-0/exec?command=sh",
            "mallory@example.com",
            json!({"resource": "pods", "namespace": "prod", "name": "web-0", "subresource": "exec", "apiVersion": "v1"}),
            101,
            "ResponseStarted",
        )
    };
    let a = correlation_alerts(&[binding(1, 0), exec(2, 120)]);
    assert_eq!(
        titles(&a),
        vec!["RBAC Binding Change Followed By Exec Or Pod By The Same Identity"],
        "{a:?}"
    );
    // The other order, or too far apart: nothing.
    assert!(correlation_alerts(&[exec(1, 0), binding(2, 120)]).is_empty());
    assert!(correlation_alerts(&[binding(1, 0), exec(2, 3600)]).is_empty());
}

#[test]
fn a_csr_created_and_approved_by_one_identity_alerts() {
    let create = event(
        1,
        0,
        "create",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        "mallory@example.com",
        json!({"resource": "certificatesigningrequests", "name": "me", "apiGroup": "certificates.k8s.io", "apiVersion": "v1"}),
        201,
        "ResponseComplete",
    );
    let approve = event(
        2,
        60,
        "update",
        "/apis/certificates.k8s.io/v1/certificatesigningrequests/me/approval",
        "mallory@example.com",
        json!({"resource": "certificatesigningrequests", "name": "me", "subresource": "approval", "apiGroup": "certificates.k8s.io", "apiVersion": "v1"}),
        200,
        "ResponseComplete",
    );
    let a = correlation_alerts(&[create.clone(), approve.clone()]);
    assert_eq!(
        titles(&a),
        vec!["Certificate Signing Request Created And Approved By The Same Identity"],
        "{a:?}"
    );
    let other = approve.replace("mallory@example.com", "alice@example.com");
    assert!(correlation_alerts(&[create, other]).is_empty());
}
