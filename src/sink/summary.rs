//! The few ECS fields of an alert document that human-facing messages quote (syslog's message
//! text, the HTTP sink's Slack notifications), read without building the rest.

use serde::Deserialize;

/// The ECS fields of a document that messages and notifications quote. Reading them skips the
/// rest of the document (`kubernetes.audit` above all) without building it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Summary {
    pub message: Option<String>,
    pub user: Named,
    pub source: SummarySource,
    pub event: SummaryEvent,
    pub user_agent: SummaryUserAgent,
    pub orchestrator: SummaryOrchestrator,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Named {
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SummarySource {
    pub ip: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SummaryEvent {
    pub action: Option<String>,
    pub outcome: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SummaryUserAgent {
    pub original: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SummaryOrchestrator {
    pub namespace: Option<String>,
    pub cluster: Named,
    pub resource: SummaryResource,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SummaryResource {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub name: Option<String>,
}

impl Summary {
    /// The fields of `doc`; all `None` when it is not a JSON object of the expected shape.
    pub fn of(doc: &[u8]) -> Summary {
        serde_json::from_slice(doc).unwrap_or_default()
    }

    /// `<type>/<name>` of the resource (e.g. `pods/exec/api-1`), or what there is of it.
    pub fn resource(&self) -> Option<String> {
        let r = &self.orchestrator.resource;
        match (&r.kind, &r.name) {
            (Some(k), Some(n)) => Some(format!("{k}/{n}")),
            (Some(k), None) => Some(k.clone()),
            (None, Some(n)) => Some(n.clone()),
            (None, None) => None,
        }
    }

    /// A name for an event (no rule): `<verb> <resource type>`, e.g. `create pods/exec`.
    pub fn event_name(&self) -> String {
        match (&self.event.action, &self.orchestrator.resource.kind) {
            (Some(a), Some(r)) => format!("{a} {r}"),
            (Some(a), None) => a.clone(),
            (None, Some(r)) => r.clone(),
            (None, None) => "audit event".to_string(),
        }
    }
}
