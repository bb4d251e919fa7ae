//! The `tripline` command line. Policy (messages, exit codes) lives here; the work is in the
//! library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use tripline::config::Config;
use tripline::event::{Input, InputReader};
use tripline::rules::{self, RuleSet};
use tripline::scan::{Detector, Report, MAX_ERRORS_SHOWN};

/// Exit code for usage, configuration and rule-load errors.
const EXIT_USAGE: u8 = 2;
/// Exit code when rule tests fail.
const EXIT_TESTS_FAILED: u8 = 1;

#[derive(Parser)]
#[command(
    name = "tripline",
    version,
    about = "Kubernetes audit-log analyzer: Sigma detections over kube-apiserver audit events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the rules over audit logs (files, directories, .gz, or stdin) and report alerts.
    Scan(ScanArgs),
    /// Work with detection rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Work with the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check an audit policy against the loaded rules.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Run the daemon: follow the configured sources, detect, deliver to the sinks.
    Run {
        /// The config file.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Format {
    /// A readable summary grouped by severity and rule.
    Text,
    /// One ECS alert document per line on stdout, nothing else there.
    Json,
}

#[derive(clap::Args)]
struct RuleSource {
    /// Add rule files or directories to the built-in pack (repeatable).
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<PathBuf>,
    /// Do not load the built-in pack.
    #[arg(long)]
    no_default_rules: bool,
    /// The config file (rules, placeholders, field mappings, exceptions, cluster name).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ScanArgs {
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

#[derive(Subcommand)]
enum RulesCommand {
    /// Validate rules; print every problem as file:line: message.
    Check {
        /// Rule files or directories (default: the built-in pack).
        paths: Vec<PathBuf>,
    },
    /// Run every rule's embedded tests.
    Test {
        /// Rule files or directories (default: the built-in pack).
        paths: Vec<PathBuf>,
    },
    /// List the loaded rules: id, level, title, tags.
    List {
        #[command(flatten)]
        source: RuleSource,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Report the rules that can never fire under an audit Policy file (their events are not
    /// recorded, or not with the bodies or stages they read). Exit 1 if there are any.
    Check {
        /// The audit Policy (`audit.k8s.io/v1`), as given to `--audit-policy-file`.
        policy: PathBuf,
        #[command(flatten)]
        source: RuleSource,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate a config file without running anything.
    Check { file: PathBuf },
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

/// Loads rules for `scan` and `rules list`; every load error is printed and fails the command.
fn load_rules(src: &RuleSource) -> Result<(Config, RuleSet), u8> {
    let cfg = load_config(src.config.as_ref()).map_err(|e| {
        eprintln!("error: {e:#}");
        EXIT_USAGE
    })?;
    let loaded = rules::load_configured(&cfg, &src.rules, !src.no_default_rules);
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    if !loaded.errors.is_empty() {
        for e in &loaded.errors {
            eprintln!("{e}");
        }
        eprintln!(
            "error: {} rule problems; nothing was scanned",
            loaded.errors.len()
        );
        return Err(EXIT_USAGE);
    }
    if loaded.rules.is_empty() {
        eprintln!("error: no rules loaded");
        return Err(EXIT_USAGE);
    }
    let set = RuleSet::new(loaded.rules).with_throttle_max_keys(cfg.rules.throttle_max_keys);
    Ok((cfg, set))
}

fn scan(args: ScanArgs) -> Result<u8> {
    let (cfg, set) = match load_rules(&args.source) {
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
    let inputs = Input::expand(&paths).context("listing inputs")?;
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
    let mut detector = Detector::new(&set, cfg.cluster_name.clone());
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
    match args.format {
        Format::Json => {
            out.flush().context("writing alerts")?;
            eprint!("{}", summary_line(&report, suppressed));
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

fn summary_line(report: &Report, suppressed: u64) -> String {
    format!(
        "tripline: {} alerts ({} throttled), {} events, {} skipped\n",
        report.alerts_total(),
        suppressed,
        report.stats.events,
        report.stats.skipped_total()
    )
}

/// Loads rules for `rules check|test`: the given paths, or the built-in pack.
fn load_for_rules_cmd(paths: &[PathBuf]) -> rules::Loaded {
    let cfg = Config::default();
    let builtin = paths.is_empty();
    rules::load_configured(&cfg, paths, builtin)
}

fn policy_check(path: &std::path::Path, source: &RuleSource) -> Result<u8> {
    let policy = match tripline::policy::Policy::load(path) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let (_, set) = match load_rules(source) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let mut never = 0;
    let mut unknown = Vec::new();
    for r in set.rules() {
        match tripline::policy::check_rule(&policy, r) {
            tripline::policy::Verdict::CanFire => {}
            tripline::policy::Verdict::Never(reasons) => {
                never += 1;
                println!("{} ({}) can never fire:", r.meta.title, r.meta.id);
                for why in reasons {
                    println!("    {why}");
                }
            }
            tripline::policy::Verdict::NoExamples => unknown.push(r.meta.title.as_str()),
        }
    }
    if !unknown.is_empty() {
        println!(
            "note: {} rules have no positive tests to check with: {}",
            unknown.len(),
            unknown.join("; ")
        );
    }
    println!(
        "{}: {} of {} rules can fire, {never} cannot{}",
        path.display(),
        set.len() - never - unknown.len(),
        set.len(),
        if unknown.is_empty() {
            String::new()
        } else {
            format!(", {} unchecked", unknown.len())
        }
    );
    Ok(if never > 0 { 1 } else { 0 })
}

fn rules_cmd(cmd: RulesCommand) -> Result<u8> {
    match cmd {
        RulesCommand::Check { paths } => {
            let loaded = load_for_rules_cmd(&paths);
            for e in &loaded.errors {
                println!("{e}");
            }
            if loaded.errors.is_empty() {
                println!("{} rules OK", loaded.rules.len());
                Ok(0)
            } else {
                println!(
                    "{} problems; {} rules OK",
                    loaded.errors.len(),
                    loaded.rules.len()
                );
                Ok(EXIT_USAGE)
            }
        }
        RulesCommand::Test { paths } => {
            let loaded = load_for_rules_cmd(&paths);
            for e in &loaded.errors {
                println!("{e}");
            }
            let (ran, failures) = rules::run_tests(&loaded.rules);
            for f in &failures {
                print!("{f}");
            }
            let without: Vec<&str> = loaded
                .rules
                .iter()
                .filter(|r| r.tests.is_empty())
                .map(|r| r.meta.title.as_str())
                .collect();
            if !without.is_empty() {
                println!(
                    "note: {} rules have no embedded tests: {}",
                    without.len(),
                    without.join("; ")
                );
            }
            println!(
                "{} passed, {} failed ({} rules)",
                ran - failures.len(),
                failures.len(),
                loaded.rules.len()
            );
            if !loaded.errors.is_empty() {
                return Ok(EXIT_USAGE);
            }
            Ok(if failures.is_empty() {
                0
            } else {
                EXIT_TESTS_FAILED
            })
        }
        RulesCommand::List { source } => {
            let (_, set) = match load_rules(&source) {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            for r in set.rules() {
                println!(
                    "{}  {:<13}  {}  [{}]",
                    r.meta.id,
                    r.meta.level.as_str(),
                    r.meta.title,
                    r.meta.tags.join(", ")
                );
            }
            Ok(0)
        }
    }
}

/// `tripline run`: start-up, run, signal-driven shutdown.
fn run_daemon(config: PathBuf) -> Result<u8> {
    use tripline::pipeline::{self, Control};
    use tripline::telemetry::{init_logging, Health, LogFormat, Metrics, TelemetryServer};

    let cfg = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    init_logging(if cfg.telemetry.log_format == "text" {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let rules = match pipeline::load_rules(&cfg) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                tracing::error!("{e}");
            }
            tracing::error!(problems = errors.len(), "rules did not load; not starting");
            return Ok(EXIT_USAGE);
        }
    };
    tracing::info!(rules = rules.len(), config = %config.display(), "tripline starting");

    // The first SIGTERM/SIGINT asks for a graceful stop; a second one exits at once.
    let control = Control::default();
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, control.stop.clone())
            .context("installing signal handlers")?;
        signal_hook::flag::register(sig, control.stop.clone())
            .context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, control.reload.clone())
        .context("installing signal handlers")?;

    let metrics = Metrics::new();
    let health = Health::new();
    let server = match cfg.telemetry.listen {
        Some(addr) => Some(TelemetryServer::start(
            addr,
            metrics.clone(),
            health.clone(),
        )?),
        None => None,
    };
    if let Some(s) = &server {
        tracing::info!(listen = %s.local_addr(), "telemetry endpoint up");
    }
    let result = pipeline::run(cfg, rules, metrics, health, control);
    if let Some(s) = server {
        s.shutdown();
    }
    match result {
        Ok(()) => Ok(0),
        Err(e) => {
            tracing::error!(error = %e, "tripline stopped with an error");
            Ok(EXIT_USAGE)
        }
    }
}

fn main() -> ExitCode {
    tripline::sink::tls::install_crypto_provider();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run_daemon(config),
        Command::Scan(args) => scan(args),
        Command::Rules(cmd) => rules_cmd(cmd),
        Command::Policy(PolicyCommand::Check { policy, source }) => policy_check(&policy, &source),
        Command::Config(ConfigCommand::Check { file }) => match Config::load(&file) {
            Ok(cfg) => {
                for w in cfg.warnings() {
                    println!("warning: {w}");
                }
                let loaded = rules::load_configured(&cfg, &[], true);
                for w in &loaded.warnings {
                    println!("warning: {w}");
                }
                for e in &loaded.errors {
                    println!("{e}");
                }
                if loaded.errors.is_empty() {
                    println!("{}: OK ({} rules)", file.display(), loaded.rules.len());
                    Ok(0)
                } else {
                    Ok(EXIT_USAGE)
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                Ok(EXIT_USAGE)
            }
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}
