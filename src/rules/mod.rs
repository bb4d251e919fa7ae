//! Detection rules: the Sigma front end, the compiled rule model, the [`RuleSet`] engine and the
//! embedded-test harness.

mod condition;
mod harness;
mod matcher;
pub mod model;
mod ruleset;
mod sigma;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub use condition::{ConditionError, Expr};
pub use harness::{run_tests, TestFailure};
pub use matcher::{Cmp, Pattern, StrMatcher};
pub use model::{Level, Rule, RuleMeta};
pub use ruleset::{Match, RuleSet, DEFAULT_THROTTLE_MAX_KEYS};
pub use sigma::{
    builtin_field_mappings, compile_field, load_str, parse_duration, CompileOptions, RuleError,
};

use crate::config::Config;

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

/// Compiles the built-in pack.
pub fn load_builtin(opts: &CompileOptions) -> (Vec<Rule>, Vec<RuleError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in builtin_rule_files() {
        let (mut r, mut e) = load_str(&format!("detections/{name}"), text, opts);
        rules.append(&mut r);
        errors.append(&mut e);
    }
    (rules, errors)
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
pub fn load_paths(paths: &[PathBuf], opts: &CompileOptions) -> (Vec<Rule>, Vec<RuleError>) {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for p in paths {
        let mut files = Vec::new();
        if let Err(e) = collect_rule_files(p, &mut files) {
            errors.push(RuleError {
                source: p.display().to_string(),
                line: 0,
                message: e.to_string(),
            });
            continue;
        }
        for f in files {
            let source = f.display().to_string();
            match std::fs::read_to_string(&f) {
                Ok(text) => {
                    let (mut r, mut e) = load_str(&source, &text, opts);
                    rules.append(&mut r);
                    errors.append(&mut e);
                }
                Err(e) => errors.push(RuleError {
                    source,
                    line: 0,
                    message: e.to_string(),
                }),
            }
        }
    }
    (rules, errors)
}

/// What loading a configured rule set produced.
#[derive(Debug)]
pub struct Loaded {
    pub rules: Vec<Rule>,
    pub errors: Vec<RuleError>,
    /// Non-fatal findings (e.g. a disabled id that no rule has).
    pub warnings: Vec<String>,
}

/// Loads the rules a config asks for, plus `extra_paths`: the built-in pack (unless turned off),
/// rule files, then applies `disable` and `exceptions`. Duplicate rule ids are errors.
pub fn load_configured(cfg: &Config, extra_paths: &[PathBuf], builtin: bool) -> Loaded {
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if builtin && cfg.rules.builtin {
        let (mut r, mut e) = load_builtin(&cfg.compile_options("tripline"));
        rules.append(&mut r);
        errors.append(&mut e);
    }
    let mut paths = cfg.rules.paths.clone();
    paths.extend(extra_paths.iter().cloned());
    let (mut r, mut e) = load_paths(&paths, &cfg.compile_options("custom"));
    rules.append(&mut r);
    errors.append(&mut e);

    let mut seen: HashMap<String, String> = HashMap::new();
    rules.retain(|r| match seen.get(&r.meta.id) {
        Some(first) => {
            errors.push(RuleError {
                source: r.meta.source.clone(),
                line: r.line,
                message: format!(
                    "duplicate rule id `{}` (first defined in {first})",
                    r.meta.id
                ),
            });
            false
        }
        None => {
            seen.insert(r.meta.id.clone(), format!("{}:{}", r.meta.source, r.line));
            true
        }
    });

    for d in &cfg.rules.disable {
        let known = rules
            .iter()
            .any(|r| &r.meta.id == d || r.meta.tags.iter().any(|t| t == d));
        if !known {
            warnings.push(format!(
                "rules.disable: `{d}` is neither a loaded rule id nor a tag"
            ));
        }
    }
    rules.retain(|r| {
        !cfg.rules
            .disable
            .iter()
            .any(|d| &r.meta.id == d || r.meta.tags.iter().any(|t| t == d))
    });

    let opts = cfg.compile_options("custom");
    for (id, list) in &cfg.rules.exceptions {
        let Some(rule) = rules.iter_mut().find(|r| &r.meta.id == id) else {
            warnings.push(format!("rules.exceptions: no loaded rule has id `{id}`"));
            continue;
        };
        for sel in list {
            // Validated in Config::validate; a failure here is skipped, not fatal.
            let conds: Result<Vec<_>, _> = sel
                .iter()
                .map(|(k, v)| compile_field(&opts, k.as_str().unwrap_or_default(), v))
                .collect();
            if let Ok(conds) = conds {
                rule.exceptions.push(conds);
            }
        }
    }
    Loaded {
        rules,
        errors,
        warnings,
    }
}
