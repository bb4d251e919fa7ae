//! The daemon's wiring: sources -> detection workers -> sinks, with acknowledgements flowing
//! back so sources checkpoint only what every required sink confirmed.
//!
//! ```text
//! file source --Batch--> [bounded] --> workers (decode, detect, redact) --SinkBatch--> [bounded] --> sink
//!      ^                                                                                          |
//!      +------------------------------ Completion (last confirmation) <---------------------------+
//! ```
//!
//! Threads, not async tasks: reading files and matching rules are blocking and CPU-bound, and
//! bounded channels give backpressure directly (a full queue stops the source from reading).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};

use crate::config::types::{Flow, HumanDuration};
use crate::config::Config;
use crate::detect::Detector;
use crate::event::{decode_value_into, SkipReason};
use crate::rules::{Level, RuleMeta, RuleSet};
use crate::sink::{self, DeadLetters, SinkBatch, SinkHandle};
use crate::source::file::{FileSource, SourceEvent};
use crate::source::file::{FileSourceConfig, ReadFrom};
use crate::source::Batch;
use crate::source::SourceConfig;
use crate::telemetry::{
    Counter, Health, Metrics, ReloadLabels, ReloadResult, SkipLabels, SourceLabels,
};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("no sources configured (`sources:`)")]
    NoSources,
    #[error("no sinks configured (`sinks:`)")]
    NoSinks,
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error(transparent)]
    Source(#[from] crate::source::file::FileSourceError),
    #[error("{0}")]
    Rules(String),
}

/// The current rule set; swapped whole on reload.
pub type SharedRules = Arc<RwLock<Arc<RuleSet>>>;

/// Loads the configured rules; every problem is an error (a daemon does not start half-armed).
pub fn load_rules(cfg: &Config) -> Result<RuleSet, Vec<String>> {
    let loaded = cfg.rules.load(&[], true);
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    if !loaded.errors.is_empty() {
        return Err(loaded.errors.iter().map(|e| e.to_string()).collect());
    }
    Ok(RuleSet::new(loaded.rules).with_throttle_max_keys(cfg.rules.throttle_max_keys))
}

/// Signals the daemon reacts to.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Set on SIGTERM/SIGINT: stop reading, drain, checkpoint, exit.
    pub stop: Arc<AtomicBool>,
    /// Set on SIGHUP: reload the rules.
    pub reload: Arc<AtomicBool>,
}

/// Runs the pipeline until `control.stop` is set, then drains within the configured deadline.
pub fn run(
    cfg: Config,
    rules: RuleSet,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    control: Control,
) -> Result<(), PipelineError> {
    if cfg.sources.is_empty() {
        return Err(PipelineError::NoSources);
    }
    if cfg.sinks.is_empty() {
        return Err(PipelineError::NoSinks);
    }
    std::fs::create_dir_all(&cfg.state_dir).map_err(|e| {
        PipelineError::Rules(format!(
            "creating state_dir {}: {e}",
            cfg.state_dir.display()
        ))
    })?;
    // Fail now, not at the first checkpoint, if state cannot be kept.
    let probe = cfg.state_dir.join(".tripline-write-probe");
    std::fs::write(&probe, b"probe")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            PipelineError::Rules(format!(
                "state_dir {} is not writable: {e}",
                cfg.state_dir.display()
            ))
        })?;
    for w in cfg.warnings() {
        tracing::warn!("{w}");
    }
    let queue = cfg.pipeline.queue_batches;
    // Set when the shutdown deadline has passed: from then on, nothing waits for a sink any
    // more (unconfirmed batches are read again at the next start).
    let abandon = Arc::new(AtomicBool::new(false));
    let dead_letters = Arc::new(DeadLetters::new(&cfg.state_dir, &metrics));
    let mut sinks = Vec::new();
    let mut sink_threads = Vec::new();
    for (i, s) in cfg.sinks.iter().enumerate() {
        let ctx = sink::SinkContext {
            index: i,
            queue,
            metrics: &metrics,
            health: &health,
            stop: abandon.clone(),
            dead_letters: dead_letters.clone(),
            gates_readiness: !cfg
                .sources
                .iter()
                .any(|s| matches!(s, SourceConfig::Webhook(_))),
        };
        let (h, t) = sink::start(s, ctx)?;
        sinks.push(h);
        sink_threads.push(t);
    }
    let sinks: Arc<[SinkHandle]> = sinks.into();
    let rules: SharedRules = Arc::new(RwLock::new(Arc::new(rules)));
    metrics
        .rules_loaded
        .set(rules.read().map(|r| r.len()).unwrap_or(0) as i64);

    let (batch_tx, batch_rx) = crossbeam_channel::bounded::<Batch>(queue);
    let (event_tx, event_rx) = crossbeam_channel::bounded::<SourceEvent>(64);

    // Sources.
    let pipeline_health = health.component("pipeline");
    let mut source_threads = Vec::new();
    let mut watchers = Vec::new();
    let mut webhooks = Vec::new();
    for (i, s) in cfg.sources.iter().enumerate() {
        let name = s.name(i);
        // A webhook source spools what it accepts; a file source follows the spool.
        let fc = match s {
            SourceConfig::File(fc) => fc.clone(),
            SourceConfig::Kafka(kc) => {
                #[cfg(feature = "kafka")]
                {
                    let src = crate::source::kafka::KafkaSource::new(
                        &name,
                        kc,
                        cfg.pipeline.batch_max_bytes,
                        batch_tx.clone(),
                        event_tx.clone(),
                        metrics.clone(),
                    )
                    .map_err(|e| PipelineError::Rules(e.to_string()))?;
                    let stop = control.stop.clone();
                    let drain = cfg.pipeline.shutdown_timeout.0;
                    let h = health.component(&format!("source:{name}"));
                    source_threads.push(
                        std::thread::Builder::new()
                            .name(format!("source-{name}"))
                            .spawn(move || src.run(stop, drain, h))
                            .expect("spawning a thread"),
                    );
                    continue;
                }
                #[cfg(not(feature = "kafka"))]
                {
                    let _ = kc;
                    return Err(PipelineError::Rules(format!(
                        "source `{name}`: this tripline was built without Kafka support (cargo feature `kafka`)"
                    )));
                }
            }
            SourceConfig::Webhook(wc) => {
                let dir = crate::source::webhook::spool_dir(&cfg.state_dir, &name);
                let spool =
                    crate::source::spool::Spool::open(&dir, wc.spool_max_bytes).map_err(|e| {
                        PipelineError::Rules(format!(
                            "source `{name}`: opening the spool {}: {e}",
                            dir.display()
                        ))
                    })?;
                let webhook = crate::source::webhook::Webhook::start(
                    &name,
                    wc,
                    Arc::new(spool),
                    crate::source::checkpoint::Checkpoints::path(&cfg.state_dir, &name),
                    metrics.clone(),
                    health.component(&format!("webhook:{name}")),
                )
                .map_err(|e| PipelineError::Rules(e.to_string()))?;
                webhooks.push(webhook);
                FileSourceConfig {
                    name: Some(name.clone()),
                    paths: vec![crate::source::spool::Spool::glob(&dir)],
                    exclude: vec![],
                    read_from: ReadFrom::Beginning,
                    poll_interval: HumanDuration(Duration::from_millis(100)),
                    checkpoint_interval: HumanDuration(Duration::from_millis(500)),
                    silence_alert_after: wc.silence_alert_after,
                }
            }
        };
        let src = FileSource::new(
            &name,
            fc,
            &cfg.state_dir,
            cfg.input.max_line_bytes,
            cfg.pipeline.batch_max_bytes,
            batch_tx.clone(),
            event_tx.clone(),
            &metrics,
        )?;
        let (wake_tx, wake_rx) = crossbeam_channel::bounded(1);
        watchers.push(watch(&src.watch_dirs(), wake_tx, &name));
        let stop = control.stop.clone();
        let drain = cfg.pipeline.shutdown_timeout.0;
        let h = health.component(&format!("source:{name}"));
        source_threads.push(
            std::thread::Builder::new()
                .name(format!("source-{name}"))
                .spawn(move || {
                    src.run(stop, drain, wake_rx, h.clone());
                    h.set_ready(false);
                })
                .expect("spawning a thread"),
        );
    }
    drop(batch_tx);
    drop(event_tx);

    // Workers.
    let workers = if cfg.pipeline.workers == 0 {
        std::thread::available_parallelism().map_or(2, |n| n.get())
    } else {
        cfg.pipeline.workers
    };
    let mut worker_threads = Vec::new();
    for w in 0..workers {
        let ctx = WorkerContext {
            rx: batch_rx.clone(),
            rules: rules.clone(),
            sinks: sinks.clone(),
            dead_letters: dead_letters.clone(),
            cluster: cfg.cluster_name.clone(),
            node: node_name(&cfg),
            metrics: metrics.clone(),
            abandon: abandon.clone(),
        };
        worker_threads.push(
            std::thread::Builder::new()
                .name(format!("worker-{w}"))
                .spawn(move || ctx.run())
                .expect("spawning a thread"),
        );
    }
    drop(batch_rx);
    pipeline_health.set_ready(true);
    tracing::info!(
        sources = cfg.sources.len(),
        sinks = sinks.len(),
        workers,
        "pipeline running"
    );

    // Control loop: silence alerts, rule reloads, until stop.
    let mut reloader = Reloader::new(&cfg, rules.clone(), metrics.clone());
    while !control.stop.load(Ordering::Relaxed) {
        match event_rx.recv_timeout(Duration::from_millis(200)) {
            Ok(SourceEvent::Silent {
                source,
                silent,
                for_secs,
            }) => silence_alert(
                &sinks,
                &source,
                silent,
                for_secs,
                cfg.cluster_name.as_deref(),
                node_name(&cfg).as_deref(),
            ),
            Err(_) => {}
        }
        if control.reload.swap(false, Ordering::Relaxed) {
            tracing::info!("SIGHUP: reloading rules");
            reloader.reload(&cfg);
        } else {
            reloader.poll(&cfg);
        }
    }
    tracing::info!("stopping: draining in-flight batches");
    pipeline_health.set_ready(false);
    // The deadline runs from the signal, whatever stopping the webhooks takes.
    {
        let abandon = abandon.clone();
        let deadline = cfg.pipeline.shutdown_timeout.0;
        std::thread::spawn(move || {
            std::thread::sleep(deadline);
            abandon.store(true, Ordering::Relaxed);
        });
    }
    // Webhooks first: new batches get 503 with Retry-After and stay with the API server.
    for w in webhooks {
        w.stop();
    }
    for t in source_threads {
        let _ = t.join();
    }
    drop(watchers);
    for t in worker_threads {
        let _ = t.join();
    }
    drop(sinks);
    drop(reloader);
    abandon.store(true, Ordering::Relaxed);
    for t in sink_threads {
        let _ = t.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Wakes a source when its directories change (inotify). Polling remains the fallback.
fn watch(dirs: &[PathBuf], wake: Sender<()>, source: &str) -> Option<notify::RecommendedWatcher> {
    use notify::Watcher;
    let mut w = match notify::recommended_watcher(move |_res: notify::Result<notify::Event>| {
        let _ = wake.try_send(());
    }) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(source, error = %e, "inotify unavailable; polling only");
            return None;
        }
    };
    for d in dirs {
        if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(source, dir = %d.display(), error = %e, "cannot watch directory; polling it");
        }
    }
    Some(w)
}

struct WorkerContext {
    rx: Receiver<Batch>,
    rules: SharedRules,
    sinks: Arc<[SinkHandle]>,
    dead_letters: Arc<DeadLetters>,
    cluster: Option<String>,
    node: Option<String>,
    metrics: Arc<Metrics>,
    abandon: Arc<AtomicBool>,
}

/// `node_name` from the config, else the `NODE_NAME` environment variable.
fn node_name(cfg: &Config) -> Option<String> {
    cfg.node_name
        .clone()
        .or_else(|| std::env::var("NODE_NAME").ok())
        .filter(|n| !n.is_empty())
}

impl WorkerContext {
    fn run(self) {
        let wants_events = self.sinks.iter().any(|s| s.takes(Flow::Events));
        let latency = &self.metrics.batch_duration;
        let queue_depth = &self.metrics.queue_batches;
        // The alert counter of each rule, resolved again only when the rule set is swapped.
        let mut alert_counters: Option<(Arc<RuleSet>, Vec<Counter>)> = None;
        for batch in self.rx.iter() {
            if self.abandon.load(Ordering::Relaxed) {
                // Past the shutdown deadline: leave the batch unconfirmed.
                continue;
            }
            queue_depth.set(self.rx.len() as i64);
            let started = Instant::now();
            let rules = match self.rules.read() {
                Ok(r) => r.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            };
            if !alert_counters
                .as_ref()
                .is_some_and(|(r, _)| Arc::ptr_eq(r, &rules))
            {
                let ids = rules
                    .rules()
                    .iter()
                    .map(|r| (r.meta.id.as_str(), r.meta.level));
                alert_counters = Some((rules.clone(), self.metrics.alert_counters(ids)));
            }
            let alerts = alert_counters.as_ref().map_or(&[][..], |(_, c)| &c[..]);
            let mut out = Outputs::default();
            self.process(&batch, &rules, alerts, wants_events, &mut out);
            self.dispatch(&batch, &rules, out);
            latency.observe(started.elapsed().as_secs_f64());
            batch.ack.done();
        }
    }

    fn process(
        &self,
        batch: &Batch,
        rules: &RuleSet,
        alerts: &[Counter],
        wants_events: bool,
        out: &mut Outputs,
    ) {
        let events_read = self
            .metrics
            .events_received
            .get_or_create_owned(&SourceLabels::new(batch.source.clone()));
        let mut detector = Detector::new(rules, self.cluster.clone());
        detector.node_name = self.node.clone();
        let event_template = wants_events
            .then(|| crate::alert::AlertTemplate::for_events().with_host(self.node.as_deref()));
        let mut offset = batch.start_offset;
        let mut start = 0;
        let data = &batch.data;
        for (this_line, nl) in (batch.first_line..).zip(memchr::memchr_iter(b'\n', data)) {
            let raw = &data[start..nl];
            let line_offset = offset;
            offset += (nl + 1 - start) as u64;
            start = nl + 1;
            let trimmed = raw.strip_suffix(b"\r").unwrap_or(raw);
            if trimmed.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let text = match crate::event::utf8(trimmed) {
                Ok(t) => t,
                Err(e) => {
                    self.skip(
                        batch,
                        this_line,
                        line_offset,
                        SkipReason::InvalidUtf8,
                        &e.to_string(),
                        trimmed,
                    );
                    continue;
                }
            };
            decode_value_into(text, &mut |d| match d {
                Ok(ev) => {
                    events_read.inc();
                    // Only for events that produce a record: most events produce none.
                    let mut meta: Option<RecordMeta> = None;
                    detector.detect(ev, &mut |a| {
                        let rule = &rules.rules()[a.rule].meta;
                        alerts[a.rule].inc();
                        let e = meta.get_or_insert_with(|| RecordMeta::of(ev));
                        let index = a.rule;
                        out.records.push(Arc::new(sink::Record {
                            flow: Flow::Alerts,
                            id: sink::content_id(&[e.id.as_bytes(), rule.id.as_bytes()]),
                            time: e.time,
                            level: Some(rule.level),
                            rule: Some((rule.id.clone(), rule.title.clone())),
                            user: e.user.clone(),
                            doc: a.into_json(),
                        }));
                        out.rules.push(Some(index));
                    });
                    if let Some(template) = &event_template {
                        let doc = crate::alert::write_event_document(
                            template,
                            ev,
                            self.cluster.as_deref(),
                        );
                        let e = meta.take().unwrap_or_else(|| RecordMeta::of(ev));
                        out.records.push(Arc::new(sink::Record {
                            flow: Flow::Events,
                            id: e.id,
                            time: e.time,
                            level: None,
                            rule: None,
                            user: e.user,
                            doc,
                        }));
                        out.rules.push(None);
                    }
                }
                Err((reason, msg)) => {
                    self.skip(batch, this_line, line_offset, reason, &msg, trimmed)
                }
            });
        }
    }

    fn skip(
        &self,
        batch: &Batch,
        line: u64,
        offset: u64,
        reason: SkipReason,
        msg: &str,
        raw: &[u8],
    ) {
        self.metrics
            .lines_skipped
            .get_or_create_owned(&SkipLabels::new(batch.source.clone(), reason))
            .inc();
        let reason = reason.as_str();
        let offset = batch.report_offset(offset);
        tracing::warn!(source = %batch.source, path = %batch.path, line, offset, reason, "skipped: {msg}");
        self.dead_letters
            .write(&batch.source, &batch.path, line, offset, reason, msg, raw);
    }

    /// Hands each sink the records it takes (flows, level, tags); every required sink that
    /// receives something must confirm before the batch is confirmed.
    fn dispatch(&self, batch: &Batch, rules: &RuleSet, out: Outputs) {
        for s in self.sinks.iter() {
            let records: Vec<Arc<sink::Record>> = out
                .records
                .iter()
                .zip(&out.rules)
                .filter(|(r, rule)| {
                    s.filter.takes(r.flow)
                        && rule.is_none_or(|i| {
                            let meta = &rules.rules()[i].meta;
                            s.filter.takes_alert(meta.level, &meta.tags)
                        })
                })
                .map(|(r, _)| r.clone())
                .collect();
            if records.is_empty() {
                continue;
            }
            if s.required {
                // Backpressure: a full queue blocks this worker, and in turn the sources.
                batch.ack.add(1);
                let mut item = SinkBatch {
                    records,
                    ack: Some(batch.ack.clone()),
                };
                loop {
                    match s.tx.send_timeout(item, Duration::from_millis(100)) {
                        Ok(()) => break,
                        Err(crossbeam_channel::SendTimeoutError::Timeout(back)) => {
                            if self.abandon.load(Ordering::Relaxed) {
                                // Never confirmed: read again at the next start.
                                break;
                            }
                            item = back;
                        }
                        Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => {
                            tracing::error!(sink = %s.name, "sink stopped; batch not delivered");
                            break;
                        }
                    }
                }
            } else {
                // A sink nobody waits for never stalls the pipeline: when it is behind, drop.
                if let Err(e) = s.tx.try_send(SinkBatch { records, ack: None }) {
                    let b = e.into_inner();
                    sink::dropped_counter(&self.metrics, &s.name).inc_by(b.records.len() as u64);
                    for r in &b.records {
                        self.dead_letters.write_record(
                            &s.name,
                            "sink_dropped",
                            "sink queue full",
                            r,
                        );
                    }
                }
            }
        }
    }
}

/// What the records of one event share: its content id, time and user.
struct RecordMeta {
    id: String,
    time: Option<chrono::DateTime<chrono::Utc>>,
    user: Option<String>,
}

impl RecordMeta {
    fn of(ev: &crate::event::Event<'_>) -> RecordMeta {
        RecordMeta {
            id: sink::content_id(&[ev.raw().as_bytes()]),
            time: ev.time(),
            user: ev.username().map(str::to_owned),
        }
    }
}

#[derive(Default)]
struct Outputs {
    records: Vec<Arc<sink::Record>>,
    /// Per record, the rule of an alert (for the sinks' level and tag filters).
    rules: Vec<Option<usize>>,
}

/// The id of tripline's own "audit events stopped" alert.
pub const SILENCE_RULE_ID: &str = "5e1f0c3a-7a4e-4c59-9a3c-2f6d8b1e0a77";

fn silence_alert(
    sinks: &[SinkHandle],
    source: &str,
    silent: bool,
    for_secs: u64,
    cluster: Option<&str>,
    node: Option<&str>,
) {
    if !silent {
        tracing::info!(source, "audit events resumed");
        return;
    }
    tracing::warn!(
        source,
        for_secs,
        "no audit events: audit logging may be off or the API server down"
    );
    let meta = RuleMeta {
        id: SILENCE_RULE_ID.to_string(),
        title: "Audit Events Stopped".to_string(),
        description: Some(
            "A tripline source delivered no audit events for longer than its silence threshold. Disabling audit logging or stopping the API server is what an attacker covering tracks would do; it also happens when the audit log path or policy changed.".to_string(),
        ),
        status: Some("stable".to_string()),
        author: Some("tripline".to_string()),
        date: None,
        modified: None,
        level: Level::High,
        tags: vec!["attack.defense-evasion".into(), "attack.t1562.008".into()],
        references: vec![],
        falsepositives: vec!["Idle test clusters; maintenance windows".into()],
        source: "builtin:pipeline".to_string(),
        ruleset: "tripline".to_string(),
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let event = serde_json::json!({ "stageTimestamp": now });
    let message = format!("source `{source}` delivered no audit events for {for_secs} s");
    let mut doc = crate::alert::AlertTemplate::new(&meta)
        .with_host(node)
        .render(event, &message, cluster, 0);
    if let Some(obj) = doc.as_object_mut() {
        // There is no audit event behind this alert.
        obj.remove("kubernetes");
        obj.insert(
            "tripline".into(),
            serde_json::json!({ "source": source, "silent_seconds": for_secs }),
        );
    }
    let Ok(doc) = serde_json::to_vec(&doc) else {
        return;
    };
    let record = Arc::new(sink::Record {
        flow: Flow::Alerts,
        id: sink::content_id(&[
            SILENCE_RULE_ID.as_bytes(),
            source.as_bytes(),
            now.as_bytes(),
        ]),
        time: Some(chrono::Utc::now()),
        level: Some(meta.level),
        rule: Some((meta.id.clone(), meta.title.clone())),
        user: None,
        doc,
    });
    for s in sinks
        .iter()
        .filter(|s| s.takes(Flow::Alerts) && s.filter.takes_alert(meta.level, &meta.tags))
    {
        // Never blocks the control loop; a sink too far behind to take it says so.
        if s.tx
            .try_send(SinkBatch {
                records: vec![record.clone()],
                ack: None,
            })
            .is_err()
        {
            tracing::error!(sink = %s.name, source, "sink queue full: the \"Audit Events Stopped\" alert was not delivered to it");
        }
    }
}

/// Reloads rules on SIGHUP and when a rule file changes (Kubernetes updates ConfigMap volumes
/// by swapping a symlink, so modification times are read through links).
struct Reloader {
    rules: SharedRules,
    stamp: Vec<(PathBuf, Option<SystemTime>, u64)>,
    last_poll: Instant,
    metrics: Arc<Metrics>,
}

impl Reloader {
    fn new(cfg: &Config, rules: SharedRules, metrics: Arc<Metrics>) -> Reloader {
        Reloader {
            rules,
            stamp: stamp(cfg),
            last_poll: Instant::now(),
            metrics,
        }
    }

    fn poll(&mut self, cfg: &Config) {
        if self.last_poll.elapsed() < Duration::from_secs(2) {
            return;
        }
        self.last_poll = Instant::now();
        let now = stamp(cfg);
        if now != self.stamp {
            tracing::info!("rule files changed: reloading rules");
            self.reload(cfg);
        }
    }

    fn reload(&mut self, cfg: &Config) {
        self.stamp = stamp(cfg);
        match load_rules(cfg) {
            Ok(set) => {
                let n = set.len();
                if let Ok(mut w) = self.rules.write() {
                    *w = Arc::new(set);
                }
                self.metrics
                    .rule_reloads
                    .get_or_create(&ReloadLabels {
                        result: ReloadResult::Ok,
                    })
                    .inc();
                self.metrics.rules_loaded.set(n as i64);
                tracing::info!(rules = n, "rules reloaded");
            }
            Err(errors) => {
                self.metrics
                    .rule_reloads
                    .get_or_create(&ReloadLabels {
                        result: ReloadResult::Failed,
                    })
                    .inc();
                for e in &errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    problems = errors.len(),
                    "rule reload failed; the previous rules keep running"
                );
            }
        }
    }
}

fn stamp(cfg: &Config) -> Vec<(PathBuf, Option<SystemTime>, u64)> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = cfg.rules.paths.clone();
    while let Some(p) = stack.pop() {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.filter_map(Result::ok).map(|e| e.path()));
                }
            }
            Ok(m) => out.push((p, m.modified().ok(), m.len())),
            Err(_) => out.push((p, None, 0)),
        }
    }
    out.sort();
    out
}
