//! Conformance over the public audit data in `../shared/data` (or `$TRIPLINE_SHARED_DATA`): real
//! events decode, and the default pack alerts on Falco's Kubernetes audit traces where it should
//! and stays quiet where it should, case by case over Falco's own suite
//! (`cargo test --test conformance falco_suite -- --nocapture` prints the table).
//!
//! When the folder is absent these tests print why and pass without checking anything.

#[path = "support/scan.rs"]
mod scan;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TRIPLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.join("falco/trace_files").is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: shared audit data not found at {} (set TRIPLINE_SHARED_DATA); conformance not checked",
            dir.display()
        );
        None
    }
}

/// The `.json` and `.log` files of a folder, sorted.
fn event_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "log")))
        .collect();
    files.sort();
    files
}

/// Runs `tripline scan --format json` on `path`; returns (alerts, stderr).
fn scan(path: &std::path::Path) -> (Vec<Value>, String) {
    scan::scan_json(&[], path)
}

fn rule_names(alerts: &[Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            a["rule"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
        })
        .collect()
}

#[test]
fn every_shared_file_decodes_and_the_invalid_one_is_counted() {
    let Some(dir) = data_dir() else { return };
    for sub in ["real/openshift", "real/audit2rbac", "falco/trace_files"] {
        for f in event_files(&dir.join(sub)) {
            let (_, stderr) = scan(&f);
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            if name == "fal_01_003.json" {
                assert!(
                    stderr.contains("fal_01_003.json:1: not_an_event"),
                    "{stderr}"
                );
                assert!(stderr.contains("1 skipped"), "{stderr}");
            } else {
                assert!(stderr.contains(" 0 skipped"), "{name}: {stderr}");
            }
        }
    }
}

#[test]
fn the_pack_alerts_on_falco_attack_traces() {
    let Some(dir) = data_dir() else { return };
    let traces = dir.join("falco/trace_files");
    // (trace file, words one of the alerting rules' names must all contain; `|` separates
    // alternatives for one word)
    let cases: &[(&str, &[&str])] = &[
        ("exec_pod.json", &["exec"]),
        ("attach_pod.json", &["attach"]),
        ("create_nginx_pod_privileged.json", &["privileged"]),
        (
            "create_nginx_pod_privileged_2nd_container.json",
            &["privileged"],
        ),
        (
            "create_nginx_pod_no_secctx_1st_container_privileged_2nd_container.json",
            &["privileged"],
        ),
        (
            "create_nginx_pod_sensitive_mount.json",
            &["sensitive", "host path|hostpath"],
        ),
        (
            "create_nginx_pod_sensitive_mount_2nd_container.json",
            &["sensitive", "host path|hostpath"],
        ),
        (
            "create_nginx_pod_hostnetwork.json",
            &["host", "network|namespace"],
        ),
        ("create_nginx_service_nodeport.json", &["nodeport"]),
        ("attach_cluster_admin_role.json", &["cluster-admin"]),
        ("create_cluster_role_wildcard_resources.json", &["wildcard"]),
        ("create_cluster_role_wildcard_verbs.json", &["wildcard"]),
        ("anonymous_creates_namespace_foo.json", &["anonymous"]),
    ];
    let mut missing = Vec::new();
    for (file, words) in cases {
        let (alerts, _) = scan(&traces.join(file));
        let names = rule_names(&alerts);
        let hit = names.iter().any(|n| {
            words
                .iter()
                .all(|w| w.split('|').any(|alt| n.contains(alt)))
        });
        if !hit {
            missing.push(format!(
                "{file}: no alert named with {words:?}; got {names:?}"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn the_pack_is_quiet_on_the_harmless_variants() {
    let Some(dir) = data_dir() else { return };
    let traces = dir.join("falco/trace_files");
    for (file, forbidden) in [
        ("create_nginx_pod_unprivileged.json", "privileged"),
        ("create_nginx_pod_nohostnetwork.json", "host"),
        ("create_nginx_pod_unsensitive_mount.json", "host path"),
    ] {
        let (alerts, _) = scan(&traces.join(file));
        let bad: Vec<String> = rule_names(&alerts)
            .into_iter()
            .filter(|n| n.contains(forbidden) && !n.contains("unprivileged"))
            .collect();
        assert!(bad.is_empty(), "{file}: unexpected {bad:?}");
    }
}

/// Alerts and the events flow write each event redacted without building it as a value; on
/// every real event, that must give what redacting the parsed value gives.
#[test]
fn every_shared_event_is_written_redacted_like_its_parsed_value() {
    use tripline::event::redact::{redact_event, write_redacted_event};
    use tripline::event::{decode_value_into, parse_value, unique_keys};
    let Some(dir) = data_dir() else { return };
    let mut checked = 0;
    for sub in ["real/openshift", "real/audit2rbac", "falco/trace_files"] {
        for f in event_files(&dir.join(sub)) {
            let text = std::fs::read_to_string(&f).unwrap();
            let mut check = |ev: &tripline::event::Event<'_>| {
                let mut out = Vec::new();
                let written = write_redacted_event(ev, &mut out);
                let out = String::from_utf8(out).unwrap();
                let mut want = parse_value(ev.raw()).unwrap();
                let mut want_secrets = redact_event(&mut want);
                let mut secrets = written.secrets;
                secrets.sort();
                want_secrets.sort();
                assert!(unique_keys(&out), "{}", f.display());
                assert_eq!(parse_value(&out), Some(want), "{}", f.display());
                assert_eq!(secrets, want_secrets, "{}", f.display());
                checked += 1;
            };
            // JSON Lines, or one (pretty-printed) event or list per file.
            let whole = decode_value_into(&text, &mut |d| {
                if let Ok(ev) = d {
                    check(ev);
                }
            });
            if whole == 0 {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    decode_value_into(line, &mut |d| {
                        if let Ok(ev) = d {
                            check(ev);
                        }
                    });
                }
            }
        }
    }
    assert!(checked > 100, "only {checked} events checked");
    eprintln!("{checked} events written redacted like their parsed values");
}

/// Falco's own rule names mapped to the default-pack rules that detect the same behaviour
/// (any one of them counts). The trail rules keep Falco's names.
const FALCO_TO_PACK: &[(&str, &[&str])] = &[
    (
        "Create Disallowed Pod",
        &["Pod With Image Outside The Allowed Images"],
    ),
    (
        "Create Privileged Pod",
        &[
            "Privileged Pod Created By Workload Controller",
            "Privileged Container In Workload",
        ],
    ),
    (
        "Create HostNetwork Pod",
        &[
            "Pod Sharing Host Namespaces Created By Workload Controller",
            "Workload Uses Host Network",
        ],
    ),
    (
        "Create Sensitive Mount Pod",
        &[
            "Pod With Sensitive Host Path Created By Workload Controller",
            "Sensitive Host Path Mounted In Workload",
        ],
    ),
    ("Disallowed K8s User", &["User Outside The Allowed Users"]),
    (
        "Create Disallowed Namespace",
        &["Namespace Created Outside The Allowed Namespaces"],
    ),
    ("Create NodePort Service", &["NodePort Service Created"]),
    (
        "Create/Modify Configmap With Private Credentials",
        &["ConfigMap Contains Credentials"],
    ),
    (
        "Anonymous Request Allowed",
        &[
            "Anonymous Access To API Resource Allowed",
            "Anonymous Access To Non-Public URL Allowed",
        ],
    ),
    (
        "Attach/Exec Pod",
        &[
            "Interactive Exec Or Attach Into Pod",
            "Exec Or Attach Into Pod In Sensitive Namespace",
        ],
    ),
    (
        "Pod Created in Kube Namespace",
        &[
            "Pod With Unlisted Image Created In Kube Namespace",
            "Workload Created In Kube-System Namespace",
        ],
    ),
    (
        "Service Account Created in Kube Namespace",
        &["Service Account Created In Kube-System Namespace"],
    ),
    (
        "System ClusterRole Modified/Deleted",
        &["Built-In RBAC Object Changed Or Deleted"],
    ),
    (
        "Attach to cluster-admin Role",
        &["Binding To Cluster-Admin Role"],
    ),
    (
        "ClusterRole With Wildcard Created",
        &["Role With Wildcard Permissions Created Or Changed"],
    ),
    (
        "ClusterRole With Write Privileges Created",
        &["ClusterRole With Write Privileges Created"],
    ),
    (
        "ClusterRole With Pod Exec Created",
        &["Role Grants Pod Exec Or Kubelet Access"],
    ),
];

/// Falco's default allow-lists (`allowed_k8s_users` with `eks_allowed_k8s_users`,
/// `allowed_namespaces`), which its suite runs with; tripline's pack keeps these allow-lists
/// empty (the rules inactive) until a user fills them, so the table fills them as Falco does.
const FALCO_ALLOWED_USERS: &[&str] = &[
    "minikube",
    "minikube-user",
    "kubelet",
    "kops",
    "admin",
    "kube",
    "kube-proxy",
    "kube-apiserver-healthcheck",
    "kubernetes-admin",
    "vertical-pod-autoscaler",
    "cluster-autoscaler",
    "system:addon-manager",
    "cloud-controller-manager",
    "system:kube-controller-manager",
    "eks:*",
];
const FALCO_ALLOWED_NAMESPACES: &[&str] = &["kube-system", "kube-public", "default"];

/// The placeholder lines that mirror one of Falco's override files in its suite.
fn falco_override(file: &str, ph: &mut std::collections::BTreeMap<&str, Vec<&str>>) {
    let mut add = |k, v: &[&'static str]| ph.entry(k).or_default().extend_from_slice(v);
    match file {
        // `allowed_k8s_containers` replaced: only these images may run.
        "allow_only_apache_container.yaml" => add("allowed_images", &["apache*"]),
        "allow_nginx_container.yaml" => add("allowed_images", &["nginx*"]),
        // nginx appended to Falco's privileged, sensitive-mount and host-network image lists.
        "trust_nginx_container.yaml" => add("privileged_images", &["nginx*"]),
        "allow_user_some-user.yaml" => add("allowed_users", &["some-user"]),
        "allow_namespace_foo.yaml" => add("allowed_namespaces", &["foo"]),
        // Turns Falco's activity trail off; tripline's trail is off unless enabled.
        "disallow_kactivity.yaml" => {}
        other => panic!("no placeholder mirror for Falco override {other}"),
    }
}

/// Every case of Falco's Kubernetes audit suite (`falco/expectations.json`): threat cases must
/// be detected by the default pack, the activity-trail cases by the opt-in trail set
/// (`rules.audit_trail: true`), and the "must stay silent" cases must raise no alert at all,
/// each with the placeholder settings that mirror the case's Falco override files. Prints the
/// per-case table.
#[test]
fn falco_suite_case_by_case() {
    let Some(dir) = data_dir() else { return };
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("falco/expectations.json")).unwrap(),
    )
    .unwrap();
    let cases = spec["test_cases"].as_array().expect("test_cases");
    let tmp = std::env::temp_dir().join(format!("tripline-falco-cases-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let (mut threat, mut trail, mut silent, mut excluded) = (0, 0, 0, 0);
    for case in cases {
        let name = case["test_case"].as_str().unwrap();
        let trace = case["trace_file"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        let expected: Vec<&str> = case["detect_counts"]
            .as_object()
            .map(|o| o.keys().map(|k| k.as_str()).collect())
            .unwrap_or_default();
        if expected.contains(&"json_pointer_example") {
            // A rule of the suite's own that tests Falco's JSON-pointer syntax, not a behaviour.
            excluded += 1;
            rows.push(format!(
                "{name:<58} {trace:<58} excluded (engine test of Falco's json pointers)"
            ));
            continue;
        }
        let is_trail = !expected.is_empty() && expected.iter().all(|r| r.starts_with("K8s "));
        let mut ph = std::collections::BTreeMap::new();
        ph.insert("allowed_users", FALCO_ALLOWED_USERS.to_vec());
        ph.insert("allowed_namespaces", FALCO_ALLOWED_NAMESPACES.to_vec());
        let mut overrides = Vec::new();
        for f in case["rules_files"].as_array().unwrap() {
            let f = f.as_str().unwrap();
            // The suite's override files (also under engine_v4/ for the engine-v4 variants); the
            // engine-v4 copy of the upstream rules file is the rules file itself.
            if let Some(path) = f.strip_prefix("test/rules/k8s_audit/") {
                let file = path.rsplit('/').next().unwrap_or(path);
                if file != "engine_v4_k8s_audit_rules.yaml" {
                    falco_override(file, &mut ph);
                    overrides.push(file);
                }
            }
        }
        // Start from the pack's default lists for the ones a mirror extends.
        let defaults = tripline::rules::builtin_placeholders();
        let mut config = String::from("rules:\n");
        if is_trail {
            config.push_str("  audit_trail: true\n");
        }
        config.push_str("  placeholders:\n");
        for (k, v) in &ph {
            let mut values: Vec<String> = v.iter().map(|s| s.to_string()).collect();
            if k == &"privileged_images" {
                values.extend(defaults.get(*k).cloned().unwrap_or_default());
            }
            config.push_str(&format!(
                "    {k}: {}\n",
                serde_json::to_string(&values).unwrap()
            ));
        }
        let conf_path = tmp.join(format!("{name}.yaml"));
        std::fs::write(&conf_path, &config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args(["scan", "--format", "json", "--config"])
            .arg(&conf_path)
            .arg(dir.join("falco/trace_files").join(trace))
            .output()
            .expect("the binary runs");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: std::collections::BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|a| a["rule"]["name"].as_str().map(str::to_string))
            .collect();
        let kind = if expected.is_empty() {
            silent += 1;
            "silent"
        } else if is_trail {
            trail += 1;
            "trail"
        } else {
            threat += 1;
            "threat"
        };
        let ok = if expected.is_empty() {
            got.is_empty()
        } else {
            expected.iter().all(|falco_rule| {
                let pack: Vec<String> = if is_trail {
                    // The trail keeps Falco's names (current ones, after its 2022 renames).
                    let mut names = vec![falco_rule.to_string()];
                    if let Some(new) = spec["rule_renames_since_2022"][falco_rule].as_str() {
                        names.push(new.to_string());
                    }
                    names
                } else {
                    FALCO_TO_PACK
                        .iter()
                        .find(|(f, _)| f == falco_rule)
                        .map(|(_, p)| p.iter().map(|s| s.to_string()).collect())
                        .unwrap_or_default()
                };
                pack.iter()
                    .any(|p| got.iter().any(|g| g.eq_ignore_ascii_case(p)))
            })
        };
        let settings = if overrides.is_empty() {
            String::new()
        } else {
            format!(" [mirrors {}]", overrides.join(", "))
        };
        rows.push(format!(
            "{name:<58} {kind:<7} {} expected {:?} got {:?}{settings}",
            if ok { "ok  " } else { "MISS" },
            expected,
            got
        ));
        if !ok {
            failures.push(rows.last().unwrap().clone());
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    eprintln!(
        "Falco k8s audit suite, case by case ({} cases):",
        cases.len()
    );
    for r in &rows {
        eprintln!("  {r}");
    }
    eprintln!(
        "{threat} threat cases, {trail} trail cases (with rules.audit_trail), {silent} must-stay-silent, {excluded} excluded; {} failing",
        failures.len()
    );
    assert_eq!(cases.len(), 66);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
