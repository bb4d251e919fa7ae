//! Alerts in the shape of Falco's JSON alerts, so that tools built for Falco (falcosidekick
//! first of all) take tripline's alerts unchanged.
//!
//! The shape follows two sources:
//!
//! * Falco's JSON output (`userspace/engine/formats.cpp`, `falco_formats::format_event`):
//!   `time` is the event time in UTC as `%FT%T` then `.%09luZ` (always nine fractional digits);
//!   `output` is the prefix `%evt.time: <priority>` (`HH:MM:SS.nnnnnnnnn: Warning`), a space and
//!   the rendered rule output; `output_fields` holds the output's fields and the prefix's, so it
//!   always carries `evt.time` (an integer: nanoseconds since the epoch); `hostname`, `rule`,
//!   `priority`, `source` and `tags` come with it.
//! * falcosidekick's input (`types.FalcoPayload` and `FalcoPayload.Check` in `types/types.go`,
//!   `types/priority.go`): `uuid` and `hostname` are `omitempty`; `priority` is parsed without
//!   regard to case into Emergency, Alert, Critical, Error, Warning, Notice, Informational or
//!   Debug, anything else becoming the empty priority, which fails `Check`, as do an empty
//!   `rule`, a zero `time` and an empty `output_fields`. Every alert here has all four.
//!
//! Choices (where Falco's behaviour cannot be copied):
//!
//! * Falco writes `%evt.time` in the host's local time zone (unless `time_format_iso_8601`);
//!   a daemon has no meaningful one, so the prefix is in UTC, like `time`.
//! * Falco always writes `hostname`; falcosidekick omits an empty one (`omitempty`) and labels it
//!   `unknown`. Here it is `host.name` (the daemon's `node_name`) and omitted when that is unset.
//! * `uuid`: falcosidekick overwrites it with a fresh UUID on input; tripline sets it to the
//!   record's deterministic document id when the caller has one, so other consumers can dedupe.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

/// The Falco shape of an ECS alert document: [`to_falco`] on bytes, serialised.
///
/// `uuid` is the alert's document id when known; `fallback_time` is used when the document has
/// no valid `@timestamp` (falcosidekick refuses an alert without a time).
pub fn to_falco_bytes(
    doc: &[u8],
    uuid: Option<&str>,
    fallback_time: DateTime<Utc>,
) -> Result<Vec<u8>, String> {
    // tripline's parser: an alert document nests as deep as the event it carries, deeper than
    // serde_json's recursion limit allows.
    let doc: Value = std::str::from_utf8(doc)
        .ok()
        .and_then(crate::event::parse_value)
        .ok_or_else(|| "the alert is not JSON".to_string())?;
    if !doc.is_object() {
        return Err("the alert is not a JSON object".to_string());
    }
    serde_json::to_vec(&to_falco(&doc, uuid, fallback_time)).map_err(|e| e.to_string())
}

/// Converts an alert document (ECS, as [`super::render_alert`] and the detector build it) to
/// Falco's JSON alert (`uuid`, `output`, `priority`, `rule`, `time`, `output_fields`, `source`,
/// `tags`, `hostname`).
///
/// * An alert of a Falco rule (it has a `falco` object) keeps that rule's name, priority,
///   source, tags and output fields.
/// * Other alerts (Sigma rules, correlations): `rule` is `rule.name`, `priority` comes from
///   `tripline.rule.level` (critical → Critical, high → Error, medium → Warning, low → Notice,
///   informational → Informational), `source` is `k8s_audit`, `tags` are
///   `tripline.rule.tags`, and `output_fields` hold Falco's k8saudit fields read from
///   `kubernetes.audit` (`null` where absent) or, for a correlation, from its group.
///
/// Every alert's `output_fields` carries `evt.time`; `output` is the time, the priority and
/// `message`.
pub fn to_falco(doc: &Value, uuid: Option<&str>, fallback_time: DateTime<Utc>) -> Value {
    let time = doc
        .get("@timestamp")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(fallback_time, |t| t.with_timezone(&Utc));
    let message = doc.get("message").and_then(Value::as_str).unwrap_or("");
    let falco = doc.get("falco").filter(|f| f.is_object());
    let (rule, priority, source, tags, mut fields) = match falco {
        Some(f) => (
            f.get("rule")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| rule_name(doc)),
            f.get("priority")
                .and_then(Value::as_str)
                .and_then(canonical_priority)
                .unwrap_or_else(|| priority_of_level(doc)),
            f.get("source")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(SOURCE)
                .to_string(),
            strings(f.get("tags")),
            f.get("output_fields")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        ),
        None => (
            rule_name(doc),
            priority_of_level(doc),
            SOURCE.to_string(),
            strings(path(doc, &["tripline", "rule", "tags"])),
            k8saudit_fields(doc),
        ),
    };
    // Integer nanoseconds, as Falco's JSON formatter writes `evt.time`; out of range only
    // after the year 2262.
    fields.insert(
        "evt.time".to_string(),
        time.timestamp_nanos_opt().map_or(Value::Null, Value::from),
    );
    let output = format!("{}: {priority} {message}", time.format("%H:%M:%S%.9f"));
    let mut out = Map::new();
    if let Some(id) = uuid.filter(|id| !id.is_empty()) {
        out.insert("uuid".into(), json!(id));
    }
    out.insert("output".into(), json!(output));
    out.insert("priority".into(), json!(priority));
    out.insert("rule".into(), json!(rule));
    out.insert(
        "time".into(),
        json!(time.to_rfc3339_opts(SecondsFormat::Nanos, true)),
    );
    out.insert("output_fields".into(), Value::Object(fields));
    out.insert("source".into(), json!(source));
    out.insert("tags".into(), json!(tags));
    if let Some(host) = path(doc, &["host", "name"])
        .and_then(Value::as_str)
        .filter(|h| !h.is_empty())
    {
        out.insert("hostname".into(), json!(host));
    }
    Value::Object(out)
}

/// The source of tripline's alerts in Falco's terms (the k8saudit plugin's).
const SOURCE: &str = "k8s_audit";

/// Falco's priority names, most severe first (`falco_common.cpp`, `priority_names`).
pub const PRIORITIES: [&str; 8] = [
    "Emergency",
    "Alert",
    "Critical",
    "Error",
    "Warning",
    "Notice",
    "Informational",
    "Debug",
];

/// `p` spelt as Falco spells it, whatever its case (`Info` is Falco's legacy spelling of
/// `Informational`); `None` for a name Falco does not have.
fn canonical_priority(p: &str) -> Option<&'static str> {
    if p.eq_ignore_ascii_case("info") {
        return Some("Informational");
    }
    PRIORITIES.into_iter().find(|n| n.eq_ignore_ascii_case(p))
}

/// The Falco priority of a tripline level (`tripline.rule.level`); Warning (medium's) when it
/// is missing, so that the alert still has a priority falcosidekick accepts.
fn priority_of_level(doc: &Value) -> &'static str {
    match path(doc, &["tripline", "rule", "level"]).and_then(Value::as_str) {
        Some("critical") => "Critical",
        Some("high") => "Error",
        Some("low") => "Notice",
        Some("informational") => "Informational",
        _ => "Warning",
    }
}

/// `rule.name`, else `rule.id`, else `tripline` (falcosidekick refuses an empty rule).
fn rule_name(doc: &Value) -> String {
    ["name", "id"]
        .iter()
        .find_map(|k| {
            path(doc, &["rule", k])
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or("tripline")
        .to_string()
}

fn path<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(v, |v, k| v.get(k))
}

/// The strings of a JSON array (others skipped); empty when it is not one.
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Falco's k8saudit fields and where each is in an audit event. `ka.response.code` is a
/// string, as Falco's k8saudit fields are; `ka.sourceips` a list.
const K8SAUDIT: [(&str, &[&str]); 10] = [
    ("ka.auditid", &["auditID"]),
    ("ka.user.name", &["user", "username"]),
    ("ka.verb", &["verb"]),
    ("ka.uri", &["requestURI"]),
    ("ka.target.resource", &["objectRef", "resource"]),
    ("ka.target.namespace", &["objectRef", "namespace"]),
    ("ka.target.name", &["objectRef", "name"]),
    ("ka.target.subresource", &["objectRef", "subresource"]),
    ("ka.response.code", &["responseStatus", "code"]),
    ("ka.useragent", &["userAgent"]),
];

/// A scalar as a Falco field value: strings as they are, numbers and booleans as text.
fn text(v: &Value) -> Value {
    match v {
        Value::String(_) => v.clone(),
        Value::Number(n) => json!(n.to_string()),
        Value::Bool(b) => json!(b.to_string()),
        _ => Value::Null,
    }
}

/// The output fields of an alert without a `falco` object: Falco's k8saudit fields from
/// `kubernetes.audit` (each present, `null` when the event lacks it); for an alert without an
/// event (a correlation), the fields of its group that have a k8saudit name, the others under
/// `tripline.correlation.group.<key>`, and the correlation's type and count.
fn k8saudit_fields(doc: &Value) -> Map<String, Value> {
    let mut fields = Map::new();
    if let Some(audit) = path(doc, &["kubernetes", "audit"]).filter(|a| a.is_object()) {
        for (name, at) in K8SAUDIT {
            fields.insert(name.to_string(), path(audit, at).map_or(Value::Null, text));
        }
        let ips = audit
            .get("sourceIPs")
            .and_then(Value::as_array)
            .map_or(Value::Null, |ips| {
                Value::Array(ips.iter().filter(|ip| ip.is_string()).cloned().collect())
            });
        fields.insert("ka.sourceips".to_string(), ips);
        return fields;
    }
    let Some(c) = path(doc, &["tripline", "correlation"]) else {
        return fields;
    };
    if let Some(group) = c.get("group").and_then(Value::as_object) {
        for (key, value) in group {
            let dotted: Vec<&str> = key.split('.').collect();
            let named = K8SAUDIT.iter().find(|(_, at)| *at == dotted.as_slice());
            match (named, key.as_str()) {
                (Some((name, _)), _) => {
                    fields.insert(name.to_string(), text(value));
                }
                (None, "sourceIPs" | "source.ip") if value.is_string() => {
                    fields.insert("ka.sourceips".to_string(), json!([value]));
                }
                _ => {
                    fields.insert(format!("tripline.correlation.group.{key}"), text(value));
                }
            }
        }
    }
    for key in ["type", "count"] {
        if let Some(v) = c.get(key) {
            fields.insert(format!("tripline.correlation.{key}"), v.clone());
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2030-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn time_has_nanoseconds_in_utc_and_prefixes_the_output() {
        let doc = json!({
            "@timestamp": "2018-10-25T16:09:12.581541+02:00",
            "message": "m",
            "rule": {"name": "R"},
            "tripline": {"rule": {"level": "high", "tags": ["a"]}},
        });
        let f = to_falco(&doc, None, now());
        assert_eq!(f["time"], "2018-10-25T14:09:12.581541000Z");
        assert_eq!(f["output"], "14:09:12.581541000: Error m");
        assert_eq!(
            f["output_fields"]["evt.time"],
            1_540_476_552_581_541_000_i64
        );
        assert!(
            f.get("uuid").is_none() && f.get("hostname").is_none(),
            "{f}"
        );
        // No time: the fallback, still with nine digits.
        let f = to_falco(&json!({"message": "m"}), Some("id-1"), now());
        assert_eq!(f["time"], "2030-01-01T00:00:00.000000000Z");
        assert_eq!(f["uuid"], "id-1");
        assert_eq!(f["rule"], "tripline");
        assert_eq!(f["priority"], "Warning");
    }

    #[test]
    fn levels_map_to_falco_priorities() {
        for (level, want) in [
            ("critical", "Critical"),
            ("high", "Error"),
            ("medium", "Warning"),
            ("low", "Notice"),
            ("informational", "Informational"),
        ] {
            let doc = json!({"tripline": {"rule": {"level": level}}});
            assert_eq!(to_falco(&doc, None, now())["priority"], want);
        }
        assert_eq!(canonical_priority("INFO"), Some("Informational"));
        assert_eq!(canonical_priority("warning"), Some("Warning"));
        assert_eq!(canonical_priority("loud"), None);
    }

    #[test]
    fn not_an_object_is_an_error() {
        assert!(to_falco_bytes(b"[1]", None, now()).is_err());
        assert!(to_falco_bytes(b"{", None, now()).is_err());
    }

    /// An alert carries its event, which may nest deeper than serde_json parses.
    #[test]
    fn a_deeply_nested_alert_converts() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let doc = format!(
            r#"{{"@timestamp":"2024-05-01T10:00:00.000001Z","message":"m","rule":{{"name":"R"}},"tripline":{{"rule":{{"level":"high"}}}},"kubernetes":{{"audit":{{"verb":"create","requestObject":{deep}}}}}}}"#
        );
        let out = to_falco_bytes(doc.as_bytes(), None, now()).expect("converts");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["rule"], "R");
        assert_eq!(v["priority"], "Error");
        assert_eq!(v["output_fields"]["ka.verb"], "create");
    }
}
