//! Kafka as a source: a consumer in a consumer group reads audit events from topics; several
//! tripline instances in one group share the partitions.
//!
//! Offsets are stored only for messages whose batches every required sink confirmed, in order
//! per partition (the end of the longest confirmed run), and committed every
//! `commit_interval` by librdkafka, at shutdown, and when a partition is revoked (after waiting up
//! to `revoke_timeout` for its batches in flight). A rebalance or a crash therefore replays at most
//! the unconfirmed tail, and loses nothing.
//!
//! A message may hold one Event, an EventList, JSON lines, a cloud envelope, or a tripline
//! events-flow document (a first tier's `kafka` sink: the event keeps the cluster it names).
//! Stateful rules (correlations, first-seen baselines, throttling) see only the partitions of
//! their instance: they are exact only when the topic is keyed by fields that every one of
//! their keys includes. `partitioned_by` declares the topic's key, and `tripline config check`
//! names every stateful rule it does not cover ([`KafkaSourceConfig::partition_warnings`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::types::{HumanDuration, Secret};
use crate::event::{FieldPath, FieldRef};
use crate::rules::correlation::{Correlation, CorrelationInput};
use crate::rules::Rule;

#[cfg(feature = "kafka")]
mod changelog;
#[cfg(feature = "kafka")]
mod consumer;
#[cfg(feature = "kafka")]
pub use consumer::{KafkaSource, KafkaSourceError};

/// `sources: - type: kafka`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    pub topics: Vec<String>,
    /// The consumer group; instances with the same group share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// How often confirmed offsets are committed.
    #[serde(default = "default_commit_interval")]
    pub commit_interval: HumanDuration,
    /// How long a revoked partition waits for its batches in flight before committing.
    #[serde(default = "default_revoke_timeout")]
    pub revoke_timeout: HumanDuration,
    /// How long messages wait to fill a batch.
    #[serde(default = "default_linger")]
    pub batch_linger: HumanDuration,
    /// Raise "Audit Events Stopped" after this long without messages.
    #[serde(default = "default_silence")]
    pub silence_alert_after: HumanDuration,
    /// librdkafka properties passed through (TLS, SASL, `auto.offset.reset`, ...).
    #[serde(default)]
    pub options: BTreeMap<String, Secret>,
    /// The audit-event fields the topics are keyed by (the first tier's `key: {fields}`), so
    /// that every event with the same values (and cluster) reaches the same instance. Only
    /// declares it: `tripline config check` warns about every stateful rule whose key does not
    /// include them all.
    #[serde(default)]
    pub partitioned_by: Option<Vec<String>>,
    /// With `partitioned_by`: the compacted topic the state of each partition is written to
    /// (with every snapshot and at revoke) and read from (at assign). Default:
    /// `<group_id>-state`; created when absent.
    #[serde(default)]
    pub changelog_topic: Option<String>,
    /// How long reading a partition's state from the changelog may take at assign before the
    /// partition starts with empty state.
    #[serde(default = "default_restore_timeout")]
    pub restore_timeout: HumanDuration,
}

impl KafkaSourceConfig {
    /// The changelog topic, when the state follows the partitions (`partitioned_by` is set).
    pub fn changelog(&self) -> Option<String> {
        self.partitioned_by.as_ref()?;
        Some(
            self.changelog_topic
                .clone()
                .unwrap_or_else(|| format!("{}-state", self.group_id)),
        )
    }
}

fn default_restore_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_group() -> String {
    "tripline".to_string()
}
fn default_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_revoke_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_linger() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}
fn default_silence() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

/// Properties tripline sets itself: offsets are stored only once confirmed.
pub(crate) const FIXED: &[(&str, &str)] = &[
    ("enable.auto.offset.store", "false"),
    ("enable.auto.commit", "true"),
    ("enable.partition.eof", "false"),
];

impl KafkaSourceConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.brokers.is_empty() {
            p.push("brokers: at least one broker is required".to_string());
        }
        if self.topics.is_empty() {
            p.push("topics: at least one topic is required".to_string());
        }
        if self.group_id.is_empty() {
            p.push("group_id: must not be empty".to_string());
        }
        if let Some(fields) = &self.partitioned_by {
            if fields.is_empty() {
                p.push("partitioned_by: at least one field is required".to_string());
            }
            for (i, f) in fields.iter().enumerate() {
                if let Err(e) = FieldPath::parse(f) {
                    p.push(format!("partitioned_by[{i}]: `{f}`: {e}"));
                }
            }
        }
        match (&self.changelog_topic, &self.partitioned_by) {
            (Some(t), _) if t.trim().is_empty() => {
                p.push("changelog_topic: must not be empty".to_string())
            }
            (Some(_), None) => p.push(
                "changelog_topic: the state follows the partitions only with partitioned_by"
                    .to_string(),
            ),
            (Some(t), Some(_)) if self.topics.contains(t) => p.push(format!(
                "changelog_topic: `{t}` is also in topics; the changelog needs a topic of its own"
            )),
            _ => {}
        }
        for k in self.options.keys() {
            if FIXED.iter().any(|(f, _)| f == k) {
                p.push(format!(
                    "options.{k}: set by tripline (offsets are stored only once confirmed)"
                ));
            }
        }
        // librdkafka checks every option's name and value when the settings are built, before
        // any client exists or connects.
        #[cfg(feature = "kafka")]
        if let Err(e) = consumer::client_config("check", self).create_native_config() {
            p.push(format!("options: {e}"));
        }
        #[cfg(not(feature = "kafka"))]
        p.push(
            "type: this tripline was built without Kafka support (cargo feature `kafka`)"
                .to_string(),
        );
        p
    }
}

impl KafkaSourceConfig {
    /// With `partitioned_by` set: one message per stateful rule whose key does not include
    /// every partition field, naming the rule (its id and title) and the key. Such a rule's
    /// state (a correlation's groups, a first-seen baseline, a throttle window) is split
    /// across the instances of the group, so its results are not those of one instance
    /// reading everything.
    ///
    /// A key includes a partition field when it reads the same field as it is (a first-seen
    /// field with `normalize` does not: `Alice` and `alice` share a key but not a partition);
    /// a correlation's group-by must include it for every input, through the group-by of a
    /// correlation it counts. Inactive rules and correlations (placeholders without values)
    /// are left out.
    pub fn partition_warnings(&self, rules: &[Rule], correlations: &[Correlation]) -> Vec<String> {
        let Some(names) = &self.partitioned_by else {
            return Vec::new();
        };
        let Some(fields) = names
            .iter()
            .map(|n| FieldPath::parse(n).ok().map(|p| FieldRef::resolve(&p)))
            .collect::<Option<Vec<_>>>()
        else {
            return Vec::new(); // refused by `validate`
        };
        let key = names.join(", ");
        let mut w = Vec::new();
        let warn = |w: &mut Vec<String>, kind: &str, id: &str, title: &str, by: String| {
            w.push(format!(
                "partitioned_by [{key}]: {kind} `{id}` ({title}) keeps its state by [{by}], \
                 which does not include every partition field: its state is split across the \
                 instances of group `{}`, and its results are not exact",
                self.group_id
            ));
        };
        for r in rules.iter().filter(|r| r.is_active()) {
            if let Some(spec) = &r.first_seen {
                let covered = fields.iter().all(|f| {
                    spec.fields
                        .iter()
                        .any(|k| k.normalize.is_none() && &k.field == f)
                });
                if !covered {
                    let by = spec
                        .fields
                        .iter()
                        .map(|k| match k.normalize {
                            None => k.name.clone(),
                            Some(_) => format!("{} (normalised)", k.name),
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                    warn(&mut w, "first_seen of rule", &r.meta.id, &r.meta.title, by);
                }
            }
            if let Some(spec) = &r.throttle {
                if !fields.iter().all(|f| spec.key.contains(f)) {
                    let by = spec
                        .key
                        .iter()
                        .map(field_name)
                        .collect::<Vec<_>>()
                        .join(", ");
                    warn(&mut w, "throttle of rule", &r.meta.id, &r.meta.title, by);
                }
            }
        }
        for (i, c) in correlations.iter().enumerate() {
            if !c.is_active() {
                continue;
            }
            let all: Vec<&str> = c.group_by.iter().map(|g| g.name.as_str()).collect();
            if !group_covers(correlations, i, &all, &fields, 0) {
                let by = all.join(", ");
                warn(&mut w, "correlation", &c.meta.id, &c.meta.title, by);
            }
        }
        w
    }
}

/// Whether correlation `c`'s group-by entries named in `names` read every field of `fields`
/// for each of its inputs (for an input that is a correlation, through that correlation's
/// entries of the same names).
fn group_covers(
    correlations: &[Correlation],
    c: usize,
    names: &[&str],
    fields: &[FieldRef],
    depth: usize,
) -> bool {
    let Some(corr) = correlations.get(c) else {
        return false;
    };
    // Inputs come before the correlations that count them; the bound only guards recursion.
    if depth > correlations.len() {
        return false;
    }
    let entries: Vec<_> = corr
        .group_by
        .iter()
        .filter(|g| names.contains(&g.name.as_str()))
        .collect();
    corr.inputs
        .iter()
        .enumerate()
        .all(|(i, input)| match input {
            CorrelationInput::Rule(_) => fields.iter().all(|f| {
                entries
                    .iter()
                    .any(|g| g.per_input.get(i).and_then(|x| x.as_ref()) == Some(f))
            }),
            CorrelationInput::Correlation(k) => {
                let inner: Vec<&str> = entries.iter().map(|g| g.name.as_str()).collect();
                group_covers(correlations, *k, &inner, fields, depth + 1)
            }
        })
}

/// A throttle key field as written in rules (`user.username`, `objectRef.namespace`).
fn field_name(f: &FieldRef) -> String {
    let path = |root: &str, rest: &[String]| {
        std::iter::once(root.to_string())
            .chain(rest.iter().cloned())
            .collect::<Vec<_>>()
            .join(".")
    };
    match f {
        FieldRef::RequestObject(p) => path("requestObject", p),
        FieldRef::ResponseObject(p) => path("responseObject", p),
        FieldRef::Pod(p) => path("pod", p),
        FieldRef::UserExtra(p) => path("user.extra", p),
        FieldRef::ImpersonatedExtra(p) => path("impersonatedUser.extra", p),
        FieldRef::Annotation(k) => format!("annotations.{k}"),
        FieldRef::Other(p) => p.join("."),
        other => KNOWN_FIELDS
            .iter()
            .find(|(_, r)| r == other)
            .map_or_else(|| format!("{other:?}"), |(n, _)| n.to_string()),
    }
}

/// The typed fields by name, for [`field_name`].
const KNOWN_FIELDS: &[(&str, FieldRef)] = &[
    ("kind", FieldRef::Kind),
    ("apiVersion", FieldRef::ApiVersion),
    ("level", FieldRef::Level),
    ("auditID", FieldRef::AuditId),
    ("stage", FieldRef::Stage),
    ("requestURI", FieldRef::RequestUri),
    ("verb", FieldRef::Verb),
    ("userAgent", FieldRef::UserAgent),
    ("sourceIPs", FieldRef::SourceIps),
    ("source.ip", FieldRef::SourceIp),
    ("user", FieldRef::User),
    ("user.username", FieldRef::UserName),
    ("user.uid", FieldRef::UserUid),
    ("user.groups", FieldRef::UserGroups),
    ("impersonatedUser", FieldRef::Impersonated),
    ("impersonatedUser.username", FieldRef::ImpersonatedName),
    ("impersonatedUser.uid", FieldRef::ImpersonatedUid),
    ("impersonatedUser.groups", FieldRef::ImpersonatedGroups),
    ("objectRef.resource", FieldRef::ObjResource),
    ("objectRef.subresource", FieldRef::ObjSubresource),
    ("objectRef.namespace", FieldRef::ObjNamespace),
    ("objectRef.name", FieldRef::ObjName),
    ("objectRef.apiGroup", FieldRef::ObjApiGroup),
    ("objectRef.apiVersion", FieldRef::ObjApiVersion),
    ("objectRef.uid", FieldRef::ObjUid),
    ("objectRef.resourceVersion", FieldRef::ObjResourceVersion),
    ("responseStatus.code", FieldRef::StatusCode),
    ("responseStatus.status", FieldRef::StatusStatus),
    ("responseStatus.reason", FieldRef::StatusReason),
    ("responseStatus.message", FieldRef::StatusMessage),
    (
        "requestReceivedTimestamp",
        FieldRef::RequestReceivedTimestamp,
    ),
    ("stageTimestamp", FieldRef::StageTimestamp),
    ("timestamp", FieldRef::Timestamp),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(id: u32, name: &str, extra: &str) -> String {
        format!(
            "title: Rule {name}\nid: 00000000-0000-4000-8000-{id:012}\nname: {name}\nlogsource: {{product: kubernetes, service: audit}}\ndetection:\n  s: {{verb: get}}\n  condition: s\nlevel: low\n{extra}---\n"
        )
    }

    fn correlation(id: u32, name: &str, rules: &str, group_by: &str) -> String {
        format!(
            "title: Correlation {name}\nid: 00000000-0000-4000-9000-{id:012}\nname: {name}\ncorrelation:\n  type: event_count\n  rules: [{rules}]\n  group-by: [{group_by}]\n  timespan: 5m\n  condition: {{gte: 3}}\nlevel: high\n---\n"
        )
    }

    /// The warnings of a Kafka source partitioned by `by` over the rules and correlations in
    /// `text`.
    fn warnings(by: &str, text: &str) -> Vec<String> {
        let cfg = crate::rules::RulesConfig::default();
        let text = text.trim_end_matches("---\n");
        let compiled = crate::rules::compile_str("t.yml", text, &cfg.compile_options("custom"));
        let loaded = cfg.link(compiled);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let src: KafkaSourceConfig = serde_yaml::from_str(&format!(
            "brokers: [b:9092]\ntopics: [t]\npartitioned_by: [{by}]\n"
        ))
        .unwrap();
        assert_eq!(
            src.validate()
                .iter()
                .filter(|p| p.starts_with("partitioned_by"))
                .count(),
            0
        );
        src.partition_warnings(&loaded.rules, &loaded.correlations)
    }

    /// The rule names in warnings, in order.
    fn named(w: &[String]) -> Vec<String> {
        w.iter()
            .map(|m| {
                let start = m
                    .find("(Rule ")
                    .or_else(|| m.find("(Correlation "))
                    .unwrap();
                let rest = &m[start + 1..];
                let end = rest.find(')').unwrap();
                rest[..end].split(' ').nth(1).unwrap().to_string()
            })
            .collect()
    }

    #[test]
    fn stateful_rules_whose_key_does_not_include_the_partition_key_are_named() {
        let text = [
            rule(1, "plain", ""),
            rule(2, "thr_user_ns", "throttle:\n  key: [user.username, objectRef.namespace]\n  window: 1h\n"),
            rule(3, "thr_ns", "throttle:\n  key: [objectRef.namespace]\n  window: 1h\n"),
            rule(4, "fs_user", "first_seen:\n  fields: [user.username, userAgent]\n  normalize: {userAgent: product_major}\n  history: 30d\n  learning: 7d\n"),
            rule(5, "fs_user_lower", "first_seen:\n  fields: [user.username]\n  normalize: {user.username: lowercase}\n  history: 30d\n  learning: 7d\n"),
            rule(6, "fs_ip", "first_seen:\n  fields: [sourceIPs]\n  history: 30d\n  learning: 7d\n"),
            correlation(7, "c_user", "plain", "user.username"),
            correlation(8, "c_ip", "plain", "sourceIPs"),
            correlation(9, "c_of_c_user", "c_user", "user.username"),
            correlation(10, "c_user_ns", "plain, thr_ns", "user.username, objectRef.namespace"),
        ]
        .concat();
        let w = warnings("user.username", &text);
        assert_eq!(
            named(&w),
            ["thr_ns", "fs_user_lower", "fs_ip", "c_ip"],
            "{w:#?}"
        );
        assert!(
            w[0].starts_with("partitioned_by [user.username]: throttle of rule `00000000-0000-4000-8000-000000000003` (Rule thr_ns) keeps its state by [objectRef.namespace], which does not include every partition field"),
            "{}",
            w[0]
        );
        assert!(w[1].contains("by [user.username (normalised)]"), "{}", w[1]);
        assert!(
            w[3].contains("correlation `00000000-0000-4000-9000-000000000008`"),
            "{}",
            w[3]
        );
        assert!(w[3].contains("instances of group `tripline`"), "{}", w[3]);

        // Two partition fields: only keys with both are exact.
        let w = warnings("user.username, objectRef.namespace", &text);
        assert_eq!(
            named(&w),
            [
                "thr_ns",
                "fs_user",
                "fs_user_lower",
                "fs_ip",
                "c_user",
                "c_ip",
                "c_of_c_user"
            ],
            "{w:#?}"
        );

        // Without partitioned_by, nothing is said.
        let cfg = crate::rules::RulesConfig::default();
        let loaded = cfg.link(crate::rules::compile_str(
            "t.yml",
            text.trim_end_matches("---\n"),
            &cfg.compile_options("custom"),
        ));
        let src: KafkaSourceConfig =
            serde_yaml::from_str("brokers: [b:9092]\ntopics: [t]\n").unwrap();
        assert!(src
            .partition_warnings(&loaded.rules, &loaded.correlations)
            .is_empty());
    }

    #[test]
    fn partitioned_by_must_name_fields() {
        let src: KafkaSourceConfig = serde_yaml::from_str(
            "brokers: [b:9092]\ntopics: [t]\npartitioned_by: [user.username, \"a..b\"]\n",
        )
        .unwrap();
        let p = src.validate();
        assert!(
            p.iter().any(|p| p.starts_with("partitioned_by[1]: `a..b`")),
            "{p:?}"
        );
        let src: KafkaSourceConfig =
            serde_yaml::from_str("brokers: [b:9092]\ntopics: [t]\npartitioned_by: []\n").unwrap();
        assert!(src
            .validate()
            .contains(&"partitioned_by: at least one field is required".to_string()));
    }

    #[test]
    fn the_changelog_is_named_after_the_group_and_checked() {
        let parse = |text: &str| -> KafkaSourceConfig { serde_yaml::from_str(text).unwrap() };
        let src = parse(
            "brokers: [b:9092]\ntopics: [t]\ngroup_id: det\npartitioned_by: [user.username]\n",
        );
        assert_eq!(src.changelog().as_deref(), Some("det-state"));
        assert!(parse("brokers: [b:9092]\ntopics: [t]\n")
            .changelog()
            .is_none());
        let problems = |text: &str| parse(text).validate();
        let p = problems("brokers: [b:9092]\ntopics: [t]\nchangelog_topic: s\n");
        assert!(
            p.iter().any(|p| p.contains("only with partitioned_by")),
            "{p:?}"
        );
        let p = problems(
            "brokers: [b:9092]\ntopics: [t]\npartitioned_by: [user.username]\nchangelog_topic: t\n",
        );
        assert!(p.iter().any(|p| p.contains("a topic of its own")), "{p:?}");
    }

    #[test]
    fn throttle_key_fields_are_named_as_rules_write_them() {
        for (name, _) in KNOWN_FIELDS {
            let f = FieldRef::resolve(&FieldPath::parse(name).unwrap());
            assert_eq!(field_name(&f), *name);
        }
        for name in [
            "requestObject.spec.replicas",
            "responseObject",
            "pod.containers.image",
            "user.extra.scopes",
            "annotations.authorization.k8s.io/decision",
        ] {
            let f = FieldRef::resolve(&FieldPath::parse(name).unwrap());
            assert_eq!(field_name(&f), name);
        }
    }

    #[test]
    fn options_tripline_sets_are_refused() {
        let cfg: KafkaSourceConfig = serde_yaml::from_str(
            "brokers: []\ntopics: []\noptions: {enable.auto.offset.store: \"true\"}\n",
        )
        .unwrap();
        let p = cfg.validate().join("\n");
        assert!(
            p.contains("brokers") && p.contains("topics") && p.contains("enable.auto.offset.store"),
            "{p}"
        );
    }
}
