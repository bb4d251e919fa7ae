//! Property tests: the rule index never changes a result, and decoding never panics.

use proptest::prelude::*;
use tripline::event::{decode_value_into, DecodeStats, Input, InputReader};
use tripline::rules::{builtin_field_mappings, load_str, CompileOptions, RuleSet};

const VERBS: &[&str] = &["get", "list", "create", "patch", "delete", "GET"];
const RESOURCES: &[&str] = &["pods", "secrets", "roles", "Secrets", "configmaps"];

/// A random selection over verb, resource and user, with modifiers that the index must treat
/// as "could match anything".
fn selection() -> impl Strategy<Value = String> {
    let verb = prop_oneof![
        Just(String::new()),
        proptest::sample::subsequence(VERBS, 1..3)
            .prop_map(|v| format!("    verb: [{}]\n", v.join(", "))),
        Just("    verb|startswith: cr\n".to_string()),
        Just("    verb: null\n".to_string()),
    ];
    let res = prop_oneof![
        Just(String::new()),
        proptest::sample::subsequence(RESOURCES, 1..3)
            .prop_map(|v| format!("    objectRef.resource: [{}]\n", v.join(", "))),
        Just("    objectRef.resource|contains: e\n".to_string()),
    ];
    let user = prop_oneof![
        Just("    user.username|startswith: 'system:'\n".to_string()),
        Just("    user.username: alice\n".to_string()),
        Just("    user.username|exists: true\n".to_string()),
        Just("    user.groups: [dev, 'system:masters']\n".to_string()),
        Just("    user.groups|startswith: 'system:'\n".to_string()),
        Just("    user.groups: null\n".to_string()),
        Just("    sourceIPs|endswith: '.9'\n".to_string()),
        Just("    stage: ResponseComplete\n".to_string()),
        Just("    userAgent|re: '^kubectl/'\n".to_string()),
        Just("    userAgent|re|i: '^kubectl/'\n".to_string()),
        Just("    userAgent|contains|cased: Kube\n".to_string()),
        Just("    userAgent|contains: kube\n".to_string()),
        Just("    userAgent|exists: false\n".to_string()),
        Just("    source.ip|exists: true\n".to_string()),
        Just("    responseStatus.code|lt: 300\n".to_string()),
        Just("    responseStatus.code|gte: 403\n".to_string()),
        Just("    responseStatus.code: [403, 404]\n".to_string()),
        Just("    responseStatus.code: null\n".to_string()),
        Just("    responseStatus.code|exists: true\n".to_string()),
    ];
    let map = (verb, res, user.clone()).prop_map(|(v, r, u)| format!("{v}{r}{u}"));
    // A list of maps (any one must hold), of one field each or of two.
    let list = proptest::collection::vec((user.clone(), proptest::option::of(user)), 1..3)
        .prop_map(|maps| {
            maps.iter()
                .map(|(a, b)| {
                    let second = b.as_ref().map_or(String::new(), |b| format!("  {b}"));
                    format!("    - {}{second}", a.trim_start())
                })
                .collect()
        });
    prop_oneof![3 => map, 1 => list]
}

fn condition() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("c".to_string())
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("({x} and {y})")),
            (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("({x} or {y})")),
            inner.clone().prop_map(|x| format!("not {x}")),
            Just("1 of them".to_string()),
            Just("all of them".to_string()),
        ]
    })
}

fn rule_text(i: usize, a: &str, b: &str, c: &str, cond: &str) -> String {
    format!(
        "title: R{i}\nid: 00000000-0000-4000-8000-{i:012}\nlogsource: {{product: kubernetes, service: audit}}\ndetection:\n  a:\n{a}  b:\n{b}  c:\n{c}  condition: {cond}\n---\n"
    )
}

fn event() -> impl Strategy<Value = String> {
    (
        proptest::option::of(proptest::sample::select(VERBS)),
        proptest::option::of(proptest::sample::select(RESOURCES)),
        proptest::option::of(prop_oneof![
            Just("alice"),
            Just("system:node:n1"),
            Just("bob")
        ]),
        proptest::option::of(proptest::sample::subsequence(
            &["dev", "System:Masters", "system:authenticated", "Ünïcode"][..],
            0..3,
        )),
        proptest::option::of(prop_oneof![Just("10.0.0.9"), Just("10.0.0.1")]),
        any::<bool>(),
        proptest::option::of(prop_oneof![
            Just("kubectl/v1"),
            Just("KUBECTL/v1"),
            Just("Kubelet")
        ]),
        proptest::option::of(prop_oneof![Just(200), Just(403), Just(500)]),
    )
        .prop_map(|(v, r, u, groups, ip, complete, agent, code)| {
            let mut parts = vec![r#""auditID":"x""#.to_string()];
            if let Some(v) = v {
                parts.push(format!(r#""verb":"{v}""#));
            }
            if let Some(r) = r {
                parts.push(format!(r#""objectRef":{{"resource":"{r}"}}"#));
            }
            let groups = groups.map(|g| {
                let quoted: Vec<String> = g.iter().map(|x| format!("\"{x}\"")).collect();
                format!(r#","groups":[{}]"#, quoted.join(","))
            });
            match (u, groups) {
                (Some(u), g) => parts.push(format!(
                    r#""user":{{"username":"{u}"{}}}"#,
                    g.unwrap_or_default()
                )),
                (None, Some(g)) => parts.push(format!(r#""user":{{{}}}"#, &g[1..])),
                (None, None) => {}
            }
            if let Some(ip) = ip {
                parts.push(format!(r#""sourceIPs":["1.2.3.4","{ip}"]"#));
            }
            if complete {
                parts.push(r#""stage":"ResponseComplete""#.to_string());
            }
            if let Some(a) = agent {
                parts.push(format!(r#""userAgent":"{a}""#));
            }
            if let Some(c) = code {
                parts.push(format!(r#""responseStatus":{{"code":{c}}}"#));
            }
            format!("{{{}}}", parts.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_index_never_changes_a_result(
        rules in proptest::collection::vec((selection(), selection(), selection(), condition()), 1..8),
        events in proptest::collection::vec(event(), 1..20),
    ) {
        let text: String = rules
            .iter()
            .enumerate()
            .map(|(i, (a, b, c, cond))| rule_text(i, a, b, c, cond))
            .collect();
        let opts = CompileOptions { field_mappings: builtin_field_mappings(), ..CompileOptions::default() };
        let (compiled, errors) = load_str("p.yml", &text, &opts);
        // Empty selections are load errors; skip those draws.
        prop_assume!(errors.is_empty());
        let set = RuleSet::new(compiled);
        for json in &events {
            decode_value_into(json, &mut |ev| {
                let ev = ev.expect("generated events decode");
                let mut indexed = Vec::new();
                let mut all = Vec::new();
                set.matching_into(ev, &mut indexed);
                set.matching_unindexed_into(ev, &mut all);
                indexed.sort_unstable();
                assert_eq!(indexed, all, "event {json}");
            });
        }
    }

    #[test]
    fn input_text_is_checked_like_std(bytes in proptest::collection::vec(any::<u8>(), 0..300), text in "\\PC{0,200}") {
        prop_assert_eq!(tripline::event::utf8(&bytes), std::str::from_utf8(&bytes));
        prop_assert_eq!(tripline::event::utf8(text.as_bytes()), Ok(text.as_str()));
        // Valid text with one byte changed, at any place.
        let mut b = text.clone().into_bytes();
        if !b.is_empty() {
            let i = bytes.len() % b.len();
            b[i] = bytes.first().copied().unwrap_or(0xff);
            prop_assert_eq!(tripline::event::utf8(&b), std::str::from_utf8(&b));
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.log");
        std::fs::write(&p, &bytes).unwrap();
        let reader = InputReader { max_line_bytes: 1024, ..InputReader::default() };
        let mut stats = DecodeStats::default();
        reader.read(&Input::File(p), &mut stats, &mut |_| {}, &mut |_| {});
        prop_assert!(stats.lines as usize <= bytes.len() + 1);
    }

    #[test]
    fn decoding_mutated_events_never_panics(
        cut in 0usize..400,
        flip in 0usize..400,
        byte in any::<u8>(),
    ) {
        let base = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"a","stage":"ResponseComplete","verb":"create","user":{"username":"u","groups":["g"]},"sourceIPs":["1.2.3.4"],"objectRef":{"resource":"pods","namespace":"n"},"requestObject":{"kind":"Pod","spec":{"containers":[{"image":"x"}]}},"annotations":{"a":"b"}}"#;
        let mut b = base.as_bytes().to_vec();
        if flip < b.len() { b[flip] = byte; }
        b.truncate(cut.min(b.len()));
        if let Ok(text) = std::str::from_utf8(&b) {
            decode_value_into(text, &mut |ev| {
                if let Ok(ev) = ev {
                    let _ = ev.request_object();
                    let _ = ev.annotations();
                }
            });
        }
    }
}

// ----- Falco conditions: compiled form, interpreter and index agree -----

/// A Falco field with values an event may hold for it.
const FALCO_FIELDS: &[(&str, &[&str])] = &[
    ("ka.verb", &["create", "get", "", "null"]),
    ("ka.target.resource", &["pods", "secrets", "Pods"]),
    ("ka.target.subresource", &["exec", "attach", ""]),
    ("ka.target.namespace", &["default", "kube-system"]),
    ("ka.target.name", &["web-0", "kube-proxy"]),
    (
        "ka.user.name",
        &["alice", "system:anonymous", "system:node:n1"],
    ),
    ("ka.user.groups", &["system:masters", "dev"]),
    ("ka.response.code", &["200", "403", "1000"]),
    ("ka.auditid", &["a1"]),
    ("ka.uri.param[command]", &["sh", "ls"]),
    ("ka.req.pod.containers.image", &["nginx", "busybox"]),
    ("ka.req.pod.containers.privileged", &["true", "false"]),
    ("jevt.value[/verb]", &["create", "get"]),
    ("jevt.value[/objectRef/resource]", &["pods", "secrets"]),
    ("jevt.value[/stage]", &["ResponseComplete"]),
    ("jevt.rawtime", &["0"]),
];

const FALCO_OPS: &[&str] = &[
    "=",
    "!=",
    "<",
    ">=",
    "contains",
    "startswith",
    "endswith",
    "icontains",
    "glob",
    "in",
    "intersects",
    "exists",
    "pmatch",
];

/// One comparison, in Falco's syntax.
fn falco_check() -> impl Strategy<Value = String> {
    (
        0..FALCO_FIELDS.len(),
        0..FALCO_OPS.len(),
        0usize..8,
        0usize..8,
    )
        .prop_map(|(f, o, a, b)| {
            let (field, values) = FALCO_FIELDS[f];
            let op = FALCO_OPS[o];
            let v = |i: usize| values[i % values.len()].to_string();
            let quote = |s: String| if s.is_empty() { "\"\"".to_string() } else { s };
            match op {
                "exists" => format!("{field} exists"),
                "in" | "intersects" | "pmatch" => {
                    format!("{field} {op} ({}, {})", quote(v(a)), quote(v(b)))
                }
                "glob" => format!(
                    "{field} glob '{}*'",
                    v(a).chars().take(2).collect::<String>()
                ),
                // Order operators take numbers (and compare them as text, as Falco does).
                "<" | ">=" => format!("{field} {op} {}", ["400", "1000", "2"][a % 3]),
                _ => format!("{field} {op} {}", quote(v(a))),
            }
        })
        // Operators a field does not take are load errors, not conditions.
        .prop_filter("a valid comparison", |c| {
            tripline::rules::falco::parse(c).is_ok()
        })
}

/// A condition of up to three levels of `and`, `or` and `not`.
fn falco_condition() -> impl Strategy<Value = String> {
    falco_check().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4)
                .prop_map(|v| format!("({})", v.join(" and "))),
            proptest::collection::vec(inner.clone(), 2..4)
                .prop_map(|v| format!("({})", v.join(" or "))),
            inner.prop_map(|c| format!("not {c}")),
        ]
    })
}

/// A string member of a generated event: absent, `null`, or one of `values`.
fn member(
    key: &'static str,
    values: &'static [&'static str],
) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some(format!("\"{key}\":null"))),
        proptest::sample::select(values).prop_map(move |v| Some(format!("\"{key}\":\"{v}\""))),
    ]
}

fn falco_event() -> impl Strategy<Value = String> {
    (
        (
            member("verb", &["create", "get", "", "null"]),
            member("auditID", &["a1", ""]),
            member("stage", &["ResponseComplete", "ResponseStarted"]),
            member("requestURI", &["/api/v1/namespaces/default/pods/web-0/exec?command=sh&command=-c", "/api/v1/pods"]),
            member("stageTimestamp", &["2024-05-01T10:00:00.123456Z", "yesterday"]),
        ),
        (
            member("resource", &["pods", "secrets", "Pods"]),
            member("subresource", &["exec", "attach", ""]),
            member("namespace", &["default", "kube-system"]),
            member("name", &["web-0", "kube-proxy"]),
            any::<bool>(),
        ),
        (
            member("username", &["alice", "system:anonymous", "system:node:n1"]),
            proptest::option::of(proptest::sample::subsequence(&["system:masters", "dev"][..], 0..3)),
            proptest::option::of(prop_oneof![Just(200), Just(403), Just(1000)]),
            proptest::option::of(prop_oneof![
                Just(r#"{"kind":"Pod","spec":{"containers":[{"image":"nginx","securityContext":{"privileged":true}},{"image":"busybox"}]}}"#),
                Just(r#"{"kind":"Pod","spec":{"containers":[]}}"#),
                Just(r#"{"kind":"Pod","spec":{"containers":[{"name":"x"}]}}"#),
                Just("null"),
            ]),
        ),
    )
        .prop_map(|((verb, audit, stage, uri, ts), (res, sub, ns, name, objref), (user, groups, code, body))| {
            let mut parts: Vec<String> = [verb, audit, stage, uri, ts].into_iter().flatten().collect();
            let objref_members: Vec<String> = [res, sub, ns, name].into_iter().flatten().collect();
            if objref {
                parts.push(format!("\"objectRef\":{{{}}}", objref_members.join(",")));
            }
            let mut user_members: Vec<String> = user.into_iter().collect();
            if let Some(g) = groups {
                let quoted: Vec<String> = g.iter().map(|x| format!("\"{x}\"")).collect();
                user_members.push(format!("\"groups\":[{}]", quoted.join(",")));
            }
            parts.push(format!("\"user\":{{{}}}", user_members.join(",")));
            if let Some(c) = code {
                parts.push(format!("\"responseStatus\":{{\"code\":{c}}}"));
            }
            if let Some(b) = body {
                parts.push(format!("\"requestObject\":{b}"));
            }
            format!("{{{}}}", parts.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// A Falco condition compiled for decoded events gives the interpreter's result on the
    /// event's text, and the rule index (built from what the condition requires of the verb
    /// and resource) never changes which rules match.
    #[test]
    fn falco_conditions_compiled_agree_with_the_interpreter_and_the_index(
        conds in proptest::collection::vec(falco_condition(), 1..6),
        events in proptest::collection::vec(falco_event(), 1..12),
    ) {
        use tripline::rules::falco::{eval, parse, Doc, FalcoCond};
        let exprs: Vec<_> = conds.iter().map(|c| parse(c).expect("generated conditions parse")).collect();
        let compiled: Vec<FalcoCond> = exprs.iter().map(FalcoCond::new).collect();
        let text: String = conds
            .iter()
            .enumerate()
            .map(|(i, c)| format!("- rule: R{i}\n  desc: d\n  condition: {c}\n  output: o\n  priority: WARNING\n  source: k8s_audit\n"))
            .collect();
        let loaded = tripline::rules::load_falco(&[("p.yaml".into(), text)], Default::default());
        prop_assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let set = RuleSet::new(loaded.rules);
        for json in &events {
            decode_value_into(json, &mut |ev| {
                // Without `verb` and `auditID` it is no audit event to tripline: never evaluated.
                let Ok(ev) = ev else { return };
                let doc = Doc::new(ev.raw());
                for (e, c) in exprs.iter().zip(&compiled) {
                    assert_eq!(c.matches(ev), eval(e, &doc), "{e:?} on {json}");
                }
                let mut indexed = Vec::new();
                let mut all = Vec::new();
                set.matching_into(ev, &mut indexed);
                set.matching_unindexed_into(ev, &mut all);
                indexed.sort_unstable();
                assert_eq!(indexed, all, "event {json}");
            });
        }
    }
}
