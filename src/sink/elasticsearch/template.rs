//! The index templates tripline installs: one mapping for alerts and events (both are ECS
//! documents with the audit event under `kubernetes.audit`).
//!
//! Request and response bodies, labels, annotations and `user.extra` hold arbitrary keys, some
//! with dots (`app` beside `app.kubernetes.io/name`), which dynamic mapping cannot index. They are
//! mapped as one `flattened` (Elasticsearch) or `flat_object` (OpenSearch) field each, and the
//! rest of `kubernetes.audit` is mapped explicitly with `dynamic: false`: a field the API server
//! adds in a later version stays in `_source` instead of breaking indexing.

use serde_json::{json, Value};

use super::Flavor;

/// The type for objects with arbitrary keys.
fn flat(flavor: Flavor) -> Value {
    match flavor {
        Flavor::Elasticsearch => {
            json!({ "type": "flattened", "depth_limit": 100, "ignore_above": 8191 })
        }
        Flavor::OpenSearch => json!({ "type": "flat_object" }),
    }
}

fn kw() -> Value {
    json!({ "type": "keyword", "ignore_above": 1024 })
}

fn date() -> Value {
    json!({ "type": "date", "ignore_malformed": true })
}

fn user(flavor: Flavor) -> Value {
    json!({
        "properties": {
            "username": kw(),
            "uid": kw(),
            "groups": kw(),
            "extra": flat(flavor),
        }
    })
}

/// `kubernetes.audit`: the audit event.
fn audit(flavor: Flavor) -> Value {
    json!({
        "dynamic": false,
        "properties": {
            "kind": kw(), "apiVersion": kw(), "level": kw(), "auditID": kw(),
            "stage": kw(), "requestURI": kw(), "verb": kw(),
            "user": user(flavor),
            "impersonatedUser": user(flavor),
            "sourceIPs": kw(),
            "userAgent": kw(),
            "objectRef": { "properties": {
                "resource": kw(), "namespace": kw(), "name": kw(), "uid": kw(),
                "apiGroup": kw(), "apiVersion": kw(), "resourceVersion": kw(),
                "subresource": kw()
            } },
            "responseStatus": { "properties": {
                "code": { "type": "long" }, "status": kw(), "reason": kw(),
                "message": { "type": "text" },
                "metadata": flat(flavor), "details": flat(flavor)
            } },
            "requestObject": flat(flavor),
            "responseObject": flat(flavor),
            "annotations": flat(flavor),
            "requestReceivedTimestamp": date(),
            "stageTimestamp": date(),
            "timestamp": date()
        }
    })
}

/// The mappings of both flows.
pub fn mappings(flavor: Flavor) -> Value {
    json!({
        "dynamic": true,
        "dynamic_templates": [
            { "strings_as_keyword": {
                "match_mapping_type": "string",
                "mapping": { "type": "keyword", "ignore_above": 1024 }
            } }
        ],
        "properties": {
            "@timestamp": { "type": "date" },
            "message": { "type": "text" },
            "ecs": { "properties": { "version": kw() } },
            "event": { "properties": {
                "kind": kw(), "category": kw(), "type": kw(), "action": kw(),
                "outcome": kw(), "module": kw(), "dataset": kw(), "provider": kw(),
                "severity": { "type": "long" }, "risk_score": { "type": "float" },
                "start": { "type": "date" }
            } },
            "rule": { "properties": {
                "id": kw(), "name": kw(), "ruleset": kw(), "reference": kw(),
                "author": kw(), "category": kw(), "license": kw(),
                "description": { "type": "text" }
            } },
            "threat": { "properties": {
                "framework": kw(),
                "tactic": { "properties": { "id": kw(), "name": kw(), "reference": kw() } },
                "technique": { "properties": {
                    "id": kw(), "name": kw(), "reference": kw(),
                    "subtechnique": { "properties": { "id": kw(), "name": kw(), "reference": kw() } }
                } }
            } },
            "user": { "properties": {
                "name": kw(), "id": kw(), "roles": kw(),
                "group": { "properties": { "name": kw() } },
                "target": { "properties": { "name": kw(), "id": kw() } }
            } },
            "source": { "properties": { "ip": { "type": "ip" } } },
            "related": { "properties": { "ip": { "type": "ip" }, "user": kw() } },
            "user_agent": { "properties": { "original": kw() } },
            "http": { "properties": { "response": { "properties": { "status_code": { "type": "long" } } } } },
            "url": { "properties": { "original": kw() } },
            "host": { "properties": { "name": kw() } },
            "orchestrator": { "properties": {
                "type": kw(), "namespace": kw(), "api_version": kw(),
                "cluster": { "properties": { "name": kw() } },
                "resource": { "properties": { "type": kw(), "name": kw() } }
            } },
            "tripline": { "properties": {
                "suppressed_count": { "type": "long" },
                "rule": { "properties": { "level": kw() } }
            } },
            // A Falco rule's alert: its output fields are named like `ka.uri` and
            // `ka.uri.param[command]`, which dynamic mapping would turn into a field and an
            // object of the same name: one flattened field holds them all.
            "falco": { "properties": {
                "rule": kw(), "priority": kw(), "source": kw(), "tags": kw(),
                "output_fields": flat(flavor)
            } },
            "kubernetes": { "properties": { "audit": audit(flavor) } }
        }
    })
}

/// The composable index template for `patterns`.
pub fn index_template(
    flavor: Flavor,
    patterns: &[String],
    data_stream: bool,
    settings: &Value,
    priority: u32,
) -> Value {
    let mut t = json!({
        "index_patterns": patterns,
        "priority": priority,
        "template": {
            "mappings": mappings(flavor),
        },
        "_meta": { "managed_by": "tripline" }
    });
    if settings.as_object().is_some_and(|o| !o.is_empty()) {
        t["template"]["settings"] = settings.clone();
    }
    if data_stream {
        t["data_stream"] = json!({});
    }
    t
}

/// The index pattern a template covers for an index name with date placeholders
/// (`tripline-alerts-%Y.%m.%d` -> `tripline-alerts-*`); a name without placeholders covers itself
/// and, for rollover-style suffixes, anything after it.
pub fn pattern_of(index: &str) -> String {
    match index.find('%') {
        Some(i) => format!("{}*", &index[..i]),
        None => format!("{index}*"),
    }
}
