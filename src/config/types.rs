//! Leaf types shared by the configs of every component: durations, flows, secrets, one-or-many
//! lists. This module imports nothing of tripline, so any component can use it without
//! depending on another.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

/// A duration written as `500ms`, `30s`, `10m`, `2h` or `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

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

/// Parses `500ms`, `30s`, `10m`, `2h`, `1d`; `None` for anything else and for zero.
pub fn parse_human_duration(s: &str) -> Option<Duration> {
    match s.trim().strip_suffix("ms") {
        Some(ms) => ms
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Duration::from_millis),
        None => parse_duration(s),
    }
}

/// Parses a whole number of seconds, minutes, hours or days (`30s`, `10m`, `2h`, `1d`), the
/// form Sigma's `timeframe` uses; `None` for anything else and for zero.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit.trim() {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
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

/// A secret value from the config (a password, a token, an API key). It never prints: `Debug`
/// shows `<redacted>`, and the value is reached only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that sends it (a header, a SASL handshake).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A secret given inline (usually `${ENV_VAR}`) or in a file (a mounted Kubernetes Secret;
    /// trailing newlines are removed). `key` names the setting in messages. Giving both is an
    /// error, which [`Secret::check_pair`] also reports without I/O.
    pub fn resolve(
        key: &str,
        inline: &Option<Secret>,
        file: &Option<PathBuf>,
    ) -> Result<Option<Secret>, SecretError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(SecretError::Both {
                key: key.to_string(),
            }),
            (Some(v), None) => Ok(Some(v.clone())),
            (None, Some(p)) => Secret::read_file(p)
                .map(Some)
                .map_err(|source| SecretError::Read {
                    key: key.to_string(),
                    path: p.clone(),
                    source,
                }),
            (None, None) => Ok(None),
        }
    }

    /// The problem with a `key` / `key_file` pair, found without I/O: both given.
    pub fn check_pair(
        key: &str,
        inline: &Option<Secret>,
        file: &Option<PathBuf>,
    ) -> Option<String> {
        (inline.is_some() && file.is_some()).then(|| {
            SecretError::Both {
                key: key.to_string(),
            }
            .to_string()
        })
    }

    /// [`Secret::check_pair`] for a config's `validate`: adds the problem to `problems`, and
    /// returns whether the secret is given at all (inline or in a file).
    pub fn check_given(
        problems: &mut Vec<String>,
        key: &str,
        inline: &Option<Secret>,
        file: &Option<PathBuf>,
    ) -> bool {
        problems.extend(Secret::check_pair(key, inline, file));
        inline.is_some() || file.is_some()
    }

    fn read_file(path: &Path) -> std::io::Result<Secret> {
        std::fs::read_to_string(path).map(|s| Secret(s.trim_end_matches(['\n', '\r']).to_string()))
    }
}

/// Why a secret could not be had; the value is never part of it.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{key}: give `{key}` or `{key}_file`, not both")]
    Both { key: String },
    #[error("{key}_file {}: {source}", path.display())]
    Read {
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit_and_reject_zero_and_junk() {
        for (text, want) in [
            ("500ms", Some(Duration::from_millis(500))),
            ("30s", Some(Duration::from_secs(30))),
            ("10m", Some(Duration::from_secs(600))),
            ("2h", Some(Duration::from_secs(7200))),
            ("1d", Some(Duration::from_secs(86400))),
            (" 5 s ", Some(Duration::from_secs(5))),
            ("0s", None),
            ("0ms", None),
            ("ten", None),
            ("5y", None),
            ("", None),
        ] {
            assert_eq!(parse_human_duration(text), want, "{text:?}");
        }
        assert_eq!(parse_duration("500ms"), None, "Sigma timeframes have no ms");
    }

    #[test]
    fn a_secret_never_prints_its_value() {
        let s: Secret = serde_yaml::from_str("hunter2").expect("a string");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_secret_comes_inline_or_from_a_file_but_not_both() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "s3cret\r\n").expect("writing");
        let inline = Some(Secret::new("inline"));
        let value = |r: Result<Option<Secret>, SecretError>| r.unwrap().map(|s| s.0);
        assert_eq!(
            value(Secret::resolve("token", &inline, &None)),
            Some("inline".into())
        );
        assert_eq!(
            value(Secret::resolve("token", &None, &Some(file.clone()))),
            Some("s3cret".into())
        );
        assert_eq!(value(Secret::resolve("token", &None, &None)), None);
        let both = Secret::resolve("token", &inline, &Some(file))
            .unwrap_err()
            .to_string();
        assert!(both.contains("not both"), "{both}");
        let missing = Secret::resolve("token", &None, &Some(dir.path().join("nope")))
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("token_file "), "{missing}");
    }
}
