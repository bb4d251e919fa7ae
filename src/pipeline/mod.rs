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

pub mod partitions;
mod reload;
mod silence;
mod state;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::ConfigFile;
use crate::detect::correlate::CorrelatorOptions;
use crate::detect::Detector;
use crate::rules::baseline::Baselines;
use crate::rules::RuleSet;
use crate::sink::{self, DeadLetters, SinkHandle};
use crate::source::{self, Batch, SourceConfig, SourceContext, SourceEvent};
use crate::telemetry::{Health, Metrics};

pub use partitions::{Changelog, PartitionId, PartitionStates, PARTITION_STATE_VERSION};
pub use reload::load_rules;
pub use silence::SILENCE_RULE_ID;
pub use state::{STATE_FILE, STATE_VERSION};

use reload::Reloader;
use silence::silence_alert;
use worker::{node_name, WorkerContext};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("no sources configured (`sources:`)")]
    NoSources,
    #[error("no sinks configured (`sinks:`)")]
    NoSinks,
    #[error(transparent)]
    Sink(#[from] sink::SinkError),
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("state_dir {}: {error}", path.display())]
    StateDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("starting thread `{name}`: {error}")]
    Thread {
        name: String,
        #[source]
        error: std::io::Error,
    },
}

/// The current rule set; swapped whole on reload.
pub type SharedRules = Arc<RwLock<Arc<RuleSet>>>;

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
    file: ConfigFile,
    rules: RuleSet,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    control: Control,
) -> Result<(), PipelineError> {
    let cfg = file.config.clone();
    if cfg.sources.is_empty() {
        return Err(PipelineError::NoSources);
    }
    if cfg.sinks.is_empty() {
        return Err(PipelineError::NoSinks);
    }
    // Fail now, not at the first checkpoint, if state cannot be kept.
    let probe = cfg.state_dir.join(".tripline-write-probe");
    std::fs::create_dir_all(&cfg.state_dir)
        .and_then(|()| std::fs::write(&probe, b"probe"))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|error| PipelineError::StateDir {
            path: cfg.state_dir.clone(),
            error,
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
    // The stateful rules' state: first-seen baselines (one store for every worker, kept
    // across reloads), and the snapshot of throttles, correlations and alerts in flight.
    let baselines = Arc::new(Baselines::load_or_set_aside(&cfg.state_dir));
    let st = &cfg.stateful;
    let correlator_options = CorrelatorOptions {
        lateness: st.lateness.0,
        max_groups: st.max_groups,
        ..CorrelatorOptions::default()
    };
    let mut saved = state::load(&cfg.state_dir);
    let mut rules = rules
        .with_baselines(&baselines)
        .with_redelivery_window(st.redelivery_window);
    if let Some(f) = saved.as_mut() {
        rules = rules.with_state(std::mem::take(&mut f.rules));
    }
    let rules = Arc::new(rules);
    let correlator = Arc::new(std::sync::Mutex::new(Some((
        rules.clone(),
        Detector::correlator_with(&rules, correlator_options),
    ))));
    let rules: SharedRules = Arc::new(RwLock::new(rules));
    let gate = Arc::new(RwLock::new(()));
    let inflight = Arc::new(state::Inflight::default());
    let partitions = Arc::new(partitions::PartitionStates::new(
        correlator_options,
        rules.clone(),
        gate.clone(),
        inflight.clone(),
        metrics.clone(),
    ));
    let mut keeper = state::StateKeeper {
        gate: gate.clone(),
        inflight: inflight.clone(),
        rules: rules.clone(),
        correlator: correlator.clone(),
        baselines: baselines.clone(),
        state_dir: cfg.state_dir.clone(),
        metrics: metrics.clone(),
        evictions_seen: baselines.evictions(),
        partitions: partitions.clone(),
    };
    if let Some(f) = saved {
        keeper.restore(f);
    }
    keeper.baseline_metrics();
    metrics
        .rules_loaded
        .set(rules.read().map(|r| r.len()).unwrap_or(0) as i64);

    // Sources hand batches to a gate that takes their bytes from the input budget before they
    // join the workers' queue: `queue_batches` bounds how many wait, the budget how many bytes
    // wait or are being processed, whatever the size of a line and the number of workers.
    let (batch_tx, gate_rx) = crossbeam_channel::bounded::<Batch>(1);
    // Each batch carries its place in the order the gate let batches through, which the
    // workers' stateful step follows (`worker::Turnstile`).
    let (work_tx, batch_rx) =
        crossbeam_channel::bounded::<(Batch, Option<sink::Charge>, u64)>(queue);
    let (event_tx, event_rx) = crossbeam_channel::bounded::<SourceEvent>(64);

    // Sources.
    let pipeline_health = health.component("pipeline");
    let mut sources = Vec::new();
    for (index, s) in cfg.sources.iter().enumerate() {
        let ctx = SourceContext {
            index,
            state_dir: &cfg.state_dir,
            max_line_bytes: cfg.input.max_line_bytes,
            batch_max_bytes: cfg.pipeline.batch_max_bytes,
            batches: batch_tx.clone(),
            events: event_tx.clone(),
            metrics: &metrics,
            health: &health,
            stop: control.stop.clone(),
            drain_timeout: cfg.pipeline.shutdown_timeout.0,
            partitions: partitions.clone(),
        };
        sources.push(source::start(s, ctx)?);
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
    let input_budget = sink::InflightBudget::new(cfg.pipeline.max_input_bytes);
    let gate_abandon = abandon.clone();
    worker_threads.push(spawn("batches".to_string(), move || {
        for (turn, batch) in (0u64..).zip(gate_rx.iter()) {
            let charge =
                input_budget.take(batch.data.len(), &|| gate_abandon.load(Ordering::Relaxed));
            if work_tx.send((batch, charge, turn)).is_err() {
                break;
            }
        }
    })?);
    let budget = sink::InflightBudget::new(cfg.pipeline.max_inflight_bytes);
    let last_batch = Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
    let turns = Arc::new(worker::Turnstile::default());
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
            max_event_bytes: cfg.pipeline.max_event_bytes,
            budget: budget.clone(),
            correlator: correlator.clone(),
            gate: gate.clone(),
            inflight: inflight.clone(),
            correlator_options,
            watches_idle: w == 0,
            idle_timeout: st.idle_timeout.0,
            last_batch: last_batch.clone(),
            turns: turns.clone(),
            partitions: partitions.clone(),
        };
        worker_threads.push(spawn(format!("worker-{w}"), move || ctx.run())?);
    }
    // Snapshots: every `snapshot_interval`, and once more when everything has stopped.
    let keeper_stop = Arc::new(AtomicBool::new(false));
    let keeper_thread = {
        let stop = keeper_stop.clone();
        let interval = st.snapshot_interval.0;
        spawn("state".to_string(), move || {
            let mut next = std::time::Instant::now() + interval;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20).min(interval));
                if std::time::Instant::now() >= next {
                    // A large state pauses the workers while it is copied: snapshot no more
                    // often than keeps that pause within 5% of the time.
                    let paused = keeper.snapshot(false);
                    next = std::time::Instant::now() + interval.max(paused * 20);
                }
            }
            keeper.snapshot(true);
        })?
    };
    drop(batch_rx);
    pipeline_health.set_ready(true);
    tracing::info!(
        sources = cfg.sources.len(),
        sinks = sinks.len(),
        workers,
        "pipeline running"
    );

    // Control loop: silence alerts, rule reloads, until stop.
    let mut reloader = Reloader::new(
        file,
        rules.clone(),
        metrics.clone(),
        reload::Carry {
            baselines: baselines.clone(),
            gate: gate.clone(),
            correlator: correlator.clone(),
            correlator_options,
            redelivery_window: st.redelivery_window,
        },
    );
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
            reloader.reload();
        } else {
            reloader.poll();
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
    for s in &mut sources {
        s.stop_intake();
    }
    for s in sources {
        s.join();
    }
    for t in worker_threads {
        let _ = t.join();
    }
    keeper_stop.store(true, Ordering::Relaxed);
    let _ = keeper_thread.join();
    drop(sinks);
    drop(reloader);
    abandon.store(true, Ordering::Relaxed);
    for t in sink_threads {
        let _ = t.join();
    }
    tracing::info!("stopped");
    Ok(())
}

/// Starts a named thread of the pipeline.
fn spawn(name: String, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, PipelineError> {
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(f)
        .map_err(|error| PipelineError::Thread { name, error })
}
