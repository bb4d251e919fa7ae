//! Alerts as Elastic Common Schema documents (DESIGN.md principle 6).
//!
//! [`render_alert`] turns a rule match into an ECS 8.11 document: the ECS fields Kibana / Elastic
//! Security, OpenSearch and Splunk users know (`event.*`, `rule.*`, `threat.*`, `user.*`,
//! `source.*`, `orchestrator.*`, ...), tripline's own fields under `tripline.*`, and the whole
//! (already redacted) audit event under `kubernetes.audit`.
//!
//! A derived field is omitted when its source is absent, empty or of the wrong type: the derived
//! fields never contain JSON `null`. `kubernetes.audit` is the event exactly as given (a `null`
//! there is the API server's, e.g. a merge patch removing a key, and is kept as evidence).
//!
//! `auditID` comes from a client header and is not trusted (principle 8): it is not copied into
//! any ECS field such as `event.id`; document ids are the sinks' business.

use std::net::IpAddr;

use smallvec::SmallVec;

use serde_json::{json, Map, Value};

use crate::event::redact::{redacted_event_json, Redacted};
use crate::event::{parse_timestamp, write_json_str, Event};
use crate::rules::model::{Level, RuleMeta};

/// The ECS version the documents follow (`ecs.version`).
pub const ECS_VERSION: &str = "8.11.0";

/// Builds the ECS alert document. `event` is the already-redacted audit event (`serde_json::Value`
/// of the whole event).
///
/// `message` is the rendered rule output (already scrubbed). `suppressed` is the number of matches
/// of this rule+key suppressed by throttling since the previous alert (0 if none).
///
/// Field sources:
///
/// * `@timestamp`: `stageTimestamp`, else `requestReceivedTimestamp`, else the legacy `timestamp`
///   (the first that is a valid RFC 3339 timestamp; omitted if none is, since a malformed date
///   would make Elasticsearch reject the whole document). `event.start`:
///   `requestReceivedTimestamp`.
/// * `event.category` (one value, first match wins):
///   `authentication` when the user is anonymous (`system:anonymous` or group
///   `system:unauthenticated`) or the response is 401; `iam` for `rbac.authorization.k8s.io`
///   resources, `serviceaccounts`, `tokenreviews` and `certificatesigningrequests`; `process` for
///   `pods/exec` and `pods/attach`; `configuration` otherwise.
/// * `event.type` from the verb: `creation` (create), `change` (update, patch), `deletion`
///   (delete, deletecollection), `access` (get, list, watch), `info` otherwise.
/// * `event.outcome` from `responseStatus.code`: `success` below 400, `failure` from 400, `unknown`
///   when there is no (valid, 100..=599) status code.
/// * `source.ip` is the last entry of `sourceIPs`, the address of the peer that connected to the
///   API server; earlier entries come from `X-Forwarded-For` / `X-Real-Ip`, which the client
///   controls. All valid entries go to `related.ip`. Entries that are not IP addresses are skipped
///   (an `ip` field would reject the document).
pub fn render_alert(
    event: &Value,
    rule: &RuleMeta,
    message: &str,
    cluster_name: Option<&str>,
    suppressed: u64,
) -> Value {
    AlertTemplate::new(rule).render(event.clone(), message, cluster_name, suppressed)
}

/// The part of an alert that depends only on the rule (`rule.*`, `threat.*`, severity, ECS
/// constants), built once per rule and reused for each of its alerts, kept both as fields and
/// as the JSON text [`write_document`] splices into each document.
#[derive(Debug, Clone)]
pub struct AlertTemplate {
    fields: Map<String, Value>,
    /// The members of `event`, written (without braces).
    event_members: Vec<u8>,
    /// The members of `tripline`, written (without braces).
    tripline_members: Vec<u8>,
    /// The other top-level members, written (without braces).
    other_members: Vec<u8>,
}

impl AlertTemplate {
    pub fn new(rule: &RuleMeta) -> AlertTemplate {
        let mut doc = Doc::default();
        doc.set("event.kind", "alert");
        level_fields(&mut doc, rule.level);
        doc.set("event.module", "kubernetes");
        doc.set("event.dataset", "kubernetes.audit");
        doc.set("event.provider", "kube-apiserver");
        rule_fields(&mut doc, rule);
        if let Some(threat) = threat_from_tags(&rule.tags) {
            doc.set("threat", threat);
        }
        doc.set("ecs.version", ECS_VERSION);
        AlertTemplate::of(doc.0)
    }

    /// The template of the `events` flow: the same ECS fields as an alert (`@timestamp`,
    /// `user.*`, `source.*`, `event.*`, `kubernetes.audit`) with `event.kind: event` and no rule,
    /// so alerts and events share one index mapping and one set of dashboards.
    pub fn for_events() -> AlertTemplate {
        let mut doc = Doc::default();
        doc.set("event.kind", "event");
        doc.set("event.module", "kubernetes");
        doc.set("event.dataset", "kubernetes.audit");
        doc.set("event.provider", "kube-apiserver");
        doc.set("ecs.version", ECS_VERSION);
        AlertTemplate::of(doc.0)
    }

    fn of(fields: Map<String, Value>) -> AlertTemplate {
        let members = |map: &Map<String, Value>, skip: &[&str]| {
            let mut out = Vec::new();
            for (k, v) in map.iter().filter(|(k, _)| !skip.contains(&k.as_str())) {
                if !out.is_empty() {
                    out.push(b',');
                }
                write_json_str(&mut out, k);
                out.push(b':');
                // Writing a `Value` to a `Vec` cannot fail.
                let _ = serde_json::to_writer(&mut out, v);
            }
            out
        };
        let inner = |key: &str| match fields.get(key) {
            Some(Value::Object(m)) => members(m, &[]),
            _ => Vec::new(),
        };
        AlertTemplate {
            event_members: inner("event"),
            tripline_members: inner("tripline"),
            other_members: members(&fields, &["event", "tripline"]),
            fields,
        }
    }

    /// Adds `host.name`: the node whose API server wrote the event (the daemon's `node_name`).
    pub fn with_host(self, node_name: Option<&str>) -> AlertTemplate {
        match node_name.filter(|n| !n.is_empty()) {
            Some(n) => {
                let mut doc = Doc(self.fields);
                doc.set("host.name", n);
                AlertTemplate::of(doc.0)
            }
            None => self,
        }
    }

    /// Builds the alert for one (redacted) event, taking ownership of it for
    /// `kubernetes.audit`. See [`render_alert`] for the fields.
    pub fn render(
        &self,
        event: Value,
        message: &str,
        cluster_name: Option<&str>,
        suppressed: u64,
    ) -> Value {
        let mut audit = Vec::new();
        // Writing a `Value` to a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut audit, &event);
        let mut doc = Vec::new();
        let part = EventPart {
            fields: &AuditFields::of_value(&event),
            message,
            cluster_name,
            suppressed,
            audit: &audit,
        };
        write_document(&mut doc, self, &part);
        serde_json::from_slice(&doc).unwrap_or_default()
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Room for a whole document around an audit event of `audit` bytes (the event's own ECS
    /// fields take a few hundred).
    fn document_capacity(&self, audit: usize) -> usize {
        audit
            + self.other_members.len()
            + self.event_members.len()
            + self.tripline_members.len()
            + 1024
    }
}

/// The fields of an audit event that ECS fields come from: each a non-empty string (or, for
/// lists, only the non-empty strings).
#[derive(Debug, Default)]
pub struct AuditFields<'a> {
    pub stage_timestamp: Option<&'a str>,
    pub request_received_timestamp: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub verb: Option<&'a str>,
    /// `responseStatus.code`, when it is a plausible HTTP status (100 to 599).
    pub code: Option<u64>,
    pub username: Option<&'a str>,
    pub uid: Option<&'a str>,
    pub groups: SmallVec<[&'a str; 4]>,
    pub impersonated_username: Option<&'a str>,
    pub impersonated_uid: Option<&'a str>,
    pub impersonated_groups: SmallVec<[&'a str; 4]>,
    pub source_ips: SmallVec<[&'a str; 4]>,
    pub user_agent: Option<&'a str>,
    /// Already redacted.
    pub request_uri: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub resource: Option<&'a str>,
    pub subresource: Option<&'a str>,
    pub name: Option<&'a str>,
    pub api_group: Option<&'a str>,
    pub api_version: Option<&'a str>,
}

impl<'a> AuditFields<'a> {
    /// From an event as a `Value` (redacted).
    pub fn of_value(event: &'a Value) -> AuditFields<'a> {
        let s = |path: &[&str]| str_at(event, path);
        AuditFields {
            stage_timestamp: s(&["stageTimestamp"]),
            request_received_timestamp: s(&["requestReceivedTimestamp"]),
            timestamp: s(&["timestamp"]),
            verb: s(&["verb"]),
            code: get(event, &["responseStatus", "code"])
                .and_then(Value::as_u64)
                .filter(|code| (100..=599).contains(code)),
            username: s(&["user", "username"]),
            uid: s(&["user", "uid"]),
            groups: strings_at(event, &["user", "groups"]),
            impersonated_username: s(&["impersonatedUser", "username"]),
            impersonated_uid: s(&["impersonatedUser", "uid"]),
            impersonated_groups: strings_at(event, &["impersonatedUser", "groups"]),
            source_ips: strings_at(event, &["sourceIPs"]),
            user_agent: s(&["userAgent"]),
            request_uri: s(&["requestURI"]),
            namespace: s(&["objectRef", "namespace"]),
            resource: s(&["objectRef", "resource"]),
            subresource: s(&["objectRef", "subresource"]),
            name: s(&["objectRef", "name"]),
            api_group: s(&["objectRef", "apiGroup"]),
            api_version: s(&["objectRef", "apiVersion"]),
        }
    }

    /// From a decoded event, with its `requestURI` as redaction left it (`redacted_uri`, when
    /// redaction changed it).
    pub fn of_event(ev: &'a Event<'_>, redacted_uri: Option<&'a str>) -> AuditFields<'a> {
        fn s<'a>(v: &'a Option<std::borrow::Cow<'_, str>>) -> Option<&'a str> {
            v.as_deref().filter(|s| !s.is_empty())
        }
        fn list<'a>(items: &'a [std::borrow::Cow<'_, str>]) -> SmallVec<[&'a str; 4]> {
            items
                .iter()
                .map(|i| i.as_ref())
                .filter(|i| !i.is_empty())
                .collect()
        }
        let user = ev.user.as_ref();
        let imp = ev.impersonated_user.as_deref();
        let obj = ev.object_ref.as_ref();
        AuditFields {
            stage_timestamp: s(&ev.stage_timestamp),
            request_received_timestamp: s(&ev.request_received_timestamp),
            timestamp: s(&ev.timestamp),
            verb: s(&ev.verb),
            code: ev
                .response_status
                .as_ref()
                .and_then(|r| r.code)
                .and_then(|c| u64::try_from(c).ok())
                .filter(|code| (100..=599).contains(code)),
            username: user.and_then(|u| s(&u.username)),
            uid: user.and_then(|u| s(&u.uid)),
            groups: user.map(|u| list(&u.groups)).unwrap_or_default(),
            impersonated_username: imp.and_then(|u| s(&u.username)),
            impersonated_uid: imp.and_then(|u| s(&u.uid)),
            impersonated_groups: imp.map(|u| list(&u.groups)).unwrap_or_default(),
            source_ips: list(&ev.source_ips),
            user_agent: s(&ev.user_agent),
            request_uri: redacted_uri
                .or(ev.request_uri.as_deref())
                .filter(|u| !u.is_empty()),
            namespace: obj.and_then(|o| s(&o.namespace)),
            resource: obj.and_then(|o| s(&o.resource)),
            subresource: obj.and_then(|o| s(&o.subresource)),
            name: obj.and_then(|o| s(&o.name)),
            api_group: obj.and_then(|o| s(&o.api_group)),
            api_version: obj.and_then(|o| s(&o.api_version)),
        }
    }

    /// From a decoded event and what redaction did to it: no fields at all if the redacted
    /// event is not complete (rather than unredacted ones).
    pub fn of_redacted(ev: &'a Event<'_>, redacted: &'a Redacted) -> AuditFields<'a> {
        if redacted.complete {
            AuditFields::of_event(ev, redacted.request_uri.as_deref())
        } else {
            AuditFields::default()
        }
    }

    /// `@timestamp`: the first of `stageTimestamp`, `requestReceivedTimestamp` and `timestamp`
    /// that is a valid RFC 3339 timestamp.
    pub fn time(&self) -> Option<(&'a str, chrono::DateTime<chrono::Utc>)> {
        [
            self.stage_timestamp,
            self.request_received_timestamp,
            self.timestamp,
        ]
        .into_iter()
        .flatten()
        .find_map(|ts| Some((ts, parse_timestamp(ts)?)))
    }
}

/// What an alert (or events-flow document) takes from one event.
pub struct EventPart<'p, 'f> {
    pub fields: &'p AuditFields<'f>,
    /// The rendered, scrubbed rule output (empty: none).
    pub message: &'p str,
    pub cluster_name: Option<&'p str>,
    /// Matches suppressed by throttling since the previous alert.
    pub suppressed: u64,
    /// The redacted event, as JSON, for `kubernetes.audit`.
    pub audit: &'p [u8],
}

/// The `events` flow's document for one event: `template`'s fields, the ECS fields from the
/// event and the redacted event under `kubernetes.audit`, as JSON.
pub fn write_event_document(
    template: &AlertTemplate,
    ev: &Event<'_>,
    cluster_name: Option<&str>,
) -> Vec<u8> {
    let (audit, redacted) = redacted_event_json(ev);
    let fields = AuditFields::of_redacted(ev, &redacted);
    EventPart {
        fields: &fields,
        message: "",
        cluster_name,
        suppressed: 0,
        audit: &audit,
    }
    .document(template)
}

impl EventPart<'_, '_> {
    /// The whole document with `template`'s fields ([`write_document`]), in a buffer of its
    /// size.
    pub fn document(&self, template: &AlertTemplate) -> Vec<u8> {
        let mut doc = Vec::with_capacity(template.document_capacity(self.audit.len()));
        write_document(&mut doc, template, self);
        doc
    }
}

/// Writes the whole ECS document: the template's members and the event's, as one JSON object.
/// The two never set the same field; where both have members of one object (`event`,
/// `tripline`) they are written together.
pub fn write_document(out: &mut Vec<u8>, template: &AlertTemplate, part: &EventPart<'_, '_>) {
    let f = part.fields;
    let mut w = Obj::new(out);
    if let Some((ts, _)) = f.time() {
        w.str("@timestamp", ts);
    }
    w.raw_members(&template.other_members);

    w.begin("event");
    w.raw_members(&template.event_members);
    w.key("category");
    w.out.extend_from_slice(b"[");
    write_json_str(w.out, category(f));
    w.out.extend_from_slice(b"]");
    w.key("type");
    w.out.extend_from_slice(b"[");
    write_json_str(w.out, event_type(f.verb));
    w.out.extend_from_slice(b"]");
    w.opt_str("action", f.verb);
    w.str("outcome", outcome(f.code));
    w.opt_str(
        "start",
        f.request_received_timestamp
            .filter(|ts| parse_timestamp(ts).is_some()),
    );
    w.end();

    w.begin("tripline");
    w.raw_members(&template.tripline_members);
    if part.suppressed > 0 {
        w.num("suppressed_count", part.suppressed);
    }
    w.end();

    // User: `user.{name,id,group.name}`, and the same under `user.effective` for the
    // impersonated user.
    let user = |w: &mut Obj<'_>, name, id, groups: &[&str]| {
        w.opt_str("name", name);
        w.opt_str("id", id);
        w.begin("group");
        w.list("name", groups);
        w.end();
    };
    w.begin("user");
    user(&mut w, f.username, f.uid, &f.groups);
    w.begin("effective");
    user(
        &mut w,
        f.impersonated_username,
        f.impersonated_uid,
        &f.impersonated_groups,
    );
    w.end();
    w.end();

    // Network. Only the last entry of `sourceIPs` is the connecting peer; see `render_alert`.
    let is_ip = |ip: &&str| ip.parse::<IpAddr>().is_ok();
    let mut related_ips: Vec<&str> = Vec::new();
    for ip in f.source_ips.iter().copied().filter(is_ip) {
        if !related_ips.contains(&ip) {
            related_ips.push(ip);
        }
    }
    let mut related_users: Vec<&str> = Vec::new();
    for user in [f.username, f.impersonated_username].into_iter().flatten() {
        if !related_users.contains(&user) {
            related_users.push(user);
        }
    }
    w.begin("related");
    w.list("user", &related_users);
    w.list("ip", &related_ips);
    w.end();
    w.begin("source");
    w.opt_str("ip", f.source_ips.last().copied().filter(is_ip));
    w.end();
    w.begin("user_agent");
    w.opt_str("original", f.user_agent);
    w.end();
    w.begin("url");
    w.opt_str("original", f.request_uri);
    w.end();
    if let Some(code) = f.code {
        w.begin("http");
        w.begin("response");
        w.num("status_code", code);
        w.end();
        w.end();
    }

    // Orchestrator.
    w.begin("orchestrator");
    w.str("type", "kubernetes");
    w.begin("cluster");
    w.opt_str("name", part.cluster_name.filter(|c| !c.is_empty()));
    w.end();
    w.opt_str("namespace", f.namespace);
    w.begin("resource");
    match (f.resource, f.subresource) {
        (Some(resource), Some(sub)) => w.str("type", &format!("{resource}/{sub}")),
        (Some(resource), None) => w.str("type", resource),
        (None, _) => {}
    }
    w.opt_str("name", f.name);
    w.end();
    match (f.api_group, f.api_version) {
        (Some(group), Some(version)) => w.str("api_version", &format!("{group}/{version}")),
        (None, Some(version)) => w.str("api_version", version),
        _ => {}
    }
    w.end();

    if !part.message.is_empty() {
        w.str("message", part.message);
    }
    // A `null` event (one that did not parse again) is left out rather than embedded.
    if !part.audit.is_empty() && part.audit != b"null" {
        w.begin("kubernetes");
        w.key("audit");
        w.out.extend_from_slice(part.audit);
        w.end();
    }
    w.finish();
}

/// Writes a JSON object member by member; an object begun with [`Obj::begin`] that gets no
/// member is taken back out, so a document never holds an empty object.
struct Obj<'o> {
    out: &'o mut Vec<u8>,
    /// The open objects, the outermost first.
    open: smallvec::SmallVec<[Frame; 6]>,
}

struct Frame {
    /// Where the object's member began in the output (to take it back out).
    start: usize,
    /// Whether the parent had members before this one.
    parent_had: bool,
    /// Whether this object has members.
    has: bool,
}

impl<'o> Obj<'o> {
    fn new(out: &'o mut Vec<u8>) -> Obj<'o> {
        let start = out.len();
        out.push(b'{');
        let mut open = smallvec::SmallVec::new();
        open.push(Frame {
            start,
            parent_had: false,
            has: false,
        });
        Obj { out, open }
    }

    /// Starts a member: a comma if needed.
    fn member(&mut self) {
        if let Some(top) = self.open.last_mut() {
            if std::mem::replace(&mut top.has, true) {
                self.out.push(b',');
            }
        }
    }

    /// A member's key: one of the ECS names written here, which need no escaping.
    fn key(&mut self, key: &'static str) {
        debug_assert!(key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\'));
        self.member();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// Members already written as JSON (without braces), if any.
    fn raw_members(&mut self, members: &[u8]) {
        if !members.is_empty() {
            self.member();
            self.out.extend_from_slice(members);
        }
    }

    fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        write_json_str(self.out, value);
    }

    fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v);
        }
    }

    fn num(&mut self, key: &'static str, value: u64) {
        self.key(key);
        self.out.extend_from_slice(value.to_string().as_bytes());
    }

    /// A list of strings, unless it is empty.
    fn list(&mut self, key: &'static str, items: &[&str]) {
        if items.is_empty() {
            return;
        }
        self.key(key);
        self.out.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_json_str(self.out, item);
        }
        self.out.push(b']');
    }

    fn begin(&mut self, key: &'static str) {
        let start = self.out.len();
        let parent_had = self.open.last().is_some_and(|t| t.has);
        self.key(key);
        self.out.push(b'{');
        self.open.push(Frame {
            start,
            parent_had,
            has: false,
        });
    }

    fn end(&mut self) {
        let Some(frame) = self.open.pop() else {
            return;
        };
        if frame.has {
            self.out.push(b'}');
        } else {
            self.out.truncate(frame.start);
            if let Some(parent) = self.open.last_mut() {
                parent.has = frame.parent_had;
            }
        }
    }

    fn finish(self) {
        self.out.push(b'}');
    }
}

/// Splits Sigma tags into ECS threat fields. Returns `None` when the rule has no `attack.*` tags
/// naming a known tactic or a technique.
///
/// Recognized tags (case-insensitive): `attack.<tactic-name>` with hyphens or underscores
/// (`attack.credential-access`, `attack.credential_access`), `attack.ta<NNNN>`, `attack.t<NNNN>`
/// and `attack.t<NNNN>.<NNN>`. A sub-technique also contributes its parent technique. Group
/// (`attack.g…`) and software (`attack.s…`) tags and unknown tactic names are ignored.
///
/// The result follows ECS: `threat.framework`, `threat.tactic.{id,name,reference}`,
/// `threat.technique.{id,name,reference}` and `threat.technique.subtechnique.{id,name,reference}`,
/// each a list in tag order without duplicates. The `id`, `name` and `reference` lists are
/// parallel; a technique missing from the embedded name table is named by its id, so the lists
/// stay aligned.
pub fn threat_from_tags(tags: &[String]) -> Option<Value> {
    let mut tactics: Vec<&Tactic> = Vec::new();
    let mut techniques: Vec<String> = Vec::new();
    let mut subtechniques: Vec<String> = Vec::new();

    for tag in tags {
        let tag = tag.trim().to_ascii_lowercase();
        let Some(rest) = tag.strip_prefix("attack.") else {
            continue;
        };
        if let Some((technique, sub)) = parse_technique(rest) {
            push_unique(&mut techniques, technique);
            if let Some(sub) = sub {
                push_unique(&mut subtechniques, sub);
            }
        } else if let Some(tactic) = find_tactic(rest) {
            if !tactics.iter().any(|t| t.id == tactic.id) {
                tactics.push(tactic);
            }
        }
    }
    if tactics.is_empty() && techniques.is_empty() {
        return None;
    }

    let mut threat = Map::new();
    threat.insert("framework".into(), json!("MITRE ATT&CK"));
    if !tactics.is_empty() {
        threat.insert(
            "tactic".into(),
            json!({
                "id": tactics.iter().map(|t| t.id).collect::<Vec<_>>(),
                "name": tactics.iter().map(|t| t.name).collect::<Vec<_>>(),
                "reference": tactics
                    .iter()
                    .map(|t| format!("https://attack.mitre.org/tactics/{}/", t.id))
                    .collect::<Vec<_>>(),
            }),
        );
    }
    if !techniques.is_empty() {
        let mut technique = technique_fields(&techniques);
        if !subtechniques.is_empty() {
            technique.insert(
                "subtechnique".into(),
                Value::Object(technique_fields(&subtechniques)),
            );
        }
        threat.insert("technique".into(), Value::Object(technique));
    }
    Some(Value::Object(threat))
}

/// An Enterprise ATT&CK tactic.
struct Tactic {
    id: &'static str,
    name: &'static str,
    /// The tag form, hyphenated (`credential-access`).
    slug: &'static str,
}

/// The 14 Enterprise ATT&CK tactics, in matrix order.
#[rustfmt::skip]
const TACTICS: [Tactic; 14] = [
    Tactic { id: "TA0043", name: "Reconnaissance", slug: "reconnaissance" },
    Tactic { id: "TA0042", name: "Resource Development", slug: "resource-development" },
    Tactic { id: "TA0001", name: "Initial Access", slug: "initial-access" },
    Tactic { id: "TA0002", name: "Execution", slug: "execution" },
    Tactic { id: "TA0003", name: "Persistence", slug: "persistence" },
    Tactic { id: "TA0004", name: "Privilege Escalation", slug: "privilege-escalation" },
    Tactic { id: "TA0005", name: "Defense Evasion", slug: "defense-evasion" },
    Tactic { id: "TA0006", name: "Credential Access", slug: "credential-access" },
    Tactic { id: "TA0007", name: "Discovery", slug: "discovery" },
    Tactic { id: "TA0008", name: "Lateral Movement", slug: "lateral-movement" },
    Tactic { id: "TA0009", name: "Collection", slug: "collection" },
    Tactic { id: "TA0011", name: "Command and Control", slug: "command-and-control" },
    Tactic { id: "TA0010", name: "Exfiltration", slug: "exfiltration" },
    Tactic { id: "TA0040", name: "Impact", slug: "impact" },
];

/// Names of the ATT&CK techniques and sub-techniques relevant to Kubernetes and cloud control
/// planes. Sub-technique names are their own (ECS `threat.technique.subtechnique.name`), without
/// the parent's name.
const TECHNIQUES: &[(&str, &str)] = &[
    ("T1003", "OS Credential Dumping"),
    ("T1021", "Remote Services"),
    ("T1036", "Masquerading"),
    ("T1036.005", "Match Legitimate Resource Name or Location"),
    ("T1046", "Network Service Discovery"),
    ("T1053", "Scheduled Task/Job"),
    ("T1053.003", "Cron"),
    ("T1053.007", "Container Orchestration Job"),
    ("T1059", "Command and Scripting Interpreter"),
    ("T1059.004", "Unix Shell"),
    ("T1068", "Exploitation for Privilege Escalation"),
    ("T1069", "Permission Groups Discovery"),
    ("T1069.003", "Cloud Groups"),
    ("T1070", "Indicator Removal"),
    ("T1078", "Valid Accounts"),
    ("T1078.001", "Default Accounts"),
    ("T1078.003", "Local Accounts"),
    ("T1078.004", "Cloud Accounts"),
    ("T1087", "Account Discovery"),
    ("T1087.004", "Cloud Account"),
    ("T1098", "Account Manipulation"),
    ("T1098.001", "Additional Cloud Credentials"),
    ("T1098.003", "Additional Cloud Roles"),
    ("T1098.006", "Additional Container Cluster Roles"),
    ("T1105", "Ingress Tool Transfer"),
    ("T1110", "Brute Force"),
    ("T1133", "External Remote Services"),
    ("T1134", "Access Token Manipulation"),
    ("T1136", "Create Account"),
    ("T1190", "Exploit Public-Facing Application"),
    ("T1204", "User Execution"),
    ("T1204.003", "Malicious Image"),
    ("T1485", "Data Destruction"),
    ("T1489", "Service Stop"),
    ("T1496", "Resource Hijacking"),
    ("T1498", "Network Denial of Service"),
    ("T1499", "Endpoint Denial of Service"),
    ("T1505", "Server Software Component"),
    ("T1525", "Implant Internal Image"),
    ("T1526", "Cloud Service Discovery"),
    ("T1528", "Steal Application Access Token"),
    ("T1530", "Data from Cloud Storage"),
    ("T1543", "Create or Modify System Process"),
    ("T1543.005", "Container Service"),
    ("T1550", "Use Alternate Authentication Material"),
    ("T1550.001", "Application Access Token"),
    ("T1552", "Unsecured Credentials"),
    ("T1552.001", "Credentials In Files"),
    ("T1552.005", "Cloud Instance Metadata API"),
    ("T1552.007", "Container API"),
    ("T1556", "Modify Authentication Process"),
    ("T1562", "Impair Defenses"),
    ("T1562.001", "Disable or Modify Tools"),
    ("T1562.008", "Disable or Modify Cloud Logs"),
    ("T1565", "Data Manipulation"),
    ("T1580", "Cloud Infrastructure Discovery"),
    ("T1588", "Obtain Capabilities"),
    ("T1609", "Container Administration Command"),
    ("T1610", "Deploy Container"),
    ("T1611", "Escape to Host"),
    ("T1612", "Build Image on Host"),
    ("T1613", "Container and Resource Discovery"),
    ("T1648", "Serverless Execution"),
];

/// A tactic by its tag form (`credential-access`, `credential_access`) or id (`ta0006`).
fn find_tactic(tag: &str) -> Option<&'static Tactic> {
    let slug = tag.replace('_', "-");
    TACTICS
        .iter()
        .find(|t| t.slug == slug || t.id.eq_ignore_ascii_case(tag))
}

/// Parses `tNNNN` or `tNNNN.NNN` (lowercase, without the `attack.` prefix) into the uppercase
/// technique id and, for a sub-technique, its full uppercase id.
fn parse_technique(tag: &str) -> Option<(String, Option<String>)> {
    let digits = tag.strip_prefix('t')?;
    let (technique, sub) = match digits.split_once('.') {
        Some((technique, sub)) => (technique, Some(sub)),
        None => (digits, None),
    };
    let all_digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(technique, 4) {
        return None;
    }
    match sub {
        None => Some((format!("T{technique}"), None)),
        Some(sub) if all_digits(sub, 3) => {
            Some((format!("T{technique}"), Some(format!("T{technique}.{sub}"))))
        }
        Some(_) => None,
    }
}

/// `{id, name, reference}` lists for technique (or sub-technique) ids.
fn technique_fields(ids: &[String]) -> Map<String, Value> {
    // A technique missing from TECHNIQUES is named by its id: ECS readers pair `id[i]` with
    // `name[i]`, so every id needs a name, and the id is the most honest one we have.
    let names: Vec<&str> = ids
        .iter()
        .map(|id| {
            TECHNIQUES
                .iter()
                .find(|(known, _)| known == id)
                .map_or(id.as_str(), |(_, name)| name)
        })
        .collect();
    let references: Vec<String> = ids
        .iter()
        .map(|id| {
            format!(
                "https://attack.mitre.org/techniques/{}/",
                id.replace('.', "/")
            )
        })
        .collect();
    let mut fields = Map::new();
    fields.insert("id".into(), json!(ids));
    fields.insert("name".into(), json!(names));
    fields.insert("reference".into(), json!(references));
    fields
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

fn level_fields(doc: &mut Doc, level: Level) {
    doc.set("event.severity", level.severity());
    doc.set("event.risk_score", level.severity());
    doc.set("tripline.rule.level", level.as_str());
}

fn rule_fields(doc: &mut Doc, rule: &RuleMeta) {
    doc.set_str("rule.id", Some(&rule.id));
    doc.set_str("rule.name", Some(&rule.title));
    doc.set_str("rule.description", rule.description.as_deref());
    doc.set_str("rule.ruleset", Some(&rule.ruleset));
    doc.set_str(
        "rule.reference",
        rule.references.first().map(String::as_str),
    );
    // Sigma `author` is one string, often a comma-separated list; ECS `rule.author` is a list.
    // `rule.version` is omitted: Sigma rules have no version, and `date`/`modified` are dates.
    let authors: Vec<&str> = rule
        .author
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    doc.set_list("rule.author", &authors);
    doc.set_list("tripline.rule.tags", &rule.tags);
    doc.set_list("tripline.rule.falsepositives", &rule.falsepositives);
}

/// `event.category`; see [`render_alert`].
fn category(f: &AuditFields<'_>) -> &'static str {
    let anonymous =
        f.username == Some("system:anonymous") || f.groups.contains(&"system:unauthenticated");
    if anonymous || f.code == Some(401) {
        "authentication"
    } else if f.api_group == Some("rbac.authorization.k8s.io")
        || matches!(
            f.resource,
            Some("serviceaccounts" | "tokenreviews" | "certificatesigningrequests")
        )
    {
        "iam"
    } else if f.resource == Some("pods") && matches!(f.subresource, Some("exec" | "attach")) {
        "process"
    } else {
        "configuration"
    }
}

/// `event.type` from the verb; see [`render_alert`].
fn event_type(verb: Option<&str>) -> &'static str {
    match verb {
        Some("create") => "creation",
        Some("update" | "patch") => "change",
        Some("delete" | "deletecollection") => "deletion",
        Some("get" | "list" | "watch") => "access",
        _ => "info",
    }
}

fn outcome(code: Option<u64>) -> &'static str {
    match code {
        Some(code) if code < 400 => "success",
        Some(_) => "failure",
        None => "unknown",
    }
}

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// The non-empty string at `path`.
fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(value, path)?.as_str().filter(|s| !s.is_empty())
}

/// The non-empty strings of the array at `path` (other elements are skipped).
fn strings_at<'a>(value: &'a Value, path: &[&str]) -> SmallVec<[&'a str; 4]> {
    get(value, path)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The document being built: nested objects addressed by dotted paths.
#[derive(Default)]
struct Doc(Map<String, Value>);

impl Doc {
    /// Sets the field at a dotted path (`event.kind`), creating parent objects. `null` is never
    /// stored.
    fn set(&mut self, path: &str, value: impl Into<Value>) {
        let value = value.into();
        if !value.is_null() {
            insert_path(&mut self.0, path, value);
        }
    }

    fn set_opt(&mut self, path: &str, value: Option<impl Into<Value>>) {
        if let Some(value) = value {
            self.set(path, value);
        }
    }

    /// Sets a string field unless the string is absent or empty.
    fn set_str(&mut self, path: &str, value: Option<&str>) {
        self.set_opt(path, value.filter(|s| !s.is_empty()));
    }

    /// Sets a list field unless the list is empty.
    fn set_list<T: AsRef<str>>(&mut self, path: &str, items: &[T]) {
        if !items.is_empty() {
            let items: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
            self.set(path, json!(items));
        }
    }
}

fn insert_path(map: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            // Looked up before inserting, so that the key is allocated only when it is new.
            if !matches!(map.get(head), Some(Value::Object(_))) {
                map.insert(head.to_owned(), Value::Object(Map::new()));
            }
            if let Some(Value::Object(child)) = map.get_mut(head) {
                insert_path(child, rest, value);
            }
        }
    }
}

/// The ECS fields of a document as they were built before documents were written directly
/// (field by field into maps, from the redacted event as a value): an independent reference
/// for [`write_document`].
#[cfg(test)]
pub(crate) mod reference {
    use super::*;

    /// The whole document for `event` (redacted), the way `AlertTemplate::render` built it.
    pub fn render(
        template: &AlertTemplate,
        event: Value,
        message: &str,
        cluster_name: Option<&str>,
        suppressed: u64,
    ) -> Value {
        let mut doc = Doc(template.fields().clone());
        event_fields(&mut doc, event, message, cluster_name, suppressed);
        Value::Object(doc.0)
    }

    fn event_fields(
        doc: &mut Doc,
        event: Value,
        message: &str,
        cluster_name: Option<&str>,
        suppressed: u64,
    ) {
        let timestamp = ["stageTimestamp", "requestReceivedTimestamp", "timestamp"]
            .into_iter()
            .filter_map(|key| str_at(&event, &[key]))
            .find(|ts| is_timestamp(ts));
        doc.set_opt("@timestamp", timestamp);

        let verb = str_at(&event, &["verb"]);
        let code = status_code(&event);
        doc.set("event.category", json!([category(&event, code)]));
        doc.set("event.type", json!([event_type(verb)]));
        doc.set_opt("event.action", verb);
        doc.set("event.outcome", outcome(code));
        doc.set_opt(
            "event.start",
            str_at(&event, &["requestReceivedTimestamp"]).filter(|ts| is_timestamp(ts)),
        );
        if suppressed > 0 {
            doc.set("tripline.suppressed_count", suppressed);
        }
        user_fields(doc, &event);
        network_fields(doc, &event, code);
        orchestrator_fields(doc, &event, cluster_name);
        if !message.is_empty() {
            doc.set("message", message);
        }
        doc.set("kubernetes.audit", event);
    }

    fn user_fields(doc: &mut Doc, event: &Value) {
        let username = str_at(event, &["user", "username"]);
        doc.set_opt("user.name", username);
        doc.set_opt("user.id", str_at(event, &["user", "uid"]));
        doc.set_list("user.group.name", &strings_at(event, &["user", "groups"]));

        let impersonated = str_at(event, &["impersonatedUser", "username"]);
        doc.set_opt("user.effective.name", impersonated);
        doc.set_opt(
            "user.effective.id",
            str_at(event, &["impersonatedUser", "uid"]),
        );
        doc.set_list(
            "user.effective.group.name",
            &strings_at(event, &["impersonatedUser", "groups"]),
        );

        let mut related = Vec::new();
        for user in [username, impersonated].into_iter().flatten() {
            if !related.contains(&user) {
                related.push(user);
            }
        }
        doc.set_list("related.user", &related);
    }

    fn network_fields(doc: &mut Doc, event: &Value, code: Option<u64>) {
        let source_ips = event.get("sourceIPs").and_then(Value::as_array);
        // Only the last entry is the connecting peer; see `render_alert`.
        let source_ip = source_ips
            .and_then(|ips| ips.last())
            .and_then(Value::as_str)
            .filter(|ip| ip.parse::<IpAddr>().is_ok());
        doc.set_opt("source.ip", source_ip);
        let mut related_ips: Vec<&str> = Vec::new();
        for ip in source_ips.into_iter().flatten().filter_map(Value::as_str) {
            if ip.parse::<IpAddr>().is_ok() && !related_ips.contains(&ip) {
                related_ips.push(ip);
            }
        }
        doc.set_list("related.ip", &related_ips);

        doc.set_opt("user_agent.original", str_at(event, &["userAgent"]));
        doc.set_opt("url.original", str_at(event, &["requestURI"]));
        if let Some(code) = code {
            doc.set("http.response.status_code", code);
        }
    }

    fn orchestrator_fields(doc: &mut Doc, event: &Value, cluster_name: Option<&str>) {
        doc.set("orchestrator.type", "kubernetes");
        doc.set_str("orchestrator.cluster.name", cluster_name);
        doc.set_opt(
            "orchestrator.namespace",
            str_at(event, &["objectRef", "namespace"]),
        );
        let resource = str_at(event, &["objectRef", "resource"]);
        let subresource = str_at(event, &["objectRef", "subresource"]);
        let resource_type = match (resource, subresource) {
            (Some(resource), Some(sub)) => Some(format!("{resource}/{sub}")),
            (Some(resource), None) => Some(resource.to_owned()),
            (None, _) => None,
        };
        doc.set_opt("orchestrator.resource.type", resource_type);
        doc.set_opt(
            "orchestrator.resource.name",
            str_at(event, &["objectRef", "name"]),
        );
        let group = str_at(event, &["objectRef", "apiGroup"]);
        let api_version = str_at(event, &["objectRef", "apiVersion"]).map(|version| match group {
            Some(group) => format!("{group}/{version}"),
            None => version.to_owned(),
        });
        doc.set_opt("orchestrator.api_version", api_version);
    }

    fn category(event: &Value, code: Option<u64>) -> &'static str {
        let anonymous = str_at(event, &["user", "username"]) == Some("system:anonymous")
            || strings_at(event, &["user", "groups"]).contains(&"system:unauthenticated");
        let group = str_at(event, &["objectRef", "apiGroup"]);
        let resource = str_at(event, &["objectRef", "resource"]);
        let subresource = str_at(event, &["objectRef", "subresource"]);
        if anonymous || code == Some(401) {
            "authentication"
        } else if group == Some("rbac.authorization.k8s.io")
            || matches!(
                resource,
                Some("serviceaccounts" | "tokenreviews" | "certificatesigningrequests")
            )
        {
            "iam"
        } else if resource == Some("pods") && matches!(subresource, Some("exec" | "attach")) {
            "process"
        } else {
            "configuration"
        }
    }

    fn status_code(event: &Value) -> Option<u64> {
        get(event, &["responseStatus", "code"])
            .and_then(Value::as_u64)
            .filter(|code| (100..=599).contains(code))
    }

    fn is_timestamp(s: &str) -> bool {
        chrono::DateTime::parse_from_rfc3339(s).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(tags: &[&str]) -> RuleMeta {
        RuleMeta {
            id: "7b3a6f3e-5c1d-4a8e-9a4b-2f1e0c9d8a71".into(),
            title: "Exec into a pod".into(),
            description: Some("A user ran a command inside a running container.".into()),
            status: Some("stable".into()),
            author: Some("Jane Doe, tripline".into()),
            date: Some("2024-01-10".into()),
            modified: Some("2024-03-02".into()),
            level: Level::High,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            references: vec![
                "https://kubernetes.io/docs/tasks/debug/debug-application/get-shell-running-container/".into(),
                "https://attack.mitre.org/techniques/T1609/".into(),
            ],
            falsepositives: vec!["Administrators debugging workloads".into()],
            source: "builtin:exec.yml".into(),
            ruleset: "tripline".into(),
        }
    }

    fn exec_event() -> Value {
        json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Request",
            "auditID": "0b6e2f0c-3d7a-4f63-8d3e-5c2a1b9e7f10",
            "stage": "ResponseStarted",
            "requestURI": "/api/v1/namespaces/payments/pods/api-7d9f8b6c5-x2k4q/exec?command=sh&container=api&stdin=true&stdout=true&tty=true",
            "verb": "create",
            "user": {
                "username": "alice@example.com",
                "uid": "a1b2c3",
                "groups": ["developers", "system:authenticated"]
            },
            "sourceIPs": ["192.0.2.10"],
            "userAgent": "kubectl/v1.30.1 (linux/amd64) kubernetes/7b3a6f3",
            "objectRef": {
                "resource": "pods",
                "namespace": "payments",
                "name": "api-7d9f8b6c5-x2k4q",
                "apiVersion": "v1",
                "subresource": "exec"
            },
            "responseStatus": {"metadata": {}, "code": 101},
            "requestReceivedTimestamp": "2024-05-01T10:15:02.123456Z",
            "stageTimestamp": "2024-05-01T10:15:02.201234Z",
            "annotations": {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed by RoleBinding \"dev-exec/payments\""
            }
        })
    }

    fn assert_no_nulls(value: &Value, path: &str) {
        match value {
            Value::Null => panic!("null at {path}"),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    assert_no_nulls(item, &format!("{path}[{i}]"));
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    assert_no_nulls(item, &format!("{path}.{key}"));
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_document_holds_the_template_and_the_event_fields_once_each() {
        let template = AlertTemplate::new(&rule(&["attack.execution", "attack.t1609"]))
            .with_host(Some("cp-1"));
        for suppressed in [0, 7] {
            let event = exec_event();
            let mut audit = Vec::new();
            serde_json::to_writer(&mut audit, &event).unwrap();
            let mut text = Vec::new();
            let part = EventPart {
                fields: &AuditFields::of_value(&event),
                message: "msg",
                cluster_name: Some("prod"),
                suppressed,
                audit: &audit,
            };
            write_document(&mut text, &template, &part);
            let text = String::from_utf8(text).unwrap();
            assert!(crate::event::unique_keys(&text), "{text}");
            let doc: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(
                doc,
                template.render(event.clone(), "msg", Some("prod"), suppressed)
            );
            assert_eq!(
                doc,
                reference::render(&template, event.clone(), "msg", Some("prod"), suppressed)
            );
            // Every field of the template is there, next to the event's in the same objects.
            fn leaves(v: &Value, path: String, out: &mut Vec<(String, Value)>) {
                match v {
                    Value::Object(m) => {
                        for (k, v) in m {
                            leaves(v, format!("{path}/{k}"), out);
                        }
                    }
                    v => out.push((path, v.clone())),
                }
            }
            let mut want = Vec::new();
            leaves(
                &Value::Object(template.fields().clone()),
                String::new(),
                &mut want,
            );
            assert!(want.len() > 10);
            for (pointer, v) in want {
                assert_eq!(doc.pointer(&pointer), Some(&v), "{pointer}");
            }
            for pointer in ["/event/action", "/user/name", "/kubernetes/audit/auditID"] {
                assert!(doc.pointer(pointer).is_some(), "{pointer}");
            }
            assert_eq!(doc["kubernetes"]["audit"], event);
            assert_eq!(
                doc.pointer("/tripline/suppressed_count"),
                (suppressed > 0).then_some(&json!(suppressed))
            );
        }
        // The events flow's template has no `tripline` object: none is written empty.
        let doc = AlertTemplate::for_events().render(json!({}), "", None, 0);
        assert_eq!(doc.get("tripline"), None);
        assert_eq!(doc.get("user"), None);
        assert_eq!(doc["orchestrator"], json!({"type": "kubernetes"}));
    }

    #[test]
    fn exec_alert() {
        let event = exec_event();
        let rule = rule(&["attack.execution", "attack.t1609"]);
        let doc = render_alert(
            &event,
            &rule,
            "alice@example.com ran sh in payments/api",
            Some("prod-eu"),
            0,
        );

        assert_eq!(doc["@timestamp"], "2024-05-01T10:15:02.201234Z");
        assert_eq!(doc["event"]["kind"], "alert");
        assert_eq!(doc["event"]["category"], json!(["process"]));
        assert_eq!(doc["event"]["type"], json!(["creation"]));
        assert_eq!(doc["event"]["action"], "create");
        assert_eq!(doc["event"]["outcome"], "success");
        assert_eq!(doc["event"]["severity"], 73);
        assert_eq!(doc["event"]["risk_score"], 73);
        assert_eq!(doc["event"]["module"], "kubernetes");
        assert_eq!(doc["event"]["dataset"], "kubernetes.audit");
        assert_eq!(doc["event"]["provider"], "kube-apiserver");
        assert_eq!(doc["event"]["start"], "2024-05-01T10:15:02.123456Z");
        assert!(
            doc["event"].get("id").is_none(),
            "auditID must not become event.id"
        );

        assert_eq!(
            doc["rule"],
            json!({
                "id": "7b3a6f3e-5c1d-4a8e-9a4b-2f1e0c9d8a71",
                "name": "Exec into a pod",
                "description": "A user ran a command inside a running container.",
                "ruleset": "tripline",
                "reference": "https://kubernetes.io/docs/tasks/debug/debug-application/get-shell-running-container/",
                "author": ["Jane Doe", "tripline"]
            })
        );
        assert_eq!(doc["tripline"]["rule"]["level"], "high");
        assert_eq!(
            doc["tripline"]["rule"]["tags"],
            json!(["attack.execution", "attack.t1609"])
        );
        assert_eq!(
            doc["tripline"]["rule"]["falsepositives"],
            json!(["Administrators debugging workloads"])
        );
        assert!(doc["tripline"].get("suppressed_count").is_none());

        assert_eq!(doc["threat"]["tactic"]["id"], json!(["TA0002"]));
        assert_eq!(
            doc["threat"]["technique"]["name"],
            json!(["Container Administration Command"])
        );

        assert_eq!(doc["user"]["name"], "alice@example.com");
        assert_eq!(doc["user"]["id"], "a1b2c3");
        assert_eq!(
            doc["user"]["group"]["name"],
            json!(["developers", "system:authenticated"])
        );
        assert!(doc["user"].get("effective").is_none());
        assert_eq!(doc["related"]["user"], json!(["alice@example.com"]));
        assert_eq!(doc["source"]["ip"], "192.0.2.10");
        assert_eq!(doc["related"]["ip"], json!(["192.0.2.10"]));
        assert_eq!(
            doc["user_agent"]["original"],
            "kubectl/v1.30.1 (linux/amd64) kubernetes/7b3a6f3"
        );
        assert_eq!(doc["url"]["original"], event["requestURI"]);
        assert_eq!(doc["http"]["response"]["status_code"], 101);

        assert_eq!(
            doc["orchestrator"],
            json!({
                "type": "kubernetes",
                "cluster": {"name": "prod-eu"},
                "namespace": "payments",
                "resource": {"type": "pods/exec", "name": "api-7d9f8b6c5-x2k4q"},
                "api_version": "v1"
            })
        );
        assert_eq!(doc["message"], "alice@example.com ran sh in payments/api");
        assert_eq!(doc["kubernetes"]["audit"], event);
        assert_eq!(doc["ecs"]["version"], "8.11.0");
        assert_no_nulls(&doc, "$");
    }

    #[test]
    fn anonymous_allowed_alert() {
        let event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": "5f0d7c1e-9b1a-4c2e-8e6f-0a9b8c7d6e5f",
            "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/kube-system/secrets",
            "verb": "list",
            "user": {"username": "system:anonymous", "groups": ["system:unauthenticated"]},
            "sourceIPs": ["203.0.113.45"],
            "userAgent": "curl/8.5.0",
            "objectRef": {"resource": "secrets", "namespace": "kube-system", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 200},
            "requestReceivedTimestamp": "2024-05-01T03:00:00.000100Z",
            "stageTimestamp": "2024-05-01T03:00:00.004100Z",
            "annotations": {
                "authorization.k8s.io/decision": "allow",
                "authorization.k8s.io/reason": "RBAC: allowed by ClusterRoleBinding \"oops\" of ClusterRole \"cluster-admin\" to Group \"system:unauthenticated\""
            }
        });
        let rule = RuleMeta {
            level: Level::Critical,
            ..rule(&["attack.initial_access", "attack.t1078.001"])
        };
        let doc = render_alert(&event, &rule, "anonymous list of secrets", None, 0);
        assert_eq!(doc["event"]["category"], json!(["authentication"]));
        assert_eq!(doc["event"]["type"], json!(["access"]));
        assert_eq!(doc["event"]["outcome"], "success");
        assert_eq!(doc["event"]["severity"], 99);
        assert_eq!(doc["user"]["name"], "system:anonymous");
        assert_eq!(doc["orchestrator"]["resource"]["type"], "secrets");
        assert!(doc["orchestrator"].get("cluster").is_none());
        assert!(doc["orchestrator"]["resource"].get("name").is_none());
        assert_no_nulls(&doc, "$");
    }

    #[test]
    fn unauthorized_401_alert() {
        // A failed authentication: the API server knows no user, and no object.
        let event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "Metadata",
            "auditID": "e3c1b2a4-7f6d-4e5c-9b8a-1d2c3b4a5f6e",
            "stage": "ResponseStarted",
            "requestURI": "/api/v1/namespaces/default/pods",
            "verb": "list",
            "user": {},
            "sourceIPs": ["198.51.100.23"],
            "userAgent": "python-requests/2.31.0",
            "responseStatus": {"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401},
            "requestReceivedTimestamp": "2024-05-01T03:01:00.000100Z",
            "stageTimestamp": "2024-05-01T03:01:00.000300Z"
        });
        let doc = render_alert(&event, &rule(&[]), "401 from 198.51.100.23", None, 0);
        assert_eq!(doc["event"]["category"], json!(["authentication"]));
        assert_eq!(doc["event"]["outcome"], "failure");
        assert_eq!(doc["http"]["response"]["status_code"], 401);
        assert!(doc.get("user").is_none());
        assert!(doc.get("threat").is_none());
        assert!(doc["related"].get("user").is_none());
        assert!(doc["orchestrator"].get("resource").is_none());
        assert!(doc["orchestrator"].get("namespace").is_none());
        assert_eq!(doc["orchestrator"], json!({"type": "kubernetes"}));
        assert!(doc["tripline"]["rule"].get("tags").is_none());
        assert_no_nulls(&doc, "$");
    }

    #[test]
    fn impersonation_alert() {
        let event = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": "RequestResponse",
            "auditID": "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d",
            "stage": "ResponseComplete",
            "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            "verb": "create",
            "user": {"username": "bob", "uid": "u-42", "groups": ["ops", "system:authenticated"]},
            "impersonatedUser": {"username": "system:admin", "groups": ["system:masters"]},
            "sourceIPs": ["10.20.30.40"],
            "userAgent": "kubectl/v1.29.0",
            "objectRef": {"resource": "clusterrolebindings", "name": "backdoor", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": 201},
            "requestObject": {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
                "metadata": {"name": "backdoor"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "User", "name": "mallory", "apiGroup": "rbac.authorization.k8s.io"}]},
            "requestReceivedTimestamp": "2024-05-01T12:00:00.000001Z",
            "stageTimestamp": "2024-05-01T12:00:00.020001Z"
        });
        let rule = rule(&[
            "attack.privilege-escalation",
            "attack.persistence",
            "attack.t1098.006",
            "attack.t1134",
        ]);
        let doc = render_alert(
            &event,
            &rule,
            "bob as system:admin bound cluster-admin",
            Some("prod"),
            3,
        );
        assert_eq!(doc["event"]["category"], json!(["iam"]));
        assert_eq!(doc["event"]["type"], json!(["creation"]));
        assert_eq!(doc["user"]["name"], "bob");
        assert_eq!(doc["user"]["effective"]["name"], "system:admin");
        assert_eq!(
            doc["user"]["effective"]["group"]["name"],
            json!(["system:masters"])
        );
        assert!(doc["user"]["effective"].get("id").is_none());
        assert_eq!(doc["related"]["user"], json!(["bob", "system:admin"]));
        assert_eq!(
            doc["orchestrator"]["api_version"],
            "rbac.authorization.k8s.io/v1"
        );
        assert_eq!(
            doc["orchestrator"]["resource"]["type"],
            "clusterrolebindings"
        );
        assert_eq!(doc["orchestrator"]["resource"]["name"], "backdoor");
        assert!(doc["orchestrator"].get("namespace").is_none());
        assert_eq!(doc["tripline"]["suppressed_count"], 3);
        assert_eq!(
            doc["threat"]["tactic"]["name"],
            json!(["Privilege Escalation", "Persistence"])
        );
        assert_eq!(doc["threat"]["technique"]["id"], json!(["T1098", "T1134"]));
        assert_no_nulls(&doc, "$");
    }

    #[test]
    fn forwarded_ips_choose_the_last_entry() {
        let mut event = exec_event();
        // The client sent "X-Forwarded-For: 127.0.0.1, 10.0.0.1"; the proxy at 172.16.0.9 connected.
        event["sourceIPs"] = json!(["127.0.0.1", "10.0.0.1", "127.0.0.1", "172.16.0.9"]);
        let doc = render_alert(&event, &rule(&[]), "m", None, 0);
        assert_eq!(doc["source"]["ip"], "172.16.0.9");
        assert_eq!(
            doc["related"]["ip"],
            json!(["127.0.0.1", "10.0.0.1", "172.16.0.9"])
        );

        event["sourceIPs"] = json!(["2001:db8::1", "not-an-ip"]);
        let doc = render_alert(&event, &rule(&[]), "m", None, 0);
        assert!(
            doc.get("source").is_none(),
            "an invalid last entry is not replaced by an earlier one"
        );
        assert_eq!(doc["related"]["ip"], json!(["2001:db8::1"]));
    }

    #[test]
    fn threat_mapping_tactics_and_subtechniques() {
        let tags: Vec<String> = [
            "attack.credential_access",
            "attack.credential-access",
            "attack.t1552.007",
            "attack.T1552",
            "attack.Privilege-Escalation",
            "attack.ta0007",
            "attack.t1611",
            "attack.g0139",
            "attack.s0683",
            "attack.not-a-tactic",
            "car.2019-04-004",
            "cve.2018-1002105",
        ]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
        let threat = threat_from_tags(&tags).expect("attack tags give a threat");
        assert_eq!(
            threat,
            json!({
                "framework": "MITRE ATT&CK",
                "tactic": {
                    "id": ["TA0006", "TA0004", "TA0007"],
                    "name": ["Credential Access", "Privilege Escalation", "Discovery"],
                    "reference": [
                        "https://attack.mitre.org/tactics/TA0006/",
                        "https://attack.mitre.org/tactics/TA0004/",
                        "https://attack.mitre.org/tactics/TA0007/"
                    ]
                },
                "technique": {
                    "id": ["T1552", "T1611"],
                    "name": ["Unsecured Credentials", "Escape to Host"],
                    "reference": [
                        "https://attack.mitre.org/techniques/T1552/",
                        "https://attack.mitre.org/techniques/T1611/"
                    ],
                    "subtechnique": {
                        "id": ["T1552.007"],
                        "name": ["Container API"],
                        "reference": ["https://attack.mitre.org/techniques/T1552/007/"]
                    }
                }
            })
        );
    }

    #[test]
    fn threat_mapping_edge_cases() {
        let tags = |t: &[&str]| t.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(threat_from_tags(&[]), None);
        assert_eq!(
            threat_from_tags(&tags(&["cve.2021-25741", "detection.threat-hunting"])),
            None
        );
        assert_eq!(
            threat_from_tags(&tags(&["attack.g0032", "attack.t155", "attack.t1552.07"])),
            None
        );

        // Unknown technique: named by its id so the lists stay aligned.
        let threat = threat_from_tags(&tags(&["attack.t1999.123"])).expect("technique");
        assert!(threat.get("tactic").is_none());
        assert_eq!(threat["technique"]["id"], json!(["T1999"]));
        assert_eq!(threat["technique"]["name"], json!(["T1999"]));
        assert_eq!(
            threat["technique"]["subtechnique"]["name"],
            json!(["T1999.123"])
        );
        assert_eq!(
            threat["technique"]["subtechnique"]["reference"],
            json!(["https://attack.mitre.org/techniques/T1999/123/"])
        );

        // Tactic only: no technique object.
        let threat = threat_from_tags(&tags(&["attack.command_and_control"])).expect("tactic");
        assert_eq!(threat["tactic"]["id"], json!(["TA0011"]));
        assert!(threat.get("technique").is_none());
    }

    #[test]
    fn tables_are_consistent() {
        assert_eq!(TACTICS.len(), 14);
        for (i, t) in TACTICS.iter().enumerate() {
            assert!(TACTICS[i + 1..]
                .iter()
                .all(|u| u.id != t.id && u.slug != t.slug));
        }
        for (i, (id, name)) in TECHNIQUES.iter().enumerate() {
            assert!(parse_technique(&id.to_ascii_lowercase()).is_some(), "{id}");
            assert!(!name.is_empty());
            assert!(
                TECHNIQUES[i + 1..].iter().all(|(other, _)| other != id),
                "duplicate {id}"
            );
        }
    }

    #[test]
    fn categories_types_and_outcomes() {
        let cases: [(Value, &str, &str, &str); 10] = [
            (
                json!({"verb": "patch", "objectRef": {"resource": "roles", "apiGroup": "rbac.authorization.k8s.io"}, "responseStatus": {"code": 403}}),
                "iam",
                "change",
                "failure",
            ),
            (
                json!({"verb": "get", "objectRef": {"resource": "serviceaccounts"}, "responseStatus": {"code": 200}}),
                "iam",
                "access",
                "success",
            ),
            (
                json!({"verb": "create", "objectRef": {"resource": "certificatesigningrequests", "apiGroup": "certificates.k8s.io"}}),
                "iam",
                "creation",
                "unknown",
            ),
            (
                json!({"verb": "create", "objectRef": {"resource": "tokenreviews"}, "responseStatus": {"code": 201}}),
                "iam",
                "creation",
                "success",
            ),
            (
                json!({"verb": "get", "objectRef": {"resource": "pods", "subresource": "attach"}, "responseStatus": {"code": 101}}),
                "process",
                "access",
                "success",
            ),
            (
                json!({"verb": "create", "objectRef": {"resource": "pods", "subresource": "log"}}),
                "configuration",
                "creation",
                "unknown",
            ),
            (
                json!({"verb": "deletecollection", "objectRef": {"resource": "pods"}, "responseStatus": {"code": 500}}),
                "configuration",
                "deletion",
                "failure",
            ),
            (
                json!({"verb": "watch", "user": {"groups": ["system:unauthenticated"]}}),
                "authentication",
                "access",
                "unknown",
            ),
            (
                json!({"verb": "proxy", "responseStatus": {"code": "200"}}),
                "configuration",
                "info",
                "unknown",
            ),
            (
                json!({"responseStatus": {"code": 0}}),
                "configuration",
                "info",
                "unknown",
            ),
        ];
        for (event, category, event_type, outcome) in cases {
            let doc = render_alert(&event, &rule(&[]), "", None, 0);
            assert_eq!(doc["event"]["category"], json!([category]), "{event}");
            assert_eq!(doc["event"]["type"], json!([event_type]), "{event}");
            assert_eq!(doc["event"]["outcome"], outcome, "{event}");
            assert!(doc.get("message").is_none());
            assert_no_nulls(&doc, "$");
        }
    }

    #[test]
    fn timestamps_fall_back_and_skip_invalid() {
        let cases = [
            (
                json!({"stageTimestamp": "2024-05-01T10:00:01Z", "requestReceivedTimestamp": "2024-05-01T10:00:00Z"}),
                Some("2024-05-01T10:00:01Z"),
            ),
            (
                json!({"requestReceivedTimestamp": "2024-05-01T10:00:00Z"}),
                Some("2024-05-01T10:00:00Z"),
            ),
            (
                json!({"stageTimestamp": "yesterday", "requestReceivedTimestamp": "2024-05-01T10:00:00+02:00"}),
                Some("2024-05-01T10:00:00+02:00"),
            ),
            (
                json!({"timestamp": "2019-01-01T00:00:00Z"}),
                Some("2019-01-01T00:00:00Z"),
            ),
            (json!({"stageTimestamp": 1714557600}), None),
            (json!({}), None),
        ];
        for (event, expected) in cases {
            let doc = render_alert(&event, &rule(&[]), "m", None, 0);
            assert_eq!(
                doc.get("@timestamp").and_then(Value::as_str),
                expected,
                "{event}"
            );
        }
    }

    #[test]
    fn documents_are_what_field_by_field_building_gave() {
        let template = AlertTemplate::new(&rule(&["attack.execution", "attack.t1609"]));
        let events = vec![
            exec_event(),
            json!({}),
            json!(null),
            json!([1]),
            json!({"user": {"username": "system:anonymous"}, "responseStatus": {"code": 401.5}}),
            json!({"user": {"username": "x", "groups": ["system:unauthenticated", 4]},
                   "impersonatedUser": {"username": "y", "uid": "u", "groups": ["g", "", null]},
                   "sourceIPs": ["10.0.0.1", "not-an-ip", "10.0.0.1", "2001:db8::1"],
                   "objectRef": {"resource": "clusterrolebindings", "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
                   "responseStatus": {"code": 99},
                   "requestReceivedTimestamp": "2024-05-01T10:00:00+02:00",
                   "stageTimestamp": "yesterday", "timestamp": "2024-05-01T10:00:01Z"}),
            json!({"verb": "deletecollection", "objectRef": {"resource": "pods", "subresource": "attach"},
                   "responseStatus": {"code": 403}, "timestamp": "2024-13-01T10:00:00Z"}),
            json!({"user": {"username": "a\"b\u{1}"}, "userAgent": "ü\u{7f}", "requestURI": "/x\ny"}),
        ];
        for event in events {
            for (message, cluster, suppressed) in [("", None, 0), ("m \"q\"", Some("c"), 3)] {
                assert_eq!(
                    template.render(event.clone(), message, cluster, suppressed),
                    reference::render(&template, event.clone(), message, cluster, suppressed),
                    "{event}"
                );
            }
        }
    }

    #[test]
    fn no_nulls_from_nulls_and_odd_types_in_the_event() {
        let event = json!({
            "verb": null,
            "user": {"username": null, "uid": 7, "groups": [null, "", "ops", 3]},
            "impersonatedUser": null,
            "sourceIPs": null,
            "userAgent": "",
            "requestURI": ["/api"],
            "objectRef": {"resource": null, "namespace": null, "name": "", "apiGroup": "apps", "apiVersion": null},
            "responseStatus": null,
            "stageTimestamp": null
        });
        let rule = RuleMeta {
            description: None,
            author: Some(" , ".into()),
            references: Vec::new(),
            falsepositives: Vec::new(),
            tags: Vec::new(),
            ..rule(&[])
        };
        let mut doc = render_alert(&event, &rule, "m", Some(""), 0);
        let audit = doc
            .as_object_mut()
            .and_then(|d| d.get_mut("kubernetes"))
            .and_then(|k| k.as_object_mut())
            .and_then(|k| k.remove("audit"));
        // The embedded event is kept as given, nulls included.
        assert_eq!(audit, Some(event));
        assert_no_nulls(&doc, "$");
        assert_eq!(doc["user"], json!({"group": {"name": ["ops"]}}));
        assert_eq!(
            doc["rule"],
            json!({"id": "7b3a6f3e-5c1d-4a8e-9a4b-2f1e0c9d8a71", "name": "Exec into a pod", "ruleset": "tripline"})
        );
        assert_eq!(doc["orchestrator"], json!({"type": "kubernetes"}));
        assert!(doc.get("source").is_none());
        assert!(doc.get("url").is_none());
        assert!(doc.get("user_agent").is_none());
        assert!(doc["event"].get("action").is_none());
    }

    #[test]
    fn non_object_event_does_not_panic() {
        for event in [json!(null), json!("x"), json!([1, 2])] {
            let doc = render_alert(&event, &rule(&["attack.t1609"]), "m", None, 1);
            assert_eq!(doc["event"]["kind"], "alert");
            assert_eq!(doc["tripline"]["suppressed_count"], 1);
            assert_no_nulls(&doc, "$");
            // A `null` event is omitted rather than embedded as `null`.
            assert_eq!(
                doc.get("kubernetes").and_then(|k| k.get("audit")),
                (!event.is_null()).then_some(&event)
            );
        }
    }
}
