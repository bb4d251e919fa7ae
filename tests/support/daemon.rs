//! The real `tripline run` binary in integration tests: start it with a config, query its
//! telemetry port, signal it, read its logs and outputs.

#![allow(dead_code)]

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    pub port: u16,
}

pub use super::free_port;

impl Daemon {
    /// Writes `config` to `dir/tripline.yaml` and starts the daemon (telemetry on `port`, which
    /// the config must name); its stderr goes to `dir/daemon-<port>.log`.
    pub fn spawn(dir: &Path, config: &str, port: u16) -> Daemon {
        Self::spawn_env(dir, config, port, &[])
    }

    pub fn spawn_env(dir: &Path, config: &str, port: u16, env: &[(&str, &str)]) -> Daemon {
        std::fs::write(dir.join("tripline.yaml"), config).unwrap();
        let log = std::fs::File::create(dir.join(format!("daemon-{port}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args(["run", "--config"])
            .arg(dir.join("tripline.yaml"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the binary runs");
        Daemon {
            child,
            dir: dir.to_path_buf(),
            port,
        }
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self, limit: Duration) {
        wait_until(
            limit,
            || {
                self.get("/readyz")
                    .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            },
            || self.logs(),
        );
    }

    pub fn get(&self, path: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    pub fn metric(&self, line_prefix: &str) -> Option<f64> {
        let body = self.get("/metrics")?;
        body.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// SIGTERM, then the exit status (within 20 s).
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("daemon-{}.log", self.port)))
            .unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed assertion must not leave a daemon running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn wait_until(limit: Duration, mut ok: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out; daemon log:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Truncates a file in place, as copy-truncate rotation does.
pub fn truncate(path: &Path) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

pub fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The JSON lines of a file a sink writes, up to its last newline: a line still being written
/// (the daemon writes while the test reads) is not read yet.
pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    whole
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {l}")))
        .collect()
}

/// Starts the daemon on `dir/logs/*.log` (read from the beginning, cluster `test`, node `cp-1`)
/// with the given `sinks:` entries.
pub fn start_tailing(dir: &Path, sinks: &str) -> Daemon {
    let port = free_port();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let cfg = format!(
        r#"cluster_name: test
node_name: cp-1
state_dir: {dir}/state
sources:
  - type: file
    name: audit
    paths: ["{dir}/logs/*.log"]
    read_from: beginning
    poll_interval: 100ms
    checkpoint_interval: 200ms
    silence_alert_after: 1h
sinks:
{sinks}
telemetry:
  listen: 127.0.0.1:{port}
  log_format: json
"#,
        dir = dir.display()
    );
    Daemon::spawn(dir, &cfg, port)
}
