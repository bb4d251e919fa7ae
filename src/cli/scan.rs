//! `tripline scan`: the rules over audit logs on disk or stdin, alerts as ECS documents or a
//! readable report.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ValueEnum;

use tripline::detect::{Detector, Report, MAX_ERRORS_SHOWN};
use tripline::event::{Input, InputReader};

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
    #[command(flatten)]
    source: RuleSource,
}

/// `tripline scan`.
pub fn run(args: ScanArgs) -> Result<u8> {
    let (cfg, set) = match args.source.load() {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
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
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut report = Report {
        inputs: inputs.len(),
        ..Report::default()
    };
    // Correlations run in memory, over the inputs in the order given.
    let mut detector = Detector::new(&set, cfg.cluster_name.clone())
        .with_correlator(Detector::correlator_for(&set));
    let mut write_err: Option<std::io::Error> = None;
    for input in &inputs {
        let mut stats = std::mem::take(&mut report.stats);
        let mut errors = Vec::new();
        let mut alerts = Vec::new();
        reader.read(
            input,
            &mut stats,
            &mut |ev| {
                detector.detect(ev, &mut |a| alerts.push(a));
                if let Some(b) = bar.as_ref().filter(|_| stats_tick()) {
                    b.set_position(reader.progress.load(std::sync::atomic::Ordering::Relaxed));
                }
                for a in alerts.drain(..) {
                    if args.format == Format::Json && write_err.is_none() {
                        if let Err(e) = out.write_all(a.json()).and_then(|()| out.write_all(b"\n"))
                        {
                            write_err = Some(e);
                        }
                    }
                    report.record_alert(&a);
                }
            },
            &mut |e| errors.push(e),
        );
        report.stats = stats;
        for e in errors {
            if report.errors_shown.len() < MAX_ERRORS_SHOWN {
                eprintln!("{e}");
            }
            report.record_error(e);
        }
        if let Some(e) = write_err.take() {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(0);
            }
            return Err(e).context("writing alerts");
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // The end of input closes every correlation window.
    let mut last = Vec::new();
    detector.finish(&mut |a| last.push(a));
    for a in last {
        if args.format == Format::Json {
            out.write_all(a.json())
                .and_then(|()| out.write_all(b"\n"))
                .context("writing alerts")?;
        }
        report.record_alert(&a);
    }
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
    Ok(0)
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
