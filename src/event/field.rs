//! Field paths (`objectRef.resource`, `annotations['authorization.k8s.io/decision']`,
//! `pod.containers.image`) and how they are read from an [`Event`].

use std::fmt;

use serde_json::Value;

use super::pod;
use super::view::Event;

/// A dotted field path split into segments; `a['b.c'].d` is `["a", "b.c", "d"]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(pub Vec<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid field path `{path}`: {reason}")]
pub struct PathError {
    pub path: String,
    pub reason: &'static str,
}

impl FieldPath {
    /// Parses `a.b['c.d'].e` (single or double quotes inside brackets).
    pub fn parse(path: &str) -> Result<FieldPath, PathError> {
        let err = |reason| PathError {
            path: path.to_string(),
            reason,
        };
        let mut segs = Vec::new();
        let mut cur = String::new();
        let mut chars = path.chars().peekable();
        let mut after_bracket = false;
        while let Some(c) = chars.next() {
            match c {
                '.' => {
                    if cur.is_empty() && !after_bracket {
                        return Err(err("empty segment"));
                    }
                    if !cur.is_empty() {
                        segs.push(std::mem::take(&mut cur));
                    }
                    after_bracket = false;
                }
                '[' => {
                    if !cur.is_empty() {
                        segs.push(std::mem::take(&mut cur));
                    }
                    let quote = match chars.next() {
                        Some(q @ ('\'' | '"')) => q,
                        _ => return Err(err("expected a quote after `[`")),
                    };
                    let mut key = String::new();
                    loop {
                        match chars.next() {
                            Some(c) if c == quote => break,
                            Some(c) => key.push(c),
                            None => return Err(err("unterminated bracket key")),
                        }
                    }
                    if chars.next() != Some(']') {
                        return Err(err("expected `]` after the quoted key"));
                    }
                    segs.push(key);
                    after_bracket = true;
                }
                _ => {
                    if after_bracket {
                        return Err(err("expected `.` or `[` after `]`"));
                    }
                    cur.push(c);
                }
            }
        }
        if !cur.is_empty() {
            segs.push(cur);
        } else if !after_bracket {
            return Err(err("empty segment"));
        }
        Ok(FieldPath(segs))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            let plain = !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if plain {
                if i > 0 {
                    f.write_str(".")?;
                }
                f.write_str(s)?;
            } else {
                write!(f, "['{s}']")?;
            }
        }
        Ok(())
    }
}

/// A field path resolved once, at rule compile time, to the cheapest way of reading it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldRef {
    Kind,
    ApiVersion,
    Level,
    AuditId,
    Stage,
    RequestUri,
    Verb,
    UserAgent,
    SourceIps,
    /// `source.ip`: the last entry of `sourceIPs`, the address that connected to the API server
    /// (earlier entries come from `X-Forwarded-For`, which the client controls).
    SourceIp,
    UserName,
    UserUid,
    UserGroups,
    /// `user.extra[...]` (rest of the path inside `extra`).
    UserExtra(Vec<String>),
    ImpersonatedName,
    ImpersonatedUid,
    ImpersonatedGroups,
    ImpersonatedExtra(Vec<String>),
    /// `user` or `impersonatedUser` as a whole (for `exists`).
    User,
    Impersonated,
    ObjResource,
    ObjSubresource,
    ObjNamespace,
    ObjName,
    ObjApiGroup,
    ObjApiVersion,
    ObjUid,
    ObjResourceVersion,
    StatusCode,
    StatusStatus,
    StatusReason,
    StatusMessage,
    RequestReceivedTimestamp,
    StageTimestamp,
    Timestamp,
    /// One annotation by key.
    Annotation(String),
    /// A path inside `requestObject` (empty: the whole object).
    RequestObject(Vec<String>),
    /// A path inside `responseObject`.
    ResponseObject(Vec<String>),
    /// A path inside the normalised pod spec (`pod.containers.image`).
    Pod(Vec<String>),
    /// Any other path, read from the whole event parsed on demand.
    Other(Vec<String>),
}

impl FieldRef {
    /// A rough rank of how expensive reading this field is: 0 for typed fields, higher for
    /// fields that parse raw JSON on first use. Used to order ANDed conditions.
    pub fn cost(&self) -> u8 {
        match self {
            FieldRef::SourceIps | FieldRef::UserGroups | FieldRef::ImpersonatedGroups => 1,
            FieldRef::Annotation(_) | FieldRef::UserExtra(_) | FieldRef::ImpersonatedExtra(_) => 2,
            FieldRef::RequestObject(_) | FieldRef::ResponseObject(_) | FieldRef::Pod(_) => 3,
            FieldRef::Other(_) => 4,
            _ => 0,
        }
    }

    /// True for the fields whose values redaction can change or remove: `requestURI` (tokens
    /// in query strings), annotations, `user.extra` and `impersonatedUser.extra`, the bodies
    /// and the pod spec read from them, and paths read from the whole event. The values of
    /// every other field are the same in an event and in its redacted copy.
    pub fn may_be_redacted(&self) -> bool {
        matches!(
            self,
            FieldRef::RequestUri
                | FieldRef::Annotation(_)
                | FieldRef::RequestObject(_)
                | FieldRef::ResponseObject(_)
                | FieldRef::Pod(_)
                | FieldRef::Other(_)
                | FieldRef::UserExtra(_)
                | FieldRef::ImpersonatedExtra(_)
        )
    }

    /// Resolves a parsed path. Never fails: unknown paths read the whole event.
    pub fn resolve(path: &FieldPath) -> FieldRef {
        let s: Vec<&str> = path.0.iter().map(String::as_str).collect();
        let rest = |n: usize| path.0[n..].to_vec();
        match s.as_slice() {
            ["kind"] => FieldRef::Kind,
            ["apiVersion"] => FieldRef::ApiVersion,
            ["level"] => FieldRef::Level,
            ["auditID"] => FieldRef::AuditId,
            ["stage"] => FieldRef::Stage,
            ["requestURI"] => FieldRef::RequestUri,
            ["verb"] => FieldRef::Verb,
            ["userAgent"] => FieldRef::UserAgent,
            ["sourceIPs"] => FieldRef::SourceIps,
            ["source", "ip"] => FieldRef::SourceIp,
            ["user"] => FieldRef::User,
            ["user", "username"] => FieldRef::UserName,
            ["user", "uid"] => FieldRef::UserUid,
            ["user", "groups"] => FieldRef::UserGroups,
            ["user", "extra", ..] => FieldRef::UserExtra(rest(2)),
            ["impersonatedUser"] => FieldRef::Impersonated,
            ["impersonatedUser", "username"] => FieldRef::ImpersonatedName,
            ["impersonatedUser", "uid"] => FieldRef::ImpersonatedUid,
            ["impersonatedUser", "groups"] => FieldRef::ImpersonatedGroups,
            ["impersonatedUser", "extra", ..] => FieldRef::ImpersonatedExtra(rest(2)),
            ["objectRef", "resource"] => FieldRef::ObjResource,
            ["objectRef", "subresource"] => FieldRef::ObjSubresource,
            ["objectRef", "namespace"] => FieldRef::ObjNamespace,
            ["objectRef", "name"] => FieldRef::ObjName,
            ["objectRef", "apiGroup"] => FieldRef::ObjApiGroup,
            ["objectRef", "apiVersion"] => FieldRef::ObjApiVersion,
            ["objectRef", "uid"] => FieldRef::ObjUid,
            ["objectRef", "resourceVersion"] => FieldRef::ObjResourceVersion,
            ["responseStatus", "code"] => FieldRef::StatusCode,
            ["responseStatus", "status"] => FieldRef::StatusStatus,
            ["responseStatus", "reason"] => FieldRef::StatusReason,
            ["responseStatus", "message"] => FieldRef::StatusMessage,
            ["requestReceivedTimestamp"] => FieldRef::RequestReceivedTimestamp,
            ["stageTimestamp"] => FieldRef::StageTimestamp,
            ["timestamp"] => FieldRef::Timestamp,
            ["annotations", key] => FieldRef::Annotation(key.to_string()),
            ["requestObject", ..] => FieldRef::RequestObject(rest(1)),
            ["responseObject", ..] => FieldRef::ResponseObject(rest(1)),
            ["pod", ..] => FieldRef::Pod(rest(1)),
            _ => FieldRef::Other(path.0.clone()),
        }
    }
}

/// One value read from an event. Arrays are flattened: a path through an array yields each
/// element's value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'e> {
    Str(&'e str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    /// An object (or an empty array): it exists, but equals no scalar.
    Object,
}

impl<'a> Event<'a> {
    /// Calls `f` with each value at `field`, stopping at the first call that returns true.
    /// Returns true if and only if some call returned true. A missing field yields nothing.
    /// Allocates only the first time a field inside a raw JSON part (bodies, annotations,
    /// `user.extra`, unknown fields) is read.
    pub fn any_value(&self, field: &FieldRef, f: &mut dyn FnMut(FieldValue<'_>) -> bool) -> bool {
        let s = |o: Option<&str>, f: &mut dyn FnMut(FieldValue<'_>) -> bool| match o {
            Some(v) => f(FieldValue::Str(v)),
            None => false,
        };
        let objref = self.object_ref.as_ref();
        let status = self.response_status.as_ref();
        match field {
            FieldRef::Kind => s(self.kind.as_deref(), f),
            FieldRef::ApiVersion => s(self.api_version.as_deref(), f),
            FieldRef::Level => s(self.level.as_deref(), f),
            FieldRef::AuditId => s(self.audit_id.as_deref(), f),
            FieldRef::Stage => s(self.stage.as_deref(), f),
            FieldRef::RequestUri => s(self.request_uri.as_deref(), f),
            FieldRef::Verb => s(self.verb.as_deref(), f),
            FieldRef::UserAgent => s(self.user_agent.as_deref(), f),
            FieldRef::SourceIps => self.source_ips.iter().any(|ip| f(FieldValue::Str(ip))),
            FieldRef::SourceIp => s(self.source_ips.last().map(|ip| &**ip), f),
            FieldRef::User => self.user.is_some() && f(FieldValue::Object),
            FieldRef::UserName => s(self.user.as_ref().and_then(|u| u.username.as_deref()), f),
            FieldRef::UserUid => s(self.user.as_ref().and_then(|u| u.uid.as_deref()), f),
            FieldRef::UserGroups => self
                .user
                .as_ref()
                .is_some_and(|u| u.groups.iter().any(|g| f(FieldValue::Str(g)))),
            FieldRef::UserExtra(path) => walk_opt(self.user_extra(false), path, f),
            FieldRef::Impersonated => self.impersonated_user.is_some() && f(FieldValue::Object),
            FieldRef::ImpersonatedName => s(
                self.impersonated_user
                    .as_ref()
                    .and_then(|u| u.username.as_deref()),
                f,
            ),
            FieldRef::ImpersonatedUid => s(
                self.impersonated_user
                    .as_ref()
                    .and_then(|u| u.uid.as_deref()),
                f,
            ),
            FieldRef::ImpersonatedGroups => self
                .impersonated_user
                .as_ref()
                .is_some_and(|u| u.groups.iter().any(|g| f(FieldValue::Str(g)))),
            FieldRef::ImpersonatedExtra(path) => walk_opt(self.user_extra(true), path, f),
            FieldRef::ObjResource => s(objref.and_then(|o| o.resource.as_deref()), f),
            FieldRef::ObjSubresource => s(objref.and_then(|o| o.subresource.as_deref()), f),
            FieldRef::ObjNamespace => s(objref.and_then(|o| o.namespace.as_deref()), f),
            FieldRef::ObjName => s(objref.and_then(|o| o.name.as_deref()), f),
            FieldRef::ObjApiGroup => s(objref.and_then(|o| o.api_group.as_deref()), f),
            FieldRef::ObjApiVersion => s(objref.and_then(|o| o.api_version.as_deref()), f),
            FieldRef::ObjUid => s(objref.and_then(|o| o.uid.as_deref()), f),
            FieldRef::ObjResourceVersion => {
                s(objref.and_then(|o| o.resource_version.as_deref()), f)
            }
            FieldRef::StatusCode => match status.and_then(|st| st.code) {
                Some(c) => f(FieldValue::Int(c)),
                None => false,
            },
            FieldRef::StatusStatus => s(status.and_then(|st| st.status.as_deref()), f),
            FieldRef::StatusReason => s(status.and_then(|st| st.reason.as_deref()), f),
            FieldRef::StatusMessage => s(status.and_then(|st| st.message.as_deref()), f),
            FieldRef::RequestReceivedTimestamp => s(self.request_received_timestamp.as_deref(), f),
            FieldRef::StageTimestamp => s(self.stage_timestamp.as_deref(), f),
            FieldRef::Timestamp => s(self.timestamp.as_deref(), f),
            FieldRef::Annotation(key) => s(self.annotation(key), f),
            FieldRef::RequestObject(path) => walk_opt(self.request_object(), path, f),
            FieldRef::ResponseObject(path) => walk_opt(self.response_object(), path, f),
            FieldRef::Pod(path) => pod::any_value(self, path, f),
            FieldRef::Other(path) => walk_opt(self.whole(), path, f),
        }
    }

    /// For fields that hold at most one typed value (verb, user name, objectRef parts, ...):
    /// `Some(value or None if absent)`, read without callbacks. `None` for every other field.
    #[inline]
    pub fn scalar(&self, field: &FieldRef) -> Option<Option<FieldValue<'_>>> {
        fn s(o: Option<&str>) -> Option<Option<FieldValue<'_>>> {
            Some(o.map(FieldValue::Str))
        }
        let objref = self.object_ref.as_ref();
        let status = self.response_status.as_ref();
        match field {
            FieldRef::Kind => s(self.kind.as_deref()),
            FieldRef::ApiVersion => s(self.api_version.as_deref()),
            FieldRef::Level => s(self.level.as_deref()),
            FieldRef::AuditId => s(self.audit_id.as_deref()),
            FieldRef::Stage => s(self.stage.as_deref()),
            FieldRef::RequestUri => s(self.request_uri.as_deref()),
            FieldRef::Verb => s(self.verb.as_deref()),
            FieldRef::UserAgent => s(self.user_agent.as_deref()),
            FieldRef::SourceIp => s(self.source_ips.last().map(|ip| &**ip)),
            FieldRef::UserName => s(self.user.as_ref().and_then(|u| u.username.as_deref())),
            FieldRef::UserUid => s(self.user.as_ref().and_then(|u| u.uid.as_deref())),
            FieldRef::ImpersonatedName => s(self
                .impersonated_user
                .as_ref()
                .and_then(|u| u.username.as_deref())),
            FieldRef::ObjResource => s(objref.and_then(|o| o.resource.as_deref())),
            FieldRef::ObjSubresource => s(objref.and_then(|o| o.subresource.as_deref())),
            FieldRef::ObjNamespace => s(objref.and_then(|o| o.namespace.as_deref())),
            FieldRef::ObjName => s(objref.and_then(|o| o.name.as_deref())),
            FieldRef::ObjApiGroup => s(objref.and_then(|o| o.api_group.as_deref())),
            FieldRef::ObjApiVersion => s(objref.and_then(|o| o.api_version.as_deref())),
            FieldRef::StatusCode => Some(status.and_then(|st| st.code).map(FieldValue::Int)),
            FieldRef::StatusReason => s(status.and_then(|st| st.reason.as_deref())),
            FieldRef::StatusStatus => s(status.and_then(|st| st.status.as_deref())),
            _ => None,
        }
    }

    /// For the typed string-list fields (`user.groups`, `impersonatedUser.groups`,
    /// `sourceIPs`): the list (empty when absent). `None` for every other field.
    #[inline]
    pub fn string_list(&self, field: &FieldRef) -> Option<&[std::borrow::Cow<'a, str>]> {
        match field {
            FieldRef::UserGroups => Some(self.user.as_ref().map_or(&[][..], |u| &u.groups[..])),
            FieldRef::ImpersonatedGroups => Some(
                self.impersonated_user
                    .as_ref()
                    .map_or(&[][..], |u| &u.groups[..]),
            ),
            FieldRef::SourceIps => Some(&self.source_ips[..]),
            _ => None,
        }
    }

    /// True if and only if `field` yields at least one value (JSON `null` counts as absent).
    pub fn has(&self, field: &FieldRef) -> bool {
        self.any_value(field, &mut |v| !matches!(v, FieldValue::Null))
    }

    /// The values at `field` rendered as strings (for output templates and reports).
    pub fn values_as_strings(&self, field: &FieldRef) -> Vec<String> {
        let mut out = Vec::new();
        self.any_value(field, &mut |v| {
            match v {
                FieldValue::Str(s) => out.push(s.to_string()),
                FieldValue::Int(i) => out.push(i.to_string()),
                FieldValue::Float(x) => out.push(x.to_string()),
                FieldValue::Bool(b) => out.push(b.to_string()),
                FieldValue::Null | FieldValue::Object => {}
            }
            false
        });
        out
    }
}

fn walk_opt(
    root: Option<&Value>,
    path: &[String],
    f: &mut dyn FnMut(FieldValue<'_>) -> bool,
) -> bool {
    match root {
        Some(v) => walk(v, path, f),
        None => false,
    }
}

/// Walks `path` from `v`, fanning out over arrays at any depth, and yields the leaves.
pub(crate) fn walk(v: &Value, path: &[String], f: &mut dyn FnMut(FieldValue<'_>) -> bool) -> bool {
    match v {
        Value::Array(items) => {
            if items.is_empty() && path.is_empty() {
                return f(FieldValue::Object);
            }
            items.iter().any(|item| walk(item, path, f))
        }
        Value::Object(map) => match path.split_first() {
            Some((head, rest)) => match map.get(head.as_str()) {
                Some(child) => walk(child, rest, f),
                None => false,
            },
            None => f(FieldValue::Object),
        },
        _ if !path.is_empty() => false,
        Value::String(s) => f(FieldValue::Str(s)),
        Value::Bool(b) => f(FieldValue::Bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => f(FieldValue::Int(i)),
            None => f(FieldValue::Float(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::Null => f(FieldValue::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_dots_and_brackets() {
        let cases: &[(&str, &[&str])] = &[
            ("verb", &["verb"]),
            ("objectRef.resource", &["objectRef", "resource"]),
            (
                "annotations['authorization.k8s.io/decision']",
                &["annotations", "authorization.k8s.io/decision"],
            ),
            (
                "requestObject.metadata.labels[\"pod-security.kubernetes.io/enforce\"]",
                &[
                    "requestObject",
                    "metadata",
                    "labels",
                    "pod-security.kubernetes.io/enforce",
                ],
            ),
            ("a['b'].c", &["a", "b", "c"]),
            ("a['b']['c.d']", &["a", "b", "c.d"]),
        ];
        for (input, want) in cases {
            let got = FieldPath::parse(input).unwrap();
            assert_eq!(
                got.0,
                want.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                "{input}"
            );
        }
    }

    #[test]
    fn bad_paths_are_rejected_with_a_reason() {
        for bad in ["", "a..b", ".a", "a.", "a[b]", "a['b'", "a['b']c"] {
            assert!(FieldPath::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn paths_display_round_trip() {
        for p in [
            "objectRef.resource",
            "annotations['authorization.k8s.io/decision']",
        ] {
            assert_eq!(FieldPath::parse(p).unwrap().to_string(), p);
        }
    }
}
