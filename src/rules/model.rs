//! The rule model: what a loaded rule is, independent of the language it was written in.

use std::fmt;

/// Sigma `level`; in config files (a sink's `min_level`) written in lowercase as in Sigma.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    /// ECS `event.severity` / Elastic Security risk score for this level.
    pub fn severity(self) -> u8 {
        match self {
            Level::Informational => 1,
            Level::Low => 21,
            Level::Medium => 47,
            Level::High => 73,
            Level::Critical => 99,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The descriptive part of a rule: what alerts carry about the rule that fired.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMeta {
    /// Sigma `id` (a UUID).
    pub id: String,
    pub title: String,
    pub description: Option<String>,
    pub status: Option<String>,
    pub author: Option<String>,
    pub date: Option<String>,
    pub modified: Option<String>,
    pub level: Level,
    pub tags: Vec<String>,
    pub references: Vec<String>,
    pub falsepositives: Vec<String>,
    /// Where the rule came from: a file path, or `builtin:<file>` for the default pack.
    pub source: String,
    /// `tripline` for the default pack, `custom` for rules loaded from files.
    pub ruleset: String,
}

/// One field condition of a selection: `field|modifiers: values`.
#[derive(Debug, Clone)]
pub struct FieldCond {
    /// The field as written in the rule (for messages).
    pub name: String,
    /// Where to read it; more than one when a field mapping maps it to several paths (any counts).
    pub fields: Vec<crate::event::FieldRef>,
    pub patterns: Vec<super::matcher::Pattern>,
    /// `all`: every pattern must match (by some value); otherwise any pattern.
    pub all: bool,
}

/// A named detection item of a rule.
#[derive(Debug, Clone)]
pub enum Selection {
    /// A map: every field condition holds.
    Map(Vec<FieldCond>),
    /// A list of maps: any of them holds.
    AnyOf(Vec<Vec<FieldCond>>),
    /// A list of keywords: any occurs in the event's JSON text.
    Keywords(Vec<super::matcher::Pattern>),
    /// The condition of a Falco rule.
    Falco(std::sync::Arc<super::falco::FalcoCond>),
}

/// A piece of an `output` template.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputPart {
    Lit(String),
    Field(crate::event::FieldRef),
    /// A field of Falco's plugins, in a Falco rule's `output`.
    Falco(super::falco::Field),
}

/// `throttle`: repeated matches with the same key within `window` (event time) are counted, not
/// re-alerted.
#[derive(Debug, Clone, PartialEq)]
pub struct ThrottleSpec {
    pub key: Vec<crate::event::FieldRef>,
    pub window: std::time::Duration,
}

/// How a `first_seen` key field's values are normalised before they are hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalize {
    /// A user agent's product and major version, lowercased (`kubectl/v1.29.2 (linux/amd64)
    /// kubernetes/4b8e819` -> `kubectl/1`): client upgrades keep their key.
    ProductMajor,
    /// An IPv4 address's /24 or an IPv6 address's /64; anything else stays as it is.
    Network,
    Lowercase,
}

impl Normalize {
    pub fn parse(s: &str) -> Option<Normalize> {
        Some(match s {
            "product_major" => Normalize::ProductMajor,
            "network" => Normalize::Network,
            "lowercase" => Normalize::Lowercase,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Normalize::ProductMajor => "product_major",
            Normalize::Network => "network",
            Normalize::Lowercase => "lowercase",
        }
    }
}

/// One field of a `first_seen` key.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstSeenField {
    /// The path as written in the rule.
    pub name: String,
    pub field: crate::event::FieldRef,
    pub normalize: Option<Normalize>,
}

/// `first_seen`: the rule alerts only on keys its baseline has not seen within `history`
/// (event time), once `learning` has passed since the baseline's first event
/// ([`crate::rules::baseline`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FirstSeenSpec {
    /// 1 to 3 fields.
    pub fields: Vec<FirstSeenField>,
    pub history: std::time::Duration,
    pub learning: std::time::Duration,
    /// The most keys the baseline holds; the least recently seen go first.
    pub max_entries: usize,
}

impl FirstSeenSpec {
    /// A hash of what decides the meaning of the baseline's keys and times (fields,
    /// normalisations, history, learning; not `max_entries`), stable across builds and runs: a
    /// baseline is kept across reloads and restarts only while this is unchanged.
    pub fn digest(&self) -> u64 {
        let mut h = blake3::Hasher::new();
        for f in &self.fields {
            h.update(f.name.as_bytes());
            h.update(&[0xff]);
            h.update(f.normalize.map_or("", Normalize::as_str).as_bytes());
            h.update(&[0xfe]);
        }
        h.update(&self.history.as_secs().to_le_bytes());
        h.update(&self.learning.as_secs().to_le_bytes());
        let b = h.finalize();
        let mut x = [0u8; 8];
        x.copy_from_slice(&b.as_bytes()[..8]);
        u64::from_le_bytes(x)
    }
}

/// One embedded test of a rule.
#[derive(Debug, Clone)]
pub struct RuleTest {
    pub name: String,
    pub expect_match: bool,
    /// The sample event as JSON text.
    pub event_json: String,
    pub line: usize,
    /// The rule compiled with the test's own `placeholders:` (which replace the configured
    /// values for this test only); `None` when the test has none.
    pub variant: Option<Box<Rule>>,
}

/// A compiled rule: metadata, selections, the condition over them, and the extensions.
#[derive(Debug, Clone)]
pub struct Rule {
    pub meta: RuleMeta,
    /// Detection names, in the rule's order (selection `i` is `names[i]`).
    pub names: Vec<String>,
    pub selections: Vec<Selection>,
    pub condition: super::condition::Expr,
    /// Configured exceptions: if any holds, the rule does not match.
    pub exceptions: Vec<Vec<FieldCond>>,
    pub output: Option<Vec<OutputPart>>,
    pub throttle: Option<ThrottleSpec>,
    /// `first_seen`: alert only on keys new to the rule's baseline.
    pub first_seen: Option<FirstSeenSpec>,
    pub tests: Vec<RuleTest>,
    /// The line of `id:` in `meta.source`.
    pub line: usize,
    /// `requires_placeholders`: placeholders that must have values for the rule to run.
    pub requires_placeholders: Vec<String>,
    /// The required placeholders that are empty: while any is, the rule is loaded but
    /// inactive (never evaluated).
    pub empty_placeholders: Vec<String>,
    /// The detection accepts an event without `stage` (a `stage` item that includes `null`)
    /// or several stages: events of one request that it matches alert once per request
    /// (an export that dropped `stage` keeps every stage of a request; a rule that names
    /// `[ResponseStarted, ResponseComplete]` sees both events of an exec).
    pub once_per_request: bool,
    /// The detection names several stages in one `stage` item: events that have a stage are
    /// also counted once per request.
    pub several_stages: bool,
    /// The Sigma v2 `name`, by which correlations may refer to the rule.
    pub name: Option<String>,
    /// The rule alerts on its own: false if and only if correlations refer to it and none of
    /// them has `generate: true` (it is then only an input of those correlations).
    pub alerts: bool,
    /// For a rule loaded from a Falco rules file: its priority, output fields and source.
    pub falco: Option<Box<super::falco::FalcoInfo>>,
}

impl Rule {
    /// True if and only if the rule is evaluated: every placeholder of
    /// `requires_placeholders` has at least one value.
    pub fn is_active(&self) -> bool {
        self.empty_placeholders.is_empty()
    }
}
