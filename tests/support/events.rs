//! Audit events for the integration tests: an exec that alerts, a pod with dotted label keys,
//! a Secret with its data in the bodies, and quiet events that raise nothing.

#![allow(dead_code)]

/// A value that must never reach a SIEM: the content of a Secret.
pub const SECRET: &str = "aHVudGVyMi1wcm9kLWRiLXBhc3N3b3Jk";

pub fn exec_event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/prod/pods/web-0/exec?command=sh","verb":"create","user":{{"username":"mallory@example.com","groups":["system:authenticated"]}},"sourceIPs":["203.0.113.7"],"userAgent":"kubectl/v1.29.0","objectRef":{{"resource":"pods","namespace":"prod","name":"web-0","apiVersion":"v1","subresource":"exec"}},"responseStatus":{{"code":101}},"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.050000Z","annotations":{{"authorization.k8s.io/decision":"allow"}}}}"#
    )
}

/// A pod create whose labels have both `app` and `app.kubernetes.io/name` (dynamic mapping
/// cannot index both), and a list of env with mixed types.
pub fn pod_event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/pods","verb":"create","user":{{"username":"system:serviceaccount:kube-system:replicaset-controller","extra":{{"authentication.kubernetes.io/pod-name":["x"]}}}},"sourceIPs":["10.0.0.3"],"objectRef":{{"resource":"pods","namespace":"shop","name":"cart-1","apiVersion":"v1"}},"responseStatus":{{"code":201}},"requestObject":{{"kind":"Pod","apiVersion":"v1","metadata":{{"name":"cart-1","labels":{{"app":"cart","app.kubernetes.io/name":"cart","app.kubernetes.io/version":"1.2"}}}},"spec":{{"containers":[{{"name":"c","image":"registry.example/cart:1.2","ports":[{{"containerPort":8080}}]}}]}}}},"requestReceivedTimestamp":"2026-03-01T10:00:01.000000Z","stageTimestamp":"2026-03-01T10:00:01.010000Z"}}"#
    )
}

/// A Secret created with its data in the request and response bodies.
pub fn secret_event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/secrets","verb":"create","user":{{"username":"alice@example.com"}},"sourceIPs":["198.51.100.4"],"objectRef":{{"resource":"secrets","namespace":"shop","name":"db","apiVersion":"v1"}},"responseStatus":{{"code":201}},"requestObject":{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"db","annotations":{{"kubectl.kubernetes.io/last-applied-configuration":"{{\"data\":{{\"password\":\"{SECRET}\"}}}}"}}}},"data":{{"password":"{SECRET}"}}}},"responseObject":{{"kind":"Secret","apiVersion":"v1","metadata":{{"name":"db"}},"data":{{"password":"{SECRET}"}}}},"requestReceivedTimestamp":"2026-03-01T10:00:02.000000Z","stageTimestamp":"2026-03-01T10:00:02.010000Z"}}"#
    )
}

pub fn quiet_event(id: &str) -> String {
    format!(
        r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{id}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/kube-system/configmaps/x","verb":"get","user":{{"username":"system:kube-controller-manager"}},"sourceIPs":["10.0.0.2"],"objectRef":{{"resource":"configmaps","namespace":"kube-system","name":"x","apiVersion":"v1"}},"responseStatus":{{"code":200}},"stageTimestamp":"2026-03-01T10:00:03.050000Z"}}"#
    )
}

/// `n` quiet events `q-<start>..`, one line each.
pub fn quiet_lines(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| quiet_event(&format!("q-{i}")) + "\n")
        .collect()
}

/// The quiet auditIDs `q-<start>..`.
pub fn quiet_ids(start: usize, n: usize) -> Vec<String> {
    (start..start + n).map(|i| format!("q-{i}")).collect()
}
