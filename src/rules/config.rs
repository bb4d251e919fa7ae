//! `rules:` of the config file: which rules run and how they are tuned, with pure validation,
//! the compiler options it implies and the one loader of configured rule sets.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use serde::Deserialize;

use super::correlation::{self, Correlation};
use super::{
    builtin_field_mappings, builtin_placeholders, compile_field, load_builtin,
    load_builtin_for_detection, load_paths_with, CompileOptions, Compiled, Rule, RuleError,
    RuleSet, DEFAULT_THROTTLE_MAX_KEYS,
};
use crate::config::types::OneOrMany;

/// `rules:`: which rules run and how they are tuned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Load the built-in pack (default true).
    #[serde(default = "yes")]
    pub builtin: bool,
    /// More rule files or directories (`.yml`/`.yaml`), added to the pack.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Rule ids or tags to turn off.
    #[serde(default)]
    pub disable: Vec<String>,
    /// Values of `%name%` placeholders used with the `expand` modifier; they replace the
    /// pack's defaults of the same name.
    #[serde(default)]
    pub placeholders: BTreeMap<String, OneOrMany>,
    /// Field mappings: a field name used in rules -> the audit-event path(s) it means.
    #[serde(default)]
    pub field_mappings: BTreeMap<String, OneOrMany>,
    /// Per-rule exceptions: rule id -> list of Sigma selections; a match of any suppresses it.
    #[serde(default)]
    pub exceptions: BTreeMap<String, Vec<serde_yaml::Mapping>>,
    /// Bound on throttle keys held at once.
    #[serde(default = "default_throttle_keys")]
    pub throttle_max_keys: usize,
    /// Also load the pack's audit-trail rules (`audit_trail.yml`: informational records of
    /// changes such as "K8s Deployment Created"); off by default.
    #[serde(default)]
    pub audit_trail: bool,
    /// How Falco rules files among `paths` load and fire.
    #[serde(default)]
    pub falco: FalcoConfig,
}

/// `rules.falco`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalcoConfig {
    /// `first` (default, as Falco): of the Falco rules matching an event, only the first in
    /// load order alerts; `all`: every one.
    #[serde(default)]
    pub rule_matching: crate::rules::falco::RuleMatching,
    /// Accept appends to the list names of Falco's older rules files
    /// (`falco_privileged_images`, ...), applying them to today's names.
    #[serde(default)]
    pub legacy_list_names: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            builtin: true,
            paths: Vec::new(),
            disable: Vec::new(),
            placeholders: BTreeMap::new(),
            field_mappings: BTreeMap::new(),
            exceptions: BTreeMap::new(),
            throttle_max_keys: DEFAULT_THROTTLE_MAX_KEYS,
            audit_trail: false,
            falco: FalcoConfig::default(),
        }
    }
}

fn yes() -> bool {
    true
}

fn default_throttle_keys() -> usize {
    DEFAULT_THROTTLE_MAX_KEYS
}

impl RulesConfig {
    /// Compiler options from this config: built-in placeholders overridden by the config's,
    /// built-in field mappings plus the config's.
    pub fn compile_options(&self, ruleset: &str) -> CompileOptions {
        let mut placeholders: HashMap<String, Vec<String>> = builtin_placeholders();
        for (k, v) in &self.placeholders {
            placeholders.insert(k.clone(), v.to_vec());
        }
        let mut field_mappings = builtin_field_mappings();
        for (k, v) in &self.field_mappings {
            field_mappings.insert(k.clone(), v.to_vec());
        }
        CompileOptions {
            placeholders,
            field_mappings,
            ruleset: ruleset.to_string(),
        }
    }

    /// Problems found without reading rule files, each `key: message` relative to `rules`.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.throttle_max_keys == 0 {
            p.push("throttle_max_keys: must be at least 1".to_string());
        }
        for (k, v) in &self.field_mappings {
            for path in v.to_vec() {
                if let Err(e) = crate::event::FieldPath::parse(&path) {
                    p.push(format!("field_mappings.{k}: {e}"));
                }
            }
        }
        let opts = self.compile_options("custom");
        for (id, list) in &self.exceptions {
            for (i, sel) in list.iter().enumerate() {
                if sel.is_empty() {
                    p.push(format!(
                        "exceptions.{id}[{i}]: an exception needs at least one field"
                    ));
                }
                for (k, v) in sel {
                    let key = k.as_str().unwrap_or_default();
                    if let Err(e) = compile_field(&opts, key, v) {
                        p.push(format!("exceptions.{id}[{i}].{key}: {e}"));
                    }
                }
            }
        }
        p
    }
}

/// What loading a configured rule set produced.
#[derive(Debug)]
pub struct Loaded {
    pub rules: Vec<Rule>,
    /// Correlation rules, resolved against `rules` (indices into it), a correlation's
    /// correlation inputs before it.
    pub correlations: Vec<Correlation>,
    pub errors: Vec<RuleError>,
    /// Non-fatal findings (e.g. a disabled id that no rule has).
    pub warnings: Vec<String>,
}

impl Loaded {
    /// The rule set to run, with the config's bounds.
    pub fn into_rule_set(self, cfg: &RulesConfig) -> RuleSet {
        RuleSet::new(self.rules)
            .with_correlations(self.correlations)
            .with_throttle_max_keys(cfg.throttle_max_keys)
            .with_rule_matching(cfg.falco.rule_matching)
    }
}

impl RulesConfig {
    /// Loads the rules this config asks for, plus `extra_paths`: the built-in pack (when both
    /// `builtin` and the config's `builtin` say so; its audit-trail rules when `audit_trail`
    /// is on), rule files, then applies `disable` and
    /// `exceptions`. Duplicate rule ids are errors. The one loader behind `scan`, `rules`,
    /// `config check`, `policy check` and the daemon.
    pub fn load(&self, extra_paths: &[PathBuf], builtin: bool) -> Loaded {
        self.load_with(extra_paths, builtin, true)
    }

    /// [`RulesConfig::load`] for detection (`scan`, the daemon): the default pack is loaded
    /// without its embedded tests ([`load_builtin_for_detection`]), which only `rules test`
    /// and `policy` read; the rules are the same.
    pub fn load_for_detection(&self, extra_paths: &[PathBuf], builtin: bool) -> Loaded {
        self.load_with(extra_paths, builtin, false)
    }

    fn load_with(&self, extra_paths: &[PathBuf], builtin: bool, tests: bool) -> Loaded {
        let cfg = self;
        let mut all = Compiled::default();
        if builtin && cfg.builtin {
            let opts = cfg.compile_options("tripline");
            all.append(&mut if tests {
                load_builtin(&opts, cfg.audit_trail)
            } else {
                load_builtin_for_detection(&opts, cfg.audit_trail)
            });
        }
        let mut paths = cfg.paths.clone();
        paths.extend(extra_paths.iter().cloned());
        all.append(&mut load_paths_with(
            &paths,
            &cfg.compile_options("custom"),
            crate::rules::falco::LoadOptions {
                legacy_list_names: cfg.falco.legacy_list_names,
            },
        ));
        self.link(all)
    }

    /// The second half of [`RulesConfig::load`], on documents already compiled (from any
    /// number of sources): checks that ids and names are unique, applies `generate`,
    /// `disable` and `exceptions`, and resolves the correlations.
    pub fn link(&self, all: Compiled) -> Loaded {
        let cfg = self;
        let mut warnings = Vec::new();
        let Compiled {
            mut rules,
            correlations: mut docs,
            mut errors,
            warnings: load_warnings,
        } = all;
        warnings.extend(load_warnings.iter().map(|w| w.to_string()));

        // Ids and names share one namespace: correlations refer to either.
        let mut seen: HashMap<String, String> = HashMap::new();
        let mut unique = |keys: [Option<&str>; 2], source: &str, line: usize| {
            let mut problem = None;
            for (what, k) in ["id", "name"].into_iter().zip(keys) {
                let Some(first) = k.filter(|k| !k.is_empty()).and_then(|k| seen.get(k)) else {
                    continue;
                };
                problem = Some(format!(
                    "duplicate rule {what} `{}` (first defined in {first})",
                    k.unwrap_or_default()
                ));
                break;
            }
            if let Some(message) = problem {
                errors.push(RuleError {
                    source: source.to_string(),
                    line,
                    message,
                });
                return false;
            }
            for k in keys.into_iter().flatten().filter(|k| !k.is_empty()) {
                seen.insert(k.to_string(), format!("{source}:{line}"));
            }
            true
        };
        rules.retain(|r| {
            unique(
                [Some(&r.meta.id), r.name.as_deref()],
                &r.meta.source,
                r.line,
            )
        });
        docs.retain(|d| {
            unique(
                [Some(&d.meta.id), d.name.as_deref()],
                &d.meta.source,
                d.line,
            )
        });
        correlation::mark_alerts(&mut rules, &mut docs);

        let off = |id: &str, tags: &[String]| {
            cfg.disable
                .iter()
                .any(|d| (!id.is_empty() && d == id) || tags.iter().any(|t| t == d))
        };
        for d in &cfg.disable {
            let known = rules
                .iter()
                .map(|r| &r.meta)
                .chain(docs.iter().map(|c| &c.meta))
                .any(|m| &m.id == d || m.tags.iter().any(|t| t == d));
            if !known {
                warnings.push(format!(
                    "rules.disable: `{d}` is neither a loaded rule id nor a tag"
                ));
            }
        }
        // Correlations that refer to what `disable` removes are inactive, not broken.
        let mut disabled: HashSet<String> = HashSet::new();
        rules.retain(|r| {
            let keep = !off(&r.meta.id, &r.meta.tags);
            if !keep {
                disabled.insert(r.meta.id.clone());
                disabled.extend(r.name.clone());
            }
            keep
        });
        docs.retain(|c| {
            let keep = !off(&c.meta.id, &c.meta.tags);
            if !keep {
                disabled.insert(c.meta.id.clone());
                disabled.extend(c.name.clone());
            }
            keep
        });
        disabled.remove("");
        let correlations = correlation::resolve(docs, &rules, &disabled, &mut errors);

        let opts = cfg.compile_options("custom");
        for (id, list) in &cfg.exceptions {
            let Some(rule) = rules.iter_mut().find(|r| &r.meta.id == id) else {
                warnings.push(format!("rules.exceptions: no loaded rule has id `{id}`"));
                continue;
            };
            for sel in list {
                // Validated in RulesConfig::validate; a failure here is skipped, not fatal.
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
            correlations,
            errors,
            warnings,
        }
    }
}
