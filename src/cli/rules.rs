//! `tripline rules check|test|list`.

use std::path::PathBuf;

use anyhow::Result;

use tripline::rules::{run_tests, Loaded, RulesConfig};

use super::{print_errors, RuleSource, EXIT_TESTS_FAILED, EXIT_USAGE};

#[derive(clap::Subcommand)]
pub enum RulesCommand {
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

/// The given paths, or the built-in pack with its opt-in audit-trail rules (they are checked
/// and tested like the rest).
fn load_paths(paths: &[PathBuf]) -> Loaded {
    let cfg = RulesConfig {
        audit_trail: true,
        ..RulesConfig::default()
    };
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

/// `tripline rules ...`.
pub fn run(cmd: RulesCommand) -> Result<u8> {
    match cmd {
        RulesCommand::Check { paths } => {
            let loaded = load_paths(&paths);
            print_errors(&loaded);
            if loaded.errors.is_empty() {
                println!(
                    "{} rules OK{}",
                    loaded.rules.len(),
                    inactive_note(loaded.rules.iter())
                );
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
            let loaded = load_paths(&paths);
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
            eprintln!("{} rules{}", set.len(), inactive_note(set.rules().iter()));
            Ok(0)
        }
    }
}
