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

use serde_json::{json, Map, Value};

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
/// constants), built once per rule and reused for each of its alerts.
#[derive(Debug, Clone)]
pub struct AlertTemplate(Map<String, Value>);

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
        AlertTemplate(doc.0)
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
        AlertTemplate(doc.0)
    }

    /// Adds `host.name`: the node whose API server wrote the event (the daemon's `node_name`).
    pub fn with_host(mut self, node_name: Option<&str>) -> AlertTemplate {
        if let Some(n) = node_name.filter(|n| !n.is_empty()) {
            let mut doc = Doc(std::mem::take(&mut self.0));
            doc.set("host.name", n);
            self.0 = doc.0;
        }
        self
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
        let mut doc = Doc(self.0.clone());
        event_fields(&mut doc, event, message, cluster_name, suppressed);
        Value::Object(doc.0)
    }

    /// The fields of the alert that depend on the event: [`AlertTemplate::render`] without the
    /// template's own fields, for [`Merged`] to combine with them when the alert is written
    /// (which spares a copy of the rule's fields per alert).
    pub fn render_event_fields(
        event: Value,
        message: &str,
        cluster_name: Option<&str>,
        suppressed: u64,
    ) -> Map<String, Value> {
        let mut doc = Doc::default();
        event_fields(&mut doc, event, message, cluster_name, suppressed);
        doc.0
    }

    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// Two objects as one: `over`'s members win, except that members that are objects on both
/// sides are merged in turn (what setting each field of `over` on a copy of `base` gives).
/// Serializes with the keys in order, as a `Map` does.
///
/// Setting a field replaces an object that was there, while this merges it: the two agree as
/// long as the event's fields never put an object where the rule's fields have one (they put
/// only scalars and lists under `event`, `tripline` and `host`, and `kubernetes.audit` where the
/// rule has nothing), which the alert tests check.
#[derive(Debug, Clone, Copy)]
pub struct Merged<'a> {
    pub base: &'a Map<String, Value>,
    pub over: &'a Map<String, Value>,
}

impl<'a> Merged<'a> {
    /// The merged object as a value (a copy): what it serializes to.
    pub fn to_value(self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// The value at a JSON pointer (`/user/name`, without `~` escapes) in the merged document.
    /// For a member that is an object on both sides (`/event`), the event's side alone.
    pub fn pointer(self, pointer: &str) -> Option<&'a Value> {
        let mut over = Some(self.over);
        let mut base = Some(self.base);
        let mut segments = pointer.strip_prefix('/')?.split('/').peekable();
        while let Some(seg) = segments.next() {
            let o = over.and_then(|m| m.get(seg));
            let b = base.and_then(|m| m.get(seg));
            if segments.peek().is_none() {
                return o.or(b);
            }
            // Below an object only where the merged document has one: the event's side wins
            // unless both sides are objects.
            (over, base) = match (o, b) {
                (Some(Value::Object(o)), Some(Value::Object(b))) => (Some(o), Some(b)),
                (Some(Value::Object(o)), _) => (Some(o), None),
                (Some(_), _) => return None,
                (None, Some(Value::Object(b))) => (None, Some(b)),
                (None, _) => return None,
            };
        }
        None
    }
}

impl serde::Serialize for Merged<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        use std::cmp::Ordering;
        let mut map = s.serialize_map(None)?;
        let (mut a, mut b) = (self.base.iter().peekable(), self.over.iter().peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => ka.as_str().cmp(kb.as_str()),
            };
            match order {
                Ordering::Less => {
                    if let Some((k, v)) = a.next() {
                        map.serialize_entry(k, v)?;
                    }
                }
                Ordering::Greater => {
                    if let Some((k, v)) = b.next() {
                        map.serialize_entry(k, v)?;
                    }
                }
                Ordering::Equal => {
                    if let (Some((_, va)), Some((k, vb))) = (a.next(), b.next()) {
                        match (va, vb) {
                            (Value::Object(base), Value::Object(over)) => {
                                map.serialize_entry(k, &Merged { base, over })?
                            }
                            _ => map.serialize_entry(k, vb)?,
                        }
                    }
                }
            }
        }
        map.end()
    }
}

/// Sets the fields of an alert or events-flow document that come from the event.
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

/// `event.category`; see [`render_alert`].
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

/// `responseStatus.code`, when it is a plausible HTTP status.
fn status_code(event: &Value) -> Option<u64> {
    get(event, &["responseStatus", "code"])
        .and_then(Value::as_u64)
        .filter(|code| (100..=599).contains(code))
}

fn is_timestamp(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// The non-empty string at `path`.
fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(value, path)?.as_str().filter(|s| !s.is_empty())
}

/// The non-empty strings of the array at `path` (other elements are skipped).
fn strings_at<'a>(value: &'a Value, path: &[&str]) -> Vec<&'a str> {
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
    fn the_two_parts_of_an_alert_write_and_read_as_the_whole_document() {
        let template = AlertTemplate::new(&rule(&["attack.execution", "attack.t1609"]))
            .with_host(Some("cp-1"));
        for suppressed in [0, 7] {
            let whole = template.render(exec_event(), "msg", Some("prod"), suppressed);
            let fields =
                AlertTemplate::render_event_fields(exec_event(), "msg", Some("prod"), suppressed);
            let merged = Merged {
                base: template.fields(),
                over: &fields,
            };
            // Objects on both sides (`event`, `tripline`) are merged, in key order.
            assert!(fields.contains_key("event") && template.fields().contains_key("event"));
            assert_eq!(
                serde_json::to_string(&merged).unwrap(),
                serde_json::to_string(&whole).unwrap()
            );
            assert_eq!(merged.to_value(), whole);
            for pointer in [
                "/event/kind",
                "/event/action",
                "/rule/id",
                "/user/name",
                "/host/name",
            ] {
                assert_eq!(merged.pointer(pointer), whole.pointer(pointer), "{pointer}");
                assert!(merged.pointer(pointer).is_some(), "{pointer}");
            }
            assert_eq!(merged.pointer("/event/nothing"), None);
            assert_eq!(merged.pointer("event"), None);
        }
        // A member set on both sides that is not an object on both: the event's side wins.
        let base = json!({"a": {"x": 1}, "b": 1, "c": {"y": 1}})
            .as_object()
            .unwrap()
            .clone();
        let over = json!({"a": 2, "b": {"z": 2}, "c": {"y": 3, "w": 4}})
            .as_object()
            .unwrap()
            .clone();
        let m = Merged {
            base: &base,
            over: &over,
        };
        let want = json!({"a": 2, "b": {"z": 2}, "c": {"w": 4, "y": 3}});
        assert_eq!(m.to_value(), want);
        assert_eq!(serde_json::to_value(m).unwrap(), want);
        // Pointers see the merged document, not what the event's side hides.
        for p in ["/a", "/a/x", "/b/z", "/c/y", "/c/w", "/c/v", "/d", ""] {
            assert_eq!(
                m.pointer(p),
                want.pointer(p).filter(|_| !p.is_empty()),
                "{p}"
            );
        }
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
