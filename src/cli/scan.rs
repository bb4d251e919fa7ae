//! `tripline scan`: the rules over audit logs on disk or stdin, alerts as ECS documents or a
//! readable report.

use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::ValueEnum;

use chrono::{DateTime, Utc};

use tripline::detect::{
    Alert, Detector, Forensic, HtmlReport, PreparedEvent, Report, TimelineFormat, MAX_ERRORS_SHOWN,
};
use tripline::event::{Chunk, DecodeError, DecodeStats, Input, InputReader, Piece, Rest};
use tripline::rules::{Hits, Match, RuleSet};

use super::{RuleSource, EXIT_USAGE};

#[derive(Clone, Copy, ValueEnum, PartialEq)]
pub enum Format {
    /// A readable summary grouped by severity and rule.
    Text,
    /// One ECS alert document per line on stdout, nothing else there.
    Json,
}

#[derive(clap::Args)]
pub struct ScanArgs {
    /// Audit logs: JSON lines, Event or EventList JSON, plain or gzip, or directories. `-` or
    /// nothing reads stdin.
    paths: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Never show a progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Threads decoding and matching events (default: one per core); 1 reads the inputs on
    /// one thread. Alerts, report and errors are the same whatever the number.
    #[arg(long)]
    threads: Option<NonZeroUsize>,
    /// Also write the report as one self-contained HTML page (no script, nothing loaded from
    /// the network): summary, timeline chart, alerts by rule, by identity and by ATT&CK tactic.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Also write every alert, in time order, as a timeline Timesketch imports: CSV
    /// (`.csv`) or JSON lines (`.jsonl`), chosen by the file's extension.
    #[arg(long, value_name = "FILE")]
    timeline: Option<PathBuf>,
    #[command(flatten)]
    source: RuleSource,
}

/// The bytes of lines handed to a decoding thread at a time; `TRIPLINE_SCAN_CHUNK_BYTES`
/// overrides it (the tests cut their inputs into many small chunks).
const CHUNK_BYTES: usize = 1 << 20;

/// `tripline scan`.
pub fn run(args: ScanArgs) -> Result<u8> {
    let (cfg, set) = match args.source.load_for_detection() {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    // Shared with the decoding threads of a parallel scan.
    let set = Arc::new(set);
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.paths.clone()
    };
    for p in &paths {
        if p.as_os_str() != "-" && !p.exists() {
            eprintln!("error: {}: no such file or directory", p.display());
            return Ok(EXIT_USAGE);
        }
    }
    let timeline = match &args.timeline {
        None => None,
        Some(p) => match TimelineFormat::from_path(p) {
            Some(f) => Some((p.clone(), f)),
            None => {
                eprintln!(
                    "error: --timeline {}: the file must end in .csv or .jsonl",
                    p.display()
                );
                return Ok(EXIT_USAGE);
            }
        },
    };
    let mut inputs = Input::expand(&paths).context("listing inputs")?;
    // Stateful rules need time order across files (rotated backups, several API servers).
    Input::order_by_first_event(&mut inputs);
    let reader = InputReader {
        max_line_bytes: cfg.input.max_line_bytes,
        ..InputReader::default()
    };
    let total: u64 = inputs.iter().filter_map(Input::size_on_disk).sum();
    let bar =
        (!args.no_progress && std::io::stderr().is_terminal() && total > 32 << 20).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });

    let stdout = std::io::stdout();
    let mut out = Output {
        json: args.format == Format::Json,
        out: std::io::BufWriter::new(stdout.lock()),
        write_err: None,
        report: Report {
            inputs: inputs.len(),
            ..Report::default()
        },
        forensic: (args.html.is_some() || timeline.is_some()).then(Forensic::default),
    };
    // Correlations run in memory, over the inputs in the order given.
    let mut detector = Detector::new(&set, cfg.cluster_name.clone())
        .with_correlator(Detector::correlator_for(&set));
    let threads = args
        .threads
        .or_else(|| std::thread::available_parallelism().ok())
        .map_or(1, NonZeroUsize::get);
    let scan = Scan {
        reader: &reader,
        bar: bar.as_ref(),
    };
    let done = if threads > 1 {
        let chunk_bytes = std::env::var("TRIPLINE_SCAN_CHUNK_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CHUNK_BYTES);
        scan.parallel(&inputs, &set, &mut detector, &mut out, threads, chunk_bytes)?
    } else {
        scan.sequential(&inputs, &mut detector, &mut out)?
    };
    if !done {
        // stdout was closed (`| head`): nothing more to say.
        return Ok(0);
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // The end of input closes every correlation window.
    let mut last = Vec::new();
    detector.finish(&mut |a| last.push(a));
    for a in last {
        out.alert(a);
    }
    if let Some(e) = out.write_err.take() {
        return Err(e).context("writing alerts");
    }
    let Output {
        mut out,
        report,
        forensic,
        ..
    } = out;
    let skipped = report.stats.skipped_total();
    if skipped > MAX_ERRORS_SHOWN as u64 {
        eprintln!(
            "... {} more skipped inputs not shown",
            skipped - MAX_ERRORS_SHOWN as u64
        );
    }
    let suppressed = set
        .suppressed_total
        .load(std::sync::atomic::Ordering::Relaxed);
    let repeats = set
        .repeats_suppressed_total
        .load(std::sync::atomic::Ordering::Relaxed);
    match args.format {
        Format::Json => {
            out.flush().context("writing alerts")?;
            eprint!("{}", summary_line(&report, suppressed, repeats));
        }
        Format::Text => {
            out.write_all(report.render_text(&set, suppressed).as_bytes())
                .and_then(|()| out.flush())
                .context("writing the report")?;
        }
    }
    if let Some(forensic) = &forensic {
        if let Some(path) = &args.html {
            let names: Vec<String> = inputs.iter().map(Input::name).collect();
            let page = HtmlReport {
                report: &report,
                forensic,
                rules: &set,
                input_names: &names,
                suppressed_total: suppressed,
            }
            .render();
            std::fs::write(path, page)
                .with_context(|| format!("writing the HTML report to {}", path.display()))?;
        }
        if let Some((path, format)) = &timeline {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating the timeline {}", path.display()))?;
            forensic
                .write_timeline(&set, *format, &mut std::io::BufWriter::new(file))
                .with_context(|| format!("writing the timeline to {}", path.display()))?;
        }
    }
    Ok(0)
}

/// Where alerts go: stdout in JSON mode, and the report.
struct Output<W: Write> {
    json: bool,
    out: W,
    /// The first error writing stdout; later alerts are only counted.
    write_err: Option<std::io::Error>,
    report: Report,
    /// What `--html` and `--timeline` need, when asked for.
    forensic: Option<Forensic>,
}

impl<W: Write> Output<W> {
    fn alert(&mut self, a: Alert) {
        if self.json && self.write_err.is_none() {
            if let Err(e) = self
                .out
                .write_all(a.json())
                .and_then(|()| self.out.write_all(b"\n"))
            {
                self.write_err = Some(e);
            }
        }
        self.report.record_alert(&a);
        if let Some(f) = &mut self.forensic {
            f.record_alert(&a);
        }
    }

    /// True when the scan keeps the time range of the events (for `--html`).
    fn wants_times(&self) -> bool {
        self.forensic.is_some()
    }

    fn saw_range(&mut self, first: Option<DateTime<Utc>>, last: Option<DateTime<Utc>>) {
        if let Some(f) = &mut self.forensic {
            f.saw_range(first, last);
        }
    }

    /// The end of one input: its skipped lines are shown (the first [`MAX_ERRORS_SHOWN`] of the
    /// scan) and kept for the report. `Ok(false)`: stdout was closed, the scan stops.
    fn input_done(&mut self, errors: Vec<DecodeError>) -> Result<bool> {
        for e in errors {
            if self.report.errors_shown.len() < MAX_ERRORS_SHOWN {
                eprintln!("{e}");
            }
            self.report.record_error(e);
        }
        match self.write_err.take() {
            None => Ok(true),
            Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Some(e) => Err(e).context("writing alerts"),
        }
    }
}

/// One scan's inputs and progress bar.
struct Scan<'a> {
    reader: &'a InputReader,
    bar: Option<&'a indicatif::ProgressBar>,
}

impl Scan<'_> {
    fn show_progress(&self) {
        if let Some(b) = self.bar {
            b.set_position(self.reader.progress.load(Ordering::Relaxed));
        }
    }

    /// Every input in turn on this thread. `Ok(false)`: stdout was closed.
    fn sequential<W: Write>(
        &self,
        inputs: &[Input],
        detector: &mut Detector<'_>,
        out: &mut Output<W>,
    ) -> Result<bool> {
        for input in inputs {
            let mut stats = std::mem::take(&mut out.report.stats);
            let mut errors = Vec::new();
            let mut span = Span::new(out.wants_times());
            self.reader.read(
                input,
                &mut stats,
                &mut |ev| {
                    span.note(ev);
                    detector.detect(ev, &mut |a| out.alert(a));
                    if self.bar.is_some() && stats_tick() {
                        self.show_progress();
                    }
                },
                &mut |e| errors.push(e),
            );
            out.report.stats = stats;
            out.saw_range(span.first, span.last);
            if !out.input_done(errors)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The inputs cut into chunks of lines ([`InputReader::cut`]) by a reader thread; `threads`
    /// threads decode each chunk and find the rules each event matches ([`RuleSet::hits`])
    /// and work out what the stateful step reads of the events with hits
    /// ([`Detector::prepare`]); this thread takes the chunks back in input order and runs the
    /// stateful part of detection on them ([`Detector::detect_prepared`]), decoding again only
    /// the events that alert. Everything
    /// the order matters to (throttling, first-seen baselines, correlations, once-per-request,
    /// re-delivered events, errors and alerts) sees the events in input order, as
    /// [`Scan::sequential`] does. At most four chunks per thread are in flight.
    fn parallel<W: Write>(
        &self,
        inputs: &[Input],
        set: &Arc<RuleSet>,
        detector: &mut Detector<'_>,
        out: &mut Output<W>,
        threads: usize,
        chunk_bytes: usize,
    ) -> Result<bool> {
        // Room for a chunk that takes long (many alerts) while the threads go on with the next.
        let in_flight = 4 * threads;
        let (tokens_tx, tokens_rx) = crossbeam_channel::bounded::<()>(in_flight);
        for _ in 0..in_flight {
            let _ = tokens_tx.send(());
        }
        let (work_tx, work_rx) = crossbeam_channel::bounded::<(u64, Chunk)>(in_flight);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<(u64, Taken)>(in_flight);
        // The buffers of chunks done with, for the reader to read into again.
        let (spare_tx, spare_rx) = crossbeam_channel::bounded::<Vec<u8>>(in_flight);
        // The threads are not joined: they end when the inputs do, and when stdout closes
        // (`| head`) the scan ends without waiting for a read to return.
        {
            let reader = self.reader.clone();
            let inputs = inputs.to_vec();
            let done_tx = done_tx.clone();
            spawn("scan-reader", move || {
                let mut seq = 0u64;
                for input in &inputs {
                    let mut open = true;
                    let mut spare = || spare_rx.try_recv().ok();
                    reader.cut_into(input, chunk_bytes, &mut spare, &mut |piece| {
                        open = tokens_rx.recv().is_ok()
                            && match piece {
                                Piece::Lines(chunk) => work_tx.send((seq, chunk)).is_ok(),
                                Piece::Rest(rest) => done_tx.send((seq, Taken::Rest(rest))).is_ok(),
                            };
                        seq += 1;
                        open
                    });
                    if !open {
                        return;
                    }
                }
            })?;
        }
        for _ in 0..threads {
            let work_rx = work_rx.clone();
            let done_tx = done_tx.clone();
            let reader = self.reader.clone();
            let set = set.clone();
            let times = out.wants_times();
            spawn("scan-decode", move || {
                for (seq, chunk) in work_rx {
                    let scanned = scan_chunk(&reader, &set, chunk, times);
                    if done_tx
                        .send((seq, Taken::Scanned(Box::new(scanned))))
                        .is_err()
                    {
                        return;
                    }
                }
            })?;
        }
        drop(work_rx);
        drop(done_tx);
        let mut waiting = std::collections::BTreeMap::new();
        let mut next = 0u64;
        let mut errors = Vec::new();
        for (seq, piece) in &done_rx {
            waiting.insert(seq, piece);
            while let Some(piece) = waiting.remove(&next) {
                next += 1;
                // A piece is taken: the reader may cut another.
                let _ = tokens_tx.try_send(());
                let last = match piece {
                    Taken::Scanned(scanned) => {
                        let last = scanned.chunk.is_last();
                        let chunk = self.detect_in_order(*scanned, detector, out, &mut errors);
                        let _ = spare_tx.try_send(chunk.into_buffer());
                        last
                    }
                    Taken::Rest(rest) => {
                        let mut stats = std::mem::take(&mut out.report.stats);
                        let mut span = Span::new(out.wants_times());
                        self.reader.read_rest(
                            *rest,
                            &mut stats,
                            &mut |ev| {
                                span.note(ev);
                                detector.detect(ev, &mut |a| out.alert(a));
                            },
                            &mut |e| errors.push(e),
                        );
                        out.report.stats = stats;
                        out.saw_range(span.first, span.last);
                        true
                    }
                };
                self.show_progress();
                // stdout closed (`| head`): the scan stops at this chunk, not at the end of
                // the input.
                let closed = out.write_err.is_some();
                if (last || closed) && !out.input_done(std::mem::take(&mut errors))? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The stateful part of detection on a decoded chunk's events with hits, in their order,
    /// from what the decoding thread read of them ([`Detector::detect_prepared`]). Only the
    /// events whose rules alert are decoded again, for their alerts.
    fn detect_in_order<W: Write>(
        &self,
        scanned: Scanned,
        detector: &mut Detector<'_>,
        out: &mut Output<W>,
        errors: &mut Vec<DecodeError>,
    ) -> Chunk {
        out.report.stats.add(&scanned.stats);
        out.saw_range(scanned.span.first, scanned.span.last);
        errors.extend(scanned.errors);
        let mut pending = Vec::new();
        let mut lines: Vec<usize> = Vec::new();
        for h in scanned.hits {
            let matches = detector.detect_prepared(h.prepared, &mut |a| {
                pending.push(Pending::Alert(a));
            });
            if !matches.is_empty() {
                if lines.last() != Some(&h.line) {
                    lines.push(h.line);
                }
                pending.push(Pending::Event {
                    line: h.line,
                    event: h.event,
                    matches,
                });
            }
        }
        let mut pending = pending.into_iter().peekable();
        if !lines.is_empty() {
            let mut at = EventAt::default();
            self.reader
                .reread_lines(&scanned.chunk, &lines, &mut |line, ev| {
                    let event = at.next(line);
                    while let Some(Pending::Alert(a)) =
                        pending.next_if(|p| matches!(p, Pending::Alert(_)))
                    {
                        out.alert(a);
                    }
                    if let Some(Pending::Event { matches, .. }) = pending.next_if(|p| {
                        matches!(p, Pending::Event { line: l, event: e, .. } if *l == line && *e == event)
                    }) {
                        detector.alerts_of(ev, matches, &mut |a| out.alert(a));
                    }
                });
        }
        // Correlation alerts after the last event that alerted (and none other, unless the
        // chunk's lines read differently the second time).
        for p in pending {
            if let Pending::Alert(a) = p {
                out.alert(a);
            }
        }
        scanned.chunk
    }
}

/// An alert of a chunk in its place, or an event's matches that wait for the event.
enum Pending<'r> {
    Alert(Alert),
    Event {
        line: usize,
        event: usize,
        matches: Vec<Match<'r>>,
    },
}

/// Starts a thread named `name` (as `top` and `perf` show it).
fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .map(drop)
        .with_context(|| format!("starting the {name} thread"))
}

/// What a decoding thread hands back, or the rest of a pretty-printed input.
enum Taken {
    Scanned(Box<Scanned>),
    Rest(Box<Rest>),
}

/// A chunk decoded on a decoding thread: what it counted and skipped, and the events that
/// matched a rule.
struct Scanned {
    chunk: Chunk,
    stats: DecodeStats,
    errors: Vec<DecodeError>,
    hits: Vec<EventHits>,
    span: Span,
}

/// The earliest and latest event time of some events, when the scan keeps them (`--html`):
/// reading an event's time costs a timestamp parse, which the other outputs do not need.
#[derive(Default)]
struct Span {
    on: bool,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl Span {
    fn new(on: bool) -> Span {
        Span {
            on,
            ..Span::default()
        }
    }

    fn note(&mut self, ev: &tripline::event::Event<'_>) {
        if !self.on {
            return;
        }
        if let Some(t) = ev.time() {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
    }
}

/// What the stateful step reads of an event with hits, and where the event is: its line in
/// the chunk and its place among the line's events (an `EventList` or an envelope holds
/// several).
struct EventHits {
    line: usize,
    event: usize,
    prepared: PreparedEvent,
}

/// Numbers the events of each line as they come.
#[derive(Default)]
struct EventAt {
    line: Option<usize>,
    event: usize,
}

impl EventAt {
    fn next(&mut self, line: usize) -> usize {
        if self.line == Some(line) {
            self.event += 1;
        } else {
            self.line = Some(line);
            self.event = 0;
        }
        self.event
    }
}

/// Decodes `chunk` and finds the rules each event matches: the part of detection that keeps no
/// state, on a decoding thread.
fn scan_chunk(reader: &InputReader, set: &RuleSet, chunk: Chunk, times: bool) -> Scanned {
    let mut span = Span::new(times);
    let mut stats = DecodeStats::default();
    let mut errors = Vec::new();
    let mut hits = Vec::new();
    let mut rules = Hits::new();
    let mut at = EventAt::default();
    reader.read_chunk(
        &chunk,
        &mut stats,
        &mut |line, ev| {
            let event = at.next(line);
            span.note(ev);
            set.hits(ev, &mut rules);
            if !rules.is_empty() {
                hits.push(EventHits {
                    line,
                    event,
                    prepared: Detector::prepare(set, ev, std::mem::take(&mut rules)),
                });
            }
        },
        &mut |e| errors.push(e),
    );
    Scanned {
        chunk,
        stats,
        errors,
        hits,
        span,
    }
}

/// Cheap rate limiter for progress updates.
fn stats_tick() -> bool {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed) % 4096 == 0
}

fn summary_line(report: &Report, suppressed: u64, repeats: u64) -> String {
    let repeats = if repeats == 0 {
        String::new()
    } else {
        format!(", {repeats} repeats of one request")
    };
    format!(
        "tripline: {} alerts ({} throttled{repeats}), {} events, {} skipped\n",
        report.alerts_total(),
        suppressed,
        report.stats.events,
        report.stats.skipped_total()
    )
}
