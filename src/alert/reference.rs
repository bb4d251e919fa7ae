//! The ECS fields of a document as they were built before documents were written directly
//! (field by field into maps, from the redacted event as a value): an independent reference
//! for [`write_document`].

use std::net::IpAddr;

use super::fields::{event_type, get, outcome, str_at, strings_at};
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
