//! tripline's own "Audit Events Stopped" alert, raised when a source stays silent: what an
//! attacker covering tracks by turning audit logging off would cause.

use std::sync::Arc;

use crate::config::types::Flow;
use crate::rules::{Level, RuleMeta};
use crate::sink::{self, SinkBatch, SinkHandle};

/// The id of tripline's own "audit events stopped" alert.
pub const SILENCE_RULE_ID: &str = "5e1f0c3a-7a4e-4c59-9a3c-2f6d8b1e0a77";

pub(super) fn silence_alert(
    sinks: &[SinkHandle],
    source: &str,
    silent: bool,
    for_secs: u64,
    cluster: Option<&str>,
    node: Option<&str>,
) {
    if !silent {
        tracing::info!(source, "audit events resumed");
        return;
    }
    tracing::warn!(
        source,
        for_secs,
        "no audit events: audit logging may be off or the API server down"
    );
    let meta = RuleMeta {
        id: SILENCE_RULE_ID.to_string(),
        title: "Audit Events Stopped".to_string(),
        description: Some(
            "A tripline source delivered no audit events for longer than its silence threshold. Disabling audit logging or stopping the API server is what an attacker covering tracks would do; it also happens when the audit log path or policy changed.".to_string(),
        ),
        status: Some("stable".to_string()),
        author: Some("tripline".to_string()),
        date: None,
        modified: None,
        level: Level::High,
        tags: vec!["attack.defense-evasion".into(), "attack.t1562.008".into()],
        references: vec![],
        falsepositives: vec!["Idle test clusters; maintenance windows".into()],
        source: "builtin:pipeline".to_string(),
        ruleset: "tripline".to_string(),
    };
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let event = serde_json::json!({ "stageTimestamp": now });
    let message = format!("source `{source}` delivered no audit events for {for_secs} s");
    let mut doc = crate::alert::AlertTemplate::new(&meta)
        .with_host(node)
        .render(event, &message, cluster, 0);
    if let Some(obj) = doc.as_object_mut() {
        // There is no audit event behind this alert.
        obj.remove("kubernetes");
        obj.insert(
            "tripline".into(),
            serde_json::json!({ "source": source, "silent_seconds": for_secs }),
        );
    }
    let Ok(doc) = serde_json::to_vec(&doc) else {
        return;
    };
    let record = Arc::new(sink::Record {
        flow: Flow::Alerts,
        id: sink::content_id(&[
            SILENCE_RULE_ID.as_bytes(),
            source.as_bytes(),
            now.as_bytes(),
        ]),
        time: Some(chrono::Utc::now()),
        level: Some(meta.level),
        rule: Some((meta.id.clone(), meta.title.clone())),
        user: None,
        doc,
    });
    for s in sinks
        .iter()
        .filter(|s| s.takes(Flow::Alerts) && s.filter.takes_alert(meta.level, &meta.tags))
    {
        // Never blocks the control loop; a sink too far behind to take it says so.
        if s.tx
            .try_send(SinkBatch {
                records: vec![record.clone()],
                ack: None,
                charge: None,
            })
            .is_err()
        {
            tracing::error!(sink = %s.name, source, "sink queue full: the \"Audit Events Stopped\" alert was not delivered to it");
        }
    }
}
