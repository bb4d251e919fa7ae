//! End-to-end measurement of `tripline run` (a benchmark binary, not a test): the release
//! daemon follows a file that this program appends to, with the full rule pack and a file sink.
//!
//! 1. Throughput: a large Metadata-level corpus (real event shapes from `../shared/data/real`,
//!    else `samples/audit.log`) is appended as fast as possible, once with a file sink taking
//!    the alerts and then taking events and alerts with each worker count of
//!    `TRIPLINE_BENCH_WORKERS` (default `1,2`); reported: events/s, documents written by the
//!    sink, cores used, CPU per event next to `tripline scan --threads 1`'s on the same corpus,
//!    and peak RSS of the daemon; the events flow with its file on the disk and on /dev/shm
//!    (a tmpfs: what tripline costs, not the disk). The scan and the daemon runs are
//!    interleaved, `TRIPLINE_BENCH_RUNS` rounds (default 3), medians reported.
//! 2. Latency: alerting events are appended at a steady 1,000 events/s; reported: p50/p99 of the
//!    time from append to the alert being in the sink's file.
//!
//! 3. Elasticsearch: the events flow (every event a document) into noida-db, the
//!    Elasticsearch-compatible server the tests use; reported: documents/s, MB/s and tripline's
//!    CPU seconds per 10,000 documents.
//!
//! 4. `tripline scan --threads 1` against `--threads 2` on the throughput corpus, runs
//!    interleaved: events/s, wall time and parallel efficiency T(1) / (2 x T(2))
//!    (`TRIPLINE_BENCH_ONLY=scan-threads`).
//!
//! 5. `tripline scan --format json --threads 1` against the floor, a program that only validates
//!    the same lines with `serde_json`'s `IgnoredAny` (`corpus::validate_lines`, this binary
//!    started again), both whole processes, on a Metadata and a RequestResponse corpus of
//!    `TRIPLINE_BENCH_FLOOR_MB` (default 200) each, built by the shared recipe
//!    (`benches/support/corpus.rs`); runs alternate, `TRIPLINE_BENCH_RUNS` (default 7) each,
//!    medians: events/s and scan's rate as a fraction of the floor's
//!    (`TRIPLINE_BENCH_ONLY=scan-floor`; `TRIPLINE_BENCH_KEEP=<dir>` keeps the two corpora there).
//!
//! Run: `cargo bench --bench daemon` (set `TRIPLINE_BENCH_EVENTS` to change the corpus size,
//! default 300000; `TRIPLINE_BENCH_ES_DOCS` the documents sent to Elasticsearch, default
//! 100000; `TRIPLINE_BENCH_ONLY=throughput|latency|elasticsearch|scan-threads|scan-floor` to run one
//! part).

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/corpus.rs"]
mod corpus;
#[path = "../tests/support/mod.rs"]
mod support;
use support::servers;

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TRIPLINE_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    dir.join("real").is_dir().then_some(dir)
}

/// The seed events as values (their members sorted).
fn seed() -> Vec<Value> {
    seed_lines()
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The seed events' lines as written, those that are JSON.
fn seed_lines() -> Vec<String> {
    let files: Vec<PathBuf> = match data_dir() {
        Some(d) => [
            "openshift/audit_in.log",
            "openshift/audit_small.log",
            "audit2rbac/demo.log",
        ]
        .iter()
        .map(|f| d.join("real").join(f))
        .collect(),
        None => vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/audit.log")],
    };
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Self::start_with(
            dir,
            &format!(
                "  - type: file\n    path: {}/out/alerts.jsonl\n    flows: [alerts]\n",
                dir.display()
            ),
        )
    }

    /// The daemon with the given `sinks:` entries.
    fn start_with(dir: &Path, sinks: &str) -> Daemon {
        Self::start_full(dir, sinks, "")
    }

    /// The daemon with the given `sinks:` entries and more top-level settings.
    fn start_full(dir: &Path, sinks: &str, more: &str) -> Daemon {
        let port = free_port();
        let rules = dir.join("rules");
        std::fs::create_dir_all(&rules).unwrap();
        // A probe rule without throttling, so every latency event alerts.
        std::fs::write(
            rules.join("probe.yml"),
            "title: Latency Probe\nid: 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9\nlogsource: {product: kubernetes, service: audit}\ndetection:\n  s:\n    userAgent: tripline-latency-probe\n  condition: s\nlevel: low\n",
        )
        .unwrap();
        let cfg = format!(
            "state_dir: {d}/state\nrules:\n  paths: [{d}/rules]\nsources:\n  - type: file\n    name: bench\n    paths: [\"{d}/logs/*.log\"]\n    read_from: beginning\n    poll_interval: 250ms\nsinks:\n{sinks}{more}telemetry:\n  listen: 127.0.0.1:{port}\n  log_format: json\n",
            d = dir.display()
        );
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("tripline.yaml"), cfg).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args(["run", "--config"])
            .arg(dir.join("tripline.yaml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
            .spawn()
            .expect("tripline runs");
        let d = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.metric("tripline_rules_loaded").is_none() {
            assert!(Instant::now() < deadline, "daemon did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn metric(&self, prefix: &str) -> Option<f64> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    /// (user+system CPU seconds, peak RSS in KiB) from /proc.
    fn usage(&self) -> (f64, u64) {
        let pid = self.child.id();
        // utime and stime.
        let cpu = proc_stat_seconds(&format!("/proc/{pid}/stat"), 11, 12);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let hwm = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (cpu, hwm)
    }

    /// CPU seconds by thread, threads of one kind (`worker-0`, `worker-1`, ...) together.
    fn threads(&self) -> BTreeMap<String, f64> {
        let mut by_kind = BTreeMap::new();
        let tasks = format!("/proc/{}/task", self.child.id());
        for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            let kind = name.trim().trim_end_matches(|c: char| c.is_ascii_digit());
            let kind = kind.strip_suffix('-').unwrap_or(kind).to_string();
            let cpu = proc_stat_seconds(&format!("{}/stat", task.path().display()), 11, 12);
            *by_kind.entry(kind).or_insert(0.0) += cpu;
        }
        by_kind
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// The Metadata corpus of `n` events, one per line.
fn corpus(n: usize) -> Vec<u8> {
    let seeds = seed();
    let mut corpus = Vec::with_capacity(n * 1200);
    for i in 0..n {
        let mut ev = seeds[i % seeds.len()].clone();
        if let Some(o) = ev.as_object_mut() {
            o.remove("requestObject");
            o.remove("responseObject");
            o.insert("level".into(), "Metadata".into());
            o.insert("auditID".into(), format!("bench-{i}").into());
        }
        serde_json::to_writer(&mut corpus, &ev).unwrap();
        corpus.push(b'\n');
    }
    corpus
}

/// CPU seconds (user + system) of this process's waited-for children, from /proc.
fn children_cpu() -> f64 {
    // cutime and cstime.
    proc_stat_seconds("/proc/self/stat", 13, 14)
}

/// The sum of two clock-tick fields of a `/proc/<pid>/stat` file, in seconds; fields counted
/// from the first after the command name (utime is 11, cutime 13).
fn proc_stat_seconds(path: &str, a: usize, b: usize) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ on Linux.
    (get(a) + get(b)) / 100.0
}

/// `tripline scan --format json --threads 1` over the corpus, output discarded: (wall seconds,
/// CPU seconds). One thread: the CPU per event of detection itself, without the parallel scan's
/// hand-offs.
fn scan_cost(corpus: &[u8]) -> (f64, f64) {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("corpus.log");
    std::fs::write(&file, corpus).unwrap();
    timed(
        Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args(["scan", "--format", "json", "--threads", "1"])
            .arg(&file),
    )
}

/// Runs `cmd` to its end, output discarded: (wall seconds, CPU seconds). An exit status above 1
/// (`scan`'s "alerts found" is 1) fails the benchmark.
fn timed(cmd: &mut Command) -> (f64, f64) {
    let cpu0 = children_cpu();
    let t = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the program runs");
    assert!(
        status.code().is_some_and(|c| c <= 1),
        "{cmd:?} failed: {status:?}"
    );
    (t.elapsed().as_secs_f64(), children_cpu() - cpu0)
}

/// `tripline scan --format json --threads 1` against `--threads 2` on the same corpus, whole
/// process wall time, runs interleaved (median of `TRIPLINE_BENCH_RUNS`, default 7, each):
/// events/s, and parallel efficiency T(1) / (2 x T(2)).
fn scan_threads(n: usize) {
    let corpus = corpus(n);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("corpus.log");
    std::fs::write(&file, &corpus).unwrap();
    let runs: usize = std::env::var("TRIPLINE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let run = |threads: &str| {
        let t = Instant::now();
        let status = Command::new(env!("CARGO_BIN_EXE_tripline"))
            .args(["scan", "--format", "json", "--threads", threads])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("tripline scan runs");
        assert!(status.success(), "scan failed: {status:?}");
        t.elapsed().as_secs_f64()
    };
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        one.push(run("1"));
        two.push(run("2"));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (t1, t2) = (median(&mut one), median(&mut two));
    let mb = corpus.len() as f64 / 1e6;
    for (threads, t) in [(1, t1), (2, t2)] {
        println!(
            "scan --threads {threads}: {n} Metadata events ({mb:.0} MB) in {t:.3} s (median of {runs}) = {:.0} events/s",
            n as f64 / t
        );
    }
    println!(
        "scan parallel efficiency at 2 threads: {:.2} (T1 / (2 x T2)), speed-up {:.2}x, on {} cores",
        t1 / (2.0 * t2),
        t1 / t2,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
}

/// `tripline scan --format json --threads 1` against validating the same lines with
/// `IgnoredAny`, both whole processes, runs alternating: see the module's part 5.
fn scan_floor() {
    let mb: usize = std::env::var("TRIPLINE_BENCH_FLOOR_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let runs: usize = std::env::var("TRIPLINE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let seeds = seed_lines();
    let tmp = tempfile::tempdir().unwrap();
    let me = std::env::current_exe().expect("the benchmark binary's path");
    for (name, metadata_only) in [("Metadata", true), ("RequestResponse", false)] {
        let corpus = corpus::build_corpus(&seeds, metadata_only, mb << 20);
        let events = memchr::memchr_iter(b'\n', &corpus).count();
        let file = tmp.path().join(format!("{name}.log"));
        std::fs::write(&file, &corpus).unwrap();
        drop(corpus);
        let (mut floor, mut scan) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            floor.push(timed(
                Command::new(&me)
                    .arg("--bench")
                    .env("TRIPLINE_BENCH_VALIDATE", &file),
            ));
            scan.push(timed(
                Command::new(env!("CARGO_BIN_EXE_tripline"))
                    .args(["scan", "--format", "json", "--threads", "1"])
                    .arg(&file),
            ));
        }
        let median = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = v.iter().map(pick).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (fw, sw) = (median(&floor, |r| r.0), median(&scan, |r| r.0));
        let (fc, sc) = (median(&floor, |r| r.1), median(&scan, |r| r.1));
        println!(
            "{name}: {events} events ({:.0} MB), median of {runs} alternating runs, whole processes",
            std::fs::metadata(&file).map_or(0, |m| m.len()) as f64 / 1e6
        );
        println!(
            "  IgnoredAny floor: {fw:.3} s = {:.0} events/s ({:.2} us CPU per event)",
            events as f64 / fw,
            fc / events as f64 * 1e6
        );
        println!(
            "  tripline scan --format json --threads 1: {sw:.3} s = {:.0} events/s ({:.2} us CPU per event): {:.2}x the floor",
            events as f64 / sw,
            sc / events as f64 * 1e6,
            fw / sw
        );
        // `TRIPLINE_BENCH_KEEP=<dir>`: the corpus is kept there, to rerun or profile.
        match std::env::var_os("TRIPLINE_BENCH_KEEP") {
            Some(dir) => {
                let kept = Path::new(&dir).join(format!("{name}.log"));
                std::fs::copy(&file, &kept).expect("copying the corpus");
                println!("  corpus kept at {}", kept.display());
            }
            None => {
                std::fs::remove_file(&file).ok();
            }
        }
    }
}

/// The daemon over a backlog of `n` Metadata events, with a file sink taking `flows`; counts
/// what the user gets: documents written by the sink (every event's document with the
/// `events` flow, the alerts with `alerts` alone).
/// With `sink_dir`, the sink's file is there (a tmpfs, so that the figure is tripline's and not
/// the disk's) rather than beside the followed file.
fn throughput_of(
    corpus: &[u8],
    n: usize,
    flows: &str,
    workers: usize,
    sink_dir: Option<&Path>,
) -> (f64, f64, f64, u64, BTreeMap<String, f64>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let sink_tmp = sink_dir.map(|d| tempfile::tempdir_in(d).unwrap());
    let out = sink_tmp
        .as_ref()
        .map_or_else(|| dir.join("out"), |t| t.path().to_path_buf());
    let d = Daemon::start_full(
        dir,
        &format!(
            "  - type: file\n    name: out\n    path: {}/docs.jsonl\n    flows: [{flows}]\n",
            out.display()
        ),
        &format!("pipeline:\n  workers: {workers}\n"),
    );
    let (cpu0, _) = d.usage();
    let log = dir.join("logs/audit.log");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let started = Instant::now();
    for chunk in corpus.chunks(4 << 20) {
        f.write_all(chunk).unwrap();
    }
    let received = "tripline_events_received_total{source=\"bench\"}";
    let written = "tripline_sink_records_delivered_total{sink=\"out\"}";
    // Done when every event was read and the sink has written what it will: with the events
    // flow at least one document per event; then until the count stops moving.
    let mut last = (0.0, Instant::now());
    loop {
        let r = d.metric(received).unwrap_or(0.0) as usize;
        let w = d.metric(written).unwrap_or(0.0);
        let events_flow = flows.contains("events");
        if r >= n && (!events_flow || w as usize >= n) {
            if w != last.0 {
                last = (w, Instant::now());
            } else if last.1.elapsed() > Duration::from_millis(300) {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not all events were read and written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The time of the last document, not of the settling wait.
    let secs = last.1.duration_since(started).as_secs_f64();
    let (cpu1, rss) = d.usage();
    let threads = d.threads();
    d.stop();
    (secs, cpu1 - cpu0, last.0, rss, threads)
}

fn throughput(n: usize) {
    // The corpus, built first so that only appending is timed.
    let corpus = corpus(n);
    let mb = corpus.len() as f64 / 1e6;
    let runs: usize = std::env::var("TRIPLINE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    // The events flow's worker counts (`TRIPLINE_BENCH_WORKERS=1,2,4,8,16` for a scaling curve).
    let workers: Vec<usize> = std::env::var("TRIPLINE_BENCH_WORKERS")
        .ok()
        .map(|v| v.split(',').filter_map(|w| w.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2]);
    // The events flow's documents go to the disk, and to a tmpfs where there is one.
    let tmpfs = Path::new("/dev/shm");
    let tmpfs = tmpfs.is_dir().then_some(tmpfs);
    let mut configs: Vec<(&str, usize, Option<&Path>)> = vec![("alerts", 0, None)];
    for sink_dir in [None, tmpfs]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
    {
        configs.extend(workers.iter().map(|&w| ("events, alerts", w, sink_dir)));
    }
    println!("{n} Metadata events ({mb:.0} MB), median of {runs} interleaved runs each");
    // Each round runs the scan baseline and then every daemon configuration, so that a change
    // in what else the machine does shows in all of them alike.
    let mut scans: Vec<(f64, f64)> = Vec::new();
    let mut daemons: Vec<Vec<Run>> = vec![Vec::new(); configs.len()];
    for _ in 0..runs {
        scans.push(scan_cost(&corpus));
        for (i, &(flows, w, sink_dir)) in configs.iter().enumerate() {
            daemons[i].push(throughput_of(&corpus, n, flows, w, sink_dir));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let scan_secs = median(scans.iter().map(|s| s.0).collect());
    let scan_cpu = median(scans.iter().map(|s| s.1).collect());
    println!(
        "scan --threads 1: {scan_secs:.2} s = {:.0} events/s, {:.2} us CPU per event",
        n as f64 / scan_secs,
        scan_cpu / n as f64 * 1e6
    );
    for ((flows, w, sink_dir), runs) in configs.iter().zip(daemons) {
        let secs = median(runs.iter().map(|r| r.0).collect());
        let cpu = median(runs.iter().map(|r| r.1).collect());
        let docs = median(runs.iter().map(|r| r.2).collect());
        let rss = runs.iter().map(|r| r.3).max().unwrap_or(0);
        // Each kind of thread's CPU per event, medians (start-up included).
        let mut stages = String::new();
        for kind in runs[0].4.keys() {
            let cpu = median(
                runs.iter()
                    .map(|r| r.4.get(kind).copied().unwrap_or(0.0))
                    .collect(),
            );
            if cpu > 0.0 {
                stages.push_str(&format!(" {kind} {:.2} us,", cpu / n as f64 * 1e6));
            }
        }
        let workers = if *w == 0 {
            "workers: default".to_string()
        } else {
            format!("workers: {w}")
        };
        let disk = sink_dir.map_or("disk".to_string(), |d| format!("{}", d.display()));
        println!(
            "daemon, flows [{flows}], {workers}, sink on {disk}: {n} events in {secs:.2} s = {:.0} events/s, {docs:.0} documents written ({:.0}/s), {:.2} CPU cores, {:.2} us CPU per event ({:.1}x scan), peak RSS {:.1} MiB\n    CPU per event by thread (whole run):{}",
            n as f64 / secs,
            docs / secs,
            cpu / secs,
            cpu / n as f64 * 1e6,
            cpu / scan_cpu.max(1e-9),
            rss as f64 / 1024.0,
            stages.trim_end_matches(',')
        );
    }
}

/// One daemon run: seconds, CPU seconds, documents written, peak RSS (KiB), CPU by thread.
type Run = (f64, f64, f64, u64, BTreeMap<String, f64>);

fn latency(rate: u64, seconds: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let d = Daemon::start(dir);
    let log = dir.join("logs/audit.log");
    let alerts = dir.join("out/alerts.jsonl");
    let total = rate * seconds;
    // Reader: tails the alerts file and notes when each probe's alert appears.
    let reader = {
        let alerts = alerts.clone();
        std::thread::spawn(move || {
            let mut seen: HashMap<String, Instant> = HashMap::new();
            let deadline = Instant::now() + Duration::from_secs(seconds + 30);
            let mut pos = 0u64;
            let mut partial = String::new();
            while (seen.len() as u64) < total && Instant::now() < deadline {
                if let Ok(mut f) = std::fs::File::open(&alerts) {
                    let _ = f.seek(SeekFrom::Start(pos));
                    let mut r = BufReader::new(f);
                    let mut line = String::new();
                    while let Ok(n) = r.read_line(&mut line) {
                        if n == 0 {
                            break;
                        }
                        pos += n as u64;
                        if !line.ends_with('\n') {
                            partial.push_str(&line);
                            line.clear();
                            continue;
                        }
                        let full = std::mem::take(&mut partial) + &line;
                        if let Ok(v) = serde_json::from_str::<Value>(&full) {
                            if let Some(id) = v
                                .pointer("/kubernetes/audit/auditID")
                                .and_then(Value::as_str)
                            {
                                seen.entry(id.to_string()).or_insert_with(Instant::now);
                            }
                        }
                        line.clear();
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        })
    };
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_micros(i * 1_000_000 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let id = format!("lat-{i}");
        let line = format!(
            "{{\"kind\":\"Event\",\"apiVersion\":\"audit.k8s.io/v1\",\"level\":\"Metadata\",\"auditID\":\"{id}\",\"stage\":\"ResponseComplete\",\"requestURI\":\"/api/v1/namespaces/default/pods\",\"verb\":\"list\",\"user\":{{\"username\":\"probe\"}},\"sourceIPs\":[\"10.0.0.1\"],\"userAgent\":\"tripline-latency-probe\",\"objectRef\":{{\"resource\":\"pods\",\"namespace\":\"default\",\"apiVersion\":\"v1\"}},\"responseStatus\":{{\"code\":200}},\"stageTimestamp\":\"2026-03-01T10:00:00Z\"}}\n"
        );
        f.write_all(line.as_bytes()).unwrap();
        sent.insert(id, Instant::now());
    }
    let seen = reader.join().unwrap();
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(id, t)| {
            seen.get(id)
                .map(|s| s.saturating_duration_since(*t).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "latency at {rate} events/s for {seconds} s: {} of {total} alerts seen; append-to-alert p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        lat.len(),
        pct(0.50),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    d.stop();
}

/// The events flow into the Elasticsearch-compatible server (noida-db from the test
/// virtualenv): every event indexed as a document, with the sink's default batch settings.
fn elasticsearch(n: usize) {
    if !servers::available(&[servers::NOIDA]) {
        println!("elasticsearch: skipped (noida-db not installed; run scripts/test.sh)");
        return;
    }
    let es = servers::Server::noida_temp();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let corpus = corpus(n);
    let sinks = format!(
        "  - type: elasticsearch\n    name: es\n    endpoints: [\"{}\"]\n    flows: [events]\n",
        es.base_url()
    );
    let d = Daemon::start_with(dir, &sinks);
    let (cpu0, _) = d.usage();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("logs/audit.log"))
        .unwrap();
    let started = Instant::now();
    f.write_all(&corpus).unwrap();
    let metric = "tripline_sink_records_delivered_total{sink=\"es\"}";
    while (d.metric(metric).unwrap_or(0.0) as usize) < n {
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "not all documents were delivered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let secs = started.elapsed().as_secs_f64();
    let (cpu1, rss) = d.usage();
    let bytes = d
        .metric("tripline_sink_bytes_delivered_total{sink=\"es\"}")
        .unwrap_or(0.0);
    let requests = d
        .metric("tripline_sink_batches_delivered_total{sink=\"es\"}")
        .unwrap_or(0.0);
    println!(
        "elasticsearch (noida-db, batch 2000 docs / 5 MiB / 1 s, gzip): {n} documents ({:.0} MB of JSON) in {secs:.2} s = {:.0} documents/s, {:.1} MB/s, {requests:.0} bulk requests, tripline CPU {:.3} s per 10,000 documents, peak RSS {:.1} MiB",
        bytes / 1e6,
        n as f64 / secs,
        bytes / 1e6 / secs,
        (cpu1 - cpu0) / n as f64 * 10_000.0,
        rss as f64 / 1024.0
    );
    d.stop();
    servers::refresh(&es.base_url(), "kubernetes-audit-*");
    let indexed = servers::count(&es.base_url(), "kubernetes-audit-*");
    println!("elasticsearch: {indexed} documents indexed");
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--bench` absent; do nothing then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // Part 5's floor, in a process of its own.
    if let Some(path) = std::env::var_os("TRIPLINE_BENCH_VALIDATE") {
        let valid = corpus::validate_lines(Path::new(&path)).expect("reading the corpus");
        println!("{valid} valid lines");
        return;
    }
    let n = std::env::var("TRIPLINE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    // `TRIPLINE_BENCH_ONLY=elasticsearch` (or `throughput`, `latency`) runs one part.
    let only = std::env::var("TRIPLINE_BENCH_ONLY").unwrap_or_default();
    let run = |part: &str| only.is_empty() || only.split(',').any(|p| p == part);
    if run("scan-threads") {
        scan_threads(n);
    }
    if run("scan-floor") {
        scan_floor();
    }
    if run("throughput") {
        throughput(n);
    }
    if run("latency") {
        latency(1000, 10);
    }
    if !run("elasticsearch") {
        return;
    }
    let es_n = std::env::var("TRIPLINE_BENCH_ES_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    elasticsearch(es_n);
}
