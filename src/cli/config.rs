//! `tripline config check`: everything `tripline run` would reject, short of I/O.

use std::path::{Path, PathBuf};

use anyhow::Result;

use tripline::config::Config;

use super::{print_errors, EXIT_USAGE};

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file without running anything.
    Check { file: PathBuf },
}

/// `tripline config check FILE`.
pub fn check(file: &Path) -> Result<u8> {
    let cfg = match Config::load(file) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    for w in cfg.warnings() {
        println!("warning: {w}");
    }
    let loaded = cfg.rules.load(&[], true);
    for w in &loaded.warnings {
        println!("warning: {w}");
    }
    for w in tripline::source::partition_warnings(&cfg.sources, &loaded.rules, &loaded.correlations)
    {
        println!("warning: {w}");
    }
    print_errors(&loaded);
    if loaded.errors.is_empty() {
        let inactive = loaded.rules.iter().filter(|r| !r.is_active()).count();
        let correlations = match loaded.correlations.len() {
            0 => String::new(),
            n => format!(", {n} correlations"),
        };
        if inactive == 0 {
            println!(
                "{}: OK ({} rules{correlations})",
                file.display(),
                loaded.rules.len()
            );
        } else {
            println!(
                "{}: OK ({} rules{correlations}, {inactive} inactive until their placeholders have values)",
                file.display(),
                loaded.rules.len()
            );
        }
        Ok(0)
    } else {
        Ok(EXIT_USAGE)
    }
}
