//! The fields of an audit event that ECS fields come from, and the ECS values derived from them
//! (`event.category`, `event.type`, `event.outcome`).

use smallvec::SmallVec;

use serde_json::Value;

use crate::event::redact::Redacted;
use crate::event::{parse_timestamp, Event};

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

/// `event.category`; see [`render_alert`].
pub(super) fn category(f: &AuditFields<'_>) -> &'static str {
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
pub(super) fn event_type(verb: Option<&str>) -> &'static str {
    match verb {
        Some("create") => "creation",
        Some("update" | "patch") => "change",
        Some("delete" | "deletecollection") => "deletion",
        Some("get" | "list" | "watch") => "access",
        _ => "info",
    }
}

pub(super) fn outcome(code: Option<u64>) -> &'static str {
    match code {
        Some(code) if code < 400 => "success",
        Some(_) => "failure",
        None => "unknown",
    }
}

pub(super) fn get<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key))
}

/// The non-empty string at `path`.
pub(super) fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(value, path)?.as_str().filter(|s| !s.is_empty())
}

/// The non-empty strings of the array at `path` (other elements are skipped).
pub(super) fn strings_at<'a>(value: &'a Value, path: &[&str]) -> SmallVec<[&'a str; 4]> {
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
