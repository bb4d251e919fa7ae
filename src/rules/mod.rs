//! Detection rules: the Sigma front end, the compiled rule model, the [`RuleSet`] engine and the
//! embedded-test harness.

pub mod baseline;
mod condition;
mod config;
pub mod correlation;
pub mod falco;
mod harness;
mod matcher;
pub mod model;
mod ruleset;
mod sigma;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use condition::{ConditionError, Expr};
pub use config::{Loaded, RulesConfig};

pub use correlation::{Correlation, CorrelationDoc, CorrelationInput, CorrelationKind};
pub use harness::{run_tests, TestFailure};
pub use matcher::{Cmp, LazyRegex, Pattern, StrMatcher};
pub use model::{Level, Rule, RuleMeta};
pub use ruleset::{
    Hits, Match, Prepared, RuleSet, RuleSetSnapshot, DEFAULT_REQUEST_MAX_KEYS,
    DEFAULT_THROTTLE_MAX_KEYS,
};
pub use sigma::{
    builtin_field_mappings, compile_field, compile_str, load_str, CompileOptions, Compiled,
    FieldError, RuleError,
};

/// A rule set compiled from `text` (Sigma rules and correlations) with the default rules
/// settings, for tests; panics on a rule that does not load.
#[cfg(test)]
pub(crate) fn test_rule_set(text: &str) -> RuleSet {
    let cfg = RulesConfig::default();
    let loaded = cfg.link(compile_str("t.yml", text, &cfg.compile_options("custom")));
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded.into_rule_set(&cfg)
}

mod builtin {
    include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));
}

/// The files of the default pack compiled into the binary: (file name, YAML text).
pub fn builtin_rule_files() -> &'static [(&'static str, &'static str)] {
    builtin::BUILTIN_RULE_FILES
}

/// Default placeholder values of the pack (`detections/placeholders.yaml`).
pub fn builtin_placeholders() -> HashMap<String, Vec<String>> {
    let parsed: Result<HashMap<String, serde_yaml::Value>, _> =
        serde_yaml::from_str(builtin::BUILTIN_PLACEHOLDERS);
    let mut out = HashMap::new();
    for (k, v) in parsed.unwrap_or_default() {
        let vals = match v {
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect(),
            serde_yaml::Value::String(s) => vec![s],
            _ => Vec::new(),
        };
        out.insert(k, vals);
    }
    out
}

/// The pack file of the opt-in audit-trail rules (informational records of changes, not
/// detections); loaded only when `rules.audit_trail` is on.
pub const AUDIT_TRAIL_FILE: &str = "audit_trail.yml";

/// Compiles the built-in pack; its audit-trail rules ([`AUDIT_TRAIL_FILE`]) only when
/// `audit_trail`. Correlations are parsed, not resolved (see [`RulesConfig::load`]).
pub fn load_builtin(opts: &CompileOptions, audit_trail: bool) -> Compiled {
    load_builtin_files(builtin::BUILTIN_RULE_FILES, opts, audit_trail)
}

/// [`load_builtin`] without the rules' embedded tests, which detection never reads: the same
/// rules and correlations, with the same line numbers, from a copy of the pack whose `tests:`
/// members were blanked out when tripline was built. Tests are three quarters of the pack's
/// text, and parsing YAML was most of the time `tripline scan` and the daemon took to start.
pub fn load_builtin_for_detection(opts: &CompileOptions, audit_trail: bool) -> Compiled {
    load_builtin_files(builtin::BUILTIN_RULE_FILES_WITHOUT_TESTS, opts, audit_trail)
}

/// The pack's files, compiled on up to as many threads as the machine has cores (parsing
/// YAML is most of the start-up of `tripline scan` and the daemon), largest files first; the
/// result is in file order, the same as a sequential load.
fn load_builtin_files(
    files: &[(&str, &str)],
    opts: &CompileOptions,
    audit_trail: bool,
) -> Compiled {
    let files: Vec<&(&str, &str)> = files
        .iter()
        .filter(|(name, _)| audit_trail || *name != AUDIT_TRAIL_FILE)
        .collect();
    let compile =
        |(name, text): &(&str, &str)| compile_str(&format!("detections/{name}"), text, opts);
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(files.len());
    let mut parts: Vec<Compiled> = if threads <= 1 {
        files.iter().map(|f| compile(f)).collect()
    } else {
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(files[i].1.len()));
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut done: Vec<(usize, Compiled)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&i) = order.get(k) else { break };
                            mine.push((i, compile(files[i])));
                        }
                        mine
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| match w.join() {
                    Ok(mine) => mine,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, c)| c).collect()
    };
    let mut out = Compiled::default();
    for part in &mut parts {
        out.append(part);
    }
    out
}

fn collect_rule_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            let hidden = e
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if e.is_dir() {
                collect_rule_files(&e, out)?;
            } else if matches!(e.extension().and_then(|x| x.to_str()), Some("yml" | "yaml"))
                && e.file_name().and_then(|n| n.to_str()) != Some("placeholders.yaml")
            {
                out.push(e);
            }
        }
    } else {
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// Compiles rule files and directories (`.yml`/`.yaml` below a directory, sorted; a directory's
/// `placeholders.yaml` is not a rule file). Loads what it can and reports every problem.
/// Correlations are parsed, not resolved (see [`RulesConfig::load`]).
pub fn load_paths(paths: &[PathBuf], opts: &CompileOptions) -> Compiled {
    load_paths_with(paths, opts, falco::LoadOptions::default())
}

/// True if `text` is a Falco rules file: its first YAML document is a list (of `rule`,
/// `macro` and `list` items), where a Sigma rule is a mapping.
pub fn is_falco_rules(text: &str) -> bool {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .next()
        .and_then(|doc| serde_yaml::Value::deserialize(doc).ok())
        .is_some_and(|v| v.is_sequence())
}

/// [`load_paths`], with the options of Falco rules files. Falco rules files among the paths
/// load together, in the order given (as Falco loads `rules_files`: later files append to and
/// override the items of earlier ones), after which their enabled `k8s_audit` rules join the
/// Sigma rules.
pub fn load_paths_with(
    paths: &[PathBuf],
    opts: &CompileOptions,
    falco_opts: falco::LoadOptions,
) -> Compiled {
    let mut out = Compiled::default();
    let mut falco_files: Vec<(String, String)> = Vec::new();
    for p in paths {
        let mut files = Vec::new();
        if let Err(e) = collect_rule_files(p, &mut files) {
            out.errors.push(RuleError {
                source: p.display().to_string(),
                line: 0,
                message: e.to_string(),
            });
            continue;
        }
        for f in files {
            let source = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(text) if is_falco_rules(&text) => falco_files.push((source, text)),
                Ok(text) => out.append(&mut compile_str(&source, &text, opts)),
                Err(e) => out.errors.push(RuleError {
                    source,
                    line: 0,
                    message: e.to_string(),
                }),
            }
        }
    }
    if !falco_files.is_empty() {
        out.append(&mut load_falco(&falco_files, falco_opts));
    }
    out
}

/// Loads Falco rules files `(name, text)` in order into tripline rules.
pub fn load_falco(files: &[(String, String)], options: falco::LoadOptions) -> Compiled {
    let mut out = Compiled::default();
    let as_error = |m: &falco::LoadMessage| RuleError {
        source: m.file.clone(),
        line: m.line,
        message: if m.item.is_empty() {
            m.message.clone()
        } else {
            format!("{}: {}", m.item, m.message)
        },
    };
    let mut loader = falco::Loader::new(options);
    let mut loaded = None;
    for (name, text) in files {
        match loader.add_str(name, text) {
            Ok(rules) => loaded = Some(rules),
            Err(e) => {
                // Falco stops at a file it cannot load.
                out.errors.extend(e.errors.iter().map(as_error));
                out.warnings.extend(e.warnings.iter().map(as_error));
                return out;
            }
        }
    }
    let Some(loaded) = loaded else {
        return out;
    };
    out.warnings.extend(loaded.warnings.iter().map(as_error));
    // tripline provides the fields of the k8saudit and json plugins; a rules file that needs
    // another plugin's fields fails on them (unknown field), and says why here.
    for req in &loaded.required_plugin_versions {
        if !req.alternatives.iter().any(|(name, _)| {
            matches!(
                name.as_str(),
                "k8saudit" | "json" | "k8saudit-eks" | "k8saudit-gke" | "k8saudit-aks"
            )
        }) {
            let names: Vec<&str> = req.alternatives.iter().map(|(n, _)| n.as_str()).collect();
            out.warnings.push(RuleError {
                source: files.last().map(|f| f.0.clone()).unwrap_or_default(),
                line: 0,
                message: format!(
                    "required_plugin_versions: plugin {} is not provided (tripline provides the fields of k8saudit and json)",
                    names.join(" or ")
                ),
            });
        }
    }
    let (mut rules, mut errors) = falco::to_rules(&loaded);
    out.rules.append(&mut rules);
    out.errors.append(&mut errors);
    out
}

#[cfg(test)]
mod builtin_tests {
    use super::*;

    /// The pack's files compiled on several threads give what compiling them one after the
    /// other gives: the same rules, correlations, errors and warnings, in file order.
    #[test]
    fn the_pack_compiled_in_parallel_is_the_sequential_result() {
        let opts = RulesConfig::default().compile_options("tripline");
        for audit_trail in [false, true] {
            let parallel = load_builtin_files(builtin::BUILTIN_RULE_FILES, &opts, audit_trail);
            let mut sequential = Compiled::default();
            for (name, text) in builtin::BUILTIN_RULE_FILES {
                if audit_trail || *name != AUDIT_TRAIL_FILE {
                    sequential.append(&mut compile_str(&format!("detections/{name}"), text, &opts));
                }
            }
            assert!(parallel.rules.len() > 90, "{} rules", parallel.rules.len());
            assert!(parallel.errors.is_empty(), "{:?}", parallel.errors);
            assert_eq!(format!("{parallel:?}"), format!("{sequential:?}"));
        }
    }

    /// Detection loads the pack without its embedded tests: the same rules and correlations,
    /// compiled from the same lines (source locations included), without errors; only the
    /// tests are missing.
    #[test]
    fn the_pack_without_its_tests_is_the_same_rules() {
        for audit_trail in [false, true] {
            let cfg = RulesConfig {
                audit_trail,
                ..RulesConfig::default()
            };
            let mut full = cfg.load(&[], true);
            let bare = cfg.load_for_detection(&[], true);
            assert!(full.errors.is_empty(), "{:?}", full.errors);
            assert!(bare.errors.is_empty(), "{:?}", bare.errors);
            assert!(full.rules.iter().filter(|r| !r.tests.is_empty()).count() > 50);
            assert!(full.correlations.iter().any(|c| !c.tests.is_empty()));
            assert!(bare.rules.iter().all(|r| r.tests.is_empty()));
            assert!(bare.correlations.iter().all(|c| c.tests.is_empty()));
            for r in &mut full.rules {
                r.tests.clear();
            }
            for c in &mut full.correlations {
                c.tests.clear();
            }
            assert_eq!(full.rules.len(), bare.rules.len());
            for (a, b) in full.rules.iter().zip(&bare.rules) {
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", a.meta.title);
            }
            assert_eq!(
                format!("{:?}", full.correlations),
                format!("{:?}", bare.correlations)
            );
            assert_eq!(full.warnings, bare.warnings);
        }
    }
}
