//! Elasticsearch and OpenSearch: the bulk API through the `elasticsearch` crate's transport
//! (rustls, gzip request bodies), one transport per endpoint with failover, index templates
//! installed at the first connection, and per-item results.
//!
//! Every document is written with `create` and a deterministic `_id` ([`Record::id`]), so a
//! batch sent again after a crash or a lost response is answered `409` for what is already
//! there, which counts as delivered: at-least-once delivery without duplicates (per index: a
//! data stream that rolled over in between can hold a document twice).

pub mod template;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::{Method, StatusCode, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::config::types::{Flow, HumanDuration, Secret};
use crate::sink::{
    read_secret, runtime, Deliver, Limits, Outcome, Record, RequestError, SinkError,
};
use crate::telemetry::{Counter, Metrics, SinkLabels};
use crate::tls::TlsConfig;

/// Bulk requests of up to 2,000 documents or 5 MiB, sent at least every second.
pub const LIMITS: Limits = Limits {
    max_records: 2_000,
    max_bytes: 5 << 20,
    flush_interval: Duration::from_secs(1),
};

/// `sinks: - type: elasticsearch` (alias `opensearch`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URLs of the cluster's nodes; requests go to the first that answers.
    pub endpoints: Vec<String>,
    /// `auto` (from `GET /`), `elasticsearch` or `opensearch`: decides the mapping types.
    #[serde(default)]
    pub flavor: FlavorChoice,
    /// Index of alerts; `%Y`, `%m`, `%d`, `%H` come from the event time (UTC).
    #[serde(default = "default_alerts_index")]
    pub alerts_index: String,
    /// Index of events (the Fluentd-style archive).
    #[serde(default = "default_events_index")]
    pub events_index: String,
    /// Write to data streams named `alerts_index` / `events_index` (no date placeholders).
    #[serde(default)]
    pub data_stream: bool,
    /// Ingest pipeline applied to every document.
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub template: TemplateConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    /// gzip request bodies.
    #[serde(default = "yes")]
    pub compression: bool,
    /// Timeout of one request.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn yes() -> bool {
    true
}
fn default_alerts_index() -> String {
    "tripline-alerts-%Y.%m.%d".to_string()
}
fn default_events_index() -> String {
    "kubernetes-audit-%Y.%m.%d".to_string()
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlavorChoice {
    #[default]
    Auto,
    Elasticsearch,
    OpenSearch,
}

/// Which server family: decides `flattened` vs `flat_object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Elasticsearch,
    OpenSearch,
}

/// `template:`: the index templates installed at start-up.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    /// Install (or update) the templates at the first connection.
    #[serde(default = "yes")]
    pub install: bool,
    /// The template's name (one template covers both indices).
    #[serde(default = "default_template_name")]
    pub name: String,
    /// Template priority (higher wins over other templates matching the same indices).
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Index settings merged into the templates (shards, replicas, lifecycle policy).
    #[serde(default)]
    pub settings: serde_json::Map<String, Value>,
}

impl Default for TemplateConfig {
    fn default() -> Self {
        TemplateConfig {
            install: true,
            name: default_template_name(),
            priority: default_priority(),
            settings: Default::default(),
        }
    }
}

fn default_template_name() -> String {
    "tripline".to_string()
}
fn default_priority() -> u32 {
    200
}

/// `auth:`: one of basic, API key or bearer token; each secret inline (`${ENV}`) or from a file.
/// Every key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// The encoded API key (`base64(id:key)`, as Elasticsearch returns it in `encoded`).
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub bearer_token: Option<Secret>,
    pub bearer_token_file: Option<PathBuf>,
}

impl ElasticsearchConfig {
    /// Problems found without I/O, with their keys.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.endpoints.is_empty() {
            p.push("endpoints: at least one URL is required".to_string());
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            match Url::parse(e) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(_) => p.push(format!("endpoints[{i}]: `{e}` is not an http(s) URL")),
                Err(err) => p.push(format!("endpoints[{i}]: `{e}`: {err}")),
            }
        }
        for (key, index) in [
            ("alerts_index", &self.alerts_index),
            ("events_index", &self.events_index),
        ] {
            if let Err(e) = check_index(index, self.data_stream) {
                p.push(format!("{key}: {e}"));
            }
        }
        let a = &self.auth;
        let [password, api_key, bearer] = [
            ("auth.password", &a.password, &a.password_file),
            ("auth.api_key", &a.api_key, &a.api_key_file),
            ("auth.bearer_token", &a.bearer_token, &a.bearer_token_file),
        ]
        .map(|(key, inline, file)| {
            let given = Secret::check_given(&mut p, key, inline, file);
            if inline
                .as_ref()
                .is_some_and(|v| HeaderValue::from_str(v.expose()).is_err())
            {
                p.push(format!(
                    "{key}: holds characters not allowed in an HTTP header"
                ));
            }
            given
        });
        match (a.username.is_some(), password, api_key, bearer) {
            (true, true, false, false)
            | (false, false, true, false)
            | (false, false, false, true)
            | (false, false, false, false) => {}
            (true, false, false, false) => {
                p.push("auth.username: needs auth.password".to_string());
            }
            _ => p.push("auth: give one of username+password, api_key or bearer_token".to_string()),
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            p.push("tls: `cert` and `key` go together".to_string());
        }
        p
    }
}

/// Index names: lowercase, no characters Elasticsearch forbids, only known date placeholders.
fn check_index(index: &str, data_stream: bool) -> Result<(), String> {
    if index.is_empty() {
        return Err("empty index name".to_string());
    }
    let literal = index.replace("%Y", "").replace("%H", "");
    if literal.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("`{index}`: index names must be lowercase"));
    }
    if index.starts_with(['-', '_', '+']) {
        return Err(format!("`{index}`: must not start with `-`, `_` or `+`"));
    }
    if let Some(c) = index.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Err(format!("`{index}`: `{c}` is not allowed in index names"));
    }
    let mut chars = index.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some('Y' | 'm' | 'd' | 'H') if !data_stream => {}
                Some('Y' | 'm' | 'd' | 'H') => {
                    return Err(format!(
                    "`{index}`: data streams roll over by themselves; remove the date placeholders"
                ))
                }
                other => {
                    return Err(format!(
                        "`{index}`: unknown placeholder `%{}` (use %Y, %m, %d, %H)",
                        other.map(String::from).unwrap_or_default()
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Expands the date placeholders of `index` with `time`.
fn index_name(index: &str, time: chrono::DateTime<chrono::Utc>) -> String {
    if !index.contains('%') {
        return index.to_string();
    }
    // `check_index` allowed only %Y %m %d %H, all of which chrono formats.
    time.format(index).to_string()
}

struct Node {
    url: String,
    transport: Transport,
}

pub struct Elasticsearch {
    name: String,
    cfg: ElasticsearchConfig,
    nodes: Vec<Node>,
    /// The node requests go to first (the last that answered).
    current: usize,
    flavor: Option<Flavor>,
    templates_installed: bool,
    rt: tokio::runtime::Runtime,
    failovers: Counter,
}

impl Elasticsearch {
    pub fn new(
        name: &str,
        cfg: &ElasticsearchConfig,
        metrics: &Metrics,
    ) -> Result<Elasticsearch, SinkError> {
        let setup = |message: String| SinkError::Setup {
            sink: name.to_string(),
            message,
        };
        SinkError::check(name, cfg.validate())?;
        let a = &cfg.auth;
        let password = read_secret(name, "auth.password", &a.password, &a.password_file)?;
        let api_key = read_secret(name, "auth.api_key", &a.api_key, &a.api_key_file)?;
        let bearer = read_secret(
            name,
            "auth.bearer_token",
            &a.bearer_token,
            &a.bearer_token_file,
        )?;
        let authorization = match (&a.username, password, api_key, bearer) {
            (Some(u), Some(p), None, None) => Some(crate::sink::basic_auth(u, Some(p.expose()))),
            (None, None, Some(k), None) => Some(format!("ApiKey {}", k.expose())),
            (None, None, None, Some(t)) => Some(format!("Bearer {}", t.expose())),
            (None, None, None, None) => None,
            (Some(_), None, None, None) => {
                return Err(setup("auth.username needs auth.password".into()))
            }
            _ => {
                return Err(setup(
                    "auth: give one of username+password, api_key or bearer_token".into(),
                ))
            }
        };
        let ca_pem = match &cfg.tls.ca {
            Some(p) => {
                let pem =
                    std::fs::read(p).map_err(|e| setup(format!("tls.ca {}: {e}", p.display())))?;
                Certificate::from_pem(&pem)
                    .map_err(|e| setup(format!("tls.ca {}: {e}", p.display())))?;
                Some(pem)
            }
            None => None,
        };
        let identity = match (&cfg.tls.cert, &cfg.tls.key) {
            (Some(c), Some(k)) => {
                let mut pem = std::fs::read(c)
                    .map_err(|e| setup(format!("tls.cert {}: {e}", c.display())))?;
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(k).map_err(|e| setup(format!("tls.key {}: {e}", k.display())))?,
                );
                Some(pem)
            }
            (None, None) => None,
            _ => return Err(setup("tls: `cert` and `key` go together".into())),
        };
        let mut nodes = Vec::new();
        for url in &cfg.endpoints {
            let parsed = Url::parse(url).map_err(|e| setup(format!("endpoint `{url}`: {e}")))?;
            let mut b = TransportBuilder::new(SingleNodeConnectionPool::new(parsed))
                .request_body_compression(cfg.compression)
                .timeout(cfg.timeout.0)
                .enable_meta_header(false)
                .disable_proxy();
            if let Some(h) = &authorization {
                let mut v = HeaderValue::from_str(h).map_err(|_| {
                    setup(
                        "auth: a credential holds characters not allowed in an HTTP header".into(),
                    )
                })?;
                v.set_sensitive(true);
                b = b.header(AUTHORIZATION, v);
            }
            if let Some(pem) = &ca_pem {
                let ca = Certificate::from_pem(pem).map_err(|e| setup(format!("tls.ca: {e}")))?;
                b = b.cert_validation(CertificateValidation::Full(ca));
            }
            if cfg.tls.insecure_skip_verify {
                tracing::warn!(
                    sink = name,
                    "tls.insecure_skip_verify: the server's certificate is not verified"
                );
                b = b.cert_validation(CertificateValidation::None);
            }
            if let Some(pem) = &identity {
                b = b.auth(Credentials::Certificate(ClientCertificate::Pem(
                    pem.clone(),
                )));
            }
            let transport = b
                .build()
                .map_err(|e| setup(format!("endpoint `{url}`: {e}")))?;
            nodes.push(Node {
                url: redact_url(url),
                transport,
            });
        }
        let flavor = match cfg.flavor {
            FlavorChoice::Auto => None,
            FlavorChoice::Elasticsearch => Some(Flavor::Elasticsearch),
            FlavorChoice::OpenSearch => Some(Flavor::OpenSearch),
        };
        Ok(Elasticsearch {
            name: name.to_string(),
            cfg: cfg.clone(),
            nodes,
            current: 0,
            flavor,
            templates_installed: !cfg.template.install,
            rt: runtime(name)?,
            failovers: metrics
                .sink_failovers
                .get_or_create_owned(&SinkLabels::new(name)),
        })
    }

    /// Sends one request, trying each endpoint from the current one; a connection failure,
    /// timeout, 5xx or 429 moves on to the next. Returns the status and body of the first
    /// answer that is not a server failure, or the last failure.
    fn request(
        &mut self,
        method: Method,
        path: &str,
        content_type: &'static str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Vec<u8>), RequestError> {
        let mut last = String::new();
        for attempt in 0..self.nodes.len() {
            let i = (self.current + attempt) % self.nodes.len();
            if attempt > 0 {
                self.failovers.inc();
            }
            let node = &self.nodes[i];
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            let res = self.rt.block_on(async {
                let r = node
                    .transport
                    .send(method, path, headers, None::<&()>, body.clone(), None)
                    .await?;
                let status = r.status_code();
                let bytes = r.bytes().await?;
                Ok::<_, elasticsearch::Error>((status, bytes.to_vec()))
            });
            match res {
                Ok((status, bytes))
                    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS =>
                {
                    last = format!("{} answered {status}: {}", node.url, snippet(&bytes));
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        // The cluster is overloaded, not this node: back off rather than move on.
                        return Err(RequestError(last));
                    }
                }
                Ok(ok) => {
                    self.current = i;
                    return Ok(ok);
                }
                Err(e) => last = format!("{}: {}", node.url, error_chain(&e)),
            }
        }
        Err(RequestError(last))
    }

    /// Detects the flavour and installs the templates, once, at the first connection.
    fn prepare(&mut self) -> Result<(), RequestError> {
        if self.flavor.is_none() {
            let (status, body) = self.request(Method::Get, "/", "application/json", None)?;
            if !status.is_success() {
                return Err(RequestError(format!(
                    "GET / answered {status}: {}",
                    snippet(&body)
                )));
            }
            let info: Value = serde_json::from_slice(&body).unwrap_or_default();
            let flavor = match info
                .pointer("/version/distribution")
                .and_then(Value::as_str)
            {
                Some("opensearch") => Flavor::OpenSearch,
                _ => Flavor::Elasticsearch,
            };
            let version = info
                .pointer("/version/number")
                .and_then(|v| v.as_str())
                .unwrap_or("?");
            tracing::info!(sink = %self.name, flavor = ?flavor, version, "connected");
            self.flavor = Some(flavor);
        }
        if !self.templates_installed {
            let flavor = self.flavor.unwrap_or(Flavor::Elasticsearch);
            let settings = Value::Object(self.cfg.template.settings.clone());
            // One template for both flows (their mappings are the same): two templates of one
            // priority whose patterns overlap would be refused.
            let mut patterns = vec![
                template::pattern_of(&self.cfg.alerts_index),
                template::pattern_of(&self.cfg.events_index),
            ];
            patterns.dedup();
            let body = template::index_template(
                flavor,
                &patterns,
                self.cfg.data_stream,
                &settings,
                self.cfg.template.priority,
            );
            let path = format!("/_index_template/{}", self.cfg.template.name);
            let (status, resp) = self.request(
                Method::Put,
                &path,
                "application/json",
                Some(serde_json::to_vec(&body).unwrap_or_default()),
            )?;
            if !status.is_success() {
                // A template the cluster refuses is a configuration problem (settings, a
                // conflicting template): retried, and said loudly.
                return Err(RequestError(format!(
                    "installing index template {path}: {status}: {}",
                    snippet(&resp)
                )));
            }
            tracing::info!(sink = %self.name, template = %path, "index template installed");
            self.templates_installed = true;
        }
        Ok(())
    }

    fn bulk_body(&self, records: &[Arc<Record>]) -> Vec<u8> {
        let mut body = Vec::with_capacity(records.iter().map(|r| r.doc.len() + 128).sum());
        for r in records {
            let index = match r.flow {
                Flow::Alerts => &self.cfg.alerts_index,
                Flow::Events => &self.cfg.events_index,
            };
            let mut action = serde_json::json!({
                "create": { "_index": index_name(index, r.time_or_now()), "_id": r.id }
            });
            if let Some(p) = &self.cfg.pipeline {
                action["create"]["pipeline"] = Value::String(p.clone());
            }
            let _ = serde_json::to_writer(&mut body, &action);
            body.push(b'\n');
            match (&r.time, r.doc.first()) {
                // Data streams need `@timestamp`; a document without an event time gets the
                // time it was sent.
                (None, Some(b'{')) if !has_timestamp(&r.doc) => {
                    let now =
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    body.extend_from_slice(format!("{{\"@timestamp\":\"{now}\",").as_bytes());
                    let rest = &r.doc[1..];
                    if rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}') {
                        body.pop();
                    }
                    body.extend_from_slice(rest);
                }
                _ => body.extend_from_slice(&r.doc),
            }
            body.push(b'\n');
        }
        body
    }

    /// One bulk request; a 413 splits the records in halves.
    fn bulk(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        let body = self.bulk_body(records);
        let (status, resp) =
            self.request(Method::Post, "/_bulk", "application/x-ndjson", Some(body))?;
        if status == StatusCode::PAYLOAD_TOO_LARGE && records.len() > 1 {
            tracing::warn!(sink = %self.name, records = records.len(), "bulk request too large; splitting (lower batch.max_bytes)");
            let (a, b) = records.split_at(records.len() / 2);
            let mut out = self.bulk(a)?;
            out.extend(self.bulk(b)?);
            return Ok(out);
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return Ok(vec![Outcome::Reject(format!(
                "document too large for the cluster ({status})"
            ))]);
        }
        if !status.is_success() {
            // 401/403 (credentials), 404 (no such endpoint), 400 (bad request as a whole):
            // nothing in the records is at fault; retry until the configuration is fixed.
            return Err(RequestError(format!(
                "bulk request answered {status}: {}",
                snippet(&resp)
            )));
        }
        parse_bulk_response(&resp, records.len())
    }
}

fn has_timestamp(doc: &[u8]) -> bool {
    memchr::memmem::find(doc, b"\"@timestamp\"").is_some()
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// Per-item outcomes of a bulk response: 2xx and 409 (already there) are delivered, 429 and
/// 5xx are retried, any other error is about the document and is rejected with its reason.
fn parse_bulk_response(body: &[u8], n: usize) -> Result<Vec<Outcome>, RequestError> {
    let resp: BulkResponse = serde_json::from_slice(body)
        .map_err(|e| RequestError(format!("unreadable bulk response ({e}): {}", snippet(body))))?;
    if resp.items.len() != n {
        // Not an answer to this bulk request (a proxy, a wrong path): nothing is known stored.
        return Err(RequestError(format!(
            "bulk response has {} items for {n} documents",
            resp.items.len()
        )));
    }
    Ok(resp
        .items
        .into_iter()
        .map(|item| {
            let Some(result) = item.into_values().next() else {
                return Outcome::Retry("empty bulk item".into());
            };
            match result.status {
                200..=299 | 409 => Outcome::Delivered,
                // Overload and server errors pass; 401/403 (the user may not write this index)
                // and 404 (indices may not be created) are configuration to fix, not content.
                401 | 403 | 404 | 429 | 500..=599 => {
                    Outcome::Retry(reason(result.status, &result.error))
                }
                s => Outcome::Reject(reason(s, &result.error)),
            }
        })
        .collect())
}

fn reason(status: u16, error: &Option<Value>) -> String {
    let Some(e) = error else {
        return format!("status {status}");
    };
    let kind = e.get("type").and_then(Value::as_str).unwrap_or("error");
    let why = e.get("reason").and_then(Value::as_str).unwrap_or("");
    let cause = e
        .pointer("/caused_by/reason")
        .and_then(Value::as_str)
        .map(|c| format!(" (caused by: {c})"))
        .unwrap_or_default();
    format!("{status} {kind}: {why}{cause}")
}

impl Deliver for Elasticsearch {
    fn deliver(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        self.prepare()?;
        self.bulk(records)
    }

    fn probe(&mut self) -> Result<(), RequestError> {
        let (status, body) = self.request(Method::Get, "/", "application/json", None)?;
        if status.is_success() {
            self.prepare()
        } else {
            Err(RequestError(format!(
                "GET / answered {status}: {}",
                snippet(&body)
            )))
        }
    }
}

/// The first 300 characters of a response body, for messages.
fn snippet(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let mut out: String = s.chars().take(300).collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// An error with its causes (`error sending request: connection refused`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// An endpoint for logs: without user info (`https://user:pass@host` keeps only the host).
fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_from_event_time() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            index_name("tripline-alerts-%Y.%m.%d", t),
            "tripline-alerts-2026.03.04"
        );
        assert_eq!(index_name("a-%Y.%m.%d-%H", t), "a-2026.03.04-05");
        assert_eq!(index_name("plain", t), "plain");
        assert_eq!(
            template::pattern_of("tripline-alerts-%Y.%m.%d"),
            "tripline-alerts-*"
        );
        assert_eq!(template::pattern_of("logs-k8s"), "logs-k8s*");
    }

    #[test]
    fn index_name_checks() {
        assert!(check_index("tripline-alerts-%Y.%m.%d", false).is_ok());
        assert!(check_index("Tripline", false)
            .unwrap_err()
            .contains("lowercase"));
        assert!(check_index("a-%Q", false).unwrap_err().contains("%Q"));
        assert!(check_index("a b", false).unwrap_err().contains("` `"));
        assert!(check_index("a-%Y", true)
            .unwrap_err()
            .contains("data streams"));
        assert!(check_index("_a", false).is_err());
    }

    #[test]
    fn bulk_items_classified() {
        let body = br#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"i","_id":"1","status":201}},
            {"create":{"_index":"i","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"exists"}}},
            {"create":{"_index":"i","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"_index":"i","_id":"4","status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [@timestamp]","caused_by":{"reason":"bad date"}}}},
            {"create":{"_index":"i","_id":"5","status":503,"error":{"type":"unavailable_shards_exception","reason":"no shard"}}},
            {"create":{"_index":"i","_id":"6","status":403,"error":{"type":"security_exception","reason":"action [indices:data/write/bulk[s]] is unauthorized"}}}
        ]}"#;
        let out = parse_bulk_response(body, 6).unwrap();
        assert!(
            matches!(&out[5], Outcome::Retry(r) if r.contains("security_exception")),
            "a permission problem is configuration, retried until fixed"
        );
        assert_eq!(out[0], Outcome::Delivered);
        assert_eq!(out[1], Outcome::Delivered);
        assert!(matches!(&out[2], Outcome::Retry(r) if r.contains("429")));
        assert!(
            matches!(&out[3], Outcome::Reject(r) if r.contains("document_parsing_exception") && r.contains("bad date"))
        );
        assert!(matches!(&out[4], Outcome::Retry(_)));
        assert!(parse_bulk_response(body, 4).is_err());
        assert!(
            parse_bulk_response(br#"{"took":1,"errors":false}"#, 3).is_err(),
            "an answer without items is not a bulk answer"
        );
        assert!(parse_bulk_response(b"<html>", 1).is_err());
    }

    #[test]
    fn config_problems_name_their_keys() {
        let cfg: ElasticsearchConfig =
            serde_yaml::from_str("endpoints: [\"ftp://x\", \"not a url\"]\nalerts_index: Alerts\n")
                .unwrap();
        let p = cfg.validate().join("\n");
        assert!(p.contains("endpoints[0]"), "{p}");
        assert!(p.contains("endpoints[1]"), "{p}");
        assert!(p.contains("alerts_index"), "{p}");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let cfg: ElasticsearchConfig = serde_yaml::from_str(
            "endpoints: [\"http://x:9200\"]\nauth: { username: u, password: hunter22secret }\n",
        )
        .unwrap();
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("hunter22secret"), "{dbg}");
        assert!(dbg.contains("password: Some(<redacted>)"), "{dbg}");
    }

    #[test]
    fn endpoints_in_logs_lose_their_credentials() {
        assert_eq!(redact_url("https://u:p@es:9200/"), "https://es:9200/");
    }
}
