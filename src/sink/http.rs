//! The HTTP sink: alerts POSTed as JSON to a webhook, as a JSON array per request (`batch`), one
//! document per request (`single`), one Slack message per alert (`template: slack`), or one
//! Falco JSON alert per request (`template: falco`, what falcosidekick's `POST /` takes).
//!
//! Statuses: 2xx is delivered; 408, 429, 5xx, timeouts and connection errors fail the request
//! (the driver retries it with backoff); a redirect fails it too (the body would be lost on the
//! way: set `url` to the final address); any other status rejects the records (dead-lettered
//! with the status and the start of the response body).
//!
//! The URL, the headers and the credentials are treated as secrets: Slack and many other
//! webhooks carry their token in the URL path, so logs and errors name only the scheme, host
//! and port.

use std::collections::BTreeMap;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::json;

use super::summary::Summary;
use super::web::{
    body_prefix, client, error_text, origin, parse_url, quote_body, sensitive, truncate_chars,
};
use super::{read_secret, Deliver, Limits, Outcome, Record, RequestError, SinkError};
use crate::config::types::{Flow, HumanDuration, Secret};
use crate::rules::Level;
use crate::tls::TlsConfig;

/// Up to 100 alerts or 1 MiB per request, sent at most 1 s after the first one: webhooks are
/// for people and chat tools, not bulk data. In `single` mode (and with `template: slack`) a
/// request of the driver becomes up to 100 POSTs in a row; lower `batch.max_records` for a
/// rate-limited endpoint (Slack allows about one message per second per webhook).
pub const LIMITS: Limits = Limits {
    max_records: 100,
    max_bytes: 1 << 20,
    flush_interval: Duration::from_secs(1),
};

/// How much of a response body is read (to explain a rejection); the rest is not read.
const RESPONSE_PREFIX_BYTES: usize = 4096;

/// `sinks: - type: http`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    /// Where records are POSTed (`http://` or `https://`). Treated as a secret: logs and errors
    /// show only its scheme, host and port.
    pub url: Secret,
    /// `batch` (default): a JSON array of documents per request; `single`: one document per
    /// request. `template: slack` and `template: falco` imply (and require) `single`.
    #[serde(default)]
    pub mode: Option<HttpMode>,
    /// `none` (default): the ECS documents as they are; `slack`: a Slack message
    /// (`{"text", "blocks"}`, for an incoming webhook) per record, with the level, rule,
    /// message, user, source IP, namespace and resource; `falco`: Falco's JSON alert per alert
    /// (for falcosidekick; alerts only).
    #[serde(default)]
    pub template: HttpTemplate,
    /// Extra request headers, e.g. `X-Api-Key: ${WEBHOOK_KEY}`. Values are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Bearer token sent as `Authorization: Bearer <token>` (usually `${ENV_VAR}`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// File holding the bearer token (a mounted Secret); instead of `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// User name for HTTP basic authentication (with `password` or `password_file`).
    #[serde(default)]
    pub username: Option<String>,
    /// Password for HTTP basic authentication.
    #[serde(default)]
    pub password: Option<Secret>,
    /// File holding the basic-authentication password; instead of `password`.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// TLS settings for an `https://` URL (default: verify against the bundled Mozilla roots).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Timeout of one request, from connecting to the end of the response. Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

/// `mode:` of an HTTP sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    Batch,
    Single,
}

/// `template:` of an HTTP sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpTemplate {
    #[default]
    None,
    Slack,
    /// Falco's JSON alert ([`crate::alert::falco`]), one per request.
    Falco,
}

impl HttpTemplate {
    fn name(self) -> &'static str {
        match self {
            HttpTemplate::None => "none",
            HttpTemplate::Slack => "slack",
            HttpTemplate::Falco => "falco",
        }
    }
}

fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}

impl HttpSinkConfig {
    /// Problems found without I/O, each `key: message` relative to the sink: everything
    /// [`HttpSink::new`] rejects short of reading secret and TLS files.
    pub fn validate(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = parse_url(self.url.expose(), "url", self.tls.is_some()) {
            p.push(e);
        }
        if let Some(tls) = &self.tls {
            p.extend(tls.validate().into_iter().map(|e| format!("tls: {e}")));
        }
        if self.template != HttpTemplate::None && self.mode == Some(HttpMode::Batch) {
            p.push(format!(
                "mode: `template: {}` sends one message per request: use `mode: single`",
                self.template.name()
            ));
        }
        for (k, v) in &self.headers {
            if HeaderName::from_bytes(k.as_bytes()).is_err() {
                p.push(format!("headers: `{k}` is not a header name"));
            }
            // The value is not quoted: it may be a secret.
            if sensitive(v.expose()).is_err() {
                p.push(format!(
                    "headers.{k}: the value is not a valid header value"
                ));
            }
        }
        let token = Secret::check_given(&mut p, "token", &self.token, &self.token_file);
        let password = Secret::check_given(&mut p, "password", &self.password, &self.password_file);
        if token && (self.username.is_some() || password) {
            p.push(
                "token: give `token` (bearer) or `username`/`password` (basic), not both"
                    .to_string(),
            );
        }
        if password && self.username.is_none() {
            p.push("password: `password` needs `username`".to_string());
        }
        if (token || self.username.is_some())
            && self
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("authorization"))
        {
            p.push(
                "headers: `headers` has `Authorization` and a token or password is set too"
                    .to_string(),
            );
        }
        p
    }
}

/// A running HTTP sink.
pub struct HttpSink {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: reqwest::Url,
    /// `scheme://host:port` of `url`, for messages.
    origin: String,
    /// Every request's headers: content type, the configured ones, authorization (all values
    /// marked sensitive).
    headers: HeaderMap,
    single: bool,
    template: HttpTemplate,
}

impl HttpSink {
    /// Checks the settings, reads the secrets and TLS files; connects only on first use.
    pub fn new(name: &str, cfg: &HttpSinkConfig) -> Result<HttpSink, SinkError> {
        let setup = |message: String| SinkError::Setup {
            sink: name.to_string(),
            message,
        };
        SinkError::check(name, cfg.validate())?;
        let url = parse_url(cfg.url.expose(), "url", cfg.tls.is_some()).map_err(setup)?;
        let single = match (cfg.template, cfg.mode) {
            (HttpTemplate::Slack | HttpTemplate::Falco, Some(HttpMode::Batch)) => {
                return Err(setup(format!(
                    "`template: {}` sends one message per request: use `mode: single`",
                    cfg.template.name()
                )))
            }
            (HttpTemplate::Slack | HttpTemplate::Falco, _) | (_, Some(HttpMode::Single)) => true,
            (HttpTemplate::None, Some(HttpMode::Batch) | None) => false,
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| setup(format!("headers: `{k}` is not a header name")))?;
            // The value is not quoted: it may be a secret.
            let value = sensitive(v.expose()).map_err(|_| {
                setup(format!(
                    "headers.{k}: the value is not a valid header value"
                ))
            })?;
            headers.insert(name, value);
        }
        let token = read_secret(name, "token", &cfg.token, &cfg.token_file)?;
        let password = read_secret(name, "password", &cfg.password, &cfg.password_file)?;
        let authorization = match (token, &cfg.username, password) {
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(setup(
                    "give `token` (bearer) or `username`/`password` (basic), not both".to_string(),
                ))
            }
            (Some(t), None, None) => Some(format!("Bearer {}", t.expose())),
            (None, Some(user), password) => Some(super::basic_auth(
                user,
                password.as_ref().map(Secret::expose),
            )),
            (None, None, Some(_)) => {
                return Err(setup("`password` needs `username`".to_string()));
            }
            (None, None, None) => None,
        };
        if let Some(auth) = authorization {
            if headers.contains_key(AUTHORIZATION) {
                return Err(setup(
                    "`headers` has `Authorization` and a token or password is set too".to_string(),
                ));
            }
            let value = sensitive(&auth)
                .map_err(|_| setup("the token or password is not a valid header value".into()))?;
            headers.insert(AUTHORIZATION, value);
        }
        Ok(HttpSink {
            rt: super::runtime(name)?,
            client: client(name, cfg.tls.as_ref(), cfg.timeout.0)?,
            origin: origin(&url),
            url,
            headers,
            single,
            template: cfg.template,
        })
    }

    /// POSTs `body`; the status and the start of the response body, or why there was none.
    fn post(&self, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .body(body);
        self.rt
            .block_on(async {
                let mut response = request.send().await?;
                let status = response.status().as_u16();
                Ok((
                    status,
                    body_prefix(&mut response, RESPONSE_PREFIX_BYTES).await,
                ))
            })
            .map_err(|e: reqwest::Error| format!("POST {}: {}", self.origin, error_text(e)))
    }

    /// One request: what happened to the records in it, or why it must be retried.
    fn send(&self, body: Vec<u8>) -> Result<Outcome, String> {
        let (status, response) = self.post(body)?;
        match status {
            200..=299 => Ok(Outcome::Delivered),
            408 | 429 | 500..=599 => Err(format!(
                "POST {}: HTTP {status}{}",
                self.origin,
                quote_body(&response)
            )),
            300..=399 => Err(format!(
                "POST {}: HTTP {status} (a redirect): set `url` to the final address",
                self.origin
            )),
            _ => Ok(Outcome::Reject(format!(
                "HTTP {status}{}",
                quote_body(&response)
            ))),
        }
    }

    /// The body for `rec`, or why it cannot be sent (it is rejected).
    fn body_of(&self, rec: &Record) -> Result<Vec<u8>, String> {
        match self.template {
            HttpTemplate::None => Ok(rec.doc.clone()),
            HttpTemplate::Slack => Ok(slack_message(rec).to_string().into_bytes()),
            HttpTemplate::Falco => rec.to_falco(),
        }
    }
}

impl Deliver for HttpSink {
    fn deliver(&mut self, records: &[Arc<Record>]) -> Result<Vec<Outcome>, RequestError> {
        if !self.single {
            let mut body =
                Vec::with_capacity(records.iter().map(|r| r.doc.len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, r) in records.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&r.doc);
            }
            body.push(b']');
            let outcome = self.send(body).map_err(RequestError)?;
            return Ok(vec![outcome; records.len()]);
        }
        let mut outcomes = Vec::with_capacity(records.len());
        for rec in records {
            let body = match self.body_of(rec) {
                Ok(body) => body,
                Err(why) => {
                    outcomes.push(Outcome::Reject(why));
                    continue;
                }
            };
            match self.send(body) {
                Ok(outcome) => outcomes.push(outcome),
                // Nothing sent yet: the request as a whole failed.
                Err(e) if outcomes.is_empty() => return Err(RequestError(e)),
                // The endpoint is failing: do not try the rest now, the driver retries them
                // after a pause.
                Err(e) => {
                    outcomes.resize(records.len(), Outcome::Retry(e));
                    break;
                }
            }
        }
        Ok(outcomes)
    }
}

/// A Slack message for `rec`: a short `text` (the notification) and `blocks` with the level,
/// rule, message and the who/where fields. User-controlled text is escaped (`&`, `<`, `>`), so
/// an event cannot inject links or `@channel` mentions.
pub fn slack_message(rec: &Record) -> serde_json::Value {
    let s = Summary::of(&rec.doc);
    let (label, emoji) = match (rec.flow, rec.level) {
        (Flow::Events, _) => ("EVENT", ":information_source:"),
        (Flow::Alerts, Some(Level::Critical)) => ("CRITICAL", ":rotating_light:"),
        (Flow::Alerts, Some(Level::High)) => ("HIGH", ":red_circle:"),
        (Flow::Alerts, Some(Level::Medium)) => ("MEDIUM", ":large_orange_circle:"),
        (Flow::Alerts, Some(Level::Low)) => ("LOW", ":large_yellow_circle:"),
        (Flow::Alerts, Some(Level::Informational) | None) => ("INFO", ":information_source:"),
    };
    let title = match (&rec.flow, &rec.rule) {
        (Flow::Alerts, Some((_, title))) => title.clone(),
        _ => s.event_name(),
    };
    let title = slack_escape(&truncate_chars(&title, 150));
    let message = s
        .message
        .as_deref()
        .map(|m| slack_escape(&truncate_chars(m, 500)));
    let text = match &message {
        Some(m) => format!("[{label}] {title}: {m}"),
        None => format!("[{label}] {title}"),
    };
    let mut headline = format!("{emoji} *{label}* {title}");
    if let Some(m) = &message {
        headline.push('\n');
        headline.push_str(m);
    }
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": headline}})];
    let fields: Vec<serde_json::Value> = [
        ("User", s.user.name.clone()),
        ("Source IP", s.source.ip.clone()),
        ("Namespace", s.orchestrator.namespace.clone()),
        ("Resource", s.resource()),
    ]
    .into_iter()
    .filter_map(|(k, v)| {
        let v = slack_escape(&truncate_chars(&v?, 200));
        Some(json!({"type": "mrkdwn", "text": format!("*{k}*\n{v}")}))
    })
    .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    let mut context = Vec::new();
    if let (Flow::Alerts, Some((id, _))) = (&rec.flow, &rec.rule) {
        context.push(format!("rule {}", slack_escape(&truncate_chars(id, 100))));
    }
    if let Some(c) = &s.orchestrator.cluster.name {
        context.push(format!("cluster {}", slack_escape(&truncate_chars(c, 100))));
    }
    context.push(
        rec.time_or_now()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": context.join(" · ")}],
    }));
    json!({"text": text, "blocks": blocks})
}

/// Escapes the three characters Slack's message formatting gives meaning to.
fn slack_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> HttpSinkConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn slack_text_is_escaped_and_short() {
        assert_eq!(
            slack_escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let c = cfg("url: https://hooks.example/services/T0/B0/SECRETPATH\ntoken: s3cret-token\nheaders:\n  X-Key: hidden-value\nusername: u\npassword: hunter2\n");
        let d = format!("{c:?}");
        for secret in ["SECRETPATH", "s3cret-token", "hidden-value", "hunter2"] {
            assert!(!d.contains(secret), "{d}");
        }
        // The URL is a secret as a whole (a Slack webhook's path is its credential); header
        // names show, their values do not.
        assert!(
            d.contains("url: <redacted>") && d.contains("\"X-Key\": <redacted>"),
            "{d}"
        );
    }

    #[test]
    fn bad_settings_are_reported_without_secrets() {
        let err = |y: &str| match HttpSink::new("h", &cfg(y)) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted {y}"),
        };
        assert!(err("url: ftp://x/y\n").contains("scheme `ftp`"));
        assert!(err("url: http://x/\ntls: {}\n").contains("`tls` is set"));
        assert!(err("url: http://x/\ntemplate: slack\nmode: batch\n").contains("mode: single"));
        assert!(err("url: http://x/\ntemplate: falco\nmode: batch\n")
            .contains("`template: falco` sends one message per request: use `mode: single`"));
        assert!(err("url: http://x/\ntoken: t\nusername: u\n").contains("not both"));
        assert!(err("url: http://x/\npassword: p\n").contains("needs `username`"));
        let e = err("url: http://x/\nheaders:\n  X-A: \"bad\\nSECRET\"\n");
        assert!(e.contains("headers.X-A") && !e.contains("SECRET"), "{e}");
        assert!(
            err("url: http://x/\ntoken: t\nheaders:\n  Authorization: x\n")
                .contains("Authorization")
        );
        assert!(serde_yaml::from_str::<HttpSinkConfig>("url: http://x/\nmethod: PUT\n").is_err());
    }

    #[test]
    fn keys_parse_inside_the_sinks_list() {
        let kind = crate::sink::tests::first_sink(
            "sinks:\n  - type: http\n    url: https://hooks.slack.com/services/x\n    template: slack\n    headers:\n      X-Key: ${K}\n    timeout: 3s\n",
            &|_| Some("v".to_string()),
        );
        let crate::sink::SinkKind::Http(h) = kind else {
            panic!("{kind:?}");
        };
        assert_eq!(h.template, HttpTemplate::Slack);
        assert_eq!(h.headers.get("X-Key").map(Secret::expose), Some("v"));
        assert_eq!(h.timeout.0, Duration::from_secs(3));
    }
}
