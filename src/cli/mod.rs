//! The commands of the `tripline` binary, one module each. Policy (messages, exit codes) lives
//! here; the work is in the library.

pub mod config;
pub mod policy;
pub mod rules;
pub mod run;
pub mod scan;

use std::path::PathBuf;

use tripline::config::Config;
use tripline::rules::{Loaded, RuleSet};

/// Exit code for usage, configuration and rule-load errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when rule tests fail.
pub const EXIT_TESTS_FAILED: u8 = 1;

/// Where the rules of `scan`, `rules list` and `policy check` come from.
#[derive(clap::Args)]
pub struct RuleSource {
    /// Add rule files or directories to the built-in pack (repeatable).
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Do not load the built-in pack.
    #[arg(long)]
    pub no_default_rules: bool,
    /// The config file (rules, placeholders, field mappings, exceptions, cluster name).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Also load the pack's audit-trail rules (informational records of changes), like
    /// `rules.audit_trail: true` in the config.
    #[arg(long)]
    pub audit_trail: bool,
    /// Of the Falco rules matching an event, `first` (as Falco by default) or `all` alert,
    /// like `rules.falco.rule_matching` in the config.
    #[arg(long, value_name = "first|all", value_parser = parse_rule_matching)]
    pub rule_matching: Option<tripline::rules::falco::RuleMatching>,
}

fn parse_rule_matching(s: &str) -> Result<tripline::rules::falco::RuleMatching, String> {
    match s {
        "first" => Ok(tripline::rules::falco::RuleMatching::First),
        "all" => Ok(tripline::rules::falco::RuleMatching::All),
        _ => Err(format!("`{s}`: expected first or all")),
    }
}

impl RuleSource {
    /// Loads the config and the rules; every problem is printed and fails the command with
    /// [`EXIT_USAGE`].
    pub fn load(&self) -> Result<(Config, RuleSet), u8> {
        self.load_with(true)
    }

    /// [`RuleSource::load`] for detection: the default pack without its embedded tests
    /// ([`tripline::rules::RulesConfig::load_for_detection`]), the same rules, sooner.
    pub fn load_for_detection(&self) -> Result<(Config, RuleSet), u8> {
        self.load_with(false)
    }

    fn load_with(&self, tests: bool) -> Result<(Config, RuleSet), u8> {
        let cfg = match &self.config {
            Some(p) => Config::load(p).map_err(|e| {
                eprintln!("error: {e}");
                EXIT_USAGE
            })?,
            None => Config::default(),
        };
        let mut cfg = cfg;
        cfg.rules.audit_trail |= self.audit_trail;
        if let Some(m) = self.rule_matching {
            cfg.rules.falco.rule_matching = m;
        }
        let loaded = if tests {
            cfg.rules.load(&self.rules, !self.no_default_rules)
        } else {
            cfg.rules
                .load_for_detection(&self.rules, !self.no_default_rules)
        };
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
        let set = loaded.into_rule_set(&cfg.rules);
        Ok((cfg, set))
    }
}

/// Prints every rule-load problem (one `path:line: message` per line) on stdout.
pub fn print_errors(loaded: &Loaded) {
    for e in &loaded.errors {
        println!("{e}");
    }
}
