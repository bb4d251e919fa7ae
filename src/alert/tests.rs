use super::attack::{parse_technique, TACTICS, TECHNIQUES};
use super::*;

fn rule(tags: &[&str]) -> RuleMeta {
    RuleMeta {
        id: "7b3a6f3e-5c1d-4a8e-9a4b-2f1e0c9d8a71".into(),
        title: "Exec into a pod".into(),
        description: Some("A user ran a command inside a running container.".into()),
        status: Some("stable".into()),
        author: Some("Jane Doe, tripline".into()),
        date: Some("2024-01-10".into()),
        modified: Some("2024-03-02".into()),
        level: Level::High,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        references: vec![
            "https://kubernetes.io/docs/tasks/debug/debug-application/get-shell-running-container/"
                .into(),
            "https://attack.mitre.org/techniques/T1609/".into(),
        ],
        falsepositives: vec!["Administrators debugging workloads".into()],
        source: "builtin:exec.yml".into(),
        ruleset: "tripline".into(),
    }
}

fn exec_event() -> Value {
    json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Request",
        "auditID": "0b6e2f0c-3d7a-4f63-8d3e-5c2a1b9e7f10",
        "stage": "ResponseStarted",
        "requestURI": "/api/v1/namespaces/payments/pods/api-7d9f8b6c5-x2k4q/exec?command=sh&container=api&stdin=true&stdout=true&tty=true",
        "verb": "create",
        "user": {
            "username": "alice@example.com",
            "uid": "a1b2c3",
            "groups": ["developers", "system:authenticated"]
        },
        "sourceIPs": ["192.0.2.10"],
        "userAgent": "kubectl/v1.30.1 (linux/amd64) kubernetes/7b3a6f3",
        "objectRef": {
            "resource": "pods",
            "namespace": "payments",
            "name": "api-7d9f8b6c5-x2k4q",
            "apiVersion": "v1",
            "subresource": "exec"
        },
        "responseStatus": {"metadata": {}, "code": 101},
        "requestReceivedTimestamp": "2024-05-01T10:15:02.123456Z",
        "stageTimestamp": "2024-05-01T10:15:02.201234Z",
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": "RBAC: allowed by RoleBinding \"dev-exec/payments\""
        }
    })
}

fn assert_no_nulls(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("null at {path}"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_no_nulls(item, &format!("{path}[{i}]"));
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                assert_no_nulls(item, &format!("{path}.{key}"));
            }
        }
        _ => {}
    }
}

#[test]
fn the_document_holds_the_template_and_the_event_fields_once_each() {
    let template =
        AlertTemplate::new(&rule(&["attack.execution", "attack.t1609"])).with_host(Some("cp-1"));
    for suppressed in [0, 7] {
        let event = exec_event();
        let mut audit = Vec::new();
        serde_json::to_writer(&mut audit, &event).unwrap();
        let mut text = Vec::new();
        let part = EventPart {
            fields: &AuditFields::of_value(&event),
            message: "msg",
            cluster_name: Some("prod"),
            suppressed,
            audit: &audit,
        };
        write_document(&mut text, &template, &part);
        let text = String::from_utf8(text).unwrap();
        assert!(crate::event::unique_keys(&text), "{text}");
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            doc,
            template.render(event.clone(), "msg", Some("prod"), suppressed)
        );
        assert_eq!(
            doc,
            reference::render(&template, event.clone(), "msg", Some("prod"), suppressed)
        );
        // Every field of the template is there, next to the event's in the same objects.
        fn leaves(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        leaves(v, format!("{path}/{k}"), out);
                    }
                }
                v => out.push((path, v.clone())),
            }
        }
        let mut want = Vec::new();
        leaves(
            &Value::Object(template.fields().clone()),
            String::new(),
            &mut want,
        );
        assert!(want.len() > 10);
        for (pointer, v) in want {
            assert_eq!(doc.pointer(&pointer), Some(&v), "{pointer}");
        }
        for pointer in ["/event/action", "/user/name", "/kubernetes/audit/auditID"] {
            assert!(doc.pointer(pointer).is_some(), "{pointer}");
        }
        assert_eq!(doc["kubernetes"]["audit"], event);
        assert_eq!(
            doc.pointer("/tripline/suppressed_count"),
            (suppressed > 0).then_some(&json!(suppressed))
        );
    }
    // The events flow's template has no `tripline` object: none is written empty.
    let doc = AlertTemplate::for_events().render(json!({}), "", None, 0);
    assert_eq!(doc.get("tripline"), None);
    assert_eq!(doc.get("user"), None);
    assert_eq!(doc["orchestrator"], json!({"type": "kubernetes"}));
}

#[test]
fn exec_alert() {
    let event = exec_event();
    let rule = rule(&["attack.execution", "attack.t1609"]);
    let doc = render_alert(
        &event,
        &rule,
        "alice@example.com ran sh in payments/api",
        Some("prod-eu"),
        0,
    );

    assert_eq!(doc["@timestamp"], "2024-05-01T10:15:02.201234Z");
    assert_eq!(doc["event"]["kind"], "alert");
    assert_eq!(doc["event"]["category"], json!(["process"]));
    assert_eq!(doc["event"]["type"], json!(["creation"]));
    assert_eq!(doc["event"]["action"], "create");
    assert_eq!(doc["event"]["outcome"], "success");
    assert_eq!(doc["event"]["severity"], 73);
    assert_eq!(doc["event"]["risk_score"], 73);
    assert_eq!(doc["event"]["module"], "kubernetes");
    assert_eq!(doc["event"]["dataset"], "kubernetes.audit");
    assert_eq!(doc["event"]["provider"], "kube-apiserver");
    assert_eq!(doc["event"]["start"], "2024-05-01T10:15:02.123456Z");
    assert!(
        doc["event"].get("id").is_none(),
        "auditID must not become event.id"
    );

    assert_eq!(
        doc["rule"],
        json!({
            "id": "7b3a6f3e-5c1d-4a8e-9a4b-2f1e0c9d8a71",
            "name": "Exec into a pod",
            "description": "A user ran a command inside a running container.",
            "ruleset": "tripline",
            "reference": "https://kubernetes.io/docs/tasks/debug/debug-application/get-shell-running-container/",
            "author": ["Jane Doe", "tripline"]
        })
    );
    assert_eq!(doc["tripline"]["rule"]["level"], "high");
    assert_eq!(
        doc["tripline"]["rule"]["tags"],
        json!(["attack.execution", "attack.t1609"])
    );
    assert_eq!(
        doc["tripline"]["rule"]["falsepositives"],
        json!(["Administrators debugging workloads"])
    );
    assert!(doc["tripline"].get("suppressed_count").is_none());

    assert_eq!(doc["threat"]["tactic"]["id"], json!(["TA0002"]));
    assert_eq!(
        doc["threat"]["technique"]["name"],
        json!(["Container Administration Command"])
    );

    assert_eq!(doc["user"]["name"], "alice@example.com");
    assert_eq!(doc["user"]["id"], "a1b2c3");
    assert_eq!(
        doc["user"]["group"]["name"],
        json!(["developers", "system:authenticated"])
    );
    assert!(doc["user"].get("effective").is_none());
    assert_eq!(doc["related"]["user"], json!(["alice@example.com"]));
    assert_eq!(doc["source"]["ip"], "192.0.2.10");
    assert_eq!(doc["related"]["ip"], json!(["192.0.2.10"]));
    assert_eq!(
        doc["user_agent"]["original"],
        "kubectl/v1.30.1 (linux/amd64) kubernetes/7b3a6f3"
    );
    assert_eq!(doc["url"]["original"], event["requestURI"]);
    assert_eq!(doc["http"]["response"]["status_code"], 101);

    assert_eq!(
        doc["orchestrator"],
        json!({
            "type": "kubernetes",
            "cluster": {"name": "prod-eu"},
            "namespace": "payments",
            "resource": {"type": "pods/exec", "name": "api-7d9f8b6c5-x2k4q"},
            "api_version": "v1"
        })
    );
    assert_eq!(doc["message"], "alice@example.com ran sh in payments/api");
    assert_eq!(doc["kubernetes"]["audit"], event);
    assert_eq!(doc["ecs"]["version"], "8.11.0");
    assert_no_nulls(&doc, "$");
}

#[test]
fn anonymous_allowed_alert() {
    let event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "5f0d7c1e-9b1a-4c2e-8e6f-0a9b8c7d6e5f",
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/kube-system/secrets",
        "verb": "list",
        "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
        "sourceIPs": ["203.0.113.45"],
        "userAgent": "curl/8.5.0",
        "objectRef": {"resource": "secrets", "namespace": "kube-system", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2024-05-01T03:00:00.000100Z",
        "stageTimestamp": "2024-05-01T03:00:00.004100Z",
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"oops\" of ClusterRole \"cluster-admin\" to Group \"system:unauthenticated\""
        }
    });
    let rule = RuleMeta {
        level: Level::Critical,
        ..rule(&["attack.initial_access", "attack.t1078.001"])
    };
    let doc = render_alert(&event, &rule, "anonymous list of secrets", None, 0);
    assert_eq!(doc["event"]["category"], json!(["authentication"]));
    assert_eq!(doc["event"]["type"], json!(["access"]));
    assert_eq!(doc["event"]["outcome"], "success");
    assert_eq!(doc["event"]["severity"], 99);
    assert_eq!(doc["user"]["name"], "system:anonymous");
    assert_eq!(doc["orchestrator"]["resource"]["type"], "secrets");
    assert!(doc["orchestrator"].get("cluster").is_none());
    assert!(doc["orchestrator"]["resource"].get("name").is_none());
    assert_no_nulls(&doc, "$");
}

#[test]
fn unauthorized_401_alert() {
    // A failed authentication: the API server knows no user, and no object.
    let event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": "e3c1b2a4-7f6d-4e5c-9b8a-1d2c3b4a5f6e",
        "stage": "ResponseStarted",
        "requestURI": "/api/v1/namespaces/default/pods",
        "verb": "list",
        "user": {},
        "sourceIPs": ["198.51.100.23"],
        "userAgent": "python-requests/2.31.0",
        "responseStatus": {"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401},
        "requestReceivedTimestamp": "2024-05-01T03:01:00.000100Z",
        "stageTimestamp": "2024-05-01T03:01:00.000300Z"
    });
    let doc = render_alert(&event, &rule(&[]), "401 from 198.51.100.23", None, 0);
    assert_eq!(doc["event"]["category"], json!(["authentication"]));
    assert_eq!(doc["event"]["outcome"], "failure");
    assert_eq!(doc["http"]["response"]["status_code"], 401);
    assert!(doc.get("user").is_none());
    assert!(doc.get("threat").is_none());
    assert!(doc["related"].get("user").is_none());
    assert!(doc["orchestrator"].get("resource").is_none());
    assert!(doc["orchestrator"].get("namespace").is_none());
    assert_eq!(doc["orchestrator"], json!({"type": "kubernetes"}));
    assert!(doc["tripline"]["rule"].get("tags").is_none());
    assert_no_nulls(&doc, "$");
}

#[test]
fn impersonation_alert() {
    let event = json!({
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse",
        "auditID": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
        "stage": "ResponseComplete",
        "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        "verb": "create",
        "user": {"username": "bob", "uid": "u-42", "groups": ["ops", "system:authenticated"]},
        "impersonatedUser": {"username": "system:admin", "groups": ["system:masters"]},
        "sourceIPs": ["10.20.30.40"],
        "userAgent": "kubectl/v1.29.0",
        "objectRef": {"resource": "clusterrolebindings", "name": "backdoor", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "backdoor"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]},
        "requestReceivedTimestamp": "2024-05-01T12:00:00.000001Z",
        "stageTimestamp": "2024-05-01T12:00:00.020001Z"
    });
    let rule = rule(&[
        "attack.privilege-escalation",
        "attack.persistence",
        "attack.t1098.006",
        "attack.t1134",
    ]);
    let doc = render_alert(
        &event,
        &rule,
        "bob as system:admin bound cluster-admin",
        Some("prod"),
        3,
    );
    assert_eq!(doc["event"]["category"], json!(["iam"]));
    assert_eq!(doc["event"]["type"], json!(["creation"]));
    assert_eq!(doc["user"]["name"], "bob");
    assert_eq!(doc["user"]["effective"]["name"], "system:admin");
    assert_eq!(
        doc["user"]["effective"]["group"]["name"],
        json!(["system:masters"])
    );
    assert!(doc["user"]["effective"].get("id").is_none());
    assert_eq!(doc["related"]["user"], json!(["bob", "system:admin"]));
    assert_eq!(
        doc["orchestrator"]["api_version"],
        "rbac.authorization.k8s.io/v1"
    );
    assert_eq!(
        doc["orchestrator"]["resource"]["type"],
        "clusterrolebindings"
    );
    assert_eq!(doc["orchestrator"]["resource"]["name"], "backdoor");
    assert!(doc["orchestrator"].get("namespace").is_none());
    assert_eq!(doc["tripline"]["suppressed_count"], 3);
    assert_eq!(
        doc["threat"]["tactic"]["name"],
        json!(["Privilege Escalation", "Persistence"])
    );
    assert_eq!(doc["threat"]["technique"]["id"], json!(["T1098", "T1134"]));
    assert_no_nulls(&doc, "$");
}

#[test]
fn forwarded_ips_choose_the_last_entry() {
    let mut event = exec_event();
    // The client sent "X-Forwarded-For: 127.0.0.1, 10.0.0.1"; the proxy at 172.16.0.9 connected.
    event["sourceIPs"] = json!(["127.0.0.1", "10.0.0.1", "127.0.0.1", "172.16.0.9"]);
    let doc = render_alert(&event, &rule(&[]), "m", None, 0);
    assert_eq!(doc["source"]["ip"], "172.16.0.9");
    assert_eq!(
        doc["related"]["ip"],
        json!(["127.0.0.1", "10.0.0.1", "172.16.0.9"])
    );

    event["sourceIPs"] = json!(["2001:db8::1", "not-an-ip"]);
    let doc = render_alert(&event, &rule(&[]), "m", None, 0);
    assert!(
        doc.get("source").is_none(),
        "an invalid last entry is not replaced by an earlier one"
    );
    assert_eq!(doc["related"]["ip"], json!(["2001:db8::1"]));
}

#[test]
fn threat_mapping_tactics_and_subtechniques() {
    let tags: Vec<String> = [
        "attack.credential_access",
        "attack.credential-access",
        "attack.t1552.007",
        "attack.T1552",
        "attack.Privilege-Escalation",
        "attack.ta0007",
        "attack.t1611",
        "attack.g0139",
        "attack.s0683",
        "attack.not-a-tactic",
        "car.2019-04-004",
        "cve.2018-1002105",
    ]
    .iter()
    .map(|t| (*t).to_owned())
    .collect();
    let threat = threat_from_tags(&tags).expect("attack tags give a threat");
    assert_eq!(
        threat,
        json!({
            "framework": "MITRE ATT&CK",
            "tactic": {
                "id": ["TA0006", "TA0004", "TA0007"],
                "name": ["Credential Access", "Privilege Escalation", "Discovery"],
                "reference": [
                    "https://attack.mitre.org/tactics/TA0006/",
                    "https://attack.mitre.org/tactics/TA0004/",
                    "https://attack.mitre.org/tactics/TA0007/"
                ]
            },
            "technique": {
                "id": ["T1552", "T1611"],
                "name": ["Unsecured Credentials", "Escape to Host"],
                "reference": [
                    "https://attack.mitre.org/techniques/T1552/",
                    "https://attack.mitre.org/techniques/T1611/"
                ],
                "subtechnique": {
                    "id": ["T1552.007"],
                    "name": ["Container API"],
                    "reference": ["https://attack.mitre.org/techniques/T1552/007/"]
                }
            }
        })
    );
}

#[test]
fn threat_mapping_edge_cases() {
    let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(threat_from_tags(&[]), None);
    assert_eq!(
        threat_from_tags(&tags(&["cve.2021-25741", "detection.threat-hunting"])),
        None
    );
    assert_eq!(
        threat_from_tags(&tags(&["attack.g0032", "attack.t155", "attack.t1552.07"])),
        None
    );

    // Unknown technique: named by its id so the lists stay aligned.
    let threat = threat_from_tags(&tags(&["attack.t1999.123"])).expect("technique");
    assert!(threat.get("tactic").is_none());
    assert_eq!(threat["technique"]["id"], json!(["T1999"]));
    assert_eq!(threat["technique"]["name"], json!(["T1999"]));
    assert_eq!(
        threat["technique"]["subtechnique"]["name"],
        json!(["T1999.123"])
    );
    assert_eq!(
        threat["technique"]["subtechnique"]["reference"],
        json!(["https://attack.mitre.org/techniques/T1999/123/"])
    );

    // Tactic only: no technique object.
    let threat = threat_from_tags(&tags(&["attack.command_and_control"])).expect("tactic");
    assert_eq!(threat["tactic"]["id"], json!(["TA0011"]));
    assert!(threat.get("technique").is_none());
}

#[test]
fn tables_are_consistent() {
    assert_eq!(TACTICS.len(), 14);
    for (i, t) in TACTICS.iter().enumerate() {
        assert!(TACTICS[i + 1..]
            .iter()
            .all(|u| u.id != t.id && u.slug != t.slug));
    }
    for (i, (id, name)) in TECHNIQUES.iter().enumerate() {
        assert!(parse_technique(&id.to_ascii_lowercase()).is_some(), "{id}");
        assert!(!name.is_empty());
        assert!(
            TECHNIQUES[i + 1..].iter().all(|(other, _)| other != id),
            "duplicate {id}"
        );
    }
}

#[test]
fn categories_types_and_outcomes() {
    let cases: [(Value, &str, &str, &str); 10] = [
        (
            json!({"verb": "patch", "objectRef": {"resource": "roles", "apiGroup": "rbac.authorization.k8s.io"}, "responseStatus": {"code": 403}}),
            "iam",
            "change",
            "failure",
        ),
        (
            json!({"verb": "get", "objectRef": {"resource": "serviceaccounts"}, "responseStatus": {"code": 200}}),
            "iam",
            "access",
            "success",
        ),
        (
            json!({"verb": "create", "objectRef": {"resource": "certificatesigningrequests", "apiGroup": "certificates.k8s.io"}}),
            "iam",
            "creation",
            "unknown",
        ),
        (
            json!({"verb": "create", "objectRef": {"resource": "tokenreviews"}, "responseStatus": {"code": 201}}),
            "iam",
            "creation",
            "success",
        ),
        (
            json!({"verb": "get", "objectRef": {"resource": "pods", "subresource": "attach"}, "responseStatus": {"code": 101}}),
            "process",
            "access",
            "success",
        ),
        (
            json!({"verb": "create", "objectRef": {"resource": "pods", "subresource": "log"}}),
            "configuration",
            "creation",
            "unknown",
        ),
        (
            json!({"verb": "deletecollection", "objectRef": {"resource": "pods"}, "responseStatus": {"code": 500}}),
            "configuration",
            "deletion",
            "failure",
        ),
        (
            json!({"verb": "watch", "user": {"groups": ["system:unauthenticated"]}}),
            "authentication",
            "access",
            "unknown",
        ),
        (
            json!({"verb": "proxy", "responseStatus": {"code": "200"}}),
            "configuration",
            "info",
            "unknown",
        ),
        (
            json!({"responseStatus": {"code": 0}}),
            "configuration",
            "info",
            "unknown",
        ),
    ];
    for (event, category, event_type, outcome) in cases {
        let doc = render_alert(&event, &rule(&[]), "", None, 0);
        assert_eq!(doc["event"]["category"], json!([category]), "{event}");
        assert_eq!(doc["event"]["type"], json!([event_type]), "{event}");
        assert_eq!(doc["event"]["outcome"], outcome, "{event}");
        assert!(doc.get("message").is_none());
        assert_no_nulls(&doc, "$");
    }
}

#[test]
fn timestamps_fall_back_and_skip_invalid() {
    let cases = [
        (
            json!({"stageTimestamp": "2024-05-01T10:00:01Z", "requestReceivedTimestamp": "2024-05-01T10:00:00Z"}),
            Some("2024-05-01T10:00:01Z"),
        ),
        (
            json!({"requestReceivedTimestamp": "2024-05-01T10:00:00Z"}),
            Some("2024-05-01T10:00:00Z"),
        ),
        (
            json!({"stageTimestamp": "yesterday", "requestReceivedTimestamp": "2024-05-01T10:00:00+02:00"}),
            Some("2024-05-01T10:00:00+02:00"),
        ),
        (
            json!({"timestamp": "2019-01-01T00:00:00Z"}),
            Some("2019-01-01T00:00:00Z"),
        ),
        (json!({"stageTimestamp": 1714557600}), None),
        (json!({}), None),
    ];
    for (event, expected) in cases {
        let doc = render_alert(&event, &rule(&[]), "m", None, 0);
        assert_eq!(
            doc.get("@timestamp").and_then(Value::as_str),
            expected,
            "{event}"
        );
    }
}

#[test]
fn documents_are_what_field_by_field_building_gave() {
    let template = AlertTemplate::new(&rule(&["attack.execution", "attack.t1609"]));
    let events = vec![
        exec_event(),
        json!({}),
        json!(null),
        json!([1]),
        json!({"user": {"username": "system:anonymous"}, "responseStatus": {"code": 401.5}}),
        json!({"user": {"username": "x", "groups": ["system:unauthenticated", 4]},
               "impersonatedUser": {"username": "y", "uid": "u", "groups": ["g", "", null]},
               "sourceIPs": ["10.0.0.1", "not-an-ip", "10.0.0.1", "2001:db8::1"],
               "objectRef": {"resource": "clusterrolebindings", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
               "responseStatus": {"code": 99},
               "requestReceivedTimestamp": "2024-05-01T10:00:00+02:00",
               "stageTimestamp": "yesterday", "timestamp": "2024-05-01T10:00:01Z"}),
        json!({"verb": "deletecollection", "objectRef": {"resource": "pods", "subresource": "attach"},
               "responseStatus": {"code": 403}, "timestamp": "2024-13-01T10:00:00Z"}),
        json!({"user": {"username": "a\"b\u{1}"}, "userAgent": "ü\u{7f}", "requestURI": "/x\ny"}),
    ];
    for event in events {
        for (message, cluster, suppressed) in [("", None, 0), ("m \"q\"", Some("c"), 3)] {
            assert_eq!(
                template.render(event.clone(), message, cluster, suppressed),
                reference::render(&template, event.clone(), message, cluster, suppressed),
                "{event}"
            );
        }
    }
}

#[test]
fn no_nulls_from_nulls_and_odd_types_in_the_event() {
    let event = json!({
        "verb": null,
        "user": {"username": null, "uid": 7, "groups": [null, "", "ops", 3]},
        "impersonatedUser": null,
        "sourceIPs": null,
        "userAgent": "",
        "requestURI": ["/api"],
        "objectRef": {"resource": null, "namespace": null, "name": "", "apiGroup": "apps", "apiVersion": null},
        "responseStatus": null,
        "stageTimestamp": null
    });
    let rule = RuleMeta {
        description: None,
        author: Some(" , ".into()),
        references: Vec::new(),
        falsepositives: Vec::new(),
        tags: Vec::new(),
        ..rule(&[])
    };
    let mut doc = render_alert(&event, &rule, "m", Some(""), 0);
    let audit = doc
        .as_object_mut()
        .and_then(|d| d.get_mut("kubernetes"))
        .and_then(|k| k.as_object_mut())
        .and_then(|k| k.remove("audit"));
    // The embedded event is kept as given, nulls included.
    assert_eq!(audit, Some(event));
    assert_no_nulls(&doc, "$");
    assert_eq!(doc["user"], json!({"group": {"name": ["ops"]}}));
    assert_eq!(
        doc["rule"],
        json!({"id": "7b3a6f3e-5c1d-4a8e-9a4b-2f1e0c9d8a71", "name": "Exec into a pod", "ruleset": "tripline"})
    );
    assert_eq!(doc["orchestrator"], json!({"type": "kubernetes"}));
    assert!(doc.get("source").is_none());
    assert!(doc.get("url").is_none());
    assert!(doc.get("user_agent").is_none());
    assert!(doc["event"].get("action").is_none());
}

#[test]
fn non_object_event_does_not_panic() {
    for event in [json!(null), json!("x"), json!([1, 2])] {
        let doc = render_alert(&event, &rule(&["attack.t1609"]), "m", None, 1);
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["tripline"]["suppressed_count"], 1);
        assert_no_nulls(&doc, "$");
        // A `null` event is omitted rather than embedded as `null`.
        assert_eq!(
            doc.get("kubernetes").and_then(|k| k.get("audit")),
            (!event.is_null()).then_some(&event)
        );
    }
}

#[test]
fn a_reduced_event_document_omits_the_bodies_and_keeps_the_rest_redacted() {
    let event = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "a-1", "stage": "ResponseComplete", "verb": "list",
        "requestURI": "/api/v1/namespaces/prod/secrets?access_token=abc123secret",
        "user": {"username": "mallory@example.com"},
        "sourceIPs": ["203.0.113.7"],
        "objectRef": {"resource": "secrets", "namespace": "prod", "apiVersion": "v1"},
        "responseStatus": {"code": 200},
        "stageTimestamp": "2026-03-01T10:00:00.050000Z",
        "annotations": {"note": "Bearer eyJhbGciOiJSUzI1NiJ9.payload.signature"},
        "requestObject": null,
        "responseObject": {"kind": "SecretList", "items": [{"data": {"k": "c2VjcmV0"}}]},
    });
    let text = event.to_string();
    let body_len = serde_json::to_string(&event["responseObject"])
        .unwrap()
        .len();
    let template = AlertTemplate::for_events();
    let mut docs = Vec::new();
    crate::event::decode_value_into(&text, &mut |d| {
        let ev = d.expect("decodes");
        docs.push((
            write_reduced_event_document(&template, ev, Some("c")),
            write_event_document(&template, ev, Some("c")),
        ));
    });
    let [(reduced, whole)] = &docs[..] else {
        panic!("one event")
    };
    let reduced: Value = serde_json::from_slice(reduced).unwrap();
    let mut whole: Value = serde_json::from_slice(whole).unwrap();
    let audit = &reduced["kubernetes"]["audit"];
    assert_eq!(
        audit["responseObject"],
        json!({"tripline": OMITTED_BODY, "bytes": body_len})
    );
    // A null body stays null: there was nothing to omit.
    assert_eq!(audit["requestObject"], Value::Null);
    let reduced_text = reduced.to_string();
    for secret in ["c2VjcmV0", "abc123secret", "payload.signature"] {
        assert!(!reduced_text.contains(secret), "{secret} in {reduced_text}");
    }
    // Everything but the body is what the whole document holds.
    whole["kubernetes"]["audit"]["responseObject"] = audit["responseObject"].clone();
    assert_eq!(reduced, whole);
}

/// An events-flow document is the redacted event and the ECS fields read from it, whether the
/// event is embedded straight from its text (most are) or written redacted; `resource/sub`
/// and `group/version` are written as one string, escaped as a whole.
#[test]
fn an_event_document_is_the_redacted_event_with_its_ecs_fields() {
    use crate::event::redact::{verbatim_event, write_redacted_event};
    let template = AlertTemplate::for_events();
    let mut texts: Vec<String> = vec![
        exec_event().to_string(),
        json!({"verb": "get", "objectRef": {"resource": "po\"ds", "subresource": "lo\\g", "apiGroup": "a\u{1}", "apiVersion": "v\"1"}}).to_string(),
        json!({"verb": "get", "objectRef": {"resource": "pods", "apiVersion": "v1"}, "responseStatus": {"code": 404}}).to_string(),
        json!({"verb": "list", "requestURI": "/api/v1/secrets?access_token=abcdefgh", "objectRef": {"resource": "secrets"}}).to_string(),
        json!({"annotations": {"a": "Bearer abcdefgh"}, "user": {"username": "u"}}).to_string(),
        r#"{"verb": "get", "user": {"username": "spaced"}}"#.to_string(),
        json!({"verb": "create", "objectRef": {"resource": "secrets"}, "requestObject": {"kind": "Secret", "data": {"k": "c2VjcmV0LXZhbHVl"}}}).to_string(),
    ];
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/real");
    for f in ["openshift/audit_in.log", "audit2rbac/demo.log"] {
        match std::fs::read_to_string(data.join(f)) {
            Ok(text) => texts.extend(text.lines().map(String::from)),
            Err(_) => eprintln!("{} absent: the built-in cases only", data.display()),
        }
    }
    let mut embedded = 0;
    for text in &texts {
        crate::event::decode_value_into(text, &mut |d| {
            let Ok(ev) = d else { return };
            let doc = write_event_document(&template, ev, Some("c"));
            let mut audit = Vec::new();
            let redacted = write_redacted_event(ev, &mut audit);
            let fields = AuditFields::of_redacted(ev, &redacted);
            let want = EventPart {
                fields: &fields,
                message: "",
                cluster_name: Some("c"),
                suppressed: 0,
                audit: &audit,
            }
            .document(&template);
            assert_eq!(
                String::from_utf8_lossy(&doc),
                String::from_utf8_lossy(&want)
            );
            embedded += usize::from(verbatim_event(ev).is_some());
            let doc: Value = serde_json::from_slice(&doc).unwrap();
            let event: Value = serde_json::from_str(text).unwrap();
            let o = &event["objectRef"];
            if let (Some(r), Some(s)) = (o["resource"].as_str(), o["subresource"].as_str()) {
                assert_eq!(
                    doc["orchestrator"]["resource"]["type"],
                    json!(format!("{r}/{s}"))
                );
            }
            if let (Some(g), Some(v)) = (o["apiGroup"].as_str(), o["apiVersion"].as_str()) {
                if !g.is_empty() && !v.is_empty() {
                    assert_eq!(
                        doc["orchestrator"]["api_version"],
                        json!(format!("{g}/{v}"))
                    );
                }
            }
            if let Some(code) = event["responseStatus"]["code"].as_u64() {
                assert_eq!(doc["http"]["response"]["status_code"], json!(code));
            }
        });
    }
    // The crafted Metadata events without anything to redact are embedded from their text.
    assert!(embedded >= 3, "{embedded}");
}
