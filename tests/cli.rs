//! The `tripline` binary, run as a user runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tripline"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .current_dir(root())
        .output()
        .expect("the binary runs")
}

fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn alerts(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        // tripline's parser: alert documents may nest as deep as the events they carry.
        .map(|l| {
            tripline::event::parse_value(l)
                .unwrap_or_else(|| panic!("stdout line is not JSON: {l}"))
        })
        .collect()
}

fn titles(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a["rule"]["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

const EXEC: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"7d3c5b4e-1f2a-4c1b-9a7e-3e2d1c0b9a8f","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/prod/pods/web-0/exec?command=sh&stdin=true&tty=true","verb":"create","user":{"username":"mallory@example.com","groups":["system:authenticated"]},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.0","objectRef":{"resource":"pods","namespace":"prod","name":"web-0","apiVersion":"v1","subresource":"exec"},"responseStatus":{"metadata":{},"code":101},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.050000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#;

#[test]
fn scan_of_the_bundled_sample_finds_the_attacks_and_only_prints_alerts_in_json_mode() {
    let out = run(&["scan", "--format", "json", "samples/audit.log"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let alerts = alerts(&out);
    assert!(alerts.len() >= 8, "only {} alerts", alerts.len());
    for a in &alerts {
        assert_eq!(a["event"]["kind"], "alert");
        assert!(a["rule"]["id"].is_string());
        // A rule's alert carries its event; a correlation's lists the events it counted.
        assert!(
            a["kubernetes"]["audit"]["auditID"].is_string()
                || a["tripline"]["correlation"]["events"]
                    .as_array()
                    .is_some_and(|e| !e.is_empty()),
            "{a}"
        );
    }
    let t = titles(&alerts).join("\n").to_lowercase();
    for want in ["exec", "cluster-admin", "secret", "privileged", "anonymous"] {
        assert!(t.contains(want), "no alert about {want} in:\n{t}");
    }
    // Health checks by system:anonymous are normal traffic, not alerts.
    for a in &alerts {
        let uri = a["url"]["original"].as_str().unwrap_or_default();
        assert!(
            !uri.starts_with("/healthz")
                && !uri.starts_with("/livez")
                && !uri.starts_with("/readyz"),
            "health check alerted: {a}"
        );
    }
}

#[test]
fn text_report_groups_by_severity_and_counts_what_was_read() {
    let out = run(&["scan", "samples/audit.log"]);
    assert!(out.status.success());
    let report = text(&out.stdout);
    assert!(
        report.contains("== HIGH ==") || report.contains("== CRITICAL =="),
        "{report}"
    );
    assert!(report.contains("users: "), "{report}");
    assert!(report.contains("events read from"), "{report}");
}

#[test]
fn stdin_is_read_when_no_path_or_dash_is_given() {
    for args in [
        &["scan", "--format", "json"][..],
        &["scan", "--format", "json", "-"][..],
    ] {
        let out = run_stdin(args, format!("{EXEC}\n").as_bytes());
        assert!(out.status.success(), "{}", text(&out.stderr));
        let a = alerts(&out);
        assert!(!a.is_empty(), "exec into a prod pod must alert");
        assert_eq!(a[0]["source"]["ip"], "203.0.113.7");
        assert_eq!(a[0]["user"]["name"], "mallory@example.com");
    }
}

#[test]
fn bad_input_is_reported_with_file_and_line_and_the_scan_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("audit.log");
    let mut body = Vec::new();
    body.extend(b"not json at all\n");
    body.extend(b"{\"kind\": 0}\n");
    body.extend(b"{\"verb\":\"get\",\"x\":\"\xff\xfe\"}\n");
    body.extend(EXEC.as_bytes());
    body.extend(b"\n{\"verb\":\"get\",\"auditID\":\"trunc");
    std::fs::write(&p, &body).unwrap();
    let out = run(&["scan", "--format", "json", p.to_str().unwrap()]);
    assert!(out.status.success());
    let err = text(&out.stderr);
    let name = p.display().to_string();
    for want in [
        format!("{name}:1: malformed_json"),
        format!("{name}:2: not_an_event"),
        format!("{name}:3: invalid_utf8"),
        format!("{name}:5: truncated"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in:\n{err}");
    }
    assert!(err.contains("4 skipped"), "{err}");
    assert!(
        !alerts(&out).is_empty(),
        "the good line after bad ones is still scanned"
    );
}

#[test]
fn gzip_files_and_directories_are_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{EXEC}\n").as_bytes()).unwrap();
    std::fs::write(
        dir.path().join("audit-2026-03-01T10-00-00.000.log.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    // Another request (another auditID): one request logged twice alerts once.
    let other = EXEC.replace(
        "7d3c5b4e-1f2a-4c1b-9a7e-3e2d1c0b9a8f",
        "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e",
    );
    std::fs::write(dir.path().join("audit.log"), format!("{other}\n")).unwrap();
    let out = run(&["scan", "--format", "json", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(
        alerts(&out)
            .iter()
            .filter(|a| a["url"]["original"]
                .as_str()
                .unwrap_or("")
                .contains("/exec"))
            .count(),
        2,
        "both files alert"
    );
}

fn write_rule(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// `tripline scan --format json` of one event with only the rule file `rule`; must succeed.
fn scan_with_only(rule: &Path, event: &str) -> Output {
    let out = run_stdin(
        &[
            "scan",
            "--format",
            "json",
            "--no-default-rules",
            "--rules",
            rule.to_str().unwrap(),
        ],
        format!("{event}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

const SECRET_RULE: &str = "title: Secret Created\nid: 5b0c7a52-8f1e-4d0b-a3f5-0c8d9e7f6a51\nlogsource:\n  product: kubernetes\n  service: audit\ndetection:\n  selection:\n    verb: create\n    objectRef.resource: secrets\n  condition: selection\nlevel: high\noutput: '{user.username} created secret {objectRef.name} with {requestObject.data.password}'\n";

#[test]
fn custom_rules_replace_the_pack_and_secret_values_never_leave() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write_rule(dir.path(), "secret.yml", SECRET_RULE);
    let secret_b64 = "c3VwZXItc2VjcmV0LXBhc3N3b3Jk";
    let event = format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","verb":"create","user":{{"username":"dev@example.com"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"secrets","namespace":"app","name":"db","apiVersion":"v1"}},"requestObject":{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"db","annotations":{{"kubectl.kubernetes.io/last-applied-configuration":"{{\"apiVersion\":\"v1\",\"data\":{{\"password\":\"{secret_b64}\"}},\"kind\":\"Secret\"}}"}}}},"data":{{"password":"{secret_b64}"}},"stringData":{{"token":"plain-text-token-value"}}}},"responseObject":{{"kind":"Secret","data":{{"password":"{secret_b64}"}}}},"stageTimestamp":"2026-03-01T10:00:00Z"}}"#
    );
    let out = scan_with_only(&rule, &event);
    let stdout = text(&out.stdout);
    let a = alerts(&out);
    assert_eq!(titles(&a), ["Secret Created"], "only the custom rule runs");
    assert!(
        !stdout.contains(secret_b64),
        "secret value leaked: {stdout}"
    );
    assert!(
        !stdout.contains("plain-text-token-value"),
        "stringData leaked: {stdout}"
    );
    assert!(a[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("dev@example.com created secret db with "));
    assert_eq!(
        a[0]["kubernetes"]["audit"]["requestObject"]["data"]["password"], "[REDACTED]",
        "keys are kept"
    );
}

#[test]
fn rules_check_reports_every_problem_as_file_line_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = SECRET_RULE.replace("    verb: create", "    verb|base64offset: create")
        + "---\n"
        + &SECRET_RULE
            .replace(
                "5b0c7a52-8f1e-4d0b-a3f5-0c8d9e7f6a51",
                "6b0c7a52-8f1e-4d0b-a3f5-0c8d9e7f6a52",
            )
            .replace("condition: selection", "condition: selection and nothing");
    let p = write_rule(dir.path(), "bad.yml", &bad);
    let out = run(&["rules", "check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let s = text(&out.stdout);
    let name = p.display().to_string();
    assert!(
        s.contains(&format!("{name}:8: `selection.verb|base64offset`")),
        "{s}"
    );
    assert!(
        s.contains(&format!("{name}:23: condition `selection and nothing`")),
        "{s}"
    );
    // scan refuses to run with broken rules rather than silently skipping them.
    let out = run(&["scan", "--rules", p.to_str().unwrap(), "samples/audit.log"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn rules_test_passes_on_the_pack_and_fails_with_a_diff_on_a_wrong_expectation() {
    let out = run(&["rules", "test"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(" passed, 0 failed"));

    let dir = tempfile::tempdir().unwrap();
    let body = format!(
        "{SECRET_RULE}tests:\n  - name: a configmap is not a secret\n    match: true\n    event: {{verb: create, objectRef: {{resource: configmaps}}}}\n"
    );
    let p = write_rule(dir.path(), "t.yml", &body);
    let out = run(&["rules", "test", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let s = text(&out.stdout);
    assert!(
        s.contains("test `a configmap is not a secret`: expected a match, got no match"),
        "{s}"
    );
    assert!(s.contains("- selection"), "{s}");
    assert!(
        s.contains("objectRef.resource (event has [\"configmaps\"])"),
        "{s}"
    );
    assert!(s.contains("0 passed, 1 failed"), "{s}");
}

/// SECRET_RULE with a Sigma name, and a correlation over it.
fn correlation_file() -> String {
    SECRET_RULE.replace("title: Secret Created\n", "title: Secret Created\nname: secret_created\n")
        + "---\ntitle: Many Secrets Created\nid: 7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f\nlevel: high\ncorrelation:\n  type: event_count\n  rules: [secret_created]\n  group-by: [user.username]\n  timespan: 10m\n  condition: {gte: 5}\n"
}

#[test]
fn rules_check_list_and_test_count_correlations() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_rule(dir.path(), "mr_secrets.yml", &correlation_file());
    let out = run(&["rules", "check", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("1 rules and 1 correlations OK"),
        "{}",
        text(&out.stdout)
    );

    let out = run(&[
        "rules",
        "list",
        "--no-default-rules",
        "--rules",
        p.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.lines().any(
            |l| l.starts_with("7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f  high")
                && l.ends_with("correlation: event_count of secret_created")
        ),
        "{s}"
    );

    // A correlation without embedded tests is named, and fails nothing.
    let out = run(&["rules", "test", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("1 correlations have no embedded tests: Many Secrets Created"),
        "{}",
        text(&out.stdout)
    );

    // Embedded tests of a correlation run through the rules and a correlator: five creates in a
    // minute alert, one does not; a wrong expectation fails the command with the test's line.
    let create = |i: u32| {
        format!(
            "      - {{kind: Event, stage: ResponseComplete, verb: create, user: {{username: eve}}, objectRef: {{resource: secrets, namespace: prod, name: s{i}}}, responseStatus: {{code: 201}}, stageTimestamp: '2026-03-01T10:00:{i:02}Z'}}\n"
        )
    };
    let five: String = (0..5).map(create).collect();
    let tested = correlation_file()
        + &format!("tests:\n  - name: five creates\n    match: true\n    events:\n{five}  - name: one create\n    match: false\n    events:\n{}", create(0));
    let p = write_rule(dir.path(), "tested.yml", &tested);
    let out = run(&["rules", "test", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains(" passed, 0 failed (1 rules and 1 correlations)"),
        "{}",
        text(&out.stdout)
    );
    let wrong = tested.replace("match: false", "match: true");
    let p = write_rule(dir.path(), "wrong.yml", &wrong);
    let out = run(&["rules", "test", p.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("test `one create`: expected an alert, got 0 alert(s)"),
        "{}",
        text(&out.stdout)
    );

    // A broken correlation is an error at its line; the rule next to it still loads.
    let broken = correlation_file().replace("timespan: 10m", "timespan: 10 minutes");
    let p = write_rule(dir.path(), "broken.yml", &broken);
    let out = run(&["rules", "check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!("{}:22: `correlation.timespan`", p.display())),
        "{s}"
    );
    assert!(s.contains("1 problems; 1 rules OK"), "{s}");
}

#[test]
fn rules_list_shows_id_level_title_and_tags() {
    let out = run(&["rules", "list"]);
    assert!(out.status.success());
    let s = text(&out.stdout);
    assert!(
        s.lines().count() >= 30,
        "the default pack has at least 30 rules:\n{s}"
    );
    assert!(
        s.lines().all(|l| l.len() > 40 && l.as_bytes()[8] == b'-'),
        "{s}"
    );
}

#[test]
fn config_file_drives_disable_exceptions_placeholders_and_cluster_name() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write_rule(dir.path(), "secret.yml", SECRET_RULE);
    let cfg = dir.path().join("tripline.yaml");
    std::fs::write(
        &cfg,
        format!(
            "cluster_name: prod-eu\nrules:\n  builtin: false\n  paths: [{}]\n  exceptions:\n    5b0c7a52-8f1e-4d0b-a3f5-0c8d9e7f6a51:\n      - user.username: ci-bot\n        objectRef.namespace: ci\n",
            rule.display()
        ),
    )
    .unwrap();
    let ev = |user: &str, ns: &str| {
        format!(
            r#"{{"verb":"create","auditID":"x","user":{{"username":"{user}"}},"objectRef":{{"resource":"secrets","namespace":"{ns}","name":"s"}}}}"#
        )
    };
    let input = format!(
        "{}\n{}\n{}\n",
        ev("ci-bot", "ci"),
        ev("ci-bot", "prod"),
        ev("eve", "ci")
    );
    let out = run_stdin(
        &[
            "scan",
            "--format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
        ],
        input.as_bytes(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let a = alerts(&out);
    assert_eq!(
        a.len(),
        2,
        "only the excepted user+namespace pair is suppressed"
    );
    assert_eq!(a[0]["orchestrator"]["cluster"]["name"], "prod-eu");

    std::fs::write(
        &cfg,
        "rules:\n  disable: [5b0c7a52-8f1e-4d0b-a3f5-0c8d9e7f6a51]\n  bogus: 1\n",
    )
    .unwrap();
    let out = run(&["config", "check", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.contains("unknown field `bogus`") && e.contains("line 3"),
        "{e}"
    );
}

/// Regression: short secret values and bodies nested deeper than serde_json accepts must not
/// put secret values into messages or empty the alert.
#[test]
fn short_secrets_and_deeply_nested_bodies_never_reach_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let rule = SECRET_RULE.replace("verb: create", "verb: patch").replace(
        "{requestObject.data.password}",
        "{requestObject.stringData.pin} {requestObject.stringData.password}",
    );
    let rule = write_rule(dir.path(), "secret.yml", &rule);
    let deep = format!("{}1{}", "[".repeat(126), "]".repeat(126));
    let event = format!(
        r#"{{"kind":"Event","auditID":"p1","verb":"patch","user":{{"username":"dev"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"secrets","namespace":"app","name":"db"}},"requestObject":{{"stringData":{{"pin":"907","password":"hunter2-hunter2"}},"deep":{deep}}},"stageTimestamp":"2026-03-01T10:00:00Z"}}"#
    );
    let out = scan_with_only(&rule, &event);
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("hunter2"), "{stdout}");
    let a = alerts(&out);
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0]["message"],
        "dev created secret db with [REDACTED] [REDACTED]"
    );
    assert_eq!(a[0]["user"]["name"], "dev", "the alert keeps its fields");
}

/// Regression (reliability report): a PATCH body that repeats `kind` (`Secret` and
/// `ConfigMap`, in either order) reached the alert with its base64 `data`.
#[test]
fn a_repeated_kind_never_lets_secret_data_into_scan_output() {
    let dir = tempfile::tempdir().unwrap();
    let rule = SECRET_RULE
        .replace("verb: create", "verb: patch")
        .replace(
            "objectRef.resource: secrets",
            "objectRef.resource: configmaps",
        )
        .replace("{requestObject.data.password}", "{requestObject.data.k}");
    let rule = write_rule(dir.path(), "patch.yml", &rule);
    let secret_b64 = "cmVwZWF0ZWQta2luZC1zZWNyZXQ=";
    for (a, b) in [("Secret", "ConfigMap"), ("ConfigMap", "Secret")] {
        for body in ["requestObject", "responseObject"] {
            let event = format!(
                r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"r1","stage":"ResponseComplete","verb":"patch","user":{{"username":"dev"}},"sourceIPs":["10.0.0.1"],"objectRef":{{"resource":"configmaps","namespace":"app","name":"db"}},"{body}":{{"kind":"{a}","kind":"{b}","data":{{"k":"{secret_b64}"}}}},"stageTimestamp":"2026-03-01T10:00:00Z"}}"#
            );
            let out = scan_with_only(&rule, &event);
            let stdout = text(&out.stdout);
            assert_eq!(alerts(&out).len(), 1, "{stdout}");
            assert!(
                !stdout.contains(secret_b64),
                "{a},{b} in {body}: secret value leaked: {stdout}"
            );
        }
    }
}

/// The alerts of a JSON-mode scan, by what identifies them: rule, event, message.
fn alert_keys(out: &Output) -> Vec<String> {
    let mut keys: Vec<String> = alerts(out)
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["rule"]["id"], a["kubernetes"]["audit"]["auditID"], a["message"]
            )
        })
        .collect();
    keys.sort();
    keys
}

#[test]
fn eks_cloudwatch_exports_alert_like_the_plain_events() {
    use base64::Engine as _;
    let plain = std::fs::read_to_string(root().join("samples/audit.log")).unwrap();
    let events: Vec<&str> = plain.lines().filter(|l| !l.trim().is_empty()).collect();
    let dir = tempfile::tempdir().unwrap();
    // `aws logs filter-log-events ... | jq -c '.events[]'`: one log event per line.
    let mut exported = String::new();
    for (i, e) in events.iter().enumerate() {
        let line = serde_json::json!({
            "logStreamName": "kube-apiserver-audit-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "timestamp": 1772359200000u64 + i as u64,
            "message": e,
            "ingestionTime": 1772359201000u64 + i as u64,
            "eventId": format!("{i:056}"),
        });
        exported.push_str(&format!("{line}\n"));
    }
    let exported_path = dir.path().join("eks-export.jsonl");
    std::fs::write(&exported_path, &exported).unwrap();
    // Kinesis records of a subscription filter: gzip+base64 payloads of 100 log events.
    let mut kinesis = String::new();
    for chunk in events.chunks(100) {
        let payload = serde_json::json!({
            "messageType": "DATA_MESSAGE",
            "owner": "111122223333",
            "logGroup": "/aws/eks/prod-eu/cluster",
            "logStream": "kube-apiserver-audit-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "subscriptionFilters": ["tripline"],
            "logEvents": chunk.iter().enumerate().map(|(i, e)| serde_json::json!({"id": i.to_string(), "timestamp": 1772359200000u64, "message": e})).collect::<Vec<_>>(),
        });
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(payload.to_string().as_bytes()).unwrap();
        kinesis.push_str(&base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap()));
        kinesis.push('\n');
    }
    let kinesis_path = dir.path().join("eks-kinesis.b64");
    std::fs::write(&kinesis_path, &kinesis).unwrap();

    let want = run(&["scan", "--format", "json", "samples/audit.log"]);
    assert!(want.status.success());
    let want_keys = alert_keys(&want);
    assert!(want_keys.len() >= 8, "{want_keys:?}");
    for path in [&exported_path, &kinesis_path] {
        let got = run(&["scan", "--format", "json", path.to_str().unwrap()]);
        assert!(got.status.success(), "{}", text(&got.stderr));
        assert_eq!(alert_keys(&got), want_keys, "{}", path.display());
        // Same events, nothing skipped.
        assert_eq!(text(&got.stderr), text(&want.stderr), "{}", path.display());
    }
}

#[test]
fn policy_check_names_the_rules_a_policy_starves() {
    let dir = tempfile::tempdir().unwrap();
    let starving = dir.path().join("starving.yaml");
    std::fs::write(
        &starving,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: None\n    resources: [{group: \"\", resources: [\"pods/exec\", \"pods/attach\"]}]\n  - level: Metadata\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["policy", "check"])
        .arg(&starving)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    // Exec rules lose their events; body rules lose their bodies; metadata rules still fire.
    assert!(
        text.contains("Exec Or Attach Into Pod In Sensitive Namespace"),
        "{text}"
    );
    assert!(text.contains("not recorded (policy rule 1)"), "{text}");
    assert!(
        text.contains("recorded at Metadata, which lacks fields the rule reads"),
        "{text}"
    );
    assert!(
        !text.contains("Anonymous Access To API Resource Allowed"),
        "metadata-only rules can fire: {text}"
    );

    let everything = dir.path().join("everything.yaml");
    std::fs::write(
        &everything,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: RequestResponse\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["policy", "check"])
        .arg(&everything)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    // `N of N rules can fire, 0 cannot`, whatever the size of the pack.
    let counts: Vec<&str> = text
        .split(": ")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        counts.len() > 2 && counts[0] == counts[2] && text.contains("rules can fire, 0 cannot"),
        "{text}"
    );

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n    verbz: [get]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["policy", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("verbz"));
}

#[test]
fn every_default_rule_can_fire_under_the_recommended_audit_policy() {
    let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/audit-policy.yaml");
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["policy", "check"])
        .arg(&policy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(" rules can fire, 0 cannot") && !text.contains("can never fire"),
        "{text}"
    );
    assert!(
        !text.contains("unchecked"),
        "every default rule has examples: {text}"
    );
}

/// A stripped export: no `responseStatus`, no `stageTimestamp`, no `objectRef.apiGroup`.
const STRIPPED_SECRET_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0f1e2d3c-4b5a-4968-8776-655443322110","requestURI":"/api/v1/namespaces/prod/secrets","verb":"create","user":{"username":"eve@example.com","groups":["system:authenticated"]},"sourceIPs":["203.0.113.9"],"userAgent":"kubectl/v1.29.0","objectRef":{"resource":"secrets","namespace":"prod","name":"s","apiVersion":"v1"},"requestReceivedTimestamp":"2026-03-01T10:00:00.250000Z"}"#;

#[test]
fn a_stripped_event_alerts_with_outcome_unknown_and_the_receive_time() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write_rule(dir.path(), "secret.yml", SECRET_RULE);
    let out = scan_with_only(&rule, STRIPPED_SECRET_CREATE);
    let a = alerts(&out);
    assert_eq!(
        titles(&a),
        vec!["Secret Created"],
        "a core resource without apiGroup matches"
    );
    assert_eq!(a[0]["event"]["outcome"], "unknown");
    let ts = a[0]["@timestamp"].as_str().unwrap_or_default();
    assert!(ts.starts_with("2026-03-01T10:00:00.25"), "{ts}");
}

const STAGELESS_EXEC_RULE: &str = "title: Exec\nid: 6c1d8b63-9f2a-4e1c-b4a6-1d9e0f8a7b62\nlogsource:\n  product: kubernetes\n  service: audit\ndetection:\n  selection:\n    verb: create\n    objectRef.subresource: exec\n    stage: [ResponseStarted, null]\n  condition: selection\nlevel: high\n";

#[test]
fn stage_less_events_of_one_request_alert_once() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write_rule(dir.path(), "exec.yml", STAGELESS_EXEC_RULE);
    let stageless = EXEC.replace(r#""stage":"ResponseStarted","#, "");
    let complete = stageless.replace(r#""code":101"#, r#""code":200"#);
    let other = stageless.replace("7d3c5b4e-1f2a", "8e4d6c5f-2a3b");
    let out = scan_with_only(&rule, &format!("{stageless}\n{complete}\n{other}"));
    assert_eq!(alerts(&out).len(), 2, "one alert per request");
    let e = text(&out.stderr);
    assert!(e.contains("1 repeats of one request"), "{e}");
}

const DEPLOYMENT_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"c5be68f4-80b8-4159-adc4-76ddb195334e","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/default/deployments","verb":"create","user":{"username":"minikube-user","groups":["system:masters","system:authenticated"]},"sourceIPs":["192.168.99.1"],"userAgent":"kubectl/v1.29.0","objectRef":{"resource":"deployments","namespace":"default","name":"nginx-deployment","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.010000Z"}"#;

#[test]
fn audit_trail_rules_run_only_when_asked() {
    let scan = |extra: &[&str]| {
        let mut args = vec!["scan", "--format", "json"];
        args.extend_from_slice(extra);
        let out = run_stdin(&args, format!("{DEPLOYMENT_CREATE}\n").as_bytes());
        assert!(out.status.success(), "{}", text(&out.stderr));
        titles(&alerts(&out))
    };
    let want = "K8s Deployment Created".to_string();
    assert!(!scan(&[]).contains(&want));
    assert!(scan(&["--audit-trail"]).contains(&want));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tripline.yaml");
    std::fs::write(&cfg, "rules:\n  audit_trail: true\n").unwrap();
    assert!(scan(&["--config", cfg.to_str().unwrap()]).contains(&want));
}

const NAMESPACE_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"841d3e6d-90d2-43df-8da4-684738bee3d5","stage":"ResponseComplete","requestURI":"/api/v1/namespaces","verb":"create","user":{"username":"some-user","groups":["system:masters","system:authenticated"]},"sourceIPs":["192.168.99.1"],"objectRef":{"resource":"namespaces","name":"foo","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"foo"}},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.010000Z"}"#;

#[test]
fn allow_list_rules_are_inactive_until_their_placeholders_have_values() {
    let scan = |extra: &[&str]| {
        let mut args = vec!["scan", "--format", "json"];
        args.extend_from_slice(extra);
        let out = run_stdin(&args, format!("{NAMESPACE_CREATE}\n").as_bytes());
        assert!(out.status.success(), "{}", text(&out.stderr));
        titles(&alerts(&out))
    };
    let users = "User Outside The Allowed Users".to_string();
    let namespaces = "Namespace Created Outside The Allowed Namespaces".to_string();
    let t = scan(&[]);
    assert!(!t.contains(&users) && !t.contains(&namespaces), "{t:?}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tripline.yaml");
    std::fs::write(
        &cfg,
        "rules:\n  placeholders:\n    allowed_users: [minikube, kubernetes-admin]\n    allowed_namespaces: [default, kube-system]\n",
    )
    .unwrap();
    let t = scan(&["--config", cfg.to_str().unwrap()]);
    assert!(t.contains(&users) && t.contains(&namespaces), "{t:?}");

    let out = run(&["rules", "list"]);
    let s = text(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.contains("User Outside The Allowed Users"));
    assert!(
        line.is_some_and(|l| l.contains("(inactive: empty placeholders allowed_users)")),
        "{s}"
    );
    assert!(
        text(&out.stderr).contains("inactive"),
        "{}",
        text(&out.stderr)
    );
    let out = run(&["rules", "list", "--config", cfg.to_str().unwrap()]);
    let s = text(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.contains("User Outside The Allowed Users"));
    assert!(line.is_some_and(|l| !l.contains("inactive")), "{s}");
}

/// A team's own Falco rules file: lists, macros, a rule with an exception, and an override.
const FALCO_RULES: &str = r#"- required_engine_version: 15
- list: exec_users
  items: [ops-bot]
- macro: kevt
  condition: (jevt.value[/stage] in (ResponseComplete, ResponseStarted))
- macro: exec
  condition: ka.target.resource=pods and ka.target.subresource in (exec, attach)
- rule: Exec Into Pod
  desc: Someone opened a shell in a pod.
  condition: kevt and exec and not ka.user.name in (exec_users)
  output: Exec into %ka.target.namespace/%ka.target.name by %ka.user.name (command=%ka.uri.param[command])
  priority: NOTICE
  source: k8s_audit
  tags: [k8s, mitre_execution]
  exceptions:
    - name: test_namespaces
      fields: [ka.target.namespace]
      values: [[sandbox]]
- rule: Any Pod Create
  desc: Every create of a pod or its subresource.
  condition: kevt and ka.verb=create and ka.target.resource=pods
  output: Pod create by %ka.user.name
  priority: INFO
  source: k8s_audit
- rule: Syscall Rule
  desc: For another source; skipped.
  condition: evt.type=open
  output: x
  priority: INFO
  source: syscall
- rule: Exec Into Pod
  override:
    priority: replace
  priority: CRITICAL
"#;

#[test]
fn falco_rules_files_load_check_list_and_scan_beside_sigma_rules() {
    let dir = tempfile::tempdir().unwrap();
    let falco = write_rule(dir.path(), "team_rules.yaml", FALCO_RULES);
    let falco = falco.to_str().unwrap();
    let out = run(&["rules", "check", falco]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("2 rules OK"),
        "{}",
        text(&out.stdout)
    );

    let out = run(&["rules", "list", "--no-default-rules", "--rules", falco]);
    let listed = text(&out.stdout);
    assert!(listed.contains("falco:Exec Into Pod"), "{listed}");
    assert!(
        listed.contains("critical"),
        "priority CRITICAL is level critical: {listed}"
    );
    assert!(!listed.contains("Syscall Rule"), "{listed}");

    // Only Falco's rules: the first matching rule alerts, as in Falco.
    let events = dir.path().join("events.log");
    let sandbox = EXEC.replace("\"namespace\":\"prod\"", "\"namespace\":\"sandbox\"");
    std::fs::write(&events, format!("{EXEC}\n{sandbox}\n")).unwrap();
    let events = events.to_str().unwrap();
    let out = run(&[
        "scan",
        "--no-default-rules",
        "--rules",
        falco,
        "--format",
        "json",
        events,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = alerts(&out);
    assert_eq!(titles(&got), ["Exec Into Pod", "Any Pod Create"], "{got:?}");
    assert_eq!(
        got[0]["message"],
        "Exec into prod/web-0 by mallory@example.com (command=sh)"
    );
    assert_eq!(got[0]["falco"]["priority"], "Critical");
    assert_eq!(got[0]["rule"]["ruleset"], "falco");
    // `--rule-matching all`: both rules on the first event.
    let out = run(&[
        "scan",
        "--no-default-rules",
        "--rules",
        falco,
        "--rule-matching",
        "all",
        "--format",
        "json",
        events,
    ]);
    assert_eq!(
        titles(&alerts(&out)),
        ["Exec Into Pod", "Any Pod Create", "Any Pod Create"]
    );
    // With the Sigma pack: its alerts and Falco's, side by side; the same from a config file.
    let out = run(&["scan", "--rules", falco, "--format", "json", events]);
    let with_pack = titles(&alerts(&out));
    assert!(
        with_pack.iter().any(|t| t == "Exec Into Pod"),
        "{with_pack:?}"
    );
    assert!(with_pack.len() > 2, "Sigma alerts too: {with_pack:?}");
    let cfg = dir.path().join("tripline.yaml");
    std::fs::write(
        &cfg,
        format!("rules:\n  builtin: false\n  paths: [{falco}]\n  falco:\n    rule_matching: all\n"),
    )
    .unwrap();
    let out = run(&[
        "scan",
        "--config",
        cfg.to_str().unwrap(),
        "--format",
        "json",
        events,
    ]);
    assert_eq!(titles(&alerts(&out)).len(), 3, "{}", text(&out.stderr));

    // A broken Falco file: the problem as file:line with the item. Like Falco, a file whose
    // items do not read is refused before any condition compiles.
    let name_of = |p: &Path| p.display().to_string();
    let p = write_rule(
        dir.path(),
        "unknown_field.yaml",
        &FALCO_RULES.replace(
            "not ka.user.name in (exec_users)",
            "not ka.user.nom in (exec_users)",
        ),
    );
    let out = run(&["rules", "check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!("{}:8: rule 'Exec Into Pod'", name_of(&p))),
        "{s}"
    );
    assert!(s.contains("ka.user.nom"), "{s}");
    let p = write_rule(
        dir.path(),
        "broken.yaml",
        &FALCO_RULES.replace(
            "priority: INFO\n  source: k8s_audit",
            "priority: LOUD\n  source: k8s_audit",
        ),
    );
    let out = run(&["rules", "check", p.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let s = text(&out.stdout);
    assert!(
        s.contains(&format!(
            "{}:19: rule 'Any Pod Create': Invalid priority",
            name_of(&p)
        )),
        "{s}"
    );
    let out = run(&["scan", "--rules", p.to_str().unwrap(), events]);
    assert_eq!(out.status.code(), Some(2));
}

/// Falco's own rules file and a local override of one of its lists, loaded in order as Falco
/// loads `rules_files`.
#[test]
fn falcos_k8s_audit_rules_with_a_local_override_run_unchanged() {
    let Some(data) = shared_data() else { return };
    let upstream = data.join("falco/k8s_audit_rules.yaml");
    let dir = tempfile::tempdir().unwrap();
    let local = write_rule(
        dir.path(),
        "falco_rules.local.yaml",
        "- list: k8s_audit_privileged_images\n  items: [nginx]\n  override:\n    items: append\n",
    );
    let trace = data.join("falco/trace_files/create_nginx_pod_privileged.json");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "scan",
            "--no-default-rules",
            "--rules",
            upstream.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        a.extend(["--format", "json", trace.to_str().unwrap()]);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let run_owned = |a: Vec<String>| run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let got = titles(&alerts(&run_owned(args(&[]))));
    assert_eq!(got, ["Create Privileged Pod"]);
    let got = titles(&alerts(&run_owned(args(&[
        "--rules",
        local.to_str().unwrap(),
    ]))));
    assert!(got.is_empty(), "the local file trusts nginx: {got:?}");
}

/// The shared data folder (`TRIPLINE_SHARED_DATA`, else `../shared/data`), or `None` with a
/// message when absent.
fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("TRIPLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared/data"));
    if dir.join("falco/k8s_audit_rules.yaml").is_file() {
        Some(dir)
    } else {
        println!("skipping: no shared data folder at {}", dir.display());
        None
    }
}

/// One Metadata-level audit event as an API server logs it, at `t` seconds after
/// 2026-03-01T00:00:00Z.
#[allow(clippy::too_many_arguments)]
fn audit_event(
    id: &str,
    stage: &str,
    t: u64,
    verb: &str,
    user: &str,
    ip: &str,
    agent: &str,
    resource: &str,
    namespace: &str,
    name: &str,
    code: u16,
) -> String {
    let time = |ms: u64| {
        let secs = t + ms / 1000;
        format!(
            "2026-03-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            1 + secs / 86_400,
            secs / 3600 % 24,
            secs / 60 % 60,
            secs % 60,
            (ms % 1000) * 1000
        )
    };
    let mut uri = format!("/api/v1/namespaces/{namespace}/{resource}");
    if !name.is_empty() {
        uri.push('/');
        uri.push_str(name);
    }
    let object = match name.split_once('/') {
        Some((name, sub)) => format!(r#""name":"{name}","subresource":"{sub}""#),
        None => format!(r#""name":"{name}""#),
    };
    let decision = if code == 403 { "forbid" } else { "allow" };
    let groups = if user == "system:anonymous" {
        r#"["system:unauthenticated"]"#
    } else {
        r#"["system:authenticated"]"#
    };
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"{stage}","requestURI":"{uri}","verb":"{verb}","user":{{"username":"{user}","groups":{groups}}},"sourceIPs":["{ip}"],"userAgent":"{agent}","objectRef":{{"resource":"{resource}","namespace":"{namespace}",{object},"apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":{code}}},"requestReceivedTimestamp":"{}","stageTimestamp":"{}","annotations":{{"authorization.k8s.io/decision":"{decision}","authorization.k8s.io/reason":""}}}}"#,
        time(0),
        time(20)
    )
}

/// A generated cluster's audit log, `n` requests from `start` seconds on, two minutes apart:
/// controllers at work, and among them what the default pack alerts on: bursts of refusals
/// for one person (a correlation), one pod token reading secret after secret (a rule and a
/// correlation), execs into pods, anonymous requests (a throttled rule), a service account's
/// token replayed with curl after more than a week of client-go (a first-seen rule), and
/// events delivered twice.
fn cluster_log(seed: u64, start: u64, n: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = start;
    for i in 0..n {
        let id = format!("{seed:02x}{i:06x}-6b1e-4c3a-9d2f-7e8a9b0c1d2e");
        t += 120;
        let ev = match i % 50 {
            // A burst of 22 refusals in 44 seconds.
            7 => {
                for k in 0..22 {
                    out.push(audit_event(
                        &format!("{id}-{k}"),
                        "ResponseComplete",
                        t + 2 * k,
                        "list",
                        "mallory@example.com",
                        "203.0.113.5",
                        "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
                        "configmaps",
                        &format!("ns{k}"),
                        "",
                        403,
                    ));
                }
                continue;
            }
            // A stolen pod token reads sixteen secrets.
            19 if i % 200 == 19 => {
                for k in 0..16 {
                    out.push(audit_event(
                        &format!("{id}-{k}"),
                        "ResponseComplete",
                        t + 3 * k,
                        "get",
                        "system:serviceaccount:shop:web",
                        "10.244.1.5",
                        "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
                        "secrets",
                        "prod",
                        &format!("secret-{k}"),
                        200,
                    ));
                }
                continue;
            }
            // An exec; every other one exported without stage, both stages of it logged.
            23 if i % 100 == 73 => {
                for _ in 0..2 {
                    out.push(
                        audit_event(
                            &id,
                            "",
                            t,
                            "create",
                            "dev@example.com",
                            "198.51.100.23",
                            "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
                            "pods",
                            "prod",
                            "web-1/exec",
                            101,
                        )
                        .replace("\"stage\":\"\",", ""),
                    );
                }
                continue;
            }
            23 => audit_event(
                &id,
                "ResponseStarted",
                t,
                "create",
                "dev@example.com",
                "198.51.100.23",
                "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
                "pods",
                "prod",
                &format!("web-{}/exec", i % 3),
                101,
            ),
            31..=33 => audit_event(
                &id,
                "ResponseComplete",
                t,
                "list",
                "system:anonymous",
                "192.0.2.44",
                "curl/8.5.0",
                "pods",
                "default",
                "",
                200,
            ),
            41 => {
                // Client-go for the first eight days, then curl.
                let agent = if t > 8 * 86_400 {
                    "curl/8.5.0"
                } else {
                    "shop-web/v1.4.0 (linux/amd64) kubernetes/v0.29.1"
                };
                audit_event(
                    &id,
                    "ResponseComplete",
                    t,
                    "get",
                    "system:serviceaccount:shop:cart",
                    "10.244.2.9",
                    agent,
                    "configmaps",
                    "shop",
                    "cart-settings",
                    200,
                )
            }
            _ => audit_event(
                &id,
                "ResponseComplete",
                t,
                ["get", "list", "watch", "update"][(i % 4) as usize],
                [
                    "system:kube-controller-manager",
                    "system:serviceaccount:kube-system:replicaset-controller",
                    "system:kube-scheduler",
                ][(i % 3) as usize],
                "10.0.0.10",
                "kube-controller-manager/v1.29.2 (linux/amd64) kubernetes/4b8e819",
                ["pods", "replicasets", "endpoints", "leases"][(i % 4) as usize],
                "kube-system",
                &format!("obj-{}", i % 17),
                200,
            ),
        };
        // Every 37th request is delivered twice (a shipper re-reading after a restart).
        if i % 37 == 5 {
            out.push(ev.clone());
        }
        out.push(ev);
    }
    out
}

/// A directory of audit logs with everything the reader meets: a large JSON-lines file with a
/// byte-order mark, blank lines, CRLF, bad lines of every kind and an unterminated last event;
/// a gzip file; a pretty-printed `EventList`; a file ending in a cut-off line.
fn scan_corpus(dir: &Path) {
    let mut big = b"\xEF\xBB\xBF".to_vec();
    for (i, line) in cluster_log(1, 0, 3000).iter().enumerate() {
        match i {
            100 => big.extend(b"\n   \n"),
            200 => big.extend(b"{\"kind\":\"Event\",\"verb\":\"get\",\"auditID\":\n"),
            300 => big.extend(
                b"{\"kind\":\"Event\",\"verb\":\"get\",\"user\":{\"username\":\"\xff\xfe\"}}\n",
            ),
            400 => big.extend(b"{\"kind\": 7}\n"),
            500 => {
                // Over the limit of the config (256 KiB).
                big.extend(b"{\"kind\":\"Event\",\"verb\":\"get\",\"x\":\"");
                big.extend(std::iter::repeat_n(b'a', 300_000));
                big.extend(b"\"}\n");
            }
            600 => {
                // Longer than a chunk, within the limit.
                let padded = line.replacen(
                    "\"authorization.k8s.io/reason\":\"\"",
                    &format!("\"authorization.k8s.io/reason\":\"{}\"", "r".repeat(2500)),
                    1,
                );
                big.extend(padded.as_bytes());
                big.extend(b"\r\n");
                continue;
            }
            700 => big.extend(b"not json at all\n"),
            _ => {}
        }
        big.extend(line.as_bytes());
        big.push(b'\n');
    }
    // The last event without its newline: still an event.
    big.extend(cluster_log(2, 300_000, 1)[0].as_bytes());
    std::fs::write(dir.join("a-audit.log"), &big).unwrap();

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for line in cluster_log(3, 400_000, 1500) {
        gz.write_all(line.as_bytes()).unwrap();
        gz.write_all(b"\n").unwrap();
    }
    std::fs::write(dir.join("b-audit.log.gz"), gz.finish().unwrap()).unwrap();

    let items = cluster_log(4, 700_000, 60).join(",\n    ");
    std::fs::write(
        dir.join("c-list.json"),
        format!("{{\n  \"kind\": \"EventList\",\n  \"apiVersion\": \"audit.k8s.io/v1\",\n  \"items\": [\n    {items}\n  ]\n}}\n"),
    )
    .unwrap();

    let mut cut = cluster_log(5, 800_000, 1200).join("\n");
    cut.push_str("\n{\"kind\":\"Event\",\"verb\":\"get\",\"auditID\":\"cut-in-the-mid");
    std::fs::write(dir.join("d-audit.log"), cut).unwrap();
}

/// `tripline scan` of `dir` with `--threads threads`, chunks of 1,500 bytes.
fn scan_threads(dir: &Path, format: &str, threads: &str) -> Output {
    scan_threads_with(dir, format, threads, &[])
}

/// [`scan_threads`] with more arguments before the inputs.
fn scan_threads_with(dir: &Path, format: &str, threads: &str, args: &[&str]) -> Output {
    let cfg = dir.join("tripline.yaml");
    bin()
        .args(["scan", "--format", format, "--threads", threads])
        .args(args)
        .arg("--config")
        .arg(&cfg)
        .arg(dir.join("logs"))
        .env("TRIPLINE_SCAN_CHUNK_BYTES", "1500")
        .output()
        .expect("the binary runs")
}

#[test]
fn a_parallel_scan_stops_when_stdout_closes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    std::fs::write(&log, cluster_log(1, 0, 20_000).join("\n")).unwrap();
    let mut child = bin()
        .args(["scan", "--format", "json", "--threads", "2"])
        .arg(&log)
        .env("TRIPLINE_SCAN_CHUNK_BYTES", "4000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut first = String::new();
    let stdout = child.stdout.take().unwrap();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut first).unwrap();
    assert!(first.starts_with('{'), "{first}");
    // The reader is dropped: the pipe is closed.
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    // No summary: the scan ended where the output did.
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn a_parallel_scan_writes_what_a_sequential_one_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("logs")).unwrap();
    scan_corpus(&dir.path().join("logs"));
    std::fs::write(
        dir.path().join("tripline.yaml"),
        "input:\n  max_line_bytes: 262144\n",
    )
    .unwrap();
    for format in ["json", "text"] {
        let one = scan_threads(dir.path(), format, "1");
        assert!(one.status.success(), "{}", text(&one.stderr));
        for threads in ["2", "4"] {
            let many = scan_threads(dir.path(), format, threads);
            assert_eq!(
                one.status.code(),
                many.status.code(),
                "--format {format} --threads {threads}"
            );
            // Compared as text first, for a readable difference.
            assert_eq!(
                text(&one.stderr),
                text(&many.stderr),
                "--format {format} --threads {threads}"
            );
            assert_eq!(
                text(&one.stdout),
                text(&many.stdout),
                "--format {format} --threads {threads}"
            );
            assert!(one.stdout == many.stdout && one.stderr == many.stderr);
        }
        if format == "text" {
            continue;
        }
        // The corpus exercises what the order matters to.
        let err = text(&one.stderr);
        let logs = dir.path().join("logs");
        let big = logs.join("a-audit.log").display().to_string();
        let cut = logs.join("d-audit.log");
        let cut_at = std::fs::read(&cut)
            .unwrap()
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        let cut = cut.display();
        for want in [
            format!("{big}:203: malformed_json"),
            format!("{big}:304: invalid_utf8"),
            format!("{big}:405: not_an_event"),
            format!("{big}:506: too_long"),
            format!("{big}:707: malformed_json"),
            format!("{cut}:{cut_at}: truncated"),
        ] {
            assert!(err.contains(&want), "missing {want:?} in:\n{err}");
        }
        assert_eq!(err.lines().count(), 7, "{err}");
        assert!(!err.contains(" (0 throttled"), "{err}");
        assert!(err.contains("repeats of one request"), "{err}");
        // A throttle window closed: a later alert counts the matches it held back.
        assert!(
            text(&one.stdout).contains("\"suppressed_count\":"),
            "no alert after a throttle window"
        );
        let alerts = alerts(&one);
        let names = titles(&alerts);
        for want in [
            "Burst Of Forbidden Requests From One Identity",
            "Many Distinct Secrets Read By One Identity",
            "Service Account Used With A New User Agent",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "no {want:?} alert in {names:?}"
            );
        }
        // The events of the gzip file and of the EventList alert too.
        for id in ["03000017", "04000017"] {
            assert!(
                text(&one.stdout).contains(id),
                "no alert for an event of {id}"
            );
        }
    }
    // Falco rules beside the pack: Falco's first match among its rules.
    let falco = write_rule(dir.path(), "team_rules.yaml", FALCO_RULES);
    let falco = ["--rules", falco.to_str().unwrap()];
    let one = scan_threads_with(dir.path(), "json", "1", &falco);
    assert!(one.status.success(), "{}", text(&one.stderr));
    let names = titles(&alerts(&one));
    assert!(names.iter().any(|n| n == "Exec Into Pod"), "{names:?}");
    for threads in ["2", "3"] {
        let many = scan_threads_with(dir.path(), "json", threads, &falco);
        assert_eq!(text(&one.stderr), text(&many.stderr), "--threads {threads}");
        assert!(one.stdout == many.stdout, "--threads {threads}");
    }
}

/// Issue 18: a detection tier partitioned by user names, in `config check`, every stateful
/// rule of the default pack whose key does not include `user.username`; a first tier keying
/// its events flow by a field redaction can change is refused.
#[test]
fn config_check_names_the_stateful_rules_a_partition_key_does_not_cover() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("detect.yaml");
    std::fs::write(
        &cfg,
        "cluster_name: central\nsources:\n  - type: kafka\n    brokers: [\"kafka:9092\"]\n    topics: [kubernetes-audit]\n    group_id: tripline-detect\n    partitioned_by: [user.username]\nsinks:\n  - type: stdout\n",
    )
    .unwrap();
    let out = run(&["config", "check", cfg.to_str().unwrap()]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}{}", text(&out.stderr));
    let warned = |title: &str| {
        s.lines().any(|l| {
            l.starts_with("warning: sources[0].partitioned_by [user.username]: ")
                && l.contains(&format!("({title})"))
        })
    };
    // Grouped by address: split across instances.
    assert!(
        warned("Burst Of Failed Authentications From One Address"),
        "{s}"
    );
    assert!(warned("API Server Authentication Failed"), "{s}");
    // Grouped by identity: exact.
    assert!(!warned("Many Distinct Secrets Read By One Identity"), "{s}");
    assert!(!warned("Service Account Used From A New Network"), "{s}");

    // The same without `partitioned_by`: nothing to say.
    std::fs::write(
        &cfg,
        "sources:\n  - type: kafka\n    brokers: [\"kafka:9092\"]\n    topics: [kubernetes-audit]\nsinks:\n  - type: stdout\n",
    )
    .unwrap();
    let out = run(&["config", "check", cfg.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(!text(&out.stdout).contains("partitioned_by"));

    // A first tier keyed by requestURI (redaction removes tokens from it) is refused.
    let first = dir.path().join("first.yaml");
    std::fs::write(
        &first,
        "cluster_name: prod-eu\nsources:\n  - type: file\n    paths: [/var/log/audit.log]\nsinks:\n  - type: kafka\n    brokers: [\"kafka:9092\"]\n    flows: [events]\n    key: {fields: [user.username, requestURI]}\n",
    )
    .unwrap();
    let out = run(&["config", "check", first.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let e = text(&out.stderr);
    assert!(
        e.contains("sinks[0].key.fields[1]: `requestURI` can be changed by redaction"),
        "{e}"
    );
}
