//! The configuration file shared by `tripline scan` and the daemon: the root [`Config`], which
//! aggregates the configs that each component defines for itself (`source::SourceConfig`,
//! `sink::SinkConfig`, `rules::RulesConfig`), `${ENV_VAR}` interpolation, and validation that
//! collects every component's problems under its key path.
//!
//! [`types`] holds the leaf types every component's config uses (durations, flows, secrets);
//! it imports nothing of tripline, so components depend on it and never on this root.

pub mod types;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::event::DEFAULT_MAX_LINE_BYTES;
use crate::rules::RulesConfig;
use crate::sink::SinkConfig;
use crate::source::SourceConfig;
use types::{Flow, HumanDuration};

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

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Added to every alert as `orchestrator.cluster.name`.
    #[serde(default)]
    pub cluster_name: Option<String>,
    /// Added to alerts and events as `host.name`: the node whose API server wrote the audit
    /// log. Default: the `NODE_NAME` environment variable (set it from the downward API).
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub rules: RulesConfig,
    #[serde(default)]
    pub input: InputConfig,
    /// Where the daemon keeps checkpoints and the dead-letter file.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Where audit events come from (`tripline run`).
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Where alerts and events go (`tripline run`).
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub stateful: StatefulConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

/// `stateful:`: the state of correlations, throttling and first-seen baselines in the daemon.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatefulConfig {
    /// How often the state is written to `state_dir` (with the source positions it reflects).
    /// Sources checkpoint only what a written snapshot covers, so this is also how far
    /// checkpoints may lag.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: HumanDuration,
    /// How far behind the latest event time a match may arrive and still count in a
    /// correlation; later ones are counted in `tripline_correlation_late_total` and left out.
    #[serde(default = "default_lateness")]
    pub lateness: HumanDuration,
    /// Groups kept per correlation; beyond, the least recently seen is evicted.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
    /// After this much silence (wall time), event time is taken to move on with the clock, so
    /// that windows close on a quiet stream.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Events remembered (by content hash) so that one delivered again after a restart is not
    /// counted twice by a throttle or a correlation.
    #[serde(default = "default_redelivery_window")]
    pub redelivery_window: usize,
}

impl Default for StatefulConfig {
    fn default() -> Self {
        StatefulConfig {
            snapshot_interval: default_snapshot_interval(),
            lateness: default_lateness(),
            max_groups: default_max_groups(),
            idle_timeout: default_idle_timeout(),
            redelivery_window: default_redelivery_window(),
        }
    }
}

fn default_snapshot_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn default_lateness() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}
fn default_max_groups() -> usize {
    10_000
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(60))
}
fn default_redelivery_window() -> usize {
    131_072
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/tripline")
}

/// `pipeline:`: the daemon's concurrency and bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Detection threads; 0 means one per CPU core.
    #[serde(default)]
    pub workers: usize,
    /// Largest batch a source hands to the workers, in bytes of complete lines.
    #[serde(default = "default_batch_bytes")]
    pub batch_max_bytes: usize,
    /// Batches queued between stages; when full, sources stop reading.
    #[serde(default = "default_queue")]
    pub queue_batches: usize,
    /// On SIGTERM/SIGINT, how long to deliver what is in flight before exiting anyway.
    #[serde(default = "default_shutdown")]
    pub shutdown_timeout: HumanDuration,
    /// Largest event forwarded whole in the events flow, in bytes of its JSON text. A larger
    /// event is still matched by the rules, and forwarded with `requestObject` and
    /// `responseObject` replaced by a marker with their size.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Bytes of records (alerts and events) waiting in all sink queues together; when they are
    /// spent, the workers wait, and in turn the sources.
    #[serde(default = "default_inflight_bytes")]
    pub max_inflight_bytes: usize,
    /// Bytes of source batches waiting for a worker or being processed, all sources together;
    /// when they are spent, the sources wait. A batch larger than this (one long line) waits
    /// until it is the only one.
    #[serde(default = "default_input_bytes")]
    pub max_input_bytes: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 0,
            batch_max_bytes: default_batch_bytes(),
            queue_batches: default_queue(),
            shutdown_timeout: default_shutdown(),
            max_event_bytes: default_max_event_bytes(),
            max_inflight_bytes: default_inflight_bytes(),
            max_input_bytes: default_input_bytes(),
        }
    }
}

fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_queue() -> usize {
    16
}
/// RequestResponse events with list responses are hundreds of KB; Metadata events about 1 KB.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1 << 20;
fn default_max_event_bytes() -> usize {
    DEFAULT_MAX_EVENT_BYTES
}
/// An eighth of the file DaemonSet's 256Mi limit.
pub const DEFAULT_MAX_INFLIGHT_BYTES: usize = 32 << 20;
fn default_inflight_bytes() -> usize {
    DEFAULT_MAX_INFLIGHT_BYTES
}
/// Two of the longest lines (`input.max_line_bytes`, 16 MiB by default).
pub const DEFAULT_MAX_INPUT_BYTES: usize = 32 << 20;
fn default_input_bytes() -> usize {
    DEFAULT_MAX_INPUT_BYTES
}
fn default_shutdown() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(30))
}

/// `telemetry:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`; unset disables the endpoint.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// `json` (default) or `text`.
    #[serde(default = "default_log_format")]
    pub log_format: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            listen: None,
            log_format: default_log_format(),
        }
    }
}

fn default_log_format() -> String {
    "json".to_string()
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

/// A config as read from its file: the validated config, and each top-level section as
/// written (after `${ENV}` interpolation), to tell which sections a new version changes.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub config: Config,
    sections: serde_yaml::Mapping,
}

impl ConfigFile {
    /// Reads, interpolates, parses and validates a config file.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        let (config, sections) = parse_named(&name, &text, &|k| std::env::var(k).ok())?;
        Ok(ConfigFile {
            path: path.to_path_buf(),
            config,
            sections,
        })
    }

    /// The top-level keys whose settings differ between the two files, sorted (a key written
    /// in one file only counts, even if it repeats a default).
    pub fn changed_sections(&self, other: &ConfigFile) -> Vec<String> {
        let mut keys: Vec<String> = self
            .sections
            .keys()
            .chain(other.sections.keys())
            .map(|k| k.as_str().map_or_else(|| format!("{k:?}"), str::to_string))
            .collect();
        keys.sort();
        keys.dedup();
        keys.retain(|k| self.sections.get(k.as_str()) != other.sections.get(k.as_str()));
        keys
    }
}

/// Interpolates, parses and validates config text; `name` prefixes every message.
fn parse_named(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, serde_yaml::Mapping), ConfigError> {
    let text = interpolate_env(text, env).map_err(|problems| ConfigError::Invalid {
        path: name.to_string(),
        problems,
    })?;
    let parse_error = |e: serde_yaml::Error| ConfigError::Parse {
        path: name.to_string(),
        message: e.to_string(),
    };
    let (cfg, sections): (Config, serde_yaml::Mapping) = if text.trim().is_empty() {
        (Config::default(), serde_yaml::Mapping::new())
    } else {
        (
            serde_yaml::from_str(&text).map_err(parse_error)?,
            serde_yaml::from_str(&text).map_err(parse_error)?,
        )
    };
    let problems = cfg.validate();
    if problems.is_empty() {
        Ok((cfg, sections))
    } else {
        Err(ConfigError::Invalid {
            path: name.to_string(),
            problems,
        })
    }
}

impl Config {
    /// Reads, interpolates, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        ConfigFile::load(path).map(|f| f.config)
    }

    /// Parses and validates config text; `name` prefixes every message.
    pub fn from_str_named(
        name: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        parse_named(name, text, env).map(|(config, _)| config)
    }

    /// Things that are allowed but probably not meant (printed by `config check`, logged at
    /// start).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.sources.is_empty() && self.sinks.is_empty() {
            w.push("sources, sinks: none configured: enough for `tripline scan`; `tripline run` will not start".to_string());
        }
        if !self.sinks.is_empty() && !self.sinks.iter().any(|s| s.flows().contains(&Flow::Alerts)) {
            w.push("sinks: no sink takes `alerts`: alerts (including \"Audit Events Stopped\") are counted but not delivered".to_string());
        }
        w
    }

    /// Checks what can be checked without I/O; returns every problem with its key path. This
    /// is everything `tripline run` would reject before it opens a file, a port or a
    /// connection: each component's own `validate`, plus what concerns several of them.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.input.max_line_bytes < 1024 {
            p.push("input.max_line_bytes: must be at least 1024".to_string());
        }
        let st = &self.stateful;
        if st.snapshot_interval.0 < std::time::Duration::from_millis(100) {
            p.push("stateful.snapshot_interval: must be at least 100ms".to_string());
        }
        if st.max_groups == 0 {
            p.push("stateful.max_groups: must be at least 1".to_string());
        }
        for (i, src) in self.sources.iter().enumerate() {
            p.extend(
                src.validate()
                    .into_iter()
                    .map(|e| format!("sources[{i}].{e}")),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let n = s.name(i);
            // Names become checkpoint file names: compare them as such.
            let file = crate::source::checkpoint::Checkpoints::path(Path::new(""), &n);
            if !names.insert(file) {
                p.push(format!(
                    "sources[{i}].name: `{n}` is used twice (names differing only in characters other than letters, digits, `-` and `_` count as the same)"
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let n = s.name(i);
            if !names.insert(n.clone()) {
                p.push(format!("sinks[{i}].name: `{n}` is used twice"));
            }
            p.extend(s.validate().into_iter().map(|e| format!("sinks[{i}].{e}")));
        }
        // A daemon config with one side missing would not start (a config with neither serves
        // `tripline scan`, and `warnings` says so).
        if self.sources.is_empty() && !self.sinks.is_empty() {
            p.push("sources: `tripline run` needs at least one source for its sinks".to_string());
        }
        if self.sinks.is_empty() && !self.sources.is_empty() {
            p.push("sinks: `tripline run` needs at least one sink for its sources".to_string());
        }
        p.extend(
            self.pipeline
                .validate()
                .into_iter()
                .map(|e| format!("pipeline.{e}")),
        );
        if !matches!(self.telemetry.log_format.as_str(), "json" | "text") {
            p.push(format!(
                "telemetry.log_format: `{}` is neither `json` nor `text`",
                self.telemetry.log_format
            ));
        }
        p.extend(
            self.rules
                .validate()
                .into_iter()
                .map(|e| format!("rules.{e}")),
        );
        p
    }
}

impl PipelineConfig {
    /// Problems found without I/O, each `key: message` relative to `pipeline`.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.workers > 1024 {
            p.push("workers: at most 1024".to_string());
        }
        if self.queue_batches == 0 {
            p.push("queue_batches: must be at least 1".to_string());
        }
        if self.batch_max_bytes < 4096 {
            p.push("batch_max_bytes: must be at least 4096".to_string());
        }
        if self.max_event_bytes < 4096 {
            p.push("max_event_bytes: must be at least 4096".to_string());
        }
        if self.max_input_bytes < self.batch_max_bytes {
            p.push("max_input_bytes: must be at least batch_max_bytes".to_string());
        }
        if self.max_inflight_bytes < self.max_event_bytes {
            p.push("max_inflight_bytes: must be at least max_event_bytes".to_string());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::file::ReadFrom;

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
        assert_eq!(c.pipeline.max_event_bytes, DEFAULT_MAX_EVENT_BYTES);
        assert_eq!(c.pipeline.max_inflight_bytes, DEFAULT_MAX_INFLIGHT_BYTES);
        assert_eq!(c.pipeline.max_input_bytes, DEFAULT_MAX_INPUT_BYTES);
    }

    #[test]
    fn memory_bounds_are_checked_against_each_other() {
        let p = PipelineConfig {
            max_event_bytes: 100,
            ..PipelineConfig::default()
        };
        assert_eq!(p.validate(), ["max_event_bytes: must be at least 4096"]);
        let p = PipelineConfig {
            max_event_bytes: 2 << 20,
            max_inflight_bytes: 1 << 20,
            max_input_bytes: 4096,
            ..PipelineConfig::default()
        };
        assert_eq!(
            p.validate(),
            [
                "max_input_bytes: must be at least batch_max_bytes",
                "max_inflight_bytes: must be at least max_event_bytes"
            ]
        );
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
    fn daemon_config_parses_and_problems_name_their_key_path() {
        let ok = parse(
            "state_dir: /tmp/s\nsources:\n  - type: file\n    paths: [\"/var/log/*.log\"]\n    poll_interval: 500ms\nsinks:\n  - type: file\n    path: /tmp/a.jsonl\n    flows: [alerts, events]\n  - type: stdout\ntelemetry:\n  listen: 127.0.0.1:9090\n",
        )
        .unwrap();
        assert_eq!(ok.sources.len(), 1);
        assert_eq!(ok.sinks[0].flows(), [Flow::Alerts, Flow::Events]);
        assert_eq!(ok.sinks[1].flows(), [Flow::Alerts]);
        let SourceConfig::File(f) = &ok.sources[0] else {
            panic!("a file source")
        };
        assert_eq!(f.poll_interval.0, std::time::Duration::from_millis(500));
        assert_eq!(f.read_from, ReadFrom::End);

        let e = parse("sources:\n  - type: file\n    paths: []\n    exclude: ['[']\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sources[0].paths: at least one glob is required"),
            "{e}"
        );
        assert!(e.contains("is not a glob"), "{e}");
        let e = parse("sources:\n  - type: file\n    paths: [a]\n    pol_interval: 1s\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `pol_interval`"), "{e}");
        let e = parse("sources:\n  - type: kafkaa\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown variant `kafkaa`"), "{e}");
        let e = parse("sources:\n  - type: file\n    paths: [a]\n    poll_interval: soon\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`soon` is not a duration"), "{e}");
        let e = parse(
            "sinks:\n  - type: stdout\n    name: x\n  - type: stdout\n    name: x\n    flows: []\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("sinks[1].name: `x` is used twice") && e.contains("sinks[1].flows"),
            "{e}"
        );
    }

    #[test]
    fn a_daemon_config_needs_sources_and_sinks_but_a_scan_config_needs_neither() {
        let e = parse("sinks:\n  - type: stdout\n").unwrap_err().to_string();
        assert!(
            e.contains("sources: `tripline run` needs at least one source"),
            "{e}"
        );
        let e = parse("sources:\n  - type: file\n    paths: [a]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("sinks: `tripline run` needs at least one sink"),
            "{e}"
        );
        let scan_only = parse("cluster_name: prod\n").unwrap();
        assert!(
            scan_only
                .warnings()
                .iter()
                .any(|w| w.contains("`tripline run` will not start")),
            "{:?}",
            scan_only.warnings()
        );
    }

    #[test]
    fn changed_sections_are_the_top_level_keys_whose_settings_differ() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("c.yaml");
        let file = |text: &str| {
            std::fs::write(&path, text).expect("writing the config");
            ConfigFile::load(&path).expect("a valid config")
        };
        let a = file("cluster_name: a\nrules:\n  disable: [x]\n");
        let same = file("# a comment\nrules: {disable: [x]}\ncluster_name: a\n");
        assert!(a.changed_sections(&same).is_empty());
        let b = file("cluster_name: b\nrules:\n  disable: [x, y]\nstate_dir: /tmp/s\n");
        assert_eq!(
            a.changed_sections(&b),
            ["cluster_name", "rules", "state_dir"]
        );
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

    /// Sink settings that the build step (`sink::start`) rejects without any I/O, the key path
    /// `config check` must name for each, and the config around them.
    const SINK_BUILD_ERRORS: &[(&str, &str)] = &[
        ("type: syslog\n    address: nohost", "sinks[0].address"),
        ("type: syslog\n    address: h:0", "sinks[0].address"),
        ("type: syslog\n    address: h:514\n    protocol: udp\n    tls: {}", "sinks[0].tls"),
        ("type: syslog\n    address: h:514\n    protocol: tcp\n    tls: {}", "sinks[0].tls"),
        ("type: syslog\n    address: bad_name!:6514\n    protocol: tls", "sinks[0].address"),
        ("type: syslog\n    address: h:6514\n    protocol: tls\n    tls: {cert: /c.pem}", "sinks[0].tls"),
        ("type: syslog\n    address: h:514\n    app_name: ''", "sinks[0].app_name"),
        ("type: syslog\n    address: h:514\n    max_message_bytes: 10", "sinks[0].max_message_bytes"),
        ("type: syslog\n    address: h:514\n    protocol: udp\n    max_message_bytes: 100000", "sinks[0].max_message_bytes"),
        ("type: http\n    url: ftp://h/x", "sinks[0].url"),
        ("type: http\n    url: not a url", "sinks[0].url"),
        ("type: http\n    url: http://h/x\n    tls: {}", "sinks[0].url"),
        ("type: http\n    url: https://h/x\n    tls: {key: /k.pem}", "sinks[0].tls"),
        ("type: http\n    url: https://h/x\n    template: slack\n    mode: batch", "sinks[0].mode"),
        ("type: http\n    url: https://h/x\n    template: falco\n    mode: batch", "sinks[0].mode"),
        ("type: http\n    url: https://h/x\n    template: falco\n    flows: [alerts, events]", "sinks[0].flows"),
        ("type: stdout\n    format: falco\n    flows: [events]", "sinks[0].flows"),
        ("type: file\n    path: /nonexistent-dir/x.jsonl\n    format: falco\n    flows: [alerts, events]", "sinks[0].flows"),
        ("type: http\n    url: https://h/x\n    headers: {'bad name': v}", "sinks[0].headers"),
        ("type: http\n    url: https://h/x\n    headers: {X-Key: \"a\\nb\"}", "sinks[0].headers.X-Key"),
        ("type: http\n    url: https://h/x\n    token: t\n    token_file: /t", "sinks[0].token"),
        ("type: http\n    url: https://h/x\n    token: t\n    username: u", "sinks[0].token"),
        ("type: http\n    url: https://h/x\n    password: p", "sinks[0].password"),
        ("type: http\n    url: https://h/x\n    token: t\n    headers: {Authorization: x}", "sinks[0].headers"),
        ("type: splunk_hec\n    endpoint: nope\n    token: t", "sinks[0].endpoint"),
        ("type: splunk_hec\n    endpoint: https://h:8088\n    path: services\n    token: t", "sinks[0].path"),
        ("type: splunk_hec\n    endpoint: https://h:8088", "sinks[0].token"),
        ("type: splunk_hec\n    endpoint: https://h:8088\n    token: ''", "sinks[0].token"),
        ("type: splunk_hec\n    endpoint: https://h:8088\n    token: \"a\\nb\"", "sinks[0].token"),
        ("type: splunk_hec\n    endpoint: https://h:8088\n    token: t\n    token_file: /t", "sinks[0].token"),
        ("type: elasticsearch\n    endpoints: []", "sinks[0].endpoints"),
        ("type: elasticsearch\n    endpoints: [ftp://h]", "sinks[0].endpoints[0]"),
        ("type: elasticsearch\n    endpoints: [http://h:9200]\n    alerts_index: Upper", "sinks[0].alerts_index"),
        ("type: elasticsearch\n    endpoints: [http://h:9200]\n    auth: {username: u}", "sinks[0].auth.username"),
        ("type: elasticsearch\n    endpoints: [http://h:9200]\n    auth: {api_key: k, bearer_token: t}", "sinks[0].auth"),
        ("type: elasticsearch\n    endpoints: [http://h:9200]\n    auth: {api_key: k, api_key_file: /k}", "sinks[0].auth.api_key"),
        ("type: elasticsearch\n    endpoints: [http://h:9200]\n    auth: {bearer_token: \"a\\nb\"}", "sinks[0].auth.bearer_token"),
        ("type: elasticsearch\n    endpoints: [http://h:9200]\n    tls: {cert: /c.pem}", "sinks[0].tls"),
        ("type: kafka\n    brokers: []", "sinks[0].brokers"),
        #[cfg(feature = "kafka")]
        ("type: kafka\n    brokers: [h:9092]\n    options: {no.such.option: x}", "sinks[0].options"),
        #[cfg(feature = "kafka")]
        ("type: kafka\n    brokers: [h:9092]\n    options: {linger.ms: soon}", "sinks[0].options"),
    ];

    /// Settings the build step used to accept by changing them (`max_records: 0` was raised to
    /// 1): `config check` rejects them now, and the daemon with it.
    const SINK_SETTINGS_REJECTED: &[(&str, &str)] = &[
        (
            "type: stdout\n    batch: {max_records: 0}",
            "sinks[0].batch.max_records",
        ),
        (
            "type: stdout\n    batch: {max_bytes: 0}",
            "sinks[0].batch.max_bytes",
        ),
        ("type: stdout\n    max_attempts: 0", "sinks[0].max_attempts"),
    ];

    #[test]
    fn every_error_the_sink_build_step_raises_without_io_is_raised_by_config_check_with_its_key() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let metrics = crate::telemetry::Metrics::new();
        let health = crate::telemetry::Health::new();
        let dead_letters = std::sync::Arc::new(crate::sink::DeadLetters::new(dir.path(), &metrics));
        for (sink, key) in SINK_BUILD_ERRORS {
            let text = format!("sinks:\n  - {sink}\n");
            // The build step, from the config as parsed (no validation): it fails...
            let unchecked: Config = serde_yaml::from_str(&text).expect("parses");
            let ctx = crate::sink::SinkContext {
                index: 0,
                queue: 1,
                metrics: &metrics,
                health: &health,
                stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
                gates_readiness: false,
                dead_letters: dead_letters.clone(),
            };
            let built = crate::sink::start(&unchecked.sinks[0], ctx);
            assert!(built.is_err(), "the build step accepted {sink:?}");
            // ... and config check names the key.
            let checked = parse(&text)
                .expect_err("config check accepted it")
                .to_string();
            assert!(checked.contains(&format!("{key}:")), "{sink:?}: {checked}");
        }
        for (sink, key) in SINK_SETTINGS_REJECTED {
            let checked = parse(&format!("sinks:\n  - {sink}\n"))
                .expect_err("config check accepted it")
                .to_string();
            assert!(checked.contains(&format!("{key}:")), "{sink:?}: {checked}");
        }
    }

    /// Source settings that starting the source rejects without I/O, and their key paths.
    const SOURCE_BUILD_ERRORS: &[(&str, &str)] = &[
        ("type: file\n    paths: ['[']", "sources[0].paths[0]"),
        ("type: webhook\n    listen: nowhere\n    allow_insecure: true", "sources[0].listen"),
        ("type: webhook\n    listen: 127.0.0.1:0\n    path: x\n    allow_insecure: true", "sources[0].path"),
        ("type: webhook\n    listen: 127.0.0.1:0\n    token: t\n    token_file: /t\n    allow_insecure: true", "sources[0].token"),
        ("type: webhook\n    listen: 127.0.0.1:0\n    token: ' '\n    allow_insecure: true", "sources[0].token"),
        ("type: webhook\n    listen: 127.0.0.1:0", "sources[0].tls"),
        ("type: kafka\n    brokers: []\n    topics: [a]\n    group_id: g", "sources[0].brokers"),
        ("type: kafka\n    brokers: [h:9092]\n    topics: []\n    group_id: g", "sources[0].topics"),
        ("type: kafka\n    brokers: [h:9092]\n    topics: [a]\n    group_id: ''", "sources[0].group_id"),
        ("type: kafka\n    brokers: [h:9092]\n    topics: [a]\n    group_id: g\n    options: {enable.auto.commit: 'false'}", "sources[0].options.enable.auto.commit"),
        #[cfg(feature = "kafka")]
        ("type: kafka\n    brokers: [h:9092]\n    topics: [a]\n    group_id: g\n    options: {no.such.option: x}", "sources[0].options"),
    ];

    /// Starts a source the way the daemon does (`source::start`), into a scratch state
    /// directory; one that starts is stopped at once.
    fn start_source(cfg: &crate::source::SourceConfig, state_dir: &Path) -> Result<(), String> {
        let metrics = crate::telemetry::Metrics::new();
        let health = crate::telemetry::Health::new();
        let (batches, _batch_rx) = crossbeam_channel::bounded(1);
        let (events, _event_rx) = crossbeam_channel::bounded(1);
        let ctx = crate::source::SourceContext {
            index: 0,
            state_dir,
            max_line_bytes: 1 << 20,
            batch_max_bytes: 1 << 20,
            batches,
            events,
            metrics: &metrics,
            health: &health,
            stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            drain_timeout: std::time::Duration::ZERO,
            partitions: std::sync::Arc::new(crate::pipeline::PartitionStates::for_rules(
                std::sync::Arc::new(crate::rules::RuleSet::new(Vec::new())),
            )),
        };
        crate::source::start(cfg, ctx)
            .map(crate::source::RunningSource::join)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_error_starting_a_source_raises_without_io_is_raised_by_config_check_with_its_key() {
        for (source, key) in SOURCE_BUILD_ERRORS {
            let dir = tempfile::tempdir().expect("a temp dir");
            let text = format!("sources:\n  - {source}\n");
            let unchecked: Config = serde_yaml::from_str(&text).expect("parses");
            let started = start_source(&unchecked.sources[0], dir.path());
            assert!(started.is_err(), "starting the source accepted {source:?}");
            let checked = parse(&text)
                .expect_err("config check accepted it")
                .to_string();
            assert!(
                checked.contains(&format!("{key}:")),
                "{source:?}: {checked}"
            );
        }
        // A file source without paths would start and follow nothing: config check refuses it.
        let checked = parse("sources:\n  - type: file\n    paths: []\n")
            .unwrap_err()
            .to_string();
        assert!(checked.contains("sources[0].paths:"), "{checked}");
    }
}
