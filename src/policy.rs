//! `tripline policy check`: which rules of the loaded pack can never fire under an audit Policy
//! (`audit.k8s.io/v1`), because the events they need are not recorded, or not at a level that
//! keeps the request or response bodies they read, or only at stages they do not look at.
//!
//! The check replays each rule's own positive examples (its embedded `tests`): an example is
//! evaluated against the policy as the API server would (the first matching rule gives the level;
//! `omitStages` drops stages), cut down to what that level records (`Metadata` has no bodies,
//! `Request` no response body), and matched again. A rule passes if one of its examples still
//! matches. A rule without examples cannot be checked and is reported as such.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::event::decode_value_into;
use crate::rules::model::Rule;

/// The audit levels, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub enum AuditLevel {
    None,
    Metadata,
    Request,
    RequestResponse,
}

/// An audit `Policy`. Unknown fields are errors (a misspelled key would silently change what
/// is recorded).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub rules: Vec<PolicyRule>,
    #[serde(default)]
    pub omit_stages: Vec<String>,
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    pub level: AuditLevel,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<String>,
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// What the API server's policy checker sees of a request, rebuilt from its audit event.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// Name and groups; `None` when authentication failed (the event's user is empty).
    pub user: Option<(String, Vec<String>)>,
    pub verb: String,
    /// `None` for non-resource requests (`/healthz`).
    pub resource: Option<ResourceRef>,
    /// The request path without the query.
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct ResourceRef {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}

impl Request {
    /// Reads the fields the policy matches on from an audit event.
    pub fn from_event(ev: &Value) -> Request {
        let s = |p: &str| {
            ev.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let name = s("/user/username");
        let groups = ev
            .pointer("/user/groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Request {
            user: (!name.is_empty()).then_some((name, groups)),
            verb: s("/verb"),
            resource: ev
                .pointer("/objectRef/resource")
                .is_some_and(Value::is_string)
                .then(|| ResourceRef {
                    group: s("/objectRef/apiGroup"),
                    resource: s("/objectRef/resource"),
                    subresource: s("/objectRef/subresource"),
                    namespace: s("/objectRef/namespace"),
                    name: s("/objectRef/name"),
                }),
            path: s("/requestURI").split('?').next().unwrap_or("").to_string(),
        }
    }
}

impl PolicyRule {
    /// k8s.io/apiserver/pkg/audit/policy/checker.go `ruleMatches`, line for line.
    pub fn matches(&self, r: &Request) -> bool {
        if !self.users.is_empty() && !r.user.as_ref().is_some_and(|(n, _)| self.users.contains(n)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !r
                .user
                .as_ref()
                .is_some_and(|(_, g)| g.iter().any(|g| self.user_groups.contains(g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&r.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(r);
        }
        if !self.non_resource_urls.is_empty() {
            return r.resource.is_none()
                && self.non_resource_urls.iter().any(|spec| {
                    spec == "*"
                        || *spec == r.path
                        || (spec.ends_with('*') && r.path.starts_with(spec.trim_end_matches('*')))
                });
        }
        true
    }

    /// `ruleMatchesResource`: the group must be equal; `*` is every resource and subresource,
    /// `*/sub` a subresource of any resource, `res/*` the resource and all its subresources.
    fn matches_resource(&self, r: &Request) -> bool {
        let Some(res) = &r.resource else {
            return false;
        };
        if !self.namespaces.is_empty() && !self.namespaces.contains(&res.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if res.subresource.is_empty() {
            res.resource.clone()
        } else {
            format!("{}/{}", res.resource, res.subresource)
        };
        self.resources
            .iter()
            .filter(|gr| gr.group == res.group)
            .any(|gr| {
                gr.resources.is_empty()
                    || gr.resources.iter().any(|p| {
                        (gr.resource_names.is_empty() || gr.resource_names.contains(&res.name))
                            && (*p == combined
                                || p == "*"
                                || (!res.subresource.is_empty()
                                    && p.strip_prefix("*/") == Some(res.subresource.as_str()))
                                || p.strip_suffix("/*") == Some(res.resource.as_str()))
                    })
            })
    }
}

/// Why an audit Policy file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{}{message}", path.as_ref().map(|p| format!("{p}: ")).unwrap_or_default())]
    Invalid {
        path: Option<String>,
        message: String,
    },
}

/// Why the API server would not record an event under a policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRecorded {
    /// The deciding rule (or none) gives level `None`.
    #[error("not recorded ({which})")]
    LevelNone { which: String },
    /// The event's stage is omitted.
    #[error("stage {stage} omitted ({which})")]
    StageOmitted { stage: String, which: String },
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            PolicyError::Invalid { message, .. } => PolicyError::Invalid {
                path: Some(name),
                message,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            path: None,
            message,
        };
        let p: Policy = serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if p.kind != "Policy" {
            return Err(invalid(format!("kind is `{}`, expected `Policy`", p.kind)));
        }
        if !matches!(
            p.api_version.as_str(),
            "audit.k8s.io/v1" | "audit.k8s.io/v1beta1"
        ) {
            return Err(invalid(format!(
                "apiVersion is `{}`, expected `audit.k8s.io/v1`",
                p.api_version
            )));
        }
        Ok(p)
    }

    /// The level and the omitted stages for `r` (no matching rule is `None`), and the index of
    /// the rule that decided.
    pub fn evaluate(&self, r: &Request) -> (AuditLevel, Vec<String>, Option<usize>) {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.matches(r) {
                let mut omit = self.omit_stages.clone();
                omit.extend(rule.omit_stages.iter().cloned());
                return (rule.level, omit, Some(i));
            }
        }
        (AuditLevel::None, self.omit_stages.clone(), None)
    }

    /// The event as the API server would record it under this policy (its bodies cut to the
    /// level; never more than the event itself holds), or why it would not be recorded.
    pub fn record(&self, event: &Value) -> Result<Value, NotRecorded> {
        let r = Request::from_event(event);
        let (level, omit, rule) = self.evaluate(&r);
        let which = match rule {
            Some(i) => format!("policy rule {}", i + 1),
            None => "no policy rule (level None)".to_string(),
        };
        if level == AuditLevel::None {
            return Err(NotRecorded::LevelNone { which });
        }
        let stage = event.get("stage").and_then(Value::as_str).unwrap_or("");
        if omit.iter().any(|s| s == stage) {
            return Err(NotRecorded::StageOmitted {
                stage: stage.to_string(),
                which,
            });
        }
        let mut out = event.clone();
        if let Some(o) = out.as_object_mut() {
            if level < AuditLevel::RequestResponse {
                o.remove("responseObject");
            }
            if level < AuditLevel::Request {
                o.remove("requestObject");
            }
            let recorded: AuditLevel = o
                .get("level")
                .cloned()
                .and_then(|l| serde_json::from_value(l).ok())
                .unwrap_or(AuditLevel::RequestResponse);
            o.insert(
                "level".into(),
                Value::String(format!("{:?}", level.min(recorded))),
            );
        }
        Ok(out)
    }
}

/// The verdict for one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One of its examples is recorded fully enough to match.
    CanFire,
    /// None is: each example's reason.
    Never(Vec<String>),
    /// The rule has no positive examples to replay.
    NoExamples,
}

/// Replays `rule`'s positive examples through `policy`.
pub fn check_rule(policy: &Policy, rule: &Rule) -> Verdict {
    let mut reasons = Vec::new();
    let mut any = false;
    for t in rule.tests.iter().filter(|t| t.expect_match) {
        any = true;
        let Ok(ev) = serde_json::from_str::<Value>(&t.event_json) else {
            reasons.push(format!("test `{}`: unreadable example", t.name));
            continue;
        };
        match policy.record(&ev) {
            Err(why) => reasons.push(format!("test `{}`: {why}", t.name)),
            Ok(recorded) => {
                let text = recorded.to_string();
                let mut hit = false;
                decode_value_into(&text, &mut |d| {
                    if let Ok(e) = d {
                        hit |= rule.detection_matches(e);
                    }
                });
                if hit {
                    return Verdict::CanFire;
                }
                let level = recorded.get("level").and_then(Value::as_str).unwrap_or("?");
                reasons.push(format!(
                    "test `{}`: recorded at {level}, which lacks fields the rule reads",
                    t.name
                ));
            }
        }
    }
    if any {
        Verdict::Never(reasons)
    } else {
        Verdict::NoExamples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    users: ["system:kube-proxy"]
  - level: None
    nonResourceURLs: ["/healthz*", "/readyz"]
  - level: Metadata
    resources: [{group: "", resources: ["secrets"]}]
  - level: RequestResponse
    resources: [{group: "", resources: ["pods/exec", "pods/attach"]}]
  - level: Request
    verbs: [create]
    resources: [{group: "apps", resources: ["*"]}, {group: "", resources: ["pods"]}]
  - level: Metadata
    omitStages: [ResponseStarted]
"#;

    fn ev(v: Value) -> Value {
        v
    }

    #[test]
    fn first_matching_rule_decides() {
        let p = Policy::parse(POLICY).unwrap();
        let level = |e: Value| p.evaluate(&Request::from_event(&e)).0;
        assert_eq!(
            level(ev(
                serde_json::json!({"user": {"username": "system:kube-proxy"}, "verb": "get", "objectRef": {"resource": "secrets"}})
            )),
            AuditLevel::None
        );
        assert_eq!(
            level(
                serde_json::json!({"verb": "get", "objectRef": {"resource": "secrets", "namespace": "a"}})
            ),
            AuditLevel::Metadata
        );
        assert_eq!(
            level(
                serde_json::json!({"verb": "create", "objectRef": {"resource": "pods", "subresource": "exec"}})
            ),
            AuditLevel::RequestResponse
        );
        assert_eq!(
            level(
                serde_json::json!({"verb": "create", "objectRef": {"resource": "pods", "subresource": "log"}})
            ),
            AuditLevel::Metadata,
            "pods does not cover pods/log"
        );
        assert_eq!(
            level(
                serde_json::json!({"verb": "create", "objectRef": {"apiGroup": "apps", "resource": "deployments"}})
            ),
            AuditLevel::Request
        );
        assert_eq!(
            level(serde_json::json!({"verb": "get", "requestURI": "/healthz/etcd"})),
            AuditLevel::None
        );
        assert_eq!(
            level(serde_json::json!({"verb": "get", "requestURI": "/version"})),
            AuditLevel::Metadata
        );
    }

    #[test]
    fn recording_cuts_bodies_and_omits_stages() {
        let p = Policy::parse(POLICY).unwrap();
        let e = serde_json::json!({"verb": "update", "stage": "ResponseComplete", "objectRef": {"resource": "configmaps"}, "requestObject": {"a": 1}, "responseObject": {"b": 2}});
        let r = p.record(&e).unwrap();
        assert!(r.get("requestObject").is_none() && r.get("responseObject").is_none());
        assert_eq!(r["level"], "Metadata");
        let e = serde_json::json!({"verb": "create", "stage": "ResponseComplete", "objectRef": {"resource": "pods"}, "requestObject": {"a": 1}, "responseObject": {"b": 2}});
        let r = p.record(&e).unwrap();
        assert!(r.get("requestObject").is_some() && r.get("responseObject").is_none());
        let e = serde_json::json!({"verb": "get", "stage": "ResponseStarted", "objectRef": {"resource": "configmaps"}});
        assert!(p
            .record(&e)
            .unwrap_err()
            .to_string()
            .contains("ResponseStarted omitted"));
        assert!(Policy::parse("kind: Pod\napiVersion: v1\n")
            .unwrap_err()
            .to_string()
            .contains("Policy"));
        assert!(Policy::parse(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Sometimes\n"
        )
        .is_err());
    }
}
