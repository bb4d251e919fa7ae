//! Falco rules files: reading their items (`rule:`, `macro:`, `list:`,
//! `required_engine_version:`, `required_plugin_versions:`), merging several files in order
//! (`append`, `override`, redefinition, `enabled`), and compiling the `k8s_audit` rules into
//! expanded conditions.
//!
//! The semantics follow Falco's rule loader (falcosecurity/falco `userspace/engine/`):
//!
//! - reading (`rule_loader_reader.cpp`, `read_item`): which keys each item takes, which are
//!   required, the `override` map (`decode_overrides`: lists may append or replace `items`,
//!   macros `condition`; rules may append `condition`, `output`, `desc`, `tags`,
//!   `exceptions` and replace those and `priority`, `enabled`, `warn_evttypes`,
//!   `skip-if-unknown-filter`; every overridable key the item holds must be named under
//!   `override`), `append: true` with `override` being an error, a rule item with none of
//!   `condition`/`output`/`desc`/`priority` setting only `enabled` of an earlier rule, and a
//!   rule without `source` being a `syscall` rule;
//! - merging (`rule_loader_collector.cpp`): a redefinition replaces the earlier item in its
//!   place (`define_info`), an append adds list items, or a condition (and a rule's output and
//!   description) after a space, merges exceptions by name (values appended), and is an error
//!   when nothing of that name was defined before; a rule redefined with another source is an
//!   error; a rule of a source the engine does not know is kept aside with a warning
//!   ("Unknown source ..., skipping"), and appends to it are accepted;
//! - compiling (`rule_loader_compiler.cpp`), after each file on everything read so far, as
//!   `falco_engine::load_rules` does: lists first (an item naming a list defined before the
//!   list's last definition or append takes that list's items, `compile_list_infos`), then
//!   every macro (a macro may only use macros defined before its own last definition or
//!   append, `resolve_macros` with the macro's visibility), then the rules of known sources,
//!   whose exceptions become `and not (...)` clauses of the condition text
//!   (`build_rule_exception_infos`) before it is parsed and expanded. Disabled rules are
//!   compiled too.
//!
//! Where tripline differs: only the `k8s_audit` source is known; every malformed item of a
//! file is reported, not only the first; a key an item does not take is an error (Falco's
//! schema validation only warns); [`LoadOptions::legacy_list_names`] is a tripline option.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::condition::{parse, Expr, Op};
use super::expand::Definitions;
use super::fields;
use crate::rules::model::Level;

/// The source of the rules tripline evaluates.
pub const K8S_AUDIT_SOURCE: &str = "k8s_audit";

/// List names of Falco's older rules files and the names today's `k8s_audit_rules.yaml`
/// uses for the same lists (see [`LoadOptions::legacy_list_names`]).
pub const LEGACY_LIST_NAMES: [(&str, &str); 3] = [
    ("falco_privileged_images", "k8s_audit_privileged_images"),
    (
        "falco_sensitive_mount_images",
        "k8s_audit_sensitive_mount_images",
    ),
    ("falco_hostnetwork_images", "k8s_audit_hostnetwork_images"),
];

/// How rules files are loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Compatibility with local rules files written for Falco's older rules, which trust
    /// images by appending to `falco_privileged_images`, `falco_sensitive_mount_images` and
    /// `falco_hostnetwork_images`; today's `k8s_audit_rules.yaml` reads
    /// `k8s_audit_privileged_images`, `k8s_audit_sensitive_mount_images` and
    /// `k8s_audit_hostnetwork_images` instead (and no longer defines the old names, so Falco
    /// refuses such an append). With this option an append to an old name also appends its
    /// items to the new list when that is defined, and is no error when only the new list is
    /// defined (the old list is then defined with the appended items, for older rules that
    /// still read it). Off by default, as Falco has no such option.
    pub legacy_list_names: bool,
}

/// A rule's priority, by Falco's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// `EMERGENCY`.
    Emergency,
    /// `ALERT`.
    Alert,
    /// `CRITICAL`.
    Critical,
    /// `ERROR`.
    Error,
    /// `WARNING`.
    Warning,
    /// `NOTICE`.
    Notice,
    /// `INFORMATIONAL` (also written `INFO`).
    Informational,
    /// `DEBUG`.
    Debug,
}

impl Priority {
    /// Parses a priority as Falco does (`falco_common::parse_priority`): one of the names,
    /// in any case, or `info` for `informational`.
    pub fn parse(s: &str) -> Option<Priority> {
        let all = [
            Priority::Emergency,
            Priority::Alert,
            Priority::Critical,
            Priority::Error,
            Priority::Warning,
            Priority::Notice,
            Priority::Informational,
            Priority::Debug,
        ];
        if s.eq_ignore_ascii_case("info") {
            return Some(Priority::Informational);
        }
        all.into_iter().find(|p| p.as_str().eq_ignore_ascii_case(s))
    }

    /// Falco's name of the priority, as Falco prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }

    /// The Sigma level tripline reports for the priority.
    pub fn level(self) -> Level {
        match self {
            Priority::Emergency | Priority::Alert | Priority::Critical => Level::Critical,
            Priority::Error => Level::High,
            Priority::Warning => Level::Medium,
            Priority::Notice => Level::Low,
            Priority::Informational | Priority::Debug => Level::Informational,
        }
    }
}

/// One entry of an exception's `fields`, `comps` or `values`: a string or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExceptionEntry {
    /// A string.
    Item(String),
    /// A list of entries.
    List(Vec<ExceptionEntry>),
}

impl ExceptionEntry {
    fn is_valid(&self) -> bool {
        match self {
            ExceptionEntry::Item(s) => !s.is_empty(),
            ExceptionEntry::List(v) => !v.is_empty(),
        }
    }

    fn item(&self) -> &str {
        match self {
            ExceptionEntry::Item(s) => s,
            ExceptionEntry::List(_) => "",
        }
    }
}

/// One of a rule's `exceptions`, with its defaults applied (`comps` is `=` for each of a list
/// of fields, `in` for a single field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FalcoException {
    /// `name`.
    pub name: String,
    /// `fields`: one field, or a list of fields.
    pub fields: ExceptionEntry,
    /// `comps`: one operator, or one per field.
    pub comps: ExceptionEntry,
    /// `values`: for a single field, its values; for a list of fields, tuples of values.
    pub values: Vec<ExceptionEntry>,
}

/// An exception as read, before defaults and validation.
#[derive(Debug, Clone)]
struct RawException {
    name: String,
    fields: Option<ExceptionEntry>,
    comps: Option<ExceptionEntry>,
    values: Vec<ExceptionEntry>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct FalcoRule {
    /// `rule`.
    pub name: String,
    /// `desc`.
    pub desc: String,
    /// The condition with its exceptions, as text, before macros and lists are expanded.
    pub condition_text: String,
    /// The condition with its exceptions, macros and lists expanded.
    pub condition: Expr,
    /// `output`: the format of the alert message.
    pub output: String,
    /// `priority`.
    pub priority: Priority,
    /// The Sigma level of the priority.
    pub level: Level,
    /// `tags`, sorted and without duplicates (Falco keeps them as a set).
    pub tags: Vec<String>,
    /// `source` (always `k8s_audit`).
    pub source: String,
    /// The file of the item that defined the rule last.
    pub file: String,
    /// The line of that `- rule:` item (1-based).
    pub line: usize,
    /// `exceptions`.
    pub exceptions: Vec<FalcoException>,
    /// `enabled`: a disabled rule is loaded and checked but not evaluated.
    pub enabled: bool,
}

/// One `required_plugin_versions` requirement: a plugin and its alternatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRequirement {
    /// `(name, version)` of the plugin, then of each alternative.
    pub alternatives: Vec<(String, String)>,
}

/// The rules of the files loaded.
#[derive(Debug, Clone, Default)]
pub struct FalcoRules {
    /// The `k8s_audit` rules, enabled and disabled, in load order (a redefined rule keeps the
    /// place of its first definition).
    pub rules: Vec<FalcoRule>,
    /// Warnings: skipped items of other sources, deprecated constructs, plugin requirements
    /// tripline cannot meet.
    pub warnings: Vec<LoadMessage>,
    /// The highest `required_engine_version` (as a semantic version), if any.
    pub required_engine_version: Option<String>,
    /// Every `required_plugin_versions` requirement.
    pub required_plugin_versions: Vec<PluginRequirement>,
}

impl FalcoRules {
    /// The enabled rules.
    pub fn enabled(&self) -> impl Iterator<Item = &FalcoRule> {
        self.rules.iter().filter(|r| r.enabled)
    }
}

/// An error or a warning, located at an item of a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadMessage {
    /// The file, as named to the loader.
    pub file: String,
    /// The 1-based line of the item (or of the YAML error).
    pub line: usize,
    /// The item, e.g. `rule 'Create Privileged Pod'`, `list 'allowed_k8s_users'`.
    pub item: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LoadMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.item.is_empty() {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        } else {
            write!(
                f,
                "{}:{}: {}: {}",
                self.file, self.line, self.item, self.message
            )
        }
    }
}

/// Rules files that could not be loaded: every error found, with the warnings so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The errors.
    pub errors: Vec<LoadMessage>,
    /// The warnings.
    pub warnings: Vec<LoadMessage>,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
        write!(f, "{}", lines.join("\n"))
    }
}

impl std::error::Error for LoadError {}

/// Falco's messages for appends to undefined items (`rule_loading_messages.h`).
const ERROR_NO_PREVIOUS_LIST: &str =
    "List uses 'append' or 'override.items: append' but no list by that name already exists";
const ERROR_NO_PREVIOUS_MACRO: &str =
    "Macro uses 'append' or 'override.condition: append' but no macro by that name already exists";
const ERROR_NO_PREVIOUS_RULE_APPEND: &str =
    "Rule uses 'append' or 'override.<key>: append' but no rule by that name already exists";
const ERROR_NO_PREVIOUS_RULE_REPLACE: &str =
    "An 'override.<key>: replace' to a rule was requested but no rule by that name already exists";
const ERROR_OVERRIDE_APPEND: &str = "Keys 'override' and 'append: true' cannot be used together. Add an 'append' entry (e.g. 'condition: append') under 'override' instead.";
const WARNING_APPEND: &str = "'append' key is deprecated. Add an 'append' entry (e.g. 'condition: append') under 'override' instead.";
const WARNING_ENABLED: &str = "The standalone 'enabled' key usage is deprecated. The correct approach requires also a 'replace' entry under the 'override' key (i.e. 'enabled: replace').";

const LIST_KEYS: &[&str] = &["list", "items", "append", "override"];
const MACRO_KEYS: &[&str] = &["macro", "condition", "append", "override"];
const RULE_KEYS: &[&str] = &[
    "rule",
    "desc",
    "condition",
    "output",
    "priority",
    "source",
    "enabled",
    "tags",
    "exceptions",
    "append",
    "override",
    "warn_evttypes",
    "skip-if-unknown-filter",
    "capture",
    "capture_duration",
];
const EXCEPTION_KEYS: &[&str] = &["name", "fields", "comps", "values"];
const RULE_APPENDABLE: &[&str] = &["condition", "output", "desc", "tags", "exceptions"];
const RULE_REPLACEABLE: &[&str] = &[
    "condition",
    "output",
    "desc",
    "priority",
    "tags",
    "exceptions",
    "enabled",
    "warn_evttypes",
    "skip-if-unknown-filter",
];

/// Where an item is: file, line, and the item's description.
#[derive(Debug, Clone)]
struct Ctx {
    file: String,
    line: usize,
    item: String,
}

impl Ctx {
    fn msg(&self, message: impl Into<String>) -> LoadMessage {
        LoadMessage {
            file: self.file.clone(),
            line: self.line,
            item: self.item.clone(),
            message: message.into(),
        }
    }

    fn named(&self, item: String) -> Ctx {
        Ctx {
            item,
            ..self.clone()
        }
    }
}

/// Items by name in definition order; a redefinition takes the place of the earlier one.
#[derive(Debug, Clone)]
struct Indexed<T> {
    items: Vec<T>,
    by_name: HashMap<String, usize>,
}

impl<T> Default for Indexed<T> {
    fn default() -> Self {
        Indexed {
            items: Vec::new(),
            by_name: HashMap::new(),
        }
    }
}

impl<T> Indexed<T> {
    fn get(&self, name: &str) -> Option<&T> {
        self.by_name.get(name).and_then(|&i| self.items.get(i))
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut T> {
        match self.by_name.get(name) {
            Some(&i) => self.items.get_mut(i),
            None => None,
        }
    }

    fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// Defines `name`: replaces an earlier item in place, else appends.
    fn define(&mut self, name: &str, item: T) {
        match self.by_name.get(name) {
            Some(&i) => {
                if let Some(slot) = self.items.get_mut(i) {
                    *slot = item;
                }
            }
            None => {
                self.by_name.insert(name.to_string(), self.items.len());
                self.items.push(item);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct ListInfo {
    name: String,
    items: Vec<String>,
    index: usize,
    visibility: usize,
}

#[derive(Debug, Clone)]
struct MacroInfo {
    name: String,
    cond: String,
    index: usize,
    visibility: usize,
    ctx: Ctx,
}

#[derive(Debug, Clone)]
struct RuleInfo {
    name: String,
    desc: String,
    cond: String,
    output: String,
    priority: Priority,
    source: String,
    tags: BTreeSet<String>,
    exceptions: Vec<RawException>,
    enabled: bool,
    skip_if_unknown_filter: bool,
    ctx: Ctx,
}

impl RuleInfo {
    fn known_source(&self) -> bool {
        self.source == K8S_AUDIT_SOURCE
    }
}

/// What a rule append or `override` replace carries.
#[derive(Debug, Default)]
struct RuleUpdate {
    cond: Option<String>,
    output: Option<String>,
    desc: Option<String>,
    tags: Option<BTreeSet<String>>,
    exceptions: Option<Vec<RawException>>,
    priority: Option<Priority>,
    enabled: Option<bool>,
    skip_if_unknown_filter: Option<bool>,
    warn_evttypes: Option<bool>,
}

impl RuleUpdate {
    fn has_any_value(&self) -> bool {
        self.cond.is_some()
            || self.output.is_some()
            || self.desc.is_some()
            || self.tags.is_some()
            || self.exceptions.is_some()
            || self.priority.is_some()
            || self.enabled.is_some()
            || self.skip_if_unknown_filter.is_some()
            || self.warn_evttypes.is_some()
    }
}

/// Loads rules files one after the other, as Falco does with several `rules_files`.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    options: LoadOptions,
    lists: Indexed<ListInfo>,
    macros: Indexed<MacroInfo>,
    rules: Indexed<RuleInfo>,
    next_index: usize,
    warnings: Vec<LoadMessage>,
    engine_version: Option<(u64, u64, u64)>,
    plugins: Vec<PluginRequirement>,
}

/// Loads the rules files at `paths` in order.
pub fn load_files<P: AsRef<Path>>(
    paths: &[P],
    options: LoadOptions,
) -> Result<FalcoRules, LoadError> {
    let mut loader = Loader::new(options);
    let mut out = FalcoRules::default();
    for p in paths {
        out = loader.add_file(p.as_ref())?;
    }
    Ok(out)
}

/// Loads rules files given as `(name, content)` in order.
pub fn load_strs(files: &[(&str, &str)], options: LoadOptions) -> Result<FalcoRules, LoadError> {
    let mut loader = Loader::new(options);
    let mut out = FalcoRules::default();
    for (name, text) in files {
        out = loader.add_str(name, text)?;
    }
    Ok(out)
}

impl Loader {
    /// A loader with nothing loaded.
    pub fn new(options: LoadOptions) -> Self {
        Loader {
            options,
            ..Loader::default()
        }
    }

    /// Reads the rules file at `path` and compiles everything loaded so far (the rules of
    /// this and the earlier files). After an error the loader should be dropped, as Falco
    /// stops at a file it cannot load.
    pub fn add_file(&mut self, path: &Path) -> Result<FalcoRules, LoadError> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => self.add_str(&name, &text),
            Err(e) => Err(LoadError {
                errors: vec![LoadMessage {
                    file: name,
                    line: 0,
                    item: String::new(),
                    message: format!("cannot read the file: {e}"),
                }],
                warnings: self.warnings.clone(),
            }),
        }
    }

    /// Reads a rules file's content, `name` naming it in messages, and compiles everything
    /// loaded so far.
    pub fn add_str(&mut self, name: &str, text: &str) -> Result<FalcoRules, LoadError> {
        let mut errors = self.read(name, text);
        if errors.is_empty() {
            match self.compile() {
                Ok(rules) => return Ok(rules),
                Err(e) => errors = e,
            }
        }
        Err(LoadError {
            errors,
            warnings: self.warnings.clone(),
        })
    }

    // ----- reading -----

    fn read(&mut self, file: &str, text: &str) -> Vec<LoadMessage> {
        let mut errors = Vec::new();
        for doc in crate::rules::sigma::split_yaml_documents(text) {
            let file_ctx = Ctx {
                file: file.to_string(),
                line: doc.first_line,
                item: String::new(),
            };
            let value: Value = match serde_yaml::from_str(doc.text) {
                Ok(v) => v,
                Err(e) => {
                    let line =
                        doc.first_line + e.location().map_or(0, |l| l.line().saturating_sub(1));
                    errors.push(LoadMessage {
                        line,
                        ..file_ctx.msg(format!("YAML syntax: {e}"))
                    });
                    continue;
                }
            };
            let items = match value {
                Value::Null => continue,
                Value::Sequence(items) => items,
                _ => {
                    errors.push(file_ctx.msg("Rules content is not yaml array of objects"));
                    continue;
                }
            };
            let lines = item_lines(doc.text);
            for (i, item) in items.iter().enumerate() {
                if item.is_null() {
                    continue;
                }
                let line = doc.first_line + lines.get(i).copied().unwrap_or(0);
                let ctx = Ctx {
                    line,
                    ..file_ctx.clone()
                };
                if let Err(e) = self.read_item(item, &ctx) {
                    errors.push(e);
                }
            }
        }
        errors
    }

    fn read_item(&mut self, item: &Value, ctx: &Ctx) -> Result<(), LoadMessage> {
        let Value::Mapping(map) = item else {
            return Err(ctx
                .msg("Unexpected element type. Each element should be a yaml associative array."));
        };
        if map.contains_key("required_engine_version") {
            let ctx = ctx.named("required_engine_version".into());
            check_keys(map, &["required_engine_version"], &ctx, &mut self.warnings);
            self.read_engine_version(map, &ctx)
        } else if map.contains_key("required_plugin_versions") {
            let ctx = ctx.named("required_plugin_versions".into());
            check_keys(map, &["required_plugin_versions"], &ctx, &mut self.warnings);
            self.read_plugin_versions(map, &ctx)
        } else if map.contains_key("list") {
            let name = decode_val(map, "list", &ctx.named("list".into()))?;
            let ctx = ctx.named(format!("list '{name}'"));
            check_keys(map, LIST_KEYS, &ctx, &mut self.warnings);
            self.read_list(map, name, &ctx)
        } else if map.contains_key("macro") {
            let name = decode_val(map, "macro", &ctx.named("macro".into()))?;
            let ctx = ctx.named(format!("macro '{name}'"));
            check_keys(map, MACRO_KEYS, &ctx, &mut self.warnings);
            self.read_macro(map, name, &ctx)
        } else if map.contains_key("rule") {
            let name = decode_val(map, "rule", &ctx.named("rule".into()))?;
            let ctx = ctx.named(format!("rule '{name}'"));
            check_keys(map, RULE_KEYS, &ctx, &mut self.warnings);
            self.read_rule(map, name, &ctx)
        } else {
            let keys: Vec<String> = map.keys().filter_map(scalar).collect();
            Err(ctx.msg(format!(
                "Unknown top level item (keys: {}); expected rule, macro, list, \
                 required_engine_version or required_plugin_versions",
                keys.join(", ")
            )))
        }
    }

    fn read_engine_version(&mut self, map: &Mapping, ctx: &Ctx) -> Result<(), LoadMessage> {
        let text = decode_val(map, "required_engine_version", ctx)?;
        let version = match text.parse::<u64>() {
            Ok(minor) => Some((0, minor, 0)),
            Err(_) => parse_semver(&text),
        };
        let version = version.ok_or_else(|| {
            ctx.msg(format!(
                "Unable to parse engine version '{text}' as a semver string. Expected \"x.y.z\" semver format."
            ))
        })?;
        if self.engine_version.is_none_or(|v| v < version) {
            self.engine_version = Some(version);
        }
        Ok(())
    }

    fn read_plugin_versions(&mut self, map: &Mapping, ctx: &Ctx) -> Result<(), LoadMessage> {
        let Some(Value::Sequence(plugins)) = map.get("required_plugin_versions") else {
            return Err(ctx.msg("Value of required_plugin_versions must be a sequence"));
        };
        for plugin in plugins {
            let Value::Mapping(p) = plugin else {
                return Err(ctx.msg("Plugin version must be a mapping"));
            };
            check_keys(
                p,
                &["name", "version", "alternatives"],
                ctx,
                &mut self.warnings,
            );
            let mut alternatives =
                vec![(decode_val(p, "name", ctx)?, decode_val(p, "version", ctx)?)];
            match p.get("alternatives") {
                None => {}
                Some(Value::Sequence(alts)) => {
                    for alt in alts {
                        let Value::Mapping(a) = alt else {
                            return Err(ctx.msg("Plugin version alternative must be a mapping"));
                        };
                        check_keys(a, &["name", "version"], ctx, &mut self.warnings);
                        alternatives
                            .push((decode_val(a, "name", ctx)?, decode_val(a, "version", ctx)?));
                    }
                }
                Some(_) => {
                    return Err(ctx.msg("Value of plugin version alternatives must be a sequence"))
                }
            }
            let mut seen = HashSet::new();
            for (name, version) in &alternatives {
                if parse_semver(version).is_none() {
                    return Err(ctx.msg(format!(
                        "Invalid required version '{version}' for plugin '{name}'"
                    )));
                }
                if !seen.insert(name.as_str()) {
                    return Err(ctx.msg(format!(
                        "Defined multiple alternative version requirements for plugin '{name}'"
                    )));
                }
            }
            let usable = alternatives
                .iter()
                .any(|(n, _)| n.starts_with("k8saudit") || n == "json");
            if !usable {
                let names: Vec<&str> = alternatives.iter().map(|(n, _)| n.as_str()).collect();
                self.warnings.push(ctx.msg(format!(
                    "requires plugin {}, which tripline does not provide (it reads the fields \
                     of the k8saudit and json plugins only)",
                    names.join(" or ")
                )));
            }
            self.plugins.push(PluginRequirement { alternatives });
        }
        Ok(())
    }

    fn take_index(&mut self) -> usize {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    /// Reads `append` and `override`, for an item whose overridable keys are `appendable`
    /// and `replaceable`: whether it appends, and the keys to append and to replace.
    fn read_append_override(
        &mut self,
        map: &Mapping,
        appendable: &[&str],
        replaceable: &[&str],
        ctx: &Ctx,
    ) -> Result<(bool, BTreeSet<String>, BTreeSet<String>), LoadMessage> {
        let append = decode_bool(map, "append", ctx)?.unwrap_or(false);
        if append {
            self.warnings.push(ctx.msg(WARNING_APPEND));
        }
        let (to_append, to_replace) = decode_overrides(map, appendable, replaceable, ctx)?;
        if append && !(to_append.is_empty() && to_replace.is_empty()) {
            return Err(ctx.msg(ERROR_OVERRIDE_APPEND));
        }
        Ok((append, to_append, to_replace))
    }

    fn read_list(&mut self, map: &Mapping, name: String, ctx: &Ctx) -> Result<(), LoadMessage> {
        if !is_bare_string(&name) {
            return Err(ctx.msg(
                "List has an invalid name. List names must match a regular expression: \
                 ([^()\"'[:space:]=,]+)",
            ));
        }
        let items = decode_seq(map, "items", ctx)?
            .ok_or_else(|| ctx.msg("Item has no mapping for key 'items'"))?;
        let (append, to_append, _) = self.read_append_override(map, &["items"], &["items"], ctx)?;
        let append = append || to_append.contains("items");
        let index = self.take_index();
        if !append {
            let index = self.lists.get(&name).map_or(index, |l| l.index);
            self.lists.define(
                &name,
                ListInfo {
                    name: name.clone(),
                    items,
                    index,
                    visibility: self.next_index - 1,
                },
            );
            return Ok(());
        }
        let legacy = LEGACY_LIST_NAMES
            .iter()
            .find(|(old, _)| *old == name)
            .map(|(_, new)| *new)
            .filter(|_| self.options.legacy_list_names);
        if let Some(new) = legacy {
            if let Some(current) = self.lists.get_mut(new) {
                current.items.extend(items.iter().cloned());
                current.visibility = index;
                self.warnings.push(ctx.msg(format!(
                    "'{name}' is the legacy name of '{new}': its items are appended to \
                     '{new}' too (legacy_list_names)"
                )));
                if !self.lists.contains(&name) {
                    self.lists.define(
                        &name,
                        ListInfo {
                            name: name.clone(),
                            items,
                            index,
                            visibility: index,
                        },
                    );
                    return Ok(());
                }
            }
        }
        let prev = self
            .lists
            .get_mut(&name)
            .ok_or_else(|| ctx.msg(ERROR_NO_PREVIOUS_LIST))?;
        prev.items.extend(items);
        prev.visibility = index;
        Ok(())
    }

    fn read_macro(&mut self, map: &Mapping, name: String, ctx: &Ctx) -> Result<(), LoadMessage> {
        if !is_identifier(&name) {
            return Err(ctx.msg(
                "Macro has an invalid name. Macro names must match a regular expression: \
                 ([a-zA-Z]+[a-zA-Z0-9_]*)",
            ));
        }
        let cond = decode_val(map, "condition", ctx)?;
        let (append, to_append, _) =
            self.read_append_override(map, &["condition"], &["condition"], ctx)?;
        let append = append || to_append.contains("condition");
        let index = self.take_index();
        if append {
            let prev = self
                .macros
                .get_mut(&name)
                .ok_or_else(|| ctx.msg(ERROR_NO_PREVIOUS_MACRO))?;
            prev.cond.push(' ');
            prev.cond.push_str(&cond);
            prev.visibility = index;
        } else {
            let first = self.macros.get(&name).map_or(index, |m| m.index);
            self.macros.define(
                &name,
                MacroInfo {
                    name: name.clone(),
                    cond,
                    index: first,
                    visibility: index,
                    ctx: ctx.clone(),
                },
            );
        }
        Ok(())
    }

    fn read_rule(&mut self, map: &Mapping, name: String, ctx: &Ctx) -> Result<(), LoadMessage> {
        let (append, to_append, to_replace) =
            self.read_append_override(map, RULE_APPENDABLE, RULE_REPLACEABLE, ctx)?;
        if !to_append.is_empty() || !to_replace.is_empty() {
            let mut expected: BTreeSet<&str> = RULE_APPENDABLE
                .iter()
                .chain(RULE_REPLACEABLE)
                .copied()
                .filter(|k| map.contains_key(*k))
                .collect();
            for (op, keys) in [("append", &to_append), ("replace", &to_replace)] {
                if keys.is_empty() {
                    continue;
                }
                let mut update = RuleUpdate::default();
                for key in keys {
                    if !expected.remove(key.as_str()) {
                        return Err(ctx.msg(format!(
                            "An {op} override for '{key}' was specified but '{key}' is not defined"
                        )));
                    }
                    self.read_update_key(map, key, &mut update, ctx)?;
                }
                if op == "append" {
                    self.append_rule(&name, update, ctx)?;
                } else {
                    self.replace_rule(&name, update, ctx)?;
                }
            }
            if let Some(key) = expected.first() {
                return Err(ctx.msg(format!(
                    "Unexpected key '{key}': no corresponding entry under 'override' is defined."
                )));
            }
            return Ok(());
        }
        if append {
            let mut update = RuleUpdate::default();
            if map.contains_key("condition") {
                update.cond = Some(decode_val(map, "condition", ctx)?);
            }
            if map.contains_key("exceptions") {
                update.exceptions = Some(self.read_exceptions(map, true, ctx)?);
            }
            return self.append_rule(&name, update, ctx);
        }
        let defines = ["condition", "output", "desc", "priority"]
            .iter()
            .any(|k| map.contains_key(*k));
        if !defines {
            let enabled = decode_bool(map, "enabled", ctx)?
                .ok_or_else(|| ctx.msg("Item has no mapping for key 'enabled'"))?;
            self.warnings.push(ctx.msg(WARNING_ENABLED));
            let prev = self.rules.get_mut(&name).ok_or_else(|| {
                ctx.msg("Rule has 'enabled' key but no rule by that name already exists")
            })?;
            prev.enabled = enabled;
            return Ok(());
        }
        let cond = decode_val(map, "condition", ctx)?;
        let output = decode_val(map, "output", ctx)?.trim().to_string();
        let desc = decode_val(map, "desc", ctx)?;
        let priority = decode_priority(map, ctx)?;
        let source = decode_opt(map, "source", ctx)?.unwrap_or_else(|| "syscall".to_string());
        let enabled = decode_bool(map, "enabled", ctx)?.unwrap_or(true);
        decode_bool(map, "warn_evttypes", ctx)?;
        let skip_if_unknown_filter =
            decode_bool(map, "skip-if-unknown-filter", ctx)?.unwrap_or(false);
        let tags = decode_seq(map, "tags", ctx)?
            .unwrap_or_default()
            .into_iter()
            .collect();
        let exceptions = self.read_exceptions(map, false, ctx)?;
        let info = RuleInfo {
            name: name.clone(),
            desc,
            cond,
            output,
            priority,
            source,
            tags,
            exceptions,
            enabled,
            skip_if_unknown_filter,
            ctx: ctx.clone(),
        };
        self.define_rule(info)
    }

    fn read_update_key(
        &mut self,
        map: &Mapping,
        key: &str,
        update: &mut RuleUpdate,
        ctx: &Ctx,
    ) -> Result<(), LoadMessage> {
        match key {
            "condition" => update.cond = Some(decode_val(map, key, ctx)?),
            "output" => update.output = Some(decode_val(map, key, ctx)?),
            "desc" => update.desc = Some(decode_val(map, key, ctx)?),
            "tags" => {
                update.tags = Some(
                    decode_seq(map, key, ctx)?
                        .unwrap_or_default()
                        .into_iter()
                        .collect(),
                )
            }
            "exceptions" => update.exceptions = Some(self.read_exceptions(map, true, ctx)?),
            "priority" => update.priority = Some(decode_priority(map, ctx)?),
            "enabled" => update.enabled = decode_bool(map, key, ctx)?,
            "warn_evttypes" => update.warn_evttypes = decode_bool(map, key, ctx)?,
            "skip-if-unknown-filter" => update.skip_if_unknown_filter = decode_bool(map, key, ctx)?,
            _ => {}
        }
        Ok(())
    }

    fn read_exceptions(
        &mut self,
        map: &Mapping,
        append: bool,
        ctx: &Ctx,
    ) -> Result<Vec<RawException>, LoadMessage> {
        let exs = match map.get("exceptions") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Sequence(s)) => s,
            Some(_) => return Err(ctx.msg("Rule exceptions must be a sequence")),
        };
        let mut out: Vec<RawException> = Vec::new();
        for ex in exs {
            let Value::Mapping(ex) = ex else {
                return Err(ctx.msg("Rule exception must be a mapping"));
            };
            let name = decode_val(ex, "name", ctx)?;
            let ectx = ctx.named(format!("{}, exception '{name}'", ctx.item));
            check_keys(ex, EXCEPTION_KEYS, &ectx, &mut self.warnings);
            if out.iter().any(|e| e.name == name) {
                return Err(ectx.msg("Exceptions names in the same object must be unique"));
            }
            let fields = match ex.get("fields") {
                None if append => None,
                None => return Err(ectx.msg("Item has no mapping for key 'fields'")),
                Some(v) => decode_entry(v, "fields", &ectx)?,
            };
            let comps = match ex.get("comps") {
                None => None,
                Some(v) => decode_entry(v, "comps", &ectx)?,
            };
            let mut values = Vec::new();
            match ex.get("values") {
                Some(Value::Sequence(vals)) => {
                    for v in vals {
                        values.push(
                            decode_entry(v, "values", &ectx)?
                                .ok_or_else(|| ectx.msg("Value for 'values' is empty"))?,
                        );
                    }
                }
                Some(_) => return Err(ectx.msg("Rule exception values must be a sequence")),
                None if append => self
                    .warnings
                    .push(ectx.msg("Overriding/appending exception with no values")),
                None => {}
            }
            out.push(RawException {
                name,
                fields,
                comps,
                values,
            });
        }
        Ok(out)
    }

    // ----- merging -----

    fn define_rule(&mut self, mut info: RuleInfo) -> Result<(), LoadMessage> {
        let ctx = info.ctx.clone();
        if let Some(prev) = self.rules.get(&info.name) {
            if prev.source != info.source {
                return Err(ctx.msg("Rule has been re-defined with a different source"));
            }
        }
        if !info.known_source() {
            self.warnings.push(ctx.msg(format!(
                "Unknown source {}, skipping (tripline evaluates {K8S_AUDIT_SOURCE} rules only)",
                info.source
            )));
        }
        let known = info.known_source();
        for ex in &mut info.exceptions {
            if !ex.fields.as_ref().is_some_and(ExceptionEntry::is_valid) {
                return Err(ctx.msg(format!(
                    "exception '{}': Rule exception item must have fields property with a list of fields",
                    ex.name
                )));
            }
            validate_exception(ex, known, &ctx)?;
        }
        self.take_index();
        self.rules.define(&info.name.clone(), info);
        Ok(())
    }

    fn append_rule(
        &mut self,
        name: &str,
        update: RuleUpdate,
        ctx: &Ctx,
    ) -> Result<(), LoadMessage> {
        self.take_index();
        let prev = self
            .rules
            .get_mut(name)
            .ok_or_else(|| ctx.msg(ERROR_NO_PREVIOUS_RULE_APPEND))?;
        if !update.has_any_value() {
            return Err(ctx.msg("Appended rule must have exceptions or condition property"));
        }
        let known = prev.known_source();
        for (text, add) in [
            (&mut prev.cond, &update.cond),
            (&mut prev.output, &update.output),
            (&mut prev.desc, &update.desc),
        ] {
            if let Some(add) = add.as_ref().filter(|a| !a.is_empty()) {
                text.push(' ');
                text.push_str(add);
            }
        }
        if let Some(tags) = update.tags {
            prev.tags.extend(tags);
        }
        for mut ex in update.exceptions.unwrap_or_default() {
            match prev.exceptions.iter_mut().find(|e| e.name == ex.name) {
                None => {
                    if !ex.fields.as_ref().is_some_and(ExceptionEntry::is_valid) {
                        return Err(ctx.msg(format!(
                            "exception '{}': Rule exception must have fields property with a list of fields",
                            ex.name
                        )));
                    }
                    if ex.values.is_empty() {
                        return Err(ctx.msg(format!(
                            "exception '{}': Rule exception must have values property with a list of values",
                            ex.name
                        )));
                    }
                    validate_exception(&mut ex, known, ctx)?;
                    prev.exceptions.push(ex);
                }
                Some(old) => {
                    if ex.fields.as_ref().is_some_and(ExceptionEntry::is_valid) {
                        return Err(ctx.msg(format!(
                            "exception '{}': Can not append exception fields to existing exception, only values",
                            ex.name
                        )));
                    }
                    if ex.comps.as_ref().is_some_and(ExceptionEntry::is_valid) {
                        return Err(ctx.msg(format!(
                            "exception '{}': Can not append exception comps to existing exception, only values",
                            ex.name
                        )));
                    }
                    old.values.extend(ex.values);
                }
            }
        }
        Ok(())
    }

    fn replace_rule(
        &mut self,
        name: &str,
        update: RuleUpdate,
        ctx: &Ctx,
    ) -> Result<(), LoadMessage> {
        self.take_index();
        let prev = self
            .rules
            .get_mut(name)
            .ok_or_else(|| ctx.msg(ERROR_NO_PREVIOUS_RULE_REPLACE))?;
        if !update.has_any_value() {
            return Err(ctx.msg("The rule must have at least one field that can be replaced"));
        }
        let known = prev.known_source();
        if let Some(mut exceptions) = update.exceptions {
            // Falco does not check replaced exceptions here; tripline does, so that each has
            // its fields and comps when the condition is built.
            for ex in &mut exceptions {
                if !ex.fields.as_ref().is_some_and(ExceptionEntry::is_valid) {
                    return Err(ctx.msg(format!(
                        "exception '{}': Rule exception item must have fields property with a list of fields",
                        ex.name
                    )));
                }
                validate_exception(ex, known, ctx)?;
            }
            prev.exceptions = exceptions;
        }
        if let Some(v) = update.cond {
            prev.cond = v;
        }
        if let Some(v) = update.output {
            prev.output = v;
        }
        if let Some(v) = update.desc {
            prev.desc = v;
        }
        if let Some(v) = update.tags {
            prev.tags = v;
        }
        if let Some(v) = update.priority {
            prev.priority = v;
        }
        if let Some(v) = update.enabled {
            prev.enabled = v;
        }
        if let Some(v) = update.skip_if_unknown_filter {
            prev.skip_if_unknown_filter = v;
        }
        Ok(())
    }

    // ----- compiling -----

    /// Compiles everything read so far.
    fn compile(&self) -> Result<FalcoRules, Vec<LoadMessage>> {
        let mut errors = Vec::new();
        let mut defs = Definitions::new();
        for l in &self.lists.items {
            let mut items = Vec::new();
            for item in &l.items {
                match self.lists.get(item) {
                    Some(r) if r.index < l.visibility => items.extend(r.items.iter().cloned()),
                    _ => items.push(item.clone()),
                }
            }
            defs.add_list(&l.name, items);
        }
        let mut parsed = Vec::new();
        for m in &self.macros.items {
            match parse(&m.cond) {
                Ok(e) => {
                    defs.add_macro(&m.name, e.clone());
                    parsed.push((m, e));
                }
                Err(e) => errors.push(m.ctx.msg(format!("condition: {e}"))),
            }
        }
        for (m, e) in &parsed {
            let mut refs = Vec::new();
            macro_refs(e, &mut refs);
            let hidden = refs.iter().find(|(name, _)| {
                self.macros
                    .get(name)
                    .is_none_or(|d| d.index >= m.visibility)
            });
            if let Some((name, offset)) = hidden {
                errors.push(m.ctx.msg(format!(
                    "condition: at byte {offset}: Undefined macro '{name}' used in filter."
                )));
            } else if let Err(e) = defs.expand(e) {
                errors.push(m.ctx.msg(format!("condition: {e}")));
            }
        }
        let mut out = FalcoRules {
            warnings: self.warnings.clone(),
            required_engine_version: self.engine_version.map(|(a, b, c)| format!("{a}.{b}.{c}")),
            required_plugin_versions: self.plugins.clone(),
            ..FalcoRules::default()
        };
        for r in &self.rules.items {
            if !r.known_source() {
                continue;
            }
            match compile_rule(r, &defs) {
                Ok(rule) => out.rules.push(rule),
                Err(Skip::Unknown(msg)) if r.skip_if_unknown_filter => out.warnings.push(
                    r.ctx
                        .msg(format!("{msg}; skipped (skip-if-unknown-filter)")),
                ),
                Err(Skip::Unknown(msg) | Skip::Error(msg)) => errors.push(r.ctx.msg(msg)),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }
}

/// Why a rule did not compile: an unknown field (which `skip-if-unknown-filter` turns into
/// a warning), or another error.
enum Skip {
    Unknown(String),
    Error(String),
}

fn compile_rule(r: &RuleInfo, defs: &Definitions) -> Result<FalcoRule, Skip> {
    let mut exceptions = Vec::new();
    for ex in &r.exceptions {
        exceptions.push(FalcoException {
            name: ex.name.clone(),
            fields: ex
                .fields
                .clone()
                .unwrap_or(ExceptionEntry::List(Vec::new())),
            comps: ex.comps.clone().unwrap_or(ExceptionEntry::List(Vec::new())),
            values: ex.values.clone(),
        });
    }
    check_output(&r.output).map_err(|e| Skip::Unknown(format!("output: {e}")))?;
    let text = if exceptions.is_empty() {
        r.cond.clone()
    } else {
        exception_condition(&r.cond, &exceptions).map_err(Skip::Error)?
    };
    let parsed = parse(&text).map_err(|e| {
        let msg = format!("condition: {e}");
        if e.message.starts_with("unknown field") {
            Skip::Unknown(msg)
        } else {
            Skip::Error(msg)
        }
    })?;
    let condition = defs
        .expand(&parsed)
        .map_err(|e| Skip::Error(format!("condition: {e}")))?;
    Ok(FalcoRule {
        name: r.name.clone(),
        desc: r.desc.clone(),
        condition_text: text,
        condition,
        output: r.output.clone(),
        priority: r.priority,
        level: r.priority.level(),
        tags: r.tags.iter().cloned().collect(),
        source: r.source.clone(),
        file: r.ctx.file.clone(),
        line: r.ctx.line,
        exceptions,
        enabled: r.enabled,
    })
}

/// The condition text of a rule with exceptions, as Falco builds it
/// (`build_rule_exception_infos`): `(cond)` followed by ` and not (...)` for each exception
/// with values. A single field gives `(field comp (v1, v2))`; a list of fields gives one
/// `(f1 c1 v1 and f2 c2 v2)` per tuple of values, joined by ` or `. A value with a blank is
/// quoted; a single value for a list operator is put in parentheses.
fn exception_condition(cond: &str, exceptions: &[FalcoException]) -> Result<String, String> {
    let mut out = format!("({cond})");
    for ex in exceptions {
        let mut icond = String::new();
        match (&ex.fields, &ex.comps) {
            (ExceptionEntry::Item(field), comp) => {
                for val in &ex.values {
                    let ExceptionEntry::Item(v) = val else {
                        return Err(format!(
                            "exception '{}': Expected values array to contain a list of strings",
                            ex.name
                        ));
                    };
                    if icond.is_empty() {
                        icond = format!("({field} {} (", comp.item());
                    } else {
                        icond.push_str(", ");
                    }
                    icond.push_str(&quote_item(v));
                }
                if !icond.is_empty() {
                    icond.push_str("))");
                }
            }
            (ExceptionEntry::List(fields), comps) => {
                let ExceptionEntry::List(comps) = comps else {
                    return Err(format!(
                        "exception '{}': Fields and comps lists must have equal length",
                        ex.name
                    ));
                };
                let mut tuples = Vec::new();
                for values in &ex.values {
                    let items: &[ExceptionEntry] = match values {
                        ExceptionEntry::List(v) => v,
                        ExceptionEntry::Item(_) => &[],
                    };
                    if items.len() != fields.len() {
                        return Err(format!(
                            "exception '{}': Fields and values lists must have equal length",
                            ex.name
                        ));
                    }
                    let mut parts = Vec::new();
                    for ((field, comp), value) in fields.iter().zip(comps).zip(items) {
                        let v = match value {
                            ExceptionEntry::List(vs) => {
                                let vs: Vec<String> =
                                    vs.iter().map(|v| quote_item(v.item())).collect();
                                format!("({})", vs.join(", "))
                            }
                            ExceptionEntry::Item(v) if is_list_op(comp.item()) => {
                                if v.starts_with('(') {
                                    v.clone()
                                } else {
                                    format!("({v})")
                                }
                            }
                            ExceptionEntry::Item(v) => quote_item(v),
                        };
                        parts.push(format!("{} {} {v}", field.item(), comp.item()));
                    }
                    tuples.push(format!("({})", parts.join(" and ")));
                }
                if !tuples.is_empty() {
                    icond = format!("({})", tuples.join(" or "));
                }
            }
        }
        if !icond.is_empty() {
            out.push_str(" and not ");
            out.push_str(&icond);
        }
    }
    Ok(out)
}

/// Falco's `quote_item`: a value with a blank, not already quoted, is put in double quotes.
fn quote_item(v: &str) -> String {
    if v.contains(' ') && !v.starts_with('"') && !v.starts_with('\'') {
        format!("\"{v}\"")
    } else {
        v.to_string()
    }
}

fn is_list_op(op: &str) -> bool {
    matches!(op, "in" | "intersects" | "pmatch")
}

/// The operators an exception's `comps` may name (libsinsp's `supported_operators`, less
/// those tripline does not support).
fn is_operator(op: &str) -> bool {
    const OPS: &[Op] = &[
        Op::Exists,
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::Contains,
        Op::IContains,
        Op::BContains,
        Op::StartsWith,
        Op::BStartsWith,
        Op::EndsWith,
        Op::Glob,
        Op::IGlob,
        Op::In,
        Op::Intersects,
        Op::PMatch,
    ];
    op == "==" || OPS.iter().any(|o| o.as_str() == op)
}

/// Whether `name` (possibly with a bracketed argument) is a field of the catalogue.
fn field_defined(name: &str) -> bool {
    let (base, arg) = match name.split_once('[') {
        Some((b, rest)) => match rest.strip_suffix(']') {
            Some(a) => (b, Some(a)),
            None => return false,
        },
        None => (name, None),
    };
    fields::resolve(base, arg).is_ok()
}

/// Falco's `validate_exception_info`: defaults for `comps`, and the checks of fields and
/// operators (fields only for a known source).
fn validate_exception(ex: &mut RawException, known: bool, ctx: &Ctx) -> Result<(), LoadMessage> {
    let err = |m: String| ctx.msg(format!("exception '{}': {m}", ex.name));
    match &ex.fields {
        Some(ExceptionEntry::List(fields)) => {
            if !ex.comps.as_ref().is_some_and(ExceptionEntry::is_valid) {
                ex.comps = Some(ExceptionEntry::List(vec![
                    ExceptionEntry::Item("=".into());
                    fields.len()
                ]));
            }
            let comps = match &ex.comps {
                Some(ExceptionEntry::List(c)) => c.as_slice(),
                _ => &[],
            };
            if comps.len() != fields.len() {
                return Err(err("Fields and comps lists must have equal length".into()));
            }
            for c in comps {
                if !is_operator(c.item()) {
                    return Err(err(format!(
                        "'{}' is not a supported comparison operator",
                        c.item()
                    )));
                }
            }
            if known {
                for f in fields {
                    if !field_defined(f.item()) {
                        return Err(err(format!(
                            "'{}' is not a supported filter field",
                            f.item()
                        )));
                    }
                }
            }
        }
        Some(ExceptionEntry::Item(field)) => {
            if !ex.comps.as_ref().is_some_and(ExceptionEntry::is_valid) {
                ex.comps = Some(ExceptionEntry::Item("in".into()));
            }
            match &ex.comps {
                Some(ExceptionEntry::Item(c)) if is_list_op(c) => {}
                Some(ExceptionEntry::Item(_)) => return Err(err(
                    "When fields is a single value, comps must be one of (in, pmatch, intersects)"
                        .into(),
                )),
                _ => return Err(err("Fields and comps must both be strings".into())),
            }
            if known && !field_defined(field) {
                return Err(err(format!("'{field}' is not a supported filter field")));
            }
        }
        None => {}
    }
    Ok(())
}

/// Checks the `%field` references of an output format against the catalogue. `evt.*`
/// fields, which Falco's formatter gives every event source, are accepted.
fn check_output(output: &str) -> Result<(), String> {
    let b = output.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        let start = i + 1;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_' || b[end] == b'.')
        {
            end += 1;
        }
        let name = &output[start..end];
        let mut arg = None;
        if end < b.len() && b[end] == b'[' {
            if let Some(close) = output[end..].find(']') {
                arg = Some(&output[end + 1..end + close]);
                end += close + 1;
            }
        }
        if name.contains('.') && !name.starts_with("evt.") {
            fields::resolve(name, arg)
                .map_err(|e| format!("invalid formatting token %{name}: {e}"))?;
        }
        i = end.max(start);
    }
    Ok(())
}

fn macro_refs<'a>(e: &'a Expr, out: &mut Vec<(&'a str, usize)>) {
    match e {
        Expr::And(c) | Expr::Or(c) => c.iter().for_each(|e| macro_refs(e, out)),
        Expr::Not(c) => macro_refs(c, out),
        Expr::Macro { name, offset } => out.push((name, *offset)),
        Expr::Check(_) => {}
    }
}

// ----- YAML helpers -----

/// The text of a scalar (`true`, `1` and strings alike, as Falco reads them).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

/// Unknown keys are warnings, as Falco's schema validation reports them: the item loads
/// (a key from a newer Falco, or a team's own annotation, must not stop the file).
fn check_keys(map: &Mapping, allowed: &[&str], ctx: &Ctx, warnings: &mut Vec<LoadMessage>) {
    for key in map.keys() {
        let name = scalar(key).unwrap_or_else(|| format!("{key:?}"));
        if !allowed.contains(&name.as_str()) {
            warnings.push(ctx.msg(format!(
                "unknown key '{name}', ignored (this item takes: {})",
                allowed.join(", ")
            )));
        }
    }
}

/// A required non-empty scalar (Falco's `decode_val`).
fn decode_val(map: &Mapping, key: &str, ctx: &Ctx) -> Result<String, LoadMessage> {
    decode_opt(map, key, ctx)?
        .ok_or_else(|| ctx.msg(format!("Item has no mapping for key '{key}'")))
}

/// An optional non-empty scalar.
fn decode_opt(map: &Mapping, key: &str, ctx: &Ctx) -> Result<Option<String>, LoadMessage> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Null) => Err(ctx.msg(format!("Mapping for key '{key}' is empty"))),
        Some(v) => match scalar(v) {
            None => Err(ctx.msg(format!("Value for key '{key}' is not a scalar value"))),
            Some(s) if s.is_empty() => {
                Err(ctx.msg(format!("Value for key '{key}' must be non-empty")))
            }
            Some(s) => Ok(Some(s)),
        },
    }
}

/// An optional boolean, with the spellings yaml-cpp accepts.
fn decode_bool(map: &Mapping, key: &str, ctx: &Ctx) -> Result<Option<bool>, LoadMessage> {
    let Some(text) = decode_opt(map, key, ctx)? else {
        return Ok(None);
    };
    match text.as_str() {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Ok(Some(true))
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Ok(Some(false))
        }
        _ => Err(ctx.msg(format!(
            "Value for key '{key}': Can't decode YAML scalar value '{text}' as a boolean"
        ))),
    }
}

fn decode_priority(map: &Mapping, ctx: &Ctx) -> Result<Priority, LoadMessage> {
    let text = decode_val(map, "priority", ctx)?;
    Priority::parse(&text).ok_or_else(|| {
        ctx.msg(format!(
            "Invalid priority '{text}' (emergency, alert, critical, error, warning, notice, \
             informational or info, debug)"
        ))
    })
}

/// An optional sequence of scalars (Falco's `decode_seq`).
fn decode_seq(map: &Mapping, key: &str, ctx: &Ctx) -> Result<Option<Vec<String>>, LoadMessage> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|v| {
                scalar(v).ok_or_else(|| {
                    ctx.msg(format!(
                        "Value for key '{key}': sequence value is not scalar"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ctx.msg(format!("Value for key '{key}' is not a sequence"))),
    }
}

/// An exception's `fields`, `comps` or value: a scalar or a list (recursively); `None` for
/// a null, which Falco leaves undefined.
fn decode_entry(v: &Value, key: &str, ctx: &Ctx) -> Result<Option<ExceptionEntry>, LoadMessage> {
    match v {
        Value::Null => Ok(None),
        Value::Sequence(items) => {
            let mut out = Vec::new();
            for item in items {
                out.push(
                    decode_entry(item, key, ctx)?
                        .ok_or_else(|| ctx.msg(format!("Value for '{key}': an item is empty")))?,
                );
            }
            Ok(Some(ExceptionEntry::List(out)))
        }
        other => match scalar(other) {
            Some(s) if s.is_empty() => Err(ctx.msg(format!("Value for '{key}' must be non-empty"))),
            Some(s) => Ok(Some(ExceptionEntry::Item(s))),
            None => Err(ctx.msg(format!("Value for '{key}' must be a string or a list"))),
        },
    }
}

/// Falco's `decode_overrides`: the keys to append and to replace.
fn decode_overrides(
    map: &Mapping,
    appendable: &[&str],
    replaceable: &[&str],
    ctx: &Ctx,
) -> Result<(BTreeSet<String>, BTreeSet<String>), LoadMessage> {
    let mut to_append = BTreeSet::new();
    let mut to_replace = BTreeSet::new();
    let ov = match map.get("override") {
        None => return Ok((to_append, to_replace)),
        Some(Value::Mapping(m)) => m,
        Some(_) => return Err(ctx.msg("'override' must be a mapping of keys to append or replace")),
    };
    for (k, v) in ov {
        let (Some(key), Some(op)) = (scalar(k), scalar(v)) else {
            return Err(ctx.msg("'override' must map key names to 'append' or 'replace'"));
        };
        let can_append = appendable.contains(&key.as_str());
        let can_replace = replaceable.contains(&key.as_str());
        match op.as_str() {
            "append" if can_append => {
                to_append.insert(key);
            }
            "append" => {
                return Err(ctx.msg(format!(
                    "override: Key '{key}' cannot be appended to, use 'replace' instead"
                )))
            }
            "replace" if can_replace => {
                to_replace.insert(key);
            }
            "replace" => return Err(ctx.msg(format!("override: Key '{key}' cannot be replaced"))),
            _ => {
                let mut allowed = Vec::new();
                if can_append {
                    allowed.push("append");
                }
                if can_replace {
                    allowed.push("replace");
                }
                return Err(ctx.msg(format!(
                    "Invalid override operation for key '{key}': '{op}'. Allowed values are: {}",
                    allowed.join(" ")
                )));
            }
        }
    }
    Ok((to_append, to_replace))
}

/// `x.y.z` with numbers.
fn parse_semver(s: &str) -> Option<(u64, u64, u64)> {
    let mut parts = s.split('.');
    let a = parts.next()?.parse().ok()?;
    let b = parts.next()?.parse().ok()?;
    let c = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((a, b, c))
}

/// libsinsp's bare string: `[^()"'[:space:]=,]+`.
fn is_bare_string(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, '(' | ')' | '"' | '\'' | '=' | ',') || c.is_whitespace())
}

/// libsinsp's identifier: `[a-zA-Z]+[a-zA-Z0-9_]*`.
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The 0-based lines, within a document, of the items of its top-level block sequence: the
/// lines starting with `-` at the indentation of the first one. Empty when the document
/// does not start with a block sequence.
fn item_lines(doc: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut indent = None;
    for (i, line) in doc.lines().enumerate() {
        let t = line.trim_start();
        if t.is_empty() || t.starts_with('#') || t.starts_with('%') {
            continue;
        }
        let ind = line.len() - t.len();
        let dash = t == "-" || t.starts_with("- ") || t.starts_with("-\t");
        match indent {
            None if dash => {
                indent = Some(ind);
                out.push(i);
            }
            None => return out,
            Some(x) if dash && x == ind => out.push(i),
            Some(_) => {}
        }
    }
    out
}
