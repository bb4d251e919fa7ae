//! GKE audit logs, **experimental**: a Cloud Logging entry whose `protoPayload` is a
//! `google.cloud.audit.AuditLog` of the Kubernetes API (`serviceName: k8s.io`), as
//! `gcloud logging read --format=json` prints it or a Logs Router sink exports it, rebuilt as an
//! `audit.k8s.io/v1` event. The mapping follows Google's description of GKE audit logs; it has
//! not been checked against real exports.
//!
//! How each field of the audit event is made:
//! - `verb`: the last segment of `methodName` (`io.k8s.core.v1.pods.exec.create`: `create`).
//! - `objectRef`: `resourceName` (`core/v1/namespaces/prod/pods/web-0/exec`; `core` is the empty
//!   group), split as the API server splits a URL; else `methodName` (resource and subresource).
//! - `requestURI`: rebuilt from `resourceName`, **without the query string**.
//! - `user.username`: `authenticationInfo.principalEmail`.
//! - `user.groups`: **inferred**, the groups Kubernetes authentication always adds:
//!   `system:unauthenticated` for `system:anonymous`; `system:serviceaccounts`,
//!   `system:serviceaccounts:<ns>` and `system:authenticated` for service accounts;
//!   `system:authenticated` for anyone else.
//! - `sourceIPs`, `userAgent`: `requestMetadata.callerIp`, `.callerSuppliedUserAgent`.
//! - `requestObject`, `responseObject`: `request`, `response`, without `@type`.
//! - `responseStatus.code`: from the gRPC `status.code`: 0 (or none) 200, 7 403, 16 401, 5 404,
//!   6 409, any other 500.
//! - `annotations`: `labels`; `authorization.k8s.io/decision` from
//!   `authorizationInfo[].granted` if the labels lack it.
//! - `auditID`: `operation.id`, else `insertId`.
//! - `requestReceivedTimestamp`, `stageTimestamp`: `timestamp`.
//! - `stage`: `ResponseStarted` for the first of several entries of an operation
//!   (`operation.first` without `last`) and for a successful exec, attach or port-forward logged
//!   as one entry; else `ResponseComplete`.
//! - `level`: `RequestResponse` with a response, `Request` with a request, else `Metadata`.
//!
//! Not in the entry, so never in the event: real group memberships (`system:masters`, Google
//! Groups), `user.extra`, `user.uid`, `impersonatedUser`, the query string (the exec command,
//! `dryRun`, selectors) and the HTTP status of successful requests (`201`, `101`).

use serde_json::{json, Map, Value};

/// Rebuilds the audit event of the Cloud Logging entry `text` (a JSON object with
/// `protoPayload`) as JSON text, or says why it is not a Kubernetes audit entry.
pub(super) fn entry_to_event(text: &str) -> Result<String, String> {
    let entry = super::json::parse_value(text).ok_or("not a JSON object")?;
    let p = entry
        .get("protoPayload")
        .and_then(Value::as_object)
        .ok_or("`protoPayload` is not an object")?;
    let method = str_at(p, "methodName").unwrap_or_default();
    if let Some(t) = str_at(p, "@type") {
        if !t.ends_with("google.cloud.audit.AuditLog") {
            return Err(format!("`protoPayload` is a `{t}`, not an AuditLog"));
        }
    }
    if let Some(service) = str_at(p, "serviceName") {
        if service != "k8s.io" {
            return Err(format!(
                "service `{service}` (method `{method}`) is not the Kubernetes API (`k8s.io`)"
            ));
        }
    }
    let verb = method
        .rsplit('.')
        .next()
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_lowercase()))
        .ok_or_else(|| format!("no verb at the end of methodName `{method}`"))?;

    let target = str_at(p, "resourceName")
        .and_then(Target::from_resource_name)
        .or_else(|| Target::from_method(method))
        .unwrap_or_default();

    let grpc = p
        .get("status")
        .and_then(|s| s.get("code"))
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let (code, reason) = http_status(grpc);

    let mut ev = Map::new();
    ev.insert("kind".into(), json!("Event"));
    ev.insert("apiVersion".into(), json!("audit.k8s.io/v1"));
    let (request, response) = (body(p.get("request")), body(p.get("response")));
    let level = match (&request, &response) {
        (_, Some(_)) => "RequestResponse",
        (Some(_), None) => "Request",
        (None, None) => "Metadata",
    };
    ev.insert("level".into(), json!(level));
    let op = entry.get("operation");
    if let Some(id) = op
        .and_then(|o| o.get("id"))
        .or_else(|| entry.get("insertId"))
        .and_then(Value::as_str)
    {
        ev.insert("auditID".into(), json!(id));
    }
    let flag = |k: &str| op.and_then(|o| o.get(k)).and_then(Value::as_bool) == Some(true);
    let connect = matches!(
        target.subresource.as_deref(),
        Some("exec" | "attach" | "portforward")
    );
    let stage = match (flag("first"), flag("last")) {
        (true, false) => "ResponseStarted",
        (false, true) => "ResponseComplete",
        _ if connect && code < 300 => "ResponseStarted",
        _ => "ResponseComplete",
    };
    ev.insert("stage".into(), json!(stage));
    if let Some(uri) = target.request_uri() {
        ev.insert("requestURI".into(), json!(uri));
    }
    ev.insert("verb".into(), json!(verb));

    let auth = p.get("authenticationInfo");
    if let Some(user) = auth
        .and_then(|a| a.get("principalEmail"))
        .and_then(Value::as_str)
    {
        ev.insert(
            "user".into(),
            json!({"username": user, "groups": implied_groups(user)}),
        );
    }
    let meta = p.get("requestMetadata");
    if let Some(ip) = meta.and_then(|m| m.get("callerIp")).and_then(Value::as_str) {
        ev.insert("sourceIPs".into(), json!([ip]));
    }
    if let Some(ua) = meta
        .and_then(|m| m.get("callerSuppliedUserAgent"))
        .and_then(Value::as_str)
    {
        ev.insert("userAgent".into(), json!(ua));
    }
    if let Some(o) = target.object_ref() {
        ev.insert("objectRef".into(), o);
    }
    let mut status = json!({"metadata": {}, "code": code});
    if let Some(reason) = reason {
        status["status"] = json!("Failure");
        status["reason"] = json!(reason);
        if let Some(m) = p
            .get("status")
            .and_then(|s| s.get("message"))
            .and_then(Value::as_str)
        {
            status["message"] = json!(m);
        }
    }
    ev.insert("responseStatus".into(), status);
    if let Some(r) = request {
        ev.insert("requestObject".into(), r);
    }
    if let Some(r) = response {
        ev.insert("responseObject".into(), r);
    }
    if let Some(t) = entry.get("timestamp").and_then(Value::as_str) {
        ev.insert("requestReceivedTimestamp".into(), json!(t));
        ev.insert("stageTimestamp".into(), json!(t));
    }
    let annotations = annotations(&entry, p);
    if !annotations.is_empty() {
        ev.insert("annotations".into(), Value::Object(annotations));
    }
    serde_json::to_string(&Value::Object(ev)).map_err(|e| e.to_string())
}

fn str_at<'v>(m: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
    m.get(key).and_then(Value::as_str)
}

/// A request or response body, without the `@type` Cloud Logging adds. `null` is absent.
fn body(v: Option<&Value>) -> Option<Value> {
    let mut v = v.filter(|v| !v.is_null())?.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("@type");
    }
    Some(v)
}

/// The HTTP status of a gRPC status code, and the `reason` of a failure.
fn http_status(grpc: i64) -> (i64, Option<&'static str>) {
    match grpc {
        0 => (200, None),
        7 => (403, Some("Forbidden")),
        16 => (401, Some("Unauthorized")),
        5 => (404, Some("NotFound")),
        6 => (409, Some("AlreadyExists")),
        _ => (500, Some("InternalError")),
    }
}

/// The groups Kubernetes authentication always gives this user (the entry has no groups).
fn implied_groups(user: &str) -> Vec<String> {
    if user == "system:anonymous" {
        return vec!["system:unauthenticated".into()];
    }
    let mut groups = Vec::new();
    if let Some(ns) = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
        .map(|(ns, _)| ns)
    {
        groups.push("system:serviceaccounts".to_string());
        groups.push(format!("system:serviceaccounts:{ns}"));
    }
    groups.push("system:authenticated".into());
    groups
}

/// `labels` (string values) and, if they lack it, the authorizer's decision from
/// `authorizationInfo`.
fn annotations(entry: &Value, p: &Map<String, Value>) -> Map<String, Value> {
    let mut out: Map<String, Value> = entry
        .get("labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.iter()
                .filter(|(_, v)| v.is_string())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    const DECISION: &str = "authorization.k8s.io/decision";
    if !out.contains_key(DECISION) {
        let granted: Vec<bool> = p
            .get("authorizationInfo")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("granted").and_then(Value::as_bool))
            .collect();
        if !granted.is_empty() {
            let d = if granted.iter().all(|g| *g) {
                "allow"
            } else {
                "forbid"
            };
            out.insert(DECISION.into(), json!(d));
        }
    }
    out
}

/// What a request was made on, from `resourceName` or `methodName`.
#[derive(Debug, Default, PartialEq)]
struct Target {
    group: String,
    version: String,
    /// The path after `group/version`, as in the URL.
    path: Vec<String>,
    resource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
    /// A non-resource URL (`/healthz`).
    non_resource: Option<String>,
}

/// `v1`, `v1beta1`, `v2alpha3`.
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let rest = &rest[digits..];
    rest.is_empty()
        || ["alpha", "beta"].iter().any(|p| {
            rest.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Groups without a domain, whose `methodName` nevertheless reads `io.k8s.<group>`.
const LEGACY_GROUPS: &[&str] = &[
    "core",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "extensions",
];

impl Target {
    /// `core/v1/namespaces/prod/pods/web-0/exec`,
    /// `rbac.authorization.k8s.io/v1/clusterrolebindings/x`, or a non-resource URL (`/healthz`).
    fn from_resource_name(name: &str) -> Option<Target> {
        if name.starts_with('/') {
            return Some(Target {
                non_resource: Some(name.to_string()),
                ..Target::default()
            });
        }
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) || !is_version(parts[1]) {
            return None;
        }
        let group = if parts[0] == "core" { "" } else { parts[0] };
        Some(Target::resolve(group, parts[1], &parts[2..]))
    }

    /// `io.k8s.core.v1.pods.exec.create`: the group (its segments read backwards), version,
    /// resource and subresource; no namespace or name.
    fn from_method(method: &str) -> Option<Target> {
        let segs: Vec<&str> = method.split('.').collect();
        let v = segs.iter().position(|s| is_version(s))?;
        let mut group: Vec<&str> = segs[..v].to_vec();
        group.reverse();
        let mut group = group.join(".");
        if let Some(short) = group.strip_suffix(".k8s.io") {
            if LEGACY_GROUPS.contains(&short) {
                group = if short == "core" { "" } else { short }.to_string();
            }
        }
        // After the version: resource, optional subresource, verb.
        let rest = &segs[v + 1..];
        let (resource, sub) = match rest {
            [r, _verb] => (*r, None),
            [r, s, _verb] => (*r, Some(*s)),
            _ => return None,
        };
        Some(Target {
            version: segs[v].to_string(),
            group,
            resource: Some(resource.to_string()),
            subresource: sub.map(str::to_string),
            ..Target::default()
        })
    }

    /// Splits a path after `group/version` as the API server's request-info parser does.
    fn resolve(group: &str, version: &str, path: &[&str]) -> Target {
        let mut t = Target {
            group: group.to_string(),
            version: version.to_string(),
            path: path.iter().map(|s| s.to_string()).collect(),
            ..Target::default()
        };
        let mut parts = path;
        if parts.first() == Some(&"namespaces") && parts.len() > 1 {
            t.namespace = Some(parts[1].to_string());
            // `namespaces/prod/pods/...` names a resource in the namespace; `namespaces/prod`,
            // `namespaces/prod/status` and `.../finalize` are the namespace itself.
            if parts.len() > 2 && !matches!(parts[2], "status" | "finalize") {
                parts = &parts[2..];
            }
        }
        let at = |i: usize| parts.get(i).map(|s| s.to_string());
        t.resource = at(0);
        t.name = at(1);
        t.subresource = at(2);
        t
    }

    fn object_ref(&self) -> Option<Value> {
        let resource = self.resource.as_ref()?;
        let mut o = json!({"resource": resource, "apiVersion": self.version});
        if !self.group.is_empty() {
            o["apiGroup"] = json!(self.group);
        }
        for (k, v) in [
            ("namespace", &self.namespace),
            ("name", &self.name),
            ("subresource", &self.subresource),
        ] {
            if let Some(v) = v {
                o[k] = json!(v);
            }
        }
        Some(o)
    }

    fn request_uri(&self) -> Option<String> {
        if let Some(u) = &self.non_resource {
            return Some(u.clone());
        }
        if self.path.is_empty() {
            return None;
        }
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        Some(format!("{prefix}/{}", self.path.join("/")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        ns: Option<&str>,
        res: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) {
        let s = |v: Option<&str>| v.map(str::to_string);
        (s(ns), Some(res.to_string()), s(name), s(sub))
    }

    #[test]
    fn resource_names_split_like_the_api_servers_request_info() {
        let cases = [
            (
                "core/v1/namespaces/prod/pods/web-0/exec",
                "",
                t(Some("prod"), "pods", Some("web-0"), Some("exec")),
                "/api/v1/namespaces/prod/pods/web-0/exec",
            ),
            (
                "core/v1/namespaces/prod/pods",
                "",
                t(Some("prod"), "pods", None, None),
                "/api/v1/namespaces/prod/pods",
            ),
            (
                "apps/v1/namespaces/ns/deployments/x",
                "apps",
                t(Some("ns"), "deployments", Some("x"), None),
                "/apis/apps/v1/namespaces/ns/deployments/x",
            ),
            (
                "rbac.authorization.k8s.io/v1/clusterrolebindings/x",
                "rbac.authorization.k8s.io",
                t(None, "clusterrolebindings", Some("x"), None),
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/x",
            ),
            (
                "core/v1/namespaces/prod",
                "",
                t(Some("prod"), "namespaces", Some("prod"), None),
                "/api/v1/namespaces/prod",
            ),
            (
                "core/v1/namespaces/prod/finalize",
                "",
                t(Some("prod"), "namespaces", Some("prod"), Some("finalize")),
                "/api/v1/namespaces/prod/finalize",
            ),
            (
                "core/v1/namespaces",
                "",
                t(None, "namespaces", None, None),
                "/api/v1/namespaces",
            ),
            (
                "core/v1/nodes/n1/status",
                "",
                t(None, "nodes", Some("n1"), Some("status")),
                "/api/v1/nodes/n1/status",
            ),
            (
                "batch/v1beta1/cronjobs",
                "batch",
                t(None, "cronjobs", None, None),
                "/apis/batch/v1beta1/cronjobs",
            ),
        ];
        for (name, group, (ns, res, n, sub), uri) in cases {
            let got = Target::from_resource_name(name).unwrap();
            assert_eq!(
                (
                    got.group.as_str(),
                    got.namespace.clone(),
                    got.resource.clone(),
                    got.name.clone(),
                    got.subresource.clone()
                ),
                (group, ns, res, n, sub),
                "{name}"
            );
            assert_eq!(got.request_uri().as_deref(), Some(uri), "{name}");
        }
        for bad in ["", "pods", "core/pods/x", "core//pods"] {
            assert_eq!(Target::from_resource_name(bad), None, "{bad}");
        }
        assert_eq!(
            Target::from_resource_name("/healthz")
                .unwrap()
                .request_uri()
                .as_deref(),
            Some("/healthz")
        );
    }

    #[test]
    fn method_names_give_group_resource_and_subresource_when_there_is_no_resource_name() {
        let cases = [
            ("io.k8s.core.v1.pods.exec.create", "", "pods", Some("exec")),
            ("io.k8s.core.v1.secrets.list", "", "secrets", None),
            (
                "io.k8s.apps.v1.deployments.patch",
                "apps",
                "deployments",
                None,
            ),
            (
                "io.k8s.authorization.rbac.v1.clusterrolebindings.create",
                "rbac.authorization.k8s.io",
                "clusterrolebindings",
                None,
            ),
            (
                "io.k8s.networking.v1.networkpolicies.delete",
                "networking.k8s.io",
                "networkpolicies",
                None,
            ),
        ];
        for (method, group, resource, sub) in cases {
            let t = Target::from_method(method).unwrap();
            assert_eq!(
                (
                    t.group.as_str(),
                    t.resource.as_deref(),
                    t.subresource.as_deref()
                ),
                (group, Some(resource), sub),
                "{method}"
            );
        }
        assert_eq!(Target::from_method("io.k8s.get"), None);
    }

    #[test]
    fn versions_are_recognised() {
        for v in ["v1", "v2", "v1beta1", "v2alpha3", "v10"] {
            assert!(is_version(v), "{v}");
        }
        for v in ["v", "1", "vbeta1", "v1beta", "v1gamma1", "pods", "core"] {
            assert!(!is_version(v), "{v}");
        }
    }

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        let cases = [
            (0, 200),
            (7, 403),
            (16, 401),
            (5, 404),
            (6, 409),
            (3, 500),
            (13, 500),
        ];
        for (grpc, http) in cases {
            assert_eq!(http_status(grpc).0, http, "{grpc}");
        }
    }

    #[test]
    fn groups_are_the_ones_authentication_always_adds() {
        assert_eq!(
            implied_groups("system:anonymous"),
            ["system:unauthenticated"]
        );
        assert_eq!(
            implied_groups("system:serviceaccount:ci:deployer"),
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                "system:authenticated"
            ]
        );
        assert_eq!(
            implied_groups("alice@example.com"),
            ["system:authenticated"]
        );
    }
}
