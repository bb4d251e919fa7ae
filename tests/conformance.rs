//! Conformance over the public audit data in `../shared/data` (or `$TRIPLINE_SHARED_DATA`): real
//! events decode, and the default pack alerts on Falco's Kubernetes audit traces where it should
//! and stays quiet where it should.
//!
//! When the folder is absent these tests print why and pass without checking anything.

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
fn scan(path: &PathBuf) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["scan", "--format", "json"])
        .arg(path)
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "scan of {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("alerts are JSON"))
        .collect();
    (alerts, String::from_utf8_lossy(&out.stderr).into_owned())
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
