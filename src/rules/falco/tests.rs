use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::*;
use crate::event::decode_value_into;

// ----- parsing -----

fn p(text: &str) -> Expr {
    parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> ParseError {
    parse(text).expect_err(text)
}

fn check(e: &Expr) -> &Check {
    match e {
        Expr::Check(c) => c,
        other => panic!("not a check: {other:?}"),
    }
}

/// The tree of a condition of macro names, as text with explicit grouping.
fn shape(text: &str) -> String {
    fn go(e: &Expr, top: bool) -> String {
        let join = |c: &[Expr], sep: &str| {
            let inner: Vec<String> = c.iter().map(|e| go(e, false)).collect();
            let s = inner.join(sep);
            if top {
                s
            } else {
                format!("({s})")
            }
        };
        match e {
            Expr::And(c) => join(c, " & "),
            Expr::Or(c) => join(c, " | "),
            Expr::Not(c) => format!("!{}", go(c, false)),
            Expr::Macro { name, .. } => name.clone(),
            Expr::Check(c) => c.field.def.name.to_string(),
        }
    }
    go(&p(text), true)
}

#[test]
fn precedence_not_and_or() {
    let e = p("a or not b and c");
    let Expr::Or(children) = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(&children[0], Expr::Macro { name, offset: 0 } if name == "a"));
    let Expr::And(and) = &children[1] else {
        panic!("{e:?}")
    };
    assert!(matches!(&and[0], Expr::Not(inner) if matches!(**inner, Expr::Macro { .. })));
    assert!(matches!(&and[1], Expr::Macro { name, offset: 15 } if name == "c"));
    // Parentheses, `not(` and double negation.
    assert!(matches!(p("not not a"), Expr::Macro { name, offset: 8 } if name == "a"));
    // As in libsinsp, `not` alone is an identifier.
    assert!(matches!(p("not"), Expr::Macro { name, .. } if name == "not"));
    assert!(matches!(p("not(a)"), Expr::Not(inner) if matches!(*inner, Expr::Macro { .. })));
    assert_eq!(shape("(a or b) and(c)"), "(a | b) & c");
    assert_eq!(shape("a and(b or c)"), "a & (b | c)");
    assert_eq!(shape("a or b and c or not (d)"), "a | (b & c) | !d");
    assert_eq!(shape("not a and b"), "!a & b");
    assert_eq!(shape("(a)or(b)"), "a | b");
}

#[test]
fn operators_and_values() {
    for (text, op) in [
        ("ka.verb=get", Op::Eq),
        ("ka.verb == get", Op::Eq),
        ("ka.verb!=get", Op::Ne),
        ("ka.verb contains get", Op::Contains),
        ("ka.verb icontains GET", Op::IContains),
        ("ka.verb startswith g", Op::StartsWith),
        ("ka.verb endswith t", Op::EndsWith),
        ("ka.verb glob g*", Op::Glob),
        ("ka.verb iglob G*", Op::IGlob),
        ("ka.response.code >= 400", Op::Ge),
        ("ka.response.code<0x1F", Op::Lt),
        ("ka.verb exists", Op::Exists),
        ("ka.verb in (get, list)", Op::In),
        ("ka.verb intersects (get)", Op::Intersects),
        ("ka.uri pmatch (/api)", Op::PMatch),
    ] {
        assert_eq!(check(&p(text)).op, op, "{text}");
    }
    let c = p(r#"ka.user.name = "system:anonymous""#);
    assert_eq!(check(&c).operand, Operand::Value("system:anonymous".into()));
    let c = p("ka.user.name=system:serviceaccount:kube-system:foo");
    assert_eq!(
        check(&c).operand,
        Operand::Value("system:serviceaccount:kube-system:foo".into())
    );
    let c = p(r#"ka.uri in (/bin/sh, "a b", 'it\'s', "tab\t")"#);
    let Operand::List(items) = &check(&c).operand else {
        panic!()
    };
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(texts, ["/bin/sh", "a b", "it's", "tab\t"]);
    assert_eq!(
        items.iter().map(|i| i.bare).collect::<Vec<_>>(),
        [true, false, false, false]
    );
    assert_eq!(check(&p("ka.verb in ()")).operand, Operand::List(vec![]));
    assert_eq!(
        check(&p("ka.verb in my_verbs")).operand,
        Operand::ListName("my_verbs".into())
    );
    assert_eq!(
        check(&p("ka.response.code > -1.5e+3")).operand,
        Operand::Value("-1.5e+3".into())
    );
}

#[test]
fn field_arguments() {
    let c = p("ka.req.pod.containers.image[0] in (nginx)");
    assert_eq!(check(&c).field.arg, FieldArg::Index(0));
    let c = p("ka.uri.param[command] exists");
    assert_eq!(check(&c).field.arg, FieldArg::Key("command".into()));
    let c = p("jevt.value[/annotations/authorization.k8s.io~1decision] exists");
    assert_eq!(
        check(&c).field.arg,
        FieldArg::Key("/annotations/authorization.k8s.io~1decision".into())
    );
    let c = p(r#"jevt.value["/a b"] exists"#);
    assert_eq!(check(&c).field.arg, FieldArg::Key("/a b".into()));
    assert_eq!(
        check(&p("ka.target.subresource exists")).field.def.name,
        "ka.target.subresource"
    );
}

#[test]
fn parse_errors_have_offsets_and_messages() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty"),
        ("(ka.verb=get", 12, "expected a ')' token"),
        (
            "ka.verb=get)",
            11,
            "unexpected token after 'get', expecting 'or', 'and'",
        ),
        ("ka.verb=", 8, "expected a string value"),
        ("ka.verb", 7, "expected a valid check operator"),
        ("ka.verb in (a,)", 14, "expected a string value"),
        ("ka.verb in (a b)", 14, "expected a ')' token"),
        ("ka.response.code > abc", 19, "expected a number value"),
        ("a andb", 5, "expected blank or '(' after 'and'"),
        ("ka.nope = 1", 0, "unknown field 'ka.nope'"),
        ("a and ka.uri.param exists", 6, "requires an argument"),
        ("ka.verb[0] = get", 0, "does not take an argument"),
        ("ka.req.pod.containers.image[x] exists", 0, "numeric index"),
        ("ka.verb bcontains 41", 0, "byte buffers"),
        (
            "ka.verb = \"a\\qb\"",
            10,
            "unsupported string escape sequence",
        ),
        ("ka.verb = 'a\\\"b'", 10, "invalid \\\" escape"),
        ("ka.verb = \"open", 10, "expected a string value"),
        ("jevt.value[] exists", 11, "expected a valid field argument"),
        ("jevt.value[x exists", 12, "expected a ']' token"),
        (
            "not ",
            4,
            "expected a '(' token, a field check, or an identifier",
        ),
    ];
    for &(text, offset, msg) in cases {
        let e = err(text);
        assert_eq!(e.offset, offset, "{text}: {e}");
        assert!(e.message.contains(msg), "{text}: {e}");
    }
    assert_eq!(err("(a").to_string(), "at byte 2: expected a ')' token");
    let deep = format!("{}a{}", "(".repeat(600), ")".repeat(600));
    assert!(err(&deep).message.contains("max depth"));
}

// ----- expansion -----

fn defs(lists: &[(&str, &[&str])], macros: &[(&str, &str)]) -> Definitions {
    let mut d = Definitions::new();
    for (name, items) in lists {
        d.add_list(name, items.iter().map(|s| s.to_string()).collect());
    }
    for (name, cond) in macros {
        d.add_macro(name, p(cond));
    }
    d
}

#[test]
fn expands_macros_and_lists() {
    let d = defs(
        &[("verbs", &["get", "more"]), ("more", &["list", "watch"])],
        &[
            ("kget", "ka.verb in (verbs, \"verbs\", create)"),
            ("outer", "kget and not kget"),
        ],
    );
    let e = d.expand(&p("outer")).unwrap();
    let Expr::And(c) = &e else { panic!("{e:?}") };
    let Operand::List(items) = &check(&c[0]).operand else {
        panic!()
    };
    let texts: Vec<&str> = items.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(texts, ["get", "list", "watch", "verbs", "create"]);
    let e = d.expand(&p("ka.verb in more")).unwrap();
    assert!(matches!(&check(&e).operand, Operand::List(i) if i.len() == 2));
}

#[test]
fn expansion_errors_name_the_item() {
    let d = defs(
        &[("l1", &["l2"]), ("l2", &["x", "l1"])],
        &[
            ("m1", "m2"),
            ("m2", "ka.verb=get and m1"),
            ("uses_list", "ka.verb in (l1)"),
        ],
    );
    let e = d.expand(&p("ka.verb=x or nope")).unwrap_err();
    assert_eq!(e.to_string(), "at byte 13: undefined macro 'nope'");
    let e = d.expand(&p("m1")).unwrap_err();
    assert_eq!(
        e,
        ExpandError::MacroCycle(vec!["m1".into(), "m2".into(), "m1".into()])
    );
    let e = d.expand(&p("uses_list")).unwrap_err();
    assert_eq!(
        e,
        ExpandError::ListCycle(vec!["l1".into(), "l2".into(), "l1".into()])
    );
    let e = d.expand(&p("ka.verb in missing")).unwrap_err();
    assert!(e.to_string().contains("undefined list 'missing'"), "{e}");
    // A bare item that names no list is a value.
    let e = d.expand(&p("ka.verb in (missing)")).unwrap();
    assert!(matches!(&check(&e).operand, Operand::List(i) if i[0].text == "missing"));
}

// ----- evaluation -----

const POD: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"id-1","stage":"ResponseComplete",
 "requestURI":"/api/v1/namespaces/default/pods/p/exec?command=%2Fbin%2Fsh&command=-c&container=c+1&stdin=true",
 "verb":"create","user":{"username":"alice","groups":["dev","system:authenticated"]},
 "sourceIPs":["10.0.0.1"],"userAgent":"kubectl/v1.30",
 "objectRef":{"resource":"pods","namespace":"default","name":"p","subresource":"exec"},
 "responseStatus":{"code":201},
 "annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""},
 "stageTimestamp":"2024-01-02T03:04:05.123456Z",
 "requestObject":{"kind":"Pod","spec":{
   "hostNetwork":true,"securityContext":{"runAsUser":1000},"runAsGroup":7,
   "containers":[
     {"name":"a","image":"docker.io/library/nginx:1.25","ports":[{"containerPort":80},{"containerPort":81,"hostPort":8081}]},
     {"name":"b","image":"registry:5000/team/app@sha256:abc","runAsGroup":3,"securityContext":{"privileged":true,"capabilities":{"add":["NET_ADMIN","SYS_TIME"]}}},
     {"name":"c","image":"busybox","securityContext":{"privileged":false}}],
   "initContainers":[{"name":"i","image":"alpine:3","securityContext":{"privileged":true}}],
   "volumes":[{"name":"v1","hostPath":{"path":"/var/run/docker.sock"}},{"name":"v2","emptyDir":{}},{"name":"v3","hostPath":{"path":"/etc/kubernetes"}}]}}}"#;

/// Evaluates `cond` (macro-free) on the event `json`, decoded as tripline decodes input.
fn on(json: &str, cond: &str) -> bool {
    let expr = p(cond);
    let mut out = None;
    decode_value_into(json, &mut |d| {
        let ev = d.expect("the test event decodes");
        out = Some(eval(&expr, &Doc::from_event(ev)));
    });
    out.expect("one event")
}

fn values(json: &str, field: &str) -> Option<Vec<String>> {
    let Expr::Check(c) = p(&format!("{field} exists")) else {
        panic!()
    };
    c.field.extract(json)
}

fn strs(v: &[&str]) -> Option<Vec<String>> {
    Some(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn extracts_k8saudit_fields() {
    let cases: &[(&str, &[&str])] = &[
        ("ka.auditid", &["id-1"]),
        ("ka.user.groups", &["dev", "system:authenticated"]),
        ("ka.uri.param[command]", &["/bin/sh"]),
        ("ka.uri.param[container]", &["c 1"]),
        ("ka.target.resource", &["pods"]),
        ("ka.target.subresource", &["exec"]),
        ("ka.response.code", &["201"]),
        ("ka.auth.decision", &["allow"]),
        ("ka.auth.reason", &[""]),
        ("ka.req.pod.host_network", &["true"]),
        (
            "ka.req.pod.containers.image",
            &[
                "docker.io/library/nginx:1.25",
                "registry:5000/team/app@sha256:abc",
                "busybox",
            ],
        ),
        (
            "ka.req.pod.containers.image[1]",
            &["registry:5000/team/app@sha256:abc"],
        ),
        (
            "ka.req.pod.containers.image.repository",
            &["docker.io/library/nginx", "registry", "busybox"],
        ),
        ("ka.req.container.image", &["docker.io/library/nginx:1.25"]),
        (
            "ka.req.container.image.repository",
            &["docker.io/library/nginx"],
        ),
        ("ka.req.pod.containers.privileged", &["true", "false"]),
        ("ka.req.pod.containers.privileged[1]", &["true"]),
        ("ka.req.container.privileged", &["true"]),
        ("ka.req.pod.initContainers.privileged", &["true"]),
        ("ka.req.pod.initContainers.image.repository", &["alpine"]),
        ("ka.req.pod.containers.host_port", &["80", "8081"]),
        (
            "ka.req.pod.containers.add_capabilities",
            &["[\"NET_ADMIN\",\"SYS_TIME\"]"],
        ),
        ("ka.req.pod.run_as_user", &["1000"]),
        ("ka.req.pod.containers.eff_run_as_group", &["7", "3", "7"]),
        ("ka.req.pod.containers.eff_run_as_user", &["0", "0", "0"]),
        (
            "ka.req.pod.volumes.hostpath",
            &["/var/run/docker.sock", "/etc/kubernetes"],
        ),
        ("ka.req.volume.hostpath[/var/run*]", &["true"]),
        ("ka.req.volume.hostpath[/var/run/docker.sock]", &["true"]),
        // Only the first volume is read.
        ("ka.req.volume.hostpath[/etc*]", &["false"]),
        (
            "ka.req.pod.volumes.volume_type",
            &["hostPath", "emptyDir", "hostPath"],
        ),
        ("ka.req.binding.subject.has_name[x]", &["true"]),
        ("jevt.value[/objectRef/name]", &["p"]),
        (
            "jevt.value[/requestObject/spec/containers/1/securityContext]",
            &[r#"{"privileged":true,"capabilities":{"add":["NET_ADMIN","SYS_TIME"]}}"#],
        ),
        (
            "jevt.value[/annotations/authorization.k8s.io~1decision]",
            &["allow"],
        ),
        ("jevt.rawtime", &["1704164645123456000"]),
    ];
    for (field, want) in cases {
        assert_eq!(values(POD, field), strs(want), "{field}");
    }
    for missing in [
        "ka.impuser.name",
        "ka.req.pod.containers.image[7]",
        "ka.req.pod.ephemeralContainers.image",
        "ka.req.role.rules.verbs",
        "ka.uri.param[nope]",
        "ka.sourceips",
        "jevt.value[/nope]",
        "ka.req.pod.containers.proc_mount",
    ] {
        assert_eq!(values(POD, missing), None, "{missing}");
    }
    // Without `auditID`, no `ka.*` field is available; the json plugin's are.
    let other = r#"{"verb":"get","a/b":{"~":1}}"#;
    assert_eq!(values(other, "ka.verb"), None);
    assert_eq!(values(other, "jevt.value[/a~1b/~0]"), strs(&["1"]));
    assert_eq!(
        values(other, "jevt.obj"),
        strs(&["{\n  \"verb\": \"get\",\n  \"a/b\": {\n    \"~\": 1\n  }\n}"])
    );
}

#[test]
fn operator_semantics() {
    let yes = [
        "ka.verb=create",
        "ka.verb!=get",
        "ka.user.name contains lic",
        "ka.user.name icontains ALI",
        "ka.user.name startswith al",
        "ka.user.name endswith ice",
        "ka.user.name glob 'a*e'",
        "ka.uri glob /api/*/pods/*",
        "ka.user.name glob [a-c]l?ce",
        "ka.user.name glob [!b]lice",
        "ka.user.name iglob A*E",
        "ka.uri pmatch (/api/*/namespaces)",
        "ka.response.code >= 200",
        "ka.response.code < 3",
        "ka.response.code > 1000",
        "ka.verb in (get, create)",
        "ka.verb intersects (create)",
        "ka.user.groups intersects (dev, ops)",
        "ka.user.groups in (dev, system:authenticated, ops)",
        "ka.req.pod.containers.privileged intersects (true)",
        "ka.req.pod.volumes.hostpath intersects (/etc/kubernetes)",
        "ka.target.name pmatch (/x, p)",
        "jevt.value[/requestURI] pmatch (/api/v1/namespaces)",
        "ka.user.name exists",
        "not ka.impuser.name exists",
        "not ka.impuser.name = bob",
        "not ka.impuser.name != bob",
        "ka.req.pod.containers.image[2] in (busybox)",
        "ka.uri.param[stdin] = true",
        "jevt.value[/requestObject/spec/hostNetwork] = true",
    ];
    for cond in yes {
        assert!(on(POD, cond), "{cond} should hold");
    }
    let no = [
        "ka.verb=Create",
        "ka.user.name icontains bob",
        "ka.user.name glob a",
        "ka.user.name glob A*",
        "ka.uri pmatch (/api/*/x)",
        "ka.response.code >= 400",
        "ka.user.groups in (dev)",
        "ka.user.groups intersects (ops)",
        "ka.req.pod.containers.privileged in (true)",
        "ka.uri pmatch (/ap)",
        "ka.impuser.name exists",
        "ka.impuser.name != bob",
        "ka.impuser.name in (bob)",
        "ka.req.pod.containers.image in (busybox)",
        "ka.verb in ()",
        // Other operators than exists/in/intersects on a list field.
        "ka.req.pod.containers.image[2] = busybox",
        "ka.user.groups contains dev",
        "ka.user.groups != x",
    ];
    for cond in no {
        assert!(!on(POD, cond), "{cond} should not hold");
    }
}

#[test]
fn glob_and_path_helpers() {
    assert!(glob("*", ""));
    assert!(glob("a\\*b", "a*b"));
    assert!(!glob("a\\*b", "axb"));
    assert!(glob("*.sock", "/var/run/docker.sock"));
    assert!(glob("[]]x", "]x"));
    assert!(glob("a[", "a["));
    assert!(!glob("?", ""));
    assert!(path_under("/var/run/docker.sock", "/var/run"));
    assert!(path_under("/var/run", "/var/run/"));
    assert!(!path_under("/var/running", "/var/run"));
    assert!(!path_under("/var", "/var/run"));
    assert!(path_under("/etc/x", "/"));
    assert!(path_under("/home/u1/.ssh/id", "/home/*/.ssh"));
    assert!(!path_under("/home/u1/.sshx", "/home/*/.ssh"));
}

// ----- Falco's rules files and trace files -----

/// The shared data folder: `TRIPLINE_SHARED_DATA`, else `../shared/data` beside the crate,
/// else `/work/shared/data`; `None` (with a message) when absent.
fn falco_data() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        std::env::var_os("TRIPLINE_SHARED_DATA").map(PathBuf::from),
        Some(manifest.join("../shared/data")),
        Some(PathBuf::from("/work/shared/data")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .map(|d| d.join("falco"))
        .find(|d| d.join("k8s_audit_rules.yaml").is_file());
    if found.is_none() {
        println!("skipping: no shared data folder with falco/k8s_audit_rules.yaml");
    }
    found
}

fn read(dir: &std::path::Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn load_rel(
    dir: &std::path::Path,
    rels: &[&str],
    options: LoadOptions,
) -> Result<FalcoRules, LoadError> {
    let paths: Vec<PathBuf> = rels.iter().map(|r| dir.join(r)).collect();
    load_files(&paths, options)
}

#[test]
fn every_condition_of_the_rules_files_parses_and_expands() {
    let Some(dir) = falco_data() else { return };
    // Each test file with the rules file Falco's tests load before it.
    let sets: &[&[&str]] = &[
        &["k8s_audit_rules.yaml"],
        &["test_rules/engine_v4_k8s_audit_rules.yaml"],
        &["test_rules/single_rule_with_json_pointer.yaml"],
        &[
            "k8s_audit_rules.yaml",
            "test_rules/allow_namespace_foo.yaml",
        ],
        &[
            "k8s_audit_rules.yaml",
            "test_rules/allow_nginx_container.yaml",
        ],
        &[
            "k8s_audit_rules.yaml",
            "test_rules/allow_only_apache_container.yaml",
        ],
        &[
            "k8s_audit_rules.yaml",
            "test_rules/allow_user_some-user.yaml",
        ],
        &["k8s_audit_rules.yaml", "test_rules/disallow_kactivity.yaml"],
        &[
            "test_rules/engine_v4_k8s_audit_rules.yaml",
            "test_rules/engine_v4/allow_nginx_container.yaml",
        ],
        &[
            "test_rules/engine_v4_k8s_audit_rules.yaml",
            "test_rules/engine_v4/allow_only_apache_container.yaml",
        ],
    ];
    let mut rules = 0;
    for set in sets {
        let loaded =
            load_rel(&dir, set, LoadOptions::default()).unwrap_or_else(|e| panic!("{set:?}:\n{e}"));
        rules += loaded.rules.len();
    }
    assert!(rules > 100, "{rules} rules");
    // The current rules file: every rule is a k8s_audit rule, with Falco's priorities.
    let loaded = load_rel(&dir, &["k8s_audit_rules.yaml"], LoadOptions::default()).unwrap();
    let privileged = loaded
        .rules
        .iter()
        .find(|r| r.name == "Create Privileged Pod")
        .unwrap();
    assert_eq!(privileged.priority, Priority::Warning);
    assert_eq!(privileged.level, crate::rules::Level::Medium);
    assert!(privileged.line > 1 && privileged.file.ends_with("k8s_audit_rules.yaml"));
    assert!(loaded.required_engine_version.is_some());
}

/// The audit events of a trace file (JSON values one after another, an array or an EventList
/// each giving several), with the number of rule matches per rule name.
fn run_trace(dir: &std::path::Path, trace: &str, rules: &[FalcoRule]) -> BTreeMap<String, usize> {
    let text = read(dir, &format!("trace_files/{trace}"));
    let mut counts = BTreeMap::new();
    let stream =
        serde_json::Deserializer::from_str(&text).into_iter::<&serde_json::value::RawValue>();
    for value in stream {
        let value = value.unwrap_or_else(|e| panic!("{trace}: {e}"));
        let texts: Vec<String> =
            match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(value.get()) {
                Ok(items) => items.iter().map(|i| i.get().to_string()).collect(),
                Err(_) => vec![value.get().to_string()],
            };
        for t in texts {
            decode_value_into(&t, &mut |d| {
                let Ok(ev) = d else { return };
                let doc = Doc::from_event(ev);
                for rule in rules.iter().filter(|r| r.enabled) {
                    if eval(&rule.condition, &doc) {
                        *counts.entry(rule.name.clone()).or_insert(0) += 1;
                    }
                }
            });
        }
    }
    counts
}

#[test]
fn rules_fire_on_the_trace_files() {
    let Some(dir) = falco_data() else { return };
    let rules = load_rel(
        &dir,
        &[
            "k8s_audit_rules.yaml",
            "test_rules/allow_only_apache_container.yaml",
        ],
        LoadOptions::default(),
    )
    .unwrap()
    .rules;
    let counts = run_trace(&dir, "create_nginx_pod_unprivileged.json", &rules);
    assert_eq!(counts.get("Create Disallowed Pod"), Some(&1), "{counts:?}");
    let counts = run_trace(&dir, "create_nginx_pod_privileged.json", &rules);
    assert_eq!(counts.get("Create Privileged Pod"), Some(&1), "{counts:?}");
    let counts = run_trace(
        &dir,
        "create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json",
        &rules,
    );
    assert_eq!(counts.get("Create Privileged Pod"), Some(&1), "{counts:?}");
    let counts = run_trace(&dir, "create_nginx_pod_unprivileged.json", &rules);
    assert_eq!(counts.get("Create Privileged Pod"), None, "{counts:?}");
}

/// The rules file that trusts nginx through the legacy list names.
const TRUST_FILE: &str = "trust_nginx_container.yaml";

/// The outcome of one case of Falco's k8s_audit regression suite.
enum Outcome {
    Pass,
    Fail(String),
    /// The rules files were refused (Falco stops before reading any event).
    Refused(LoadError),
}

/// Runs every test case of Falco's k8s_audit regression suite (`expectations.json`): loads
/// exactly the rules files the case names, reads its trace file, and compares the alerts
/// per rule with the expected ones. `falco_rules.yaml`, Falco's syscall rules, is not in the
/// shared data and holds no k8s_audit rule; it is not loaded.
fn run_suite(dir: &std::path::Path, options: LoadOptions) -> Vec<(String, Vec<String>, Outcome)> {
    run_suite_with(dir, options, false)
}

/// The alerts per rule of the trace file, through tripline's pipeline: the rules files loaded
/// as `rules.paths` are, into a [`crate::rules::RuleSet`] with `rule_matching: first`, and
/// the detector that `scan` and the daemon run.
fn run_trace_ruleset(
    dir: &std::path::Path,
    trace: &str,
    files: &[String],
    options: LoadOptions,
) -> BTreeMap<String, usize> {
    let texts: Vec<(String, String)> = files.iter().map(|f| (f.clone(), read(dir, f))).collect();
    let compiled = crate::rules::load_falco(&texts, options);
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    let set =
        crate::rules::RuleSet::new(compiled.rules).with_rule_matching(super::RuleMatching::First);
    let mut detector = crate::detect::Detector::new(&set, None);
    let text = read(dir, &format!("trace_files/{trace}"));
    let mut counts = BTreeMap::new();
    let stream =
        serde_json::Deserializer::from_str(&text).into_iter::<&serde_json::value::RawValue>();
    for value in stream {
        let value = value.unwrap_or_else(|e| panic!("{trace}: {e}"));
        decode_value_into(value.get(), &mut |d| {
            let Ok(ev) = d else { return };
            detector.detect(ev, &mut |a| {
                *counts.entry(set.meta(a.rule).title.clone()).or_insert(0) += 1;
            });
        });
    }
    counts
}

fn run_suite_with(
    dir: &std::path::Path,
    options: LoadOptions,
    via_ruleset: bool,
) -> Vec<(String, Vec<String>, Outcome)> {
    let spec: serde_json::Value = serde_json::from_str(&read(dir, "expectations.json")).unwrap();
    let mut out = Vec::new();
    for case in spec["test_cases"].as_array().unwrap() {
        let name = case["test_case"].as_str().unwrap().to_string();
        let mut files = Vec::new();
        for f in case["rules_files"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            if let Some(rel) = f.strip_prefix("test/rules/k8s_audit/") {
                files.push(format!("test_rules/{rel}"));
            } else if f.starts_with("k8s_audit_rules.yaml") {
                files.push("k8s_audit_rules.yaml".to_string());
            } else {
                assert!(
                    f.starts_with("falco_rules.yaml"),
                    "{name}: unexpected rules file {f}"
                );
            }
        }
        let rels: Vec<&str> = files.iter().map(String::as_str).collect();
        let rules = match load_rel(dir, &rels, options) {
            Ok(r) => r.rules,
            Err(e) => {
                out.push((name, files, Outcome::Refused(e)));
                continue;
            }
        };
        let trace = case["trace_file"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let counts = if via_ruleset {
            run_trace_ruleset(dir, trace, &files, options)
        } else {
            run_trace(dir, trace, &rules)
        };
        let want: HashMap<String, usize> =
            serde_json::from_value(case["detect_counts_current_rule_names"].clone())
                .unwrap_or_default();
        // `stderr_contains` cases (fal_01_003: data that is no audit event) expect no alert
        // either; the message is Falco's own.
        let ok = if case["detect"] == true {
            want.iter().all(|(r, n)| counts.get(r) == Some(n))
        } else {
            counts.is_empty()
        };
        let outcome = if ok {
            Outcome::Pass
        } else {
            Outcome::Fail(format!(
                "want {want:?} (detect {}), got {counts:?}",
                case["detect"]
            ))
        };
        out.push((name, files, outcome));
    }
    for (name, _, outcome) in &out {
        let status = match outcome {
            Outcome::Pass => "pass".to_string(),
            Outcome::Fail(why) => format!("FAIL {why}"),
            Outcome::Refused(e) => format!("refused: {}", e.errors[0]),
        };
        println!("{name:<60} {status}");
    }
    out
}

/// By default, Falco's behaviour with today's rules: the cases that load
/// `trust_nginx_container.yaml` are refused, as it appends to `falco_privileged_images` and
/// the like, which `k8s_audit_rules.yaml` no longer defines; every other case gives the
/// expected alerts.
#[test]
fn falco_regression_expectations() {
    let Some(dir) = falco_data() else { return };
    let outcomes = run_suite(&dir, LoadOptions::default());
    assert_eq!(outcomes.len(), 66);
    let mut passed = 0;
    let mut refused = 0;
    for (name, files, outcome) in &outcomes {
        let trusted = files.iter().any(|f| f.ends_with(TRUST_FILE));
        match outcome {
            Outcome::Pass if !trusted => passed += 1,
            Outcome::Refused(e) if trusted => {
                refused += 1;
                let first = &e.errors[0];
                assert!(first.file.ends_with(TRUST_FILE), "{name}: {first}");
                assert_eq!(first.line, 1, "{name}: {first}");
                assert_eq!(first.item, "list 'falco_sensitive_mount_images'");
                assert!(first.message.contains("no list by that name"), "{first}");
                // Every append of the file is reported, not only the first.
                assert_eq!(e.errors.len(), 3, "{name}: {e}");
            }
            Outcome::Pass => panic!("{name}: expected a refusal"),
            Outcome::Fail(why) => panic!("{name}: {why}"),
            Outcome::Refused(e) => panic!("{name}: refused:\n{e}"),
        }
    }
    println!("default: {passed} of 66 pass, {refused} refused ({TRUST_FILE})");
    assert_eq!((passed, refused), (58, 8));
}

/// With the legacy list names option, every case gives the expected alerts; the same through
/// tripline's rule set and detector (compiled conditions, index, `rule_matching: first`,
/// the plugin's `stageTimestamp` filter).
#[test]
fn falco_regression_expectations_with_legacy_list_names() {
    let Some(dir) = falco_data() else { return };
    let options = LoadOptions {
        legacy_list_names: true,
    };
    for via_ruleset in [false, true] {
        regression_with_legacy_names(&dir, options, via_ruleset);
    }
}

fn regression_with_legacy_names(dir: &std::path::Path, options: LoadOptions, via_ruleset: bool) {
    let outcomes = run_suite_with(dir, options, via_ruleset);
    let failures: Vec<String> = outcomes
        .iter()
        .filter_map(|(name, _, o)| match o {
            Outcome::Pass => None,
            Outcome::Fail(why) => Some(format!("{name}: {why}")),
            Outcome::Refused(e) => Some(format!("{name}: refused: {e}")),
        })
        .collect();
    println!(
        "legacy_list_names: {} of {} pass",
        outcomes.len() - failures.len(),
        outcomes.len()
    );
    assert_eq!(outcomes.len(), 66);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ----- the rules loader -----

fn load1(text: &str) -> Result<FalcoRules, LoadError> {
    load_strs(&[("rules.yaml", text)], LoadOptions::default())
}

fn loaded(text: &str) -> FalcoRules {
    load1(text).unwrap_or_else(|e| panic!("{e}"))
}

fn rule<'a>(rules: &'a FalcoRules, name: &str) -> &'a FalcoRule {
    rules
        .rules
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no rule {name}"))
}

/// An audit event with the given verb, user and namespace.
fn event(verb: &str, user: &str, ns: &str) -> String {
    format!(
        r#"{{"kind":"Event","auditID":"1","stageTimestamp":"2024-01-01T00:00:00Z","stage":"ResponseComplete","verb":"{verb}","user":{{"username":"{user}"}},"objectRef":{{"resource":"pods","namespace":"{ns}"}}}}"#
    )
}

fn fires(rule: &FalcoRule, verb: &str, user: &str, ns: &str) -> bool {
    let raw = event(verb, user, ns);
    eval(&rule.condition, &Doc::new(&raw))
}

/// The items of every list literal of a condition, in order.
fn list_operands(e: &Expr) -> Vec<Vec<String>> {
    fn go(e: &Expr, out: &mut Vec<Vec<String>>) {
        match e {
            Expr::And(c) | Expr::Or(c) => c.iter().for_each(|e| go(e, out)),
            Expr::Not(c) => go(c, out),
            Expr::Macro { .. } => {}
            Expr::Check(c) => {
                if let Operand::List(items) = &c.operand {
                    out.push(items.iter().map(|i| i.text.clone()).collect());
                }
            }
        }
    }
    let mut out = Vec::new();
    go(e, &mut out);
    out
}

/// A k8s_audit rule item.
fn rule_item(name: &str, cond: &str) -> String {
    format!(
        "- rule: {name}\n  desc: d\n  condition: {cond}\n  output: out %ka.user.name\n  priority: WARNING\n  source: k8s_audit\n"
    )
}

#[test]
fn lists_define_append_override_and_replace() {
    let text = r#"
- list: a
  items: [x]
- list: a
  items: [y]
  append: true
- list: b
  items: [p]
- list: b
  items: [q]
- list: c
  items: [c1]
- list: c
  items: [c2]
  override:
    items: append
- list: d
  items: [d1]
- list: d
  items: [d2]
  override:
    items: replace
- list: outer
  items: [a, "lit"]
"#
    .to_string()
        + &rule_item(
            "r",
            "ka.verb in (a) and ka.verb in (b) and ka.verb in (c) and ka.verb in (d) and ka.verb in (outer)",
        );
    let rules = loaded(&text);
    assert_eq!(
        list_operands(&rule(&rules, "r").condition),
        [
            vec!["x", "y"],
            vec!["q"],
            vec!["c1", "c2"],
            vec!["d2"],
            vec!["x", "y", "lit"]
        ]
    );
    // `append: true` is deprecated in Falco: a warning, as Falco gives.
    assert!(rules
        .warnings
        .iter()
        .any(|w| w.message.contains("deprecated")));
}

#[test]
fn macros_append_override_and_visibility() {
    let text = r#"
- macro: m
  condition: ka.verb=create
- macro: m
  condition: or ka.verb=delete
  append: true
- macro: n
  condition: ka.user.name=alice
- macro: n
  condition: and ka.target.namespace=ns
  override:
    condition: append
"#
    .to_string()
        + &rule_item("uses m", "(m)")
        + &rule_item("uses n", "n")
        + &rule_item("uses later", "later")
        + "- macro: later\n  condition: ka.verb=patch\n";
    let rules = loaded(&text);
    let m = rule(&rules, "uses m");
    assert!(fires(m, "create", "u", "x") && fires(m, "delete", "u", "x"));
    assert!(!fires(m, "get", "u", "x"));
    let n = rule(&rules, "uses n");
    assert!(fires(n, "get", "alice", "ns") && !fires(n, "get", "alice", "other"));
    // Rules see every macro, even one defined after them.
    assert!(fires(rule(&rules, "uses later"), "patch", "u", "x"));

    // A macro only sees the macros defined before it.
    let err =
        load1("- macro: a\n  condition: b\n- macro: b\n  condition: ka.verb=get\n").unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(
        (err.errors[0].line, err.errors[0].item.as_str()),
        (1, "macro 'a'")
    );
    assert!(
        err.errors[0].message.contains("Undefined macro 'b'"),
        "{err}"
    );
    // ... unless it is redefined (or appended to) after them.
    let ok = "- macro: a\n  condition: ka.verb=x\n- macro: b\n  condition: ka.verb=get\n- macro: a\n  condition: b\n";
    loaded(ok);
}

#[test]
fn rules_append_override_replace_and_position() {
    let text = rule_item("A", "ka.verb=create")
        + &rule_item("B", "ka.verb=get")
        + r#"
- rule: A
  condition: and ka.user.name=alice
  append: true
- rule: B
  output: more
  desc: also
  tags: [extra]
  override:
    output: append
    desc: append
    tags: append
- rule: B
  priority: ERROR
  enabled: false
  override:
    priority: replace
    enabled: replace
"# + &rule_item("C", "ka.verb=x")
        + &rule_item("A", "ka.verb=delete");
    let rules = loaded(&text);
    let names: Vec<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
    // A redefinition keeps the place of the first definition.
    assert_eq!(names, ["A", "B", "C"]);
    let a = rule(&rules, "A");
    assert_eq!(a.condition_text, "ka.verb=delete");
    assert_eq!(a.line, 37, "the line of the item that defined it last");
    let b = rule(&rules, "B");
    assert_eq!(b.output, "out %ka.user.name more");
    assert_eq!(b.desc, "d also");
    assert_eq!(b.tags, ["extra"]);
    assert_eq!(
        (b.priority, b.level),
        (Priority::Error, crate::rules::Level::High)
    );
    assert!(!b.enabled);
    assert_eq!(rules.enabled().count(), 2);

    // Appending joins the conditions with a space, as Falco does.
    let rules = loaded(
        &(rule_item("A", "ka.verb=create")
            + "- rule: A\n  condition: and ka.user.name=alice\n  append: true\n"),
    );
    let a = rule(&rules, "A");
    assert_eq!(a.condition_text, "ka.verb=create and ka.user.name=alice");
    assert!(fires(a, "create", "alice", "x") && !fires(a, "create", "bob", "x"));
}

#[test]
fn exceptions_compile_as_falco_builds_them() {
    let text = r#"
- rule: R
  desc: d
  condition: ka.verb=create
  output: o
  priority: NOTICE
  source: k8s_audit
  exceptions:
    - name: namespaces
      fields: ka.target.namespace
      values: [kube-system, "a b"]
    - name: user_ns
      fields: [ka.user.name, ka.target.namespace]
      comps: [=, in]
      values:
        - [alice, [ns1, ns2]]
        - [bob, ns3]
    - name: pairs
      fields: [ka.user.name, ka.verb]
      values: [[carol, create]]
    - name: empty
      fields: ka.user.name
"#;
    let rules = loaded(text);
    let r = rule(&rules, "R");
    assert_eq!(
        r.condition_text,
        "(ka.verb=create) and not (ka.target.namespace in (kube-system, \"a b\")) \
         and not ((ka.user.name = alice and ka.target.namespace in (ns1, ns2)) or \
         (ka.user.name = bob and ka.target.namespace in (ns3))) \
         and not ((ka.user.name = carol and ka.verb = create))"
    );
    assert_eq!(r.exceptions.len(), 4);
    assert_eq!(r.exceptions[0].comps, ExceptionEntry::Item("in".into()));
    assert_eq!(
        r.exceptions[2].comps,
        ExceptionEntry::List(vec![ExceptionEntry::Item("=".into()); 2])
    );
    assert!(fires(r, "create", "u", "default"));
    assert!(!fires(r, "create", "u", "kube-system"));
    assert!(!fires(r, "create", "alice", "ns2"));
    assert!(fires(r, "create", "alice", "ns3"));
    assert!(!fires(r, "create", "bob", "ns3"));
    assert!(!fires(r, "create", "carol", "x"));

    // Appending values to an exception by name, and a new exception.
    let more = r#"
- rule: R
  exceptions:
    - name: namespaces
      values: [default]
    - name: users
      fields: ka.user.name
      values: [dave]
  append: true
"#;
    let rules = load_strs(
        &[("a.yaml", text), ("b.yaml", more)],
        LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = rule(&rules, "R");
    assert!(!fires(r, "create", "u", "default"));
    assert!(!fires(r, "create", "dave", "x"));
    assert!(fires(r, "create", "erin", "x"));

    // Malformed exceptions.
    let bad = |ex: &str| {
        let text = format!(
            "- rule: R\n  desc: d\n  condition: ka.verb=create\n  output: o\n  priority: INFO\n  source: k8s_audit\n  exceptions:\n{ex}"
        );
        load1(&text).unwrap_err().errors[0].message.clone()
    };
    let m = bad("    - name: e\n      fields: ka.user.name\n      comps: =\n      values: [a]\n");
    assert!(
        m.contains("comps must be one of (in, pmatch, intersects)"),
        "{m}"
    );
    let m = bad("    - name: e\n      fields: [ka.user.name, ka.verb]\n      comps: [=]\n      values: []\n");
    assert!(
        m.contains("Fields and comps lists must have equal length"),
        "{m}"
    );
    let m = bad("    - name: e\n      fields: [ka.nope]\n      values: []\n");
    assert!(
        m.contains("'ka.nope' is not a supported filter field"),
        "{m}"
    );
    let m =
        bad("    - name: e\n      fields: [ka.user.name]\n      comps: [like]\n      values: []\n");
    assert!(
        m.contains("'like' is not a supported comparison operator"),
        "{m}"
    );
    let m = bad("    - name: e\n      fields: [ka.user.name, ka.verb]\n      values: [[a]]\n");
    assert!(
        m.contains("Fields and values lists must have equal length"),
        "{m}"
    );
    let m = bad("    - name: e\n      values: [a]\n");
    assert!(m.contains("no mapping for key 'fields'"), "{m}");
    let m =
        bad("    - name: e\n      fields: ka.user.name\n    - name: e\n      fields: ka.verb\n");
    assert!(m.contains("must be unique"), "{m}");
}

#[test]
fn enabled_and_sources() {
    let text = r#"
- rule: Off
  desc: d
  condition: ka.verb=create
  output: o
  priority: DEBUG
  source: k8s_audit
  enabled: false
- rule: Syscall
  desc: d
  condition: evt.type=execve and proc.name=sh
  output: o
  priority: WARNING
- rule: Syscall
  condition: and proc.name=bash
  append: true
- list: syscall_list
  items: [sh]
"#
    .to_string()
        + &rule_item("On", "ka.verb=get")
        + "- rule: On\n  enabled: false\n";
    let rules = loaded(&text);
    let names: Vec<(&str, bool)> = rules
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.enabled))
        .collect();
    assert_eq!(names, [("Off", false), ("On", false)]);
    assert_eq!(
        rule(&rules, "Off").level,
        crate::rules::Level::Informational
    );
    let skipped: Vec<&LoadMessage> = rules
        .warnings
        .iter()
        .filter(|w| w.message.contains("Unknown source syscall"))
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (skipped[0].line, skipped[0].item.as_str()),
        (9, "rule 'Syscall'")
    );

    // Errors: enabling an undefined rule, redefining a rule with another source.
    let e = load1("- rule: Nope\n  enabled: true\n").unwrap_err();
    assert!(e.errors[0].message.contains("no rule by that name"), "{e}");
    let e = load1(
        &(rule_item("A", "ka.verb=get")
            + "- rule: A\n  desc: d\n  condition: x\n  output: o\n  priority: INFO\n"),
    )
    .unwrap_err();
    assert!(e.errors[0].message.contains("different source"), "{e}");
}

#[test]
fn errors_name_file_line_and_item_and_are_all_reported() {
    let text = "\
- list: ok
  items: [a]
- rule: bad key
  desc: d
  condition: ka.verb=create
  output: o
  priority: warning
  source: k8s_audit
  colour: red
- rule: no output
  desc: d
  condition: ka.verb=create
  priority: warning
  source: k8s_audit
- macro: m
  condition: ka.verb=x
  append: true
- rule: bad priority
  desc: d
  condition: ka.verb=create
  output: o
  priority: urgent
  source: k8s_audit
- list: l2
  items: [a]
  override:
    items: prepend
- rule: both
  condition: x
  append: true
  override:
    condition: append
- rule: override without key
  output: o
  override:
    condition: append
- rule: key without override
  condition: ka.verb=get
  output: o
  override:
    condition: replace
- rule: not there
  condition: ka.verb=get
  override:
    condition: replace
- bogus: 1
";
    let e = load_strs(&[("f.yaml", text)], LoadOptions::default()).unwrap_err();
    let got: Vec<(usize, &str)> = e.errors.iter().map(|m| (m.line, m.item.as_str())).collect();
    assert_eq!(
        got,
        [
            (10, "rule 'no output'"),
            (15, "macro 'm'"),
            (18, "rule 'bad priority'"),
            (24, "list 'l2'"),
            (28, "rule 'both'"),
            (33, "rule 'override without key'"),
            (37, "rule 'key without override'"),
            (42, "rule 'not there'"),
            (46, ""),
        ],
        "{e}"
    );
    let msgs: Vec<&str> = e.errors.iter().map(|m| m.message.as_str()).collect();
    assert!(msgs[0].contains("no mapping for key 'output'"));
    assert!(msgs[1].contains("no macro by that name"));
    assert!(msgs[2].contains("Invalid priority 'urgent'"));
    assert!(msgs[3].contains("Invalid override operation for key 'items': 'prepend'"));
    assert!(msgs[4].contains("cannot be used together"));
    assert!(msgs[5].contains("'condition' is not defined"));
    // As in Falco, the replace is applied (and fails here) before the keys are checked.
    assert!(msgs[6].contains("no rule by that name"));
    assert!(msgs[7].contains("no rule by that name"));
    assert!(msgs[8].contains("Unknown top level item"));
    assert!(e
        .to_string()
        .starts_with("f.yaml:10: rule 'no output': Item has no mapping for key 'output'"));
    // An unknown key is a warning, as Falco's schema validation reports it: the rule loads.
    let only_bad_key = text.split("- rule: no output").next().unwrap_or_default();
    let warned = load_strs(&[("f.yaml", only_bad_key)], LoadOptions::default()).unwrap();
    assert_eq!(warned.rules.len(), 1);
    assert!(
        warned.warnings.iter().any(|w| w.line == 3
            && w.to_string()
                .contains("rule 'bad key': unknown key 'colour', ignored")),
        "{:?}",
        warned.warnings
    );

    // Compile errors: every one, each at its item.
    let text = rule_item("undefined macro", "kevt and ka.verb=get")
        + &rule_item("unknown field", "ka.nope=1")
        + &rule_item("unbalanced", "(ka.verb=get")
        + &rule_item("fine", "ka.verb=get")
        + "- macro: broken\n  condition: ka.verb in (a\n";
    let e = load_strs(&[("g.yaml", &text)], LoadOptions::default()).unwrap_err();
    let got: Vec<(usize, &str)> = e.errors.iter().map(|m| (m.line, m.item.as_str())).collect();
    assert_eq!(
        got,
        [
            (25, "macro 'broken'"),
            (1, "rule 'undefined macro'"),
            (7, "rule 'unknown field'"),
            (13, "rule 'unbalanced'"),
        ],
        "{e}"
    );
    assert!(
        e.errors[1].message.contains("undefined macro 'kevt'"),
        "{e}"
    );
    assert!(
        e.errors[2].message.contains("unknown field 'ka.nope'"),
        "{e}"
    );

    // `skip-if-unknown-filter` turns an unknown field into a warning.
    let text = rule_item("unknown field", "ka.nope=1") + "  skip-if-unknown-filter: true\n";
    let rules = loaded(&text);
    assert!(rules.rules.is_empty());
    assert!(rules
        .warnings
        .iter()
        .any(|w| w.message.contains("skip-if-unknown-filter")));

    // YAML syntax, at its line.
    let e = load1("- list: a\n  items: [a\n- list: b\n").unwrap_err();
    assert!(e.errors[0].message.starts_with("YAML syntax"), "{e}");
    assert!(e.errors[0].line >= 2, "{e}");
    // An unknown output field.
    let e = load1(&rule_item("R", "ka.verb=get").replace("%ka.user.name", "%ka.nope")).unwrap_err();
    assert!(e.errors[0].message.contains("%ka.nope"), "{e}");
}

#[test]
fn later_files_override_earlier_ones() {
    let base = "- macro: allowed\n  condition: ka.user.name=alice\n".to_string()
        + &rule_item("R", "ka.verb=create and not allowed");
    let local = "- macro: allowed\n  condition: ka.user.name in (bob)\n";
    let rules = load_strs(
        &[("base.yaml", &base), ("local.yaml", local)],
        LoadOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let r = rule(&rules, "R");
    assert!(fires(r, "create", "alice", "x") && !fires(r, "create", "bob", "x"));
    assert_eq!(r.file, "base.yaml");

    // Every file is compiled with those before it: a macro of a later file is undefined then.
    let uses = rule_item("R", "later_macro");
    let defines = "- macro: later_macro\n  condition: ka.verb=get\n";
    let e = load_strs(
        &[("uses.yaml", &uses), ("defines.yaml", defines)],
        LoadOptions::default(),
    )
    .unwrap_err();
    assert_eq!(e.errors[0].file, "uses.yaml", "{e}");

    // Files on disk, and a file that cannot be read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.yaml");
    std::fs::write(&path, &base).unwrap();
    assert_eq!(
        load_files(&[&path], LoadOptions::default())
            .unwrap()
            .rules
            .len(),
        1
    );
    let e = load_files(&[dir.path().join("missing.yaml")], LoadOptions::default()).unwrap_err();
    assert!(e.errors[0].message.contains("cannot read"), "{e}");
}

#[test]
fn legacy_list_names_and_requirements() {
    let base = "\
- required_engine_version: 15
- required_engine_version: 0.11.0
- required_plugin_versions:
  - name: k8saudit
    version: 0.7.0
    alternatives:
      - name: k8saudit-eks
        version: 0.4.0
  - name: cloudtrail
    version: 0.1.0
- list: k8s_audit_privileged_images
  items: [falco]
"
    .to_string()
        + &rule_item(
            "P",
            "ka.verb=create and not ka.req.pod.containers.image.repository in (k8s_audit_privileged_images)",
        );
    let trust = "- list: falco_privileged_images\n  items: [nginx]\n  append: true\n";
    let files = [("base.yaml", base.as_str()), ("trust.yaml", trust)];
    let e = load_strs(&files, LoadOptions::default()).unwrap_err();
    assert_eq!(e.errors.len(), 1);
    assert_eq!(
        (
            e.errors[0].file.as_str(),
            e.errors[0].line,
            e.errors[0].item.as_str()
        ),
        ("trust.yaml", 1, "list 'falco_privileged_images'")
    );
    let rules = load_strs(
        &files,
        LoadOptions {
            legacy_list_names: true,
        },
    )
    .unwrap();
    assert_eq!(
        list_operands(&rule(&rules, "P").condition),
        [vec!["falco", "nginx"]]
    );
    assert_eq!(rules.required_engine_version.as_deref(), Some("0.15.0"));
    assert_eq!(rules.required_plugin_versions.len(), 2);
    let plugin_warnings: Vec<&LoadMessage> = rules
        .warnings
        .iter()
        .filter(|w| w.message.contains("requires plugin"))
        .collect();
    assert_eq!(plugin_warnings.len(), 1, "{plugin_warnings:?}");
    assert!(plugin_warnings[0].message.contains("cloudtrail"));

    for (p, name, level) in [
        ("emergency", "Emergency", crate::rules::Level::Critical),
        ("ALERT", "Alert", crate::rules::Level::Critical),
        ("Critical", "Critical", crate::rules::Level::Critical),
        ("error", "Error", crate::rules::Level::High),
        ("warning", "Warning", crate::rules::Level::Medium),
        ("notice", "Notice", crate::rules::Level::Low),
        ("info", "Informational", crate::rules::Level::Informational),
        (
            "INFORMATIONAL",
            "Informational",
            crate::rules::Level::Informational,
        ),
        ("debug", "Debug", crate::rules::Level::Informational),
    ] {
        let prio = Priority::parse(p).unwrap();
        assert_eq!((prio.as_str(), prio.level()), (name, level));
    }
    assert_eq!(Priority::parse("warn"), None);
}

/// Every comparison (and every whole condition) of the rules files, compiled for decoded
/// events, gives the interpreter's result on every event of the test data, and on variants
/// of them that stress the typed fields: members written `null`, no `auditID`, numbers.
#[test]
fn compiled_equals_the_interpreter() {
    use super::FalcoCond;
    let Some(dir) = falco_data() else { return };
    let mut conds: Vec<Expr> = Vec::new();
    fn checks(e: &Expr, out: &mut Vec<Expr>) {
        match e {
            Expr::And(c) | Expr::Or(c) => c.iter().for_each(|e| checks(e, out)),
            Expr::Not(c) => checks(c, out),
            Expr::Macro { .. } => {}
            Expr::Check(_) => out.push(e.clone()),
        }
    }
    for set in [
        &["k8s_audit_rules.yaml"][..],
        &["test_rules/engine_v4_k8s_audit_rules.yaml"],
        &["test_rules/single_rule_with_json_pointer.yaml"],
    ] {
        for r in load_rel(&dir, set, LoadOptions::default()).unwrap().rules {
            checks(&r.condition, &mut conds);
            conds.push(r.condition);
        }
    }
    // Hand-written checks of every typed field, present, missing and null.
    for c in [
        "ka.verb=create",
        "ka.verb exists",
        "not ka.target.subresource exists",
        "ka.target.subresource=null",
        "ka.target.namespace in (default, kube-system)",
        "ka.response.code >= 400",
        "ka.response.code=403",
        "ka.user.name startswith system:",
        "ka.impuser.name exists",
        "ka.auditid exists",
        "jevt.value[/verb]=create",
        "jevt.value[/objectRef/resource] in (pods, secrets)",
        "jevt.value[/stage] exists",
        "ka.uri contains exec",
        "ka.useragent icontains KUBECTL",
        "ka.target.name glob 'kube-*'",
    ] {
        conds.push(p(c));
    }
    let mut seen = std::collections::HashSet::new();
    conds.retain(|c| seen.insert(format!("{c:?}")));
    let compiled: Vec<FalcoCond> = conds.iter().map(FalcoCond::new).collect();

    let mut texts: Vec<String> = Vec::new();
    let mut add_values = |text: &str| {
        let stream =
            serde_json::Deserializer::from_str(text).into_iter::<&serde_json::value::RawValue>();
        for value in stream.flatten() {
            match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(value.get()) {
                Ok(items) => texts.extend(items.iter().map(|i| i.get().to_string())),
                Err(_) => texts.push(value.get().to_string()),
            }
        }
    };
    for entry in std::fs::read_dir(dir.join("trace_files")).unwrap() {
        add_values(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    // Variants of the trace files' events: a typed member written null, removed, or of
    // another type.
    let mut variants = Vec::new();
    for t in &texts {
        let Ok(serde_json::Value::Object(m)) = serde_json::from_str::<serde_json::Value>(t) else {
            continue;
        };
        let edits: [(&str, Option<&str>, serde_json::Value); 6] = [
            ("verb", None, serde_json::Value::Null),
            ("auditID", None, serde_json::Value::Null),
            ("objectRef", Some("subresource"), serde_json::Value::Null),
            ("objectRef", Some("namespace"), serde_json::Value::Null),
            ("user", Some("username"), serde_json::Value::Null),
            ("responseStatus", Some("code"), serde_json::json!(403)),
        ];
        for (key, sub, v) in edits {
            let mut m = m.clone();
            match sub {
                None => {
                    m.insert(key.into(), v.clone());
                    let mut gone = m.clone();
                    gone.remove(key);
                    variants.push(serde_json::Value::Object(gone).to_string());
                }
                Some(sub) => {
                    let inner = m.entry(key).or_insert_with(|| serde_json::json!({}));
                    if let serde_json::Value::Object(inner) = inner {
                        inner.insert(sub.into(), v);
                    }
                }
            }
            variants.push(serde_json::Value::Object(m).to_string());
        }
    }
    texts.extend(variants);
    // Real events, as they are.
    let real = dir.join("../real");
    for rel in ["openshift/audit_in.log", "audit2rbac/demo.log"] {
        if let Ok(text) = std::fs::read_to_string(real.join(rel)) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                texts.push(line.to_string());
            }
        }
    }
    let mut events = 0;
    let mut agreed = 0usize;
    let mut held = 0usize;
    for t in &texts {
        decode_value_into(t, &mut |d| {
            let Ok(ev) = d else { return };
            events += 1;
            let doc = Doc::from_event(ev);
            for (expr, c) in conds.iter().zip(&compiled) {
                let want = eval(expr, &doc);
                assert_eq!(c.matches(ev), want, "{expr:?} on {}", ev.raw());
                agreed += 1;
                held += usize::from(want);
            }
        });
    }
    assert!(events > 500, "{events} events");
    assert!(held > 1000 && held < agreed, "{held} of {agreed} held");
}

// ----- Falco rules in tripline's rule set -----

/// Alerts of `text` (one Falco rules file) on the event `json`: (rule name, message,
/// whole alert document).
fn alerts_of(
    text: &str,
    json: &str,
    matching: super::RuleMatching,
) -> Vec<(String, String, String)> {
    let compiled =
        crate::rules::load_falco(&[("r.yaml".into(), text.into())], LoadOptions::default());
    assert!(compiled.errors.is_empty(), "{:?}", compiled.errors);
    let set = crate::rules::RuleSet::new(compiled.rules).with_rule_matching(matching);
    let mut detector = crate::detect::Detector::new(&set, None);
    let mut out = Vec::new();
    decode_value_into(json, &mut |d| {
        let ev = d.expect("decodes");
        detector.detect(ev, &mut |a| {
            out.push((
                set.meta(a.rule).title.clone(),
                a.message().to_string(),
                String::from_utf8_lossy(a.json()).into_owned(),
            ));
        });
    });
    out
}

const SECRET_EVENT: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets","verb":"create","user":{"username":"alice"},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"code":201},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMlN1cGVyU2VjcmV0"},"stringData":{"token":"tok-Very-Secret-42"}},"requestReceivedTimestamp":"2024-05-01T10:00:00.000000Z","stageTimestamp":"2024-05-01T10:00:00.100000Z"}"#;

#[test]
fn only_the_first_matching_falco_rule_alerts_unless_all() {
    let text = rule_item("Any Create", "ka.verb=create")
        + &rule_item(
            "Secret Create",
            "ka.verb=create and ka.target.resource=secrets",
        )
        + &rule_item(
            "Secret Delete",
            "ka.verb=delete and ka.target.resource=secrets",
        );
    let names = |m| -> Vec<String> {
        alerts_of(&text, SECRET_EVENT, m)
            .into_iter()
            .map(|a| a.0)
            .collect()
    };
    assert_eq!(names(super::RuleMatching::First), ["Any Create"]);
    assert_eq!(
        names(super::RuleMatching::All),
        ["Any Create", "Secret Create"]
    );
    // Without an RFC 3339 stageTimestamp the k8saudit plugin drops the event: no rule runs.
    let no_time = SECRET_EVENT.replace(
        "\"stageTimestamp\":\"2024-05-01T10:00:00.100000Z\"",
        "\"stageTimestamp\":\"yesterday\"",
    );
    assert!(alerts_of(&text, &no_time, super::RuleMatching::All).is_empty());
}

/// A Falco output that prints the whole object (`%jevt.obj`, `%ka.req.configmap.obj`-like
/// fields) shows the redacted event: no secret value reaches the message or `output_fields`.
#[test]
fn falco_outputs_render_redacted_values() {
    let text = "- rule: Secret Create\n  desc: d\n  condition: ka.verb=create and ka.target.resource=secrets\n  output: \"Secret %ka.target.name by %ka.user.name (pw=%jevt.value[/requestObject/data/password] tok=%jevt.value[/requestObject/stringData/token] groups=%ka.user.groups obj=%jevt.obj)\"\n  priority: ERROR\n  source: k8s_audit\n  tags: [k8s, T1552]\n";
    let alerts = alerts_of(text, SECRET_EVENT, super::RuleMatching::First);
    assert_eq!(alerts.len(), 1);
    let (name, message, doc) = &alerts[0];
    assert_eq!(name, "Secret Create");
    assert!(message.starts_with("Secret db by alice (pw="), "{message}");
    assert!(message.contains("groups=<NA>"), "{message}");
    for secret in ["aHVudGVyMlN1cGVyU2VjcmV0", "hunter2", "tok-Very-Secret-42"] {
        assert!(!message.contains(secret), "{message}");
        assert!(!doc.contains(secret), "{doc}");
    }
    let v: serde_json::Value = serde_json::from_str(doc).unwrap();
    assert_eq!(v["falco"]["rule"], "Secret Create");
    assert_eq!(v["falco"]["priority"], "Error");
    assert_eq!(v["falco"]["source"], "k8s_audit");
    assert_eq!(v["falco"]["tags"], serde_json::json!(["T1552", "k8s"]));
    assert_eq!(v["falco"]["output_fields"]["ka.user.name"], "alice");
    assert_eq!(
        v["falco"]["output_fields"]["ka.user.groups"],
        serde_json::Value::Null
    );
    assert_eq!(v["rule"]["ruleset"], "falco");
    assert_eq!(v["tripline"]["rule"]["level"], "high");
    assert_eq!(v["message"], message.as_str());
}

/// The plugin reads a JSON `null` as the text `null`: a rule that asks for the verb or resource
/// `null` matches such an event, and the rule index (which knows the event's verb and resource
/// as absent) must not skip it.
#[test]
fn a_check_for_the_text_null_is_not_indexed_away() {
    for cond in [
        "ka.verb in (null, get)",
        "ka.verb = null",
        "ka.target.resource = null",
    ] {
        let text = format!(
            "- rule: R\n  desc: d\n  condition: {cond}\n  output: o\n  priority: WARNING\n  source: k8s_audit\n"
        );
        let loaded = crate::rules::load_falco(&[("p.yaml".into(), text)], Default::default());
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let set = crate::rules::RuleSet::new(loaded.rules);
        let json = r#"{"verb":null,"auditID":"a1","stageTimestamp":"2024-05-01T10:00:00Z","objectRef":{"resource":null},"user":{}}"#;
        let mut seen = false;
        decode_value_into(json, &mut |ev| {
            let ev = ev.expect("decodes");
            let (mut indexed, mut all) = (Vec::new(), Vec::new());
            set.matching_into(ev, &mut indexed);
            set.matching_unindexed_into(ev, &mut all);
            assert_eq!(all, vec![0], "{cond}");
            assert_eq!(indexed, all, "{cond}");
            seen = true;
        });
        assert!(seen);
    }
}
