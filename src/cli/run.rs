//! `tripline run`: the daemon's start-up, run and signal-driven shutdown.

use std::path::PathBuf;

use anyhow::{Context, Result};

use tripline::config::ConfigFile;
use tripline::pipeline::{self, Control};
use tripline::telemetry::{init_logging, Health, LogFormat, Metrics, TelemetryServer};

use super::EXIT_USAGE;

/// `tripline run`: start-up, run, signal-driven shutdown.
pub fn run(config: PathBuf) -> Result<u8> {
    let file = match ConfigFile::load(&config) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    let cfg = &file.config;
    init_logging(if cfg.telemetry.log_format == "text" {
        LogFormat::Text
    } else {
        LogFormat::Json
    });
    let rules = match pipeline::load_rules(cfg) {
        Ok(r) => r,
        Err(errors) => {
            for e in &errors {
                tracing::error!("{e}");
            }
            tracing::error!(problems = errors.len(), "rules did not load; not starting");
            return Ok(EXIT_USAGE);
        }
    };
    tracing::info!(rules = rules.len(), inactive = rules.inactive_len(), config = %config.display(), "tripline starting");

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
    let result = pipeline::run(file, rules, metrics, health, control);
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
