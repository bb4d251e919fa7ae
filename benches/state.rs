//! The stateful rules at scale: memory of the correlation windows at 100,000 distinct groups,
//! and the size and write time of the daemon's snapshot of them.
//!
//! Run: `cargo bench --bench state` (`TRIPLINE_STATE_GROUPS` sets the number of identities,
//! 100,000 by default). Every identity reads two Secrets (one in kube-system) and is refused
//! three times, through the default pack with its correlations and first-seen rules, so each
//! identity holds a group in the refusal-burst and distinct-Secrets correlations, a key in the
//! kube-system first-seen baseline, and a throttle window. Nothing fires: the windows stay
//! below their thresholds, as most groups of a real cluster do.

use std::time::Instant;

use tripline::detect::Detector;
use tripline::event::decode_value_into;
use tripline::rules::baseline::Baselines;
use tripline::rules::RulesConfig;

/// Resident memory of this process, in bytes (Linux).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn events_of(i: usize, out: &mut Vec<String>) {
    let user = format!("user-{i:06}@corp.example.com");
    let at = |s: usize| {
        format!(
            "2026-03-01T{:02}:{:02}:{:02}.{:06}Z",
            10 + s / 3600 % 10,
            s / 60 % 60,
            s % 60,
            i % 1_000_000
        )
    };
    let t = i / 50; // 50 identities a second
    out.clear();
    for (n, ns) in [(0, "kube-system"), (1, "prod")] {
        out.push(format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"s-{i}-{n}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/{ns}/secrets/app-{n}","verb":"get","user":{{"username":"{user}","groups":["system:authenticated"]}},"sourceIPs":["10.1.{}.{}"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"secrets","namespace":"{ns}","name":"app-{n}","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"{}"}}"#,
            i / 250 % 250,
            i % 250,
            at(t)
        ));
    }
    for n in 0..3 {
        out.push(format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"r-{i}-{n}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns{n}/configmaps","verb":"list","user":{{"username":"{user}","groups":["system:authenticated"]}},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"configmaps","namespace":"ns{n}","apiVersion":"v1"}},"responseStatus":{{"code":403}},"stageTimestamp":"{}"}}"#,
            at(t)
        ));
    }
}

fn main() {
    let groups: usize = std::env::var("TRIPLINE_STATE_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cfg = RulesConfig::default();
    let loaded = cfg.load(&[], true);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let store = Baselines::default();
    let rules = loaded
        .into_rule_set(&cfg)
        .with_baselines(&store)
        .with_redelivery_window(131_072);
    let opts = tripline::detect::correlate::CorrelatorOptions {
        max_groups: groups.max(10_000),
        ..Default::default()
    };
    let correlator = Detector::correlator_with(&rules, opts).expect("the pack has correlations");
    let mut detector = Detector::new(&rules, None).with_correlator(Some(correlator.clone()));
    let before = rss();
    let started = Instant::now();
    let mut lines = Vec::new();
    let mut alerts = 0usize;
    for i in 0..groups {
        events_of(i, &mut lines);
        for l in &lines {
            decode_value_into(l, &mut |ev| {
                if let Ok(ev) = ev {
                    detector.detect(ev, &mut |_| alerts += 1);
                }
            });
        }
        if i % 64 == 63 {
            detector.flush(&mut |_| alerts += 1);
        }
    }
    detector.flush(&mut |_| alerts += 1);
    let fed = started.elapsed();
    let after = rss();
    let held = correlator.lock().map(|c| c.groups()).unwrap_or(0);
    let grown = after.saturating_sub(before);
    println!(
        "{groups} identities, {} events in {:.1} s; {alerts} alerts (the pack's stateless rules)",
        groups * 5,
        fed.as_secs_f64()
    );
    println!(
        "correlation groups held: {held}; first-seen keys: {}; process memory grew {:.1} MiB: {:.0} bytes per identity (every group, key, throttle window and delivery together)",
        store.entries(),
        grown as f64 / (1 << 20) as f64,
        grown as f64 / groups as f64
    );

    // The snapshot as the daemon takes it: copy under the cut, encode, write atomically.
    let dir = tempfile::tempdir().expect("a temp dir");
    for round in 0..3 {
        let t0 = Instant::now();
        let mut bytes = correlator
            .lock()
            .map(|c| c.snapshot_json().expect("encodes"))
            .expect("the correlator");
        bytes.extend(serde_json::to_vec(&rules.snapshot()).expect("encodes"));
        let copied = std::time::Duration::ZERO;
        let baselines = store.encode().expect("encodes");
        let encoded = t0.elapsed();
        std::fs::write(dir.path().join("state.json"), &bytes).expect("writes");
        if let Ok(p) = std::env::var("TRIPLINE_STATE_SAMPLE") {
            let _ = std::fs::write(p, &bytes[..bytes.len().min(4000)]);
        }
        std::fs::write(dir.path().join("baselines.json"), &baselines).expect("writes");
        let written = t0.elapsed();
        println!(
            "snapshot {round}: state {:.1} MiB + baselines {:.1} MiB; encoded in {:.0} ms (the workers wait this long), written in {:.0} ms",
            bytes.len() as f64 / (1 << 20) as f64,
            baselines.len() as f64 / (1 << 20) as f64,
            (encoded - copied).as_secs_f64() * 1e3,
            (written - encoded).as_secs_f64() * 1e3,
        );
    }
}
