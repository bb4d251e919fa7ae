//! falcosidekick's input type, mirrored strictly: what its `POST /` decodes (`types.FalcoPayload`
//! in falcosidekick's `types/types.go`) and then requires (`FalcoPayload.Check`). Unknown keys
//! are refused, `time` must be RFC 3339 with nanoseconds, and `priority` must be one of the names
//! falcosidekick's `types.Priority` knows (any case; anything else is its empty priority, which
//! `Check` refuses).

#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalcoPayload {
    #[serde(default)]
    pub uuid: Option<String>,
    pub output: String,
    pub priority: Priority,
    pub rule: String,
    #[serde(deserialize_with = "rfc3339_nanos")]
    pub time: DateTime<FixedOffset>,
    pub output_fields: BTreeMap<String, Value>,
    pub source: String,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub hostname: Option<String>,
}

/// falcosidekick's `types.PriorityType`, as its `UnmarshalJSON` accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Debug,
    Informational,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.to_lowercase().as_str() {
            "emergency" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" => Priority::Critical,
            "error" => Priority::Error,
            "warning" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "priority `{s}` is falcosidekick's empty priority"
                )))
            }
        })
    }
}

fn rfc3339_nanos<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
    let s = String::deserialize(d)?;
    let t = DateTime::parse_from_rfc3339(&s).map_err(serde::de::Error::custom)?;
    // `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`, as Falco writes it.
    let fraction = s
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches('Z'))
        .unwrap_or("");
    if fraction.len() != 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) || !s.ends_with('Z') {
        return Err(serde::de::Error::custom(format!(
            "`{s}` is not UTC with nanoseconds"
        )));
    }
    Ok(t)
}

impl FalcoPayload {
    /// Decodes `bytes` and applies falcosidekick's `Check`; panics with the reason otherwise.
    pub fn parse(bytes: &[u8]) -> FalcoPayload {
        let p: FalcoPayload = serde_json::from_slice(bytes).unwrap_or_else(|e| {
            panic!(
                "not a FalcoPayload: {e}: {}",
                String::from_utf8_lossy(bytes)
            )
        });
        assert!(!p.rule.is_empty(), "Check: empty rule");
        let go_zero = DateTime::parse_from_rfc3339("0001-01-01T00:00:00Z").unwrap();
        assert!(p.time != go_zero, "Check: zero time");
        assert!(!p.output_fields.is_empty(), "Check: no output_fields");
        p
    }
}
