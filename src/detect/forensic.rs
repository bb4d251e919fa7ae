//! What `tripline scan --html` and `--timeline` need of each alert, kept while the scan runs:
//! one small [`AlertRow`] per alert (time, rule, identity, source, request) and a few redacted
//! example documents per rule. Everything is read from the alert's ECS document, the same
//! document `--format json` writes, so the page and the timeline show what the JSON shows and
//! nothing it does not (its event is already redacted, its message already scrubbed).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::Alert;
use crate::rules::RuleSet;

/// How many example documents the page shows per rule.
pub const EXAMPLES_PER_RULE: usize = 3;
/// The longest example document shown, in bytes of pretty-printed JSON; longer ones are cut,
/// and say so.
pub const MAX_EXAMPLE_BYTES: usize = 8 * 1024;

/// The fields of one alert that the page and the timeline show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRow {
    /// `@timestamp`.
    pub time: Option<DateTime<Utc>>,
    /// The alert's rule or correlation ([`RuleSet::meta`]).
    pub rule: usize,
    /// `message`: the rendered rule output.
    pub message: String,
    /// `user.name`.
    pub identity: Option<String>,
    /// `source.ip`.
    pub source_ip: Option<String>,
    /// `kubernetes.audit.verb`.
    pub verb: Option<String>,
    /// `kubernetes.audit.objectRef.resource`, with `/subresource` when there is one.
    pub resource: Option<String>,
    /// `kubernetes.audit.objectRef.namespace`.
    pub namespace: Option<String>,
    /// `kubernetes.audit.objectRef.name`.
    pub name: Option<String>,
}

impl AlertRow {
    /// The row of `alert`, read from its (redacted) document `doc`.
    pub fn new(alert: &Alert, doc: &Value) -> AlertRow {
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
        let audit = &doc["kubernetes"]["audit"];
        let object = &audit["objectRef"];
        AlertRow::of(
            alert,
            text(&doc["source"]["ip"]),
            text(&audit["verb"]),
            (text(&object["resource"]), text(&object["subresource"])),
            text(&object["namespace"]),
            text(&object["name"]),
        )
    }

    /// The row of `alert` with these fields of its document (empty values already dropped);
    /// the resource is `resource/subresource` when both are there.
    fn of(
        alert: &Alert,
        source_ip: Option<String>,
        verb: Option<String>,
        (resource, subresource): (Option<String>, Option<String>),
        namespace: Option<String>,
        name: Option<String>,
    ) -> AlertRow {
        AlertRow {
            time: alert.time(),
            rule: alert.rule,
            message: alert.message().to_string(),
            identity: alert.user().filter(|u| !u.is_empty()).map(str::to_string),
            source_ip,
            verb,
            resource: resource.map(|r| match subresource {
                Some(sub) => format!("{r}/{sub}"),
                None => r,
            }),
            namespace,
            name,
        }
    }
}

/// The fields of an alert document that make its [`AlertRow`], read without building the rest.
#[derive(serde::Deserialize)]
struct RowFields<'a> {
    #[serde(borrow, default)]
    source: Option<SourceFields<'a>>,
    #[serde(borrow, default)]
    kubernetes: Option<KubernetesFields<'a>>,
}

#[derive(serde::Deserialize)]
struct SourceFields<'a> {
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct KubernetesFields<'a> {
    #[serde(borrow, default)]
    audit: Option<AuditFields<'a>>,
}

#[derive(serde::Deserialize)]
struct AuditFields<'a> {
    #[serde(borrow, default)]
    verb: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "objectRef")]
    object_ref: Option<ObjectFields<'a>>,
}

#[derive(serde::Deserialize)]
struct ObjectFields<'a> {
    #[serde(borrow, default)]
    resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    subresource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

impl RowFields<'_> {
    /// The row these fields make, as [`AlertRow::new`] makes it from the whole document.
    fn row(self, alert: &Alert) -> AlertRow {
        let text = |v: Option<Cow<'_, str>>| v.filter(|s| !s.is_empty()).map(Cow::into_owned);
        let audit = self.kubernetes.and_then(|k| k.audit);
        let (verb, object) = match audit {
            Some(a) => (a.verb, a.object_ref),
            None => (None, None),
        };
        let (resource, subresource, namespace, name) = match object {
            Some(o) => (o.resource, o.subresource, o.namespace, o.name),
            None => (None, None, None, None),
        };
        AlertRow::of(
            alert,
            text(self.source.and_then(|s| s.ip)),
            text(verb),
            (text(resource), text(subresource)),
            text(namespace),
            text(name),
        )
    }
}

/// The alerts of a scan as rows, and the first few redacted documents of each rule.
#[derive(Debug, Default)]
pub struct Forensic {
    pub rows: Vec<AlertRow>,
    /// Per rule: up to [`EXAMPLES_PER_RULE`] example documents, pretty-printed and cut at
    /// [`MAX_EXAMPLE_BYTES`].
    pub examples: BTreeMap<usize, Vec<String>>,
    /// The earliest and latest event time read (every event, not only those that alerted).
    pub first_event: Option<DateTime<Utc>>,
    pub last_event: Option<DateTime<Utc>>,
}

impl Forensic {
    /// Keeps `alert`'s row, and its document as an example while its rule has fewer than
    /// [`EXAMPLES_PER_RULE`]. Reads only the row's fields of the document, without building
    /// it, except for an example or a document nested deeper than `serde_json` reads.
    pub fn record_alert(&mut self, alert: &Alert) {
        let examples = self.examples.entry(alert.rule).or_default();
        let example = examples.len() < EXAMPLES_PER_RULE;
        let fields = (!example)
            .then(|| serde_json::from_slice::<RowFields<'_>>(alert.json()).ok())
            .flatten();
        let row = match fields {
            Some(f) => f.row(alert),
            None => {
                let doc = std::str::from_utf8(alert.json())
                    .ok()
                    .and_then(crate::event::parse_value)
                    .unwrap_or_default();
                if example {
                    examples.push(example_text(&doc));
                }
                AlertRow::new(alert, &doc)
            }
        };
        self.rows.push(row);
    }

    /// Widens the covered time range to `t`.
    pub fn saw_time(&mut self, t: DateTime<Utc>) {
        self.first_event = Some(self.first_event.map_or(t, |f| f.min(t)));
        self.last_event = Some(self.last_event.map_or(t, |l| l.max(t)));
    }

    /// Widens the covered time range to another's.
    pub fn saw_range(&mut self, first: Option<DateTime<Utc>>, last: Option<DateTime<Utc>>) {
        for t in [first, last].into_iter().flatten() {
            self.saw_time(t);
        }
    }

    /// The rows in time order (rows without a time last), ties in the order the alerts came.
    pub fn rows_by_time(&self) -> Vec<&AlertRow> {
        let mut rows: Vec<&AlertRow> = self.rows.iter().collect();
        rows.sort_by_key(|r| (r.time.is_none(), r.time));
        rows
    }

    /// Writes the timeline: one row per alert, in time order, as Timesketch imports it.
    pub fn write_timeline(
        &self,
        rules: &RuleSet,
        format: TimelineFormat,
        out: &mut dyn Write,
    ) -> io::Result<()> {
        if format == TimelineFormat::Csv {
            out.write_all(TIMELINE_COLUMNS.join(",").as_bytes())?;
            out.write_all(b"\r\n")?;
        }
        for row in self.rows_by_time() {
            let cells = timeline_cells(rules, row);
            match format {
                TimelineFormat::Csv => {
                    let line: Vec<String> = cells.iter().map(|c| csv_cell(c)).collect();
                    out.write_all(line.join(",").as_bytes())?;
                    out.write_all(b"\r\n")?;
                }
                TimelineFormat::Jsonl => {
                    // Columns in order; `timestamp` as a number; empty fields left out but
                    // for Timesketch's required three.
                    let mut line = Vec::with_capacity(512);
                    line.push(b'{');
                    for (i, (k, v)) in TIMELINE_COLUMNS.iter().zip(&cells).enumerate() {
                        if v.is_empty() && i > 2 {
                            continue;
                        }
                        if line.len() > 1 {
                            line.push(b',');
                        }
                        crate::event::write_json_str(&mut line, k);
                        line.push(b':');
                        if *k == "timestamp" {
                            line.extend_from_slice(v.as_bytes());
                        } else {
                            crate::event::write_json_str(&mut line, v);
                        }
                    }
                    line.extend_from_slice(b"}\n");
                    out.write_all(&line)?;
                }
            }
        }
        out.flush()
    }
}

/// The document shown as an example: the redacted audit event of a rule's alert, or the whole
/// document of a correlation's (which carries the events it counted, not one event).
fn example_text(doc: &Value) -> String {
    let shown = match &doc["kubernetes"]["audit"] {
        Value::Null => doc,
        audit => audit,
    };
    let mut text = serde_json::to_string_pretty(shown).unwrap_or_default();
    if text.len() > MAX_EXAMPLE_BYTES {
        let mut cut = MAX_EXAMPLE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = text.len();
        text.truncate(cut);
        text.push_str(&format!(
            "\n… cut at {MAX_EXAMPLE_BYTES} of {total} bytes (the JSON output has it whole)"
        ));
    }
    text
}

/// Which file a timeline is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimelineFormat {
    /// RFC 4180 CSV with a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl TimelineFormat {
    /// The format a path's extension names: `.csv`, or `.jsonl` (also `.ndjson`, `.json`).
    pub fn from_path(path: &std::path::Path) -> Option<TimelineFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(TimelineFormat::Csv),
            "jsonl" | "ndjson" | "json" => Some(TimelineFormat::Jsonl),
            _ => None,
        }
    }
}

/// The timeline's columns: Timesketch's three required ones first (`message`, `datetime`,
/// `timestamp_desc`), then `timestamp` (microseconds since the epoch) and the alert's fields.
pub const TIMELINE_COLUMNS: [&str; 15] = [
    "message",
    "datetime",
    "timestamp_desc",
    "timestamp",
    "rule",
    "rule_id",
    "level",
    "identity",
    "source_ip",
    "verb",
    "resource",
    "namespace",
    "name",
    "tactic",
    "technique",
];

/// A row's cells, in [`TIMELINE_COLUMNS`] order.
fn timeline_cells(rules: &RuleSet, row: &AlertRow) -> Vec<String> {
    let meta = rules.meta(row.rule);
    let attack = Attack::of_tags(&meta.tags);
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    vec![
        row.message.clone(),
        row.time
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
            .unwrap_or_default(),
        "Event Time".to_string(),
        row.time
            .map(|t| t.timestamp_micros().to_string())
            .unwrap_or_default(),
        meta.title.clone(),
        meta.id.clone(),
        meta.level.as_str().to_string(),
        opt(&row.identity),
        opt(&row.source_ip),
        opt(&row.verb),
        opt(&row.resource),
        opt(&row.namespace),
        opt(&row.name),
        attack
            .tactics
            .iter()
            .map(|(_, name)| name.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        attack
            .techniques
            .iter()
            .map(|(id, name)| format!("{id} {name}"))
            .collect::<Vec<_>>()
            .join("; "),
    ]
}

/// One CSV cell (RFC 4180): quoted when it holds a comma, quote or line break, and prefixed
/// with `'` when a spreadsheet would read it as a formula (it starts with `=`, `+`, `-`, `@`,
/// a tab or a carriage return), so that an attacker's user name cannot run in the responder's
/// spreadsheet.
pub fn csv_cell(value: &str) -> String {
    let mut v = String::with_capacity(value.len() + 3);
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        v.push('\'');
    }
    v.push_str(value);
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v
    }
}

/// The ATT&CK tactics and techniques a rule's tags name, as `(id, name)` pairs.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attack {
    pub tactics: Vec<(String, String)>,
    pub techniques: Vec<(String, String)>,
}

impl Attack {
    /// What [`crate::alert::threat_from_tags`] makes of `tags` (the same `threat.*` fields the
    /// alert documents carry).
    pub fn of_tags(tags: &[String]) -> Attack {
        let Some(threat) = crate::alert::threat_from_tags(tags) else {
            return Attack::default();
        };
        let pairs = |v: &Value| -> Vec<(String, String)> {
            let ids = v["id"].as_array().cloned().unwrap_or_default();
            let names = v["name"].as_array().cloned().unwrap_or_default();
            ids.iter()
                .zip(names.iter())
                .map(|(i, n)| {
                    (
                        i.as_str().unwrap_or_default().to_string(),
                        n.as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        };
        let mut techniques = pairs(&threat["technique"]);
        techniques.extend(pairs(&threat["technique"]["subtechnique"]));
        Attack {
            tactics: pairs(&threat["tactic"]),
            techniques,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_are_neutralised_and_quoted() {
        let cases = [
            ("plain", "plain"),
            ("=HYPERLINK(\"x\")", "\"'=HYPERLINK(\"\"x\"\")\""),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            ("a,b", "\"a,b\""),
            ("line\nbreak", "\"line\nbreak\""),
            ("a=b", "a=b"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(csv_cell(input), want, "{input:?}");
        }
    }

    #[test]
    fn timeline_format_follows_the_extension() {
        use std::path::Path;
        assert_eq!(
            TimelineFormat::from_path(Path::new("t.csv")),
            Some(TimelineFormat::Csv)
        );
        assert_eq!(
            TimelineFormat::from_path(Path::new("t.JSONL")),
            Some(TimelineFormat::Jsonl)
        );
        assert_eq!(TimelineFormat::from_path(Path::new("t.txt")), None);
        assert_eq!(TimelineFormat::from_path(Path::new("timeline")), None);
    }

    #[test]
    fn attack_pairs_follow_the_tags() {
        let a = Attack::of_tags(&["attack.execution".to_string(), "attack.t1609".to_string()]);
        assert_eq!(a.tactics, [("TA0002".to_string(), "Execution".to_string())]);
        assert_eq!(a.techniques.len(), 1);
        assert_eq!(a.techniques[0].0, "T1609");
        assert_eq!(Attack::of_tags(&[]), Attack::default());
    }

    fn alert(doc: &Value) -> Alert {
        Alert {
            rule: 0,
            id: None,
            doc: doc.to_string().into_bytes(),
            message: "m".to_string(),
            user: Some("dev".to_string()),
            time: None,
        }
    }

    #[test]
    fn the_row_read_without_building_the_document_is_the_row_of_the_document() {
        let docs = [
            serde_json::json!({"source": {"ip": "10.0.0.1"}, "kubernetes": {"audit": {
                "verb": "create", "objectRef": {"resource": "pods", "subresource": "exec",
                "namespace": "prod", "name": "we\"b-0\u{e9}"}, "requestObject": {"a": [1, {"b": null}]}}}}),
            serde_json::json!({"kubernetes": {"audit": {"verb": "", "objectRef": {"name": null}}}}),
            serde_json::json!({"tripline": {"correlation": {"events": ["x"]}}, "source": {}}),
        ];
        for doc in &docs {
            let a = alert(doc);
            let fields: RowFields<'_> = serde_json::from_slice(a.json()).unwrap();
            assert_eq!(fields.row(&a), AlertRow::new(&a, doc), "{doc}");
        }
        // A field of another type: the document is read whole, and the row is the same.
        let odd =
            serde_json::json!({"kubernetes": {"audit": {"verb": 5, "objectRef": {"name": "db"}}}});
        assert!(serde_json::from_slice::<RowFields<'_>>(alert(&odd).json()).is_err());
        let mut f = Forensic::default();
        for _ in 0..EXAMPLES_PER_RULE + 1 {
            f.record_alert(&alert(&odd));
        }
        let last = f.rows.last().unwrap();
        assert_eq!(
            (last.verb.as_deref(), last.name.as_deref()),
            (None, Some("db"))
        );
    }

    #[test]
    fn a_long_example_is_cut_and_says_so() {
        let big =
            serde_json::json!({"kubernetes": {"audit": {"x": "y".repeat(3 * MAX_EXAMPLE_BYTES)}}});
        let t = example_text(&big);
        assert!(t.len() < MAX_EXAMPLE_BYTES + 200, "{}", t.len());
        assert!(t.contains("cut at"), "{t}");
        let small = serde_json::json!({"kubernetes": {"audit": {"verb": "get"}}});
        assert!(example_text(&small).contains("\"verb\": \"get\""));
    }
}
