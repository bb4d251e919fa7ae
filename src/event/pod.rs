//! Normalised workload fields: `pod.<path>` reads the pod spec inside whatever workload object the
//! request carries, so one rule covers a Pod, a Deployment/StatefulSet/DaemonSet/ReplicaSet/Job/
//! ReplicationController/PodTemplate template, a CronJob's job template and ephemeral containers.
//!
//! `pod.containers` merges `containers`, `initContainers` and `ephemeralContainers`; `pod.kind` is
//! the top object's kind; any other `pod.X` is `X` of the pod spec.

use serde_json::Value;

use super::field::{walk, FieldValue};
use super::view::Event;

/// Where the pod spec sits in an object of this kind (or, for patches without `kind`, of this
/// `objectRef.resource`).
fn spec_path(kind: Option<&str>, resource: Option<&str>) -> Option<&'static [&'static str]> {
    const POD: &[&str] = &["spec"];
    const TEMPLATE: &[&str] = &["spec", "template", "spec"];
    const CRONJOB: &[&str] = &["spec", "jobTemplate", "spec", "template", "spec"];
    const PODTEMPLATE: &[&str] = &["template", "spec"];
    const EPHEMERAL: &[&str] = &[];
    match kind {
        Some("Pod") => Some(POD),
        Some(
            "Deployment"
            | "StatefulSet"
            | "DaemonSet"
            | "ReplicaSet"
            | "Job"
            | "ReplicationController",
        ) => Some(TEMPLATE),
        Some("CronJob") => Some(CRONJOB),
        Some("PodTemplate") => Some(PODTEMPLATE),
        Some("EphemeralContainers") => Some(EPHEMERAL),
        Some(_) => None,
        None => match resource {
            Some("pods") => Some(POD),
            Some(
                "deployments"
                | "statefulsets"
                | "daemonsets"
                | "replicasets"
                | "jobs"
                | "replicationcontrollers",
            ) => Some(TEMPLATE),
            Some("cronjobs") => Some(CRONJOB),
            Some("podtemplates") => Some(PODTEMPLATE),
            _ => None,
        },
    }
}

/// The request body (or, when the audit level kept only the response, the response body) of an
/// event that creates or changes a workload.
fn workload_object<'e>(event: &'e Event<'_>) -> Option<&'e Value> {
    event
        .request_object()
        .filter(|v| v.is_object())
        .or_else(|| event.response_object().filter(|v| v.is_object()))
}

/// The pod spec of the workload in `event`, and the workload's kind.
fn pod_spec<'e>(event: &'e Event<'_>) -> Option<(&'e Value, Option<&'e str>)> {
    let obj = workload_object(event)?;
    let kind = obj.get("kind").and_then(Value::as_str);
    // A `Status` or `List` response is not a workload.
    let resource = event.resource();
    let path = spec_path(kind, resource)?;
    let mut spec = obj;
    for seg in path {
        spec = spec.get(*seg)?;
    }
    Some((spec, kind))
}

pub(crate) fn any_value(
    event: &Event<'_>,
    path: &[String],
    f: &mut dyn FnMut(FieldValue<'_>) -> bool,
) -> bool {
    let Some((spec, kind)) = pod_spec(event) else {
        return false;
    };
    match path.split_first() {
        Some((head, rest)) if head == "kind" && rest.is_empty() => match kind {
            Some(k) => f(FieldValue::Str(k)),
            None => false,
        },
        Some((head, rest)) if head == "containers" => {
            ["containers", "initContainers", "ephemeralContainers"]
                .iter()
                .filter_map(|k| spec.get(*k))
                .any(|list| walk(list, rest, f))
        }
        _ => walk(spec, path, f),
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{decode_value_into, FieldPath, FieldRef};

    fn values(json: &str, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        let field = FieldRef::resolve(&FieldPath::parse(path).unwrap());
        decode_value_into(json, &mut |ev| out = ev.unwrap().values_as_strings(&field));
        out
    }

    #[test]
    fn pod_fields_cover_pods_workloads_and_cronjobs() {
        let pod = r#"{"kind":"Event","verb":"create","objectRef":{"resource":"pods"},"requestObject":{"kind":"Pod","spec":{"hostPID":true,"containers":[{"name":"a","image":"nginx"}],"initContainers":[{"name":"i","image":"busybox","securityContext":{"privileged":true}}]}}}"#;
        assert_eq!(values(pod, "pod.containers.image"), ["nginx", "busybox"]);
        assert_eq!(
            values(pod, "pod.containers.securityContext.privileged"),
            ["true"]
        );
        assert_eq!(values(pod, "pod.hostPID"), ["true"]);
        assert_eq!(values(pod, "pod.kind"), ["Pod"]);

        let deploy = r#"{"verb":"create","objectRef":{"resource":"deployments"},"requestObject":{"kind":"Deployment","spec":{"template":{"spec":{"containers":[{"image":"evil.io/miner:latest"}]}}}}}"#;
        assert_eq!(
            values(deploy, "pod.containers.image"),
            ["evil.io/miner:latest"]
        );

        let cron = r#"{"verb":"create","objectRef":{"resource":"cronjobs"},"requestObject":{"kind":"CronJob","spec":{"jobTemplate":{"spec":{"template":{"spec":{"volumes":[{"hostPath":{"path":"/"}}],"containers":[{"image":"x"}]}}}}}}}"#;
        assert_eq!(values(cron, "pod.volumes.hostPath.path"), ["/"]);

        // A strategic-merge patch carries no kind: the resource tells the shape.
        let patch = r#"{"verb":"patch","objectRef":{"resource":"daemonsets"},"requestObject":{"spec":{"template":{"spec":{"hostNetwork":true}}}}}"#;
        assert_eq!(values(patch, "pod.hostNetwork"), ["true"]);

        let eph = r#"{"verb":"patch","objectRef":{"resource":"pods","subresource":"ephemeralcontainers"},"requestObject":{"kind":"Pod","spec":{"ephemeralContainers":[{"image":"busybox","securityContext":{"privileged":true}}]}}}"#;
        assert_eq!(
            values(eph, "pod.containers.securityContext.privileged"),
            ["true"]
        );

        let not_workload = r#"{"verb":"create","objectRef":{"resource":"configmaps"},"requestObject":{"kind":"ConfigMap","spec":{"containers":[{"image":"x"}]}}}"#;
        assert!(values(not_workload, "pod.containers.image").is_empty());
    }
}
