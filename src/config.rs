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
    pub telemetry: TelemetryConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/tripline")
}

/// A duration written as `500ms`, `30s`, `10m`, `2h` or `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub std::time::Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_human_duration(&s).map(HumanDuration).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a duration (use e.g. `500ms`, `30s`, `10m`, `2h`)"
            ))
        })
    }
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `1d`.
pub fn parse_human_duration(s: &str) -> Option<std::time::Duration> {
    match s.trim().strip_suffix("ms") {
        Some(ms) => ms
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(std::time::Duration::from_millis),
        None => crate::rules::parse_duration(s),
    }
}

/// Where a file source starts in files that exist when it first runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    Beginning,
    #[default]
    End,
}

/// One entry of `sources:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    File(FileSourceConfig),
    /// The API server's audit webhook (`--audit-webhook-config-file`).
    Webhook(crate::source::webhook::WebhookSourceConfig),
    /// A Kafka consumer group.
    Kafka(crate::source::kafka::KafkaSourceConfig),
}

/// `sources: - type: file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Names the source in metrics, logs and the checkpoint file (default `file-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Glob patterns of the files to follow.
    pub paths: Vec<String>,
    /// Glob patterns of files not to follow.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// For files present at the first start (no checkpoint yet): `end` or `beginning`. Files
    /// that appear later are always read from the beginning.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How often globs are re-evaluated and files polled (inotify wakes the reader sooner).
    #[serde(default = "default_poll")]
    pub poll_interval: HumanDuration,
    /// How often confirmed offsets are written to `state_dir`.
    #[serde(default = "default_checkpoint")]
    pub checkpoint_interval: HumanDuration,
    /// Raise an alert when no event arrived for this long.
    #[serde(default = "default_silence")]
    pub silence_alert_after: HumanDuration,
}

fn default_poll() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(250))
}
fn default_checkpoint() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(1))
}
fn default_silence() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(300))
}

/// Which outputs a sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flow {
    /// ECS alert documents.
    Alerts,
    /// Every audit event, redacted and enriched (SIEM archiving).
    Events,
}

/// One entry of `sinks:`: the settings every sink has, and its type's own.
#[derive(Debug, Clone, Deserialize)]
pub struct SinkConfig {
    /// Names the sink in metrics, logs and dead letters (default `<type>-<index>`).
    #[serde(default)]
    pub name: Option<String>,
    /// `alerts` (ECS alert documents) and/or `events` (every audit event, redacted).
    #[serde(default = "default_flows")]
    pub flows: Vec<Flow>,
    /// Only alerts of this level or higher.
    #[serde(default)]
    pub min_level: Option<LevelName>,
    /// Only alerts of rules that carry at least one of these tags (`attack.*` matches by prefix).
    #[serde(default)]
    pub tags: Vec<String>,
    /// A required sink must confirm a batch before its offset is checkpointed; a sink that is
    /// not required never holds the pipeline back and dead-letters what it cannot deliver.
    #[serde(default = "yes")]
    pub required: bool,
    /// How records are grouped into requests.
    #[serde(default)]
    pub batch: Option<BatchConfig>,
    /// Delivery attempts of a whole request before it is dead-lettered; unset means retry until
    /// delivered (required sinks) or 3 attempts (other sinks).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    #[serde(flatten)]
    pub kind: SinkKind,
}

/// A Sigma level as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelName {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl LevelName {
    pub fn level(self) -> crate::rules::Level {
        use crate::rules::Level;
        match self {
            LevelName::Informational => Level::Informational,
            LevelName::Low => Level::Low,
            LevelName::Medium => Level::Medium,
            LevelName::High => Level::High,
            LevelName::Critical => Level::Critical,
        }
    }
}

/// `batch:` of a sink. Defaults depend on the sink type.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Records per request.
    #[serde(default)]
    pub max_records: Option<usize>,
    /// Bytes of documents per request (before compression).
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// How long the first record of a request may wait for more.
    #[serde(default)]
    pub flush_interval: Option<HumanDuration>,
}

/// The type of a sink and its own settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkKind {
    /// JSON lines appended to a file.
    File(FileSinkConfig),
    /// JSON lines on standard output.
    Stdout(StdoutSinkConfig),
    /// Elasticsearch or OpenSearch bulk API.
    #[serde(alias = "opensearch")]
    Elasticsearch(crate::sink::elasticsearch::ElasticsearchConfig),
    /// Kafka topics.
    Kafka(crate::sink::kafka::KafkaSinkConfig),
    /// Splunk HTTP Event Collector.
    #[serde(rename = "splunk_hec", alias = "splunk")]
    SplunkHec(crate::sink::splunk::SplunkConfig),
    /// RFC 5424 syslog over TCP, TLS or UDP.
    Syslog(crate::sink::syslog::SyslogConfig),
    /// JSON POSTed to an HTTP endpoint (generic webhooks, Slack).
    Http(crate::sink::http::HttpSinkConfig),
}

/// `sinks: - type: file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: PathBuf,
}

/// `sinks: - type: stdout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

fn default_flows() -> Vec<Flow> {
    vec![Flow::Alerts]
}

impl SinkKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkKind::File(_) => "file",
            SinkKind::Stdout(_) => "stdout",
            SinkKind::Elasticsearch(_) => "elasticsearch",
            SinkKind::Kafka(_) => "kafka",
            SinkKind::SplunkHec(_) => "splunk_hec",
            SinkKind::Syslog(_) => "syslog",
            SinkKind::Http(_) => "http",
        }
    }
}

impl SinkConfig {
    pub fn flows(&self) -> &[Flow] {
        &self.flows
    }

    pub fn required(&self) -> bool {
        self.required
    }

    /// The configured name, or `<type>-<index>`.
    pub fn name(&self, index: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{index}", self.kind.type_name()))
    }
}

impl SourceConfig {
    /// The configured name, or `<type>-<index>`.
    pub fn name(&self, index: usize) -> String {
        match self {
            SourceConfig::File(c) => c.name.clone().unwrap_or(format!("file-{index}")),
            SourceConfig::Webhook(c) => c.name.clone().unwrap_or(format!("webhook-{index}")),
            SourceConfig::Kafka(c) => c.name.clone().unwrap_or(format!("kafka-{index}")),
        }
    }
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
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 0,
            batch_max_bytes: default_batch_bytes(),
            queue_batches: default_queue(),
            shutdown_timeout: default_shutdown(),
        }
    }
}

fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_queue() -> usize {
    16
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

    /// Things that are allowed but probably not meant (printed by `config check`, logged at
    /// start).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.sinks.is_empty() && !self.sinks.iter().any(|s| s.flows().contains(&Flow::Alerts)) {
            w.push("sinks: no sink takes `alerts`: alerts (including \"Audit Events Stopped\") are counted but not delivered".to_string());
        }
        w
    }

    /// Checks what can be checked without I/O; returns every problem with its key path.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.input.max_line_bytes < 1024 {
            p.push("input.max_line_bytes: must be at least 1024".to_string());
        }
        for (i, src) in self.sources.iter().enumerate() {
            match src {
                SourceConfig::File(f) => {
                    if f.paths.is_empty() {
                        p.push(format!("sources[{i}].paths: at least one glob is required"));
                    }
                    for (j, g) in f.paths.iter().chain(&f.exclude).enumerate() {
                        if let Err(e) = glob::Pattern::new(g) {
                            p.push(format!("sources[{i}].paths[{j}]: `{g}` is not a glob: {e}"));
                        }
                    }
                }
                SourceConfig::Webhook(w) => {
                    for problem in w.validate() {
                        p.push(format!("sources[{i}].{problem}"));
                    }
                }
                SourceConfig::Kafka(k) => {
                    for problem in k.validate() {
                        p.push(format!("sources[{i}].{problem}"));
                    }
                }
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let n = s.name(i);
            // Names become checkpoint file names: compare them as such.
            let file = crate::source::checkpoint::Checkpoints::path(std::path::Path::new(""), &n);
            if !names.insert(file) {
                p.push(format!(
                    "sources[{i}].name: `{n}` is used twice (names differing only in characters other than letters, digits, `-` and `_` count as the same)"
                ));
            }
        }
        if self.pipeline.workers > 1024 {
            p.push("pipeline.workers: at most 1024".to_string());
        }
        let mut names = std::collections::HashSet::new();
        for (i, s) in self.sinks.iter().enumerate() {
            let n = s.name(i);
            if !names.insert(n.clone()) {
                p.push(format!("sinks[{i}].name: `{n}` is used twice"));
            }
            if let SinkKind::Elasticsearch(es) = &s.kind {
                for problem in es.validate() {
                    p.push(format!("sinks[{i}].{problem}"));
                }
            }
            if s.flows().is_empty() {
                p.push(format!(
                    "sinks[{i}].flows: name at least one of `alerts`, `events`"
                ));
            }
        }
        if self.pipeline.queue_batches == 0 {
            p.push("pipeline.queue_batches: must be at least 1".to_string());
        }
        if self.pipeline.batch_max_bytes < 4096 {
            p.push("pipeline.batch_max_bytes: must be at least 4096".to_string());
        }
        if !matches!(self.telemetry.log_format.as_str(), "json" | "text") {
            p.push(format!(
                "telemetry.log_format: `{}` is neither `json` nor `text`",
                self.telemetry.log_format
            ));
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
