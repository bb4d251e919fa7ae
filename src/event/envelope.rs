//! Cloud log envelopes: the ways managed clusters deliver the API server's audit log, unwrapped
//! into audit events. [`decode_other`] runs only for a JSON value that did not decode as an
//! `Event` or `EventList`, so plain events never pay for it.
//!
//! Recognised, by their distinctive members:
//! - **EKS, CloudWatch Logs.**
//!   - An exported log event: the audit event's JSON text in `message` (or `@message`), as
//!     `aws logs filter-log-events`, `get-log-events` and Logs Insights write it; also their whole
//!     answer, `{"events": [...]}`.
//!   - A subscription filter payload, `{"messageType": "DATA_MESSAGE", "logGroup", "logStream",
//!     "logEvents": [{"id", "timestamp", "message"}]}`: as JSON, as gzip+base64 (a line or JSON
//!     string starting with `H4sI`, as Kinesis delivers it, or Lambda's
//!     `{"awslogs": {"data": ...}}`), or several payloads back to back on one line (Firehose).
//!     `CONTROL_MESSAGE` payloads (CloudWatch checking that the destination is reachable) hold no
//!     log events and are skipped without a report.
//!   - Log events of the cluster's other control-plane streams (`kube-apiserver-`,
//!     `authenticator-`, `kube-controller-manager-`, ...: the same log group) are not audit
//!     events: they are skipped and reported once per envelope as `not_an_event`.
//! - **AKS diagnostic records** (Event Hub, storage): `{"records": [...]}` or one record, each
//!   `{"category": "kube-audit" | "kube-audit-admin", "properties": {"log": <event>}}`, `log` a
//!   JSON string or an object. Records of other categories are skipped and reported once per
//!   envelope. AKS replaces a body too big to log by the string `skipped-too-big-size-object`;
//!   such an event decodes, and rules on fields inside that body do not match
//!   ([`Event::body_omitted`](super::Event::body_omitted)).
//! - **GKE Cloud Logging entries** (experimental): `{"protoPayload": {"@type":
//!   ".../google.cloud.audit.AuditLog", ...}}`, mapped to an audit event by [`super::gke`].
//! - **tripline's own events-flow documents** (`event.kind: "event"`, as a tripline `kafka` or
//!   other sink writes the `events` flow): the redacted audit event under `kubernetes.audit`,
//!   the cluster name stamped by the instance that wrote it in `orchestrator.cluster.name`. The
//!   event is taken out with that cluster name ([`Event::cluster`](super::Event::cluster)): a
//!   detection tier reading a first tier's events topic keeps every cluster's state apart. An
//!   alert document (`event.kind: "alert"`) is not an event and is reported as such.
//! - A JSON array of any of these, or of events (`gcloud logging read --format=json`).
//!
//! Any other object is `not_an_event`, with a message naming its keys.

use std::borrow::Cow;
use std::io::Read;

use base64::Engine as _;

use super::decode::{
    check_event, decode_at, decode_event, DecodeFn, SkipReason, DEFAULT_MAX_LINE_BYTES,
};
use super::json::{JsonError, Scanner};
use super::Event;

/// How many envelopes deep a value is looked for (base64, Lambda's `awslogs`, a payload, a log
/// event and an array add up to five). Bounds recursion and nested buffers.
const MAX_DEPTH: u8 = 6;

/// Limit on an inflated gzip+base64 payload. CloudWatch Logs sends at most about 1 MB.
const MAX_INFLATED_BYTES: usize = DEFAULT_MAX_LINE_BYTES;

/// Keys named in the message about an unknown object.
const KEYS_SHOWN: usize = 8;

const KNOWN: &str = "not an audit Event, EventList, a known cloud envelope (EKS, AKS, GKE) or a tripline events-flow document";

/// Called with a value that did not decode as an event, and the error it got; `no_event_fields`
/// when it is an object that lacks `kind`, `verb` and `auditID`. Unwraps the envelope it is and
/// decodes what it holds; otherwise reports the error (with the object's keys when it had no
/// event fields). Returns the number of events passed to `f`.
#[cold]
pub(super) fn decode_other(
    text: &str,
    err: (SkipReason, String),
    no_event_fields: bool,
    f: &mut DecodeFn<'_>,
    depth: u8,
) -> usize {
    if depth < MAX_DEPTH {
        match err.0 {
            SkipReason::MalformedJson => {
                if is_base64_gzip(text) {
                    return base64_gzip(text, f, depth);
                }
                if let Some(n) = concatenated_payloads(text, f, depth) {
                    return n;
                }
            }
            SkipReason::NotAnEvent => match top_level(text) {
                Some(Top::Object(m)) => {
                    if let Some(n) = m.unwrap(text, f, depth) {
                        return n;
                    }
                    if no_event_fields && !m.event_member {
                        f(Err((SkipReason::NotAnEvent, m.describe())));
                        return 0;
                    }
                }
                Some(Top::Array(items)) => {
                    let mut n = 0;
                    for (i, item) in items.iter().enumerate() {
                        n += nested(item, f, depth, &|| format!("array item {i}"));
                    }
                    return n;
                }
                Some(Top::String(s)) if is_base64_gzip(&s) => return base64_gzip(&s, f, depth),
                _ => {}
            },
            _ => {}
        }
    }
    f(Err(err));
    0
}

/// Decodes `text` found inside an envelope, prefixing error messages with `context()`.
fn nested(text: &str, f: &mut DecodeFn<'_>, depth: u8, context: &dyn Fn() -> String) -> usize {
    decode_at(
        text,
        &mut |d| f(d.map_err(|(r, m)| (r, format!("{}: {m}", context())))),
        depth + 1,
    )
}

/// What a JSON text is at its top level, as far as envelopes go.
enum Top<'t> {
    /// Boxed: an envelope is rare, and the members are many.
    Object(Box<Members<'t>>),
    /// The items (raw JSON text) of an array whose first item is an object.
    Array(Vec<&'t str>),
    String(Cow<'t, str>),
}

fn top_level(text: &str) -> Option<Top<'_>> {
    let mut s = Scanner::new(text);
    let top = match s.peek()? {
        b'{' => Top::Object(Box::new(members(text)?)),
        b'[' => {
            let items = array_items(text).ok()?;
            if !items.first().is_some_and(|i| i.starts_with('{')) {
                return None;
            }
            Top::Array(items)
        }
        b'"' => {
            let v = s.string().ok()?;
            s.end().ok()?;
            Top::String(v)
        }
        _ => return None,
    };
    Some(top)
}

/// The members of an object that tell which envelope it is, as raw JSON text (the last of
/// duplicates wins), and the first keys, for the message about an unknown object.
#[derive(Default)]
struct Members<'t> {
    proto_payload: Option<&'t str>,
    message_type: Option<&'t str>,
    log_events: Option<&'t str>,
    log_group: Option<&'t str>,
    /// `logStream` of a subscription payload, `logStreamName` of an exported log event.
    log_stream: Option<&'t str>,
    /// `message`, or `@message` of Logs Insights.
    message: Option<&'t str>,
    events: Option<&'t str>,
    awslogs: Option<&'t str>,
    records: Option<&'t str>,
    category: Option<&'t str>,
    properties: Option<&'t str>,
    /// `kubernetes`, `event` and `orchestrator` of an ECS document tripline wrote.
    kubernetes: Option<&'t str>,
    ecs_event: Option<&'t str>,
    orchestrator: Option<&'t str>,
    /// A member only an audit event has: the object is an event with a bad member, not an
    /// envelope.
    event_member: bool,
    keys: Vec<String>,
    more_keys: usize,
}

/// The members of the JSON object `text`, or `None` if it is not one.
fn members(text: &str) -> Option<Members<'_>> {
    let mut m = Members::default();
    let mut s = Scanner::new(text);
    s.object("", |s: &mut Scanner<'_>, key: &str| {
        let v = s.skip_value()?;
        let mut other = None;
        let slot = match key {
            "protoPayload" => &mut m.proto_payload,
            "messageType" => &mut m.message_type,
            "logEvents" => &mut m.log_events,
            "logGroup" => &mut m.log_group,
            "logStream" | "logStreamName" => &mut m.log_stream,
            "message" | "@message" => &mut m.message,
            "events" => &mut m.events,
            "awslogs" => &mut m.awslogs,
            "records" => &mut m.records,
            "category" => &mut m.category,
            "properties" => &mut m.properties,
            "kubernetes" => &mut m.kubernetes,
            "event" => &mut m.ecs_event,
            "orchestrator" => &mut m.orchestrator,
            "kind" | "verb" | "auditID" | "requestURI" | "objectRef" | "user" | "stage" => {
                m.event_member = true;
                &mut other
            }
            _ => &mut other,
        };
        *slot = Some(v);
        if m.keys.len() < KEYS_SHOWN {
            m.keys.push(key.chars().take(64).collect());
        } else {
            m.more_keys += 1;
        }
        Ok(())
    })
    .ok()?;
    s.end().ok()?;
    Some(m)
}

impl Members<'_> {
    /// Unwraps the envelope these members identify; `None` if they identify none.
    fn unwrap(&self, text: &str, f: &mut DecodeFn<'_>, depth: u8) -> Option<usize> {
        // Before the test for event members: an ECS document has a top-level `user` too.
        if let (Some(kubernetes), Some(event)) = (self.kubernetes, self.ecs_event) {
            if let Some(n) = tripline_document(kubernetes, event, self.orchestrator, f) {
                return Some(n);
            }
        }
        if self.event_member {
            return None;
        }
        if self.proto_payload.is_some() {
            return Some(gke_entry(text, f, depth));
        }
        if self.log_events.is_some() || self.message_type.is_some() {
            return Some(subscription(self, f, depth));
        }
        if let Some(records) = self.records {
            return Some(aks_records(records, f, depth));
        }
        if self.category.is_some() && self.properties.is_some() {
            let mut skipped = Skipped::default();
            let n = aks_record(self, "AKS diagnostic record", f, depth, &mut skipped);
            skipped.report("AKS diagnostic record", f);
            return Some(n);
        }
        if let Some(data) = self
            .awslogs
            .and_then(|a| member(a, "data"))
            .and_then(string)
        {
            if is_base64_gzip(&data) {
                return Some(base64_gzip(&data, f, depth));
            }
        }
        if let Some(events) = self.events.and_then(|e| array_items(e).ok()) {
            return Some(cloudwatch_events(
                &events,
                None,
                "CloudWatch Logs events",
                f,
                depth,
            ));
        }
        // A `message` that holds JSON, or comes with a log stream: not any object with a message.
        let message = self.message.and_then(inner_json)?;
        if message.trim_start().starts_with(['{', '[']) || self.log_stream.is_some() {
            let mut skipped = Skipped::default();
            let what = "CloudWatch Logs event";
            let n = cloudwatch_event(self, Some(message), None, what, f, depth, &mut skipped);
            skipped.report("CloudWatch Logs event", f);
            return Some(n);
        }
        None
    }

    /// The message about an object that is nothing tripline knows.
    fn describe(&self) -> String {
        if self.keys.is_empty() {
            return format!("empty object: {KNOWN}");
        }
        let mut keys = self
            .keys
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ");
        if self.more_keys > 0 {
            keys.push_str(&format!(" and {} more", self.more_keys));
        }
        format!("object with keys {keys}: {KNOWN}")
    }
}

/// The raw JSON text of member `key` of the object `obj`.
fn member<'t>(obj: &'t str, key: &str) -> Option<&'t str> {
    let mut found = None;
    Scanner::new(obj)
        .object("", |s: &mut Scanner<'t>, k: &str| {
            let v = s.skip_value()?;
            if k == key {
                found = Some(v);
            }
            Ok(())
        })
        .ok()?;
    found
}

/// The value of a raw JSON string.
fn string(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.starts_with('"') {
        return None;
    }
    Scanner::new(raw).string().ok()
}

/// A member that holds an event (or another envelope): as a JSON string holding its text, or as
/// the object itself.
fn inner_json(raw: &str) -> Option<Cow<'_, str>> {
    match raw.as_bytes().first() {
        Some(b'"') => string(raw),
        Some(b'{') => Some(Cow::Borrowed(raw)),
        _ => None,
    }
}

fn array_items(raw: &str) -> Result<Vec<&str>, JsonError> {
    let mut items = Vec::new();
    let mut s = Scanner::new(raw);
    s.array("", |s: &mut Scanner<'_>| {
        items.push(s.skip_value()?);
        Ok(())
    })?;
    s.end()?;
    Ok(items)
}

/// Log events or records left out because their stream or category is not the audit log,
/// reported once per envelope (a dead letter per log event would repeat the whole envelope).
#[derive(Default)]
struct Skipped {
    count: usize,
    first: String,
}

impl Skipped {
    fn add(&mut self, what: &str) {
        if self.count == 0 {
            self.first = what.chars().take(128).collect();
        }
        self.count += 1;
    }

    fn report(&self, envelope: &str, f: &mut DecodeFn<'_>) {
        if self.count > 0 {
            f(Err((
                SkipReason::NotAnEvent,
                format!(
                    "{envelope}: {} not from the audit log skipped ({}{})",
                    plural(self.count, "entry", "entries"),
                    self.first,
                    if self.count > 1 { ", ..." } else { "" }
                ),
            )));
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

// --- tripline's own events flow ---

/// A document tripline wrote (members `kubernetes`, `event` and `orchestrator`, raw JSON): the
/// audit event of an events-flow document, passed to `f` with the cluster name the document
/// carries. `None` when the members are not those of a tripline document (no `event.kind` of
/// `event` or `alert`, or no `kubernetes.audit`): the object is then looked at as other
/// envelopes are.
///
/// The event is decoded as one event, never as a list or another envelope: tripline writes one
/// audit event per document, and a document is not a way to smuggle envelopes in.
fn tripline_document(
    kubernetes: &str,
    event: &str,
    orchestrator: Option<&str>,
    f: &mut DecodeFn<'_>,
) -> Option<usize> {
    let audit = member(kubernetes, "audit")?;
    let kind = member(event, "kind").and_then(string)?;
    match &*kind {
        "event" => {}
        "alert" => {
            f(Err((
                SkipReason::NotAnEvent,
                "a tripline alert document (`event.kind: alert`), not an events-flow document: \
                 alerts are not read back as audit events"
                    .to_string(),
            )));
            return Some(0);
        }
        _ => return None,
    }
    if !audit.starts_with('{') {
        // A document written for an event that could not be redacted holds `null`.
        f(Err((
            SkipReason::NotAnEvent,
            "tripline events-flow document: `kubernetes.audit` holds no audit event".to_string(),
        )));
        return Some(0);
    }
    let cluster = orchestrator
        .and_then(|o| member(o, "cluster"))
        .and_then(|c| member(c, "name"))
        .and_then(string)
        .filter(|c| !c.is_empty());
    let mut ev = Event::default();
    match decode_event(audit, &mut ev).and_then(|()| check_event(&ev)) {
        Ok(()) => {
            ev.cluster = cluster;
            f(Ok(&ev));
            Some(1)
        }
        Err((reason, msg)) => {
            f(Err((
                reason,
                format!("tripline events-flow document `kubernetes.audit`: {msg}"),
            )));
            Some(0)
        }
    }
}

// --- EKS: CloudWatch Logs ---

/// Streams of an EKS cluster's log group that are not the audit log.
const EKS_OTHER_STREAMS: &[&str] = &[
    "kube-apiserver-",
    "authenticator-",
    "kube-controller-manager-",
    "kube-scheduler-",
    "cloud-controller-manager-",
];

/// True for an EKS control-plane stream other than `kube-apiserver-audit-*`. Streams with other
/// names (audit logs shipped to CloudWatch by other means) are decoded.
fn is_other_eks_stream(stream: &str) -> bool {
    !stream.starts_with("kube-apiserver-audit")
        && EKS_OTHER_STREAMS.iter().any(|p| stream.starts_with(p))
}

/// One CloudWatch Logs log event (members `m`, `message` unescaped): decodes its `message`.
fn cloudwatch_event(
    m: &Members<'_>,
    message: Option<Cow<'_, str>>,
    payload_stream: Option<&str>,
    what: &str,
    f: &mut DecodeFn<'_>,
    depth: u8,
    skipped: &mut Skipped,
) -> usize {
    let stream = m.log_stream.and_then(string);
    if let Some(s) = stream.as_deref().or(payload_stream) {
        if is_other_eks_stream(s) {
            skipped.add(&format!("log stream `{s}`"));
            return 0;
        }
    }
    match message {
        Some(msg) => nested(&msg, f, depth, &|| format!("{what} `message`")),
        None => {
            f(Err((
                SkipReason::NotAnEvent,
                format!("{what}: no `message` holding an audit event"),
            )));
            0
        }
    }
}

/// The log events of a subscription payload (`logEvents`) or of an API answer (`events`).
fn cloudwatch_events(
    items: &[&str],
    payload_stream: Option<&str>,
    what: &str,
    f: &mut DecodeFn<'_>,
    depth: u8,
) -> usize {
    let mut n = 0;
    let mut skipped = Skipped::default();
    for (i, item) in items.iter().enumerate() {
        let what = format!("{what}[{i}]");
        match members(item) {
            Some(m) => {
                let message = m.message.and_then(inner_json);
                n += cloudwatch_event(&m, message, payload_stream, &what, f, depth, &mut skipped)
            }
            None => f(Err((
                SkipReason::NotAnEvent,
                format!("{what}: not a log event object"),
            ))),
        }
    }
    skipped.report(what, f);
    n
}

/// A CloudWatch Logs subscription filter payload.
fn subscription(m: &Members<'_>, f: &mut DecodeFn<'_>, depth: u8) -> usize {
    const WHAT: &str = "CloudWatch Logs subscription payload";
    match m.message_type.and_then(string).as_deref() {
        Some("DATA_MESSAGE") | None => {}
        // CloudWatch checking that the destination is reachable: no log events, not bad input.
        Some("CONTROL_MESSAGE") => return 0,
        Some(other) => {
            f(Err((
                SkipReason::NotAnEvent,
                format!(
                    "{WHAT} with messageType `{other}`, \
                     expected `DATA_MESSAGE` or `CONTROL_MESSAGE`"
                ),
            )));
            return 0;
        }
    }
    let items = match m.log_events.map(array_items) {
        Some(Ok(items)) => items,
        _ => {
            f(Err((
                SkipReason::NotAnEvent,
                format!("{WHAT} without a `logEvents` array"),
            )));
            return 0;
        }
    };
    let stream = m.log_stream.and_then(string);
    let group = m.log_group.and_then(string);
    let what = match (&group, &stream) {
        (Some(g), Some(s)) => format!("{WHAT} ({g}, {s}) logEvents"),
        _ => format!("{WHAT} logEvents"),
    };
    cloudwatch_events(&items, stream.as_deref(), &what, f, depth)
}

/// Several subscription payloads back to back on one line, as Firehose writes them to S3 without
/// a delimiter. `None` if `text` is not that.
fn concatenated_payloads(text: &str, f: &mut DecodeFn<'_>, depth: u8) -> Option<usize> {
    if !text.starts_with('{') {
        return None;
    }
    let mut s = Scanner::new(text);
    let first = s.skip_value().ok()?;
    // Only subscription payloads come this way.
    members(first)?.message_type?;
    let mut values = vec![first];
    while s.peek().is_some() {
        values.push(s.skip_value().ok()?);
    }
    let mut n = 0;
    for (i, v) in values.iter().enumerate() {
        n += nested(v, f, depth, &|| format!("concatenated payload {i}"));
    }
    Some(n)
}

/// A line (or JSON string) that is base64 of gzip data: `H4sI` encodes the gzip magic bytes.
fn is_base64_gzip(s: &str) -> bool {
    s.starts_with("H4sI")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\r' | b'\n'))
}

/// Inflates base64 gzip data (at most [`MAX_INFLATED_BYTES`]) and decodes what it holds.
fn base64_gzip(s: &str, f: &mut DecodeFn<'_>, depth: u8) -> usize {
    match inflate_base64(s) {
        Ok(text) => nested(&text, f, depth, &|| "base64 gzip payload".into()),
        Err(e) => {
            f(Err(e));
            0
        }
    }
}

fn inflate_base64(s: &str) -> Result<String, (SkipReason, String)> {
    const WHAT: &str = "base64 gzip payload";
    // Padding is optional, as in the ways these payloads get copied around.
    const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let s: Cow<'_, str> = if s.contains(['\r', '\n']) {
        Cow::Owned(s.chars().filter(|c| !matches!(c, '\r' | '\n')).collect())
    } else {
        Cow::Borrowed(s)
    };
    let gz = BASE64
        .decode(s.as_bytes())
        .map_err(|e| (SkipReason::MalformedJson, format!("{WHAT}: {e}")))?;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(&gz[..])
        .take(MAX_INFLATED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| (SkipReason::Unreadable, format!("{WHAT}: {e}")))?;
    if out.len() > MAX_INFLATED_BYTES {
        return Err((
            SkipReason::TooLong,
            format!("{WHAT} inflates to more than {MAX_INFLATED_BYTES} bytes"),
        ));
    }
    String::from_utf8(out).map_err(|e| {
        (
            SkipReason::InvalidUtf8,
            format!("{WHAT}: {}", e.utf8_error()),
        )
    })
}

// --- AKS: diagnostic records ---

/// Categories of AKS diagnostic records that hold audit events.
const AKS_AUDIT_CATEGORIES: &[&str] = &["kube-audit", "kube-audit-admin"];

/// `{"records": [...]}`, as Azure Monitor sends diagnostic logs to an Event Hub.
fn aks_records(records: &str, f: &mut DecodeFn<'_>, depth: u8) -> usize {
    const WHAT: &str = "AKS diagnostic records";
    let Ok(items) = array_items(records) else {
        f(Err((
            SkipReason::NotAnEvent,
            format!("{WHAT}: `records` is not an array"),
        )));
        return 0;
    };
    let mut n = 0;
    let mut skipped = Skipped::default();
    for (i, item) in items.iter().enumerate() {
        let what = format!("{WHAT}[{i}]");
        match members(item) {
            Some(m) => n += aks_record(&m, &what, f, depth, &mut skipped),
            None => f(Err((
                SkipReason::NotAnEvent,
                format!("{what}: not an object"),
            ))),
        }
    }
    skipped.report(WHAT, f);
    n
}

/// One diagnostic record: decodes `properties.log` if the category is an audit one.
fn aks_record(
    m: &Members<'_>,
    what: &str,
    f: &mut DecodeFn<'_>,
    depth: u8,
    skipped: &mut Skipped,
) -> usize {
    if let Some(c) = m.category.and_then(string) {
        if !AKS_AUDIT_CATEGORIES.contains(&&*c) {
            skipped.add(&format!("category `{c}`"));
            return 0;
        }
    }
    // `properties` is an object; some Azure services write it as a JSON string.
    let properties = m.properties.and_then(inner_json);
    let log = properties
        .as_deref()
        .and_then(|p| member(p, "log"))
        .and_then(inner_json);
    match log {
        Some(log) => nested(&log, f, depth, &|| format!("{what} `properties.log`")),
        None => {
            f(Err((
                SkipReason::NotAnEvent,
                format!("{what}: no `properties.log` holding an audit event"),
            )));
            0
        }
    }
}

// --- GKE: Cloud Logging entries ---

fn gke_entry(text: &str, f: &mut DecodeFn<'_>, depth: u8) -> usize {
    match super::gke::entry_to_event(text) {
        Ok(event) => nested(&event, f, depth, &|| "GKE log entry".into()),
        Err(msg) => {
            f(Err((
                SkipReason::NotAnEvent,
                format!("GKE log entry: {msg}"),
            )));
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use base64::Engine as _;
    use serde_json::{json, Value};

    use crate::event::{decode_value_into, SkipReason};
    use crate::rules::{RuleSet, RulesConfig};

    const SECRET_GET: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5a1c2d3e-0001-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets/db","verb":"get","user":{"username":"alice@example.com","groups":["system:authenticated"]},"sourceIPs":["198.51.100.4"],"userAgent":"kubectl/v1.29.0","objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.010000Z"}"#;
    const POD_LIST: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"5a1c2d3e-0002-4000-8000-000000000002","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"bob@example.com","groups":["system:authenticated"]},"sourceIPs":["198.51.100.5"],"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"stageTimestamp":"2026-03-01T10:00:01.000000Z"}"#;

    /// Decodes `text`: the raw text of each event, and each skip.
    fn decode(text: &str) -> (Vec<String>, Vec<(SkipReason, String)>) {
        let (mut events, mut errors) = (Vec::new(), Vec::new());
        let n = decode_value_into(text, &mut |d| match d {
            Ok(ev) => events.push(ev.raw().to_string()),
            Err(e) => errors.push(e),
        });
        assert_eq!(n, events.len());
        (events, errors)
    }

    fn json_string(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    fn gzip_base64(text: &str) -> String {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    }

    fn subscription_payload(stream: &str, events: &[&str]) -> String {
        let log_events: Vec<Value> = events
            .iter()
            .enumerate()
            .map(|(i, e)| json!({"id": format!("3799{i:052}"), "timestamp": 1772359200000u64 + i as u64, "message": e}))
            .collect();
        json!({
            "messageType": "DATA_MESSAGE",
            "owner": "111122223333",
            "logGroup": "/aws/eks/prod-eu/cluster",
            "logStream": stream,
            "subscriptionFilters": ["tripline"],
            "logEvents": log_events,
        })
        .to_string()
    }

    #[test]
    fn eks_exported_log_events_hold_the_event_in_message() {
        let line = format!(
            r#"{{"timestamp":1772359200000,"message":{},"logStreamName":"kube-apiserver-audit-0f1e2d3c4b5a69788796a5b4c3d2e1f0","ingestionTime":1772359201234,"eventId":"37990000000000000000000000000000000000000000000000000000"}}"#,
            json_string(SECRET_GET)
        );
        let (events, errors) = decode(&line);
        assert!(errors.is_empty(), "{errors:?}");
        // The unwrapped event's raw text is the inner event: what the daemon hashes and indexes.
        assert_eq!(events, [SECRET_GET]);

        // Logs Insights names its fields with `@`.
        let insights = format!(
            r#"{{"@timestamp":"2026-03-01 10:00:00.000","@message":{},"@logStream":"kube-apiserver-audit-0f1e"}}"#,
            json_string(POD_LIST)
        );
        assert_eq!(decode(&insights).0, [POD_LIST]);

        // The whole answer of `aws logs filter-log-events`, and a message that is an object.
        let answer = format!(
            r#"{{"events":[{{"logStreamName":"kube-apiserver-audit-a","timestamp":1,"message":{}}},{{"logStreamName":"kube-apiserver-audit-a","timestamp":2,"message":{}}}],"searchedLogStreams":[]}}"#,
            json_string(SECRET_GET),
            POD_LIST
        );
        assert_eq!(decode(&answer).0, [SECRET_GET, POD_LIST]);
    }

    #[test]
    fn eks_subscription_payloads_are_read_as_json_and_as_gzip_base64() {
        let payload = subscription_payload(
            "kube-apiserver-audit-0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            &[SECRET_GET, POD_LIST],
        );
        let b64 = gzip_base64(&payload);
        assert!(b64.starts_with("H4sI"));
        let forms = [
            ("JSON", payload.clone()),
            ("a base64 line (Kinesis record data)", b64.clone()),
            ("a JSON string", json_string(&b64)),
            ("unpadded", b64.trim_end_matches('=').to_string()),
            (
                "Lambda's event",
                json!({"awslogs": {"data": b64}}).to_string(),
            ),
        ];
        for (what, text) in forms {
            let (events, errors) = decode(&text);
            assert!(errors.is_empty(), "{what}: {errors:?}");
            assert_eq!(events, [SECRET_GET, POD_LIST], "{what}");
        }
        // Firehose writes payloads back to back, without a delimiter.
        let (events, errors) = decode(&format!("{payload}{payload}"));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(events.len(), 4);
    }

    #[test]
    fn control_messages_are_skipped_without_a_report() {
        let control = json!({
            "messageType": "CONTROL_MESSAGE",
            "owner": "CloudwatchLogs",
            "logGroup": "",
            "logStream": "",
            "subscriptionFilters": [],
            "logEvents": [{"id": "", "timestamp": 1772359200000u64, "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}],
        })
        .to_string();
        for text in [control.clone(), gzip_base64(&control)] {
            assert_eq!(decode(&text), (vec![], vec![]));
        }
    }

    #[test]
    fn other_eks_control_plane_streams_are_reported_once_per_payload() {
        let klog = "I0301 10:00:00.000000      10 controller.go:42] synced";
        let payload = subscription_payload("authenticator-0f1e2d3c", &[klog, klog, klog]);
        let (events, errors) = decode(&payload);
        assert!(events.is_empty());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, SkipReason::NotAnEvent);
        assert!(
            errors[0].1.contains(
                "3 entries not from the audit log skipped (log stream `authenticator-0f1e2d3c`"
            ),
            "{}",
            errors[0].1
        );
        // An audit stream whose message is not an event says where it was.
        let payload = subscription_payload(
            "kube-apiserver-audit-1",
            &[SECRET_GET, "{\"kind\":\"Pod\"}"],
        );
        let (events, errors) = decode(&payload);
        assert_eq!(events, [SECRET_GET]);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].1,
            "CloudWatch Logs subscription payload (/aws/eks/prod-eu/cluster, kube-apiserver-audit-1) logEvents[1] `message`: kind is `Pod`, expected `Event` or `EventList`"
        );
    }

    #[test]
    fn broken_gzip_base64_payloads_are_reported_by_reason() {
        let good = gzip_base64(&subscription_payload(
            "kube-apiserver-audit-1",
            &[SECRET_GET],
        ));
        let cases = [
            (
                format!("{}!", &good[..good.len() - 1]),
                SkipReason::MalformedJson,
            ),
            ("H4sI$$$$".to_string(), SkipReason::MalformedJson),
            (
                good[..good.len() / 2].trim_end_matches('=').to_string(),
                SkipReason::Unreadable,
            ),
            (gzip_base64("{\"kind\":\"Event\""), SkipReason::Truncated),
            (gzip_base64("not json"), SkipReason::MalformedJson),
        ];
        for (text, want) in cases {
            let (events, errors) = decode(&text);
            assert!(events.is_empty(), "{text}");
            assert_eq!(errors.len(), 1, "{text}: {errors:?}");
            assert_eq!(errors[0].0, want, "{text}: {errors:?}");
        }
    }

    fn too_big_pod_create() -> String {
        json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
            "auditID": "5a1c2d3e-0003-4000-8000-000000000003", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/default/pods", "verb": "create",
            "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
            "sourceIPs": ["198.51.100.4"],
            "objectRef": {"resource": "pods", "namespace": "default", "name": "big", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 201},
            "requestObject": "skipped-too-big-size-object",
            "responseObject": "skipped-too-big-size-object",
            "stageTimestamp": "2026-03-01T10:00:02.000000Z",
        })
        .to_string()
    }

    #[test]
    fn aks_records_hold_the_event_as_a_string_or_an_object() {
        let big = too_big_pod_create();
        let record = |category: &str, log: Value| {
            json!({
                "time": "2026-03-01T10:00:00.0000000Z",
                "resourceId": "/SUBSCRIPTIONS/0000/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS1",
                "category": category,
                "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
                "properties": {"log": log, "stream": "stdout", "pod": "kube-apiserver-6d8f9b7c4-x2k5p"},
            })
        };
        let hub = json!({"records": [
            record("kube-audit", json!(SECRET_GET)),
            record("kube-audit-admin", serde_json::from_str::<Value>(POD_LIST).unwrap()),
            record("kube-apiserver", json!("I0301 10:00:00.000000 1 controller.go:42] synced")),
            record("kube-audit", json!(big)),
            record("guard", json!("guard log line")),
        ]})
        .to_string();
        let (events, errors) = decode(&hub);
        assert_eq!(events.len(), 3, "{errors:?}");
        assert_eq!(events[0], SECRET_GET);
        assert_eq!(events[2], big);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].1.starts_with("AKS diagnostic records: 2 entries not from the audit log skipped (category `kube-apiserver`"),
            "{}",
            errors[0].1
        );
        // A storage account's blobs hold one record per line, without `records`.
        let line = record("kube-audit", json!(SECRET_GET)).to_string();
        assert_eq!(decode(&line), (vec![SECRET_GET.to_string()], vec![]));
    }

    fn builtin_pack() -> RuleSet {
        let loaded = RulesConfig::default().load(&[], true);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        RuleSet::new(loaded.rules)
    }

    /// The titles of the pack's rules that match each event of `text`, and the skips.
    fn alert_titles(set: &RuleSet, text: &str) -> (Vec<Vec<String>>, Vec<(SkipReason, String)>) {
        let (mut titles, mut errors) = (Vec::new(), Vec::new());
        decode_value_into(text, &mut |d| match d {
            Ok(ev) => {
                let mut hits = Vec::new();
                set.matching_into(ev, &mut hits);
                titles.push(
                    hits.iter()
                        .map(|i| set.rules()[*i].meta.title.clone())
                        .collect(),
                );
            }
            Err(e) => errors.push(e),
        });
        (titles, errors)
    }

    #[test]
    fn an_aks_body_too_big_to_log_decodes_flags_the_event_and_matches_no_body_rule() {
        let big = too_big_pod_create();
        let record = json!({"category": "kube-audit", "properties": {"log": big}}).to_string();
        let mut flagged = Vec::new();
        decode_value_into(&record, &mut |d| flagged.push(d.unwrap().body_omitted()));
        assert_eq!(flagged, [true]);
        decode_value_into(SECRET_GET, &mut |d| assert!(!d.unwrap().body_omitted()));
        let set = builtin_pack();
        let (titles, errors) = alert_titles(&set, &record);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(titles.len(), 1);
        // Alert rendering (redaction, ECS) of such an event works too.
        let mut detector = crate::detect::Detector::new(&set, None);
        decode_value_into(&record, &mut |d| {
            detector.detect(d.unwrap(), &mut |a| assert!(a.to_value().is_object()))
        });
    }

    fn gke_entry(method: &str, resource: &str, user: &str, extra: Value) -> Value {
        let mut e = json!({
            "protoPayload": {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "authenticationInfo": {"principalEmail": user},
                "authorizationInfo": [{"granted": true, "permission": method, "resource": resource}],
                "methodName": method,
                "requestMetadata": {"callerIp": "203.0.113.7", "callerSuppliedUserAgent": "kubectl/v1.29.0 (linux/amd64) kubernetes/4b3c2a1"},
                "resourceName": resource,
                "serviceName": "k8s.io",
                "status": {},
            },
            "insertId": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
            "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "prod-eu", "location": "europe-west1", "project_id": "acme-prod"}},
            "timestamp": "2026-03-01T10:00:00.123456Z",
            "severity": "NOTICE",
            "logName": "projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity",
            "operation": {"id": "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9", "producer": "k8s.io", "first": true, "last": true},
            "receiveTimestamp": "2026-03-01T10:00:01.234567Z",
            "labels": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"ops\" of ClusterRole \"cluster-admin\" to Group \"ops@example.com\""},
        });
        for (k, v) in extra.as_object().unwrap() {
            e["protoPayload"][k] = v.clone();
        }
        e
    }

    fn gke_exec() -> Value {
        gke_entry(
            "io.k8s.core.v1.pods.exec.create",
            "core/v1/namespaces/prod/pods/web-0/exec",
            "mallory@example.com",
            json!({}),
        )
    }

    fn gke_binding() -> Value {
        let crb = json!({
            "@type": "rbac.authorization.k8s.io/v1.ClusterRoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "backdoor"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "mallory@example.com"}],
        });
        gke_entry(
            "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
            "rbac.authorization.k8s.io/v1/clusterrolebindings/backdoor",
            "mallory@example.com",
            json!({"request": crb, "response": crb}),
        )
    }

    fn gke_anonymous() -> Value {
        let mut e = gke_entry(
            "io.k8s.core.v1.pods.list",
            "core/v1/namespaces/default/pods",
            "system:anonymous",
            json!({}),
        );
        e["labels"]["authorization.k8s.io/reason"] =
            json!("RBAC: allowed by ClusterRoleBinding \"legacy\" of ClusterRole \"view\" to Group \"system:unauthenticated\"");
        e
    }

    #[test]
    fn gke_entries_become_audit_events() {
        let (events, errors) = decode(&gke_exec().to_string());
        assert!(errors.is_empty(), "{errors:?}");
        let ev: Value = serde_json::from_str(&events[0]).unwrap();
        let want = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9", "stage": "ResponseStarted",
            "requestURI": "/api/v1/namespaces/prod/pods/web-0/exec", "verb": "create",
            "user": {"username": "mallory@example.com", "groups": ["system:authenticated"]},
            "sourceIPs": ["203.0.113.7"],
            "userAgent": "kubectl/v1.29.0 (linux/amd64) kubernetes/4b3c2a1",
            "objectRef": {"resource": "pods", "namespace": "prod", "name": "web-0", "subresource": "exec", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2026-03-01T10:00:00.123456Z",
            "stageTimestamp": "2026-03-01T10:00:00.123456Z",
            "annotations": {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"ops\" of ClusterRole \"cluster-admin\" to Group \"ops@example.com\"",
            },
        });
        assert_eq!(ev, want);

        let (events, _) = decode(&gke_binding().to_string());
        let ev: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(ev["level"], "RequestResponse");
        assert_eq!(ev["stage"], "ResponseComplete");
        assert_eq!(
            ev["objectRef"],
            json!({"resource": "clusterrolebindings", "name": "backdoor", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"})
        );
        assert_eq!(ev["requestObject"]["roleRef"]["name"], "cluster-admin");
        assert!(ev["requestObject"].get("@type").is_none());

        // A denied request: the gRPC code becomes the HTTP status; the decision comes from
        // `authorizationInfo` when the labels lack it.
        let mut denied = gke_exec();
        denied["protoPayload"]["status"] =
            json!({"code": 7, "message": "pods \"web-0\" is forbidden"});
        denied["protoPayload"]["authorizationInfo"][0]["granted"] = json!(false);
        denied["labels"] = json!({});
        denied["operation"] = json!({"id": "x"});
        let (events, _) = decode(&denied.to_string());
        let ev: Value = serde_json::from_str(&events[0]).unwrap();
        assert_eq!(
            ev["responseStatus"],
            json!({"metadata": {}, "code": 403, "status": "Failure", "reason": "Forbidden", "message": "pods \"web-0\" is forbidden"})
        );
        assert_eq!(ev["stage"], "ResponseComplete");
        assert_eq!(
            ev["annotations"],
            json!({"authorization.k8s.io/decision": "forbid"})
        );
    }

    #[test]
    fn gke_entries_trigger_the_default_pack() {
        let set = builtin_pack();
        let cases = [
            (gke_exec(), "exec or attach into pod"),
            (gke_binding(), "binding to cluster-admin role"),
            (gke_anonymous(), "anonymous access to api resource allowed"),
        ];
        for (entry, want) in &cases {
            let (titles, errors) = alert_titles(&set, &entry.to_string());
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(titles.len(), 1);
            let t = titles[0].join("\n").to_lowercase();
            assert!(t.contains(want), "{want}: got\n{t}");
        }
        // `gcloud logging read --format=json` prints an array of entries.
        let array = Value::Array(cases.iter().map(|(e, _)| e.clone()).collect()).to_string();
        let (titles, errors) = alert_titles(&set, &array);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(titles.len(), 3);
        assert!(titles.iter().all(|t| !t.is_empty()), "{titles:?}");
    }

    #[test]
    fn gke_entries_that_are_not_kubernetes_audit_logs_say_what_they_are() {
        let mut cluster_api = gke_exec();
        cluster_api["protoPayload"]["serviceName"] = json!("container.googleapis.com");
        cluster_api["protoPayload"]["methodName"] =
            json!("google.container.v1.ClusterManager.UpdateCluster");
        let mut other_payload = gke_exec();
        other_payload["protoPayload"]["@type"] =
            json!("type.googleapis.com/google.cloud.audit.Other");
        let cases = [
            (cluster_api, "GKE log entry: service `container.googleapis.com` (method `google.container.v1.ClusterManager.UpdateCluster`) is not the Kubernetes API (`k8s.io`)"),
            (other_payload, "GKE log entry: `protoPayload` is a `type.googleapis.com/google.cloud.audit.Other`, not an AuditLog"),
            (json!({"protoPayload": "x"}), "GKE log entry: `protoPayload` is not an object"),
        ];
        for (entry, want) in cases {
            let (events, errors) = decode(&entry.to_string());
            assert!(events.is_empty());
            assert_eq!(errors, [(SkipReason::NotAnEvent, want.to_string())]);
        }
    }

    #[test]
    fn unknown_objects_are_not_events_and_the_message_names_their_keys() {
        let cases = [
            (
                r#"{"foo":1,"bar":{"kind":"Event"}}"#,
                "object with keys `foo`, `bar`: not an audit Event, EventList, a known cloud envelope (EKS, AKS, GKE) or a tripline events-flow document",
            ),
            (
                r#"{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10}"#,
                "object with keys `a`, `b`, `c`, `d`, `e`, `f`, `g`, `h` and 2 more: not an audit Event, EventList, a known cloud envelope (EKS, AKS, GKE) or a tripline events-flow document",
            ),
            (
                "{}",
                "empty object: not an audit Event, EventList, a known cloud envelope (EKS, AKS, GKE) or a tripline events-flow document",
            ),
            // An envelope's key with the wrong shape is no envelope.
            (
                r#"{"message":42,"awslogs":{"data":"not base64"}}"#,
                "object with keys `message`, `awslogs`: not an audit Event, EventList, a known cloud envelope (EKS, AKS, GKE) or a tripline events-flow document",
            ),
            (
                r#"{"message":"hello","level":"info"}"#,
                "object with keys `message`, `level`: not an audit Event, EventList, a known cloud envelope (EKS, AKS, GKE) or a tripline events-flow document",
            ),
            // Errors about event members keep their message.
            (r#"{"kind":0}"#, "kind must be a string"),
            (r#"{"verb":1,"message":"x"}"#, "verb must be a string"),
            (r#"{"kind":"Pod"}"#, "kind is `Pod`, expected `Event` or `EventList`"),
            (
                r#"{"user":{"username":"x"},"message":"{}"}"#,
                "neither `verb` nor `auditID` is present",
            ),
            (r#"[1,2]"#, "an audit event must be an object"),
            (r#""H4sI not base64""#, "an audit event must be an object"),
        ];
        for (text, want) in cases {
            let (events, errors) = decode(text);
            assert!(events.is_empty(), "{text}");
            assert_eq!(
                errors,
                [(SkipReason::NotAnEvent, want.to_string())],
                "{text}"
            );
        }
        // Inside an envelope, the message says where.
        let (_, errors) = decode(r#"{"message":"{\"foo\":1}"}"#);
        assert_eq!(
            errors,
            [(SkipReason::NotAnEvent, "CloudWatch Logs event `message`: object with keys `foo`: not an audit Event, EventList, a known cloud envelope (EKS, AKS, GKE) or a tripline events-flow document".to_string())]
        );
    }

    #[test]
    fn envelopes_nest_only_so_deep() {
        let mut text = SECRET_GET.to_string();
        for _ in 0..super::MAX_DEPTH {
            text = json!({ "message": text }).to_string();
        }
        assert_eq!(decode(&text).0.len(), 1);
        let text = json!({ "message": text }).to_string();
        let (events, errors) = decode(&text);
        assert!(events.is_empty());
        assert_eq!(errors.len(), 1);
    }

    // --- tripline's own events flow ---

    const SECRET_CREATE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"5a1c2d3e-0003-4000-8000-000000000003","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/secrets","verb":"create","user":{"username":"carol@example.com","groups":["system:authenticated"]},"sourceIPs":["198.51.100.6"],"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"data":{"password":"aHVudGVyMg=="}},"requestReceivedTimestamp":"2026-03-01T10:00:02.000000Z","stageTimestamp":"2026-03-01T10:00:02.010000Z"}"#;

    /// The events-flow document tripline's writer makes of `event`, stamped with `cluster`.
    fn events_flow_document(event: &str, cluster: Option<&str>) -> String {
        let mut doc = None;
        decode_value_into(event, &mut |d| {
            let ev = d.unwrap();
            doc = Some(crate::alert::write_event_document(
                &crate::alert::AlertTemplate::for_events(),
                ev,
                cluster,
            ));
        });
        String::from_utf8(doc.unwrap()).unwrap()
    }

    /// Each event decoded from `text`: its text and cluster.
    fn decode_with_cluster(text: &str) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        decode_value_into(text, &mut |d| {
            let ev = d.unwrap();
            out.push((ev.raw().to_string(), ev.cluster().map(String::from)));
        });
        out
    }

    #[test]
    fn events_flow_document_gives_back_its_audit_event_and_cluster() {
        let doc = events_flow_document(SECRET_GET, Some("prod-eu"));
        let got = decode_with_cluster(&doc);
        assert_eq!(got.len(), 1, "{doc}");
        let (raw, cluster) = &got[0];
        assert_eq!(cluster.as_deref(), Some("prod-eu"));
        // A Metadata event has nothing to redact: the event comes back as it was.
        let back: Value = serde_json::from_str(raw).unwrap();
        let original: Value = serde_json::from_str(SECRET_GET).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn events_flow_document_without_cluster_name_gives_an_event_without_cluster() {
        let doc = events_flow_document(POD_LIST, None);
        let got = decode_with_cluster(&doc);
        assert_eq!(got.len(), 1, "{doc}");
        assert_eq!(got[0].1, None);
        let back: Value = serde_json::from_str(&got[0].0).unwrap();
        assert_eq!(back["user"]["username"], "bob@example.com");
    }

    #[test]
    fn events_flow_document_holds_the_redacted_event_only() {
        let doc = events_flow_document(SECRET_CREATE, Some("prod-us"));
        assert!(!doc.contains("aHVudGVyMg=="), "{doc}");
        let got = decode_with_cluster(&doc);
        assert_eq!(got.len(), 1, "{doc}");
        assert!(!got[0].0.contains("aHVudGVyMg=="), "{}", got[0].0);
        let back: Value = serde_json::from_str(&got[0].0).unwrap();
        assert_eq!(back["verb"], "create");
        assert_eq!(back["objectRef"]["name"], "db");
        assert_eq!(got[0].1.as_deref(), Some("prod-us"));
    }

    #[test]
    fn events_flow_documents_in_an_array_and_as_reduced_documents_decode() {
        let a = events_flow_document(SECRET_GET, Some("a"));
        let b = events_flow_document(POD_LIST, Some("b"));
        let got = decode_with_cluster(&format!("[{a},{b}]"));
        let clusters: Vec<_> = got.iter().map(|(_, c)| c.clone().unwrap()).collect();
        assert_eq!(clusters, ["a", "b"]);

        let mut reduced = None;
        decode_value_into(SECRET_CREATE, &mut |d| {
            reduced = Some(crate::alert::write_reduced_event_document(
                &crate::alert::AlertTemplate::for_events(),
                d.unwrap(),
                Some("c"),
            ));
        });
        let reduced = String::from_utf8(reduced.unwrap()).unwrap();
        let got = decode_with_cluster(&reduced);
        assert_eq!(got.len(), 1, "{reduced}");
        assert!(
            got[0].0.contains(crate::alert::OMITTED_BODY),
            "{}",
            got[0].0
        );
        assert_eq!(got[0].1.as_deref(), Some("c"));
    }

    #[test]
    fn alert_documents_and_empty_events_flow_documents_are_not_events() {
        let doc = events_flow_document(SECRET_GET, Some("prod-eu"));
        let alert = doc.replacen(r#""kind":"event""#, r#""kind":"alert""#, 1);
        assert_ne!(alert, doc);
        let (events, errors) = decode(&alert);
        assert!(events.is_empty());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, SkipReason::NotAnEvent);
        assert!(errors[0].1.contains("alert document"), "{}", errors[0].1);

        let mut v: Value = serde_json::from_str(&doc).unwrap();
        v["kubernetes"]["audit"] = Value::Null;
        let (events, errors) = decode(&v.to_string());
        assert!(events.is_empty());
        assert!(errors[0].1.contains("holds no audit event"), "{:?}", errors);

        v["kubernetes"]["audit"] = json!({"kind": "Pod", "verb": "get"});
        let (events, errors) = decode(&v.to_string());
        assert!(events.is_empty());
        assert!(
            errors[0]
                .1
                .starts_with("tripline events-flow document `kubernetes.audit`: kind is `Pod`"),
            "{:?}",
            errors
        );
    }
}
