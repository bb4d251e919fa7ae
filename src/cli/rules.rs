//! `tripline rules check|test|list`.

use std::path::PathBuf;

use anyhow::Result;

use tripline::rules::{run_tests, Loaded, RulesConfig};

use super::{print_errors, RuleSource, EXIT_TESTS_FAILED, EXIT_USAGE};

#[derive(clap::Subcommand)]
pub enum RulesCommand {
    /// Validate rules (Sigma rules and Falco rules files); print every problem as
    /// file:line: message.
    Check {
        /// Rule files or directories (default: the built-in pack).
        paths: Vec<PathBuf>,
        /// Accept Falco rules files that append to the list names of Falco's older rules
        /// (like `rules.falco.legacy_list_names`).
        #[arg(long)]
        legacy_list_names: bool,
    },
    /// Run every rule's embedded tests.
    Test {
        /// Rule files or directories (default: the built-in pack).
        paths: Vec<PathBuf>,
        /// As for `check`.
        #[arg(long)]
        legacy_list_names: bool,
    },
    /// List the loaded rules (id, level, title, tags), then the correlations (with their type
    /// and the rules they refer to).
    List {
        #[command(flatten)]
        source: RuleSource,
    },
}

/// The given paths, or the built-in pack with its opt-in audit-trail rules (they are checked
/// and tested like the rest).
fn load_paths(paths: &[PathBuf], legacy_list_names: bool) -> Loaded {
    let mut cfg = RulesConfig {
        audit_trail: true,
        ..RulesConfig::default()
    };
    cfg.falco.legacy_list_names = legacy_list_names;
    cfg.load(paths, paths.is_empty())
}

/// `, N inactive (empty placeholders: a, b)`, or nothing when every rule is active.
fn inactive_note<'r>(rules: impl Iterator<Item = &'r tripline::rules::Rule>) -> String {
    let mut n = 0;
    let mut names: Vec<&str> = Vec::new();
    for r in rules.filter(|r| !r.is_active()) {
        n += 1;
        names.extend(r.empty_placeholders.iter().map(String::as_str));
    }
    names.sort_unstable();
    names.dedup();
    if n == 0 {
        String::new()
    } else {
        format!(
            " ({n} inactive until placeholders {} have values)",
            names.join(", ")
        )
    }
}

/// `N rules`.
fn rules_count(n: usize) -> String {
    format!("{n} rules")
}

/// ` and N correlations`, or nothing without correlations (the line stays as it was).
fn correlations_count(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" and {n} correlations")
    }
}

/// `, N correlations inactive (...)`, or nothing when every correlation is active.
fn inactive_correlations_note(correlations: &[tripline::rules::Correlation]) -> String {
    let mut reasons: Vec<&str> = correlations
        .iter()
        .flat_map(|c| c.inactive.iter().map(String::as_str))
        .collect();
    let n = correlations.iter().filter(|c| !c.is_active()).count();
    reasons.sort_unstable();
    reasons.dedup();
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} correlations inactive: {})", reasons.join(", "))
    }
}

/// `tripline rules ...`.
pub fn run(cmd: RulesCommand) -> Result<u8> {
    match cmd {
        RulesCommand::Check {
            paths,
            legacy_list_names,
        } => {
            let loaded = load_paths(&paths, legacy_list_names);
            print_errors(&loaded);
            for w in &loaded.warnings {
                println!("warning: {w}");
            }
            if loaded.errors.is_empty() {
                println!(
                    "{}{} OK{}{}",
                    rules_count(loaded.rules.len()),
                    correlations_count(loaded.correlations.len()),
                    inactive_note(loaded.rules.iter()),
                    inactive_correlations_note(&loaded.correlations)
                );
                Ok(0)
            } else {
                println!(
                    "{} problems; {}{} OK",
                    loaded.errors.len(),
                    rules_count(loaded.rules.len()),
                    correlations_count(loaded.correlations.len())
                );
                Ok(EXIT_USAGE)
            }
        }
        RulesCommand::Test {
            paths,
            legacy_list_names,
        } => {
            let loaded = load_paths(&paths, legacy_list_names);
            print_errors(&loaded);
            let (ran, failures) = run_tests(&loaded.rules);
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
            let (mut ran, mut failed) = (ran, failures.len());
            if !loaded.correlations.is_empty() {
                // Event sequences through the rules and a fresh correlator.
                let set = tripline::rules::RuleSet::new(loaded.rules.clone())
                    .with_correlations(loaded.correlations.clone());
                let (c_ran, c_failures) = tripline::detect::run_correlation_tests(&set);
                for f in &c_failures {
                    println!("{f}");
                }
                ran += c_ran;
                failed += c_failures.len();
                let untested: Vec<&str> = loaded
                    .correlations
                    .iter()
                    .filter(|c| c.tests.is_empty())
                    .map(|c| c.meta.title.as_str())
                    .collect();
                if !untested.is_empty() {
                    println!(
                        "note: {} correlations have no embedded tests: {}",
                        untested.len(),
                        untested.join("; ")
                    );
                }
            }
            println!(
                "{} passed, {} failed ({} rules{})",
                ran - failed,
                failed,
                loaded.rules.len(),
                correlations_count(loaded.correlations.len())
            );
            if !loaded.errors.is_empty() {
                return Ok(EXIT_USAGE);
            }
            Ok(if failed == 0 { 0 } else { EXIT_TESTS_FAILED })
        }
        RulesCommand::List { source } => {
            let (_, set) = match source.load() {
                Ok(v) => v,
                Err(code) => return Ok(code),
            };
            for r in set.rules() {
                let inactive = if r.is_active() {
                    String::new()
                } else {
                    format!(
                        "  (inactive: empty placeholders {})",
                        r.empty_placeholders.join(", ")
                    )
                };
                println!(
                    "{}  {:<13}  {}  [{}]{inactive}",
                    r.meta.id,
                    r.meta.level.as_str(),
                    r.meta.title,
                    r.meta.tags.join(", ")
                );
            }
            for c in set.correlations() {
                let inactive = if c.is_active() {
                    String::new()
                } else {
                    format!("  (inactive: {})", c.inactive.join(", "))
                };
                let id = if c.meta.id.is_empty() {
                    c.name.as_deref().unwrap_or("-")
                } else {
                    &c.meta.id
                };
                println!(
                    "{id}  {:<13}  {}  [{}]  correlation: {} of {}{inactive}",
                    c.meta.level.as_str(),
                    c.meta.title,
                    c.meta.tags.join(", "),
                    c.kind.as_str(),
                    c.references.join(", ")
                );
            }
            eprintln!(
                "{}{}{}{}",
                rules_count(set.len()),
                correlations_count(set.correlations().len()),
                inactive_note(set.rules().iter()),
                inactive_correlations_note(set.correlations())
            );
            Ok(0)
        }
    }
}
