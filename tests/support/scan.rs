//! `tripline scan --format json` of the binary under test, for the tests that read its alerts.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `tripline scan --format json [extra...] path`, which must succeed; returns the alerts
/// and what it wrote on stderr.
pub fn scan_json(extra: &[&str], path: &Path) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tripline"))
        .args(["scan", "--format", "json"])
        .args(extra)
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
