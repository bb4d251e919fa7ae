//! The Splunk HTTP Event Collector sink: records POSTed as HEC JSON envelopes, optionally
//! gzipped, optionally confirmed by indexer acknowledgement.
//!
//! Statuses: 200 delivers the request (after the acknowledgement when `ack` is on). 400 with a
//! data error (HEC codes 5, 6, 12, 13, 15) or 413 (too large) refuses the request as a whole, so
//! its records are sent again one per request to find the bad ones: only those are rejected
//! (dead-lettered). Records before the bad one may have been indexed by the refused request, so
//! they can arrive twice.
//! Everything else fails the request and the driver retries it: 429, 5xx, and the configuration
//! errors (401/403 for a wrong or disabled token, 400 for a wrong index or channel), which are
//! retried until the configuration is fixed.

use std::collections::HashSet;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use serde::Deserialize;

use super::web::{body_prefix, client, error_text, origin, parse_url, quote_body, sensitive};
use super::{read_secret, Deliver, Limits, Outcome, Record, RequestError, SinkError};
use crate::config::types::{Flow, HumanDuration, Secret};
use crate::tls::TlsConfig;

/// Up to 500 records or 800 KiB of documents per request, sent at most 1 s after the first
/// record: HEC handles batches well, and with the envelopes (about 150 bytes each) a request
/// stays under 1,000,000 bytes, the smallest `max_content_length` of HEC releases.
pub const LIMITS: Limits = Limits {
    max_records: 500,
    max_bytes: 800 << 10,
    flush_interval: Duration::from_secs(1),
};

/// HEC error codes of a 400 that are about the data of an event (not the configuration).
const DATA_ERROR_CODES: [i64; 5] = [
    5,  // No data
    6,  // Invalid data format
    12, // Event field is required
    13, // Event field cannot be blank
    15, // Error in handling indexed fields
];

/// The first and the longest pause between acknowledgement polls.
const ACK_POLL_START: Duration = Duration::from_millis(100);
const ACK_POLL_MAX: Duration = Duration::from_secs(2);

/// How much of a HEC response is read.
const RESPONSE_PREFIX_BYTES: usize = 64 * 1024;

/// `sinks: - type: splunk_hec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkConfig {
    /// Base URL of the HTTP Event Collector, e.g. `https://splunk.example:8088` (a path in it,
    /// such as a proxy prefix, is kept: `path` is appended).
    pub endpoint: String,
    /// Path of the event endpoint. Default `/services/collector/event`. The acknowledgement
    /// (`.../ack`) and health (`.../health`) endpoints are found beside it.
    #[serde(default = "default_path")]
    pub path: String,
    /// The HEC token (usually `${SPLUNK_HEC_TOKEN}`), sent as `Authorization: Splunk <token>`.
    /// Never logged.
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the token (a mounted Secret); instead of `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// `index` of every event. Default: the token's default index.
    #[serde(default)]
    pub index: Option<String>,
    /// `sourcetype` of alerts. Default `tripline:alert`.
    #[serde(default = "default_alerts_sourcetype")]
    pub alerts_sourcetype: String,
    /// `sourcetype` of audit events (the `events` flow). Default `kube:apiserver:audit`.
    #[serde(default = "default_events_sourcetype")]
    pub events_sourcetype: String,
    /// `source` of every event. Default `tripline`.
    #[serde(default = "default_source")]
    pub source: String,
    /// `host` of every event. Default: this machine's host name (the pod name in Kubernetes).
    #[serde(default)]
    pub host: Option<String>,
    /// `none` (default) or `gzip` (`Content-Encoding: gzip`).
    #[serde(default)]
    pub compression: Compression,
    /// Wait for indexer acknowledgement (the token must have "Enable indexer acknowledgement"):
    /// a request counts as delivered only once Splunk confirms the events were indexed. Requests
    /// carry an `X-Splunk-Request-Channel` chosen at start; behind a load balancer, make it
    /// sticky on that header. Default false.
    #[serde(default)]
    pub ack: bool,
    /// With `ack`, how long to wait for the acknowledgement before sending the request again.
    /// Default `60s`.
    #[serde(default = "default_ack_timeout")]
    pub ack_timeout: HumanDuration,
    /// Timeout of one HTTP request. Default `30s`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// TLS settings for an `https://` endpoint (default: verify against the bundled Mozilla
    /// roots).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `compression:` of a Splunk sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

fn default_path() -> String {
    "/services/collector/event".to_string()
}
fn default_alerts_sourcetype() -> String {
    "tripline:alert".to_string()
}
fn default_events_sourcetype() -> String {
    "kube:apiserver:audit".to_string()
}
fn default_source() -> String {
    "tripline".to_string()
}
fn default_ack_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl SplunkConfig {
    /// Problems found without I/O, each `key: message` relative to the sink: everything
    /// [`Splunk::new`] rejects short of reading the token and TLS files.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        match parse_url(&self.endpoint, "endpoint", self.tls.is_some()) {
            Ok(base) if self.path.starts_with('/') => {
                let collector = match self.path.find("/services/collector") {
                    Some(i) => &self.path[..i + "/services/collector".len()],
                    None => "/services/collector",
                };
                for path in [
                    self.path.clone(),
                    format!("{collector}/ack"),
                    format!("{collector}/health"),
                ] {
                    let joined = format!("{}{path}", base.as_str().trim_end_matches('/'));
                    if let Err(e) = reqwest::Url::parse(&joined) {
                        p.push(format!("path: `{path}`: {e}"));
                    }
                }
            }
            Ok(_) => p.push("path: must start with `/`".to_string()),
            Err(e) => p.push(e),
        }
        if let Some(tls) = &self.tls {
            p.extend(tls.validate().into_iter().map(|e| format!("tls: {e}")));
        }
        p.extend(Secret::check_pair("token", &self.token, &self.token_file));
        match &self.token {
            None if self.token_file.is_none() => {
                p.push("token: `token` or `token_file` is required".to_string());
            }
            Some(t) if t.expose().is_empty() && self.token_file.is_none() => {
                p.push("token: `token` or `token_file` is required".to_string());
            }
            Some(t) if sensitive(&format!("Splunk {}", t.expose())).is_err() => {
                p.push("token: the token is not a valid header value".to_string());
            }
            _ => {}
        }
        p
    }
}

/// A running Splunk HEC sink.
pub struct Splunk {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    event_url: reqwest::Url,
    ack_url: reqwest::Url,
    health_url: reqwest::Url,
    /// `scheme://host:port` of the endpoint, for messages.
    origin: String,
    headers: HeaderMap,
    /// The envelope between `"time":<t>` and the document, per flow (alerts, events):
    /// `,"host":..,"source":..,"sourcetype":..[,"index":..],"event":`.
    envelopes: [Vec<u8>; 2],
    gzip: bool,
    ack: bool,
    ack_timeout: Duration,
    warned_no_ack_id: bool,
}

/// What HEC said to a request that reached it.
enum Sent {
    /// Accepted, with the `ackId` when acknowledgement is on.
    Accepted(Option<u64>),
    /// Rejected for the content of an event.
    Invalid(String),
}

/// The JSON of a HEC response.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct HecReply {
    text: Option<String>,
    code: Option<i64>,
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

impl Splunk {
    /// Checks the settings, reads the token and TLS files; connects only on first use.
    pub fn new(name: &str, cfg: &SplunkConfig) -> Result<Splunk, SinkError> {
        let setup = |message: String| SinkError::Setup {
            sink: name.to_string(),
            message,
        };
        SinkError::check(name, cfg.validate())?;
        let base = parse_url(&cfg.endpoint, "endpoint", cfg.tls.is_some()).map_err(setup)?;
        if !cfg.path.starts_with('/') {
            return Err(setup("path: must start with `/`".to_string()));
        }
        // `path` is appended to the endpoint's own path (a proxy prefix is kept).
        let url = |path: &str| {
            reqwest::Url::parse(&format!("{}{path}", base.as_str().trim_end_matches('/')))
                .map_err(|e| setup(format!("path: `{path}`: {e}")))
        };
        let event_url = url(&cfg.path)?;
        // `/services/collector/event` -> `/services/collector/ack`, keeping any proxy prefix.
        let collector = match cfg.path.find("/services/collector") {
            Some(i) => &cfg.path[..i + "/services/collector".len()],
            None => "/services/collector",
        };
        let ack_url = url(&format!("{collector}/ack"))?;
        let health_url = url(&format!("{collector}/health"))?;
        let token = read_secret(name, "token", &cfg.token, &cfg.token_file)?
            .filter(|t| !t.expose().is_empty())
            .ok_or_else(|| setup("`token` or `token_file` is required".to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            AUTHORIZATION,
            sensitive(&format!("Splunk {}", token.expose()))
                .map_err(|_| setup("the token is not a valid header value".to_string()))?,
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if cfg.compression == Compression::Gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        headers.insert(
            "X-Splunk-Request-Channel",
            HeaderValue::from_str(&new_channel()).expect("a UUID is a header value"),
        );
        let host = cfg.host.clone().or_else(super::machine_hostname);
        let envelope = |sourcetype: &str| {
            let mut e = Vec::new();
            let mut field = |k: &str, v: &str| {
                let _ = write!(e, ",\"{k}\":");
                serde_json::to_writer(&mut e, v).expect("a string serializes");
            };
            if let Some(h) = &host {
                field("host", h);
            }
            field("source", &cfg.source);
            field("sourcetype", sourcetype);
            if let Some(i) = &cfg.index {
                field("index", i);
            }
            e.extend_from_slice(b",\"event\":");
            e
        };
        Ok(Splunk {
            rt: super::runtime(name)?,
            client: client(name, cfg.tls.as_ref(), cfg.timeout.0)?,
            origin: origin(&event_url),
            event_url,
            ack_url,
            health_url,
            headers,
            envelopes: [
                envelope(&cfg.alerts_sourcetype),
                envelope(&cfg.events_sourcetype),
            ],
            gzip: cfg.compression == Compression::Gzip,
            ack: cfg.ack,
            ack_timeout: cfg.ack_timeout.0,
            warned_no_ack_id: false,
        })
    }

    /// The request body for `records`: their envelopes one after the other, gzipped if set.
    /// Documents are copied as they are (they are JSON already).
    fn encode(&self, records: &[Arc<Record>]) -> Vec<u8> {
        let len: usize = records.iter().map(|r| r.doc.len() + 160).sum();
        let mut body = Vec::with_capacity(len);
        for r in records {
            body.extend_from_slice(b"{\"time\":");
            body.extend_from_slice(epoch_seconds(r.time_or_now()).as_bytes());
            let envelope = match r.flow {
                Flow::Alerts => &self.envelopes[0],
                Flow::Events => &self.envelopes[1],
            };
            body.extend_from_slice(envelope);
            body.extend_from_slice(&r.doc);
            body.push(b'}');
        }
        if !self.gzip {
            return body;
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(body.len() / 4),
            flate2::Compression::fast(),
        );
        gz.write_all(&body)
            .and_then(|()| gz.finish())
            .expect("writing to memory does not fail")
    }

    /// POSTs `body` to `url`: the status and the parsed reply.
    fn post(&self, url: &reqwest::Url, body: Vec<u8>) -> Result<(u16, HecReply, Vec<u8>), String> {
        let mut headers = self.headers.clone();
        if url != &self.event_url {
            // Ack polls are small JSON, never compressed.
            headers.remove(CONTENT_ENCODING);
        }
        let request = self.client.post(url.clone()).headers(headers).body(body);
        self.rt
            .block_on(async {
                let mut response = request.send().await?;
                let status = response.status().as_u16();
                let bytes = body_prefix(&mut response, RESPONSE_PREFIX_BYTES).await;
                Ok((status, bytes))
            })
            .map(|(status, bytes)| {
                let reply = serde_json::from_slice(&bytes).unwrap_or_default();
                (status, reply, bytes)
            })
            .map_err(|e: reqwest::Error| {
                format!("POST {}{}: {}", self.origin, url.path(), error_text(e))
            })
    }

    /// Sends one request of events: accepted, rejected for its data, or failed (`Err`).
    fn send(&self, records: &[Arc<Record>]) -> Result<Sent, String> {
        let (status, reply, raw) = self.post(&self.event_url, self.encode(records))?;
        let what = || {
            let mut s = format!("HEC {}: HTTP {status}", self.origin);
            match (&reply.code, &reply.text) {
                (Some(code), Some(text)) => s.push_str(&format!(" (code {code}: {text})")),
                _ => s.push_str(&quote_body(&raw)),
            }
            s
        };
        match status {
            200 => Ok(Sent::Accepted(reply.ack_id)),
            400 if reply.code.is_some_and(|c| DATA_ERROR_CODES.contains(&c)) => {
                Ok(Sent::Invalid(what()))
            }
            // Larger than HEC's `max_content_length`: sent one by one, only a record too large
            // on its own is rejected.
            413 => Ok(Sent::Invalid(what())),
            401 | 403 => Err(format!(
                "{}: the token was refused; check `token`/`token_file` (retrying until fixed)",
                what()
            )),
            400 => Err(format!(
                "{}: check the sink's settings (retrying until fixed)",
                what()
            )),
            _ => Err(what()),
        }
    }

    /// Polls the acknowledgement endpoint until every id in `ids` is acknowledged or
    /// `ack_timeout` passed; returns the acknowledged ones.
    fn wait_acks(&self, ids: &[u64]) -> (HashSet<u64>, Option<String>) {
        #[derive(Deserialize)]
        struct AckReply {
            acks: std::collections::HashMap<String, bool>,
        }
        let deadline = Instant::now() + self.ack_timeout;
        let mut acked = HashSet::new();
        let mut pause = ACK_POLL_START;
        let mut last_error = None;
        loop {
            let pending: Vec<u64> = ids.iter().copied().filter(|i| !acked.contains(i)).collect();
            if pending.is_empty() {
                return (acked, None);
            }
            let body = serde_json::json!({ "acks": pending })
                .to_string()
                .into_bytes();
            match self.post(&self.ack_url, body) {
                Ok((200, _, raw)) => match serde_json::from_slice::<AckReply>(&raw) {
                    Ok(reply) => acked.extend(
                        reply
                            .acks
                            .iter()
                            .filter(|(_, done)| **done)
                            .filter_map(|(id, _)| id.parse::<u64>().ok()),
                    ),
                    Err(e) => last_error = Some(format!("ack reply: {e}")),
                },
                Ok((status, reply, raw)) => {
                    last_error = Some(match (reply.code, reply.text) {
                        (Some(code), Some(text)) => format!("HTTP {status} (code {code}: {text})"),
                        _ => format!("HTTP {status}{}", quote_body(&raw)),
                    })
                }
                Err(e) => last_error = Some(e),
            }
            if ids.iter().all(|i| acked.contains(i)) {
                return (acked, None);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (acked, last_error);
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(ACK_POLL_MAX);
        }
    }

    /// Sends each record in its own request, after HEC refused a batch for its data: rejects
    /// only the records HEC refuses alone.
    fn isolate(&mut self, records: &[Arc<Record>]) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Delivered; records.len()];
        let mut waiting: Vec<(usize, u64)> = Vec::new();
        for (i, rec) in records.iter().enumerate() {
            match self.send(std::slice::from_ref(rec)) {
                Ok(Sent::Accepted(Some(id))) if self.ack => waiting.push((i, id)),
                Ok(Sent::Accepted(_)) => {}
                Ok(Sent::Invalid(why)) => outcomes[i] = Outcome::Reject(why),
                Err(e) => {
                    // The endpoint is failing: leave this record and the rest for the retry.
                    for o in &mut outcomes[i..] {
                        *o = Outcome::Retry(e.clone());
                    }
                    break;
                }
            }
        }
        if !waiting.is_empty() {
            let ids: Vec<u64> = waiting.iter().map(|(_, id)| *id).collect();
            let (acked, _) = self.wait_acks(&ids);
            for (i, id) in waiting {
                if !acked.contains(&id) {
                    outcomes[i] = Outcome::Retry(self.ack_timeout_message(&[id], None));
                }
            }
        }
        outcomes
    }

    fn ack_timeout_message(&self, ids: &[u64], error: Option<String>) -> String {
        let mut s = format!(
            "HEC {}: no indexer acknowledgement of ackId {ids:?} within {:?}; sending again",
            self.origin, self.ack_timeout
        );
        if let Some(e) = error {
            s.push_str(&format!(" (last poll: {e})"));
        }
        s
    }
}

impl Deliver for Splunk {
    fn deliver(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        match self.send(records).map_err(RequestError)? {
            Sent::Accepted(Some(id)) if self.ack => {
                let (acked, error) = self.wait_acks(&[id]);
                if !acked.contains(&id) {
                    return Err(RequestError(self.ack_timeout_message(&[id], error)));
                }
            }
            Sent::Accepted(None) if self.ack => {
                if !self.warned_no_ack_id {
                    self.warned_no_ack_id = true;
                    tracing::warn!(endpoint = %self.origin, "ack is on but HEC returned no ackId: the token does not have indexer acknowledgement enabled; delivering without it");
                }
            }
            Sent::Accepted(_) => {}
            Sent::Invalid(why) if records.len() == 1 => return Ok(vec![Outcome::Reject(why)]),
            Sent::Invalid(why) => {
                tracing::warn!(endpoint = %self.origin, reason = %why, records = records.len(), "HEC refused a batch for its data; sending its records one by one");
                return Ok(self.isolate(records));
            }
        }
        Ok(vec![Outcome::Delivered; records.len()])
    }

    fn probe(&mut self) -> Result<(), RequestError> {
        let request = self.client.get(self.health_url.clone());
        let status = self
            .rt
            .block_on(async { request.send().await.map(|r| r.status().as_u16()) })
            .map_err(|e| {
                RequestError(format!(
                    "GET {}{}: {}",
                    self.origin,
                    self.health_url.path(),
                    error_text(e)
                ))
            })?;
        if status == 200 {
            Ok(())
        } else {
            Err(RequestError(format!(
                "GET {}{}: HTTP {status}",
                self.origin,
                self.health_url.path()
            )))
        }
    }
}

/// HEC `time`: seconds since the epoch with a millisecond fraction, e.g. `1714557600.250`.
fn epoch_seconds(t: DateTime<Utc>) -> String {
    let ms = t.timestamp_millis();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// A random UUID (version 4 layout) naming this sink's HEC channel. Not security-relevant: it
/// only has to differ between senders.
fn new_channel() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut seed = std::collections::hash_map::RandomState::new().build_hasher();
    seed.write_u32(std::process::id());
    let mut h = blake3::Hasher::new();
    h.update(&seed.finish().to_le_bytes());
    h.update(
        &std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> SplunkConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn hec_time_is_epoch_seconds_with_milliseconds() {
        let t: DateTime<Utc> = "2024-05-01T10:00:00.25Z".parse().unwrap();
        assert_eq!(epoch_seconds(t), "1714557600.250");
        let t: DateTime<Utc> = "1969-12-31T23:59:59.5Z".parse().unwrap();
        assert_eq!(epoch_seconds(t), "-1.500");
    }

    #[test]
    fn channels_are_distinct_v4_uuids() {
        let a = new_channel();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
        assert_ne!(a, new_channel());
    }

    #[test]
    fn envelopes_embed_the_document_unchanged() {
        let s = Splunk::new(
            "s",
            &cfg("endpoint: http://127.0.0.1:1\ntoken: t\nhost: \"n\\\"1\"\nindex: sec\n"),
        )
        .unwrap();
        let rec = Arc::new(Record {
            flow: Flow::Events,
            id: "x".into(),
            time: Some("2024-05-01T10:00:00.25Z".parse().unwrap()),
            level: None,
            rule: None,
            user: None,
            doc: br#"{"b":1,  "a":[2]}"#.to_vec(),
        });
        let body = String::from_utf8(s.encode(&[rec.clone(), rec])).unwrap();
        let one = r#"{"time":1714557600.250,"host":"n\"1","source":"tripline","sourcetype":"kube:apiserver:audit","index":"sec","event":{"b":1,  "a":[2]}}"#;
        assert_eq!(body, format!("{one}{one}"));
    }

    #[test]
    fn ack_and_health_urls_sit_beside_the_event_path() {
        let s = Splunk::new(
            "s",
            &cfg("endpoint: https://h:8088\ntoken: t\npath: /proxy/services/collector/event/1.0\n"),
        )
        .unwrap();
        assert_eq!(
            s.event_url.as_str(),
            "https://h:8088/proxy/services/collector/event/1.0"
        );
        assert_eq!(
            s.ack_url.as_str(),
            "https://h:8088/proxy/services/collector/ack"
        );
        assert_eq!(
            s.health_url.as_str(),
            "https://h:8088/proxy/services/collector/health"
        );
    }

    #[test]
    fn a_token_is_required_and_never_shown() {
        let e = Splunk::new("s", &cfg("endpoint: http://h\n"))
            .err()
            .unwrap();
        assert!(
            e.to_string()
                .contains("`token` or `token_file` is required"),
            "{e}"
        );
        let c = cfg("endpoint: http://h\ntoken: very-secret\n");
        assert!(!format!("{c:?}").contains("very-secret"));
        assert!(
            serde_yaml::from_str::<SplunkConfig>("endpoint: http://h\nsourcetype: x\n").is_err()
        );
    }

    #[test]
    fn keys_parse_inside_the_sinks_list() {
        let kind = crate::sink::tests::first_sink(
            "sinks:\n  - type: splunk_hec\n    endpoint: https://splunk:8088\n    token: ${T}\n    ack: true\n    ack_timeout: 30s\n    compression: gzip\n",
            &|_| Some("tok".to_string()),
        );
        let crate::sink::SinkKind::SplunkHec(s) = kind else {
            panic!("{kind:?}");
        };
        assert!(s.ack);
        assert_eq!(s.ack_timeout.0, Duration::from_secs(30));
        assert_eq!(s.compression, Compression::Gzip);
        assert_eq!(s.alerts_sourcetype, "tripline:alert");
        assert_eq!(s.events_sourcetype, "kube:apiserver:audit");
    }
}
