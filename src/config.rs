//! The configuration file shared by `tripline scan` and the daemon: serde structs with
//! `deny_unknown_fields`, defaults, `${ENV_VAR}` interpolation and pure validation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::event::DEFAULT_MAX_LINE_BYTES;
use crate::rules::DEFAULT_THROTTLE_MAX_KEYS;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: {}", .problems.join("; "))]
    Invalid { path: String, problems: Vec<String> },
}

/// A single string or a list of strings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Added to every alert as `orchestrator.cluster.name`.
    #[serde(default)]
    pub cluster_name: Option<String>,
    #[serde(default)]
    pub rules: RulesConfig,
    #[serde(default)]
    pub input: InputConfig,
}

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
        }
    }
}

/// `input:`: limits on what is read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    /// Longest line (and pretty-printed document) accepted, in bytes.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        InputConfig {
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_throttle_keys() -> usize {
    DEFAULT_THROTTLE_MAX_KEYS
}
fn default_max_line() -> usize {
    DEFAULT_MAX_LINE_BYTES
}

/// Replaces `${NAME}` with the environment variable's value. `$${` is a literal `${`. Comment
/// lines are left as they are. Unset variables are reported by name and line.
pub fn interpolate_env(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, Vec<String>> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut m = Vec::new();
        interpolate_line(line, env, &mut out, &mut m);
        missing.extend(m.into_iter().map(|e| format!("line {}: {e}", i + 1)));
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(missing)
    }
}

fn interpolate_line(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    missing: &mut Vec<String>,
) {
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(literal) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = literal;
        } else if let Some(body) = after.strip_prefix("${") {
            match body.find('}') {
                Some(end) => {
                    let name = &body[..end];
                    match env(name) {
                        Some(v) => out.push_str(&v),
                        None => missing.push(format!("environment variable `{name}` is not set")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str(after);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
}

impl Config {
    /// Reads, interpolates, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        Config::from_str_named(&name, &text, &|k| std::env::var(k).ok())
    }

    /// Parses and validates config text; `name` prefixes every message.
    pub fn from_str_named(
        name: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = interpolate_env(text, env).map_err(|problems| ConfigError::Invalid {
            path: name.to_string(),
            problems,
        })?;
        let cfg: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: name.to_string(),
                message: e.to_string(),
            })?
        };
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                path: name.to_string(),
                problems,
            })
        }
    }

    /// Checks what can be checked without I/O; returns every problem with its key path.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.input.max_line_bytes < 1024 {
            p.push("input.max_line_bytes: must be at least 1024".to_string());
        }
        if self.rules.throttle_max_keys == 0 {
            p.push("rules.throttle_max_keys: must be at least 1".to_string());
        }
        for (k, v) in &self.rules.field_mappings {
            for path in v.to_vec() {
                if let Err(e) = crate::event::FieldPath::parse(&path) {
                    p.push(format!("rules.field_mappings.{k}: {e}"));
                }
            }
        }
        let opts = self.compile_options("custom");
        for (id, list) in &self.rules.exceptions {
            for (i, sel) in list.iter().enumerate() {
                if sel.is_empty() {
                    p.push(format!(
                        "rules.exceptions.{id}[{i}]: an exception needs at least one field"
                    ));
                }
                for (k, v) in sel {
                    let key = k.as_str().unwrap_or_default();
                    if let Err(e) = crate::rules::compile_field(&opts, key, v) {
                        p.push(format!("rules.exceptions.{id}[{i}].{key}: {e}"));
                    }
                }
            }
        }
        p
    }

    /// Compiler options from this config: built-in placeholders overridden by the config's,
    /// built-in field mappings plus the config's.
    pub fn compile_options(&self, ruleset: &str) -> crate::rules::CompileOptions {
        let mut placeholders: HashMap<String, Vec<String>> = crate::rules::builtin_placeholders();
        for (k, v) in &self.rules.placeholders {
            placeholders.insert(k.clone(), v.to_vec());
        }
        let mut field_mappings = crate::rules::builtin_field_mappings();
        for (k, v) in &self.rules.field_mappings {
            field_mappings.insert(k.clone(), v.to_vec());
        }
        crate::rules::CompileOptions {
            placeholders,
            field_mappings,
            ruleset: ruleset.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_str_named("c.yaml", text, &|k| {
            (k == "TEAM").then(|| "sec".to_string())
        })
    }

    #[test]
    fn empty_config_has_defaults() {
        let c = parse("").unwrap();
        assert!(c.rules.builtin);
        assert_eq!(c.input.max_line_bytes, DEFAULT_MAX_LINE_BYTES);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_location() {
        let e = parse("rules:\n  disabel: [x]\n").unwrap_err().to_string();
        assert!(
            e.starts_with("c.yaml: rules: unknown field `disabel`"),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn env_vars_are_interpolated_and_missing_ones_reported() {
        let c = parse("cluster_name: ${TEAM}-prod\n").unwrap();
        assert_eq!(c.cluster_name.as_deref(), Some("sec-prod"));
        let e = parse("cluster_name: ${NOPE}\n").unwrap_err().to_string();
        assert!(e.contains("`NOPE` is not set"), "{e}");
        let c = parse("cluster_name: a$${B}\n").unwrap();
        assert_eq!(c.cluster_name.as_deref(), Some("a${B}"));
    }

    #[test]
    fn bad_exceptions_name_their_key_path() {
        let e = parse("rules:\n  exceptions:\n    abc:\n      - user.username|bogus: x\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rules.exceptions.abc[0].user.username|bogus: modifier `bogus`"),
            "{e}"
        );
    }
}
